//! Refusals are on the record, over real sockets: the in-process daemon on the dev config
//! (tiers `low` = localhost at once, `elevated` = staging with one approval and emergency
//! self-service, `critical` = prod with two approvals and a ticket; deny rule `no-root`),
//! gRPC clients over mTLS, the daemon's syslog lines on a real datagram socket, a real
//! HTTP webhook receiver, and the real `breakglass` executable reading the log.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_cli::connect::Channel;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::event::{ActionRefused, RefusalKind, RequestRefused};
use breakglass_proto::audit::{Actor, Event, EventKind};
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as RevokeTarget;
use breakglass_proto::v1::{
    ApproveRequest, CancelRequest, RequestCertificateRequest, RequestInfo, RequestRef,
    ReviewRequest, RevokeRequest,
};
use breakglass_test_support::fs::{Tmpfs, fill};
use breakglass_test_support::require_root;
use breakglass_tests::audit::{all_events, verified_size};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::sshd::SyslogCapture;
use breakglass_tests::webhook::{Answer, Hook};
use breakglass_tests::{breakglass_bin_built, ssh_keygen};
use tonic::Code;

const TEN_S: Duration = Duration::from_secs(10);
const STAGING: &str = "web-1.staging.example";
const PROD: &str = "db-1.prod.example";
const MALLORY: &str = "mallory@example.com";
/// The answer to a refusal by policy.
const DENIED: Code = Code::PermissionDenied;

/// The dev config with the daemon's syslog lines going to `syslog`, and `edit` applied.
async fn daemon(syslog: &SyslogCapture, edit: impl FnOnce(String) -> String) -> TestDaemon {
    let p = syslog.path.display().to_string();
    TestDaemon::start_with(move |c| {
        edit(c.replace(
            "syslog_socket = \"/dev/log\"",
            &format!("syslog_socket = \"{p}\""),
        ))
    })
    .await
}

fn client(t: &Target) -> BreakGlassClient<Channel> {
    breakglass_cli::connect::client(t).expect("client")
}

/// A request from a fresh ed25519 key.
fn request(
    keys: &Path,
    principal: &str,
    host: &str,
    ttl: i64,
    reason: &str,
) -> RequestCertificateRequest {
    let public = keys.join("id_ed25519.pub");
    if !public.exists() {
        ssh_keygen(keys, "id_ed25519", &["-t", "ed25519"]);
    }
    let key = std::fs::read_to_string(&public).unwrap();
    certificate_request(key.trim(), principal, host, ttl, reason)
}

/// The events appended to `d`'s log since it held `before` events.
async fn new_events(d: &TestDaemon, before: usize) -> Vec<Event> {
    all_events(d).await.split_off(before)
}

/// Exactly one event was recorded since `before`, and it is an action refusal.
async fn one_action_refusal(d: &TestDaemon, before: usize) -> (Actor, ActionRefused) {
    one_refusal(d, before, action_refusal).await
}

/// The request refusal `kind` is, if it is one.
fn request_refusal(kind: &EventKind) -> Option<RequestRefused> {
    match kind {
        EventKind::RequestRefused(r) => Some((**r).clone()),
        _ => None,
    }
}

/// The action refusal `kind` is, if it is one.
fn action_refusal(kind: &EventKind) -> Option<ActionRefused> {
    match kind {
        EventKind::ActionRefused(a) => Some(a.clone()),
        _ => None,
    }
}

/// The one event recorded since `before`, which `of` must take as the refusal expected.
async fn one_refusal<R>(
    d: &TestDaemon,
    before: usize,
    of: fn(&EventKind) -> Option<R>,
) -> (Actor, R) {
    let mut new = new_events(d, before).await;
    assert_eq!(new.len(), 1, "{new:#?}");
    let e = new.remove(0);
    let refusal = of(&e.kind).unwrap_or_else(|| panic!("not the refusal expected: {:?}", e.kind));
    (e.actor, refusal)
}

/// A call the daemon refused and recorded: its answer, and the one event it recorded.
struct Refusal<R> {
    /// The gRPC answer.
    answer: tonic::Status,
    /// Who the event names as actor.
    actor: Actor,
    /// The refusal recorded.
    event: R,
    /// Its index in the log.
    index: usize,
}

impl<R> std::ops::Deref for Refusal<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.event
    }
}

/// Sends `call`, which must be answered `code` and recorded as one refusal of the kind
/// `of` takes.
async fn refused<T: std::fmt::Debug, R>(
    d: &TestDaemon,
    code: Code,
    call: impl Future<Output = Result<T, tonic::Status>>,
    of: fn(&EventKind) -> Option<R>,
) -> Refusal<R> {
    let index = all_events(d).await.len();
    let answer = call.await.unwrap_err();
    assert_eq!(answer.code(), code, "{answer:?}");
    let (actor, event) = one_refusal(d, index, of).await;
    Refusal {
        answer,
        actor,
        event,
        index,
    }
}

/// Sends `call`, which must be answered `code` and recorded as one request refusal.
async fn request_refused<T: std::fmt::Debug>(
    d: &TestDaemon,
    code: Code,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Refusal<RequestRefused> {
    refused(d, code, call, request_refusal).await
}

/// Sends `call`, which must be answered `code` and recorded as one action refusal.
async fn action_refused<T: std::fmt::Debug>(
    d: &TestDaemon,
    code: Code,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Refusal<ActionRefused> {
    refused(d, code, call, action_refusal).await
}

/// Approves request `id` as `t`.
async fn approve(t: &Target, id: &str) -> Result<tonic::Response<RequestInfo>, tonic::Status> {
    client(t)
        .approve(ApproveRequest {
            request_id: id.to_owned(),
            comment: String::new(),
        })
        .await
}

fn user(id: &str) -> Actor {
    Actor::User(id.into())
}

/// The syslog line of the refusal event `index` (the daemon writes it once durable).
fn syslog_line(syslog: &SyslogCapture, index: usize, kind: RefusalKind) -> String {
    let idx = format!(" index={index} ");
    let refusal = format!(" refusal={kind} ");
    syslog
        .wait_for(&[&idx, &refusal], TEN_S)
        .unwrap_or_else(|| panic!("no syslog line for event {index}: {:#?}", syslog.lines()))
}

/// Log verification offline with only `log.pub`: the size of the log.
fn verifies(d: &TestDaemon) -> u64 {
    verified_size(d, &d.path().join("audit"))
}

/// Waits, when the UTC hour ends within a minute, until the next one has begun: the
/// per-identity refusal windows are whole UTC hours, and a test must not straddle two.
async fn away_from_an_hour_boundary() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 3600;
    if into > 3600 - 60 {
        tokio::time::sleep(Duration::from_secs(3600 - into + 1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_refusal_is_one_event_with_its_rule_and_reason_and_a_syslog_line() {
    away_from_an_hour_boundary().await;
    let logdir = tempfile::tempdir().unwrap();
    let syslog = SyslogCapture::bind(logdir.path());
    let d = daemon(&syslog, |c| {
        c.replace("emergency_per_day = 2", "emergency_per_day = 1")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");
    let mallory = d.new_client("mallory", MALLORY);

    // Deny rule: `no-root` forbids root everywhere.
    let root = request(keys.path(), "root", "localhost", 600, "INC-1 look");
    let r = request_refused(&d, DENIED, client(&sre).request_certificate(root)).await;
    assert_eq!(r.actor, user("sre@example.com"));
    assert_eq!(
        (r.kind, r.rule.as_str()),
        (RefusalKind::DenyRule, "no-root")
    );
    assert_eq!(r.reason, r.answer.message());
    assert_eq!(
        (
            r.identity.as_str(),
            r.principals.as_slice(),
            r.hosts.as_slice()
        ),
        (
            "sre@example.com",
            &["root".to_owned()][..],
            &["localhost".to_owned()][..]
        )
    );
    assert_eq!(
        (r.ttl_seconds, r.request_reason.as_str()),
        (600, "INC-1 look")
    );
    let line = syslog_line(&syslog, r.index, RefusalKind::DenyRule);
    assert!(line.starts_with("<85>"), "authpriv.notice: {line}");
    assert!(
        line.contains("event=request_refused") && line.contains("rule=no-root"),
        "{line}"
    );

    // No matching rule: a host no rule names; the closest rule is named.
    let other = request(keys.path(), "bgdemo", "web-1.other.example", 600, "INC-2");
    let r = request_refused(&d, DENIED, client(&sre).request_certificate(other)).await;
    assert_eq!(r.kind, RefusalKind::NoRule);
    assert!(
        !r.rule.is_empty() && r.answer.message().contains(&r.rule),
        "{:?}",
        r.event
    );
    assert_eq!(r.reason, r.answer.message());
    syslog_line(&syslog, r.index, RefusalKind::NoRule);

    // TTL over the rule's limit.
    let long = request(keys.path(), "bgdemo", "localhost", 7200, "INC-3");
    let r = request_refused(&d, DENIED, client(&sre).request_certificate(long)).await;
    assert_eq!(
        (r.kind, r.rule.as_str(), r.tier.as_str()),
        (RefusalKind::Ttl, "sre-local", "low")
    );
    assert!(
        r.reason.contains("TTL 2h exceeds the 30m maximum"),
        "{}",
        r.reason
    );
    syslog_line(&syslog, r.index, RefusalKind::Ttl);

    // Missing ticket: the `critical` tier wants (INC|CHG)-N in the reason. The answer stays
    // InvalidArgument (fix the reason), and the refusal is on the record.
    let no_ticket = request(keys.path(), "bgdemo", PROD, 600, "database is down again");
    let invalid = Code::InvalidArgument;
    let r = request_refused(&d, invalid, client(&sre).create_request(no_ticket)).await;
    assert_eq!(
        (r.kind, r.rule.as_str(), r.tier.as_str()),
        (RefusalKind::Ticket, "sre-prod", "critical")
    );
    assert!(r.reason.contains("ticket reference"), "{}", r.reason);
    syslog_line(&syslog, r.index, RefusalKind::Ticket);

    // Emergency on a tier without emergency self-service.
    let mut e = request(keys.path(), "bgdemo", PROD, 600, "INC-4 prod on fire");
    e.emergency = true;
    let r = request_refused(&d, DENIED, client(&sre).create_request(e)).await;
    assert_eq!(
        (r.kind, r.tier.as_str(), r.emergency),
        (RefusalKind::EmergencyNotAllowed, "critical", true)
    );
    syslog_line(&syslog, r.index, RefusalKind::EmergencyNotAllowed);

    // Emergency quota spent (emergency_per_day = 1): the first is issued at once, the
    // second is refused as an emergency and waits for approval instead.
    let mut e = request(keys.path(), "bgdemo", STAGING, 600, "INC-5 staging outage");
    e.emergency = true;
    let first = client(&sre)
        .create_request(e.clone())
        .await
        .unwrap()
        .into_inner();
    let emergency_grant = first.certificate.expect("issued at once").grant_id;
    let n = all_events(&d).await.len();
    let second = client(&sre).create_request(e).await.unwrap().into_inner();
    let pending = second.request.expect("request").request_id;
    let new = new_events(&d, n).await;
    assert!(
        matches!(&new[..], [c, _] if matches!(c.kind, EventKind::RequestCreated(_))),
        "{new:#?}"
    );
    let EventKind::RequestRefused(r) = &new[1].kind else {
        panic!("{new:#?}")
    };
    assert_eq!(
        (r.kind, r.rule.as_str(), r.tier.as_str()),
        (RefusalKind::EmergencyQuota, "sre-staging", "elevated")
    );
    assert_eq!(r.request_id.map(|i| i.to_string()), Some(pending.clone()));
    assert!(
        r.reason.contains("1 of 1 emergency grant(s)"),
        "{}",
        r.reason
    );
    syslog_line(&syslog, n + 1, RefusalKind::EmergencyQuota);

    // Self-approval attempt.
    let a = action_refused(&d, DENIED, approve(&sre, &pending)).await;
    assert_eq!(a.actor, user("sre@example.com"));
    assert_eq!(
        (a.kind, a.action.as_str(), a.target.as_str()),
        (RefusalKind::SelfApproval, "approve", pending.as_str())
    );
    assert_eq!(a.reason, a.answer.message());
    syslog_line(&syslog, a.index, RefusalKind::SelfApproval);

    // Approval by a known identity that is not an approver of the tier.
    let a = action_refused(&d, DENIED, approve(&d.target("auditor"), &pending)).await;
    assert_eq!(
        (a.kind, a.identity.as_str(), a.action.as_str()),
        (RefusalKind::NotApprover, "auditor@example.com", "approve")
    );
    assert!(
        a.reason.contains("approvers must be in approvers"),
        "{}",
        a.reason
    );
    syslog_line(&syslog, a.index, RefusalKind::NotApprover);

    // Unknown identity: a valid client certificate the configuration does not list.
    let looking = request(keys.path(), "bgdemo", "localhost", 600, "just looking");
    // The access layer refuses it before the request is decoded: an action refusal
    // naming the call.
    let r = action_refused(&d, DENIED, client(&mallory).request_certificate(looking)).await;
    assert_eq!(r.actor, user(MALLORY));
    assert_eq!(
        (r.kind, r.action.as_str()),
        (RefusalKind::UnknownIdentity, "RequestCertificate")
    );
    let line = syslog_line(&syslog, r.index, RefusalKind::UnknownIdentity);
    assert!(
        line.contains("identity=mallory@example.com")
            && line.contains(" action=RequestCertificate "),
        "{line}"
    );
    let n = all_events(&d).await.len();
    approve(&mallory, &pending).await.unwrap_err();
    let (_, a) = one_action_refusal(&d, n).await;
    assert_eq!(
        (a.kind, a.action.as_str()),
        (RefusalKind::UnknownIdentity, "Approve")
    );

    // Someone else's request or grant: cancel, show, revoke; a review by a non-reviewer.
    let mut approver = client(&d.target("approver"));
    let cancel = approver.cancel(CancelRequest {
        request_id: pending.clone(),
        reason: String::new(),
    });
    let a = action_refused(&d, DENIED, cancel).await;
    assert_eq!(
        (a.kind, a.action.as_str()),
        (RefusalKind::NotRequester, "cancel")
    );
    // (The host identity is known, but neither requester, approver nor reviewer.)
    let mut host = client(&d.target("host"));
    let show = host.get_request(RequestRef {
        request_id: pending.clone(),
    });
    let a = action_refused(&d, DENIED, show).await;
    assert_eq!(
        (a.kind, a.action.as_str()),
        (RefusalKind::NotRequester, "show")
    );
    let low = client(&sre)
        .request_certificate(request(keys.path(), "bgdemo", "localhost", 600, "INC-6"))
        .await
        .unwrap()
        .into_inner();
    let mut revocations =
        RevocationsClient::new(breakglass_cli::connect::channel(&d.target("approver")).unwrap());
    let revoke = revocations.revoke(RevokeRequest {
        target: Some(RevokeTarget::GrantId(low.grant_id.clone())),
        reason: "INC-6 not mine".into(),
    });
    let a = action_refused(&d, DENIED, revoke).await;
    assert_eq!(
        (a.kind, a.action.as_str(), a.target.as_str()),
        (RefusalKind::NotRequester, "revoke", low.grant_id.as_str())
    );
    syslog_line(&syslog, a.index, RefusalKind::NotRequester);
    let review = approver.review(ReviewRequest {
        grant_id: low.grant_id.clone(),
        verdict: "ok".into(),
        note: "looked".into(),
    });
    let a = action_refused(&d, DENIED, review).await;
    assert_eq!(
        (a.kind, a.action.as_str(), a.target.as_str()),
        (RefusalKind::NotReviewer, "review", low.grant_id.as_str())
    );
    let n = all_events(&d).await.len();
    client(&sre)
        .review(ReviewRequest {
            grant_id: emergency_grant.clone(),
            verdict: "ok".into(),
            note: "mine".into(),
        })
        .await
        .unwrap_err();
    let (_, a) = one_action_refusal(&d, n).await;
    assert_eq!(
        (a.kind, a.action.as_str()),
        (RefusalKind::SelfApproval, "review")
    );

    // A malformed request is not a refusal by policy: nothing is recorded.
    let n = all_events(&d).await.len();
    let s = client(&sre)
        .request_certificate(request(keys.path(), "bgdemo", "localhost", 0, "INC-7"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(new_events(&d, n).await.is_empty());

    // Everything above is in one log that verifies offline with only its public key.
    let size = all_events(&d).await.len() as u64;
    let mut d = d;
    d.pause().await;
    assert_eq!(verifies(&d), size);
}

/// Runs `breakglass audit show ARGS` as the sample auditor; its stdout lines.
async fn audit_show(d: &TestDaemon, args: &[&str]) -> Vec<String> {
    let args: Vec<&str> = ["audit", "show"].iter().chain(args).copied().collect();
    d.cli_ok("auditor", &args)
        .await
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_show_refused_lists_the_refusals_with_the_other_filters() {
    // Built before the daemon starts (the CLI runs as a child process below).
    breakglass_bin_built().await;
    let logdir = tempfile::tempdir().unwrap();
    let syslog = SyslogCapture::bind(logdir.path());
    let d = daemon(&syslog, |c| c).await;
    let keys = tempfile::tempdir().unwrap();
    let mallory = d.new_client("mallory", MALLORY);
    // A grant (not a refusal), a refused request by a known identity, one by an unknown
    // identity, and a refused approval.
    let pending = client(&d.target("sre"))
        .create_request(request(
            keys.path(),
            "bgdemo",
            STAGING,
            600,
            "INC-8 staging outage",
        ))
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
        .request_id;
    client(&d.target("sre"))
        .request_certificate(request(keys.path(), "root", "localhost", 600, "INC-8"))
        .await
        .unwrap_err();
    client(&mallory)
        .request_certificate(request(keys.path(), "bgdemo", "localhost", 600, "curious"))
        .await
        .unwrap_err();
    approve(&d.target("auditor"), &pending).await.unwrap_err();

    let all = audit_show(&d, &[]).await;
    assert!(
        all.iter().any(|l| l.contains(" request_created ")),
        "{all:#?}"
    );
    let refused = audit_show(&d, &["--refused"]).await;
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(
        refused[0].contains(" request_refused user:sre@example.com refusal=deny_rule identity=sre@example.com principals=root hosts=localhost")
            && refused[0].contains(" rule=no-root ")
            && refused[0].contains("reason=\"denied by policy rule `no-root` for root@localhost\""),
        "{}",
        refused[0]
    );
    assert!(
        refused[1].contains(" action_refused user:mallory@example.com refusal=unknown_identity ")
            && refused[1].contains(" action=RequestCertificate "),
        "{}",
        refused[1]
    );
    assert!(
        refused[2].contains(&format!(
            " action_refused user:auditor@example.com refusal=not_approver identity=auditor@example.com action=approve target={pending} "
        )),
        "{}",
        refused[2]
    );
    // With --requester, --since and --json like the other filters.
    let mine = audit_show(
        &d,
        &[
            "--refused",
            "--requester",
            MALLORY,
            "--since",
            "1h",
            "--json",
        ],
    )
    .await;
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let j: serde_json::Value = serde_json::from_str(&mine[0]).unwrap();
    assert_eq!(j["event"], "action_refused");
    assert_eq!(j["refusal"], "unknown_identity");
    assert_eq!(j["identity"], MALLORY);
    assert_eq!(j["action"], "RequestCertificate");
    assert!(
        audit_show(&d, &["--refused", "--since", "2999-01-01T00:00:00Z"])
            .await
            .is_empty()
    );
    // The refused approval belongs to the events of the request it named.
    let of_request = audit_show(&d, &["--refused", "--requester", "sre@example.com"]).await;
    assert_eq!(of_request.len(), 2, "{of_request:#?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_refusals_alert_once_and_are_recorded_up_to_the_hourly_limit() {
    away_from_an_hour_boundary().await;
    let hook = Hook::start(Answer::Ok).await;
    let logdir = tempfile::tempdir().unwrap();
    let syslog = SyslogCapture::bind(logdir.path());
    let noticedir = tempfile::tempdir().unwrap();
    let notices = SyslogCapture::bind(noticedir.path());
    let (url, notice_sock) = (hook.url.clone(), notices.path.display().to_string());
    let mut d = daemon(&syslog, move |c| {
        let c = c
            .replace("per_identity_per_hour = 60", "per_identity_per_hour = 5")
            .replace(
                "alert_threshold = 10",
                &format!("alert_threshold = 3\nwebhooks = [\"{url}\"]"),
            );
        format!("{c}\n[notifications]\nsyslog = true\nsyslog_socket = \"{notice_sock}\"\n")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let mallory = d.new_client("mallory", MALLORY);
    // Nothing lets mallory (unknown) in; the SRE is refused root by the deny rule.
    let refuse = |t: Target, principal: &str| {
        let r = request(keys.path(), principal, "localhost", 600, "let me in");
        async move { client(&t).request_certificate(r).await.unwrap_err() }
    };

    // The third refusal within the hour sends the alert.
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(refuse(mallory.clone(), "bgdemo").await);
    }
    let alert = hook
        .wait_for("refusal_threshold", "identity", MALLORY, TEN_S)
        .await;
    assert_eq!(alert["refusals"], 3);
    assert_eq!(
        (alert["threshold"].clone(), alert["limit"].clone()),
        (3.into(), 5.into())
    );
    assert_eq!(alert["kind"], "unknown_identity");
    assert_eq!(alert["action"], "RequestCertificate");
    assert_eq!(alert["reason"], answers[2].message());
    let events = all_events(&d).await;
    let third = alert["audit_index"].as_u64().unwrap() as usize;
    assert!(
        matches!(&events[third].kind, EventKind::ActionRefused(r) if r.identity == MALLORY),
        "{:?}",
        events[third]
    );
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .starts_with("mallory@example.com was refused 3 times since "),
        "{alert}"
    );

    // Five are recorded one by one; the sixth records the limit; the rest nothing. Every
    // one is refused, with the same answer.
    for _ in 0..6 {
        answers.push(refuse(mallory.clone(), "bgdemo").await);
    }
    assert_eq!(answers.len(), 9);
    for a in &answers {
        assert_eq!(a.code(), Code::PermissionDenied);
        assert_eq!(a.message(), answers[0].message());
    }
    let events = all_events(&d).await;
    let refused: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ActionRefused(r) if r.identity == MALLORY))
        .collect();
    assert_eq!(refused.len(), 5);
    let limited: Vec<(usize, &Event)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.kind, EventKind::RefusalsLimited(_)))
        .collect();
    assert_eq!(limited.len(), 1, "{limited:#?}");
    let (limit_index, limit_event) = limited[0];
    assert_eq!(limit_event.actor, Actor::Daemon);
    let EventKind::RefusalsLimited(l) = &limit_event.kind else {
        unreachable!()
    };
    assert_eq!((l.identity.as_str(), l.limit), (MALLORY, 5));
    assert_eq!(l.window_start.0 % 3_600_000, 0);
    assert_eq!(l.window_end.0, l.window_start.0 + 3_600_000);
    assert!(l.window_start <= limit_event.time && limit_event.time < l.window_end);
    // authpriv.warning = 84.
    let line = syslog
        .wait_for(
            &[&format!(" index={limit_index} "), "event=refusals_limited"],
            TEN_S,
        )
        .unwrap_or_else(|| panic!("{:#?}", syslog.lines()));
    assert!(line.starts_with("<84>"), "{line}");
    assert!(
        line.contains("identity=mallory@example.com") && line.contains("limit=5"),
        "{line}"
    );

    // Another identity has its own count and its own alert. Its alert's syslog line comes
    // after any further one of mallory's (one sender, in order): there is none.
    for _ in 0..3 {
        refuse(d.target("sre"), "root").await;
    }
    hook.wait_for("refusal_threshold", "identity", "sre@example.com", TEN_S)
        .await;
    notices
        .wait_for(
            &["event=refusal_threshold", "identity=sre@example.com"],
            TEN_S,
        )
        .unwrap_or_else(|| panic!("{:#?}", notices.lines()));
    let mallory_alerts = notices
        .lines()
        .iter()
        .filter(|l| {
            l.contains("event=refusal_threshold") && l.contains("identity=mallory@example.com")
        })
        .count();
    assert_eq!(mallory_alerts, 1, "{:#?}", notices.lines());
    let hooked = hook
        .events()
        .iter()
        .filter(|v| v["event"] == "refusal_threshold" && v["identity"] == MALLORY)
        .count();
    assert_eq!(hooked, 1);

    // The counts are state rebuilt from the log: after a restart, mallory's refusals in
    // this hour are still not recorded one by one, the SRE's still are (3 of 5 used).
    d.restart().await;
    let before = all_events(&d).await.len();
    let again = refuse(mallory.clone(), "bgdemo").await;
    assert_eq!(again.message(), answers[0].message());
    assert_eq!(all_events(&d).await.len(), before);
    refuse(d.target("sre"), "root").await;
    let new = new_events(&d, before).await;
    assert!(
        matches!(&new[..], [e] if matches!(&e.kind, EventKind::RequestRefused(r) if r.identity == "sre@example.com")),
        "{new:#?}"
    );
    let size = all_events(&d).await.len() as u64;
    d.pause().await;
    assert_eq!(verifies(&d), size);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_that_cannot_be_recorded_is_refused_all_the_same() {
    if !require_root("mounting a size-limited tmpfs for the audit log") {
        return;
    }
    away_from_an_hour_boundary().await;
    let mnt = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&mnt.path().join("small"), "2m");
    let audit_dir = fs.path().join("audit");
    let logdir = tempfile::tempdir().unwrap();
    let syslog = SyslogCapture::bind(logdir.path());
    let dir = audit_dir.display().to_string();
    let mut d = daemon(&syslog, move |c| {
        c.replace("dir = \"audit\"", &format!("dir = \"{dir}\""))
            .replace("per_identity_per_hour = 60", "per_identity_per_hour = 1000")
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let denied = || request(keys.path(), "root", "localhost", 600, "INC-9 root please");
    let sre = d.target("sre");
    let first = client(&sre)
        .request_certificate(denied())
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::PermissionDenied);
    let size = all_events(&d).await.len();

    // The disk fills up: the log cannot be written any more.
    let filler = fill(fs.path());
    let mut unrecorded = 0;
    for _ in 0..200 {
        let before = all_events(&d).await.len();
        let s = client(&sre)
            .request_certificate(denied())
            .await
            .unwrap_err();
        // Refused all the same, and the answer is the same as when it was recorded.
        assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
        assert_eq!(s.message(), first.message());
        if all_events(&d).await.len() == before {
            unrecorded += 1;
            break;
        }
    }
    assert_eq!(unrecorded, 1, "the full disk never refused an append");
    // Issuance fails closed meanwhile.
    let s = client(&sre)
        .request_certificate(request(
            keys.path(),
            "bgdemo",
            "localhost",
            600,
            "INC-9 look",
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("audit log cannot be written"), "{s:?}");

    // Space comes back: refusals are recorded again, and the log verifies.
    std::fs::remove_file(filler).unwrap();
    let before = all_events(&d).await.len();
    assert!(before > size);
    client(&sre)
        .request_certificate(denied())
        .await
        .unwrap_err();
    let new = new_events(&d, before).await;
    assert!(
        matches!(&new[..], [e] if matches!(e.kind, EventKind::RequestRefused(_))),
        "{new:#?}"
    );
    let size = all_events(&d).await.len() as u64;
    d.pause().await;
    assert_eq!(verified_size(&d, &audit_dir), size);
    drop(fs);
}
