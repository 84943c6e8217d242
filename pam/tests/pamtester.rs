//! pam_breakglass.so through real libpam (pamtester and a small C harness) under
//! pam_wrapper: hostile `SSH_AUTH_INFO_0`, bad options, `require`, and a full
//! open/close with the guard.

use std::time::{Duration, Instant};

use breakglass_test_support::cert::{CertSpec, auth_info, new_key, sign};
use breakglass_test_support::pam_wrapper::{Stack, harness_bin};
use breakglass_test_support::process::{cmdline, processes_where};
use breakglass_test_support::{output_text as text, require_root, unix_now, wait};
use ssh_key::Certificate;

const WAIT: Duration = Duration::from_secs(5);
const EVERY: Duration = Duration::from_millis(20);

fn assert_denied(stack: &Stack, out: &std::process::Output, reason: &str, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected denial\n{}",
        text(out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("breakglass: session denied")
            || String::from_utf8_lossy(&out.stderr).contains("breakglass: session denied"),
        "{what}: the user is told\n{}",
        text(out)
    );
    assert!(
        stack
            .syslog
            .wait_for(&["event=session_denied", &format!("reason={reason}")], WAIT)
            .is_some(),
        "{what}: no syslog line with reason={reason}: {:#?}",
        stack.syslog.lines()
    );
}

#[test]
fn garbage_and_hostile_auth_info_is_denied_with_a_log_line() {
    let other_ca = new_key();
    let stack = Stack::new("", false);
    let good = auth_info(&sign(
        &stack.ca,
        &CertSpec::new(1, "alice", 300).with_hosts("db-7"),
    ));
    let (kt, b64) = {
        let mut p = good.trim_end().split(' ').skip(1);
        (p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
    };
    let for_bob = auth_info(&sign(
        &stack.ca,
        &CertSpec::new(2, "bob", 300).with_hosts("db-7"),
    ));
    let big = format!("publickey {kt} {}\n", "A".repeat(120 * 1024));
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "bad_auth_info"),
        (
            "several certificate lines",
            format!("{good}{good}"),
            "bad_auth_info",
        ),
        (
            "garbage second line",
            format!("{good}\u{1}\u{2}rm -rf /\n"),
            "bad_auth_info",
        ),
        (
            "unknown method line",
            format!("{good}frobnicate\n"),
            "bad_auth_info",
        ),
        (
            "wrong key type",
            format!("publickey ssh-rsa-cert-v01@openssh.com {b64}\n"),
            "bad_auth_info",
        ),
        (
            "plain key type with certificate blob",
            format!(
                "publickey ssh-ed25519-cert-v01@openssh.com {}\n",
                &b64[..40]
            ),
            "bad_auth_info",
        ),
        (
            "truncated base64",
            format!("publickey {kt} {}\n", &b64[..b64.len() - 7]),
            "bad_auth_info",
        ),
        (
            "valid certificate for another user",
            for_bob,
            "bad_certificate",
        ),
        ("120 KiB", big, "bad_auth_info"),
        (
            "breakglass certificate from an untrusted CA",
            auth_info(&sign(
                &other_ca,
                &CertSpec::new(3, "alice", 300).with_hosts("db-7"),
            )),
            "untrusted_ca",
        ),
        (
            "scoped to another host",
            auth_info(&sign(
                &stack.ca,
                &CertSpec::new(4, "alice", 300).with_hosts("web-*"),
            )),
            "host_scope",
        ),
    ];
    for (what, info, reason) in cases {
        let before = stack.syslog.lines().len();
        let out = stack.pamtester("alice", Some(&info), &["open_session"]);
        assert_denied(&stack, &out, reason, what);
        // This attempt's own line (not an earlier one with the same reason).
        let new = wait::poll(WAIT, EVERY, || {
            let new: Vec<String> = stack.syslog.lines()[before..].to_vec();
            new.iter()
                .any(|l| l.contains(&format!("reason={reason}")))
                .then_some(new)
        })
        .unwrap_or_else(|| panic!("{what}: {:#?}", &stack.syslog.lines()[before..]));
        assert!(
            new.iter().all(|l| l.len() < 4096),
            "{what}: log lines stay short"
        );
    }
    // Every denial is in the spool too.
    assert!(
        stack
            .spool_files()
            .iter()
            .filter(|f| f.ends_with("-deny.json"))
            .count()
            >= 1
    );
}

#[test]
fn one_mebibyte_auth_info_is_denied_without_crash() {
    let stack = Stack::new("", false);
    let mut info = b"publickey ssh-ed25519-cert-v01@openssh.com ".to_vec();
    info.extend(std::iter::repeat_n(b'A', 1 << 20));
    info.push(b'\n');
    let start = Instant::now();
    let out = stack.harness("alice", &info, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("open={}", 14)),
        "PAM_SESSION_ERR: {}",
        text(&out)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    let line = stack
        .syslog
        .wait_for(
            &["event=session_denied", "reason=bad_auth_info", "1048"],
            WAIT,
        )
        .unwrap_or_else(|| panic!("{:#?}", stack.syslog.lines()));
    assert!(line.len() < 4096);
}

#[test]
fn unknown_option_is_denied_and_named_in_the_log() {
    let stack = Stack::new("frobnicate=1", false);
    let out = stack.pamtester("alice", None, &["open_session"]);
    assert_denied(&stack, &out, "bad_option", "unknown option");
    assert!(stack.syslog.wait_for(&["frobnicate=1"], WAIT).is_some());
    let stack = Stack::new("require=yes", false);
    let out = stack.pamtester("alice", None, &["open_session"]);
    assert_denied(&stack, &out, "bad_option", "flag with a value");
}

#[test]
fn login_without_certificate_is_ignored_by_default_and_denied_with_require() {
    let plain = format!(
        "publickey {}\n",
        new_key().public_key().to_openssh().unwrap()
    );
    let stack = Stack::new("debug", false);
    for info in [None, Some(plain.as_str()), Some("password\n")] {
        let out = stack.pamtester("alice", info, &["open_session", "close_session"]);
        assert_eq!(out.status.code(), Some(0), "{info:?}\n{}", text(&out));
    }
    let ignored = || {
        stack
            .syslog
            .lines()
            .iter()
            .filter(|l| l.contains("event=session_ignored"))
            .count()
    };
    wait::until(WAIT, EVERY, || ignored() >= 3);
    assert_eq!(ignored(), 3, "{:#?}", stack.syslog.lines());
    assert!(stack.spool_files().is_empty());

    let stack = Stack::new("require", false);
    for info in [None, Some(plain.as_str())] {
        let out = stack.pamtester("alice", info, &["open_session"]);
        assert_denied(&stack, &out, "certificate_required", "require");
    }
}

#[test]
fn valid_certificate_opens_and_closes_with_records() {
    if !require_root("valid_certificate_opens_and_closes_with_records (pam_loginuid)") {
        return;
    }
    let stack = Stack::new("", true);
    let cert = sign(&stack.ca, &CertSpec::new(0xab, "root", 300));
    let out = stack.pamtester(
        "root",
        Some(&auth_info(&cert)),
        &["open_session", "close_session"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let open = stack
        .syslog
        .wait_for(
            &[
                "event=session_open",
                "grant=g-00000000000000ab",
                &format!("serial={}", cert.serial()),
            ],
            WAIT,
        )
        .unwrap_or_else(|| panic!("{:#?}", stack.syslog.lines()));
    assert!(open.contains("pam_breakglass["), "{open}");
    assert!(open.starts_with("<85>"), "authpriv.notice: {open}");
    let close = stack.syslog.wait_for(
        &[
            "event=session_close",
            "grant=g-00000000000000ab",
            "duration=",
        ],
        WAIT,
    );
    assert!(close.is_some(), "{:#?}", stack.syslog.lines());
    let files = stack.spool_files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().any(|f| f.ends_with("-open.json"))
            && files.iter().any(|f| f.ends_with("-close.json"))
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.dir.path().join("s").join(&files[1])).unwrap())
            .unwrap();
    assert_eq!(rec["event"], "open");
    assert_eq!(rec["grant"], "g-00000000000000ab");
    assert_eq!(
        rec["record_id"].as_str().unwrap(),
        files[1].trim_end_matches(".json")
    );
}

#[test]
fn guard_ends_the_session_process_at_expiry() {
    if !require_root("guard_ends_the_session_process_at_expiry (pam_loginuid)") {
        return;
    }
    let stack = Stack::new("warn_before=1", true);
    harness_bin(); // compile before the short certificate's clock starts
    let cert = root_cert(&stack, 0xcd, 4);
    let valid_before = cert.valid_before();
    let out = stack.harness("root", auth_info(&cert).as_bytes(), &["--hold", "60"]);
    let ended = unix_now();
    // The harness holds the session for 60 s; the guard SIGTERMs it at valid_before.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{}", text(&out));
    assert!(
        (valid_before..=valid_before + 2).contains(&ended),
        "ended at {ended}, valid_before {valid_before}"
    );
    let line = stack
        .syslog
        .wait_for(
            &[
                "breakglass-guard[",
                "event=session_forced_end",
                "reason=expired",
                "grant=g-00000000000000cd",
            ],
            WAIT,
        )
        .unwrap_or_else(|| panic!("{:#?}", stack.syslog.lines()));
    assert!(line.contains("killed="), "{line}");
    assert!(
        stack
            .syslog
            .wait_for(&["event=session_warn", "grant=g-00000000000000cd"], WAIT)
            .is_some()
    );
    let files = stack.spool_files();
    for event in ["open", "warn", "forced_end"] {
        assert!(
            files.iter().any(|f| f.ends_with(&format!("-{event}.json"))),
            "{event}: {files:?}"
        );
    }
}

#[test]
fn guard_exits_when_the_session_ends_normally() {
    if !require_root("guard_exits_when_the_session_ends_normally (pam_loginuid)") {
        return;
    }
    let stack = Stack::new("", true);
    let cert = root_cert(&stack, 0xef, 600);
    let out = stack.pamtester(
        "root",
        Some(&auth_info(&cert)),
        &["open_session", "close_session"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No guard process for this grant may survive.
    assert_no_guard_left("g-00000000000000ef");
}

#[test]
fn guards_sharing_an_audit_session_do_not_wait_for_each_other() {
    if !require_root("guards_sharing_an_audit_session_do_not_wait_for_each_other (pam_loginuid)") {
        return;
    }
    // One process opening several sessions: pam_loginuid keeps the audit session id, so
    // the guards share it. None may treat the others as leftovers of its session.
    let stack = Stack::new("", true);
    let cert = root_cert(&stack, 0xee, 600);
    let out = stack.harness("root", auth_info(&cert).as_bytes(), &["--repeat", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        stack
            .spool_files()
            .iter()
            .filter(|f| f.ends_with("-open.json"))
            .count(),
        3
    );
    assert_no_guard_left("g-00000000000000ee");
}

#[test]
fn a_spool_that_cannot_be_written_denies_and_the_started_guard_exits_without_acting() {
    if !require_root("a_spool_that_cannot_be_written_denies_... (pam_loginuid)") {
        return;
    }
    // The guard's program is started before the certificate is verified and given its
    // spec before the open record is written (it registers the session while the record's
    // fsync runs); when the write fails, the session is withdrawn and the guard must go
    // without acting. A registry that cannot exist: a guard that acted (or complained
    // of its registration) would say so in syslog.
    // A stack whose spool is a file; a session opened on it is denied and leaves no guard.
    let denied_open = |options: &str, serial: u64| {
        let stack = Stack::new(options, true);
        std::fs::write(
            stack.dir.path().join("s"),
            "a file where the spool should be",
        )
        .unwrap();
        let cert = root_cert(&stack, serial, 600);
        let out = stack.pamtester("root", Some(&auth_info(&cert)), &["open_session"]);
        assert_denied(&stack, &out, "spool_error", "spool is a file");
        assert_no_guard_left(&format!("g-{serial:016x}"));
        stack
    };
    let stack = denied_open("sessions=/nonexistent/bg", 0xdb);
    assert!(
        !stack
            .syslog
            .lines()
            .iter()
            .any(|l| l.contains("breakglass-guard[")),
        "the withdrawn guard acted: {:#?}",
        stack.syslog.lines()
    );
    // A registry that exists: the withdrawn guard takes its registration back.
    let reg = tempfile::tempdir_in("/tmp").unwrap();
    let sessions = reg.path().join("r");
    let _stack = denied_open(&format!("sessions={}", sessions.display()), 0xdd);
    let left: Vec<_> = std::fs::read_dir(&sessions)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the withdrawn guard left {left:?}");
}

#[test]
fn guard_ends_what_is_left_of_the_session_at_expiry_when_the_modules_process_is_killed() {
    if !require_root("guard_ends_what_is_left_of_the_session_at_expiry_... (pam_loginuid)") {
        return;
    }
    use breakglass_test_support::pam_wrapper::{
        PAM_WRAPPER, harness_bin, remove_pam_wrapper_dirs_of,
    };
    use breakglass_test_support::process::is_gone;
    use std::os::unix::fs::PermissionsExt;
    let stack = Stack::new("", true);
    let bin = harness_bin(); // compile before the short certificate's clock starts
    // After the module, pam_exec leaves a process in the session (its audit session
    // id), as a user's `setsid nohup ...` would, and notes its pid.
    let leftover_pid = stack.dir.path().join("leftover.pid");
    let script = stack.dir.path().join("x.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! > {}\n",
            leftover_pid.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let service = stack.dir.path().join("pam.d").join(&stack.service);
    let mut text = std::fs::read_to_string(&service).unwrap();
    text += &format!(
        "session required /lib/x86_64-linux-gnu/security/pam_exec.so {}\n",
        script.display()
    );
    std::fs::write(&service, text).unwrap();

    let cert = root_cert(&stack, 0xdc, 6);
    let env = stack.dir.path().join("auth_info");
    std::fs::write(&env, auth_info(&cert)).unwrap();
    let mut harness = std::process::Command::new(bin)
        .env("LD_PRELOAD", PAM_WRAPPER)
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", stack.dir.path().join("pam.d"))
        .arg(&stack.service)
        .arg("root")
        .arg("--env-file")
        .arg(&env)
        .args(["--hold", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = || {
        std::fs::read_to_string(&leftover_pid)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    let opened = wait::until(Duration::from_secs(10), EVERY, || pid().is_some());
    // The module's process dies without closing the session.
    let _ = harness.kill();
    let _ = harness.wait();
    remove_pam_wrapper_dirs_of(harness.id());
    assert!(
        opened,
        "the session did not open: {:#?}",
        stack.syslog.lines()
    );
    let left = pid().unwrap();
    let ended = stack.syslog.wait_for(
        &[
            "breakglass-guard[",
            "event=session_forced_end",
            "reason=expired",
            "grant=g-00000000000000dc",
        ],
        Duration::from_secs(30),
    );
    let gone = wait::until(WAIT, EVERY, || is_gone(left));
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", &left.to_string()])
            .status();
    }
    let line = ended.unwrap_or_else(|| panic!("no forced end: {:#?}", stack.syslog.lines()));
    assert!(gone, "the leftover process {left} survived the certificate");
    assert!(!line.contains("killed=0"), "{line}");
    assert!(
        stack
            .spool_files()
            .iter()
            .any(|f| f.ends_with("-forced_end.json")),
        "{:?}",
        stack.spool_files()
    );
    assert_no_guard_left("g-00000000000000dc");
}

/// A certificate of `stack`'s CA for root on db-7, valid for `valid_for` seconds.
fn root_cert(stack: &Stack, grant: u64, valid_for: u64) -> Certificate {
    sign(
        &stack.ca,
        &CertSpec::new(grant, "root", valid_for).with_hosts("db-7"),
    )
}

/// Waits (bounded) until no session guard of `grant` runs.
fn assert_no_guard_left(grant: &str) {
    let guards = || {
        processes_where(|p| {
            let c = cmdline(p);
            c.contains("--session") && c.contains(grant)
        })
    };
    assert!(
        wait::until(WAIT, Duration::from_millis(50), || guards().is_empty()),
        "guards still running: {:?}",
        guards()
    );
}
