//! Session recording on the host, end to end: real sshd + pam_breakglass.so + the set-gid
//! recorder (`breakglass-record`) the certificate forces, real ptys, real files. Needs
//! root; without it each test prints `SKIPPED (needs root)`.
//!
//! The recordings are checked as asciicast v2 (parsed here, and with `asciinema cat` when
//! it is installed), and the close record's digest against the chain of the file's bytes.

use std::path::Path;
use std::time::Duration;

use breakglass_proto::recording::{chain_of, format_sha256};
use breakglass_test_support::fs::Tmpfs;
use breakglass_tests::have;
use breakglass_tests::recording::{Cast, RecordingHost, own};
use breakglass_tests::sshd::*;

/// Bound of every wait (generous: a loaded machine logs in slowly; nothing is timed).
const WAIT: Duration = Duration::from_secs(60);

/// What ssh printed, stdout then stderr (sshd sends the PAM messages of a session
/// without a terminal to stdout).
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn host(test: &str) -> Option<RecordingHost> {
    require_root(test).then(RecordingHost::start)
}

/// The close (or forced-end) record's digest is the chain of the file as it is on disk.
fn assert_digest_matches(record: &breakglass_proto::spool::SessionRecord, cast: &Path) {
    let (sha, bytes) = chain_of(std::fs::File::open(cast).expect("open cast")).expect("read");
    assert_eq!(
        record.recording_sha256.as_deref(),
        Some(format_sha256(&sha).as_str()),
        "{record:?}"
    );
    assert_eq!(record.recording_bytes, Some(bytes));
    assert!(record.recording_duration_ms.is_some());
}

fn session(h: &RecordingHost, key: &ClientKey) -> SshSession {
    SshSession::spawn(h.sshd.ssh(&h.user.name, key, &["-tt"]))
}

#[test]
fn interactive_session_is_recorded_as_asciicast_with_the_typed_commands_output() {
    let Some(h) =
        host("interactive_session_is_recorded_as_asciicast_with_the_typed_commands_output")
    else {
        return;
    };
    let key = h.recorded_key(0x301, None, true);
    let mut s = session(&h, &key);
    s.send("echo typed-$((6*7))\n");
    assert!(
        s.wait_output("typed-42", WAIT),
        "{}\n{}",
        s.output(),
        h.sshd.log()
    );
    s.send("exit\n");
    assert!(s.wait_exit(WAIT).is_some(), "{}", s.output());
    let close = h.record(0x301, "close");
    let casts = h.casts();
    assert_eq!(casts.len(), 1, "{casts:?}");
    assert_eq!(
        casts[0].file_name().unwrap().to_string_lossy(),
        format!("{}.cast", close.session)
    );
    let cast = Cast::read(&casts[0]).unwrap();
    assert!(cast.output().contains("typed-42"), "{:?}", cast.events);
    assert!(
        cast.input().contains("echo typed-$((6*7))"),
        "{:?}",
        cast.events
    );
    assert_eq!(cast.header["env"]["SHELL"], "/bin/bash", "{}", cast.header);
    assert_digest_matches(&close, &casts[0]);
    let detail = close.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("recorder ended: command exited"),
        "{detail}"
    );
    if have("asciinema") {
        // asciinema 2.2's `cat` opens /dev/tty: script(1) gives it one.
        let out = std::process::Command::new("script")
            .args([
                "-qec",
                &format!("asciinema cat {}", casts[0].display()),
                "/dev/null",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script runs");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("typed-42"),
            "asciinema cat: {out:?}"
        );
    } else {
        eprintln!(
            "asciinema not installed: `asciinema cat` part SKIPPED (scripts/install-deps installs it)"
        );
    }
}

#[test]
fn forced_command_session_is_recorded_through_pipes() {
    let Some(h) = host("forced_command_session_is_recorded_through_pipes") else {
        return;
    };
    let key = h.recorded_key(
        0x302,
        Some("echo forced-$((40+2)); echo to-stderr >&2"),
        false,
    );
    let out = h
        .sshd
        .run(&h.user.name, &key, "ignored by the force-command");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("forced-42"),
        "{out:?}\n{}",
        h.sshd.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to-stderr"),
        "{out:?}"
    );
    let close = h.record(0x302, "close");
    let casts = h.casts();
    assert_eq!(casts.len(), 1, "{casts:?}");
    let cast = Cast::read(&casts[0]).unwrap();
    assert!(cast.output().contains("forced-42"), "{:?}", cast.events);
    assert!(cast.output().contains("to-stderr"), "{:?}", cast.events);
    assert!(
        cast.input().is_empty(),
        "input is not recorded: {:?}",
        cast.events
    );
    assert_digest_matches(&close, &casts[0]);
}

#[test]
fn the_user_cannot_trace_read_or_write_the_recording_and_killing_the_recorder_ends_the_session() {
    let Some(h) = host(
        "the_user_cannot_trace_read_or_write_the_recording_and_killing_the_recorder_ends_the_session",
    ) else {
        return;
    };
    let key = h.recorded_key(0x303, None, false);
    let mut s = session(&h, &key);
    // The login shell's parent is the recorder.
    s.send("tr '\\0' ' ' < /proc/$PPID/cmdline; echo; echo parent-$((1+1))\n");
    assert!(s.wait_output("parent-2", WAIT), "{}", s.output());
    assert!(
        s.output().contains("breakglass-record --grant"),
        "{}",
        s.output()
    );
    s.send("head -c1 /proc/$PPID/mem; echo mem-rc=$?\n");
    assert!(s.wait_output("mem-rc=1", WAIT), "{}", s.output());
    if have("strace") {
        s.send("timeout 5 strace -p $PPID -e trace=none; echo strace-rc=$?\n");
        assert!(s.wait_output("strace-rc=1", WAIT), "{}", s.output());
        assert!(
            s.output().contains("Operation not permitted"),
            "{}",
            s.output()
        );
    } else {
        eprintln!("strace not installed: the ptrace attempt is only /proc/PID/mem here");
    }
    let rec = h.recordings();
    s.send(&format!(
        "echo forged > {}/forged.cast; echo write-rc=$?\n",
        rec.display()
    ));
    assert!(s.wait_output("write-rc=1", WAIT), "{}", s.output());
    s.send(&format!("ls {}; echo ls-rc=$?\n", rec.display()));
    assert!(s.wait_output("ls-rc=2", WAIT), "{}", s.output());
    assert!(s.output().contains("Permission denied"), "{}", s.output());
    // Killing the recorder ends the session; the close record says so.
    s.send("kill -9 $PPID\n");
    assert!(s.wait_exit(WAIT).is_some(), "{}", s.output());
    let close = h.record(0x303, "close");
    let detail = close.detail.clone().unwrap_or_default();
    assert!(detail.contains("recorder did not finish"), "{detail}");
    let casts = h.casts();
    assert_eq!(casts.len(), 1, "no forged recording: {casts:?}");
    assert_digest_matches(&close, &casts[0]);
    // Every attempt before the kill is in the recording.
    let cast = Cast::read(&casts[0]).unwrap();
    for seen in ["mem-rc=1", "write-rc=1", "ls-rc=2"] {
        assert!(cast.output().contains(seen), "{seen}: {:?}", cast.events);
    }
    assert!(!rec.join("forged.cast").exists());
}

#[test]
fn spool_full_before_login_refuses_the_session_with_the_reason() {
    let Some(h) = host("spool_full_before_login_refuses_the_session_with_the_reason") else {
        return;
    };
    // Less free space than a session needs to start.
    let fs = Tmpfs::mount(&h.recordings(), "512k");
    own(fs.path(), &h.group.0, 0o2770);
    let key = h.recorded_key(0x304, None, false);
    let out = h.sshd.run(&h.user.name, &key, "echo must-not-run");
    let told = printed(&out);
    assert!(!told.contains("must-not-run"), "{out:?}");
    assert!(
        told.contains("session denied") && told.contains("is full"),
        "{out:?}"
    );
    let deny = h.deny_record();
    assert_eq!(
        deny.reason.as_deref(),
        Some("recording_unavailable"),
        "{deny:?}"
    );
    assert!(deny.detail.unwrap_or_default().contains("is full"));
    drop(fs);
}

#[test]
fn spool_full_mid_session_ends_the_session_with_a_message_and_the_close_record_says_why() {
    let Some(h) = host(
        "spool_full_mid_session_ends_the_session_with_a_message_and_the_close_record_says_why",
    ) else {
        return;
    };
    let fs = Tmpfs::mount(&h.recordings(), "2m");
    own(fs.path(), &h.group.0, 0o2770);
    let key = h.recorded_key(0x305, None, false);
    let mut s = session(&h, &key);
    s.send("echo started; head -c 4000000 /dev/zero | base64; sleep 60\n");
    assert!(s.wait_output("recording failed", WAIT), "{}", h.sshd.log());
    assert!(
        s.output().contains("No space left on device"),
        "{}",
        s.output().len()
    );
    assert!(s.wait_exit(WAIT).is_some(), "the session was not ended");
    let close = h.record(0x305, "close");
    let detail = close.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("recorder failed") && detail.contains("No space left"),
        "{detail}"
    );
    let casts = h.casts();
    assert_digest_matches(&close, &casts[0]);
    assert!(
        breakglass_test_support::wait::until(WAIT, Duration::from_millis(50), || {
            user_processes_matching(&h.user, "sleep 60").is_empty()
        }),
        "the session's processes were left running"
    );
    drop(fs);
}

/// The processes above the session's shell, as `ps` would show them.
const ANCESTRY: &str = "p=$$; while [ \"$p\" -gt 1 ]; do tr '\\0' ' ' < /proc/$p/cmdline; echo; p=$(awk '/^PPid/{print $2}' /proc/$p/status); done";

#[test]
fn a_non_recording_session_has_no_recorder_in_its_process_tree() {
    let Some(h) = host("a_non_recording_session_has_no_recorder_in_its_process_tree") else {
        return;
    };
    let plain = h.key("plain", &CertSpec::new(0x306, &h.user.name, 300));
    let out = h.sshd.run(&h.user.name, &plain, ANCESTRY);
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("sshd"), "{out:?}\n{}", h.sshd.log());
    assert!(!tree.contains("breakglass-record"), "{tree}");
    let close = h.record(0x306, "close");
    assert_eq!(close.recording_sha256, None);
    // The same probe under a recording tier sees the recorder (so the probe can fail).
    let recorded = h.recorded_key(0x307, None, false);
    let out = h.sshd.run(&h.user.name, &recorded, ANCESTRY);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("breakglass-record --grant g-0000000000000307"),
        "{out:?}"
    );
}

#[test]
fn a_recording_certificate_without_the_recorder_as_force_command_is_denied() {
    let Some(h) = host("a_recording_certificate_without_the_recorder_as_force_command_is_denied")
    else {
        return;
    };
    let mut spec =
        CertSpec::new(0x308, &h.user.name, 300).with_force_command("/bin/echo unrecorded");
    spec.permits
        .push(breakglass_proto::profile::EXT_SESSION_RECORDING.into());
    let key = h.key("bypass", &spec);
    let out = h.sshd.run(&h.user.name, &key, "x");
    let told = printed(&out);
    assert!(!told.lines().any(|l| l.trim() == "unrecorded"), "{out:?}");
    assert!(told.contains("not the recorder"), "{out:?}");
    let deny = h.deny_record();
    assert_eq!(
        deny.reason.as_deref(),
        Some("recording_not_forced"),
        "{deny:?}"
    );
}

#[test]
fn a_missing_recorder_refuses_the_session_with_the_reason() {
    let Some(h) = host("a_missing_recorder_refuses_the_session_with_the_reason") else {
        return;
    };
    let missing = "/nonexistent/breakglass-record";
    h.sshd.set_module_options(&format!("recorder={missing}"));
    let spec = CertSpec::new(0x309, &h.user.name, 300).with_recording(missing, None, false);
    let key = h.key("missing", &spec);
    let out = h.sshd.run(&h.user.name, &key, "echo must-not-run");
    let told = printed(&out);
    assert!(!told.contains("must-not-run"), "{out:?}");
    assert!(
        told.contains("recorder /nonexistent/breakglass-record is missing"),
        "{out:?}"
    );
    let deny = h.deny_record();
    assert_eq!(
        deny.reason.as_deref(),
        Some("recording_unavailable"),
        "{deny:?}"
    );
    assert!(deny.detail.unwrap_or_default().contains("missing"));
}

/// A start-up file that says whether it runs under the recorder (its shell's parent is
/// the recorder) or before it; before it, it also leaves a process behind.
const START_UP_PROBE: &str = r#"case "$(tr '\0' ' ' < /proc/$PPID/cmdline)" in
  *breakglass-record*) echo "$0" >> "$HOME/ran-under-recorder" ;;
  *) echo "$0" >> "$HOME/ran-before-recorder"; (sleep 301 &) ;;
esac
"#;

/// Writes `text` to the user's file `name` (owned by the user).
fn user_file(h: &RecordingHost, name: &str, text: &str) -> std::path::PathBuf {
    let home = Path::new("/home").join(&h.user.name);
    let path = home.join(name);
    std::fs::write(&path, text).expect("write start-up file");
    let chown = std::process::Command::new("chown")
        .arg(format!("{0}:{0}", h.user.name))
        .arg(&path)
        .status()
        .expect("chown");
    assert!(chown.success());
    path
}

fn set_login_shell(h: &RecordingHost, shell: &str) {
    let ok = std::process::Command::new("usermod")
        .args(["-s", shell, &h.user.name])
        .status()
        .expect("usermod");
    assert!(ok.success(), "usermod -s {shell}");
}

#[test]
fn the_users_start_up_files_never_run_before_the_recorder_in_bash_or_zsh() {
    let Some(h) = host("the_users_start_up_files_never_run_before_the_recorder_in_bash_or_zsh")
    else {
        return;
    };
    let home = Path::new("/home").join(&h.user.name);
    user_file(&h, ".bashrc", START_UP_PROBE);
    user_file(&h, ".zshenv", START_UP_PROBE);
    for (grant, shell) in [(0x30a, "/bin/bash"), (0x30b, "/usr/bin/zsh")] {
        if !Path::new(shell).exists() {
            eprintln!("SKIPPED for {shell}: not installed");
            continue;
        }
        set_login_shell(&h, shell);
        let key = h.recorded_key(grant, Some("echo forced-ok"), false);
        let out = h.sshd.run(&h.user.name, &key, "x");
        assert!(
            printed(&out).contains("forced-ok"),
            "{shell}: {out:?}\n{}",
            h.sshd.log()
        );
        h.record(grant, "close");
        // The probe runs (the session's own shell reads it, under the recorder), so it
        // would have seen a run before the recorder.
        let under = std::fs::read_to_string(home.join("ran-under-recorder")).unwrap_or_default();
        assert!(!under.is_empty(), "{shell}: the probe never ran");
        let before = std::fs::read_to_string(home.join("ran-before-recorder")).unwrap_or_default();
        assert!(
            before.is_empty(),
            "{shell}: ran before the recorder: {before}"
        );
        let left = breakglass_test_support::users::user_processes_matching(&h.user, "sleep 301");
        assert!(left.is_empty(), "{shell}: {left:?}");
        let _ = std::fs::remove_file(home.join("ran-under-recorder"));
    }
}

#[test]
fn a_login_shell_that_always_reads_the_users_start_up_files_refuses_the_recorded_session() {
    let Some(h) = host(
        "a_login_shell_that_always_reads_the_users_start_up_files_refuses_the_recorded_session",
    ) else {
        return;
    };
    let Some(fish) = ["/usr/bin/fish", "/bin/tcsh", "/bin/csh"]
        .into_iter()
        .find(|s| Path::new(s).exists())
    else {
        eprintln!("SKIPPED: none of fish, tcsh, csh is installed");
        return;
    };
    set_login_shell(&h, fish);
    let key = h.recorded_key(0x30c, Some("echo must-not-run"), false);
    let out = h.sshd.run(&h.user.name, &key, "x");
    let told = printed(&out);
    assert!(!told.contains("must-not-run"), "{out:?}");
    assert!(told.contains(&format!("login shell {fish}")), "{out:?}");
    let deny = h.deny_record();
    assert_eq!(
        deny.reason.as_deref(),
        Some("recording_unavailable"),
        "{deny:?}"
    );
}

#[test]
fn processes_started_in_the_session_before_the_recorder_are_stopped_and_the_session_refused() {
    let Some(h) = host(
        "processes_started_in_the_session_before_the_recorder_are_stopped_and_the_session_refused",
    ) else {
        return;
    };
    // A new audit session (as pam_loginuid gives each login), in which the user's shell
    // leaves a process behind and then starts the recorder, as a start-up file could.
    let dir = tempfile::tempdir().expect("tempdir");
    own(dir.path(), &h.group.0, 0o2777);
    let cast = dir.path().join("s.cast");
    let uid = h.user.uid;
    let inner = format!(
        "sleep 302 & exec {} --grant g-000000000000030d -- 'echo must-not-run'",
        h.recorder.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo {uid} > /proc/self/loginuid && exec setpriv --reuid={uid} --regid={uid} --clear-groups -- sh -c \"$0\""
        ))
        .arg(&inner)
        .env(breakglass_proto::recording::RECORDING_ENV, &cast)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the recorder");
    let told = printed(&out);
    assert_eq!(out.status.code(), Some(70), "{told}");
    assert!(!told.contains("must-not-run"), "{told}");
    assert!(
        told.contains("started before the recorder") && told.contains("sleep (pid"),
        "{told}"
    );
    let left = breakglass_test_support::users::user_processes_matching(&h.user, "sleep 302");
    assert!(left.is_empty(), "not stopped: {left:?}");
    let status =
        std::fs::read_to_string(breakglass_proto::recording::end_path(&cast)).expect("status file");
    assert!(
        status
            .starts_with("failed: 1 process(es) of this session were started before the recorder"),
        "{status}"
    );
}

#[test]
fn a_command_that_writes_much_without_reading_its_input_does_not_stall_the_session() {
    let Some(h) =
        host("a_command_that_writes_much_without_reading_its_input_does_not_stall_the_session")
    else {
        return;
    };
    // 3 MB of output before the command reads any input, while the client sends 4 MB of
    // input: neither may wait for the other through the recorder.
    let key = h.recorded_key(
        0x30e,
        Some("base64 -w 76 /dev/zero | head -c 3000000; echo; echo end-of-output; wc -c"),
        false,
    );
    let input = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(input.path(), vec![b'x'; 4_000_000]).expect("write input");
    let output = tempfile::NamedTempFile::new().expect("tempfile");
    let mut child = h
        .sshd
        .ssh(&h.user.name, &key, &[])
        .arg("x")
        .stdin(std::fs::File::open(input.path()).expect("open input"))
        .stdout(output.reopen().expect("reopen"))
        .spawn()
        .expect("ssh");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the session stalled: {}", h.sshd.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stdout = std::fs::read_to_string(output.path()).expect("read output");
    assert!(
        stdout.contains("end-of-output"),
        "{}",
        &stdout[stdout.len().saturating_sub(200)..]
    );
    assert!(
        stdout.lines().any(|l| l.trim() == "4000000"),
        "all input reached the command: {}",
        &stdout[stdout.len().saturating_sub(200)..]
    );
    h.record(0x30e, "close");
}
