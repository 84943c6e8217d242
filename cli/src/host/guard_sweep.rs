//! Who watches the guard: `breakglass host watch-revocations` replaces session guards
//! that died.
//!
//! Only a session's guard ends it at expiry. A guard killed by SIGKILL or the OOM killer
//! would leave its session running for good, so the watcher sweeps the session registry
//! every second, on a thread of its own (it needs neither the daemon nor the async
//! runtime). A live guard holds an exclusive `flock` on its registration file; a
//! registration nobody holds has lost its guard. For such a session the sweep starts
//! the registration's `guard=` executable as `breakglass-guard --resume SESSION
//! --sessions DIR`: the replacement takes the lock, re-registers, and ends the session
//! the same way the first guard would have, at expiry, or at once when expiry has
//! already passed. A killed guard's session so ends within about a second of expiry.
//!
//! Who watches the watcher: systemd (`Restart=always` in
//! `breakglass-watch-revocations.service`, which also sets `OOMScoreAdjust=-1000`).
//! Without a running watcher a dead guard is not replaced.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use breakglass_proto::sessions::{self, Registration};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How often the registry is swept for sessions without a guard.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Replacements of one session that may fail before the sweep gives up on it.
const MAX_FAILURES: u32 = 3;

/// Whether a registered session still has its guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuardState {
    /// The guard runs.
    Alive,
    /// The guard is gone: nothing holds the registration.
    Gone,
    /// The registration went away meanwhile: the session ended.
    Unregistered,
}

/// Whether the guard of `reg` (registered in `dir`) still runs. For a registration of
/// an older guard (no `guard=`, no lock) it looks at the pid, which may have been
/// recycled: only good enough to report.
#[must_use]
pub fn guard_state(dir: &Path, reg: &Registration) -> GuardState {
    if reg.guard.is_none() {
        return if pid_alive(reg.guard_pid) {
            GuardState::Alive
        } else {
            GuardState::Gone
        };
    }
    let Ok(file) = File::open(reg.path(dir)) else {
        return GuardState::Unregistered;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it; the lock is dropped (released) here.
        Ok(_) => GuardState::Gone,
        Err((_, Errno::EWOULDBLOCK)) => GuardState::Alive,
        // flock cannot fail otherwise on an open file; never replace a guard on doubt.
        Err(_) => GuardState::Alive,
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Refuses a guard executable that others than root could have replaced (it runs as root).
fn check_guard(path: &Path) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = m.permissions().mode();
    if !m.is_file() || mode & 0o111 == 0 {
        return Err(format!("{} is not an executable file", path.display()));
    }
    if m.uid() != 0 && m.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} is owned by uid {}, not root: chown root {}",
            path.display(),
            m.uid(),
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:04o}): chmod go-w {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

/// `GUARD --resume SESSION --sessions DIR`, in a process group of its own (a Ctrl-C of
/// a watcher run by hand must not reach it), stderr to the watcher's.
fn start(guard: &Path, dir: &Path, session: &str) -> Result<Child, String> {
    check_guard(guard)?;
    Command::new(guard)
        .arg("--resume")
        .arg(session)
        .arg("--sessions")
        .arg(dir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", guard.display()))
}

/// The sweep's memory: replacements it started and how often they failed.
#[derive(Debug, Default)]
pub struct GuardSweep {
    /// Replacement guards started by this watcher, by session, until they exit.
    started: HashMap<String, Child>,
    /// Failed replacements, by session.
    failures: HashMap<String, u32>,
    /// Sessions already reported as beyond replacement.
    reported: HashSet<String>,
}

impl GuardSweep {
    /// One sweep of `dir`: starts a replacement guard for each registered session whose
    /// guard is gone. Returns how many were started.
    pub fn sweep(&mut self, dir: &Path) -> usize {
        self.reap();
        let regs = sessions::read_registrations(dir);
        let registered: HashSet<&str> = regs.iter().map(|r| r.session.as_str()).collect();
        self.failures.retain(|s, _| registered.contains(s.as_str()));
        self.reported.retain(|s| registered.contains(s.as_str()));
        let mut started = 0;
        for reg in &regs {
            if self.started.contains_key(&reg.session) || guard_state(dir, reg) != GuardState::Gone
            {
                continue;
            }
            let Some(guard) = &reg.guard else {
                if self.reported.insert(reg.session.clone()) {
                    eprintln!(
                        "breakglass: the guard (pid {}) of session {} is gone and cannot be \
                         replaced: an older breakglass-guard registered it, so nothing ends the \
                         session at expiry; end it by hand (grant {})",
                        reg.guard_pid, reg.session, reg.grant
                    );
                }
                continue;
            };
            if self.failures.get(&reg.session).copied().unwrap_or(0) >= MAX_FAILURES {
                if self.reported.insert(reg.session.clone()) {
                    eprintln!(
                        "breakglass: giving up replacing the guard of session {} after \
                         {MAX_FAILURES} failures (see the breakglass-guard lines in syslog); \
                         end the session by hand (grant {})",
                        reg.session, reg.grant
                    );
                }
                continue;
            }
            match start(guard, dir, &reg.session) {
                Ok(child) => {
                    eprintln!(
                        "breakglass: the guard (pid {}) of session {} is gone; started a \
                         replacement (pid {})",
                        reg.guard_pid,
                        reg.session,
                        child.id()
                    );
                    self.started.insert(reg.session.clone(), child);
                    started += 1;
                }
                Err(e) => {
                    eprintln!(
                        "breakglass: cannot replace the dead guard of session {}: {e}",
                        reg.session
                    );
                    *self.failures.entry(reg.session.clone()).or_default() += 1;
                }
            }
        }
        started
    }

    /// Collects replacements that exited; counts those that failed.
    fn reap(&mut self) {
        let failures = &mut self.failures;
        self.started.retain(|session, child| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                if !status.success() {
                    eprintln!(
                        "breakglass: the replacement guard of session {session} failed ({status})"
                    );
                    *failures.entry(session.clone()).or_default() += 1;
                }
                false
            }
            Err(_) => false,
        });
    }
}

/// The sweep running on its own thread every [`SWEEP_EVERY`]; stopped when dropped.
#[derive(Debug)]
pub struct Sweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sweeper {
    /// Starts sweeping the registry in `dir`.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let dir: PathBuf = dir.to_owned();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("guard-sweep".into())
            .spawn(move || {
                let mut sweep = GuardSweep::default();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SWEEP_EVERY) {
                    sweep.sweep(&dir);
                }
            })
            .map_err(|e| eprintln!("breakglass: cannot start the guard sweep: {e}"))
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn reg(dir: &Path, session: &str, guard: Option<PathBuf>) -> Registration {
        let r = Registration {
            session: session.into(),
            grant: "g-1".into(),
            serial: 1,
            key_id: "breakglass/g-1/sre@example.com".into(),
            expires: 1,
            guard_pid: 999_999_999,
            guard,
        };
        std::fs::write(r.path(dir), r.to_text()).unwrap();
        r
    }

    #[test]
    fn a_held_registration_has_a_guard_and_an_unheld_one_is_replaced_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A stand-in guard that records its arguments and lives a moment.
        let guard = d.join("guard.sh");
        let calls = d.join("calls");
        std::fs::write(
            &guard,
            format!("#!/bin/sh\necho \"$@\" >> {}\nsleep 0.3\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sessions = d.join("sessions");
        std::fs::create_dir(&sessions).unwrap();
        let held = reg(&sessions, "held", Some(guard.clone()));
        let lock = Flock::lock(
            File::open(held.path(&sessions)).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let dead = reg(&sessions, "dead", Some(guard.clone()));
        let old = reg(&sessions, "old", None);
        assert_eq!(guard_state(&sessions, &held), GuardState::Alive);
        assert_eq!(guard_state(&sessions, &dead), GuardState::Gone);
        assert_eq!(guard_state(&sessions, &old), GuardState::Gone);

        let mut s = GuardSweep::default();
        assert_eq!(s.sweep(&sessions), 1);
        // Not again while the replacement runs.
        assert_eq!(s.sweep(&sessions), 0);
        let child = s.started.get_mut("dead").unwrap();
        assert!(child.wait().unwrap().success());
        let args = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(
            args.trim(),
            format!("--resume dead --sessions {}", sessions.display())
        );
        drop(lock);
        // Released: the held session's guard is gone too now.
        assert_eq!(guard_state(&sessions, &held), GuardState::Gone);
        std::fs::remove_file(dead.path(&sessions)).unwrap();
        assert_eq!(guard_state(&sessions, &dead), GuardState::Unregistered);
    }

    #[test]
    fn a_writable_guard_is_never_started_and_failures_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let guard = dir.path().join("guard.sh");
        std::fs::write(&guard, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_guard(&guard).unwrap_err().contains("chmod go-w"));
        let sessions = dir.path().join("sessions");
        std::fs::create_dir(&sessions).unwrap();
        reg(&sessions, "s", Some(guard));
        let mut s = GuardSweep::default();
        for _ in 0..(MAX_FAILURES + 2) {
            assert_eq!(s.sweep(&sessions), 0);
        }
        assert_eq!(s.failures["s"], MAX_FAILURES);
        assert!(s.reported.contains("s"));
    }
}
