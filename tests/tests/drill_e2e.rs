//! `breakglass drill` end to end, with the real pieces: the real `breakglass` binary,
//! an in-process daemon over mTLS on the dev config (its drill tier and rule, with a
//! webhook receiver on loopback as the tier's alert hook), a real `sshd` with
//! `pam_breakglass.so` shipping its records at once (`ship=`/`ship_config=` with the
//! host's client identity), and the system `ssh`.
//!
//! The drill passes and prints both times; the audit log holds the drill grant, its
//! session's open and close and the passed report. With the module line removed from
//! sshd's PAM stack the login still works, but no session record arrives: the drill
//! fails with the step and what to check, exits 1, the failed report is in the log,
//! and the webhook receiver gets the alert.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use breakglass_cli::commands;
use breakglass_proto::audit::event::DrillReported;
use breakglass_proto::audit::{Event, EventKind};
use breakglass_proto::v1::GetCheckpointRequest;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::sshd::{Sshd, SshdOptions, TestUser, require_root};
use breakglass_tests::{can_run, have};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The real `breakglass` executable: `BREAKGLASS_CLI_BIN`, or built once per test
/// process into its own target directory (the running `cargo test` holds the lock of
/// the main one).
fn breakglass_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BREAKGLASS_CLI_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target
        let target = exe.ancestors().nth(3).expect("target dir").join("cli-e2e");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "breakglass-cli",
                "--bin",
                "breakglass",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(workspace)
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo build -p breakglass-cli failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("debug/breakglass")
    })
}

/// A webhook receiver: a tiny HTTP/1.1 server on loopback that answers 200 and keeps
/// every JSON body.
#[derive(Clone, Debug)]
struct Hook {
    url: String,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Hook {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, len) = loop {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (p + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = serde_json::from_slice(&buf[head_end..head_end + len])
                        .unwrap_or(serde_json::Value::Null);
                    s.lock().unwrap().push(body);
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Self { url, seen }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to 15 s for a notice with `event` about `grant`.
    async fn wait_for(&self, event: &str, grant: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(v) = self
                .events()
                .into_iter()
                .find(|v| v["event"] == event && v["grant_id"] == grant)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} notice for {grant}; got {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn all_events(d: &TestDaemon) -> Vec<Event> {
    let t = d.target("auditor");
    let mut a = AuditClient::new(breakglass_cli::connect::channel(&t).unwrap());
    let size = a
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .size;
    breakglass_cli::audit::fetch_leaves(&mut a, &t, 0, size)
        .await
        .unwrap()
        .iter()
        .map(|l| Event::decode(l).unwrap())
        .collect()
}

/// The grant id printed on the PASS line or the `ok request` progress line.
fn grant_of(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("g-") && w.len() == 18)
        .unwrap_or_else(|| panic!("no grant id in:\n{stdout}"))
        .to_owned()
}

/// The value printed after `label`, e.g. "0.412s" or "not reached".
fn shown(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
        .trim()
        .to_owned()
}

fn is_seconds(v: &str) -> bool {
    v.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n > 0.0)
}

fn drill_report<'a>(events: &'a [Event], grant: &str) -> Vec<&'a DrillReported> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DrillReported(r) if r.grant_id.to_string() == grant => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drill_passes_with_both_times_and_fails_clearly_without_the_pam_module() {
    if !require_root("a real sshd, a test user and /etc/pam.d") {
        return;
    }
    if !can_run("ssh and ssh-keygen", have("ssh") && have("ssh-keygen")) {
        return;
    }
    let bin = tokio::task::spawn_blocking(|| breakglass_bin().clone())
        .await
        .unwrap();
    let hook = Hook::start().await;
    let pager = "# webhooks = [\"https://pager.example.com/hooks/breakglass\"]";
    let url = hook.url.clone();
    let d = TestDaemon::start_with(move |c| {
        assert!(
            c.contains(pager),
            "the dev config's drill tier names no pager hook"
        );
        c.replace(pager, &format!("webhooks = [{url:?}]"))
    })
    .await;

    // Client settings with the daemon's real port: the sample SRE runs the drill, the
    // host ships its records as host://localhost.
    let clients = d.path().join("clients");
    let settings = |name: &str| {
        let path = clients.join(format!("{name}-drill.toml"));
        std::fs::write(
            &path,
            format!(
                "server = \"https://127.0.0.1:{}\"\nca_cert = \"../tls/ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}-key.pem\"\nserver_name = \"localhost\"\n",
                d.port
            ),
        )
        .unwrap();
        path
    };
    let sre = settings("sre");
    let host = settings("host");

    let ca_lines = commands::ca_keys(&d.target("host")).await.unwrap();
    let sshd = tokio::task::spawn_blocking(move || {
        Sshd::start(&SshdOptions {
            sshd_trusts: ca_lines.clone(),
            module_trusts: ca_lines,
            host: Some("localhost".into()),
            ..Default::default()
        })
    })
    .await
    .unwrap();
    sshd.set_module_options(&format!(
        "ship={} ship_config={}",
        bin.display(),
        host.display()
    ));
    let user = tokio::task::spawn_blocking(TestUser::create).await.unwrap();
    // The host's key, so that the drill checks it (BatchMode: no prompt, no guessing).
    let host_key = std::fs::read_to_string(sshd.dir.path().join("host_ed25519.pub")).unwrap();
    let mut parts = host_key.split_whitespace();
    let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[localhost]:{p},[127.0.0.1]:{p} {kind} {key}\n",
            p = sshd.port
        ),
    )
    .unwrap();
    // The drill's private temporary directory goes here, to see that it is removed.
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();

    let drill = |timeout: &str| -> Output {
        Command::new(&bin)
            .arg("--config")
            .arg(&sre)
            .args(["drill", "--host", "localhost", "--as", &user.name, "--port"])
            .arg(sshd.port.to_string())
            .args(["--ssh-option", "HostName=127.0.0.1", "--known-hosts"])
            .arg(&known_hosts)
            .args(["--timeout", timeout])
            .env("TMPDIR", &tmp)
            .output()
            .expect("breakglass drill runs")
    };

    // 1. Everything in place: PASS with both times.
    let out = tokio::task::block_in_place(|| drill("30s"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- breakglass drill:\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "drill failed ({}):\n{stdout}\n{stderr}\nsshd log:\n{}",
        out.status,
        sshd.log()
    );
    assert!(
        stdout.contains("PASS: break-glass drill on localhost as"),
        "{stdout}"
    );
    let to_shell = shown(&stdout, "request to shell:");
    let to_audit = shown(&stdout, "logout to audit record:");
    assert!(is_seconds(&to_shell), "{to_shell:?} in\n{stdout}");
    assert!(is_seconds(&to_audit), "{to_audit:?} in\n{stdout}");
    let passed = grant_of(&stdout);
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "the drill key was left behind in {}",
        tmp.display()
    );

    let events = all_events(&d).await;
    let issued = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::GrantIssued(g) if g.grant_id.to_string() == passed => Some(g),
            _ => None,
        })
        .expect("the drill grant is in the audit log");
    assert_eq!(issued.tier, "drill");
    assert_eq!(issued.rule, "sre-drill-local");
    assert_eq!(issued.command.as_deref(), Some("echo breakglass-drill"));
    assert!(issued.approvers.is_empty() && !issued.emergency);
    let of_grant = |e: &&Event| {
        e.kind
            .session()
            .is_some_and(|s| s.grant_id.to_string() == passed)
    };
    assert_eq!(
        events
            .iter()
            .filter(of_grant)
            .filter(|e| matches!(e.kind, EventKind::SessionOpened(_)))
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(of_grant)
            .filter(|e| matches!(e.kind, EventKind::SessionClosed(_)))
            .count(),
        1
    );
    let report = drill_report(&events, &passed);
    assert_eq!(report.len(), 1, "one report");
    assert!(report[0].passed && report[0].failed_step.is_empty());
    assert!(report[0].request_to_shell_ms > 0 && report[0].logout_to_audit_ms > 0);

    // 2. The module line is gone from sshd's PAM stack: the login still works, but no
    // session is recorded. The drill says so, exits 1, and the failure is alerted.
    sshd.remove_module_from_pam_stack();
    let out = tokio::task::block_in_place(|| drill("8s"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- breakglass drill:\n{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let user_at = format!("break-glass drill on localhost as {}", user.name);
    assert!(
        stdout.contains(&format!(
            "FAIL: {user_at} failed at step session-open: no session-open record of grant"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "check: is pam_breakglass in sshd's PAM stack on localhost? run `breakglass host doctor` on localhost"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("reported to breakglass-ca (audit event"),
        "{stdout}"
    );
    assert!(is_seconds(&shown(&stdout, "request to shell:")), "{stdout}");
    assert_eq!(shown(&stdout, "logout to audit record:"), "not reached");
    assert!(
        stderr.contains("breakglass: drill failed at step session-open"),
        "{stderr}"
    );
    let failed = grant_of(&stdout);
    assert_ne!(failed, passed);

    let events = all_events(&d).await;
    let report = drill_report(&events, &failed);
    assert_eq!(report.len(), 1, "one report");
    assert!(!report[0].passed);
    assert_eq!(report[0].failed_step, "session-open");
    assert!(
        report[0].detail.contains("pam_breakglass"),
        "{:?}",
        report[0]
    );
    assert!(report[0].request_to_shell_ms > 0);
    assert_eq!(report[0].logout_to_audit_ms, 0);
    assert!(
        !events.iter().any(|e| e
            .kind
            .session()
            .is_some_and(|s| s.grant_id.to_string() == failed)),
        "no session record without the module"
    );
    let alert = hook.wait_for("drill_failed", &failed).await;
    assert_eq!(alert["tier"], "drill");
    assert!(
        alert["detail"]
            .as_str()
            .is_some_and(|s| s.contains("failed at step session-open")),
        "{alert}"
    );
    assert!(
        !hook
            .events()
            .iter()
            .any(|v| v["event"] == "drill_failed" && v["grant_id"] == passed.as_str()),
        "the passed drill raised no alert"
    );

    // A report is recorded once per grant, only by the requester, only for drill grants.
    let mut sre_client = breakglass_cli::connect::client(&d.target("sre")).unwrap();
    let again = sre_client
        .report_drill(breakglass_proto::v1::ReportDrillRequest {
            grant_id: failed.clone(),
            passed: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(again.message().contains("already reported"), "{again}");
    let mut approver = breakglass_cli::connect::client(&d.target("approver")).unwrap();
    let other = approver
        .get_grant_sessions(breakglass_proto::v1::GrantRef {
            grant_id: passed.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other}");
    drop(sshd);
    drop(user);
    d.stop().await;
}
