//! The session guard: a helper the module starts for each breakglass session
//! (`posix_spawn`, in a session of its own; it stays the child of sshd's [priv] process,
//! which never waits for it and which it outlives; it is started before the
//! certificate's checks end, gets its spec once they pass and the commit once the open
//! record is durable). It holds a pidfd on sshd's session ([priv]) process, warns the session's
//! terminal before the certificate expires, and at `valid_before` ends the session:
//! SIGTERM to sshd, SIGKILL after a grace period, then a sweep of every process left in
//! the session's audit session (`nohup`/`setsid` children included). It exits at once
//! when the session ends normally with nothing left behind.
//!
//! A guard that dies (SIGKILL, the OOM killer, a crash) must not leave its session
//! running forever: it protects itself from the OOM killer (`oom_score_adj` -1000), and
//! the revocation watcher replaces a dead guard: it starts `breakglass-guard --resume`
//! for a registered session whose guard no longer holds the registration's lock (see
//! [`breakglass_proto::sessions`]). The replacement re-finds sshd's session process from
//! the saved pid and start time, and ends the session at expiry, or at once when expiry
//! has already passed.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bg_syslog::Severity;
use serde::{Deserialize, Serialize};

use crate::log::{LineSender, borrowed, record_fields};
use crate::procs;
use crate::system;
use crate::verify::fmt_time;
pub use breakglass_proto::pam_options::ShipSpec;
use breakglass_proto::sessions::{self, Registration, RevocationMarker};
use breakglass_proto::spool::{SessionEvent, SessionRecord};
use breakglass_proto::text;

/// Syslog ident of the guard.
pub const IDENT: &str = "breakglass-guard";

/// Fd number the guard finds the pidfd of the watched sshd process on.
pub const GUARD_PIDFD: RawFd = 3;
/// Fd number the guard reports readiness on (`ok` and a newline, or `error: ...`).
pub const GUARD_READY_FD: RawFd = 4;
/// Fd number the guard reads its JSON spec from (kept out of argv, which every local
/// user can read in `ps`): the spec on one line ([`SPEC_END`]), written once the
/// session passed its checks; then, once the session's open record is durable, the
/// [`COMMIT`] byte. The pipe closed before the spec means the session was not admitted
/// (the guard exits without acting); closed after the spec without the commit, that the
/// module withdrew it (the guard unregisters the session and exits without acting).
pub const GUARD_SPEC_FD: RawFd = 5;
/// Ends the spec on [`GUARD_SPEC_FD`] (compact JSON holds no raw newline).
pub const SPEC_END: u8 = b'\n';
/// Written after the spec once the session's open record is durable: the session is
/// admitted.
pub const COMMIT: u8 = b'+';

/// Why the guard was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardMode {
    /// Watch an open session and end it when its certificate expires.
    Expire,
    /// End a denied session's connection shortly (sshd keeps `ssh -N` connected otherwise).
    Deny,
}

/// What the module hands the guard (as JSON in `--spec`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSpec {
    /// Why the guard runs.
    pub mode: GuardMode,
    /// The open (or deny) record of the session.
    pub record: SessionRecord,
    /// Spool directory for warn and forced-end records.
    pub spool: Option<PathBuf>,
    /// Syslog socket.
    pub syslog: PathBuf,
    /// Audit session id of the session, for the sweep and for finding its terminal.
    pub audit_session: Option<u32>,
    /// When to warn the terminal (Unix seconds).
    pub warn_at: Option<u64>,
    /// When to end the session (Unix milliseconds).
    pub end_at_ms: u64,
    /// How long sshd gets to exit after SIGTERM before SIGKILL (milliseconds).
    pub grace_ms: u64,
    /// Run directory where the guard registers the session for the revocation watcher
    /// (`breakglass_proto::sessions`); `None`: no live revocation, only expiry.
    #[serde(default)]
    pub sessions: Option<PathBuf>,
    /// Shipper to start after each record reaches the spool; `None`: the timer ships.
    #[serde(default)]
    pub ship: Option<ShipSpec>,
    /// The session's recording (a recording tier): a forced end's record carries its digest.
    #[serde(default)]
    pub recording: Option<PathBuf>,
}

/// How often a registered guard looks for a revocation marker.
const REVOCATION_POLL: Duration = Duration::from_millis(250);

const USAGE: &str = "usage: breakglass-guard --session <session id>\n\
       breakglass-guard --resume <session id> --sessions <dir>\n\
Started by pam_breakglass.so with a pidfd on fd 3, a readiness pipe on fd 4 and its \
JSON spec on fd 5; not meant to be run by hand. With --resume (started by breakglass \
host watch-revocations when a session's guard died) it takes over the session \
registered in <dir> and ends it at expiry, at once if expiry has passed.";

/// What a replacement guard needs to take a session over (`<session>.guard` in the
/// registry, written before the registration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeOver {
    /// The spec the first guard was started with.
    spec: GuardSpec,
    /// Pid and start time of sshd's session process (`None`: it was gone already).
    sshd: Option<(u32, u64)>,
}

/// How the OOM killer should rank the guard: never (root may lower the score).
const OOM_SCORE_ADJ: &str = "-1000";

/// Largest spec read from fd 5.
const MAX_SPEC: u64 = 64 * 1024;

/// The spec pipe after the spec (buffered: the commit may have come in the same read).
struct SpecPipe(BufReader<File>);

impl SpecPipe {
    /// Waits for the module's word: true when it commits the session ([`COMMIT`]),
    /// false when it closes the pipe without it (it withdrew, or it died).
    fn committed(mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read_exact(&mut b), Ok(()) if b[0] == COMMIT)
    }
}

fn read_spec() -> Result<(GuardSpec, SpecPipe), String> {
    let fd = system::inherited_fd(GUARD_SPEC_FD)
        .map_err(|e| format!("no spec on fd {}: {e}", GUARD_SPEC_FD))?;
    // Room for a whole usual spec (about 1 KiB): usually one read.
    let mut pipe = BufReader::with_capacity(4096, File::from(fd));
    let mut json = Vec::with_capacity(4096);
    (&mut pipe)
        .take(MAX_SPEC + 1)
        .read_until(SPEC_END, &mut json)
        .map_err(|e| format!("reading the spec: {e}"))?;
    match json.pop() {
        Some(SPEC_END) => {}
        // The module withdrew before the spec: the session was not admitted. Nothing to
        // watch.
        None => return Err("no spec: the module did not admit the session".into()),
        Some(_) if json.len() as u64 >= MAX_SPEC => {
            return Err(format!("the spec is longer than {MAX_SPEC} bytes"));
        }
        Some(_) => return Err("the spec ends without its newline".into()),
    }
    let spec = serde_json::from_slice(&json).map_err(|e| format!("bad spec: {e}"))?;
    Ok((spec, SpecPipe(pipe)))
}

/// Entry point of the `breakglass-guard` executable; returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    let mut ready = system::inherited_fd(GUARD_READY_FD).ok().map(File::from);
    let fail = |ready: &mut Option<File>, msg: String| {
        if let Some(f) = ready.as_mut() {
            let _ = writeln!(f, "error: {msg}");
        }
        eprintln!("breakglass-guard: {msg}");
        64
    };
    let (spec, pipe, pidfd, sshd) = match args {
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            return 0;
        }
        [flag, session] if flag == "--session" => {
            // The module started this process as its child (posix_spawn, a session of
            // its own) while it still checks the certificate; it lets this process run
            // on once it reports ready. What needs no spec is done first, while the
            // module works; then the spec is waited for (the module writes it once the
            // certificate passed, and commits it once the open record is durable).
            system::private_umask();
            let (pidfd, sshd) = match watched_process() {
                Ok(w) => w,
                Err(e) => return fail(&mut ready, e),
            };
            let (spec, pipe) = match read_spec() {
                Ok(s) => s,
                Err(e) => return fail(&mut ready, e),
            };
            if spec.record.session != *session {
                return fail(
                    &mut ready,
                    format!(
                        "started for session {session} but given the spec of session {}",
                        spec.record.session
                    ),
                );
            }
            (spec, pipe, pidfd, sshd)
        }
        [flag, session, dir_flag, dir] if flag == "--resume" && dir_flag == "--sessions" => {
            return match resume(session, Path::new(dir)) {
                Ok(()) => 0,
                Err(e) => fail(&mut None, e),
            };
        }
        _ => return fail(&mut ready, USAGE.to_owned()),
    };
    let mut guard = Guard {
        log: LineSender::new(IDENT, &spec.syslog),
        spec,
        pidfd: Some(pidfd),
        sshd,
        me: system::getpid(),
        registry: None,
        lock: None,
        replaces: None,
    };
    // Before readiness only what the session's safety needs: the pidfd (held above) and
    // the registration through which a revocation finds and ends the session.
    let unregistered = match guard.spec.mode {
        GuardMode::Expire => guard.register().err(),
        GuardMode::Deny => None,
    };
    if let Some(mut f) = ready.take() {
        let _ = f.write_all(b"ok\n");
    }
    // The module writes the open record meanwhile; the session is admitted once it is
    // durable. Without the commit the session never starts: nothing to watch, nothing
    // to say.
    if !pipe.committed() {
        guard.unregister();
        return 0;
    }
    if let Some(e) = unregistered {
        guard.register_error(e);
    }
    // Then the rest, once the module has gone on. The OOM protection, a moment after
    // readiness and before sshd starts the user's shell, only guards against this
    // process being chosen by the OOM killer later (and a guard that dies anyway is
    // replaced by the revocation watcher).
    guard.protect_from_oom();
    guard.run();
    guard.unregister();
    0
}

/// The pidfd the module handed over on [`GUARD_PIDFD`] (sshd's session process), and that
/// process's pid and start time while it lives (for a replacement guard).
fn watched_process() -> Result<(OwnedFd, Option<(u32, u64)>), String> {
    let pidfd = system::inherited_fd(GUARD_PIDFD)
        .map_err(|e| format!("no pidfd on fd {}: {e}", GUARD_PIDFD))?;
    if let Err(e) = system::pidfd_send_signal(pidfd.as_fd(), 0)
        && e.raw_os_error() != Some(libc::ESRCH)
    {
        return Err(format!("fd {} is not a pidfd: {e}", GUARD_PIDFD));
    }
    let sshd = procs::pidfd_pid(pidfd.as_fd())
        .and_then(|pid| Some((pid, procs::start_time(pid)?)))
        // Only while the pidfd's process lives do pid and start time name it.
        .filter(|_| system::pidfd_send_signal(pidfd.as_fd(), 0).is_ok());
    Ok((pidfd, sshd))
}

/// `breakglass-guard --resume SESSION --sessions DIR`: takes over a registered session
/// whose guard died. Returns early, successfully, when there is nothing to take over
/// (the session was unregistered, or another guard holds it).
fn resume(session: &str, dir: &Path) -> Result<(), String> {
    if !sessions::is_valid_session(session) {
        return Err(format!(
            "session id {session:?} is not a registered session's id"
        ));
    }
    crate::files::ensure_private_dir(dir, "sessions directory")?;
    let reg_path = sessions::registration_path(dir, session);
    let held = match File::open(&reg_path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("breakglass-guard: session {session} is not registered (it has ended)");
            return Ok(());
        }
        Err(e) => return Err(format!("cannot open {}: {e}", reg_path.display())),
    };
    match system::flock(held.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            eprintln!("breakglass-guard: session {session} has a live guard");
            return Ok(());
        }
        Err(e) => return Err(format!("cannot lock {}: {e}", reg_path.display())),
    }
    // Another replacement may have re-registered (a new file) between our open and lock.
    let same_file = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    };
    match (held.metadata(), std::fs::metadata(&reg_path)) {
        (Ok(a), Ok(b)) if same_file(&a, &b) => {}
        _ => {
            eprintln!("breakglass-guard: session {session} was taken over meanwhile");
            return Ok(());
        }
    }
    let old =
        crate::files::read_trusted_file(&reg_path, "session registration", sessions::MAX_FILE)
            .and_then(|b| Registration::parse(&String::from_utf8_lossy(&b)))
            .map_err(|e| format!("registration of session {session}: {e}"))?;
    let state_path = sessions::guard_state_path(dir, session);
    let state: TakeOver = crate::files::read_trusted_file(&state_path, "guard state", MAX_SPEC)
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("take-over state of session {session}: {e}"))?;
    // The pidfd pins the process; the start time says it is still sshd's, not a
    // process that got its recycled pid.
    let pidfd = state.sshd.and_then(|(pid, start)| {
        let fd = system::pidfd_open(pid).ok()?;
        (procs::start_time(pid) == Some(start) && system::pidfd_send_signal(fd.as_fd(), 0).is_ok())
            .then_some(fd)
    });
    let mut spec = state.spec;
    spec.sessions = Some(dir.to_owned());
    let mut guard = Guard {
        log: LineSender::new(IDENT, &spec.syslog),
        sshd: state.sshd.filter(|_| pidfd.is_some()),
        spec,
        pidfd,
        me: system::getpid(),
        registry: None,
        lock: Some(held),
        replaces: Some(old.guard_pid),
    };
    guard.protect_from_oom();
    if let Err(e) = guard.register() {
        guard.register_error(e);
    }
    let mut f = vec![
        ("event", "guard_replaced".to_owned()),
        ("dead_guard", old.guard_pid.to_string()),
        ("sshd_alive", guard.pidfd.is_some().to_string()),
        (
            "overdue",
            (now_ms() / 1000)
                .saturating_sub(guard.spec.end_at_ms / 1000)
                .to_string(),
        ),
    ];
    f.extend(record_fields(&guard.spec.record));
    guard.send(Severity::Warning, &f);
    guard.run();
    guard.unregister();
    Ok(())
}

struct Guard {
    spec: GuardSpec,
    /// Pidfd of sshd's session process; `None` for a replacement guard that found it gone.
    pidfd: Option<OwnedFd>,
    /// Pid and start time of sshd's session process, for a replacement guard.
    sshd: Option<(u32, u64)>,
    /// Syslog: lines go out at once from the guard's thread (a sender thread only when
    /// that fails), so nothing is started on the login's path.
    log: LineSender,
    me: u32,
    /// The registry directory, once this session is registered in it.
    registry: Option<PathBuf>,
    /// The registration file, locked while this guard lives (see [`sessions`]).
    lock: Option<File>,
    /// Pid of the dead guard this one replaces.
    replaces: Option<u32>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Guard {
    fn run(&self) {
        // The open (or deny) record is in the spool already.
        self.ship();
        match self.spec.mode {
            GuardMode::Expire => self.watch(),
            GuardMode::Deny => {
                if !self.wait_exit_until(self.spec.end_at_ms) {
                    self.end("denied");
                }
            }
        }
        // The module wrote the close record before sshd's session process exited.
        self.ship();
        self.log.flush(Duration::from_secs(1));
    }

    /// Starts the shipper, detached; never fails the session. When it cannot start, the
    /// records wait in the spool for the next shipper or the timer.
    fn ship(&self) {
        let (Some(s), Some(spool)) = (&self.spec.ship, &self.spec.spool) else {
            return;
        };
        let started = crate::files::check_executable(&s.program).and_then(|()| {
            use std::os::unix::process::CommandExt;
            procs::spare_executable(&s.program);
            std::process::Command::new(&s.program)
                .arg("--config")
                .arg(&s.config)
                .args(["host", "ship", "--spool"])
                .arg(spool)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| e.to_string())
        });
        match started {
            // Reaped in the background: the guard may live long after the shipper.
            Ok(mut child) => {
                // The shipper inherited the guard's OOM protection; it needs none.
                let _ = std::fs::write(format!("/proc/{}/oom_score_adj", child.id()), "0");
                let _ = thread::Builder::new()
                    .name("ship-reaper".into())
                    .spawn(move || child.wait());
            }
            Err(e) => self.send(
                Severity::Error,
                &[
                    ("event", "ship_error".to_owned()),
                    ("detail", format!("{}: {e}", s.program.display())),
                ],
            ),
        }
    }

    /// Registers the session for the revocation watcher. Failure only costs live
    /// revocation (expiry still ends the session), so it is logged
    /// ([`Guard::register_error`]), not fatal.
    fn register(&mut self) -> Result<(), String> {
        let Some(dir) = self.spec.sessions.clone() else {
            return Ok(());
        };
        let r = &self.spec.record;
        let (Some(grant), Some(serial)) = (r.grant.clone(), r.serial) else {
            return Ok(());
        };
        // Without a path of our own no replacement could be started: register anyway
        // (live revocation still works), as an older guard would.
        let exe = std::env::current_exe().ok();
        let reg = Registration {
            session: r.session.clone(),
            grant,
            serial,
            key_id: r.key_id.clone().unwrap_or_default(),
            expires: r.expires.unwrap_or(self.spec.end_at_ms / 1000),
            guard_pid: self.me,
            guard: exe,
        };
        let state = TakeOver {
            spec: self.spec.clone(),
            sshd: self.sshd,
        };
        let written = crate::files::ensure_private_dir(&dir, "sessions directory")
            .and_then(|()| serde_json::to_vec(&state).map_err(|e| e.to_string()))
            .and_then(|json| {
                // The state first: a registration with guard= promises it.
                crate::files::write_durable(
                    &dir,
                    &format!("{}{}", reg.session, sessions::GUARD_STATE_SUFFIX),
                    &json,
                )
            })
            .and_then(|()| {
                crate::files::write_durable_locked(
                    &dir,
                    &format!("{}{}", reg.session, sessions::REGISTRATION_SUFFIX),
                    reg.to_text().as_bytes(),
                )
            });
        let lock = written?;
        self.lock = Some(lock);
        self.registry = Some(dir);
        Ok(())
    }

    /// Logs why the session could not be registered.
    fn register_error(&self, e: String) {
        self.send(
            Severity::Warning,
            &[
                ("event", "session_register_error".to_owned()),
                ("detail", e),
                ("session", self.spec.record.session.clone()),
            ],
        );
    }

    fn unregister(&self) {
        if let Some(dir) = &self.registry {
            let _ =
                std::fs::remove_file(sessions::registration_path(dir, &self.spec.record.session));
            let _ = std::fs::remove_file(sessions::marker_path(dir, &self.spec.record.session));
            let _ =
                std::fs::remove_file(sessions::guard_state_path(dir, &self.spec.record.session));
        }
    }

    /// The watcher's revocation marker for this session, if there is one.
    fn revocation(&self) -> Option<RevocationMarker> {
        let dir = self.registry.as_ref()?;
        let path = sessions::marker_path(dir, &self.spec.record.session);
        let mut text = String::new();
        File::open(path)
            .ok()?
            .take(sessions::MAX_FILE)
            .read_to_string(&mut text)
            .ok()?;
        Some(
            RevocationMarker::parse(&text).unwrap_or_else(|e| RevocationMarker {
                grant: self.spec.record.grant.clone().unwrap_or_default(),
                revoked_by: "unknown".into(),
                reason: format!("unreadable revocation marker: {e}"),
                version: 0,
            }),
        )
    }

    fn end_revoked(&self, m: &RevocationMarker) {
        self.end_with(
            "revoked",
            // The reason comes from the daemon (or an old log): fit it to the rule the
            // daemon checks this record's detail with.
            Some(text::fit_free_text(
                &format!(
                    "grant {} revoked by {}: {}",
                    m.grant, m.revoked_by, m.reason
                ),
                text::MAX_DETAIL_BYTES,
            )),
            &[
                ("revoked_by", m.revoked_by.clone()),
                ("revoke_reason", m.reason.clone()),
            ],
        );
    }

    /// Polls the pidfd until `deadline_ms`; true if sshd's process exited. A registered
    /// guard wakes every [`REVOCATION_POLL`] and returns false early once revoked.
    fn wait_exit_until(&self, deadline_ms: u64) -> bool {
        loop {
            let now = now_ms();
            if now >= deadline_ms {
                return false;
            }
            let mut slice = Duration::from_millis(deadline_ms - now);
            if self.registry.is_some() {
                if self.revocation().is_some() {
                    return false;
                }
                slice = slice.min(REVOCATION_POLL);
            }
            let Some(pidfd) = &self.pidfd else {
                return true;
            };
            match system::poll_readable(pidfd.as_fd(), slice) {
                Ok(true) => return true,
                Ok(false) => {}
                // poll on a pidfd cannot fail in practice; avoid a busy loop if it does.
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn watch(&self) {
        let end = self.spec.end_at_ms;
        let mut warn_at = self.spec.warn_at.map(|s| s.saturating_mul(1000));
        loop {
            let next = match warn_at {
                Some(w) if w < end => w,
                _ => end,
            };
            if self.wait_exit_until(next) {
                return self.after_normal_end();
            }
            if let Some(m) = self.revocation() {
                return self.end_revoked(&m);
            }
            if now_ms() >= end {
                return self.end("expired");
            }
            if warn_at.is_some() {
                warn_at = None;
                self.warn();
            }
        }
    }

    /// sshd's session process is gone. Processes left in the session (nohup, setsid)
    /// would outlive the certificate: keep watching them until expiry.
    fn after_normal_end(&self) {
        let Some(id) = self.spec.audit_session else {
            return;
        };
        if procs::session_pids(id, self.me).is_empty() {
            return;
        }
        loop {
            let now = now_ms();
            if now >= self.spec.end_at_ms {
                self.end("expired");
                return;
            }
            thread::sleep(Duration::from_millis((self.spec.end_at_ms - now).min(250)));
            if let Some(m) = self.revocation() {
                return self.end_revoked(&m);
            }
            if procs::session_pids(id, self.me).is_empty() {
                return;
            }
        }
    }

    fn warn(&self) {
        let r = &self.spec.record;
        let left = self.spec.end_at_ms.saturating_sub(now_ms()) / 1000;
        let msg = format!(
            "\r\n\x07*** breakglass: grant {} expires at {} (in {left} s); this session will then be ended. Save your work; request a new grant to continue. ***\r\n",
            text::escaped(r.grant.as_deref().unwrap_or("?")),
            fmt_time(self.spec.end_at_ms / 1000),
        );
        let reached = match self.spec.audit_session {
            Some(id) => procs::tell_session(id, self.me, &msg),
            None => Vec::new(),
        };
        let record = r.for_event(SessionEvent::Warn, now_ms() / 1000);
        let mut f = vec![("event", "session_warn".to_owned())];
        f.extend(record_fields(&record));
        f.push((
            "reached",
            if reached.is_empty() {
                "none".into()
            } else {
                reached.join(",")
            },
        ));
        self.spool(&record);
        self.send(Severity::Notice, &f);
    }

    fn end(&self, reason: &str) {
        let detail = self.replaces.map(|pid| {
            format!("ended by a replacement guard: the session's guard (pid {pid}) had died")
        });
        let extra: Vec<_> = self
            .replaces
            .map(|pid| ("dead_guard", pid.to_string()))
            .into_iter()
            .collect();
        self.end_with(reason, detail, &extra);
    }

    fn end_with(&self, reason: &str, detail: Option<String>, extra: &[(&'static str, String)]) {
        let mut killed = 0;
        if let Some(pidfd) = &self.pidfd {
            let _ = system::pidfd_send_signal(pidfd.as_fd(), libc::SIGTERM);
            let grace_end = now_ms().saturating_add(self.spec.grace_ms);
            if !self.wait_exit_until(grace_end)
                && system::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL).is_ok()
            {
                killed += 1;
            }
        }
        if let Some(id) = self.spec.audit_session {
            killed += procs::kill_session(id, self.me);
        }
        let now = now_ms() / 1000;
        let mut record = self.spec.record.for_event(SessionEvent::ForcedEnd, now);
        record.reason = Some(reason.to_owned());
        record.detail = detail;
        record.killed = Some(killed);
        record.duration = Some(now.saturating_sub(record.start));
        if let Some(cast) = &self.spec.recording {
            let ms = now_ms().saturating_sub(record.start.saturating_mul(1000));
            crate::recording::seal(cast, ms, &mut record);
        }
        let mut f = vec![
            ("event", "session_forced_end".to_owned()),
            ("reason", reason.to_owned()),
        ];
        f.extend(extra.iter().cloned());
        f.extend(record_fields(&record));
        f.push(("killed", killed.to_string()));
        self.spool(&record);
        self.send(Severity::Notice, &f);
    }

    /// Keeps the OOM killer away from the guard: killing it would leave the session
    /// running past expiry until the watcher replaces it.
    fn protect_from_oom(&self) {
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ) {
            self.send(
                Severity::Warning,
                &[
                    ("event", "guard_oom_adjust_error".to_owned()),
                    ("detail", format!("writing /proc/self/oom_score_adj: {e}")),
                    ("session", self.spec.record.session.clone()),
                ],
            );
        }
    }

    fn send(&self, severity: Severity, fields: &[(&str, String)]) {
        self.log.send(severity, &borrowed(fields));
    }

    fn spool(&self, record: &SessionRecord) {
        let Some(dir) = &self.spec.spool else { return };
        // The slot file, if the module made one (it is created on the module's path only).
        if let Err(e) = crate::record::write(dir, 0, record) {
            self.send(
                Severity::Error,
                &[
                    ("event", "spool_error".to_owned()),
                    ("detail", e),
                    ("record", record.record_id.clone()),
                ],
            );
        } else {
            self.ship();
        }
    }
}
