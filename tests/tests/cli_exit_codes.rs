//! The exit statuses of the real `breakglass` binary against an in-process daemon over
//! real mTLS sockets: every class of the one table (`breakglass_cli::error::EXIT_STATUSES`)
//! is produced and its code checked, clap's own errors included; each TLS and connection
//! failure names its fix (certificates made here with rcgen); a private key given as
//! `--public-key` is refused before anything is sent (the audit log does not grow).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use breakglass_ca::init::{CertAndKey, ClientSan, tls_ca, tls_leaf};
use breakglass_cli::error::EXIT_STATUSES;
use breakglass_proto::audit::segment::{
    Parsed, RECORD_HEADER_LEN, RecordKind, list_segments, parse_record,
};
use breakglass_test_support::free_port;
use breakglass_tests::audit::log_size;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::ssh_keygen;

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `breakglass ARGS` as the sample client `who` of `d`.
async fn run(d: &TestDaemon, who: &str, args: &[&str]) -> Run {
    output(d.cli(who).args(args), who, args).await
}

/// Runs `breakglass ARGS` as the sample SRE of `d`, but with `server` as the daemon's
/// address.
async fn run_at(d: &TestDaemon, server: &str, args: &[&str]) -> Run {
    run_with(&d.path().join("clients/sre.toml"), server, args).await
}

/// Runs `breakglass --config CONFIG --server SERVER ARGS`.
async fn run_with(config: &Path, server: &str, args: &[&str]) -> Run {
    let mut c = tokio::process::Command::new(breakglass_tests::breakglass_bin());
    c.arg("--config")
        .arg(config)
        .args(["--server", server])
        .args(args)
        .env_remove("BREAKGLASS_CONFIG")
        .env_remove("BREAKGLASS_SERVER")
        .stdin(std::process::Stdio::null());
    output(&mut c, server, args).await
}

async fn output(c: &mut tokio::process::Command, who: &str, args: &[&str]) -> Run {
    let out = c.output().await.expect("breakglass runs");
    let r = Run {
        code: out.status.code().expect("breakglass exits, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "breakglass {args:?} as {who}: exit {}\n{}",
        r.code, r.stderr
    );
    r
}

/// Asserts that `r` exited `code` and its stderr holds every needle.
fn exited(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "{n:?} not in: {}", r.stderr);
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A fresh ed25519 key in `dir`: its public key file.
fn key(dir: &Path, name: &str) -> PathBuf {
    ssh_keygen(dir, name, &["-t", "ed25519"])
}

/// `request` arguments for `host` as `user`.
fn request<'a>(host: &'a str, user: &'a str, ttl: &'a str, public: &'a str) -> Vec<&'a str> {
    vec![
        "request",
        "--host",
        host,
        "--as",
        user,
        "--ttl",
        ttl,
        "--reason",
        "INC-18 exit code classes",
        "--public-key",
        public,
    ]
}

/// Writes a client certificate for sre@example.com from `ca`, valid between the two
/// offsets from now; returns the certificate and key paths.
fn client_cert(
    d: &TestDaemon,
    ca: &CertAndKey,
    name: &str,
    from: i64,
    to: i64,
) -> (PathBuf, PathBuf) {
    let now = time::OffsetDateTime::now_utc();
    let leaf = tls_leaf(
        ca,
        &[],
        Some(ClientSan::Email("sre@example.com")),
        now + time::Duration::seconds(from),
        now + time::Duration::seconds(to),
    )
    .unwrap();
    let cert = d.path().join(format!("clients/{name}.pem"));
    let key = d.path().join(format!("clients/{name}-key.pem"));
    std::fs::write(&cert, leaf.cert_pem).unwrap();
    std::fs::write(&key, leaf.key_pem).unwrap();
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exit_status_of_the_table_is_what_the_binary_exits_with() {
    let d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    let public = s(&key(keys.path(), "id_ed25519"));
    let mut seen = BTreeSet::new();
    let mut check = |r: &Run, code: i32, needles: &[&str]| {
        exited(r, code, needles);
        seen.insert(code);
    };

    // 0: success; --help and --version (which clap reports as errors) too.
    check(&run(&d, "sre", &["whoami"]).await, 0, &[]);
    let help = run(&d, "sre", &["--help"]).await;
    check(&help, 0, &[]);
    assert!(help.stdout.contains("Usage:"), "{}", help.stdout);
    check(&run(&d, "sre", &["request", "--help"]).await, 0, &[]);
    check(&run(&d, "sre", &["--version"]).await, 0, &[]);

    // 64: clap's own usage errors (which exit 2 by default), and the CLI's.
    check(
        &run(&d, "sre", &["--no-such-flag", "whoami"]).await,
        64,
        &["--no-such-flag"],
    );
    check(&run(&d, "sre", &[]).await, 64, &["Usage:"]);
    check(
        &run(&d, "sre", &["request", "--host", "localhost"]).await,
        64,
        &["--as"],
    );
    check(
        &run(&d, "sre", &["request", "--ttl", "soon"]).await,
        64,
        &["soon"],
    );
    check(
        &run(&d, "sre", &["review", "g-0123456789abcdef"]).await,
        64,
        &["--verdict"],
    );

    // 65: a request field the daemon finds invalid.
    check(
        &run(&d, "sre", &request("localhost", "bad user!", "5m", &public)).await,
        65,
        &["invalid request: principals"],
    );

    // 66: no such request.
    check(
        &run(&d, "sre", &["show", "r-0123456789abcdef"]).await,
        66,
        &["no request"],
    );

    // 69: nothing listens at the address.
    let closed = format!("https://127.0.0.1:{}", free_port());
    check(
        &run_at(&d, &closed, &["whoami"]).await,
        69,
        &["connection refused", &closed],
    );

    // 74: the CA keys cannot be written where asked.
    let nowhere = s(&keys.path().join("no-such-dir/ca.pub"));
    check(
        &run(&d, "sre", &["ca-keys", "--out", &nowhere]).await,
        74,
        &[&nowhere],
    );

    // 75: a request cancelled before it was issued.
    let pending = run(
        &d,
        "sre",
        &[
            request("db.staging.example", "bgdemo", "10m", &public),
            vec!["--no-wait"],
        ]
        .concat(),
    )
    .await;
    check(&pending, 0, &[]);
    let id = pending.stdout.trim().to_owned();
    check(&run(&d, "sre", &["cancel", &id]).await, 0, &[]);
    check(
        &run(&d, "sre", &["fetch", &id, "--public-key", &public]).await,
        75,
        &["cancelled"],
    );

    // 77: this identity may not: an SRE reading the audit log, approving its own request.
    check(
        &run(&d, "sre", &["audit", "show"]).await,
        77,
        &["not allowed", "reader_groups"],
    );
    let mine = run(
        &d,
        "sre",
        &[
            request("db.staging.example", "bgdemo", "10m", &public),
            vec!["--no-wait"],
        ]
        .concat(),
    )
    .await;
    let mine = mine.stdout.trim().to_owned();
    check(
        &run(&d, "sre", &["approve", &mine]).await,
        77,
        &["cannot approve your own request"],
    );

    // 78: a client config file that does not parse.
    let bad = d.path().join("clients/bad.toml");
    std::fs::write(&bad, "servr = \"https://127.0.0.1:1\"\n").unwrap();
    check(
        &run_with(&bad, &format!("https://127.0.0.1:{}", d.port), &["whoami"]).await,
        78,
        &["client config", "servr"],
    );

    // 79: refused by policy (a deny rule; a TTL over the rule's limit), and denied by an
    // approver; distinct from 77 above.
    check(
        &run(&d, "sre", &request("localhost", "root", "5m", &public)).await,
        79,
        &["refused:", "no-root"],
    );
    check(
        &run(&d, "sre", &request("localhost", "bgdemo", "2h", &public)).await,
        79,
        &["refused:"],
    );
    check(
        &run(&d, "approver", &["deny", &mine, "--reason", "not now"]).await,
        0,
        &[],
    );
    check(
        &run(&d, "sre", &["fetch", &mine, "--public-key", &public]).await,
        79,
        &["denied by", "not now"],
    );

    // 1: a drill that fails (no sshd on the port it logs in to).
    let port = free_port().to_string();
    check(
        &run(
            &d,
            "sre",
            &[
                "drill",
                "--host",
                "localhost",
                "--as",
                "nobody",
                "--port",
                &port,
                "--timeout",
                "10s",
            ],
        )
        .await,
        1,
        &[],
    );

    // 70: damage the daemon finds in its own log when it reads it: an internal error.
    let segments = list_segments(&d.path().join("audit")).unwrap();
    let (_, first) = segments.first().expect("a segment");
    let mut bytes = std::fs::read(first).unwrap();
    // One bit in the payload of the segment's first event.
    let mut at = 0;
    let flip = loop {
        let Parsed::Record { kind, payload, .. } = parse_record(&bytes[at..]) else {
            panic!("no event record in {}", first.display());
        };
        if kind == RecordKind::Event {
            break at + RECORD_HEADER_LEN + payload.len() / 2;
        }
        at += RECORD_HEADER_LEN + payload.len();
    };
    bytes[flip] ^= 0x08;
    std::fs::write(first, &bytes).unwrap();
    check(
        &run(&d, "auditor", &["audit", "show"]).await,
        70,
        &["internal error"],
    );

    // Every status of the table was produced here.
    let table: BTreeSet<i32> = EXIT_STATUSES.iter().map(|e| e.code).collect();
    assert_eq!(seen, table, "every exit status of the table is checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_connection_failures_name_what_to_fix() {
    let d = TestDaemon::start().await;

    // Unknown issuer: a --ca-cert that did not sign the daemon's certificate.
    let other = tls_ca("another CA").unwrap();
    let other_ca = d.path().join("other-ca.pem");
    std::fs::write(&other_ca, &other.cert_pem).unwrap();
    exited(
        &run(&d, "sre", &["--ca-cert", &s(&other_ca), "whoami"]).await,
        78,
        &["unknown issuer", "--ca-cert", &s(&other_ca)],
    );

    // Name mismatch: a --server-name the daemon's certificate does not carry.
    exited(
        &run(&d, "sre", &["--server-name", "db.wrong.example", "whoami"]).await,
        78,
        &[
            "not valid for the name db.wrong.example",
            "localhost",
            "--server-name",
        ],
    );

    // A certificate and key that do not match: both files named, nothing sent.
    let cert = d.path().join("clients/sre.pem");
    let key = d.path().join("clients/approver-key.pem");
    exited(
        &run(
            &d,
            "sre",
            &["--cert", &s(&cert), "--key", &s(&key), "whoami"],
        )
        .await,
        78,
        &["do not match", &s(&cert), &s(&key)],
    );

    // Connection refused: is the daemon running, at which address.
    let closed = format!("https://127.0.0.1:{}", free_port());
    exited(
        &run_at(&d, &closed, &["whoami"]).await,
        69,
        &[
            "connection refused",
            &closed,
            "Is breakglass-ca running",
            "--server",
        ],
    );
    let socket = d.path().join("no-such.sock");
    exited(
        &run_at(&d, &format!("unix://{}", s(&socket)), &["whoami"]).await,
        69,
        &["no socket there", &s(&socket)],
    );

    // An expired client certificate: renew it.
    let (cert, key) = client_cert(&d, &d.tls_ca(), "expired", -7200, -3600);
    exited(
        &run(
            &d,
            "sre",
            &["--cert", &s(&cert), "--key", &s(&key), "whoami"],
        )
        .await,
        77,
        &["expired", &s(&cert), "new client certificate"],
    );

    // A client certificate from a CA the daemon does not trust.
    let (cert, key) = client_cert(&d, &other, "stranger", -3600, 3600);
    exited(
        &run(
            &d,
            "sre",
            &["--cert", &s(&cert), "--key", &s(&key), "whoami"],
        )
        .await,
        77,
        &[
            "refused your client certificate",
            &s(&cert),
            "another CA",
            "client_ca",
        ],
    );

    // The settings that work still do.
    exited(&run(&d, "sre", &["whoami"]).await, 0, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_as_public_key_is_refused_before_anything_is_sent() {
    let d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    let auditor = d.target("auditor");
    let openssh = key(keys.path(), "id_ed25519").with_extension("");
    let pem = ssh_keygen(keys.path(), "id_pem", &["-t", "ecdsa", "-m", "PEM"]).with_extension("");
    std::fs::remove_file(pem.with_extension("pub")).unwrap();
    let garbage = keys.path().join("notes.txt");
    std::fs::write(&garbage, "not a key at all\n").unwrap();
    let before = log_size(&auditor).await;

    // An OpenSSH private key whose .pub is next to it: that file is named.
    let r = run(
        &d,
        "sre",
        &request("localhost", "bgdemo", "5m", &s(&openssh)),
    )
    .await;
    let pub_file = format!("{}.pub", s(&openssh));
    exited(
        &r,
        65,
        &["this is a private key; pass the .pub file", &pub_file],
    );
    assert!(!r.stderr.contains("OPENSSH PRIVATE KEY"), "{}", r.stderr);

    // A PEM private key without its .pub: how to make one.
    let r = run(&d, "sre", &request("localhost", "bgdemo", "5m", &s(&pem))).await;
    exited(
        &r,
        65,
        &[
            "this is a private key; pass the .pub file",
            "ssh-keygen -y -f",
        ],
    );

    // The same check for `revoke --public-key`, and a file that is no key at all.
    let r = run(
        &d,
        "sre",
        &[
            "revoke",
            "--public-key",
            &s(&openssh),
            "--reason",
            "INC-18 lost",
        ],
    )
    .await;
    exited(&r, 65, &["this is a private key"]);
    let r = run(
        &d,
        "sre",
        &request("localhost", "bgdemo", "5m", &s(&garbage)),
    )
    .await;
    exited(&r, 65, &["not an OpenSSH public key line"]);

    // Nothing reached the daemon: not even a refusal is on the record.
    assert_eq!(log_size(&auditor).await, before, "the audit log grew");

    // The .pub file itself is sent, and works.
    exited(
        &run(&d, "sre", &request("localhost", "bgdemo", "5m", &pub_file)).await,
        0,
        &[],
    );
    assert!(log_size(&auditor).await > before);
}
