//! A daemon restarted from a state snapshot serves the same views as before: the real
//! daemon in-process over mTLS, stopped gracefully (it writes `audit/state.snapshot`,
//! tied to the log's size and root) and started again on the same directory (it loads
//! the snapshot and replays only the events after it). A damaged snapshot is ignored and
//! the log replayed, to the same views. `audit show --grant` and `--since` are answered
//! by the daemon through its on-disk index, the same events as the whole log filtered
//! by the CLI. An emergency grant reviewed days after it was issued (and released from
//! memory by that review) is answered from the log.

use std::time::Duration;

use breakglass_ca::snapshot;
use breakglass_cli::approvals::{self, RequestMode, RequestResult};
use breakglass_cli::commands::RequestArgs;
use breakglass_cli::connect;
use breakglass_cli::error::CliError;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::{
    GetEntriesRequest, GrantRef, ListMyGrantsRequest, ListPendingRequest, ListReviewsRequest,
    RequestCertificateRequest, RequestRef, audit_client::AuditClient,
};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::ssh_keygen;

/// Everything a requester, an approver and an auditor see, as text.
async fn views(d: &TestDaemon, requests: &[String], grants: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut sre = connect::client(&d.target("sre")).unwrap();
    let mut approver = connect::client(&d.target("approver")).unwrap();
    for id in requests {
        let r = RequestRef {
            request_id: id.clone(),
        };
        let mut info = sre.get_request(r.clone()).await.unwrap().into_inner();
        info.seconds_left = 0;
        out.push(format!("{info:?}"));
        match sre.fetch(r).await {
            Ok(c) => out.push(format!("{:?}", c.into_inner())),
            Err(e) => out.push(format!("{:?} {}", e.code(), e.message())),
        }
    }
    for g in grants {
        let s = sre
            .get_grant_sessions(GrantRef {
                grant_id: g.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        out.push(format!("{s:?}"));
    }
    let mine = sre
        .list_my_grants(ListMyGrantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(format!("{mine:?}"));
    let mut pending = approver
        .list_pending(ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner();
    for p in &mut pending.requests {
        p.seconds_left = 0;
    }
    out.push(format!("{pending:?}"));
    let reviews = approver
        .list_reviews(ListReviewsRequest {
            include_reviewed: true,
        })
        .await
        .map(|r| format!("{:?}", r.into_inner()))
        .unwrap_or_else(|e| format!("{:?}", e.code()));
    out.push(reviews);
    for g in grants {
        out.push(d.cli_ok("auditor", &["audit", "show", "--grant", g]).await);
    }
    out.push(d.cli_ok("auditor", &["audit", "show"]).await);
    out
}

/// `breakglass request` with `mode`, its updates ignored.
async fn request(
    t: &Target,
    a: &RequestArgs,
    mode: RequestMode,
) -> Result<RequestResult, CliError> {
    approvals::request_live(t, a, mode, |_| {}).await
}

fn args(keys: &std::path::Path, host: &str) -> RequestArgs {
    RequestArgs {
        hosts: vec![host.into()],
        principals: vec!["bgdemo".into()],
        ttl: Duration::from_secs(600),
        reason: "INC-7 snapshot test".into(),
        command: None,
        source_addresses: vec![],
        public_key: Some(keys.join("id_ed25519.pub")),
        permit: vec![],
        add_to_agent: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_restarted_from_its_snapshot_serves_the_same_views() {
    let mut d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let mut requests = Vec::new();
    let mut grants = Vec::new();
    // Three certificates issued at once (tier `low`).
    for _ in 0..3 {
        let wait = RequestMode {
            no_wait: false,
            ..RequestMode::default()
        };
        match request(&d.target("sre"), &args(keys.path(), "localhost"), wait)
            .await
            .expect("issued")
        {
            RequestResult::Issued(o) => {
                requests.push(o.response.request_id.clone());
                grants.push(o.response.grant_id.clone());
            }
            RequestResult::Pending(i) => panic!("left pending: {}", i.request_id),
        }
    }
    // Two requests waiting for an approval (tier `elevated`); one is denied.
    let no_wait = RequestMode {
        no_wait: true,
        ..RequestMode::default()
    };
    for _ in 0..2 {
        match request(
            &d.target("sre"),
            &args(keys.path(), "web-1.staging.example"),
            no_wait,
        )
        .await
        .expect("created")
        {
            RequestResult::Pending(i) => requests.push(i.request_id.clone()),
            RequestResult::Issued(o) => panic!("issued at once: {}", o.response.grant_id),
        }
    }
    approvals::deny(&d.target("approver"), &requests[4], "not now")
        .await
        .expect("denied");

    let before = views(&d, &requests, &grants).await;

    // A graceful stop writes the snapshot at the log's size.
    d.pause().await;
    let snap_path = snapshot::path(&d.path().join("audit"));
    let bytes = std::fs::read(&snap_path).expect("a snapshot was written at shutdown");
    let key = std::fs::read_to_string(d.path().join("audit").join("log.pub")).expect("log.pub");
    let key = breakglass_proto::audit::NoteVerifier::parse(&key).expect("the log's key");
    let snap =
        snapshot::decode(&bytes, &key).expect("the snapshot decodes, signed by the log's key");
    // 3 x (created + issued), 2 created, 1 denied.
    assert!(snap.size >= 9, "snapshot at log size {}", snap.size);
    assert_eq!(snap.state.pending.len(), 1);
    assert_eq!(snap.state.grants.len(), 3);
    d.resume().await;
    let after = views(&d, &requests, &grants).await;
    assert_eq!(
        before, after,
        "views differ after a restart from the snapshot"
    );

    // A damaged snapshot is ignored: the log is replayed, the views are the same.
    d.pause().await;
    let mut damaged = std::fs::read(&snap_path).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x20;
    std::fs::write(&snap_path, &damaged).unwrap();
    d.resume().await;
    let replayed = views(&d, &requests, &grants).await;
    assert_eq!(before, replayed, "views differ after a full replay");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_show_by_grant_and_since_is_filtered_by_the_daemon() {
    let d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let wait = RequestMode::default();
    let mut grants = Vec::new();
    for _ in 0..4 {
        if let RequestResult::Issued(o) =
            request(&d.target("sre"), &args(keys.path(), "localhost"), wait)
                .await
                .expect("issued")
        {
            grants.push(o.response.grant_id.clone());
        }
    }
    assert_eq!(grants.len(), 4);
    // The daemon answers only the grant's events, with their leaf indices.
    let mut audit = AuditClient::new(connect::channel(&d.target("auditor")).unwrap());
    let size = audit
        .get_checkpoint(breakglass_proto::v1::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .size;
    let r = audit
        .get_entries(GetEntriesRequest {
            start: 0,
            end: size,
            grant: grants[2].clone(),
            since_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries.len(), 2, "its request and its issuance");
    assert_eq!(r.indices.len(), 2);
    assert_eq!(r.indices[1], r.indices[0] + 1);
    assert_eq!(r.next, size);
    // A malformed grant id is refused with the field named.
    let e = audit
        .get_entries(GetEntriesRequest {
            start: 0,
            end: size,
            grant: "g-nope".into(),
            since_ms: 0,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("grant"), "{}", e.message());

    // `audit show --grant` prints exactly the lines of the whole log filtered by the CLI.
    let all = d.cli_ok("auditor", &["audit", "show"]).await;
    let mine = d
        .cli_ok("auditor", &["audit", "show", "--grant", &grants[2]])
        .await;
    let expected: Vec<&str> = all
        .lines()
        .filter(|l| l.contains(&grants[2]) || mine.lines().any(|m| m == *l))
        .collect();
    assert_eq!(mine.lines().count(), 2, "{mine}");
    assert_eq!(mine.lines().collect::<Vec<_>>(), expected);
    // `--since` in the future: nothing; an hour ago: everything.
    let none = d
        .cli_ok(
            "auditor",
            &["audit", "show", "--since", "2100-01-01T00:00:00Z"],
        )
        .await;
    assert_eq!(none.trim(), "");
    let hour = d
        .cli_ok("auditor", &["audit", "show", "--since", "1h"])
        .await;
    assert_eq!(hour, all);
    d.stop().await;
}

/// No certificate text is kept in memory (it would cost more than the rest of a live
/// grant): `Fetch` and `WatchRequest` of a live certificate sign it again from its
/// recorded grant, and get the bytes issued, before and after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_certificate_is_fetched_and_watched_with_the_bytes_issued() {
    let mut d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let public_key = std::fs::read_to_string(keys.path().join("id_ed25519.pub")).unwrap();
    let mut sre = connect::client(&d.target("sre")).unwrap();
    let issued = sre
        .request_certificate(RequestCertificateRequest {
            public_key: public_key.trim().to_owned(),
            principals: vec!["bgdemo".into()],
            hosts: vec!["localhost".into()],
            ttl_seconds: 600,
            reason: "INC-8 fetch test".into(),
            ..Default::default()
        })
        .await
        .expect("issued at once (tier `low`)")
        .into_inner();
    assert!(
        issued
            .certificate
            .starts_with("ssh-ed25519-cert-v01@openssh.com ")
    );
    let r = RequestRef {
        request_id: issued.request_id.clone(),
    };
    let fetched = sre.fetch(r.clone()).await.unwrap().into_inner();
    assert_eq!(fetched.certificate, issued.certificate, "fetched bytes");
    assert_eq!(fetched, issued);
    let mut watch = sre.watch_request(r.clone()).await.unwrap().into_inner();
    let update = watch
        .message()
        .await
        .unwrap()
        .expect("an update for the issued request");
    assert_eq!(update.certificate.as_ref(), Some(&issued), "watched bytes");
    // From the snapshot after a graceful stop, and from a full replay.
    d.restart().await;
    let mut sre = connect::client(&d.target("sre")).unwrap();
    assert_eq!(sre.fetch(r.clone()).await.unwrap().into_inner(), issued);
    d.pause().await;
    std::fs::remove_file(snapshot::path(&d.path().join("audit"))).unwrap();
    d.resume().await;
    let mut sre = connect::client(&d.target("sre")).unwrap();
    assert_eq!(sre.fetch(r).await.unwrap().into_inner(), issued);
}

/// An emergency grant issued three days ago (written into the log while the daemon was
/// stopped: its API stamps events with the time of the call), reviewed now over mTLS. The
/// review releases the grant from memory (reviewed, out of the day's emergency count,
/// its certificate long expired); the reviewer still gets the reviewed grant back, the
/// review list shows it, and a second review says who reviewed it.
#[tokio::test(flavor = "multi_thread")]
async fn an_emergency_reviewed_days_after_it_was_issued_is_answered() {
    use breakglass_proto::audit::event::{GrantIssued, RequestCreated};
    use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
    use breakglass_proto::profile::GrantId;
    use breakglass_proto::v1::ReviewRequest;
    use breakglass_proto::v1::break_glass_client::BreakGlassClient;

    let mut d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let key_line = std::fs::read_to_string(keys.path().join("id_ed25519.pub")).unwrap();
    let then = Timestamp::from_system_time(std::time::SystemTime::now()).0 - 3 * 86_400_000;
    let (request, grant) = (RequestId(0x0e1d), GrantId(0x0e1d));
    let sre = Actor::User("sre@example.com".into());
    let events = [
        EventKind::RequestCreated(RequestCreated {
            request_id: request,
            requester: "sre@example.com".into(),
            public_key: key_line.trim().into(),
            principals: vec!["bgdemo".into()],
            hosts: vec!["web-1.staging.example".into()],
            ttl_seconds: 600,
            reason: "INC-1 database down".into(),
            command: None,
            source_addresses: vec![],
            extensions: vec![],
            emergency: true,
            rule: "sre-staging".into(),
            tier: "elevated".into(),
            approvals_required: 0,
            expires_at: Timestamp(then + 3_600_000),
        }),
        EventKind::GrantIssued(Box::new(GrantIssued {
            request_id: request,
            grant_id: grant,
            serial: 0x0e1d,
            key_id: format!("breakglass/{grant}/sre@example.com"),
            ca_fingerprint: "SHA256:old".into(),
            key_fingerprint: "SHA256:old".into(),
            principals: vec!["bgdemo".into()],
            hosts: vec!["web-1.staging.example".into()],
            command: None,
            source_addresses: vec![],
            extensions: vec![],
            valid_after: then / 1000,
            valid_before: then / 1000 + 600,
            requester: "sre@example.com".into(),
            approvers: vec![],
            rule: "sre-staging".into(),
            tier: "elevated".into(),
            emergency: true,
        })),
    ];
    let events: Vec<Event> = events
        .into_iter()
        .map(|kind| Event::new(Timestamp(then), sre.clone(), kind))
        .collect();
    d.append_to_log(&events).await;

    let mut auditor =
        BreakGlassClient::new(connect::channel(&d.target("auditor")).expect("channel"));
    let review = ReviewRequest {
        grant_id: grant.to_string(),
        verdict: "ok".into(),
        note: "checked the incident".into(),
    };
    let item = auditor
        .review(review.clone())
        .await
        .expect("the review is answered")
        .into_inner();
    assert_eq!(item.grant_id, grant.to_string());
    assert_eq!(item.verdict, "ok");
    assert_eq!(item.reviewer, "auditor@example.com");
    assert_eq!(item.reason, "INC-1 database down");
    let listed = auditor
        .list_reviews(ListReviewsRequest {
            include_reviewed: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .items
            .iter()
            .any(|i| i.grant_id == grant.to_string() && i.verdict == "ok"),
        "{listed:?}"
    );
    let again = auditor.review(review).await.expect_err("reviewed once");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
    assert!(again.message().contains("auditor@example.com"), "{again:?}");
}
