//! Approval flows that scale with risk, over real sockets: the in-process
//! daemon on the dev config (tiers `low` = 0 approvals, `elevated` = 1 with
//! emergency self-service, `critical` = 2 with a ticket and no emergency),
//! the CLI's library functions as clients, and a real HTTP webhook receiver
//! on 127.0.0.1.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_cli::approvals::{self, RequestMode, RequestResult};
use breakglass_cli::commands::{RequestArgs, RequestOutcome};
use breakglass_cli::error::CliError;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::event::ReviewVerdict;
use breakglass_proto::audit::note::NoteVerifier;
use breakglass_proto::audit::verify::{ScanOptions, scan_log};
use breakglass_proto::audit::{Actor, Event, EventKind};
use breakglass_proto::v1::{RequestInfo, RequestState};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::request_args;
use breakglass_tests::webhook::{Answer, Hook};
use breakglass_tests::{breakglass_bin_built, ssh_keygen};

// ---------------------------------------------------------------------------
// Daemon set-up and helpers.

/// How long a webhook notice may take to arrive.
const TEN_S: Duration = Duration::from_secs(10);

const STAGING: &str = "web-1.staging.example";
const PROD: &str = "db-1.prod.example";

/// The dev config, with webhooks on the `elevated` and `critical` tiers, quick
/// notification retries, a second identity of the sample SRE (also in the
/// approver group: only the owner check stops it approving), a reviewer (group `auditors`, which
/// may review but not approve), and `edit` applied last.
async fn daemon(hooks: &[&Hook], edit: impl FnOnce(String) -> String) -> TestDaemon {
    let list = hooks
        .iter()
        .map(|h| format!("{:?}", h.url))
        .collect::<Vec<_>>()
        .join(", ");
    TestDaemon::start_with(move |c| {
        let c = c
            .replace(
                "# webhooks = [\"https://chat.example.com/hooks/breakglass\"]",
                &format!("webhooks = [{list}]"),
            )
            .replace(
                "session_recording = true\n",
                &format!("session_recording = true\nwebhooks = [{list}]\n"),
            );
        let c = format!(
            "{c}\n[notifications]\ntimeout = \"500ms\"\nretries = 4\nretry_delay = \"100ms\"\n\n\
             [[identities]]\nid = \"sre-alt@example.com\"\ngroups = [\"approvers\", \"sre\"]\nowner = \"sample-sre\"\n\n\
             [[identities]]\nid = \"reviewer@example.com\"\ngroups = [\"auditors\"]\nowner = \"sample-reviewer\"\n"
        );
        edit(c)
    })
    .await
}

fn args(keys: &Path, host: &str, ttl: u64, reason: &str) -> RequestArgs {
    let public = keys.join("id_ed25519.pub");
    if !public.exists() {
        ssh_keygen(keys, "id_ed25519", &["-t", "ed25519"]);
    }
    request_args(&public, "bgdemo", host, ttl, reason)
}

fn state(i: &RequestInfo) -> RequestState {
    RequestState::try_from(i.state).unwrap()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Ask and go: issued at once or left pending.
const NO_WAIT: RequestMode = RequestMode {
    emergency: false,
    no_wait: true,
};
/// An emergency, issued at once unless the tier refuses.
const EMERGENCY: RequestMode = RequestMode {
    emergency: true,
    no_wait: false,
};
/// An emergency that does not wait should it fall back to approval.
const EMERGENCY_NO_WAIT: RequestMode = RequestMode {
    emergency: true,
    no_wait: true,
};

/// `breakglass request` with `mode`, its updates ignored.
async fn request(
    t: &Target,
    a: &RequestArgs,
    mode: RequestMode,
) -> Result<RequestResult, CliError> {
    approvals::request_live(t, a, mode, |_| {}).await
}

/// A request that must be issued at once: its outcome.
async fn issued(t: &Target, a: &RequestArgs, mode: RequestMode) -> RequestOutcome {
    match request(t, a, mode).await.expect("request") {
        RequestResult::Issued(o) => *o,
        RequestResult::Pending(i) => panic!("not issued at once: {i:?}"),
    }
}

/// Creates a request without waiting; returns it.
async fn create(target: &Target, a: &RequestArgs, emergency: bool) -> RequestInfo {
    let mode = RequestMode {
        emergency,
        no_wait: true,
    };
    match request(target, a, mode).await.expect("request created") {
        RequestResult::Pending(i) => *i,
        RequestResult::Issued(o) => panic!("issued at once: {:?}", o.response.grant_id),
    }
}

/// The sample SRE's request for `host` (10 minutes), left pending.
async fn ask(d: &TestDaemon, keys: &Path, host: &str, reason: &str) -> RequestInfo {
    create(&d.target("sre"), &args(keys, host, 600, reason), false).await
}

/// The sample client `who` approves request `id`: the request after it.
async fn approve(d: &TestDaemon, who: &str, id: &str, comment: &str) -> RequestInfo {
    decide(approvals::approve(&d.target(who), id, comment)).await
}

/// An approve, deny or cancel that must succeed: the request after it.
async fn decide(call: impl Future<Output = Result<RequestInfo, CliError>>) -> RequestInfo {
    call.await.expect("the decision is taken")
}

/// `fetch` of request `id` as `t`, for the key `request` made in `keys`.
async fn fetch(t: &Target, keys: &Path, id: &str) -> Result<RequestOutcome, CliError> {
    approvals::fetch(t, id, Some(&keys.join("id_ed25519.pub"))).await
}

/// Asserts that `r` failed with exit code `code` and a message holding every needle.
fn refused<T: std::fmt::Debug>(r: Result<T, CliError>, code: i32, needles: &[&str]) {
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), code, "{e}");
    failed_with(e, needles);
}

/// Asserts that the error's message holds every needle.
fn failed_with(e: CliError, needles: &[&str]) {
    for n in needles {
        assert!(e.to_string().contains(n), "{e}");
    }
}

/// Updates a waiting `request_live` saw, with when it saw them.
type Seen = Arc<Mutex<Vec<(Instant, RequestInfo)>>>;

/// Starts `breakglass request` (live) in the background.
fn request_in_background(
    target: Target,
    a: RequestArgs,
) -> (
    Seen,
    tokio::task::JoinHandle<Result<RequestResult, breakglass_cli::error::CliError>>,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        approvals::request_live(&target, &a, RequestMode::default(), move |i| {
            s.lock().unwrap().push((Instant::now(), i.clone()));
        })
        .await
    });
    (seen, task)
}

async fn first_update(seen: &Seen) -> RequestInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((_, i)) = seen.lock().unwrap().first() {
            return i.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no update from the request stream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every event in the dev setup's audit log, read offline with `log.pub`.
fn audit_events(d: &TestDaemon) -> Vec<Event> {
    let key = std::fs::read_to_string(d.path().join("log.pub")).unwrap();
    let verifier = NoteVerifier::parse(key.trim()).unwrap();
    let mut out = Vec::new();
    scan_log(
        &d.path().join("audit"),
        &verifier,
        &ScanOptions::default(),
        |e| {
            out.push(Event::decode(e.leaf).map_err(|e| e.to_string())?);
            Ok(())
        },
    )
    .unwrap();
    out
}

fn user(id: &str) -> Actor {
    Actor::User(id.into())
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn tier_0_issues_at_once() {
    let hook = Hook::start(Answer::Ok).await;
    let url = hook.url.clone();
    let d = daemon(&[], move |c| {
        c.replace(
            "name = \"low\"\napprovals = 0\n",
            &format!("name = \"low\"\napprovals = 0\nwebhooks = [{url:?}]\n"),
        )
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let r = approvals::request_live(
        &d.target("sre"),
        &args(keys.path(), "localhost", 600, "INC-1 check"),
        RequestMode::default(),
        |i| panic!("a tier-0 request never waits: {i:?}"),
    )
    .await
    .unwrap();
    let RequestResult::Issued(o) = r else {
        panic!("not issued")
    };
    assert_eq!(o.response.tier, "low");
    assert!(o.response.approvers.is_empty());
    assert!(!o.response.emergency);
    assert!(o.paths.certificate.exists());
    // Nothing left pending.
    assert!(
        approvals::pending(&d.target("sre"))
            .await
            .unwrap()
            .is_empty()
    );
    // A tier with webhooks hears of routine issuance too.
    let n = hook
        .wait_for("issued", "request_id", &o.response.request_id, TEN_S)
        .await;
    assert_eq!(n["tier"], "low");
    assert_eq!(n["grant_id"], o.response.grant_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn tier_1_waits_for_one_approver_then_issues() {
    let hook = Hook::start(Answer::Ok).await;
    let d = daemon(&[&hook], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let (seen, task) = request_in_background(
        d.target("sre"),
        args(keys.path(), STAGING, 1800, "INC-7 staging queue stuck"),
    );
    let info = first_update(&seen).await;
    assert_eq!(state(&info), RequestState::Pending);
    assert_eq!(info.tier, "elevated");
    assert_eq!(info.approvals_required, 1);
    assert_eq!(info.approver_groups, ["approvers"]);
    assert!(
        info.seconds_left > 800 && info.seconds_left <= 900,
        "{info:?}"
    );
    let id = info.request_id.clone();

    // The approver sees it, with the approve command, in `pending`.
    let list = approvals::pending(&d.target("approver")).await.unwrap();
    let mine = list.iter().find(|i| i.request_id == id).expect("listed");
    assert!(mine.can_approve);
    assert_eq!(mine.approve_command, format!("breakglass approve {id}"));
    let notice = hook.wait_for("pending", "request_id", &id, TEN_S).await;
    assert_eq!(notice["requester"], "sre@example.com");
    assert_eq!(notice["principal"], "bgdemo");
    assert_eq!(notice["hosts"][0], STAGING);
    assert_eq!(notice["tier"], "elevated");
    assert_eq!(notice["reason"], "INC-7 staging queue stuck");
    assert_eq!(
        notice["approve_command"],
        format!("breakglass approve {id}")
    );
    // Still waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished());

    let approved_at = Instant::now();
    let after = approve(&d, "approver", &id, "looks right").await;
    assert_eq!(state(&after), RequestState::Issued);
    let r = tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the waiting CLI got the certificate within a second")
        .unwrap()
        .unwrap();
    assert!(approved_at.elapsed() < Duration::from_secs(1));
    let RequestResult::Issued(o) = r else {
        panic!("not issued")
    };
    assert_eq!(o.response.request_id, id);
    assert_eq!(o.response.approvers, ["approver@example.com"]);
    let cert = std::fs::read_to_string(&o.paths.certificate).unwrap();
    assert!(cert.starts_with("ssh-ed25519-cert-v01@openssh.com "));
    let n = hook.wait_for("approval", "request_id", &id, TEN_S).await;
    assert_eq!(n["approvers"][0], "approver@example.com");
    hook.wait_for("issued", "request_id", &id, TEN_S).await;
    // `fetch` gets the same certificate again.
    let f = fetch(&d.target("sre"), keys.path(), &id).await.unwrap();
    assert_eq!(f.response.serial, o.response.serial);
    // Others may not fetch it.
    refused(
        fetch(&d.target("approver"), keys.path(), &id).await,
        77,
        &[],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tier_2_needs_two_distinct_approvers_never_the_requester() {
    // The prod rule allows ~/.ssh/rc too: the recording tier must still not get it.
    let d = daemon(&[], |c| {
        let at = c.rfind(r#"extensions = ["permit-pty"]"#).unwrap();
        let mut c = c;
        c.replace_range(
            at..at + r#"extensions = ["permit-pty"]"#.len(),
            r#"extensions = ["permit-pty", "permit-user-rc"]"#,
        );
        c
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let sre_alt = d.new_client("sre-alt", "sre-alt@example.com");
    let reviewer = d.new_client("reviewer", "reviewer@example.com");

    // The critical tier wants a ticket reference in the reason.
    let a = args(keys.path(), PROD, 1800, "primary database is down");
    refused(
        request(&d.target("sre"), &a, RequestMode::default()).await,
        79,
        &["tier `critical` requires a ticket reference matching `(INC|CHG)-[0-9]+`"],
    );

    let mut asked = args(keys.path(), PROD, 1800, "CHG-42 primary failover");
    asked.permit = vec!["permit-pty".into(), "permit-user-rc".into()];
    let (seen, task) = request_in_background(d.target("sre"), asked);
    let id = first_update(&seen).await.request_id;

    // The requester cannot approve, nor can another identity of the same owner.
    for owner in [&d.target("sre"), &sre_alt] {
        let r = approvals::approve(owner, &id, "").await;
        refused(r, 77, &["cannot approve your own request"]);
    }
    // A group that may not approve.
    refused(
        approvals::approve(&reviewer, &id, "").await,
        77,
        &["reviewer@example.com may not approve requests of tier `critical`"],
    );

    let first_at = Instant::now();
    let one = approve(&d, "approver", &id, "ok 1").await;
    assert_eq!(state(&one), RequestState::Pending);
    assert_eq!(one.approvals.len(), 1);
    // The streaming client shows the approval within a second.
    loop {
        let shown = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(_, i)| i.approvals.len() == 1)
            .map(|(t, _)| *t);
        if let Some(t) = shown {
            assert!(
                t.duration_since(first_at) < Duration::from_secs(1),
                "shown after {:?}",
                t.duration_since(first_at)
            );
            break;
        }
        assert!(
            first_at.elapsed() < Duration::from_secs(1),
            "the stream did not show the approval within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The same approver twice does not count twice.
    let again = approvals::approve(&d.target("approver"), &id, "again").await;
    failed_with(again.unwrap_err(), &["you already approved"]);
    assert!(!task.is_finished());

    let two = approve(&d, "approver2", &id, "ok 2").await;
    assert_eq!(state(&two), RequestState::Issued);
    let RequestResult::Issued(o) = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("not issued")
    };
    assert_eq!(
        o.response.approvers,
        ["approver@example.com", "approver2@example.com"]
    );
    assert_eq!(o.response.tier, "critical");
    // The tier requires session recording: carried in the certificate.
    let cert = ssh_key::Certificate::read_file(&o.paths.certificate).unwrap();
    assert!(
        cert.extensions()
            .contains_key(breakglass_proto::profile::EXT_SESSION_RECORDING)
    );
    // sshd would run ~/.ssh/rc before the recorder: never in a recording certificate.
    assert!(cert.extensions().contains_key("permit-pty"));
    assert!(!cert.extensions().contains_key("permit-user-rc"));
    // ... and sshd is made to run the session under the recorder, for this grant.
    let forced = cert
        .critical_options()
        .get(breakglass_proto::profile::CRITICAL_FORCE_COMMAND)
        .expect("a recording tier's certificate has a force-command");
    let recorder = breakglass_proto::recording::RecorderCommand::parse(
        forced,
        breakglass_proto::recording::DEFAULT_RECORDER,
    )
    .unwrap_or_else(|| panic!("force-command {forced:?} is not the recorder"));
    assert_eq!(recorder.grant, o.response.grant_id);
    // Decided: no more approvals.
    let late = approvals::approve(&sre_alt, &id, "").await;
    failed_with(late.unwrap_err(), &["already issued"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_ends_the_request_and_cancel_is_the_requesters() {
    let hook = Hook::start(Answer::Ok).await;
    let d = daemon(&[&hook], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let (seen, task) = request_in_background(
        d.target("sre"),
        args(keys.path(), STAGING, 600, "INC-9 look at the cache"),
    );
    let id = first_update(&seen).await.request_id;
    refused(
        approvals::deny(&d.target("approver"), &id, " ").await,
        65,
        &[],
    );
    let denied = decide(approvals::deny(
        &d.target("approver"),
        &id,
        "use the runbook instead",
    ))
    .await;
    assert_eq!(state(&denied), RequestState::Denied);
    refused(
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap(),
        79,
        &["denied by user:approver@example.com: use the runbook instead"],
    );
    let n = hook.wait_for("denied", "request_id", &id, TEN_S).await;
    assert_eq!(n["detail"], "use the runbook instead");
    // A denied request stays denied.
    let late = approvals::approve(&d.target("approver2"), &id, "").await;
    failed_with(late.unwrap_err(), &["was denied"]);

    // Cancel: only by the requester.
    let info = ask(&d, keys.path(), STAGING, "INC-9 second try").await;
    let r = approvals::cancel(&d.target("approver"), &info.request_id, "").await;
    refused(r, 77, &[]);
    let c = decide(approvals::cancel(
        &d.target("sre"),
        &info.request_id,
        "fixed itself",
    ))
    .await;
    assert_eq!(state(&c), RequestState::Cancelled);
    refused(
        fetch(&d.target("sre"), keys.path(), &info.request_id).await,
        75,
        &[],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unapproved_request_expires() {
    let d = daemon(&[], |c| {
        c.replace("max_wait = \"15m\"", "max_wait = \"2s\"")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let a = args(keys.path(), STAGING, 600, "INC-3 nobody around");
    let r = request(&d.target("sre"), &a, RequestMode::default()).await;
    refused(r, 75, &["expired"]);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(5));
    let expired: Vec<_> = audit_events(&d)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::RequestExpired(_)))
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].actor, Actor::Daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn emergency_issues_at_once_capped_alerts_and_waits_for_review() {
    let hook = Hook::start(Answer::Ok).await;
    let d = daemon(&[&hook], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let reviewer = d.new_client("reviewer", "reviewer@example.com");

    // Asked for 1h; the elevated tier caps emergencies at 15m.
    let before = now_s();
    let r = approvals::request_live(
        &d.target("sre"),
        &args(
            keys.path(),
            STAGING,
            3600,
            "INC-11 site down, nobody answers",
        ),
        EMERGENCY,
        |i| panic!("an emergency never waits: {i:?}"),
    )
    .await
    .unwrap();
    let RequestResult::Issued(o) = r else {
        panic!("not issued")
    };
    assert!(o.response.emergency);
    let vb = o.response.valid_before;
    assert!(
        vb >= before + 900 && vb <= now_s() + 900,
        "valid_before {vb}"
    );
    let rid = o.response.request_id.clone();
    let alert = hook.wait_for("emergency", "request_id", &rid, TEN_S).await;
    assert_eq!(alert["emergency"], true);
    assert_eq!(alert["requester"], "sre@example.com");
    assert_eq!(alert["grant_id"], o.response.grant_id.as_str());

    // Listed for review until reviewed; never by the requester.
    let list = approvals::review_list(&reviewer, false).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].grant_id, o.response.grant_id);
    assert_eq!(list[0].reason, "INC-11 site down, nobody answers");
    assert!(list[0].verdict.is_empty());
    let r = approvals::review(&d.target("sre"), &o.response.grant_id, "ok", "fine").await;
    refused(r, 77, &["cannot review your own grant"]);
    let r = approvals::review(&reviewer, &o.response.grant_id, "maybe", "x").await;
    refused(r, 65, &[]);
    let item = approvals::review(&reviewer, &o.response.grant_id, "ok", "matches INC-11")
        .await
        .unwrap();
    assert_eq!(item.verdict, "ok");
    assert_eq!(item.reviewer, "reviewer@example.com");
    assert!(
        approvals::review_list(&reviewer, false)
            .await
            .unwrap()
            .is_empty()
    );
    let all = approvals::review_list(&reviewer, true).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].note, "matches INC-11");
    let reviewed = audit_events(&d).into_iter().find_map(|e| match e.kind {
        EventKind::GrantReviewed(r) => Some((e.actor, r.verdict)),
        _ => None,
    });
    assert_eq!(
        reviewed,
        Some((user("reviewer@example.com"), ReviewVerdict::Accepted))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn emergency_on_a_forbidding_tier_is_refused_and_the_daily_cap_falls_back_to_approval() {
    let d = daemon(&[], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let a = args(keys.path(), PROD, 600, "INC-12 prod is on fire");
    refused(
        request(&d.target("sre"), &a, EMERGENCY).await,
        79,
        &[
            "emergency access is not allowed for tier `critical`",
            "ask without --emergency",
        ],
    );

    // emergency_per_day = 2 for the elevated tier.
    let a = args(keys.path(), STAGING, 600, "INC-13 staging outage");
    for _ in 0..2 {
        let o = issued(&d.target("sre"), &a, EMERGENCY_NO_WAIT).await;
        assert!(o.response.emergency);
    }
    // The allowance is per person: another identity of the same owner has none left.
    let sre_alt = d.new_client("sre-alt", "sre-alt@example.com");
    let alt = create(&sre_alt, &a, true).await;
    assert_eq!(state(&alt), RequestState::Pending);
    assert_eq!(alt.requester, "sre-alt@example.com");
    let third = create(&d.target("sre"), &a, true).await;
    assert_eq!(state(&third), RequestState::Pending);
    assert!(third.emergency);
    assert_eq!(third.approvals_required, 1);
    // Approved normally, it is an ordinary grant (nothing to review).
    let done = approve(&d, "approver", &third.request_id, "").await;
    assert_eq!(state(&done), RequestState::Issued);
    let f = fetch(&d.target("sre"), keys.path(), &third.request_id)
        .await
        .unwrap();
    assert!(!f.response.emergency);
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_that_hang_or_fail_do_not_delay_issuance_and_are_retried() {
    let hang = Hook::start(Answer::Hang).await;
    let flaky = Hook::start(Answer::FailFirst(2)).await;
    let d = daemon(&[&hang, &flaky], |c| {
        c.replace("timeout = \"500ms\"", "timeout = \"5s\"")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let a = args(keys.path(), STAGING, 600, "INC-14 emergency drill");
        issued(&d.target("sre"), &a, EMERGENCY_NO_WAIT).await;
        // Far below the 5 s webhook timeout.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }
    // The flaky hook answered 500 twice, then got the notices on retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while flaky
        .events()
        .iter()
        .filter(|v| v["event"] == "emergency")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "{:?}", flaky.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The hanging hook got every notice too (each in its own delivery).
    let deadline = Instant::now() + Duration::from_secs(10);
    while hang.events().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", hang.events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And is retried after the timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    while hang.connections() < 3 {
        assert!(
            Instant::now() < deadline,
            "hanging webhook not retried: {} connections",
            hang.connections()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_transition_is_in_the_audit_log_with_its_actor() {
    let d = daemon(&[], |c| {
        c.replace("max_wait = \"15m\"", "max_wait = \"1s\"")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    // critical: approved by two and issued.
    let a = ask(&d, keys.path(), PROD, "CHG-1 rotate certificates").await;
    approve(&d, "approver", &a.request_id, "one").await;
    approve(&d, "approver2", &a.request_id, "two").await;
    // elevated: denied, cancelled, expired (max_wait 1s).
    let b = ask(&d, keys.path(), STAGING, "INC-2 denied one").await;
    decide(approvals::deny(&d.target("approver"), &b.request_id, "no")).await;
    let c = ask(&d, keys.path(), STAGING, "INC-2 cancelled one").await;
    decide(approvals::cancel(
        &d.target("sre"),
        &c.request_id,
        "not needed",
    ))
    .await;
    let x = ask(&d, keys.path(), STAGING, "INC-2 expiring one").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(
        &approvals::show(&d.target("sre"), &x.request_id)
            .await
            .unwrap(),
    ) != RequestState::Expired
    {
        assert!(Instant::now() < deadline, "did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let events = audit_events(&d);
    let rid = |s: &str| s.parse::<breakglass_proto::audit::RequestId>().unwrap();
    let of = |id: &str| -> Vec<(String, Actor)> {
        let id = rid(id);
        events
            .iter()
            .filter(|e| match &e.kind {
                EventKind::RequestCreated(r) => r.request_id == id,
                EventKind::ApprovalAdded(r) => r.request_id == id,
                EventKind::RequestDenied(r) => r.request_id == id,
                EventKind::RequestExpired(r) => r.request_id == id,
                EventKind::RequestCancelled(r) => r.request_id == id,
                EventKind::GrantIssued(g) => g.request_id == id,
                _ => false,
            })
            .map(|e| (e.code().name().to_owned(), e.actor.clone()))
            .collect()
    };
    let sre = user("sre@example.com");
    let ap = user("approver@example.com");
    let ap2 = user("approver2@example.com");
    let s = |n: &str| n.to_owned();
    assert_eq!(
        of(&a.request_id),
        [
            (s("request_created"), sre.clone()),
            (s("approval_added"), ap.clone()),
            (s("approval_added"), ap2.clone()),
            (s("grant_issued"), ap2.clone()),
        ]
    );
    assert_eq!(
        of(&b.request_id),
        [
            (s("request_created"), sre.clone()),
            (s("request_denied"), ap.clone())
        ]
    );
    assert_eq!(
        of(&c.request_id),
        [
            (s("request_created"), sre.clone()),
            (s("request_cancelled"), sre.clone())
        ]
    );
    assert_eq!(
        of(&x.request_id),
        [
            (s("request_created"), sre.clone()),
            (s("request_expired"), Actor::Daemon)
        ]
    );
    let issued = events.iter().find_map(|e| match &e.kind {
        EventKind::GrantIssued(g) if g.request_id == rid(&a.request_id) => Some(g.clone()),
        _ => None,
    });
    assert_eq!(
        issued.unwrap().approvers,
        ["approver@example.com", "approver2@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_restores_pending_requests_and_approvals_exactly() {
    let mut d = daemon(&[], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let a = ask(&d, keys.path(), PROD, "CHG-77 restore replica").await;
    approve(&d, "approver", &a.request_id, "first of two").await;
    let b = ask(&d, keys.path(), STAGING, "INC-77 staging too").await;
    let before_a = approvals::show(&d.target("approver2"), &a.request_id)
        .await
        .unwrap();
    let before_b = approvals::show(&d.target("approver2"), &b.request_id)
        .await
        .unwrap();
    let pending_before = approvals::pending(&d.target("approver2")).await.unwrap();
    // And one issued at once, to fetch again after the restart.
    let local = args(keys.path(), "localhost", 600, "INC-77 local check");
    let at_once = issued(&d.target("sre"), &local, NO_WAIT).await;

    d.restart().await;

    // The certificate is signed again from the log, byte for byte the same.
    let refetched = fetch(&d.target("sre"), keys.path(), &at_once.response.request_id)
        .await
        .unwrap();
    assert_eq!(refetched.response.certificate, at_once.response.certificate);
    assert_eq!(refetched.response.serial, at_once.response.serial);

    let after_a = approvals::show(&d.target("approver2"), &a.request_id)
        .await
        .unwrap();
    let after_b = approvals::show(&d.target("approver2"), &b.request_id)
        .await
        .unwrap();
    let same = |x: &RequestInfo, y: &RequestInfo| {
        assert_eq!(
            RequestInfo {
                seconds_left: 0,
                ..x.clone()
            },
            RequestInfo {
                seconds_left: 0,
                ..y.clone()
            }
        );
    };
    same(&before_a, &after_a);
    same(&before_b, &after_b);
    assert_eq!(after_a.approvals.len(), 1);
    assert_eq!(after_a.approvals[0].approver, "approver@example.com");
    assert_eq!(after_a.approvals[0].comment, "first of two");
    let pending_after = approvals::pending(&d.target("approver2")).await.unwrap();
    assert_eq!(pending_before.len(), pending_after.len());
    // The first approver still counts: one more approval issues it.
    let again = approvals::approve(&d.target("approver"), &a.request_id, "").await;
    failed_with(again.unwrap_err(), &["you already approved"]);
    let done = approve(&d, "approver2", &a.request_id, "second").await;
    assert_eq!(state(&done), RequestState::Issued);
    let o = fetch(&d.target("sre"), keys.path(), &a.request_id)
        .await
        .unwrap();
    assert_eq!(
        o.response.approvers,
        ["approver@example.com", "approver2@example.com"]
    );
}

// ---------------------------------------------------------------------------
// The real `breakglass` executable.

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_streams_the_request_state_and_shows_an_approval_within_a_second() {
    use tokio::io::AsyncBufReadExt;
    // Built before the daemon starts (the CLI runs as a child process below).
    breakglass_bin_built().await;
    let d = daemon(&[], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);

    let mut req = d.cli("sre");
    req.args([
        "request",
        "--host",
        PROD,
        "--as",
        "bgdemo",
        "--ttl",
        "10m",
        "--reason",
        "CHG-5 failover drill",
        "--public-key",
    ])
    .arg(&public)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = req.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines: Seen2 = Arc::default();
    let l = lines.clone();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = r.next_line().await {
            l.lock().unwrap().push((Instant::now(), line));
        }
    });
    let wait_line = |needle: &'static str| {
        let lines = lines.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(x) = lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(_, l)| l.contains(needle))
                    .cloned()
                {
                    return x;
                }
                assert!(
                    Instant::now() < deadline,
                    "no line with {needle:?}: {:?}",
                    lines.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let (_, first) = wait_line("pending: tier critical needs 2 approval(s)").await;
    assert!(first.contains("approved by nobody yet (0/2)"), "{first}");
    let id = first.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("r-"), "{first}");

    // `pending` for an approver lists it; the requester cannot approve (exit 77).
    let out = d.cli("approver2").arg("pending").output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&id) && text.contains("(you may approve)"),
        "{text}"
    );
    let out = d.cli("sre").args(["approve", &id]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(77));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot approve your own request"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = d
        .cli("approver")
        .args(["approve", &id, "--comment", "first"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let approved = Instant::now();
    let (seen_at, line) = wait_line("approved by approver@example.com (1/2)").await;
    assert!(
        seen_at.saturating_duration_since(approved) < Duration::from_secs(1),
        "the CLI showed the approval {:?} after it was given: {line}",
        seen_at.saturating_duration_since(approved)
    );

    let out = d
        .cli("approver2")
        .args(["approve", &id, "--comment", "second"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let done = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("the request command ends after the last approval")
        .unwrap();
    assert!(done.status.success(), "{done:?}");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(stdout.contains("Certificate written to"), "{stdout}");
    assert!(stdout.contains("tier critical"), "{stdout}");
    assert!(keys.path().join("id_ed25519-cert.pub").exists());
    // Not a terminal: one line per change, none repeated (not the first, which the
    // watch stream's first update repeats; not the countdown), no in-place redraws.
    let seen: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.clone())
        .collect();
    let waiting: Vec<&String> = seen.iter().filter(|l| l.contains(&id)).collect();
    assert_eq!(waiting.len(), 3, "one line per change: {seen:#?}");
    assert!(
        waiting[0].contains("(0/2)") && waiting[1].contains("(1/2)"),
        "{seen:#?}"
    );
    assert!(waiting[2].contains("issuing"), "{seen:#?}");
    assert!(!seen.iter().any(|l| l.contains('\r')), "{seen:#?}");

    // `--no-wait` prints the id; `deny` ends it; `fetch` then exits 79 (refused).
    let out = d
        .cli("sre")
        .args([
            "request",
            "--host",
            STAGING,
            "--as",
            "bgdemo",
            "--ttl",
            "10m",
            "--reason",
            "INC-6 later please",
            "--no-wait",
            "--public-key",
        ])
        .arg(&public)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(id.starts_with("r-") && id.len() == 18, "{id:?}");
    let out = d
        .cli("approver")
        .args(["deny", &id, "--reason", "not now"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("denied by user:approver@example.com: not now")
    );
    let out = d
        .cli("sre")
        .args(["fetch", &id, "--public-key"])
        .arg(&public)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(79), "{out:?}");
}

type Seen2 = Arc<Mutex<Vec<(Instant, String)>>>;

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_reaches_the_webhooks_of_the_grants_tier() {
    use breakglass_proto::v1::RevokeRequest;
    use breakglass_proto::v1::revoke_request::Target as Selector;
    let hook = Hook::start(Answer::Ok).await;
    let d = daemon(&[&hook], |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let a = args(keys.path(), STAGING, 600, "INC-21 emergency then revoked");
    let o = issued(&d.target("sre"), &a, EMERGENCY_NO_WAIT).await;
    // The requester may revoke their own grant.
    breakglass_cli::revoke::revoke(
        &d.target("sre"),
        RevokeRequest {
            target: Some(Selector::GrantId(o.response.grant_id.clone())),
            reason: "INC-21 done early".into(),
        },
    )
    .await
    .unwrap();
    let n = hook
        .wait_for("revoked", "request_id", &o.response.request_id, TEN_S)
        .await;
    assert_eq!(n["grant_id"], o.response.grant_id.as_str());
    assert_eq!(n["detail"], "INC-21 done early");
    assert_eq!(n["actor"], "user:sre@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_format_webhook_gets_text_and_blocks_with_the_request_and_the_approve_command() {
    let json = Hook::start(Answer::Ok).await;
    let slack = Hook::start(Answer::Ok).await;
    let slack_url = slack.url.clone();
    let d = daemon(&[&json, &slack], move |c| {
        format!("{c}\n[[webhooks]]\nurl = {slack_url:?}\nformat = \"slack\"\n")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    // Markup a requester might slip into a chat channel: a channel mention and a link.
    let reason = "INC-12 cache down <!channel> & <https://evil.example|click here>";
    let info = ask(&d, keys.path(), STAGING, reason).await;
    let id = info.request_id.clone();

    // The JSON webhook still gets the JSON notice.
    let n = json.wait_for("pending", "request_id", &id, TEN_S).await;
    assert_eq!(n["tier"], "elevated");

    let body = slack
        .wait_body("about the pending request", TEN_S, |v| {
            v["text"].as_str().is_some_and(|t| t.contains(&id))
        })
        .await;
    assert!(body.get("event").is_none(), "not the JSON notice: {body}");
    let text = body["text"].as_str().unwrap();
    for part in [
        id.as_str(),
        "sre@example.com",
        "bgdemo@web-1.staging.example",
        "Tier: elevated",
        &format!("breakglass approve {id}"),
        // Escaped for mrkdwn: no mention, no link.
        "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty());
    let fields: Vec<&str> = blocks
        .iter()
        .filter_map(|b| b["fields"].as_array())
        .flatten()
        .filter_map(|f| f["text"].as_str())
        .collect();
    for field in [
        format!("*Request*\n{id}"),
        "*Requester*\nsre@example.com".to_owned(),
        "*Tier*\nelevated".to_owned(),
        "*Access*\nbgdemo@web-1.staging.example".to_owned(),
    ] {
        assert!(
            fields.contains(&field.as_str()),
            "{field:?} not in {fields:?}"
        );
    }
    assert!(
        blocks.iter().any(|b| b["text"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("```breakglass approve {id}```")))),
        "{body}"
    );
    let all = body.to_string();
    assert!(
        !all.contains("<!channel>") && !all.contains("<https://"),
        "{all}"
    );
}
