//! pam_breakglass.so end to end: real sshd (under its own PAM service), real ssh, real
//! libpam, on loopback. Needs root; without it each test prints `SKIPPED (needs root)`,
//! and fails under CI.

use std::process::Output;
use std::time::{Duration, UNIX_EPOCH};

use breakglass_tests::sshd::*;

const LOG_WAIT: Duration = Duration::from_secs(5);

/// sshd and the module trusting one CA, with `module_options`, and a test user; `None`
/// (after a loud SKIPPED line) when `test` cannot run here.
fn setup(test: &str, module_options: &str) -> Option<(Sshd, TestCa, TestUser)> {
    if !require_root(test) {
        return None;
    }
    let ca = TestCa::new();
    let sshd = Sshd::start(&SshdOptions {
        module_options: module_options.into(),
        ..SshdOptions::trusting(&ca)
    });
    Some((sshd, ca, TestUser::create()))
}

/// A key in the sshd's directory with a certificate signed by `ca` as `spec` says.
fn certified(sshd: &Sshd, name: &str, ca: &TestCa, spec: &CertSpec) -> ClientKey {
    ClientKey::with_cert(sshd.dir.path(), name, ca, spec)
}

/// Asserts that `command` ran: its output holds `marker`.
fn ran(out: &Output, marker: &str, sshd: &Sshd) {
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(marker),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
}

fn secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Waits until no process of `user` matches any needle, up to `deadline` (Unix seconds).
fn gone_by(user: &TestUser, needles: &[&str], deadline: f64) -> Result<(), String> {
    loop {
        let left: Vec<(u32, String)> = needles
            .iter()
            .flat_map(|n| user_processes_matching(user, n))
            .map(|p| (p, cmdline(p)))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if secs(std::time::SystemTime::now()) > deadline {
            return Err(format!("still running after the deadline: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn certificate_session_is_logged_at_open_and_close() {
    let Some((sshd, ca, user)) = setup("certificate_session_is_logged_at_open_and_close", "")
    else {
        return;
    };
    let key = certified(&sshd, "id", &ca, &CertSpec::new(0x101, &user.name, 300));
    let out = sshd.run(&user.name, &key, "echo hello-from-$(id -un)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hello-from-{}", user.name),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let open = sshd.syslog.expect(
        &[
            "pam_breakglass[",
            "event=session_open",
            "grant=g-0000000000000101",
            "serial=10257",
        ],
        LOG_WAIT,
    );
    assert!(open.contains(&format!("user={}", user.name)), "{open}");
    assert!(open.contains("rhost=127.0.0.1"), "{open}");
    assert!(
        open.contains("key_id=breakglass/g-0000000000000101/sre@example.com"),
        "{open}"
    );
    let close = sshd.syslog.expect(
        &[
            "event=session_close",
            "grant=g-0000000000000101",
            "serial=10257",
            "duration=",
        ],
        LOG_WAIT,
    );
    assert!(close.starts_with("<85>"), "authpriv.notice: {close}");
    for event in ["open", "close"] {
        assert!(
            sshd.wait_spool("g-0000000000000101", event, LOG_WAIT),
            "{event}: {:?}",
            sshd.spool_files()
        );
    }
    assert!(
        sshd.log()
            .contains("ID breakglass/g-0000000000000101/sre@example.com"),
        "{}",
        sshd.log()
    );
}

#[test]
fn expired_pty_session_is_ended_after_a_warning_with_its_nohup_and_setsid_children() {
    let Some((sshd, ca, user)) = setup(
        "expired_pty_session_is_ended_after_a_warning_with_its_nohup_and_setsid_children",
        "warn_before=4",
    ) else {
        return;
    };
    let key = certified(&sshd, "id", &ca, &CertSpec::new(0x102, &user.name, 9));
    let valid_before = key.valid_before.unwrap() as f64;
    let mut ssh = SshSession::spawn(sshd.ssh(&user.name, &key, &["-tt"]));
    ssh.send("nohup sleep 3011 >/dev/null 2>&1 &\n");
    ssh.send("setsid sleep 3012 >/dev/null 2>&1 < /dev/null &\n");
    ssh.send("echo READY-$((6*7))\n");
    assert!(
        ssh.wait_output("READY-42", Duration::from_secs(8)),
        "{}\n{}",
        ssh.output(),
        sshd.log()
    );
    assert_eq!(
        user_processes_matching(&user, "sleep 3011").len(),
        1,
        "nohup child started"
    );
    assert_eq!(
        user_processes_matching(&user, "sleep 3012").len(),
        1,
        "setsid child started"
    );
    // One guard watches the session; its command line names the session, not the
    // requester or the client (argv is visible to every local user).
    let guards = processes_where(|p| {
        let c = cmdline(p);
        c.contains("breakglass-guard --session") && c.contains("g-0000000000000102")
    });
    assert_eq!(guards.len(), 1, "{guards:?}");
    assert!(!cmdline(guards[0]).contains("sre@example.com"));

    let (status, ended) = ssh.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "session not ended: {}\n{:#?}",
            ssh.output(),
            sshd.syslog.lines()
        )
    });
    let ended = secs(ended);
    assert!(
        ended >= valid_before - 0.5 && ended <= valid_before + 2.0,
        "ended at {ended:.2}, valid_before {valid_before}: {}",
        ssh.output()
    );
    assert_eq!(
        status.code(),
        Some(255),
        "connection closed by the remote host"
    );
    let output = ssh.output();
    let warn_at = output.find("*** breakglass: grant g-0000000000000102 expires at");
    assert!(warn_at.is_some(), "no warning on the terminal: {output}");
    gone_by(&user, &["sleep 3011", "sleep 3012"], valid_before + 2.0).unwrap();
    let forced = sshd.syslog.expect(
        &[
            "breakglass-guard[",
            "event=session_forced_end",
            "reason=expired",
            "grant=g-0000000000000102",
        ],
        LOG_WAIT,
    );
    assert!(
        !forced.contains("killed=0"),
        "the sweep killed the leftovers: {forced}"
    );
    sshd.syslog.expect(
        &[
            "event=session_warn",
            "grant=g-0000000000000102",
            "reached=/dev/pts/",
        ],
        LOG_WAIT,
    );
    // sshd ran close_session after the SIGTERM.
    sshd.syslog.expect(
        &["event=session_close", "grant=g-0000000000000102"],
        LOG_WAIT,
    );
    for event in ["open", "warn", "forced_end", "close"] {
        assert!(
            sshd.wait_spool("g-0000000000000102", event, LOG_WAIT),
            "{event}: {:?}",
            sshd.spool_files()
        );
    }
}

#[test]
fn expired_forced_command_is_ended_with_its_nohup_and_setsid_children() {
    let Some((sshd, ca, user)) = setup(
        "expired_forced_command_is_ended_with_its_nohup_and_setsid_children",
        "warn_before=3",
    ) else {
        return;
    };
    let spec = CertSpec::new(0x103, &user.name, 7)
        .without_permit("permit-pty")
        .with_force_command(
            "nohup sleep 3021 >/dev/null 2>&1 & setsid sleep 3022 >/dev/null 2>&1 </dev/null & echo READY; exec sleep 3023",
        );
    let key = certified(&sshd, "id", &ca, &spec);
    let valid_before = key.valid_before.unwrap() as f64;
    let mut ssh = SshSession::spawn({
        let mut c = sshd.ssh(&user.name, &key, &[]);
        c.arg("ignored-by-force-command");
        c
    });
    assert!(
        ssh.wait_output("READY", Duration::from_secs(8)),
        "{}\n{}",
        ssh.output(),
        sshd.log()
    );
    let (_, ended) = ssh
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("not ended: {}", ssh.output()));
    let ended = secs(ended);
    assert!(
        ended >= valid_before - 0.5 && ended <= valid_before + 2.0,
        "ended at {ended:.2}, valid_before {valid_before}"
    );
    gone_by(
        &user,
        &["sleep 3021", "sleep 3022", "sleep 3023"],
        valid_before + 2.0,
    )
    .unwrap();
    sshd.syslog.expect(
        &[
            "event=session_forced_end",
            "reason=expired",
            "grant=g-0000000000000103",
        ],
        LOG_WAIT,
    );
    // Without a terminal the warning goes to the command's stderr.
    assert!(
        ssh.output()
            .contains("*** breakglass: grant g-0000000000000103 expires at"),
        "{}",
        ssh.output()
    );
}

#[test]
fn certificate_scoped_to_another_host_is_denied_and_ssh_n_disconnected() {
    let Some((sshd, ca, user)) = setup(
        "certificate_scoped_to_another_host_is_denied_and_ssh_n_disconnected",
        "",
    ) else {
        return;
    };
    let spec = CertSpec::new(0x104, &user.name, 300).with_hosts("web-*,db-70");
    let key = certified(&sshd, "id", &ca, &spec);

    let out = sshd.run(&user.name, &key, "echo RAN-COMMAND");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("RAN-COMMAND"), "command ran: {stdout}");
    assert_ne!(out.status.code(), Some(0));

    let start = std::time::Instant::now();
    let mut n = SshSession::spawn(sshd.ssh(&user.name, &key, &["-N"]));
    let (status, _) = n.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "ssh -N still connected after 10 s: {}\n{}",
            n.output(),
            sshd.log()
        )
    });
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(255), "{}", n.output());
    let denied = sshd
        .syslog
        .expect(&["event=session_denied", "reason=host_scope"], LOG_WAIT);
    assert!(denied.contains("db-7"), "{denied}");
    assert!(
        sshd.log().contains("PAM: pam_open_session()"),
        "{}",
        sshd.log()
    );
    sshd.syslog
        .expect(&["event=session_forced_end", "reason=denied"], LOG_WAIT);
}

#[test]
fn certificate_from_a_ca_only_sshd_trusts_is_denied() {
    if !require_root("certificate_from_a_ca_only_sshd_trusts_is_denied") {
        return;
    }
    let ours = TestCa::new();
    let other = TestCa::new();
    let sshd = Sshd::start(&SshdOptions {
        sshd_trusts: vec![ours.public_line(), other.public_line()],
        module_trusts: vec![ours.public_line()],
        ..SshdOptions::default()
    });
    let user = TestUser::create();
    let key = certified(&sshd, "id", &other, &CertSpec::new(0x105, &user.name, 300));
    let out = sshd.run(&user.name, &key, "echo RAN-COMMAND");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("RAN-COMMAND"));
    // sshd accepted the certificate ...
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    // ... the module did not.
    let denied = sshd
        .syslog
        .expect(&["event=session_denied", "reason=untrusted_ca"], LOG_WAIT);
    assert!(denied.contains("not in the module"), "{denied}");
    // The same grant signed by our CA works.
    let good = certified(&sshd, "id2", &ours, &CertSpec::new(0x105, &user.name, 300));
    ran(
        &sshd.run(&user.name, &good, "echo RAN-COMMAND"),
        "RAN-COMMAND",
        &sshd,
    );
}

#[test]
fn plain_key_login_is_ignored_by_default_and_denied_with_require() {
    if !require_root("plain_key_login_is_ignored_by_default_and_denied_with_require") {
        return;
    }
    let ca = TestCa::new();
    let user = TestUser::create();
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = ClientKey::plain(dir.path(), "plain");
    let sshd = Sshd::start(&SshdOptions {
        module_options: "debug".into(),
        authorized_keys: vec![(user.name.clone(), public)],
        ..SshdOptions::trusting(&ca)
    });
    ran(
        &sshd.run(&user.name, &key, "echo PLAIN-OK"),
        "PLAIN-OK",
        &sshd,
    );
    sshd.syslog
        .expect(&["event=session_ignored", "no certificate used"], LOG_WAIT);

    sshd.set_module_options("require");
    let out = sshd.run(&user.name, &key, "echo PLAIN-OK");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PLAIN-OK"));
    sshd.syslog.expect(
        &["event=session_denied", "reason=certificate_required"],
        LOG_WAIT,
    );
    let mut n = SshSession::spawn(sshd.ssh(&user.name, &key, &["-N"]));
    assert!(
        n.wait_exit(Duration::from_secs(10)).is_some(),
        "ssh -N lingers after a denial"
    );
}

#[test]
fn processes_left_behind_after_logout_are_ended_at_expiry() {
    let Some((sshd, ca, user)) =
        setup("processes_left_behind_after_logout_are_ended_at_expiry", "")
    else {
        return;
    };
    let key = certified(&sshd, "id", &ca, &CertSpec::new(0x106, &user.name, 8));
    let valid_before = key.valid_before.unwrap() as f64;
    let out = sshd.run(
        &user.name,
        &key,
        "nohup sleep 3041 >/dev/null 2>&1 </dev/null & echo STARTED",
    );
    ran(&out, "STARTED", &sshd);
    sshd.syslog.expect(
        &["event=session_close", "grant=g-0000000000000106"],
        LOG_WAIT,
    );
    // The session closed normally, but its nohup child would outlive the certificate.
    assert_eq!(user_processes_matching(&user, "sleep 3041").len(), 1);
    std::thread::sleep(Duration::from_secs_f64(
        (valid_before - 1.0 - secs(std::time::SystemTime::now())).max(0.0),
    ));
    assert_eq!(
        user_processes_matching(&user, "sleep 3041").len(),
        1,
        "killed before expiry"
    );
    gone_by(&user, &["sleep 3041"], valid_before + 2.0).unwrap();
    sshd.syslog.expect(
        &[
            "event=session_forced_end",
            "reason=expired",
            "grant=g-0000000000000106",
            "killed=1",
        ],
        LOG_WAIT,
    );
}
