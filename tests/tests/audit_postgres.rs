//! One daemon serving from PostgreSQL (`[audit] backend = "postgres"`), over real mTLS
//! sockets against a throw-away cluster: every certificate's grant is in the database
//! before the answer; while the database is down nothing is issued (UNAVAILABLE) and reads
//! keep working; once it is back, issuance resumes by itself; a restarted daemon goes on
//! from the database; the exported log verifies offline with every grant in it once.
//! Three daemons on one database serve 64 concurrent requesters into one log: dense
//! indices, every daemon follows it to its end, and every certificate's grant is in it
//! exactly once.

use std::time::Duration;

use breakglass_cli::connect;
use breakglass_cli::connect::Channel;
use breakglass_proto::audit::verify_dir;
use breakglass_proto::v1::GetCheckpointRequest;
use breakglass_proto::v1::RequestCertificateRequest;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_test_support::postgres::PgCluster;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::ssh_keygen;
use tonic::Code;

fn request(public_key: &std::path::Path) -> RequestCertificateRequest {
    let key = std::fs::read_to_string(public_key).unwrap();
    certificate_request(&key, "bgdemo", "localhost", 600, "INC-4411 primary down")
}

async fn log_size(d: &TestDaemon) -> u64 {
    let mut a = AuditClient::new(connect::channel(&d.target("auditor")).unwrap());
    a.get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("the checkpoint is served from the mirror")
        .into_inner()
        .size
}

async fn issue(c: &mut BreakGlassClient<Channel>, key: &std::path::Path) -> u64 {
    c.request_certificate(request(key))
        .await
        .expect("issued")
        .into_inner()
        .serial
}

/// The dev config with `[audit] backend = "postgres"` on `url`; with `keys_of`, the CA and
/// audit keys of that daemon's directory (every daemon of one log has the same keys).
fn on_postgres(config: String, url: &str, keys_of: Option<&std::path::Path>) -> String {
    let mut c = config.replacen("[audit]\n", "[audit]\nbackend = \"postgres\"\n", 1);
    if let Some(dir) = keys_of {
        c = c
            .replacen(
                "signing_key = \"ssh_ca\"",
                &format!("signing_key = \"{}\"", dir.join("ssh_ca").display()),
                1,
            )
            .replacen(
                "key = \"audit_key.pem\"",
                &format!("key = \"{}\"", dir.join("audit_key.pem").display()),
                1,
            );
    }
    format!(
        "{c}\n[postgres]\nurl = \"{url}\"\ntls = \"disable\"\nconnect_timeout = \"2s\"\n\
         statement_timeout = \"2s\"\n"
    )
}

/// The serials of every grant in the exported log `dir`, in log order.
fn grants_in(dir: &std::path::Path, verifier: &breakglass_proto::audit::NoteVerifier) -> Vec<u64> {
    let mut serials = Vec::new();
    breakglass_proto::audit::scan_log(dir, verifier, &Default::default(), |e| {
        let ev = breakglass_proto::audit::Event::decode(e.leaf).map_err(|d| d.to_string())?;
        if let breakglass_proto::audit::EventKind::GrantIssued(g) = ev.kind {
            serials.push(g.serial);
        }
        Ok(())
    })
    .expect("the exported log scans");
    serials
}

/// Waits (at most 2 s) until daemon `d` lists request `id` as pending: it has caught up with
/// the batch of the daemon that created it.
async fn wait_until_pending_on(d: &TestDaemon, id: &str) {
    for _ in 0..100 {
        let list = breakglass_cli::approvals::pending(&d.target("approver"))
            .await
            .unwrap();
        if list.iter().any(|i| i.request_id == id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the daemon never saw request {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_on_one_database_serve_64_concurrent_requesters_into_one_log() {
    if !PgCluster::available("three daemons on a throw-away PostgreSQL cluster") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    // Each daemon's syslog goes to a socket of its own, read as it comes (the kernel
    // queues few datagrams).
    let dir = tempfile::tempdir().unwrap();
    let syslog_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sinks: Vec<_> = (0..3)
        .map(|n| {
            let path = dir.path().join(format!("syslog-{n}.sock"));
            let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let (lines, reading) = (syslog_lines.clone(), reading.clone());
            let reader = std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                        lines.lock().unwrap().push(line);
                    }
                }
            });
            (path, reader)
        })
        .collect();
    let syslog_to = |c: String, n: usize| {
        c.replacen(
            "syslog_socket = \"/dev/log\"",
            &format!("syslog_socket = \"{}\"", sinks[n].0.display()),
            1,
        )
    };
    let first = TestDaemon::start_with(|c| on_postgres(syslog_to(c, 0), &url, None)).await;
    let keys = first.path().to_owned();
    let second = TestDaemon::start_with(|c| on_postgres(syslog_to(c, 1), &url, Some(&keys))).await;
    let third = TestDaemon::start_with(|c| on_postgres(syslog_to(c, 2), &url, Some(&keys))).await;
    let daemons = [&first, &second, &third];

    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let clients: Vec<_> = daemons
        .iter()
        .map(|d| connect::client(&d.target("sre")).unwrap())
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..64 {
        let mut c = clients[n % 3].clone();
        let public = public.clone();
        tasks.spawn(async move { issue(&mut c, &public).await });
    }
    let mut received = Vec::new();
    while let Some(serial) = tasks.join_next().await {
        received.push(serial.expect("requester task"));
    }
    assert_eq!(received.len(), 64);

    // Every daemon follows the one log to its end.
    let size: u64 = cluster.psql("SELECT size FROM audit_head").parse().unwrap();
    for d in daemons {
        let mut seen = 0;
        for _ in 0..100 {
            seen = log_size(d).await;
            if seen == size {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen, size, "a daemon did not follow the database's log");
    }
    assert_eq!(
        cluster.psql("SELECT count(*), coalesce(max(idx) + 1, 0) FROM audit_entries"),
        format!("{size}|{size}"),
        "dense indices"
    );

    // One signed log: it verifies, and every certificate's grant is in it exactly once.
    let copy = dir.path().join("log");
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: first.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.clone(),
    })
    .await
    .expect("audit export");
    let verifier =
        breakglass_ca::audit::load_audit_key(&keys.join("audit_key.pem"), "breakglass-ca/audit/v1")
            .unwrap()
            .verifier();
    let report = verify_dir(&copy, &verifier, None).unwrap();
    assert_eq!(report.summary.size, size);
    let mut in_log = grants_in(&copy, &verifier);
    in_log.sort_unstable();
    received.sort_unstable();
    assert_eq!(in_log, received, "each received certificate's grant, once");

    // Syslog: each daemon writes the events it appended, so the three together write each
    // certificate's grant once (and not three times).
    let grant_indices = || -> Vec<u64> {
        let lines = syslog_lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains("event=grant_issued"))
            .map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("index="))
                    .and_then(|i| i.parse().ok())
                    .unwrap_or_else(|| panic!("a syslog line without its index: {l}"))
            })
            .collect()
    };
    for _ in 0..100 {
        if grant_indices().len() >= received.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A little longer: a line written twice would come now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    for (_, reader) in sinks {
        reader.join().unwrap();
    }
    let mut grant_lines = grant_indices();
    grant_lines.sort_unstable();
    let lines = grant_lines.len();
    grant_lines.dedup();
    assert_eq!(lines, grant_lines.len(), "an event written to syslog twice");
    assert_eq!(lines, received.len(), "each grant written to syslog once");

    // `breakglass audit verify --remote` against any daemon verifies the whole log: the
    // entries all three daemons wrote (64 grants, a third from each), under one checkpoint.
    let log_pub = keys.join("log.pub");
    for (n, d) in daemons.iter().enumerate() {
        let report =
            breakglass_cli::audit::verify_remote(&d.target("auditor"), Some(&log_pub), None, None)
                .await
                .unwrap_or_else(|e| panic!("audit verify --remote against daemon {n}: {e}"));
        assert!(
            report.contains(&format!("checkpoint: {size} events")),
            "daemon {n}: {report}"
        );
        assert!(
            report.contains(&format!("grant_issued {}", received.len())),
            "daemon {n} serves every daemon's grants: {report}"
        );
        // The same through the command line (`--key` is the log's key there).
        let cfg = d.client_config(&format!("auditor-{n}"), "auditor");
        let (cfg_s, key_s) = (cfg.display().to_string(), log_pub.display().to_string());
        let argv = [
            "breakglass",
            "--config",
            &cfg_s,
            "audit",
            "verify",
            "--remote",
            "--key",
            &key_s,
        ];
        breakglass_cli::cli::run(
            <breakglass_cli::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("breakglass audit verify --remote against daemon {n}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_daemon_serves_from_postgres_fails_closed_while_it_is_down_and_resumes() {
    if !PgCluster::available("a daemon serving from a throw-away PostgreSQL cluster") {
        return;
    }
    let mut cluster = PgCluster::start();
    let url = cluster.url();
    let mut d = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let mut c = connect::client(&d.target("sre")).unwrap();

    let mut serials = Vec::new();
    for _ in 0..10 {
        serials.push(issue(&mut c, &public).await);
    }
    let size = log_size(&d).await;
    assert_eq!(
        cluster.psql("SELECT size FROM audit_head"),
        size.to_string(),
        "the database holds what the daemon acknowledged"
    );
    assert_eq!(
        cluster.psql("SELECT count(*), coalesce(max(idx) + 1, 0) FROM audit_entries"),
        format!("{size}|{size}"),
        "dense indices"
    );

    // The database down: nothing issued, told UNAVAILABLE; reads still answered.
    cluster.primary.stop("immediate");
    for _ in 0..3 {
        let e = c
            .request_certificate(request(&public))
            .await
            .expect_err("no certificate without its record");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("PostgreSQL"), "{}", e.message());
    }
    assert_eq!(log_size(&d).await, size, "reads keep working");

    // Back: issuance resumes by itself (the writer reconnects).
    cluster.primary.start();
    let mut resumed = None;
    for _ in 0..50 {
        match c.request_certificate(request(&public)).await {
            Ok(r) => {
                resumed = Some(r.into_inner().serial);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    serials.push(resumed.expect("issuance resumed once the database was back"));

    // A restart goes on from the database and its mirror.
    d.restart().await;
    let mut c = connect::client(&d.target("sre")).unwrap();
    serials.push(issue(&mut c, &public).await);
    let size = log_size(&d).await;
    assert_eq!(
        cluster.psql("SELECT size FROM audit_head"),
        size.to_string()
    );

    // The database's log, exported, verifies offline; every certificate's grant is in it
    // exactly once.
    let copy = tempfile::tempdir().unwrap();
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: d.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.path().join("log"),
    })
    .await
    .expect("audit export");
    let signer = breakglass_ca::audit::load_audit_key(
        &d.path().join("audit_key.pem"),
        "breakglass-ca/audit/v1",
    )
    .unwrap();
    let report = verify_dir(&copy.path().join("log"), &signer.verifier(), None).unwrap();
    assert_eq!(report.summary.size, size);
    let mut in_log = grants_in(&copy.path().join("log"), &signer.verifier());
    in_log.sort_unstable();
    serials.sort_unstable();
    assert_eq!(in_log, serials, "each received certificate's grant, once");
}

/// `pg_ctl restart -m immediate` under load on two daemons: every answer is a certificate
/// or UNAVAILABLE, issuance resumes by itself, and every certificate a requester received
/// has its grant in the log (which verifies), none twice.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_restarted_under_load_loses_no_certificate_record() {
    if !PgCluster::available("a PostgreSQL restart under load") {
        return;
    }
    let mut cluster = PgCluster::start();
    let url = cluster.url();
    let first = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = first.path().to_owned();
    let second = TestDaemon::start_with(|c| on_postgres(c, &url, Some(&keys))).await;
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let clients = [
        connect::client(&first.target("sre")).unwrap(),
        connect::client(&second.target("sre")).unwrap(),
    ];

    // 16 requesters, each until it got 6 certificates after the restart (bounded).
    let restarted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16 {
        let mut c = clients[n % 2].clone();
        let public = public.clone();
        let restarted = restarted.clone();
        tasks.spawn(async move {
            let (mut got, mut after, mut refused) = (Vec::new(), 0, 0);
            for _ in 0..2_000 {
                let was_restarted = restarted.load(std::sync::atomic::Ordering::SeqCst);
                match c.request_certificate(request(&public)).await {
                    Ok(r) => {
                        got.push(r.into_inner().serial);
                        if was_restarted {
                            after += 1;
                            if after == 6 {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (got, after, refused)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cluster_back = tokio::task::spawn_blocking(move || {
        cluster.primary.restart_immediate();
        cluster
    });
    cluster = cluster_back.await.unwrap();
    restarted.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut received = Vec::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let (got, after, no) = r.expect("requester task");
        assert_eq!(after, 6, "issuance did not resume for a requester");
        received.extend(got);
        refused += no;
    }
    eprintln!(
        "restart under load: {} certificates, {refused} answers UNAVAILABLE",
        received.len()
    );

    let copy = dir.path().join("log");
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: first.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.clone(),
    })
    .await
    .expect("audit export");
    let verifier =
        breakglass_ca::audit::load_audit_key(&keys.join("audit_key.pem"), "breakglass-ca/audit/v1")
            .unwrap()
            .verifier();
    verify_dir(&copy, &verifier, None).expect("the log verifies");
    let in_log = grants_in(&copy, &verifier);
    let mut unique = in_log.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), in_log.len(), "a grant twice in the log");
    for s in &received {
        assert!(
            unique.binary_search(s).is_ok(),
            "certificate {s} without its record"
        );
    }
    drop(cluster);
}

/// Two approvers approve the same one-approval request on two daemons at the same moment,
/// five times: each time exactly one approval counts and issues, the other is told the
/// request was already issued; the log holds one approval and one grant per request.
#[tokio::test(flavor = "multi_thread")]
async fn two_approvers_on_two_daemons_at_once_one_approval_counts() {
    use breakglass_cli::approvals::{self, RequestMode, RequestResult};

    if !PgCluster::available("approvals racing on two daemons on PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let a = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = a.path().to_owned();
    let b = TestDaemon::start_with(|c| on_postgres(c, &url, Some(&keys))).await;
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let args = breakglass_tests::revocation::request_args(
        &public,
        "bgdemo",
        "web-1.staging.example",
        600,
        "INC-7 staging queue stuck",
    );
    let mode = RequestMode {
        emergency: false,
        no_wait: true,
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = match approvals::request_live(&a.target("sre"), &args, mode, |_| {})
            .await
            .expect("request created")
        {
            RequestResult::Pending(i) => i.request_id,
            RequestResult::Issued(_) => panic!("issued without approval"),
        };
        // B knows the request (it follows the database) before the race.
        let mut known = false;
        for _ in 0..100 {
            let list = approvals::pending(&b.target("approver2")).await.unwrap();
            if list.iter().any(|i| i.request_id == id) {
                known = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(known, "daemon B never saw request {id}");
        let (ta, tb) = (a.target("approver"), b.target("approver2"));
        let (on_a, on_b) = tokio::join!(
            approvals::approve(&ta, &id, "from A"),
            approvals::approve(&tb, &id, "from B"),
        );
        let refused = match (&on_a, &on_b) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => e.to_string(),
            _ => panic!("not exactly one approval counted: A {on_a:?}, B {on_b:?}"),
        };
        assert!(refused.contains("already issued"), "{refused}");
        ids.push(id);
    }

    let copy = dir.path().join("log");
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: a.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.clone(),
    })
    .await
    .expect("audit export");
    let verifier =
        breakglass_ca::audit::load_audit_key(&keys.join("audit_key.pem"), "breakglass-ca/audit/v1")
            .unwrap()
            .verifier();
    let (mut approvals_seen, mut grants) = (Vec::new(), Vec::new());
    breakglass_proto::audit::scan_log(&copy, &verifier, &Default::default(), |e| {
        match breakglass_proto::audit::Event::decode(e.leaf)
            .map_err(|d| d.to_string())?
            .kind
        {
            breakglass_proto::audit::EventKind::ApprovalAdded(x) => {
                approvals_seen.push(x.request_id.to_string());
            }
            breakglass_proto::audit::EventKind::GrantIssued(g) => {
                grants.push(g.request_id.to_string());
            }
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    for id in &ids {
        assert_eq!(
            approvals_seen.iter().filter(|r| *r == id).count(),
            1,
            "approvals of {id}"
        );
        assert_eq!(
            grants.iter().filter(|r| *r == id).count(),
            1,
            "grants of {id}"
        );
    }
}

/// The elevated tier's emergency cap (2 a day per person) hit by 10 simultaneous
/// emergency requests spread over three daemons: exactly 2 are issued at once, the rest
/// wait for approval.
#[tokio::test(flavor = "multi_thread")]
async fn the_emergency_cap_holds_across_three_daemons() {
    use breakglass_cli::approvals::{self, RequestMode, RequestResult};

    if !PgCluster::available("an emergency cap across three daemons on PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let first = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = first.path().to_owned();
    let second = TestDaemon::start_with(|c| on_postgres(c, &url, Some(&keys))).await;
    let third = TestDaemon::start_with(|c| on_postgres(c, &url, Some(&keys))).await;
    let targets = [
        first.target("sre"),
        second.target("sre"),
        third.target("sre"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let args = breakglass_tests::revocation::request_args(
        &public,
        "bgdemo",
        "web-1.staging.example",
        600,
        "INC-11 site down, nobody answers",
    );
    let mode = RequestMode {
        emergency: true,
        no_wait: true,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10 {
        let (t, a) = (targets[n % 3].clone(), args.clone());
        tasks.spawn(async move { approvals::request_live(&t, &a, mode, |_| {}).await });
    }
    let (mut issued, mut pending) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap().expect("an emergency request is answered") {
            RequestResult::Issued(o) => {
                assert!(o.response.emergency);
                issued += 1;
            }
            RequestResult::Pending(_) => pending += 1,
        }
    }
    assert_eq!((issued, pending), (2, 8));
    drop(cluster);
}

/// Failover: the primary, with a synchronous streaming replica, crashes under a daemon
/// that issued certificates; the replica is promoted; the daemon finds it through the
/// multi-host URL (`target_session_attrs=read-write`) and goes on, and every certificate
/// acknowledged before the crash has its grant in the promoted database's log.
#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_synchronous_replica_takes_over_with_nothing_acknowledged_lost() {
    if !PgCluster::available("failover to a promoted PostgreSQL replica") {
        return;
    }
    let mut cluster = PgCluster::start();
    let mut replica = cluster.replica("standby1");
    cluster.synchronous("standby1");
    let url = cluster.url_of(&[&cluster.primary, &replica]);
    let d = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let mut c = connect::client(&d.target("sre")).unwrap();
    let mut received = Vec::new();
    for _ in 0..10 {
        received.push(issue(&mut c, &public).await);
    }

    let (cluster, replica) = tokio::task::spawn_blocking(move || {
        cluster.primary.stop("immediate");
        replica.promote();
        // It inherited the primary's setting: no standby of its own to wait for.
        replica.set("synchronous_standby_names", "");
        (cluster, replica)
    })
    .await
    .unwrap();
    let mut resumed = false;
    for _ in 0..100 {
        match c.request_certificate(request(&public)).await {
            Ok(r) => {
                received.push(r.into_inner().serial);
                resumed = true;
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(resumed, "issuance did not resume on the promoted replica");
    for _ in 0..5 {
        received.push(issue(&mut c, &public).await);
    }
    assert_eq!(
        replica.psql("breakglass", "SELECT size FROM audit_head"),
        log_size(&d).await.to_string()
    );

    let copy = dir.path().join("log");
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: d.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.clone(),
    })
    .await
    .expect("audit export from the promoted replica");
    let verifier = breakglass_ca::audit::load_audit_key(
        &d.path().join("audit_key.pem"),
        "breakglass-ca/audit/v1",
    )
    .unwrap()
    .verifier();
    verify_dir(&copy, &verifier, None).expect("the log verifies");
    let mut in_log = grants_in(&copy, &verifier);
    in_log.sort_unstable();
    received.sort_unstable();
    assert_eq!(in_log, received, "every acknowledged grant, once");
    drop(d);
    // The replica's directory is inside the cluster's: stop it first.
    drop(replica);
    drop(cluster);
}

/// A requester waiting on daemon A gets the certificate once an approver approves on
/// daemon B (B's batch reaches A through LISTEN/NOTIFY); the time it took is printed.
#[tokio::test(flavor = "multi_thread")]
async fn a_requester_waiting_on_one_daemon_sees_an_approval_given_on_another() {
    use breakglass_cli::approvals::{self, RequestMode, RequestResult};

    if !PgCluster::available("an approval across two daemons on PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let a = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = a.path().to_owned();
    let b = TestDaemon::start_with(|c| on_postgres(c, &url, Some(&keys))).await;
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let args = breakglass_tests::revocation::request_args(
        &public,
        "bgdemo",
        "web-1.staging.example",
        600,
        "INC-7 staging queue stuck",
    );
    let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
    let target = a.target("sre");
    let waiting = tokio::spawn(async move {
        let r = approvals::request_live(&target, &args, RequestMode::default(), |info| {
            let _ = id_tx.send(info.request_id.clone());
        })
        .await;
        (r, std::time::Instant::now())
    });
    let id = tokio::time::timeout(Duration::from_secs(30), id_rx.recv())
        .await
        .expect("the request is created")
        .unwrap();
    wait_until_pending_on(&b, &id).await;
    let approved = approvals::approve(&b.target("approver"), &id, "on B")
        .await
        .expect("approved on B");
    let approved_at = std::time::Instant::now();
    assert!(!approved.grant_id.is_empty(), "{approved:?}");
    let (r, seen_at) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the requester on A got an answer")
        .unwrap();
    let RequestResult::Issued(o) = r.expect("the wait on A ends well") else {
        panic!("not issued");
    };
    assert_eq!(o.response.grant_id, approved.grant_id);
    eprintln!(
        "cross-daemon approval: the requester on A had the certificate {} ms after the \
         approval on B returned",
        seen_at.saturating_duration_since(approved_at).as_millis()
    );
    drop(cluster);
}

/// A cancel by the requester on daemon A racing an approval on daemon B, five times: one
/// outcome each time (cancelled, or issued), the other call told so, and the log records
/// the winner before anything of the loser's.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_on_one_daemon_racing_an_approval_on_another_has_one_outcome() {
    use breakglass_cli::approvals::{self, RequestMode, RequestResult};

    if !PgCluster::available("a cancel racing an approval on PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let a = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = a.path().to_owned();
    let b = TestDaemon::start_with(|c| on_postgres(c, &url, Some(&keys))).await;
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let args = breakglass_tests::revocation::request_args(
        &public,
        "bgdemo",
        "web-1.staging.example",
        600,
        "INC-7 staging queue stuck",
    );
    let mode = RequestMode {
        emergency: false,
        no_wait: true,
    };
    let (mut cancelled, mut approved) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let id = match approvals::request_live(&a.target("sre"), &args, mode, |_| {})
            .await
            .expect("request created")
        {
            RequestResult::Pending(i) => i.request_id,
            RequestResult::Issued(_) => panic!("issued without approval"),
        };
        wait_until_pending_on(&b, &id).await;
        let (ta, tb) = (a.target("sre"), b.target("approver"));
        let (cancel, approve) = tokio::join!(
            approvals::cancel(&ta, &id, "not needed any more"),
            approvals::approve(&tb, &id, "go"),
        );
        match (&cancel, &approve) {
            (Ok(_), Err(e)) => {
                assert!(e.to_string().contains("was cancelled"), "{e}");
                cancelled.push(id);
            }
            (Err(e), Ok(_)) => {
                assert!(e.to_string().contains("already issued"), "{e}");
                approved.push(id);
            }
            _ => panic!("not exactly one outcome: cancel {cancel:?}, approve {approve:?}"),
        }
    }
    eprintln!(
        "cancel vs approval: {} cancelled, {} approved",
        cancelled.len(),
        approved.len()
    );

    let copy = dir.path().join("log");
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: a.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.clone(),
    })
    .await
    .expect("audit export");
    let verifier =
        breakglass_ca::audit::load_audit_key(&keys.join("audit_key.pem"), "breakglass-ca/audit/v1")
            .unwrap()
            .verifier();
    // Per request, in log order: what settled it.
    let mut settled: Vec<(String, &'static str)> = Vec::new();
    breakglass_proto::audit::scan_log(&copy, &verifier, &Default::default(), |e| {
        use breakglass_proto::audit::EventKind as K;
        match breakglass_proto::audit::Event::decode(e.leaf)
            .map_err(|d| d.to_string())?
            .kind
        {
            K::RequestCancelled(x) => settled.push((x.request_id.to_string(), "cancelled")),
            K::ApprovalAdded(x) => settled.push((x.request_id.to_string(), "approved")),
            K::GrantIssued(g) => settled.push((g.request_id.to_string(), "issued")),
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    for id in &cancelled {
        let of: Vec<_> = settled
            .iter()
            .filter(|(r, _)| r == id)
            .map(|x| x.1)
            .collect();
        assert_eq!(of, ["cancelled"], "{id}");
    }
    for id in &approved {
        let of: Vec<_> = settled
            .iter()
            .filter(|(r, _)| r == id)
            .map(|x| x.1)
            .collect();
        assert_eq!(of, ["approved", "issued"], "{id}");
    }
}

/// Daemon B of the same log with daemon A's TLS files (`dir`: A's directory), so that one
/// client certificate and one CA certificate reach both, as in a real several-daemon set.
fn same_tls_as(config: String, dir: &std::path::Path) -> String {
    let mut c = config;
    for (key, file) in [
        ("tls_cert", "tls/server.pem"),
        ("tls_key", "tls/server-key.pem"),
        ("client_ca", "tls/ca.pem"),
        ("client_ca_key", "tls/ca-key.pem"),
    ] {
        c = c.replacen(
            &format!("{key} = \"{file}\""),
            &format!("{key} = \"{}\"", dir.join(file).display()),
            1,
        );
    }
    c
}

/// The CLI given two daemons of one log (`--server A --server B`): a requester waiting on
/// A (a real `breakglass-ca serve`) goes on waiting on B by request id when A is killed
/// (SIGKILL), and gets the certificate an approver gives through the same two addresses; a
/// new request then goes to B by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_moves_to_the_next_daemon_when_one_is_killed_and_resumes_its_wait() {
    use breakglass_cli::approvals::{self, RequestMode, RequestResult};
    use breakglass_cli::settings::Target;
    use breakglass_tests::ca_process::CaProcess;

    if !PgCluster::available("the CLI failing over between two daemons on PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let bin = tokio::task::spawn_blocking(breakglass_tests::breakglass_ca_bin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut a = CaProcess::init(bin, &dir.path().join("a")).unwrap();
    let text = std::fs::read_to_string(a.config()).unwrap();
    std::fs::write(a.config(), on_postgres(text, &url, None)).unwrap();
    a.start().await.expect("daemon A serves from PostgreSQL");
    let keys = a.path().to_owned();
    let b = TestDaemon::start_with(|c| same_tls_as(on_postgres(c, &url, Some(&keys)), &keys)).await;
    let both = |name: &str| match a.target(name) {
        Target::Tls {
            url,
            ca_cert,
            cert,
            key,
            server_name,
            ..
        } => Target::Tls {
            url,
            fallbacks: vec![format!("https://127.0.0.1:{}", b.port)],
            ca_cert,
            cert,
            key,
            server_name,
        },
        Target::Unix(_) => unreachable!("a TLS target"),
    };
    let (sre, approver) = (both("sre"), both("approver"));
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let args = breakglass_tests::revocation::request_args(
        &public,
        "bgdemo",
        "web-1.staging.example",
        600,
        "INC-9 primary gone",
    );
    let (id_tx, mut id_rx) = tokio::sync::mpsc::unbounded_channel();
    let (note_tx, mut note_rx) = tokio::sync::mpsc::unbounded_channel();
    let target = sre.clone();
    let waiting = tokio::spawn(async move {
        approvals::request_live_noting(
            &target,
            &args,
            RequestMode::default(),
            |info| {
                let _ = id_tx.send(info.request_id.clone());
            },
            |note| {
                let _ = note_tx.send(note.to_owned());
            },
        )
        .await
    });
    let id = tokio::time::timeout(Duration::from_secs(30), id_rx.recv())
        .await
        .expect("the request is created")
        .unwrap();
    // A dies while the requester waits on it.
    a.kill9();
    let lost = tokio::time::timeout(Duration::from_secs(30), note_rx.recv())
        .await
        .expect("the wait notices that A died")
        .unwrap();
    assert!(lost.contains("lost the connection"), "{lost}");
    let approved = approvals::approve(&approver, &id, "on B")
        .await
        .expect("approved: the CLI reaches B with A dead");
    let r = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the wait resumed on B and ended")
        .unwrap()
        .expect("the wait ends well");
    let RequestResult::Issued(o) = r else {
        panic!("not issued: {r:?}");
    };
    assert_eq!(o.response.grant_id, approved.grant_id);
    let resumed = note_rx.recv().await.expect("a note on resuming");
    assert!(resumed.contains("reconnected"), "{resumed}");

    // A new request goes to B by itself, and is recorded once.
    let before: u64 = cluster.psql("SELECT size FROM audit_head").parse().unwrap();
    let pending = approvals::request_live(
        &sre,
        &breakglass_tests::revocation::request_args(
            &public,
            "bgdemo",
            "web-1.staging.example",
            600,
            "INC-9 still down",
        ),
        RequestMode {
            emergency: false,
            no_wait: true,
        },
        |_| {},
    )
    .await
    .expect("a request through the CLI with A dead");
    assert!(matches!(pending, RequestResult::Pending(_)), "{pending:?}");
    let after: u64 = cluster.psql("SELECT size FROM audit_head").parse().unwrap();
    assert_eq!(after, before + 1, "the request is recorded once");
    b.stop().await;
    drop(cluster);
}

/// A join token given to two daemons of one log at the same moment (the same token in two
/// `host enroll` runs, one against each): one host is enrolled, the other is told the token
/// was used already. Three rounds.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_token_enrolls_one_host_even_when_two_daemons_take_it_at_once() {
    use breakglass_ca::admin::{self, AdminSocket, TokenCreateArgs};
    use breakglass_cli::host::enroll::{self, EnrollArgs};

    if !PgCluster::available("one join token raced on two daemons on PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let a = TestDaemon::start_with(|c| on_postgres(c, &url, None)).await;
    let keys = a.path().to_owned();
    let b = TestDaemon::start_with(|c| same_tls_as(on_postgres(c, &url, Some(&keys)), &keys)).await;
    // B serves with A's TLS files (its own tls/ca.pem is not used).
    let fp = a.tls_ca_fingerprint();
    for round in 0..3 {
        let created = admin::token_create(&TokenCreateArgs {
            host: format!("db-{round}"),
            ttl: None,
            count: 1,
            socket: AdminSocket {
                config: a.path().join(breakglass_ca::init::CONFIG_FILE),
                socket: Some(a.admin_socket.clone()),
            },
        })
        .await
        .expect("token create");
        let token = created.out.lines().next().expect("a token").to_owned();
        let (ha, hb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let args = |h: &tempfile::TempDir| EnrollArgs {
            token: token.clone(),
            ca_fingerprint: fp.clone(),
            dir: h.path().join("etc"),
            ca_keys: h.path().join("ca.pub"),
            krl: h.path().join("revoked.krl"),
            witness_state: h.path().join("witness"),
        };
        let (on_a, on_b) = (args(&ha), args(&hb));
        let (server_a, server_b) = (a.bare_server(), b.bare_server());
        let (ra, rb) = tokio::join!(
            enroll::enroll(&on_a, &server_a),
            enroll::enroll(&on_b, &server_b),
        );
        let (ok, refused) = match (&ra, &rb) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => (1, e.to_string()),
            _ => panic!("round {round}: not one enrollment: {ra:?} / {rb:?}"),
        };
        assert_eq!(ok, 1);
        assert!(
            refused.contains("was used already"),
            "round {round}: {refused}"
        );
    }
    a.stop().await;
    b.stop().await;
    drop(cluster);
}
