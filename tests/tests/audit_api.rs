//! The Audit and HostAgent APIs of an in-process daemon over real mTLS sockets: who may
//! read, proofs checked by independent implementations (`tlog_tiles`, `signed_note`),
//! `breakglass audit verify --remote`, host records exactly once and only for the host
//! itself, one syslog line per event, and state (grants, delivered records) surviving a
//! restart.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breakglass_cli::audit::{FilterArgs, format_event, verify_remote};
use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::Event;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::host_record_result::Status as RecordStatus;
use breakglass_proto::v1::{
    AppendHostRecordsRequest, GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest,
    GetInclusionProofRequest, HostRecord,
};
use breakglass_test_support::oracle::{TlogStore, tlog_hashes as hashes};
use breakglass_tests::audit::all_events;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::ssh_keygen;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{check_record, check_tree, record_hash, tree_hash};
use tonic::Code;

/// Issues one certificate as the sample SRE; returns (grant id, serial).
async fn issue(d: &TestDaemon, public_key: &str) -> (String, u64) {
    let mut c = BreakGlassClient::new(connect::channel(&d.target("sre")).unwrap());
    let r = c
        .request_certificate(certificate_request(
            public_key,
            "postgres",
            "localhost",
            600,
            "INC-9 audit test",
        ))
        .await
        .expect("certificate issued")
        .into_inner();
    (r.grant_id, r.serial)
}

fn public_key(dir: &Path) -> String {
    std::fs::read_to_string(ssh_keygen(dir, "id", &["-t", "ed25519"])).unwrap()
}

fn audit(t: &Target) -> AuditClient<breakglass_cli::connect::Channel> {
    AuditClient::new(connect::channel(t).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn api_checkpoint_entries_and_proofs_verify_with_independent_implementations() {
    let d = TestDaemon::start().await;
    let key = public_key(d.path());
    for _ in 0..5 {
        issue(&d, &key).await;
    }
    let mut a = audit(&d.target("auditor"));
    let cp = a
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cp.size, 10, "two events per issued certificate");
    // The verifier key is the one init wrote to log.pub.
    assert_eq!(
        cp.verifier_key,
        std::fs::read_to_string(d.path().join("log.pub"))
            .unwrap()
            .trim()
    );

    // signed_note checks the signature; tlog_tiles parses the body.
    let list = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&cp.verifier_key).unwrap(),
    )]);
    let note = Note::from_bytes(cp.checkpoint.as_bytes()).unwrap();
    let (verified, _) = note
        .verify(&list)
        .expect("signed_note verifies the checkpoint");
    assert_eq!(verified.len(), 1);
    let body = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    assert_eq!(body.size(), cp.size);
    let root = *body.hash();

    // tlog_tiles recomputes the root from the entries.
    let entries = a
        .get_entries(GetEntriesRequest {
            start: 0,
            end: cp.size,
            ..GetEntriesRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len() as u64, cp.size);
    let mut store = TlogStore::default();
    for (i, e) in entries.iter().enumerate() {
        store.push(i as u64, e);
        Event::decode(e).expect("every entry is a canonical event");
    }
    assert_eq!(tree_hash(cp.size, &store).unwrap(), root);

    // Every inclusion proof, and consistency from every older size, check with tlog_tiles.
    for i in 0..cp.size {
        let p = a
            .get_inclusion_proof(GetInclusionProofRequest {
                index: i,
                tree_size: cp.size,
            })
            .await
            .unwrap()
            .into_inner();
        check_record(
            &hashes(p.hashes),
            cp.size,
            root,
            i,
            record_hash(&entries[i as usize]),
        )
        .unwrap_or_else(|e| panic!("inclusion of {i}: {e:?}"));
    }
    for old in 1..cp.size {
        let p = a
            .get_consistency_proof(GetConsistencyProofRequest {
                old_size: old,
                new_size: cp.size,
            })
            .await
            .unwrap()
            .into_inner();
        let old_root = tree_hash(old, &store).unwrap();
        check_tree(&hashes(p.hashes.clone()), cp.size, root, old, old_root)
            .unwrap_or_else(|e| panic!("consistency {old}: {e:?}"));
        // A proof for another old root does not check.
        let wrong = record_hash(b"fork");
        assert!(check_tree(&hashes(p.hashes), cp.size, root, old, wrong).is_err());
    }

    // Beyond the log: refused with the reason.
    let e = a
        .get_entries(GetEntriesRequest {
            start: 0,
            end: cp.size + 1,
            ..GetEntriesRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("beyond the log"), "{}", e.message());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_reader_groups_may_read_the_log() {
    let d = TestDaemon::start().await;
    for who in ["sre", "host", "approver"] {
        let e = audit(&d.target(who))
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        assert!(
            e.message().contains("may not read the audit log")
                && e.message().contains("auditors, admins"),
            "{}",
            e.message()
        );
    }
    // An auditor over mTLS, root (group admins) over the admin socket.
    audit(&d.target("auditor"))
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap();
    audit(&d.admin())
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_verify_checks_everything_and_advances_the_saved_checkpoint() {
    let d = TestDaemon::start().await;
    let key = public_key(d.path());
    issue(&d, &key).await;
    let auditor = d.target("auditor");
    let saved = d.path().join("saved.checkpoint");
    let pub_key = d.path().join("log.pub");
    let report = verify_remote(&auditor, Some(&pub_key), None, Some(&saved))
        .await
        .unwrap();
    assert!(report.contains("OK: audit log"), "{report}");
    assert!(report.contains("checkpoint: 2 events"), "{report}");
    assert!(
        report.contains("saved the checkpoint of 2 events"),
        "{report}"
    );
    for _ in 0..3 {
        issue(&d, &key).await;
    }
    let report = verify_remote(&auditor, Some(&pub_key), Some(&saved), Some(&saved))
        .await
        .unwrap();
    assert!(
        report.contains("extends the saved checkpoint of 2 events"),
        "{report}"
    );
    assert!(report.contains("checkpoint: 8 events"), "{report}");
    assert!(
        std::fs::read_to_string(&saved).unwrap().contains("\n8\n"),
        "the saved checkpoint advanced"
    );

    // The same through the command line: `--key` is the log's key there, the client key
    // comes from the client config.
    let cfg = d.client_config("auditor-test", "auditor");
    let (cfg_s, key_s, saved_s) = (
        cfg.display().to_string(),
        pub_key.display().to_string(),
        saved.display().to_string(),
    );
    let argv = [
        "breakglass",
        "--config",
        &cfg_s,
        "audit",
        "verify",
        "--remote",
        "--key",
        &key_s,
        "--since",
        &saved_s,
    ];
    breakglass_cli::cli::run(
        <breakglass_cli::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap(),
    )
    .await
    .expect("breakglass audit verify --remote --key log.pub --since F");

    // A key that is not the log's: refused before anything is trusted.
    let elsewhere = tempfile::tempdir().unwrap();
    breakglass_ca::audit::generate_audit_key(
        &elsewhere.path().join("key.pem"),
        "breakglass-ca/audit/v1",
    )
    .unwrap();
    let other = elsewhere.path().join("log.pub");
    let e = verify_remote(&auditor, Some(&other), None, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is not the pinned key"), "{e}");
    assert_eq!(e.exit_code(), 65);

    // A saved checkpoint from a longer log (here: a forged size) is a rollback or a fork.
    let text = std::fs::read_to_string(&saved).unwrap();
    std::fs::write(&saved, text.replacen("\n8\n", "\n80\n", 1)).unwrap();
    let e = verify_remote(&auditor, Some(&pub_key), Some(&saved), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("saved checkpoint"), "{e}");
    d.stop().await;
}

fn record(host: &str, grant: &str, pid: u32, event: &str) -> HostRecord {
    let session = format!("{host}-{grant}-{pid}-1700000000000");
    HostRecord {
        record_id: format!("{session}-{event}"),
        session,
        event: event.into(),
        time: 1_700_000_000 + u64::from(event == "close"),
        host: host.into(),
        user: "postgres".into(),
        grant: grant.into(),
        serial: 1,
        rhost: "127.0.0.1".into(),
        pid,
        start: 1_700_000_000,
        ..Default::default()
    }
}

async fn append(
    t: &Target,
    records: Vec<HostRecord>,
) -> Result<Vec<(RecordStatus, bool)>, tonic::Status> {
    let mut c = HostAgentClient::new(connect::channel(t).unwrap());
    Ok(c.append_host_records(AppendHostRecordsRequest { records })
        .await?
        .into_inner()
        .results
        .iter()
        .map(|r| (r.status(), r.grant_known))
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn host_records_are_appended_once_only_for_the_host_itself_and_survive_a_restart() {
    let mut d = TestDaemon::start().await;
    let key = public_key(d.path());
    let (grant, _) = issue(&d, &key).await;
    let host = d.target("host"); // host://localhost, group hosts
    let open = record("localhost", &grant, 42, "open");
    let close = record("localhost", &grant, 42, "close");

    let r = append(&host, vec![open.clone(), close.clone()])
        .await
        .unwrap();
    assert_eq!(
        r,
        [
            (RecordStatus::Appended, true),
            (RecordStatus::Appended, true)
        ]
    );
    // A retry (lost answer): nothing appended twice, also within one call.
    let r = append(&host, vec![open.clone(), open.clone(), close.clone()])
        .await
        .unwrap();
    assert!(
        r.iter().all(|(s, _)| *s == RecordStatus::Duplicate),
        "{r:?}"
    );
    // Concurrent deliveries of one new record: exactly one appends.
    let warn = record("localhost", &grant, 42, "warn");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (h, w) = (host.clone(), warn.clone());
            tokio::spawn(async move { append(&h, vec![w]).await.unwrap()[0].0 })
        })
        .collect();
    let mut appended = 0;
    for t in tasks {
        if t.await.unwrap() == RecordStatus::Appended {
            appended += 1;
        }
    }
    assert_eq!(appended, 1);

    // Another host's session: rejected, nothing appended.
    let r = append(&host, vec![record("db-7", &grant, 43, "open")])
        .await
        .unwrap();
    assert_eq!(r[0].0, RecordStatus::Rejected);
    // Unknown hosts, people and the admin socket may not deliver at all.
    let stranger = d.new_client("db-9", "host://db-9");
    for t in [stranger, d.target("sre"), d.admin()] {
        let e = append(&t, vec![record("db-9", &grant, 44, "open")])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    // A session of a grant this CA never issued is logged, and flagged.
    let r = append(
        &host,
        vec![record("localhost", "g-00000000000000ff", 45, "open")],
    )
    .await
    .unwrap();
    assert_eq!(r, [(RecordStatus::Appended, false)]);

    let sessions = |events: &[Event]| events.iter().filter(|e| e.kind.session().is_some()).count();
    assert_eq!(sessions(&all_events(&d).await), 4);

    // Restart: the grant and the delivered record ids come back from the log.
    d.pause().await;
    d.resume().await;
    let r = append(&host, vec![open, close, warn]).await.unwrap();
    assert_eq!(r, [(RecordStatus::Duplicate, true); 3]);
    let events = all_events(&d).await;
    assert_eq!(sessions(&events), 4);
    let f = breakglass_cli::audit::Filter::new(&FilterArgs {
        grant: Some(grant.clone()),
        ..FilterArgs::default()
    })
    .unwrap();
    let mut f = f;
    events.iter().for_each(|e| f.observe(e));
    let shown: Vec<String> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| f.matches(e))
        .map(|(i, e)| format_event(i as u64, e, false))
        .collect();
    let names: Vec<&str> = shown.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(
        names,
        [
            "request_created",
            "grant_issued",
            "session_opened",
            "session_closed",
            "session_warned"
        ],
        "{shown:#?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_recorded_event_goes_to_syslog_as_one_key_value_line() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let p = sock_path.display().to_string();
    let d = TestDaemon::start_with(move |c| {
        c.replace(
            "syslog_socket = \"/dev/log\"",
            &format!("syslog_socket = \"{p}\""),
        )
    })
    .await;
    let key = public_key(d.path());
    let (grant, serial) = issue(&d, &key).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = format!("grant={grant} serial={serial}");
    loop {
        let got = lines.lock().unwrap().clone();
        if got
            .iter()
            .any(|l| l.contains("event=grant_issued index=1 ") && l.contains(&wanted))
        {
            let created = got
                .iter()
                .filter(|l| l.contains("event=request_created"))
                .collect::<Vec<_>>();
            assert_eq!(created.len(), 1, "{got:#?}");
            // authpriv (10) * 8 + notice (5) = 85; ident breakglass-ca.
            assert!(created[0].starts_with("<85>"), "{}", created[0]);
            assert!(created[0].contains("breakglass-ca["), "{}", created[0]);
            assert!(
                created[0].contains("actor=user:sre@example.com")
                    && created[0].contains("reason=\"INC-9 audit test\""),
                "{}",
                created[0]
            );
            break;
        }
        assert!(Instant::now() < deadline, "no grant_issued line: {got:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.stop().await;
}
