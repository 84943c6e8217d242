//! [`RealHost`]: the module's [`Host`] on the real operating system: the host name and
//! audit session id from `/proc`, and the start of the session guard (`posix_spawn` of
//! its program in a session of its own, before the certificate's checks end; a pidfd on
//! sshd's session process; its spec through a pipe once the checks pass, and the commit
//! once the open record is durable; the wait for its readiness line; then it runs on as
//! this process's child, never waited for). The system calls themselves are
//! in [`crate::system`].
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bg_syslog::Severity;

use crate::error::Error;
use crate::files;
use crate::guard::{COMMIT, GUARD_PIDFD, GUARD_READY_FD, GUARD_SPEC_FD, GuardSpec, SPEC_END};
use crate::log::LineSender;
use crate::module::{Host, IDENT, PendingGuard, SYSLOG_FLUSH};
use crate::system;

/// How long the module waits for the guard to report that it is watching.
pub const GUARD_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a withdrawn guard gets to unregister its session and exit before it is
/// killed.
pub const GUARD_WITHDRAW_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest guard spec (it must fit in a pipe buffer, 64 KiB on Linux).
pub const MAX_GUARD_SPEC: usize = 60 * 1024;

/// The real operating system.
#[derive(Debug)]
pub struct RealHost;

impl Host for RealHost {
    fn hostname(&self) -> Result<String, String> {
        let name =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
        Ok(name.trim().to_owned())
    }

    fn pid(&self) -> u32 {
        system::getpid()
    }

    fn audit_session_id(&self) -> Option<u32> {
        let s = std::fs::read_to_string("/proc/self/sessionid").ok()?;
        s.trim().parse::<u32>().ok().filter(|&id| id != u32::MAX)
    }

    fn login_shell(&self, user: &str) -> Option<String> {
        system::login_shell(user).ok().flatten()
    }

    fn is_sshd(&self) -> bool {
        std::fs::read_link("/proc/self/exe")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().starts_with(b"sshd")))
            .unwrap_or(false)
    }

    fn launch_guard(
        &self,
        guard: &Path,
        session: &str,
    ) -> Result<Box<dyn PendingGuard + '_>, Error> {
        Ok(Box::new(
            launch_guard(guard, session).map_err(Error::Guard)?,
        ))
    }

    fn log(&self, socket: &Path, severity: Severity, fields: &[(&str, &str)]) {
        // At once from this thread; when that fails, a sender thread that reconnects and
        // is waited for a bounded time (PAM still never blocks for long).
        let log = LineSender::new(IDENT, socket);
        log.send(severity, fields);
        log.flush(SYSLOG_FLUSH);
    }
}

/// A guard whose program is starting and that waits for its spec on fd
/// [`GUARD_SPEC_FD`].
struct LaunchedGuard {
    /// The program, for messages.
    program: std::path::PathBuf,
    /// The session id on its command line.
    session: String,
    /// Killed and reaped if dropped before it reports ready; released once it does.
    child: Option<system::Child>,
    /// The write end of the spec pipe; closed once the spec is written (or dropped
    /// unwritten).
    spec_write: Option<File>,
    ready: File,
}

/// Starts the guard program for `session`: a new session, a pidfd on this process, the
/// readiness pipe and the (still empty) spec pipe on their fd numbers. `posix_spawn`
/// returns once the program executes: the module's process is not copied (see
/// [`system::spawn`]).
fn launch_guard(guard: &Path, session: &str) -> Result<LaunchedGuard, String> {
    files::check_executable(guard)?;
    let program = CString::new(guard.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let args = [
        c"--session".to_owned(),
        CString::new(session).map_err(|e| e.to_string())?,
    ];
    let (spec_read, spec_write) = system::pipe().map_err(|e| format!("pipe: {e}"))?;
    let pidfd = system::pidfd_open(system::getpid()).map_err(|e| format!("pidfd_open: {e}"))?;
    let (read, write) = system::pipe().map_err(|e| format!("pipe: {e}"))?;
    let child = system::spawn_session_leader(
        &program,
        &args,
        &[
            (pidfd.as_fd(), GUARD_PIDFD),
            (write.as_fd(), GUARD_READY_FD),
            (spec_read.as_fd(), GUARD_SPEC_FD),
        ],
    )
    .map_err(|e| format!("{}: {e}", guard.display()))?;
    Ok(LaunchedGuard {
        program: guard.to_owned(),
        session: session.to_owned(),
        child: Some(child),
        spec_write: Some(File::from(spec_write)),
        ready: File::from(read),
    })
}

impl PendingGuard for LaunchedGuard {
    fn session(&self) -> &str {
        &self.session
    }

    fn hand_over(
        mut self: Box<Self>,
        spec: &GuardSpec,
        meanwhile: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + GUARD_READY_TIMEOUT;
        self.give_spec(spec).map_err(Error::Guard)?;
        // The guard registers the session while this runs (the open record's fsync).
        if let Err(e) = meanwhile() {
            self.withdraw();
            return Err(e);
        }
        self.commit_and_wait(deadline).map_err(Error::Guard)
        // On failure, dropping `self` kills and reaps the guard.
    }
}

impl LaunchedGuard {
    /// Writes the guard its spec (the pipe stays open for the commit).
    fn give_spec(&mut self, spec: &GuardSpec) -> Result<(), String> {
        let mut json = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
        json.push(SPEC_END);
        // The whole spec (and the commit) must fit in the pipe buffer: it is written
        // before the guard reads.
        if json.len() > MAX_GUARD_SPEC {
            return Err(format!(
                "guard spec is {} bytes; the limit is {MAX_GUARD_SPEC}",
                json.len()
            ));
        }
        self.spec_write
            .as_mut()
            .ok_or("the guard spec was handed over already")?
            .write_all(&json)
            .map_err(|e| format!("writing the guard spec: {e}"))
    }

    /// Commits the session (the open record is durable), waits until the guard reports
    /// that it watches this process, then lets it run on. A guard that fails or does not
    /// report in time is killed and reaped (when `self` is dropped).
    fn commit_and_wait(&mut self, deadline: Instant) -> Result<(), String> {
        let mut pipe = self
            .spec_write
            .take()
            .ok_or("the guard spec was handed over already")?;
        pipe.write_all(&[COMMIT])
            .map_err(|e| format!("committing the guard's session: {e}"))?;
        drop(pipe);
        let guard = self.program.clone();
        self.wait_ready(&guard, deadline)?;
        if let Some(child) = self.child.take() {
            child.release();
        }
        Ok(())
    }

    /// The session is not admitted after all: the spec pipe is closed without the
    /// commit, and the guard, which may have registered the session, unregisters it and
    /// exits; it is waited for (briefly; then it is killed).
    fn withdraw(&mut self) {
        drop(self.spec_write.take());
        if let Some(child) = self.child.as_mut() {
            let _ = child.reap_within(GUARD_WITHDRAW_TIMEOUT);
        }
    }

    fn wait_ready(&mut self, guard: &Path, deadline: Instant) -> Result<(), String> {
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} did not report ready within {GUARD_READY_TIMEOUT:?}",
                    guard.display()
                ));
            }
            if !system::poll_readable(self.ready.as_fd(), left).map_err(|e| format!("poll: {e}"))? {
                continue;
            }
            let mut buf = [0u8; 64];
            let n = self
                .ready
                .read(&mut buf)
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                let said = String::from_utf8_lossy(&got).trim().to_owned();
                return Err(if said.is_empty() {
                    format!(
                        "{} exited without reporting ready (check that it runs: {} --help)",
                        guard.display(),
                        guard.display()
                    )
                } else {
                    format!("{}: {said}", guard.display())
                });
            }
            got.extend_from_slice(&buf[..n]);
            if got.starts_with(b"ok\n") {
                return Ok(());
            }
            if got.len() > 4096 {
                return Err(format!("{} wrote an unexpected reply", guard.display()));
            }
        }
    }
}
