//! `breakglass-ca audit import` and `audit export` against a real, throw-away PostgreSQL
//! cluster: an embedded log of several segments and batches moves into an empty database
//! with the same root, dense indices and every batch's checkpoint; a second import is
//! refused; the export verifies offline (the verifier `breakglass audit verify` runs) with
//! the same root; a database whose entry was changed does not export; a wrong password is
//! told as an unreachable database.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use breakglass_ca::audit::{AuditConfig, AuditLog, load_audit_key};
use breakglass_ca::config::Config;
use breakglass_proto::audit::event::Heartbeat;
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp, verify_dir};
use breakglass_test_support::ca::{self, CONFIG_FILE, CaProcess};
use breakglass_test_support::postgres::PgCluster;

const BIN: &str = env!("CARGO_BIN_EXE_breakglass-ca");

fn run(args: &[&str], config: &Path, more: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .args(more)
        .stdin(Stdio::null())
        .output()
        .expect("breakglass-ca runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_embedded_log_moves_into_postgres_and_back_out_verifiable() {
    if !PgCluster::available("audit import/export into a throw-away PostgreSQL cluster") {
        return;
    }
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    ca::init_dev(Path::new(BIN), dir.path(), "127.0.0.1:0");
    let cfg_path = dir.path().join(CONFIG_FILE);
    let config = Config::load(&cfg_path).unwrap();

    // 300 events in batches of 1 to 24, over segments of 4 KiB.
    let signer = load_audit_key(&config.audit.key, &config.audit.origin).unwrap();
    let verifier = signer.verifier();
    let mut engine = AuditConfig::new(&config.audit.dir);
    engine.segment_max_bytes = 4096;
    let log = AuditLog::open(engine, signer).unwrap();
    let mut n = 0u64;
    let mut batches = 0;
    while n < 300 {
        let len = (batches % 24 + 1).min(300 - n);
        let events: Vec<Event> = (n..n + len)
            .map(|i| {
                Event::new(
                    Timestamp(1_700_000_000_000 + i),
                    Actor::User(format!("user{i}@example.com")),
                    EventKind::Heartbeat(Heartbeat {}),
                )
            })
            .collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(log.append_all(&events)).unwrap();
        n += len;
        batches += 1;
    }
    let local = log.latest_checkpoint().checkpoint;
    log.shutdown_blocking();
    assert_eq!(local.size, 300);
    let segments = std::fs::read_dir(config.audit.dir.join("segments"))
        .unwrap()
        .count();
    assert!(segments > 3, "{segments} segments");
    let root = base64::engine::general_purpose::STANDARD.encode(local.root);

    let mut cfg_text = std::fs::read_to_string(&cfg_path).unwrap();
    cfg_text.push_str(&format!(
        "\n[postgres]\nurl = \"{}\"\ntls = \"disable\"\n",
        cluster.url()
    ));
    std::fs::write(&cfg_path, &cfg_text).unwrap();

    // Import: the same root, every entry at its index, every batch's checkpoint.
    let out = run(&["audit", "import"], &cfg_path, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("300 entries, {batches} checkpoints, root {root}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        cluster.psql("SELECT count(*), min(idx), max(idx) FROM audit_entries"),
        "300|0|299"
    );
    assert_eq!(
        cluster.psql("SELECT count(*), max(size) FROM audit_checkpoints"),
        format!("{batches}|300")
    );
    assert_eq!(cluster.psql("SELECT size FROM audit_head"), "300");

    // A second import is refused, and changes nothing.
    let again = run(&["audit", "import"], &cfg_path, &[]);
    assert_eq!(again.status.code(), Some(65), "{}", text(&again));
    assert!(
        text(&again).contains("already holds an audit log (300 entries)"),
        "{}",
        text(&again)
    );
    assert_eq!(cluster.psql("SELECT count(*) FROM audit_entries"), "300");

    // Export: segment files the offline verifier accepts, with the same root.
    let copy = dir.path().join("copy");
    let out = run(
        &["audit", "export"],
        &cfg_path,
        &["--to", copy.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("300 entries, {batches} checkpoints, root {root}")),
        "{}",
        text(&out)
    );
    let report = verify_dir(&copy, &verifier, None).unwrap();
    assert_eq!(report.summary.size, 300);
    assert_eq!(report.summary.checkpoints, batches);
    assert_eq!(
        report.summary.last_checkpoint.unwrap().checkpoint.root,
        local.root
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(copy.join("log.pub").is_file() && copy.join("checkpoint").is_file());
    let full = run(
        &["audit", "export"],
        &cfg_path,
        &["--to", copy.to_str().unwrap()],
    );
    assert_eq!(full.status.code(), Some(73), "{}", text(&full));

    // An entry changed in the database: the export refuses it.
    cluster.psql("UPDATE audit_entries SET leaf = leaf || '\\x00'::bytea WHERE idx = 17");
    let bad = run(
        &["audit", "export"],
        &cfg_path,
        &["--to", dir.path().join("bad").to_str().unwrap()],
    );
    assert_eq!(bad.status.code(), Some(65), "{}", text(&bad));
    assert!(
        text(&bad).contains("does not match the entries before it"),
        "{}",
        text(&bad)
    );

    // A wrong password: the database is unreachable, and the password is not shown.
    std::fs::write(
        &cfg_path,
        cfg_text.replace(&cluster.password, "wrong-password"),
    )
    .unwrap();
    let refused = run(
        &["audit", "export"],
        &cfg_path,
        &["--to", dir.path().join("x").to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(69), "{}", text(&refused));
    assert!(
        text(&refused).contains("password authentication failed")
            && !text(&refused).contains("wrong-password"),
        "{}",
        text(&refused)
    );
}

/// `[postgres] tls = "verify-full"`: the database's certificate must chain to `ca_file`
/// and name the host; a database that takes only TLS logins refuses `tls = "disable"`.
#[test]
fn the_database_connection_is_tls_checked_against_the_configured_ca() {
    if !PgCluster::available("TLS to a throw-away PostgreSQL cluster") {
        return;
    }
    let cluster = PgCluster::start();
    let now = time::OffsetDateTime::now_utc();
    let day = std::time::Duration::from_secs(86_400);
    let db_ca = breakglass_ca::init::tls_ca("test database CA").unwrap();
    let server = breakglass_ca::init::tls_leaf(
        &db_ca,
        &["localhost", "127.0.0.1"],
        None,
        now - day,
        now + day,
    )
    .unwrap();
    cluster
        .primary
        .enable_tls(&server.cert_pem, &server.key_pem, true);
    let other_ca = breakglass_ca::init::tls_ca("another CA").unwrap();

    let dir = tempfile::tempdir().unwrap();
    ca::init_dev(Path::new(BIN), dir.path(), "127.0.0.1:0");
    let cfg_path = dir.path().join(CONFIG_FILE);
    let base = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(dir.path().join("db-ca.pem"), &db_ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("other-ca.pem"), &other_ca.cert_pem).unwrap();
    let with = |tls: &str, ca_file: &str| {
        std::fs::write(
            &cfg_path,
            format!(
                "{base}\n[postgres]\nurl = \"{}\"\ntls = \"{tls}\"\nca_file = \"{ca_file}\"\n",
                cluster.url()
            ),
        )
        .unwrap();
        // An export of the empty database says so once it got in.
        run(
            &["audit", "export"],
            &cfg_path,
            &[
                "--to",
                dir.path()
                    .join(format!("x-{tls}-{ca_file}"))
                    .to_str()
                    .unwrap(),
            ],
        )
    };

    let ok = with("verify-full", "db-ca.pem");
    assert_eq!(ok.status.code(), Some(65), "{}", text(&ok));
    assert!(
        text(&ok).contains("holds no audit log yet"),
        "{}",
        text(&ok)
    );

    let untrusted = with("verify-full", "other-ca.pem");
    assert_eq!(untrusted.status.code(), Some(69), "{}", text(&untrusted));
    assert!(
        text(&untrusted).to_lowercase().contains("certificate"),
        "{}",
        text(&untrusted)
    );

    let plain = with("disable", "db-ca.pem");
    assert_eq!(plain.status.code(), Some(69), "{}", text(&plain));
    assert!(
        text(&plain).contains("no encryption") || text(&plain).contains("pg_hba.conf"),
        "{}",
        text(&plain)
    );
}

/// A daemon's directory from `init --dev` on a free port, serving from `url`; with
/// `keys_of`, with the CA and audit keys of that directory (every daemon of one log has
/// the same keys). Returns its config file and gRPC port.
fn daemon_on_postgres(dir: &Path, url: &str, keys_of: Option<&Path>) -> (std::path::PathBuf, u16) {
    let port = breakglass_test_support::free_port();
    ca::init_dev(Path::new(BIN), dir, &format!("127.0.0.1:{port}"));
    let cfg = dir.join(CONFIG_FILE);
    ca::set_metrics_listen(
        &cfg,
        &format!("127.0.0.1:{}", breakglass_test_support::free_port()),
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[audit]\n",
        "[audit]\nbackend = \"postgres\"\n",
        1,
    );
    if let Some(keys) = keys_of {
        text = text
            .replacen(
                "signing_key = \"ssh_ca\"",
                &format!("signing_key = \"{}\"", keys.join("ssh_ca").display()),
                1,
            )
            .replacen(
                "key = \"audit_key.pem\"",
                &format!("key = \"{}\"", keys.join("audit_key.pem").display()),
                1,
            );
    }
    text.push_str(&format!(
        "\n[postgres]\nurl = \"{url}\"\ntls = \"disable\"\nconnect_timeout = \"2s\"\n\
         statement_timeout = \"2s\"\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    (cfg, port)
}

/// `breakglass-ca serve` on `config`, once its gRPC port accepts connections.
fn serve(config: &Path, port: u16) -> CaProcess {
    CaProcess::start(
        &mut ca::serve_command(Path::new(BIN), config),
        std::time::Duration::from_secs(60),
        |_| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
}

/// An mTLS channel to the daemon of `dir` on `port`, as the sample client `who`.
fn channel(dir: &Path, port: u16, who: &str) -> tonic::transport::Channel {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read("tls/ca.pem")))
        .identity(tonic::transport::Identity::from_pem(
            read(&format!("clients/{who}.pem")),
            read(&format!("clients/{who}-key.pem")),
        ))
        .domain_name("localhost");
    tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(std::time::Duration::from_secs(10))
        .connect_lazy()
}

/// One certificate for a new key in `dir`, asked of the daemon of `dir/a` on `port` as
/// the sample client `sre`.
async fn issue_one(dir: &Path, port: u16, reason: &str) -> Result<(), tonic::Status> {
    use breakglass_proto::v1::break_glass_client::BreakGlassClient;
    let key = std::fs::read_to_string(breakglass_test_support::ssh_keygen(
        dir,
        "id",
        &["-t", "ed25519"],
    ))
    .unwrap();
    BreakGlassClient::new(channel(&dir.join("a"), port, "sre"))
        .request_certificate(breakglass_proto::v1::RequestCertificateRequest {
            public_key: key,
            principals: vec!["bgdemo".into()],
            hosts: vec!["localhost".into()],
            ttl_seconds: 300,
            reason: reason.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// `kill -9` of one of two daemons under load, 20 times (`BG_PG_KILL_CYCLES` for more:
/// `scripts/pg-kill-loop`): the other never fails a request, every certificate a requester
/// received has its grant in the log (which verifies), none twice, and the restarted daemon
/// catches up to the end of the log each time.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_under_load_loses_nothing_acknowledged_and_catches_up() {
    use breakglass_proto::v1::GetCheckpointRequest;
    use breakglass_proto::v1::RequestCertificateRequest;
    use breakglass_proto::v1::audit_client::AuditClient;
    use breakglass_proto::v1::break_glass_client::BreakGlassClient;

    if !PgCluster::available("kill -9 of a daemon on a throw-away PostgreSQL cluster") {
        return;
    }
    let cluster = PgCluster::start();
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (a_cfg, a_port) = daemon_on_postgres(&a_dir, &url, None);
    let (b_cfg, b_port) = daemon_on_postgres(&b_dir, &url, Some(&a_dir));
    let mut a = serve(&a_cfg, a_port);
    let _b = serve(&b_cfg, b_port);
    let key = std::fs::read_to_string(breakglass_test_support::ssh_keygen(
        dir.path(),
        "id",
        &["-t", "ed25519"],
    ))
    .unwrap();
    let request = move || RequestCertificateRequest {
        public_key: key.clone(),
        principals: vec!["bgdemo".into()],
        hosts: vec!["localhost".into()],
        ttl_seconds: 300,
        reason: "INC-1 kill drill".into(),
        ..Default::default()
    };
    let on_b = BreakGlassClient::new(channel(&b_dir, b_port, "sre"));
    let (mut received, mut killed_answers) = (Vec::new(), 0usize);
    let cycles: u64 = std::env::var("BG_PG_KILL_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    for cycle in 0..cycles {
        let on_a = BreakGlassClient::new(channel(&a_dir, a_port, "sre"));
        let a_answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..8 {
            let mut c = if n % 2 == 0 {
                on_a.clone()
            } else {
                on_b.clone()
            };
            let request = request.clone();
            let a_answered = a_answered.clone();
            tasks.spawn(async move {
                let mut out = Vec::new();
                for _ in 0..6 {
                    let r = c
                        .request_certificate(request())
                        .await
                        .map(|r| r.into_inner().serial);
                    if r.is_ok() && n % 2 == 0 {
                        a_answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    out.push(r);
                }
                (n % 2 == 1, out)
            });
        }
        // Killed while under load, once it has answered some (bounded wait).
        for _ in 0..500 {
            if a_answered.load(std::sync::atomic::Ordering::SeqCst) > (cycle % 4) as usize {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            a_answered.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "the restarted daemon answered no request in cycle {cycle}:\n{}",
            a.log()
        );
        a.kill9();
        while let Some(t) = tasks.join_next().await {
            let (to_b, answers) = t.unwrap();
            for answer in answers {
                match answer {
                    Ok(serial) => received.push(serial),
                    Err(e) if !to_b => {
                        killed_answers += 1;
                        let _ = e;
                    }
                    Err(e) => panic!("the surviving daemon failed a request: {e:?}"),
                }
            }
        }
        a = serve(&a_cfg, a_port);
    }

    // The restarted daemon is at the end of the log.
    let size: u64 = cluster.psql("SELECT size FROM audit_head").parse().unwrap();
    let mut auditor = AuditClient::new(channel(&a_dir, a_port, "auditor"));
    let mut seen = 0;
    for _ in 0..100 {
        seen = auditor
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .unwrap()
            .into_inner()
            .size;
        if seen >= size {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen >= size, "the restarted daemon is at {seen} of {size}");
    eprintln!(
        "kill -9 drill: {cycles} kills, {} certificates received, {killed_answers} requests to \
         the killed daemon failed",
        received.len()
    );

    let copy = dir.path().join("copy");
    let out = Command::new(BIN)
        .args(["audit", "export", "--config"])
        .arg(&b_cfg)
        .arg("--to")
        .arg(&copy)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let verifier = load_audit_key(&a_dir.join("audit_key.pem"), "breakglass-ca/audit/v1")
        .unwrap()
        .verifier();
    verify_dir(&copy, &verifier, None).expect("the log verifies");
    let mut in_log = Vec::new();
    breakglass_proto::audit::scan_log(&copy, &verifier, &Default::default(), |e| {
        if let EventKind::GrantIssued(g) = Event::decode(e.leaf).map_err(|d| d.to_string())?.kind {
            in_log.push(g.serial);
        }
        Ok(())
    })
    .unwrap();
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
}

/// At start-up: a database that cannot be reached exits 69 (systemd restarts it); a
/// database whose log went back behind the daemon's mirror exits 65 (a human decides),
/// saying so.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_starting_on_an_unreachable_or_rolled_back_database_says_which() {
    if !PgCluster::available("daemon start-up against PostgreSQL") {
        return;
    }
    let mut cluster = PgCluster::start();
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = daemon_on_postgres(&dir.path().join("a"), &url, None);

    let mut stopped = tokio::task::spawn_blocking(move || {
        cluster.primary.stop("fast");
        cluster
    })
    .await
    .unwrap();
    let out = ca::serve_output(Path::new(BIN), &cfg);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(text(&out).contains("PostgreSQL"), "{}", text(&out));
    stopped.primary.start();
    let cluster = stopped;

    // One certificate, so that the mirror holds entries.
    let d = serve(&cfg, port);
    issue_one(dir.path(), port, "INC-2 start-up drill")
        .await
        .expect("issued");
    d.stop();

    // The database's log gone (a restore of an older backup would look alike).
    cluster.psql("TRUNCATE audit_entries, audit_checkpoints, audit_head");
    let out = ca::serve_output(Path::new(BIN), &cfg);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains("the database holds no log, but the audit directory holds"),
        "{}",
        text(&out)
    );
}

/// The daemons' role limited to reading and appending (`audit migrate --grant-to`, run as
/// the tables' owner): before the owner migrated, a daemon with that role says to run
/// `audit migrate`; after, it serves; and the role cannot delete, truncate, change or drop
/// what the log holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_whose_role_may_only_read_and_append_serves_once_the_owner_migrated() {
    use breakglass_test_support::postgres::ROLE;

    if !PgCluster::available("a read-and-append role against PostgreSQL") {
        return;
    }
    let cluster = PgCluster::start();
    let password = format!("pw{}", breakglass_test_support::users::unique("pg"));
    cluster.psql(&format!(
        "CREATE ROLE bg_append LOGIN PASSWORD '{password}'"
    ));
    let owner_url = cluster.url();
    let append_url = owner_url.replacen(
        &format!("{ROLE}:{}@", cluster.password),
        &format!("bg_append:{password}@"),
        1,
    );
    assert_ne!(owner_url, append_url);
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = daemon_on_postgres(&dir.path().join("a"), &append_url, None);

    // Nothing migrated yet, and this role may not create tables (PostgreSQL 15: no CREATE
    // on schema public for other roles than the owner): the daemon says what to run.
    let out = ca::serve_output(Path::new(BIN), &cfg);
    assert!(!out.status.success(), "{}", text(&out));
    for needle in ["audit migrate", "--grant-to bg_append", "version 0"] {
        assert!(text(&out).contains(needle), "{needle}: {}", text(&out));
    }

    let out = run(
        &["audit", "migrate"],
        &cfg,
        &["--url", &owner_url, "--grant-to", "bg_append"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("schema is at version 1"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("role bg_append may read the log and append to it"),
        "{}",
        text(&out)
    );

    let d = serve(&cfg, port);
    issue_one(dir.path(), port, "INC-3 least privilege")
        .await
        .expect("issued by a daemon whose role may only read and append");
    d.stop();
    let entries = cluster.psql("SELECT count(*) FROM audit_entries");
    assert_ne!(entries, "0");

    for sql in [
        "DELETE FROM audit_entries",
        "UPDATE audit_entries SET leaf = ''::bytea",
        "TRUNCATE audit_checkpoints",
        "DELETE FROM audit_head",
        "DROP TABLE audit_entries",
        "CREATE TABLE t (x int)",
    ] {
        let refused = cluster
            .psql_as_role(&append_url, sql)
            .expect_err(&format!("the append role may not: {sql}"));
        assert!(
            refused.contains("permission denied") || refused.contains("must be owner"),
            "{sql}: {refused}"
        );
    }
    assert_eq!(cluster.psql("SELECT count(*) FROM audit_entries"), entries);
}

/// A daemon signs no checkpoint over a head row it cannot vouch for: a head of the
/// mirror's size with another frontier, or a longer head whose checkpoint the log's key
/// did not sign for its frontier (what a writer with access to the database alone could
/// plant). The batch is refused (`UNAVAILABLE`), the database gets no new checkpoint, and
/// once the head is the log's own again the daemon appends as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_appends_nothing_after_a_head_its_key_did_not_sign() {
    use breakglass_proto::v1::RequestCertificateRequest;
    use breakglass_proto::v1::break_glass_client::BreakGlassClient;

    if !PgCluster::available("a planted head row on a throw-away PostgreSQL cluster") {
        return;
    }
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = daemon_on_postgres(&dir.path().join("a"), &cluster.url(), None);
    let d = serve(&cfg, port);
    let key = std::fs::read_to_string(breakglass_test_support::ssh_keygen(
        dir.path(),
        "id",
        &["-t", "ed25519"],
    ))
    .unwrap();
    let mut client = BreakGlassClient::new(channel(&dir.path().join("a"), port, "sre"));
    let request = || RequestCertificateRequest {
        public_key: key.clone(),
        principals: vec!["bgdemo".into()],
        hosts: vec!["localhost".into()],
        ttl_seconds: 300,
        reason: "INC-3 planted head".into(),
        ..Default::default()
    };
    client.request_certificate(request()).await.expect("issued");
    let checkpoints = || cluster.psql("SELECT count(*) || ' ' || max(size) FROM audit_checkpoints");
    let before = checkpoints();
    let size: u64 = cluster.psql("SELECT size FROM audit_head").parse().unwrap();
    let frontier = cluster.psql("SELECT encode(frontier, 'hex') FROM audit_head");

    // The same size, another frontier (every node changed).
    let other: String = frontier
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    cluster.psql(&format!(
        "UPDATE audit_head SET frontier = decode('{other}', 'hex')"
    ));
    let refused = client.request_certificate(request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        checkpoints(),
        before,
        "nothing appended after a foreign frontier"
    );

    // The log's own head again: issuance goes on.
    cluster.psql(&format!(
        "UPDATE audit_head SET frontier = decode('{frontier}', 'hex')"
    ));
    client
        .request_certificate(request())
        .await
        .expect("issued after the head is the log's own again");
    let size_now: u64 = cluster.psql("SELECT size FROM audit_head").parse().unwrap();
    assert!(size_now > size);
    let before = checkpoints();

    // One more entry, a frontier of the right shape for it and a checkpoint the key did
    // not sign (the previous one, of another size).
    let nodes = "00".repeat(32 * (size_now + 1).count_ones() as usize);
    cluster.psql(&format!(
        "INSERT INTO audit_entries (idx, leaf) VALUES ({size_now}, '\\x00'::bytea); \
         INSERT INTO audit_checkpoints (size, note) \
             SELECT {} , checkpoint FROM audit_head; \
         UPDATE audit_head SET size = {}, frontier = decode('{nodes}', 'hex')",
        size_now + 1,
        size_now + 1
    ));
    let planted = checkpoints();
    let refused = client.request_certificate(request()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        checkpoints(),
        planted,
        "nothing appended after an unsigned head"
    );
    assert_ne!(planted, before);
    d.stop();
}
