//! Clients survive a daemon restart: the real `breakglass-ca serve` as a child process
//! (its `init --dev` setup: tier `elevated` needs one approval), killed with SIGKILL and
//! started again on the same directory and port, and the real `breakglass` executable as
//! the sample clients. A `request` waiting for approval, `audit tail --follow` and `host
//! watch-revocations` lose their connection, say so once, reconnect with backoff and
//! resume where they were: the request by its id, the tail from the last entry printed,
//! the watcher from the last revocation sequence.

use std::path::Path;
use std::time::Duration;

use breakglass_proto::profile::Profile;
use breakglass_proto::sessions::GRANT_MARKER_SUFFIX;
use breakglass_test_support::process::Running;
use breakglass_tests::ca_process::CaProcess;
use breakglass_tests::{breakglass_bin_built, breakglass_ca_bin, ssh_keygen};

/// The elevated tier's host in the dev config (rule `sre-staging`: one approval).
const STAGING: &str = "web-1.staging.example";
/// Longest wait for a line of a client or its exit (loaded CI machines are slow).
const WAIT: Duration = Duration::from_secs(60);
/// How often output is looked at.
const EVERY: Duration = Duration::from_millis(20);

/// Waits for `needle` in what `p` printed; panics with all of it when it does not come.
fn expect(p: &Running, what: &str, needle: &str) {
    assert!(
        p.wait_output(needle, WAIT, EVERY),
        "{what}: no {needle:?} within {WAIT:?}; it printed:\n{}",
        p.output()
    );
}

fn lines_with(p: &Running, needle: &str) -> usize {
    p.output().lines().filter(|l| l.contains(needle)).count()
}

/// Runs `cmd` to its end; panics with its output when it fails.
fn run_ok(mut cmd: std::process::Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = breakglass_test_support::process::output_text(&out);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The grant id in the certificate written next to `public`.
fn grant_of(public: &Path) -> String {
    let cert = public.with_file_name("id_ed25519-cert.pub");
    let text = std::fs::read_to_string(&cert)
        .unwrap_or_else(|e| panic!("no certificate at {}: {e}", cert.display()));
    let cert = ssh_key::Certificate::from_openssh(text.trim()).expect("an OpenSSH certificate");
    Profile::from_certificate(&cert)
        .expect("a breakglass certificate")
        .grant_id
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_request_the_tail_and_the_watcher_resume_after_the_daemon_is_killed_and_restarted()
 {
    breakglass_bin_built().await;
    let bin = tokio::task::spawn_blocking(breakglass_ca_bin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CaProcess::init(bin, &dir.path().join("ca")).unwrap();
    ca.start().await.unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let sessions = dir.path().join("sessions");

    // The SRE's request waits for one approval.
    let mut cmd = ca.cli("sre");
    cmd.args([
        "request",
        "--host",
        STAGING,
        "--as",
        "bgdemo",
        "--ttl",
        "10m",
        "--reason",
        "INC-17 restart drill",
        "--public-key",
    ])
    .arg(&public);
    let mut request = Running::spawn(&mut cmd);
    expect(
        &request,
        "request",
        "pending: tier elevated needs 1 approval(s)",
    );
    let id = request
        .output()
        .lines()
        .find(|l| l.contains("pending: tier elevated"))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .unwrap();
    assert!(id.starts_with("r-"), "{}", request.output());

    // The auditor follows the log; the host watches revocations.
    let mut cmd = ca.cli("auditor");
    cmd.args(["audit", "tail", "--follow", "-n", "1000"]);
    let tail = Running::spawn(&mut cmd);
    expect(&tail, "audit tail --follow", &format!("request={id}"));
    let mut cmd = ca.cli("host");
    cmd.args(["host", "watch-revocations", "--sessions"])
        .arg(&sessions)
        .args(["--poll", "1s", "--witness-state"])
        .arg(dir.path().join("witness.state"));
    let watcher = Running::spawn(&mut cmd);
    expect(&watcher, "watch-revocations", "watching revocations at");

    // The daemon dies as in a crash; every client notices.
    ca.kill9();
    expect(&request, "request", "lost the connection to breakglass-ca");
    expect(
        &tail,
        "audit tail --follow",
        "lost the connection to breakglass-ca",
    );
    expect(&watcher, "watch-revocations", "cannot watch revocations");

    // Started again on the same directory and port: its state comes from the log.
    ca.start().await.unwrap();
    expect(&request, "request", &format!("request {id} still pending"));
    expect(&tail, "audit tail --follow", "reconnected to breakglass-ca");
    assert!(
        watcher.wait_output("watching revocations at", WAIT, EVERY)
            && eventually(|| lines_with(&watcher, "watching revocations at") >= 2),
        "the watcher did not resume the stream:\n{}",
        watcher.output()
    );

    // An approval after the restart completes the request that was waiting before it.
    let mut approve = ca.cli("approver");
    approve.args(["approve", &id, "--comment", "after the restart"]);
    run_ok(approve, "breakglass approve");
    let done = request.wait_exit(WAIT, EVERY);
    let out = request.output();
    assert!(
        done.is_some_and(|(s, _)| s.success()),
        "the waiting request did not complete ({done:?}):\n{out}"
    );
    assert!(out.contains("Certificate written to"), "{out}");
    // Said once each: lost, then back.
    assert_eq!(lines_with(&request, "lost the connection"), 1, "{out}");
    assert_eq!(lines_with(&request, "reconnected"), 1, "{out}");
    let grant = grant_of(&public);

    // The tail goes on printing new events across the restart, none twice.
    expect(&tail, "audit tail --follow", &format!("grant={grant}"));
    let text = tail.output();
    let created = text
        .lines()
        .filter(|l| l.contains(" request_created ") && l.contains(&id))
        .count();
    assert_eq!(created, 1, "{text}");
    assert_eq!(lines_with(&tail, "lost the connection"), 1, "{text}");

    // The watcher, resumed, still ends the grant's sessions on revocation: its marker
    // for new logins appears.
    let mut revoke = ca.cli("sre");
    revoke.args([
        "revoke",
        "--grant",
        &grant,
        "--reason",
        "restart drill done",
    ]);
    run_ok(revoke, "breakglass revoke");
    let marker = sessions.join(format!("{grant}{GRANT_MARKER_SUFFIX}"));
    assert!(
        eventually(|| marker.exists()),
        "no {} after the revocation; the watcher printed:\n{}",
        marker.display(),
        watcher.output()
    );
}

/// Waits up to [`WAIT`] for `cond`.
fn eventually(cond: impl FnMut() -> bool) -> bool {
    breakglass_test_support::wait::until(WAIT, EVERY, cond)
}

/// Copies the directory `from` to `to` (new), modes and all, as a backup would.
fn copy_dir(from: &Path, to: &Path) {
    let mut cp = std::process::Command::new("cp");
    cp.arg("-a").arg(from).arg(to);
    run_ok(cp, "cp -a");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tail_refuses_a_log_rolled_back_across_a_restart() {
    breakglass_bin_built().await;
    let bin = tokio::task::spawn_blocking(breakglass_ca_bin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CaProcess::init(bin, &dir.path().join("ca")).unwrap();
    ca.start().await.unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let audit = ca.audit_dir().unwrap();

    // A backup of the log, taken while the daemon is down.
    ca.kill9();
    let backup = dir.path().join("audit-backup");
    copy_dir(&audit, &backup);
    ca.start().await.unwrap();
    let mut c = ca.cli("sre");
    c.args([
        "request", "--host", STAGING, "--as", "bgdemo", "--ttl", "10m",
    ])
    .args([
        "--reason",
        "INC-18 after the backup",
        "--no-wait",
        "--public-key",
    ])
    .arg(&public);
    run_ok(c, "breakglass request --no-wait");
    let mut cmd = ca.cli("auditor");
    cmd.args(["audit", "tail", "--follow", "-n", "1000"]);
    let mut tail = Running::spawn(&mut cmd);
    expect(&tail, "audit tail --follow", "INC-18 after the backup");

    // The log is restored from the backup: the entries the tail read are gone.
    ca.kill9();
    expect(
        &tail,
        "audit tail --follow",
        "lost the connection to breakglass-ca",
    );
    std::fs::remove_dir_all(&audit).unwrap();
    copy_dir(&backup, &audit);
    ca.start().await.unwrap();
    let done = tail.wait_exit(WAIT, EVERY);
    let out = tail.output();
    assert_eq!(
        done.map(|(s, _)| s.code()),
        Some(Some(65)),
        "the tail did not refuse the rolled-back log:\n{out}"
    );
    assert!(out.contains("it was rolled back or replaced"), "{out}");
}
