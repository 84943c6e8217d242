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
