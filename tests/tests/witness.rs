//! Hosts witness the audit log, end to end: an in-process daemon over real mTLS, the real
//! `breakglass` binary as the host (`host sync-krl`, `ship`, `doctor`, `witness`), the
//! watcher in-process, a real webhook receiver and a syslog socket.
//! - normal operation: the host's saved checkpoint advances with the log;
//! - the newest segment and the `checkpoint` file deleted (a rollback): the host refuses
//!   the KRL (and to ship records) with `log_consistency_failed` in syslog and `host doctor`
//!   FAILs with the fix; the daemon, shown the host's checkpoint, records and alerts it and
//!   refuses issuance, also after a restart, until an admin acknowledges; both events are in
//!   the log; the host is re-pinned;
//! - a fork (same key, different events, same size): noticed the same way, also by the
//!   watcher at (re)connect, while a host whose checkpoint predates the fork is unaffected.

use std::path::PathBuf;
use std::time::Duration;

use breakglass_cli::connect;
use breakglass_cli::host::witness::{WitnessArgs, WitnessState, read_state};
use breakglass_proto::audit::segment::list_segments;
use breakglass_proto::audit::{Actor, Event, EventKind};
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_test_support::fs::copy_dir;
use breakglass_tests::audit::{self, all_events};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::sshd::SyslogCapture;
use breakglass_tests::webhook::{Answer, Hook};
use breakglass_tests::{breakglass_bin_built, ssh_keygen};

const ADMIN: &str = "admin@example.com";
const TEN_S: Duration = Duration::from_secs(10);

/// The dev daemon with a webhook on the `low` tier, `segment_max_mib` as given, an admin
/// identity and a second host, `db-8`.
async fn daemon(hook: &Hook, segment_mib: u64) -> TestDaemon {
    let url = hook.url.clone();
    TestDaemon::start_with(move |c| {
        let c = c
            .replace(
                "segment_max_mib = 64",
                &format!("segment_max_mib = {segment_mib}"),
            )
            .replace(
                "name = \"low\"\napprovals = 0\n",
                &format!("name = \"low\"\napprovals = 0\nwebhooks = [{url:?}]\n"),
            );
        format!(
            "{c}\n[notifications]\ntimeout = \"500ms\"\nretries = 2\nretry_delay = \"100ms\"\n\n\
             [[identities]]\nid = \"{ADMIN}\"\ngroups = [\"admins\"]\n\n\
             [[identities]]\nid = \"host://db-8\"\ngroups = [\"hosts\"]\n"
        )
    })
    .await
}

/// One host: its client config (host.toml with `witness_state` and `audit_key`), a KRL
/// path and a syslog socket.
struct Host {
    config: PathBuf,
    witness: WitnessArgs,
    krl: PathBuf,
    syslog: SyslogCapture,
    _dir: tempfile::TempDir,
}

impl Host {
    fn new(d: &TestDaemon, name: &str, identity: &'static str) -> Self {
        if identity != "host://localhost" {
            d.new_client(name, identity);
        }
        let dir = tempfile::tempdir().unwrap();
        let syslog = SyslogCapture::bind(dir.path());
        Self {
            config: d.client_config(name, name),
            witness: d.witness_args(name, Some(&syslog.path)),
            krl: dir.path().join("revoked.krl"),
            syslog,
            _dir: dir,
        }
    }

    /// Runs `breakglass --config <host.toml> host <args> --syslog-socket <sock>`.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let bin = breakglass_bin_built().await;
        let out = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .arg("host")
            .args(args)
            .arg("--syslog-socket")
            .arg(&self.syslog.path)
            .output()
            .await
            .expect("breakglass runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn sync_krl(&self) -> (i32, String, String) {
        let out = self.krl.display().to_string();
        self.run(&["sync-krl", "--out", &out]).await
    }

    fn state(&self) -> WitnessState {
        read_state(self.witness.witness_state.as_deref().unwrap())
            .unwrap()
            .expect("witness state written")
    }

    fn failure_lines(&self) -> usize {
        self.syslog
            .lines()
            .iter()
            .filter(|l| l.contains("event=log_consistency_failed"))
            .count()
    }
}

/// Size of the daemon's log, as the sample auditor reads it.
async fn log_size(d: &TestDaemon) -> u64 {
    audit::log_size(&d.target("auditor")).await
}

/// The sample SRE's public key line (made once per daemon directory).
fn public_key(d: &TestDaemon) -> String {
    let path = d.path().join("sre-key.pub");
    if !path.exists() {
        ssh_keygen(d.path(), "sre-key", &["-t", "ed25519"]);
    }
    std::fs::read_to_string(path).unwrap()
}

/// One certificate request of the sample SRE on `host` (localhost: issued at once, two
/// events; a staging host: pending, one event).
async fn request(d: &TestDaemon, host: &str, reason: &str) -> Result<(), tonic::Status> {
    let public_key = public_key(d);
    let mut c = BreakGlassClient::new(connect::channel(&d.target("sre")).unwrap());
    c.create_request(certificate_request(
        &public_key,
        "postgres",
        host,
        300,
        reason,
    ))
    .await
    .map(drop)
}

/// `n` certificates with ~1 KiB reasons, 8 callers at once.
async fn fill(d: &TestDaemon, n: usize) {
    let public_key = public_key(d);
    let reason = format!("INC-8 {}", "x".repeat(1000));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let t = d.target("sre");
            let (public_key, reason) = (public_key.clone(), reason.clone());
            tokio::spawn(async move {
                let mut c = BreakGlassClient::new(connect::channel(&t).unwrap());
                for _ in 0..n.div_ceil(8) {
                    let r = certificate_request(&public_key, "postgres", "localhost", 300, &reason);
                    c.request_certificate(r).await.expect("certificate issued");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Resumes a paused daemon and lets it publish its KRL (after a start, the first KRL
/// fetch records a `krl_published` event): from then on its log grows only by what the
/// test does.
async fn resume(d: &mut TestDaemon) {
    d.resume().await;
    breakglass_cli::host::krl_sync::fetch(&d.admin())
        .await
        .expect("KRL published");
}

fn audit_dir(d: &TestDaemon) -> PathBuf {
    d.path().join("audit")
}

fn forks(events: &[Event]) -> Vec<&breakglass_proto::audit::event::LogConsistencyFailed> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LogConsistencyFailed(f) => Some(&**f),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_log_is_refused_by_the_host_and_stops_issuance_until_acknowledged() {
    let hook = Hook::start(Answer::Ok).await;
    let mut d = daemon(&hook, 1).await;
    let host = Host::new(&d, "host", "host://localhost");

    // Normal operation: the first contact pins the log (from log.pub), later ones advance.
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 0, "{err}");
    let first = host.state();
    assert_eq!(
        first.log_key,
        std::fs::read_to_string(d.path().join("log.pub"))
            .unwrap()
            .trim()
    );
    request(&d, "localhost", "INC-1 first").await.unwrap();
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 0, "{err}");
    assert!(host.state().size() > first.size(), "{:?}", host.state());
    assert!(host.state().failure.is_none());

    // Grow the log into a second segment; the host witnesses a checkpoint in it.
    while list_segments(&audit_dir(&d)).unwrap().len() < 2 {
        fill(&d, 96).await;
    }
    request(&d, "localhost", "INC-1 in the second segment")
        .await
        .unwrap();
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 0, "{err}");
    let seen = host.state().size().unwrap();
    assert_eq!(seen, log_size(&d).await);

    // Roll back: stop, delete the newest segment and the checkpoint file, start again.
    d.pause().await;
    let newest = list_segments(&audit_dir(&d)).unwrap().pop().unwrap().1;
    std::fs::remove_file(newest).unwrap();
    std::fs::remove_file(audit_dir(&d).join("checkpoint")).unwrap();
    resume(&mut d).await;
    let rolled = log_size(&d).await;
    assert!(rolled < seen, "{rolled} < {seen}");
    // Issuance still works: nobody has noticed yet.
    request(&d, "localhost", "INC-1 unnoticed").await.unwrap();
    let rolled = log_size(&d).await;

    // The host refuses the KRL, says why and what to do, and logs it.
    let krl_before = std::fs::read(&host.krl).unwrap();
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 65, "{err}");
    for needle in [
        "log_consistency_failed",
        &format!("covers {seen} events but the log now holds only {rolled}"),
        "events were removed",
        "was NOT installed",
        "breakglass audit acknowledge-fork",
        "breakglass host witness --reset",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    assert_eq!(std::fs::read(&host.krl).unwrap(), krl_before);
    let line = host
        .syslog
        .wait_for(&["event=log_consistency_failed"], TEN_S)
        .expect("syslog line");
    assert!(line.starts_with("<82>"), "authpriv.crit: {line}");
    assert!(
        line.contains(&format!("host_size={seen}"))
            && line.contains(&format!("daemon_size={rolled}")),
        "{line}"
    );
    let state = host.state();
    assert_eq!(state.size(), Some(seen), "the saved checkpoint stays");
    let failure = state.failure.expect("failure recorded");
    assert!(failure.daemon_checkpoint.contains(&format!("\n{rolled}\n")));

    // Nor does it deliver session records to that log: they stay in the spool.
    let spool = d.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let id = "localhost-none-42-1700000000000-deny";
    std::fs::write(
        spool.join(format!("{id}.json")),
        format!(
            r#"{{"version":1,"record_id":"{id}","session":"localhost-none-42-1700000000000","event":"deny","time":1700000000,"host":"localhost","user":"u","pid":42,"start":1700000000,"reason":"no_certificate"}}"#
        ),
    )
    .unwrap();
    let (code, _, err) = host
        .run(&["ship", "--spool", &spool.display().to_string(), "--once"])
        .await;
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("No session records were delivered"), "{err}");
    assert!(spool.join(format!("{id}.json")).exists());

    // host doctor FAILs with the fix.
    let (code, out, _) = host
        .run(&[
            "doctor",
            "--sshd",
            "/nonexistent/sshd",
            "--pam-service",
            "/nonexistent/pam",
        ])
        .await;
    assert_eq!(code, 78, "{out}");
    let fail = out
        .lines()
        .position(|l| l.starts_with("FAIL witness log_consistency_failed at "))
        .unwrap_or_else(|| panic!("no witness FAIL in:\n{out}"));
    let fix: String = out.lines().skip(fail + 1).take(6).collect();
    assert!(
        fix.contains("fix: the CA's audit log was rolled back or forked"),
        "{out}"
    );
    assert!(fix.contains("acknowledge-fork"), "{out}");

    // The daemon was shown the host's checkpoint: recorded, alerted, issuance stopped.
    let events = all_events(&d).await;
    let shown = forks(&events);
    assert_eq!(shown.len(), 1, "recorded once for two contacts: {shown:?}");
    assert_eq!(
        (shown[0].host.as_str(), shown[0].size, shown[0].log_size),
        ("localhost", seen, rolled)
    );
    let alert = hook
        .wait_for(
            "log_consistency_failed",
            "actor",
            "host:host://localhost",
            TEN_S,
        )
        .await;
    assert!(
        alert["detail"]
            .as_str()
            .is_some_and(|s| s.contains("events were removed")),
        "{alert}"
    );
    let refused = request(&d, "localhost", "INC-2 while halted")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    for needle in [
        "issuance is stopped: host localhost showed a checkpoint",
        "rolled back or forked",
        "breakglass audit acknowledge-fork",
    ] {
        assert!(refused.message().contains(needle), "{}", refused.message());
    }

    // A restart does not forget: the halt is in the log.
    d.restart().await;
    let refused = request(&d, "localhost", "INC-2 after restart")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // Only an administrator may acknowledge, with a reason; it is recorded.
    let sre_cfg = d.client_config("sre-ack", "sre");
    d.new_client("admin", ADMIN);
    let admin_cfg = d.client_config("admin-ack", "admin");
    let ack = |cfg: PathBuf, reason: &'static str| async move {
        let bin = breakglass_bin_built().await;
        let out = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(cfg)
            .args(["audit", "acknowledge-fork", "--reason", reason])
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = ack(sre_cfg, "INC-3 not mine to say").await;
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("may not acknowledge a log fork"), "{err}");
    let (code, out, err) = ack(admin_cfg.clone(), "INC-3 segment deleted by mistake").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("acknowledged 1 log_consistency_failed report(s)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "host localhost showed {seen} events, the log held {rolled}"
        )),
        "{out}"
    );
    let (code, _, err) = ack(admin_cfg, "INC-3 again").await;
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("nothing to acknowledge"), "{err}");
    hook.wait_for(
        "log_fork_acknowledged",
        "actor",
        &format!("user:{ADMIN}"),
        TEN_S,
    )
    .await;

    // Issuance resumes; both events are in the log.
    request(&d, "localhost", "INC-3 after the acknowledgement")
        .await
        .unwrap();
    let events = all_events(&d).await;
    assert_eq!(forks(&events).len(), 1);
    assert!(
        events.iter().any(|e| e.actor == Actor::User(ADMIN.into())
            && matches!(&e.kind, EventKind::LogForkAcknowledged(a)
                if a.reports == 1 && a.reason == "INC-3 segment deleted by mistake")),
        "no log_fork_acknowledged by {ADMIN}"
    );

    // The host still refuses this log (and its checkpoint, acknowledged, stops nothing)
    // until it is re-pinned.
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 65, "{err}");
    request(&d, "localhost", "INC-3 not halted again")
        .await
        .unwrap();
    let (code, out, err) = host
        .run(&[
            "witness",
            "--reset",
            "--reason",
            "INC-3 acknowledged on the CA",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pinned the CA's audit log"), "{out}");
    assert!(host.state().failure.is_none());
    host.syslog
        .wait_for(&["event=log_witness_reset", "INC-3"], TEN_S)
        .expect("reset in syslog");
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_of_the_same_size_is_noticed_also_by_the_watcher() {
    let hook = Hook::start(Answer::Ok).await;
    let mut d = daemon(&hook, 64).await;
    let host = Host::new(&d, "host", "host://localhost");
    let early = Host::new(&d, "db8", "host://db-8");
    request(&d, "localhost", "INC-4 before the copy")
        .await
        .unwrap();
    // db-8 witnesses the log before the fork point; localhost after it.
    assert_eq!(early.sync_krl().await.0, 0);
    d.pause().await;
    let older = d.path().join("audit.older");
    copy_dir(&audit_dir(&d), &older);
    d.resume().await;
    for i in 0..3 {
        request(&d, "localhost", &format!("INC-4 honest {i}"))
            .await
            .unwrap();
    }
    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 0, "{err}");
    let seen = host.state().size().unwrap();

    // Replace the log with the older copy and write other events up to the same size: same
    // key, same size, different history.
    d.pause().await;
    std::fs::remove_dir_all(audit_dir(&d)).unwrap();
    std::fs::rename(&older, audit_dir(&d)).unwrap();
    resume(&mut d).await;
    let mut i = 0;
    while log_size(&d).await + 2 <= seen {
        request(&d, "localhost", &format!("INC-5 rewritten {i}"))
            .await
            .unwrap();
        i += 1;
    }
    if log_size(&d).await < seen {
        // One event: a request that waits for approval.
        request(&d, "web-1.staging.example", "INC-5 one more event")
            .await
            .unwrap();
    }
    assert_eq!(log_size(&d).await, seen);

    let (code, _, err) = host.sync_krl().await;
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("log_consistency_failed"), "{err}");
    assert!(
        err.contains(&format!("root at size {seen} differs")) && err.contains("fork"),
        "{err}"
    );
    let events = all_events(&d).await;
    let shown = forks(&events);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!((shown[0].size, shown[0].log_size), (seen, seen));
    assert_ne!(shown[0].root, shown[0].log_root);
    hook.wait_for(
        "log_consistency_failed",
        "actor",
        "host:host://localhost",
        TEN_S,
    )
    .await;
    let refused = request(&d, "localhost", "INC-6 while halted")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // The watcher witnesses at every (re)connect: it notices too, and keeps running.
    let before = host.failure_lines();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let args = breakglass_cli::host::watch::WatchArgs {
        sessions: d.path().join("sessions"),
        ca_keys: None,
        poll: Duration::from_secs(1),
        krl: None,
        krl_state: None,
        witness: host.witness.clone(),
    };
    let target = d.target("host");
    let watcher = tokio::spawn(async move {
        breakglass_cli::host::watch::watch(&target, &args, async move {
            let _ = stopped.await;
        })
        .await
    });
    let deadline = tokio::time::Instant::now() + TEN_S;
    while host.failure_lines() <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher did not check the log: {:?}",
            host.syslog.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!watcher.is_finished(), "the watcher keeps running");
    let _ = stop.send(());
    watcher.await.unwrap().expect("watcher stops cleanly");

    // db-8 saw only what the forked log still holds: the log extends its checkpoint, and
    // it is told that issuance is stopped.
    let (code, out, err) = early.run(&["witness"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("extends the checkpoint this host saw"),
        "{out}"
    );
    assert!(out.contains("issuance is stopped"), "{out}");
    assert!(
        early
            .syslog
            .lines()
            .iter()
            .all(|l| !l.contains("log_consistency_failed"))
    );
}
