//! Untrusted text against the running daemon over mTLS, and the `breakglass` binary's
//! printers: every kind of text field holding terminal escapes, CR, LF, bidi overrides,
//! line separators, NEXT LINE or the one-byte CSI is refused with `INVALID_ARGUMENT`
//! naming the field (host records: `REJECTED` naming it), nothing of it reaches the log;
//! and records that hold such text anyway (written before the rules existed) are shown
//! escaped by `pending`, `show`, `review list` and `audit show`.

use std::time::SystemTime;

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::event::{
    ApprovalAdded, EndReason, GrantIssued, RequestCreated, RequestDenied, SessionEnded,
    SessionOpened, SessionRef,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::text::{self, NASTY_SAMPLES};
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::host_record_result::Status as RecordStatus;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_proto::v1::{
    AppendHostRecordsRequest, ApproveRequest, CancelRequest, DenyRequest, HostRecord,
    ReportDrillRequest, RequestCertificateRequest, ReviewRequest, RevokeRequest, WhoAmIRequest,
};
use breakglass_tests::audit::all_events;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::{breakglass_bin_built, ssh_keygen};
use tonic::Code;

fn public_key(d: &TestDaemon) -> String {
    let path = d.path().join("keys/id_ed25519.pub");
    if !path.exists() {
        std::fs::create_dir_all(d.path().join("keys")).unwrap();
        ssh_keygen(&d.path().join("keys"), "id_ed25519", &["-t", "ed25519"]);
    }
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn client(t: &Target) -> BreakGlassClient<breakglass_cli::connect::Channel> {
    BreakGlassClient::new(connect::channel(t).unwrap())
}

/// A request the dev policy accepts (tier `critical`: it waits for two approvals).
fn valid_request(d: &TestDaemon) -> RequestCertificateRequest {
    certificate_request(
        &public_key(d),
        "bgdemo",
        "db-1.prod.example",
        600,
        "INC-4411 primary down",
    )
}

/// `r` must be refused with INVALID_ARGUMENT whose message names `field` (and holds no
/// hazard itself).
fn refused<T: std::fmt::Debug>(
    what: &str,
    field: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
) {
    let s = r.expect_err(&format!("{what}: accepted"));
    assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
    assert!(
        s.message().starts_with(&format!("{field}: ")),
        "{what}: the message does not name {field}: {}",
        s.message()
    );
    assert!(
        !s.message().chars().any(text::is_hazard),
        "{what}: {:?}",
        s.message()
    );
}

fn host_record(user: &str, rhost: &str, reason: &str, detail: &str, key_id: &str) -> HostRecord {
    let session = "localhost-g-00000000000000ff-42-1700000000000".to_owned();
    HostRecord {
        record_id: format!("{session}-deny"),
        session,
        event: "deny".into(),
        time: 1_700_000_000,
        host: "localhost".into(),
        user: user.into(),
        grant: "g-00000000000000ff".into(),
        serial: 1,
        rhost: rhost.into(),
        pid: 42,
        start: 1_700_000_000,
        reason: reason.into(),
        detail: detail.into(),
        key_id: key_id.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_text_field_with_hazards_is_refused_naming_the_field() {
    let d = TestDaemon::start().await;
    let sre = d.target("sre");
    let approver = d.target("approver");
    let auditor = d.target("auditor");
    // A real pending request, so that approve/deny/cancel reach their checks on it.
    let pending = client(&sre)
        .create_request(valid_request(&d))
        .await
        .expect("the valid request is accepted")
        .into_inner()
        .request
        .unwrap()
        .request_id;
    let before = all_events(&d).await.len();
    let key_line = public_key(&d);
    let some_grant = "g-00000000000000ff".to_owned();

    for nasty in NASTY_SAMPLES {
        let mid = format!("INC-4411 {nasty} end");
        let what = |field: &str| format!("{field} = {nasty:?}");

        let mut r = valid_request(&d);
        r.reason = mid.clone();
        refused(
            &what("reason"),
            "reason",
            client(&sre).create_request(r).await,
        );
        let mut r = valid_request(&d);
        r.force_command = format!("/usr/bin/psql {nasty}");
        refused(
            &what("force_command"),
            "force_command",
            client(&sre).request_certificate(r).await,
        );
        let mut r = valid_request(&d);
        r.public_key = format!("{key_line} laptop{nasty}x");
        refused(
            &what("public_key"),
            "public_key",
            client(&sre).create_request(r).await,
        );

        let r = ApproveRequest {
            request_id: pending.clone(),
            comment: mid.clone(),
        };
        refused(
            &what("comment"),
            "comment",
            client(&approver).approve(r).await,
        );
        let r = DenyRequest {
            request_id: pending.clone(),
            reason: mid.clone(),
        };
        refused(
            &what("deny reason"),
            "reason",
            client(&approver).deny(r).await,
        );
        let r = CancelRequest {
            request_id: pending.clone(),
            reason: mid.clone(),
        };
        refused(
            &what("cancel reason"),
            "reason",
            client(&sre).cancel(r).await,
        );
        let r = ReviewRequest {
            grant_id: some_grant.clone(),
            verdict: "ok".into(),
            note: mid.clone(),
        };
        refused(&what("note"), "note", client(&auditor).review(r).await);
        let r = ReportDrillRequest {
            grant_id: some_grant.clone(),
            passed: false,
            failed_step: format!("login{nasty}"),
            detail: "x".into(),
            ..Default::default()
        };
        refused(
            &what("failed_step"),
            "failed_step",
            client(&sre).report_drill(r).await,
        );
        let r = ReportDrillRequest {
            grant_id: some_grant.clone(),
            passed: false,
            failed_step: "login".into(),
            detail: mid.clone(),
            ..Default::default()
        };
        refused(
            &what("drill detail"),
            "detail",
            client(&sre).report_drill(r).await,
        );
        let mut revocations = RevocationsClient::new(connect::channel(&sre).unwrap());
        let r = RevokeRequest {
            target: Some(Selector::GrantId(some_grant.clone())),
            reason: mid.clone(),
        };
        refused(
            &what("revoke reason"),
            "reason",
            revocations.revoke(r).await,
        );
        let r = RevokeRequest {
            target: Some(Selector::Requester(format!("sre@example.com{nasty}"))),
            reason: "INC-4411".into(),
        };
        refused(&what("requester"), "requester", revocations.revoke(r).await);
        let r = RevokeRequest {
            target: Some(Selector::PublicKey(format!("{key_line} c{nasty}x"))),
            reason: "INC-4411".into(),
        };
        refused(
            &what("revoke public_key"),
            "public_key",
            revocations.revoke(r).await,
        );

        // Host records: each record is answered on its own; a bad one is REJECTED
        // naming the field (the host keeps it aside), the others are not held up.
        let records = vec![
            host_record(
                &format!("postgres{nasty}"),
                "10.0.0.1",
                "host_scope",
                "",
                "",
            ),
            host_record(
                "postgres",
                &format!("10.0.0.1{nasty}"),
                "host_scope",
                "",
                "",
            ),
            host_record(
                "postgres",
                "10.0.0.1",
                &format!("host_scope{nasty}"),
                "",
                "",
            ),
            host_record("postgres", "10.0.0.1", "host_scope", &mid, ""),
            host_record("postgres", "10.0.0.1", "host_scope", "", &mid),
        ];
        let results = HostAgentClient::new(connect::channel(&d.target("host")).unwrap())
            .append_host_records(AppendHostRecordsRequest { records })
            .await
            .expect("the call itself succeeds")
            .into_inner()
            .results;
        for (r, field) in results
            .iter()
            .zip(["user", "rhost", "reason", "detail", "key_id"])
        {
            assert_eq!(r.status(), RecordStatus::Rejected, "{}: {r:?}", what(field));
            assert!(
                r.error.starts_with(&format!("{field}: ")),
                "{}: {r:?}",
                what(field)
            );
            assert!(!r.error.chars().any(text::is_hazard), "{r:?}");
        }
    }
    // Nothing of it reached the log.
    let events = all_events(&d).await;
    assert_eq!(events.len(), before, "{:#?}", &events[before..]);

    // Ordinary text in every script still passes.
    let mut r = valid_request(&d);
    r.reason = "INC-4411 «primaire» en panne — 主库宕机 🚨 \"quoted\" C:\\temp".into();
    client(&sre)
        .create_request(r)
        .await
        .expect("ordinary text accepted");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_with_control_characters_is_not_authenticated() {
    let d = TestDaemon::start().await;
    let evil = d.new_client("evil", "spiffe://corp/sre\u{1b}[2J");
    let s = client(&evil)
        .who_am_i(WhoAmIRequest {})
        .await
        .expect_err("a SAN with an escape sequence is not an identity");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("control character"), "{s:?}");
    assert!(!s.message().chars().any(text::is_hazard), "{s:?}");
    d.stop().await;
}

fn now_ms() -> u64 {
    Timestamp::from_system_time(SystemTime::now()).0
}

/// Events as an older daemon (or a tampered config) may have recorded them: every text
/// field holds `nasty`. One pending request of tier `critical` with one approval, one
/// denied request, and one emergency grant of tier `elevated` with a host session.
fn old_events(nasty: &str, n: u64, key_line: &str) -> Vec<Event> {
    let now = now_ms();
    let sre = Actor::User("sre@example.com".into());
    let approver = Actor::User("approver@example.com".into());
    let created = |id: u64, tier: &str, required: u32, emergency: bool| {
        EventKind::RequestCreated(RequestCreated {
            request_id: RequestId(id),
            requester: "sre@example.com".into(),
            public_key: key_line.into(),
            principals: vec!["bgdemo".into()],
            hosts: vec!["db-1.prod.example".into()],
            ttl_seconds: 600,
            reason: format!("INC-{n} {nasty} reason"),
            command: Some(format!("/usr/bin/psql {nasty}")),
            source_addresses: vec![],
            extensions: vec![],
            emergency,
            rule: "sre-prod".into(),
            tier: tier.into(),
            approvals_required: required,
            expires_at: Timestamp(now + 3_600_000),
        })
    };
    let session = SessionRef {
        record_id: format!("localhost-g-{n:016x}-7-1-open"),
        host: "localhost".into(),
        grant_id: GrantId(n),
        serial: 9000 + n,
        principal: "bgdemo".into(),
        session_id: format!("localhost-{nasty}-7"),
    };
    let kinds = vec![
        created(0x100 + n, "critical", 2, false),
        EventKind::ApprovalAdded(ApprovalAdded {
            request_id: RequestId(0x100 + n),
            comment: format!("looks fine {nasty} ok"),
        }),
        created(0x200 + n, "critical", 2, false),
        EventKind::RequestDenied(RequestDenied {
            request_id: RequestId(0x200 + n),
            reason: format!("use the runbook {nasty} instead"),
        }),
        created(0x300 + n, "elevated", 0, true),
        EventKind::GrantIssued(Box::new(GrantIssued {
            request_id: RequestId(0x300 + n),
            grant_id: GrantId(n),
            serial: 9000 + n,
            key_id: format!("breakglass/g-{n:016x}/sre@example.com"),
            ca_fingerprint: "SHA256:old".into(),
            key_fingerprint: "SHA256:old".into(),
            principals: vec!["bgdemo".into()],
            hosts: vec!["web-1.staging.example".into()],
            command: None,
            source_addresses: vec![],
            extensions: vec![],
            valid_after: now / 1000 - 60,
            valid_before: now / 1000 + 900,
            requester: "sre@example.com".into(),
            approvers: vec![],
            rule: "sre-staging".into(),
            tier: "elevated".into(),
            emergency: true,
        })),
        EventKind::SessionOpened(SessionOpened {
            session: session.clone(),
            remote_addr: format!("10.0.0.1{nasty}"),
        }),
        EventKind::SessionEnded(SessionEnded {
            session: SessionRef {
                record_id: format!("localhost-g-{n:016x}-7-1-forced_end"),
                ..session
            },
            reason: EndReason::Denied,
            detail: format!("denied {nasty} detail"),
            recording: None,
        }),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let actor = if i == 1 || i == 3 { &approver } else { &sre };
            let actor = match &k {
                EventKind::SessionOpened(_) | EventKind::SessionEnded(_) => {
                    Actor::Host("host://localhost".into())
                }
                _ => actor.clone(),
            };
            Event::new(Timestamp(now), actor, k)
        })
        .collect()
}

/// No hazard on any line (lines end in '\n' only), and every `nasty` text is there, escaped.
fn shown_escaped(what: &str, out: &str, nasties: &[&str]) {
    for line in out.split('\n') {
        assert!(
            !line.chars().any(text::is_hazard),
            "{what} printed a hazard: {line:?}\n{out}"
        );
    }
    for nasty in nasties {
        let e = text::escape(nasty);
        assert!(out.contains(e.as_ref()), "{what} does not show {e}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_written_before_the_rules_are_printed_escaped() {
    // Built before the daemon starts (the CLI runs as a child process below).
    breakglass_bin_built().await;
    let mut d = TestDaemon::start().await;
    let key_line = public_key(&d);
    // Write the old events straight into the daemon's log while it is stopped: the
    // daemon's API no longer accepts them.
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for (n, nasty) in NASTY_SAMPLES.iter().enumerate() {
        let n = n as u64 + 1;
        events.extend(old_events(nasty, n, &key_line));
        ids.push((
            format!("r-{:016x}", 0x100 + n),
            format!("r-{:016x}", 0x200 + n),
        ));
    }
    d.append_to_log(&events).await;

    let pending = d.cli_ok("approver", &["pending"]).await;
    let reasons: Vec<String> = NASTY_SAMPLES
        .iter()
        .enumerate()
        .map(|(n, s)| format!("INC-{} {s} reason", n + 1))
        .collect();
    let reasons: Vec<&str> = reasons.iter().map(String::as_str).collect();
    shown_escaped("pending", &pending, &reasons);
    // Two lines per pending request, whatever its reason holds.
    assert_eq!(
        pending.lines().count(),
        2 * NASTY_SAMPLES.len(),
        "{pending}"
    );

    for (nasty, (pending_id, denied_id)) in NASTY_SAMPLES.iter().zip(&ids) {
        let show = d.cli_ok("approver", &["show", pending_id]).await;
        shown_escaped(
            "show (pending)",
            &show,
            &[
                &format!("/usr/bin/psql {nasty}"),
                &format!("looks fine {nasty} ok"),
            ],
        );
        let show = d.cli_ok("sre", &["show", denied_id]).await;
        shown_escaped(
            "show (denied)",
            &show,
            &[&format!("use the runbook {nasty} instead")],
        );
    }

    let reviews = d.cli_ok("auditor", &["review", "list"]).await;
    let mut expected = Vec::new();
    for nasty in NASTY_SAMPLES {
        expected.push(format!("10.0.0.1{nasty}"));
        expected.push(format!("localhost-{nasty}-7"));
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    shown_escaped("review list", &reviews, &expected);
    // Three lines per grant and one per session: nothing forged.
    assert_eq!(
        reviews.lines().count(),
        4 * NASTY_SAMPLES.len(),
        "{reviews}"
    );

    let audit = d.cli_ok("auditor", &["audit", "show"]).await;
    let mut expected = Vec::new();
    for nasty in NASTY_SAMPLES {
        expected.push(format!("denied {nasty} detail"));
        expected.push(format!("looks fine {nasty} ok"));
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    shown_escaped("audit show", &audit, &expected);
    assert_eq!(
        audit.lines().count(),
        all_events(&d).await.len(),
        "one line per event:\n{audit}"
    );
    // `audit show --json`: the exact text comes back from the JSON, and the bytes hold no hazard.
    let json = d.cli_ok("auditor", &["audit", "show", "--json"]).await;
    shown_escaped("audit show --json", &json, &[]);
    let details: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["detail"].as_str().map(str::to_owned))
        .collect();
    for nasty in NASTY_SAMPLES {
        assert!(
            details.contains(&format!("denied {nasty} detail")),
            "{details:?}"
        );
    }
    d.stop().await;
}
