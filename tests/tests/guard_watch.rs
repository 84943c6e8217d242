//! A dead session guard must not mean an endless session. With real sshd, the PAM module
//! and its guards, `breakglass host watch-revocations` (in-process, against an
//! in-process daemon) and certificates of a few seconds issued by that daemon:
//! - two sessions on one certificate, the guard of one SIGKILLed: the watcher starts a
//!   replacement guard and both sessions end at expiry (the delays past `valid_before`
//!   are printed); guards run with `oom_score_adj` -1000;
//! - a guard killed while no watcher runs leaves its session running past expiry; once
//!   the watcher starts, the replacement it starts ends the session at once.
//!
//! No timed assertions: every wait is a bounded poll; the measured delays are printed.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_proto::sessions::{self, Registration};
use breakglass_test_support::process::{is_gone, sigkill};
use breakglass_test_support::wait;
use breakglass_tests::host::{Krl, TestHost, session_end};
use breakglass_tests::revocation::{self, issue};
use breakglass_tests::sshd::{SshSession, TestUser, require_root};

/// Generous bound on every wait for a session to end after its expiry.
const END_BOUND: Duration = Duration::from_secs(30);

/// A bounded poll on the runtime's timer, every 50 ms.
async fn poll<T>(bound: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    wait::poll_async(bound, Duration::from_millis(50), f).await
}

fn oom_score_adj(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// Whether root may lower `oom_score_adj` here (it needs CAP_SYS_RESOURCE, which some
/// sandboxes withhold even from root): tried on a throw-away child.
fn root_may_lower_oom_score_adj() -> bool {
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let ok = std::fs::write(format!("/proc/{}/oom_score_adj", child.id()), "-1000").is_ok()
        && oom_score_adj(child.id()) == "-1000";
    let _ = child.kill();
    let _ = child.wait();
    ok
}

/// The guard `pid` runs with `oom_score_adj` -1000; where root may not lower it, the
/// guard said so in syslog instead.
fn assert_oom_protected(h: &TestHost, pid: u32, protectable: bool) {
    if protectable {
        assert_eq!(oom_score_adj(pid), "-1000", "guard {pid}");
    } else {
        eprintln!(
            "NOTE: root may not lower oom_score_adj here (no CAP_SYS_RESOURCE); checking that \
             guard {pid} logged it instead"
        );
        let pid_tag = format!("[{pid}]");
        let line = h.sshd.syslog.expect(
            &["event=guard_oom_adjust_error", &pid_tag],
            Duration::from_secs(5),
        );
        assert!(line.contains("oom_score_adj"), "{line}");
    }
}

fn kill_guard(pid: u32) {
    sigkill(pid).expect("kill the guard");
}

/// The registration of `session` once a guard other than `dead` holds it.
async fn replaced(dir: &Path, session: &str, dead: u32) -> Option<Registration> {
    poll(Duration::from_secs(10), || {
        sessions::read_registrations(dir)
            .into_iter()
            .find(|r| r.session == session && r.guard_pid != dead)
    })
    .await
}

/// Waits (off the runtime, bounded) for ssh to exit; returns when it was seen to exit.
async fn wait_end(s: SshSession, bound: Duration) -> (Option<SystemTime>, SshSession) {
    let (end, s) = session_end(s, bound).await;
    (end.map(|(_, at)| at), s)
}

/// Seconds from `valid_before` (Unix seconds) to `at`; negative when before.
fn past(valid_before: u64, at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() - valid_before as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_whose_guard_was_killed_still_ends_at_expiry_like_its_sibling() {
    if !require_root("a real sshd, PAM, a test user and killing a root guard") {
        return;
    }
    let d = revocation::daemon().await;
    let mut h = TestHost::start(&d, "db-7", Krl::None).await;
    h.start_watcher();
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 25).await;
    let valid_before = g.key.valid_before.expect("valid_before");
    let (killed_session, killed_reg) = h.open(&user.name, &g, &[]).await;
    let (other_session, other_reg) = h
        .open(&user.name, &g, std::slice::from_ref(&killed_reg.session))
        .await;
    assert!(
        killed_reg.guard.is_some(),
        "the guard registers what replaces it"
    );
    let oom_protectable = root_may_lower_oom_score_adj();
    for r in [&killed_reg, &other_reg] {
        assert_oom_protected(&h, r.guard_pid, oom_protectable);
    }

    kill_guard(killed_reg.guard_pid);
    let dead = killed_reg.guard_pid;
    assert!(
        poll(Duration::from_secs(5), || is_gone(dead).then_some(()))
            .await
            .is_some()
    );
    let replacement = replaced(&h.sessions_dir(), &killed_reg.session, dead)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no replacement guard registered session {}: {:#?}",
                killed_reg.session,
                h.sshd.syslog.lines()
            )
        });
    assert_oom_protected(&h, replacement.guard_pid, oom_protectable);
    h.sshd.syslog.expect(
        &[
            "event=guard_replaced",
            &format!("dead_guard={dead}"),
            &killed_reg.session,
        ],
        Duration::from_secs(5),
    );

    let left = valid_before.saturating_sub(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let bound = Duration::from_secs(left) + END_BOUND;
    let (killed_end, killed_session) = wait_end(killed_session, bound).await;
    let (other_end, other_session) = wait_end(other_session, bound).await;
    let killed_end = killed_end.unwrap_or_else(|| {
        panic!(
            "the session whose guard was killed still runs {END_BOUND:?} after expiry: {}\n{:#?}",
            killed_session.output(),
            h.sshd.syslog.lines()
        )
    });
    let other_end = other_end.unwrap_or_else(|| {
        panic!(
            "the other session still runs {END_BOUND:?} after expiry: {}",
            other_session.output()
        )
    });
    println!(
        "guard-killed session ended {:+.3} s past valid_before; the other session {:+.3} s",
        past(valid_before, killed_end),
        past(valid_before, other_end)
    );
    // Neither ended before its certificate expired (valid_before is whole seconds).
    assert!(past(valid_before, killed_end) > -1.0);
    assert!(past(valid_before, other_end) > -1.0);

    // Both forced ends say expired; the replaced guard's says which guard died.
    let forced_end = |session: &str| {
        h.sshd.syslog.expect(
            &["event=session_forced_end", "reason=expired", session],
            Duration::from_secs(10),
        )
    };
    let line = forced_end(&killed_reg.session);
    assert!(line.contains(&format!("dead_guard={dead}")), "{line}");
    forced_end(&other_reg.session);
    // The replacement cleaned up after itself.
    let dir = h.sessions_dir();
    assert!(
        poll(Duration::from_secs(10), || {
            (!sessions::registration_path(&dir, &killed_reg.session).exists()
                && !sessions::guard_state_path(&dir, &killed_reg.session).exists())
            .then_some(())
        })
        .await
        .is_some()
    );
    drop((killed_session, other_session));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_guard_started_after_expiry_ends_the_session_at_once() {
    if !require_root("a real sshd, PAM, a test user and killing a root guard") {
        return;
    }
    let d = revocation::daemon().await;
    let mut h = TestHost::start(&d, "db-7", Krl::None).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 15).await;
    let valid_before = g.key.valid_before.expect("valid_before");
    let (session, reg) = h.open(&user.name, &g, &[]).await;
    kill_guard(reg.guard_pid);

    // No watcher: nothing ends the session at expiry.
    let until = UNIX_EPOCH + Duration::from_secs(valid_before + 2);
    let (ended, session) = wait_end(
        session,
        until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
    .await;
    assert_eq!(
        ended,
        None,
        "the session ended without a guard: {}",
        session.output()
    );

    // The watcher starts: its replacement guard finds the session past expiry.
    let started = Instant::now();
    h.start_watcher();
    let (ended, session) = wait_end(session, END_BOUND).await;
    let ended = ended.unwrap_or_else(|| {
        panic!(
            "the overdue session still runs {END_BOUND:?} after the watcher started: {}\n{:#?}",
            session.output(),
            h.sshd.syslog.lines()
        )
    });
    println!(
        "overdue session ended {:.3} s after the watcher started ({:+.3} s past valid_before)",
        started.elapsed().as_secs_f64(),
        past(valid_before, ended)
    );
    let line = h.sshd.syslog.expect(
        &["event=session_forced_end", "reason=expired", &reg.session],
        Duration::from_secs(10),
    );
    assert!(
        line.contains(&format!("dead_guard={}", reg.guard_pid)),
        "{line}"
    );
    assert!(
        h.sshd
            .wait_spool(&g.grant_id, "forced_end", Duration::from_secs(5)),
        "{:?}",
        h.sshd.spool_files()
    );
    drop(session);
    h.stop().await;
}
