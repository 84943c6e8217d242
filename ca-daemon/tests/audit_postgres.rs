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
use breakglass_test_support::ca::{self, CONFIG_FILE};
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
