//! The module's logic: what `open_session` and `close_session` decide and record,
//! written against the [`Pam`] and [`Host`] traits so it runs without libpam in tests.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bg_syslog::{Severity, Syslog};
use breakglass_proto::text;
use pam::constants::PamResultCode;

use crate::config::{Config, DEFAULT_GRACE, KrlFail};
use crate::error::Error;
use crate::ffi::os;
use crate::files;
use crate::guard::{GuardMode, GuardSpec};
use crate::krl::Krl;
use crate::record::OpenSession;
use crate::verify::{self, Checks, TrustedCas, Verdict, VerifiedCertificate, fmt_time};
use breakglass_proto::spool::{RECORD_VERSION, SessionEvent, SessionRecord, record_id, session_id};

/// Syslog ident of the module.
pub const IDENT: &str = "pam_breakglass";
/// How long the module waits for the syslog queue to drain before returning.
pub const SYSLOG_FLUSH: Duration = Duration::from_millis(250);
/// How long the module waits for the guard to report that it is watching.
pub const GUARD_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest guard spec (it must fit in a pipe buffer, 64 KiB on Linux).
pub const MAX_GUARD_SPEC: usize = 60 * 1024;
/// Delay before a denied sshd session is ended, so sshd can show the user why.
pub const DENY_DISCONNECT_DELAY: Duration = Duration::from_millis(1500);

/// PAM items the module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamItem {
    /// PAM_SERVICE.
    Service,
    /// PAM_RHOST (client address under sshd).
    RHost,
    /// PAM_TTY (`ssh` under sshd).
    Tty,
}

/// The part of libpam the module uses.
pub trait Pam {
    /// The PAM user.
    fn user(&mut self) -> Result<String, String>;
    /// A string item, if set.
    fn item(&self, item: PamItem) -> Option<String>;
    /// A variable of the PAM environment, if set.
    fn env(&mut self, name: &str) -> Option<Vec<u8>>;
    /// Keeps the verified session for close_session (pam_set_data).
    fn set_session(&mut self, session: OpenSession) -> Result<(), String>;
    /// The session kept by open_session, if any (pam_get_data).
    fn session(&self) -> Option<OpenSession>;
    /// Shows a message to the user (conversation function).
    fn tell_user(&self, error: bool, message: &str);
}

/// The part of the operating system the module uses.
pub trait Host {
    /// The kernel host name.
    fn hostname(&self) -> Result<String, String>;
    /// Pid of the process running the PAM stack (sshd's [priv] process).
    fn pid(&self) -> u32;
    /// Kernel audit session id (set by pam_loginuid), if set.
    fn audit_session_id(&self) -> Option<u32>;
    /// True when the PAM stack runs inside sshd (denials must then end the connection).
    fn is_sshd(&self) -> bool;
    /// Starts the guard and waits until it reports that it watches this process.
    fn start_guard(&self, guard: &Path, spec: &GuardSpec) -> Result<(), String>;
    /// Sends one syslog event and waits briefly for it to leave.
    fn log(&self, socket: &Path, severity: Severity, fields: &[(&str, &str)]);
}

/// What the hook returns.
#[must_use]
#[derive(Debug)]
pub enum Outcome {
    /// The session may proceed.
    Success,
    /// Not a breakglass login: let the rest of the stack decide.
    Ignore,
    /// Deny the session.
    Deny(Error),
}

impl Outcome {
    /// The one place where outcomes become PAM codes (session hooks).
    #[must_use]
    pub fn session_code(&self) -> PamResultCode {
        match self {
            Outcome::Success => PamResultCode::PAM_SUCCESS,
            Outcome::Ignore => PamResultCode::PAM_IGNORE,
            Outcome::Deny(_) => PamResultCode::PAM_SESSION_ERR,
        }
    }
}

/// Runs `f`, turning a panic into a denial (never into success, never into an abort of
/// the host process) that is logged to the `syslog=` socket named in `args`.
pub fn catch_panics(args: &[String], f: impl FnOnce() -> Outcome) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(o) => o,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Logging itself must not panic again; forget the payload if dropping fails.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let log = Syslog::new(IDENT, Config::syslog_hint(args));
                log.send(
                    Severity::Error,
                    &[
                        ("event", "session_denied"),
                        ("reason", "internal_error"),
                        ("detail", &msg),
                    ],
                );
                log.flush(SYSLOG_FLUSH);
            }));
            std::mem::forget(payload);
            Outcome::Deny(Error::Internal(msg))
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What is known about the login while deciding.
struct Ctx {
    user: Option<String>,
    host: Option<String>,
    rhost: Option<String>,
    tty: Option<String>,
    service: Option<String>,
    pid: u32,
    audit_session: Option<u32>,
    now: u64,
    now_ms: u64,
    syslog: std::path::PathBuf,
}

impl Ctx {
    fn base_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![("user", self.user.clone().unwrap_or_default())];
        f.push(("host", self.host.clone().unwrap_or_default()));
        f.push(("rhost", self.rhost.clone().unwrap_or_default()));
        f.push(("tty", self.tty.clone().unwrap_or_default()));
        f.push(("service", self.service.clone().unwrap_or_default()));
        f.push(("pid", self.pid.to_string()));
        f
    }

    fn record(&self, event: SessionEvent, cert: Option<&VerifiedCertificate>) -> SessionRecord {
        let host = self.host.clone().unwrap_or_else(|| "unknown".into());
        let grant = cert.map(|c| c.profile.grant_id.to_string());
        let session = session_id(&host, grant.as_deref(), self.pid, self.now_ms);
        SessionRecord {
            version: RECORD_VERSION,
            record_id: record_id(&session, event),
            session,
            event,
            time: self.now,
            host,
            user: self.user.clone().unwrap_or_default(),
            grant,
            serial: cert.map(|c| c.serial),
            key_id: cert.map(|c| c.key_id.clone()),
            requester: cert.map(|c| c.profile.requester.clone()),
            tier: cert.map(|c| c.profile.tier.clone()),
            rhost: self.rhost.clone(),
            tty: self.tty.clone(),
            service: self.service.clone(),
            pid: self.pid,
            audit_session: self.audit_session,
            start: self.now,
            expires: cert.map(|c| c.valid_before),
            reason: None,
            detail: None,
            duration: None,
            killed: None,
        }
    }
}

fn log_fields(host: &dyn Host, socket: &Path, severity: Severity, fields: &[(&str, String)]) {
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host.log(socket, severity, &borrowed);
}

/// `krl_max_age=`: the KRL must have been written (or confirmed by `breakglass host
/// sync-krl`, which touches it) within `max`; otherwise `krl_fail=` decides.
fn check_krl_age(
    host: &dyn Host,
    cfg: &Config,
    ctx: &Ctx,
    path: &Path,
    max: std::time::Duration,
) -> Result<(), Error> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| Error::File(format!("revocation list {}: {e}", path.display())))?;
    let age = ctx.now.saturating_sub(unix(modified));
    if age <= max.as_secs() {
        return Ok(());
    }
    let why = format!(
        "revocation list {} was last synced {age} s ago, more than krl_max_age={} s; check `breakglass host sync-krl` (breakglass-krl-sync.timer)",
        path.display(),
        max.as_secs()
    );
    match cfg.krl_fail {
        KrlFail::Closed => Err(Error::File(format!("{why} (krl_fail=closed)"))),
        KrlFail::Open => {
            log_fields(
                host,
                &ctx.syslog,
                Severity::Warning,
                &[
                    ("event", "krl_stale".to_owned()),
                    ("detail", format!("{why}; session allowed (krl_fail=open)")),
                ],
            );
            Ok(())
        }
    }
}

/// The host's revocation watcher marks each grant it learns is revoked
/// (`<sessions>/<grant>.grant-revoked`, see [`breakglass_proto::sessions`]): such a
/// grant is denied even while the KRL file still lacks it. No marker, or no registry
/// directory (no watcher on this host): nothing is known here and the KRL decides. A
/// registry that cannot be checked denies.
fn check_grant_marker(sessions: &Path, cert: &VerifiedCertificate) -> Result<(), Error> {
    use breakglass_proto::sessions::{GrantState, grant_state};
    let grant = cert.profile.grant_id.to_string();
    match grant_state(sessions, &grant) {
        GrantState::NotMarked => Ok(()),
        GrantState::Revoked(known) => Err(Error::Revoked(match known {
            Some(r) => format!(
                "grant {grant} is revoked (by {}: {}); this host's revocation watcher recorded it",
                r.marker.revoked_by, r.marker.reason
            ),
            None => format!(
                "grant {grant} is revoked: this host's revocation watcher marked it in {}",
                sessions.display()
            ),
        })),
        GrantState::Unreadable(why) => Err(Error::File(format!(
            "{why}; the session is denied because a revocation could not be ruled out (check the module's sessions= directory)"
        ))),
    }
}

/// Fields describing a record, for syslog.
pub fn record_fields(r: &SessionRecord) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    let mut opt = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            f.push((k, v));
        }
    };
    opt("grant", r.grant.clone());
    opt("serial", r.serial.map(|s| s.to_string()));
    opt("key_id", r.key_id.clone());
    opt("requester", r.requester.clone());
    opt("tier", r.tier.clone());
    f.push(("user", r.user.clone()));
    f.push(("host", r.host.clone()));
    f.push(("rhost", r.rhost.clone().unwrap_or_default()));
    f.push(("tty", r.tty.clone().unwrap_or_default()));
    f.push(("pid", r.pid.to_string()));
    if let Some(e) = r.expires {
        f.push(("expires", fmt_time(e)));
    }
    if let Some(d) = r.duration {
        f.push(("duration", d.to_string()));
    }
    f.push(("record", r.record_id.clone()));
    f
}

/// `pam_sm_open_session`.
pub fn open_session(
    pam: &mut dyn Pam,
    host: &dyn Host,
    args: &[String],
    now: SystemTime,
) -> Outcome {
    let mut ctx = Ctx {
        user: None,
        host: None,
        rhost: pam.item(PamItem::RHost),
        tty: pam.item(PamItem::Tty),
        service: pam.item(PamItem::Service),
        pid: host.pid(),
        audit_session: host.audit_session_id(),
        now: unix(now),
        now_ms: now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        syslog: Config::syslog_hint(args),
    };
    let cfg = match Config::parse(args).map_err(Error::Option) {
        Ok(c) => c,
        Err(e) => {
            ctx.user = pam.user().ok();
            return deny(pam, host, &ctx, None, e, &Config::guard_hint(args));
        }
    };
    ctx.syslog = cfg.syslog.clone();
    match decide(pam, host, &cfg, &mut ctx) {
        Ok(Some(cert)) => match admit(pam, host, &cfg, &ctx, &cert) {
            Ok(()) => Outcome::Success,
            Err(e) => deny(pam, host, &ctx, Some(&cfg), e, &cfg.guard),
        },
        Ok(None) => Outcome::Ignore,
        Err(e) => deny(pam, host, &ctx, Some(&cfg), e, &cfg.guard),
    }
}

/// Verifies the login. `Ok(None)`: not a breakglass login and `require` is off.
fn decide(
    pam: &mut dyn Pam,
    host: &dyn Host,
    cfg: &Config,
    ctx: &mut Ctx,
) -> Result<Option<VerifiedCertificate>, Error> {
    let user = pam.user().map_err(Error::Pam)?;
    ctx.user = Some(user.clone());
    let hostname = match &cfg.host {
        Some(h) => h.clone(),
        None => host.hostname().map_err(|e| {
            Error::File(format!(
                "cannot read this host's name ({e}); set the `host=` option"
            ))
        })?,
    };
    ctx.host = Some(hostname.clone());
    let ca_text = files::read_trusted_file(
        &cfg.ca_keys,
        "trusted CA keys file",
        verify::MAX_CA_FILE_LEN,
    )
    .map_err(Error::File)?;
    let trusted = TrustedCas::parse(
        &String::from_utf8_lossy(&ca_text),
        &cfg.ca_keys.display().to_string(),
    )?;
    let krl = match &cfg.krl {
        Some(path) => {
            let bytes = files::read_trusted_file(path, "revocation list", verify::MAX_KRL_LEN)
                .map_err(Error::File)?;
            if let Some(max) = cfg.krl_max_age {
                check_krl_age(host, cfg, ctx, path, max)?;
            }
            Some(
                Krl::parse(&bytes)
                    .map_err(|e| Error::File(format!("revocation list {}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let info = pam.env("SSH_AUTH_INFO_0");
    let checks = Checks {
        trusted: &trusted,
        krl: krl.as_ref(),
        user: &user,
        host: &hostname,
        now: ctx.now,
    };
    match verify::verify(info.as_deref(), &checks) {
        Verdict::Verified(cert) => {
            check_grant_marker(&cfg.sessions, &cert)?;
            Ok(Some(*cert))
        }
        Verdict::Rejected(e) => Err(e),
        Verdict::NotOurs(why) if cfg.require => Err(Error::Required(format!(
            "this host admits only breakglass certificates (`require`), and {why}"
        ))),
        Verdict::NotOurs(why) => {
            if cfg.debug {
                let mut f = vec![("event", "session_ignored".to_owned()), ("detail", why)];
                f.extend(ctx.base_fields());
                log_fields(host, &cfg.syslog, Severity::Debug, &f);
            }
            Ok(None)
        }
    }
}

/// Records the open session durably, starts the guard and keeps the session data.
fn admit(
    pam: &mut dyn Pam,
    host: &dyn Host,
    cfg: &Config,
    ctx: &Ctx,
    cert: &VerifiedCertificate,
) -> Result<(), Error> {
    let Some(audit_session) = ctx.audit_session else {
        return Err(Error::NoAuditSession);
    };
    let record = ctx.record(SessionEvent::Open, Some(cert));
    crate::record::write(&cfg.spool, &record).map_err(Error::Spool)?;
    let warn_at = cert.valid_before.saturating_sub(cfg.warn_before.as_secs());
    let spec = GuardSpec {
        mode: GuardMode::Expire,
        record: record.clone(),
        spool: Some(cfg.spool.clone()),
        syslog: cfg.syslog.clone(),
        audit_session: Some(audit_session),
        // A lead longer than the certificate's life warns right after login, once the
        // terminal exists (sshd allocates it after open_session).
        warn_at: Some(warn_at.max(ctx.now + 2)),
        end_at_ms: cert.valid_before.saturating_mul(1000),
        grace_ms: u64::try_from(DEFAULT_GRACE.as_millis()).unwrap_or(5000),
        sessions: Some(cfg.sessions.clone()),
        ship: cfg.ship.clone(),
    };
    host.start_guard(&cfg.guard, &spec).map_err(Error::Guard)?;
    pam.set_session(OpenSession {
        record: record.clone(),
        spool: cfg.spool.clone(),
        syslog: cfg.syslog.clone(),
    })
    .map_err(Error::Pam)?;
    let mut f = vec![("event", "session_open".to_owned())];
    f.extend(record_fields(&record));
    f.push(("service", ctx.service.clone().unwrap_or_default()));
    f.push(("audit_session", audit_session.to_string()));
    f.push(("ca", cert.ca_fingerprint.clone()));
    log_fields(host, &cfg.syslog, Severity::Notice, &f);
    pam.tell_user(
        false,
        &format!(
            "breakglass: grant {} admits {} on {} until {}; the session will be ended then.",
            cert.profile.grant_id,
            text::escaped(&cert.principal),
            text::escaped(&record.host),
            fmt_time(cert.valid_before)
        ),
    );
    Ok(())
}

fn deny(
    pam: &mut dyn Pam,
    host: &dyn Host,
    ctx: &Ctx,
    cfg: Option<&Config>,
    err: Error,
    guard: &Path,
) -> Outcome {
    let mut record = ctx.record(SessionEvent::Deny, None);
    record.reason = Some(err.code().to_owned());
    // The message may quote the certificate or the PAM items: fit it to the daemon's rule
    // for free text (escaped, not refused), so the record is delivered.
    record.detail = Some(text::fit_free_text(
        &err.to_string(),
        text::MAX_DETAIL_BYTES,
    ));
    if let Some(cfg) = cfg
        && let Err(e) = crate::record::write(&cfg.spool, &record)
    {
        log_fields(
            host,
            &ctx.syslog,
            Severity::Error,
            &[("event", "spool_error".to_owned()), ("detail", e)],
        );
    }
    let mut f = vec![
        ("event", "session_denied".to_owned()),
        ("reason", err.code().to_owned()),
        ("detail", err.to_string()),
    ];
    f.extend(ctx.base_fields());
    log_fields(host, &ctx.syslog, Severity::Warning, &f);
    pam.tell_user(
        true,
        &format!(
            "breakglass: session denied: {}",
            text::escaped(&err.to_string())
        ),
    );
    if host.is_sshd() {
        // A denied session phase alone leaves `ssh -N` connected: end the connection.
        let spec = GuardSpec {
            mode: GuardMode::Deny,
            record,
            spool: cfg.map(|c| c.spool.clone()),
            syslog: ctx.syslog.clone(),
            audit_session: ctx.audit_session,
            warn_at: None,
            end_at_ms: ctx
                .now
                .saturating_mul(1000)
                .saturating_add(u64::try_from(DENY_DISCONNECT_DELAY.as_millis()).unwrap_or(1500)),
            grace_ms: u64::try_from(DEFAULT_GRACE.as_millis()).unwrap_or(5000),
            sessions: None,
            ship: cfg.and_then(|c| c.ship.clone()),
        };
        if let Err(e) = host.start_guard(guard, &spec) {
            log_fields(
                host,
                &ctx.syslog,
                Severity::Error,
                &[
                    ("event", "guard_error".to_owned()),
                    ("detail", format!("cannot end the denied connection: {e}")),
                ],
            );
        }
    }
    Outcome::Deny(err)
}

/// `pam_sm_close_session`: records the close of a session this module opened.
pub fn close_session(
    pam: &mut dyn Pam,
    host: &dyn Host,
    _args: &[String],
    now: SystemTime,
) -> Outcome {
    let Some(open) = pam.session() else {
        return Outcome::Ignore;
    };
    let now = unix(now);
    let mut record = open.record.for_event(SessionEvent::Close, now);
    record.duration = Some(now.saturating_sub(open.record.start));
    // The spool first: it is what gets shipped; syslog is best effort.
    if let Err(e) = crate::record::write(&open.spool, &record) {
        log_fields(
            host,
            &open.syslog,
            Severity::Error,
            &[("event", "spool_error".to_owned()), ("detail", e)],
        );
    }
    let mut f = vec![("event", "session_close".to_owned())];
    f.extend(record_fields(&record));
    log_fields(host, &open.syslog, Severity::Notice, &f);
    Outcome::Success
}

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
        os::getpid()
    }

    fn audit_session_id(&self) -> Option<u32> {
        let s = std::fs::read_to_string("/proc/self/sessionid").ok()?;
        s.trim().parse::<u32>().ok().filter(|&id| id != u32::MAX)
    }

    fn is_sshd(&self) -> bool {
        std::fs::read_link("/proc/self/exe")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().starts_with(b"sshd")))
            .unwrap_or(false)
    }

    fn start_guard(&self, guard: &Path, spec: &GuardSpec) -> Result<(), String> {
        files::check_executable(guard)?;
        let program = CString::new(guard.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let json = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
        // The whole spec must fit in the pipe buffer: it is written before the guard runs.
        if json.len() > MAX_GUARD_SPEC {
            return Err(format!(
                "guard spec is {} bytes; the limit is {MAX_GUARD_SPEC}",
                json.len()
            ));
        }
        let args = [
            c"--session".to_owned(),
            CString::new(spec.record.session.clone()).map_err(|e| e.to_string())?,
        ];
        let (spec_read, spec_write) = os::pipe().map_err(|e| format!("pipe: {e}"))?;
        File::from(spec_write)
            .write_all(&json)
            .map_err(|e| format!("writing the guard spec: {e}"))?;
        let pidfd = os::pidfd_open(os::getpid()).map_err(|e| format!("pidfd_open: {e}"))?;
        let (read, write) = os::pipe().map_err(|e| format!("pipe: {e}"))?;
        os::spawn_detached(
            &program,
            &args,
            pidfd.as_fd(),
            write.as_fd(),
            spec_read.as_fd(),
        )
        .map_err(|e| format!("fork: {e}"))?;
        drop(write);
        drop(pidfd);
        drop(spec_read);
        let deadline = Instant::now() + GUARD_READY_TIMEOUT;
        let mut file = File::from(read);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} did not report ready within {GUARD_READY_TIMEOUT:?}",
                    guard.display()
                ));
            }
            if !os::poll_readable(file.as_fd(), left).map_err(|e| format!("poll: {e}"))? {
                continue;
            }
            let mut buf = [0u8; 64];
            let n = file.read(&mut buf).map_err(|e| format!("read: {e}"))?;
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

    fn log(&self, socket: &Path, severity: Severity, fields: &[(&str, &str)]) {
        let log = Syslog::new(IDENT, socket);
        log.send(severity, fields);
        log.flush(SYSLOG_FLUSH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::GuardMode;
    use crate::testutil::*;
    use ssh_key::certificate::CertType;
    use std::process::Command;

    struct World {
        dir: tempfile::TempDir,
        ca: ssh_key::PrivateKey,
        args: Vec<String>,
        host: FakeHost,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca = key();
            let ca_path = ca_file(dir.path(), &[&ca]);
            let args = vec![
                format!("ca_keys={}", ca_path.display()),
                format!("spool={}", dir.path().join("spool").display()),
                format!("guard={}", dir.path().join("guard").display()),
                format!("syslog={}", dir.path().join("log.sock").display()),
                format!("sessions={}", dir.path().join("sessions").display()),
            ];
            Self {
                dir,
                ca,
                args,
                host: FakeHost::default(),
            }
        }
        fn open(&self, pam: &mut ScriptedPam) -> Outcome {
            open_session(
                pam,
                &self.host,
                &self.args,
                UNIX_EPOCH + Duration::from_secs(NOW),
            )
        }
        fn open_info(&self, info: Option<&str>) -> Outcome {
            self.open(&mut ScriptedPam::with_info("alice", info))
        }
        fn cert_info(&self, spec: &CertSpec) -> String {
            auth_info(&sign(&self.ca, spec))
        }
        fn spool_files(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("spool"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
    }

    fn denied(o: Outcome) -> Error {
        match o {
            Outcome::Deny(e) => e,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn valid_certificate_opens_session_with_guard_record_and_log() {
        let w = World::new();
        let info = w.cert_info(&CertSpec::default());
        let mut pam = ScriptedPam::with_info("alice", Some(&info));
        assert!(matches!(w.open(&mut pam), Outcome::Success));

        let guards = w.host.guards.borrow();
        assert_eq!(guards.len(), 1);
        let g = &guards[0];
        assert_eq!(g.mode, GuardMode::Expire);
        assert_eq!(g.end_at_ms, (NOW + 600) * 1000);
        assert_eq!(g.warn_at, Some(NOW + 600 - 120));
        assert_eq!(g.audit_session, Some(17));
        assert_eq!(g.record.grant.as_deref(), Some("g-00000000000000ff"));

        let files = w.spool_files();
        assert_eq!(
            files,
            vec![format!("db-7-g-00000000000000ff-4242-{NOW}000-open.json")]
        );
        let rec: SessionRecord = serde_json::from_slice(
            &std::fs::read(w.dir.path().join("spool").join(&files[0])).unwrap(),
        )
        .unwrap();
        assert_eq!(rec.serial, Some(4242));
        assert_eq!(rec.user, "alice");
        assert_eq!(rec.rhost.as_deref(), Some("192.0.2.7"));
        assert_eq!(rec.expires, Some(NOW + 600));

        let log = w.host.log_text();
        assert!(
            log.contains("event=session_open grant=g-00000000000000ff serial=4242"),
            "{log}"
        );
        assert!(pam.told.borrow()[0].1.contains("until"));

        // close_session uses the pam data, not the environment.
        pam.env.clear();
        let closed = close_session(
            &mut pam,
            &w.host,
            &w.args,
            UNIX_EPOCH + Duration::from_secs(NOW + 90),
        );
        assert!(matches!(closed, Outcome::Success));
        assert!(
            w.host
                .log_text()
                .contains("event=session_close grant=g-00000000000000ff")
        );
        assert!(w.host.log_text().contains("duration=90"));
        assert_eq!(w.spool_files().len(), 2);
    }

    #[test]
    fn nasty_user_rhost_and_details_reach_terminal_syslog_and_spool_escaped() {
        for nasty in text::NASTY_SAMPLES {
            let w = World::new();
            let info = w.cert_info(&CertSpec::default());
            let mut pam = ScriptedPam::with_info(&format!("alice{nasty}"), Some(&info));
            pam.items.insert("rhost", format!("192.0.2.7{nasty}"));
            denied(w.open(&mut pam));
            for (_, told) in pam.told.borrow().iter() {
                assert!(!told.chars().any(text::is_hazard), "{told:?}");
            }
            let log = w.host.log_text();
            assert!(log.lines().count() >= 1, "{log}");
            for line in log.lines() {
                assert!(!line.chars().any(text::is_hazard), "{line:?}");
            }
            assert!(
                log.contains(&format!(
                    "rhost={}",
                    text::quote(&format!("192.0.2.7{nasty}"))
                )),
                "{log}"
            );
            for f in w.spool_files() {
                let rec: SessionRecord = serde_json::from_slice(
                    &std::fs::read(w.dir.path().join("spool").join(&f)).unwrap(),
                )
                .unwrap();
                let detail = rec.detail.unwrap_or_default();
                text::check_free_text(&detail, text::MAX_DETAIL_BYTES).unwrap();
            }
        }
    }

    #[test]
    fn close_without_open_is_ignored() {
        let w = World::new();
        let mut pam = ScriptedPam::with_info("alice", None);
        assert!(matches!(
            close_session(&mut pam, &w.host, &w.args, SystemTime::now()),
            Outcome::Ignore
        ));
    }

    #[test]
    fn non_certificate_logins_are_ignored_unless_required() {
        let w = World::new();
        let plain = format!("publickey {}\n", key().public_key().to_openssh().unwrap());
        for info in [
            None,
            Some(plain.as_str()),
            Some("password\n"),
            Some("keyboard-interactive/pam\n"),
        ] {
            assert!(matches!(w.open_info(info), Outcome::Ignore), "{info:?}");
        }
        assert!(w.host.guards.borrow().is_empty());

        let mut w = World::new();
        w.args.push("require".into());
        for info in [None, Some(plain.as_str())] {
            let e = denied(w.open_info(info));
            assert_eq!(e.code(), "certificate_required");
        }
        // sshd denial: a guard is started to end the connection.
        let guards = w.host.guards.borrow();
        assert_eq!(guards.len(), 2);
        assert!(guards.iter().all(|g| g.mode == GuardMode::Deny));
        assert!(w.host.log_text().contains("reason=certificate_required"));
    }

    #[test]
    fn hostile_auth_info_is_denied_with_a_reason() {
        let w = World::new();
        let good = w.cert_info(&CertSpec::default());
        let other_user = w.cert_info(&CertSpec {
            principals: vec!["bob".into()],
            ..CertSpec::default()
        });
        let (kt, b64) = {
            let mut p = good.trim_end().split(' ').skip(1);
            (p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
        };
        let huge = "A".repeat(1 << 20);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "bad_auth_info"),
            (format!("{good}{good}"), "bad_auth_info"),
            (
                format!("{good}garbage line here\n"),
                "bad_certificate_or_info",
            ),
            (format!("{good}\n\n"), "bad_auth_info"),
            (
                format!("publickey ssh-rsa-cert-v01@openssh.com {b64}\n"),
                "bad_auth_info",
            ),
            (
                format!("publickey {kt} {}\n", &b64[..b64.len() / 2]),
                "bad_auth_info",
            ),
            (format!("publickey {kt} !!!notbase64!!!\n"), "bad_auth_info"),
            (other_user, "bad_certificate"),
            (format!("publickey {kt} {huge}\n"), "bad_auth_info"),
            (format!("publickey {kt} {b64}\0\n"), "bad_auth_info"),
            ("publickey\n".to_owned(), "bad_auth_info"),
            ("\u{1b}[31m\n".to_owned(), "bad_auth_info"),
        ];
        for (info, code) in cases {
            let e = denied(w.open_info(Some(&info)));
            if code == "bad_certificate_or_info" {
                assert!(
                    ["bad_auth_info", "bad_certificate"].contains(&e.code()),
                    "{e}"
                );
            } else {
                assert_eq!(e.code(), code, "{:.80}: {e}", info.escape_debug());
            }
        }
        assert!(
            w.host
                .guards
                .borrow()
                .iter()
                .all(|g| g.mode == GuardMode::Deny)
        );
        let log = w.host.log_text();
        assert_eq!(log.matches("event=session_denied").count(), 12, "{log}");
        assert!(
            log.len() < 12 * 2048,
            "log lines must stay short: {}",
            log.len()
        );
    }

    #[test]
    fn certificate_rule_violations_are_denied() {
        let w = World::new();
        let cases: Vec<(CertSpec, &str, &str)> = vec![
            (
                CertSpec {
                    hosts: Some("web-*".into()),
                    ..CertSpec::default()
                },
                "host_scope",
                "this host is \"db-7\"",
            ),
            (
                CertSpec {
                    valid_before: NOW - 1,
                    valid_after: NOW - 100,
                    ..CertSpec::default()
                },
                "bad_certificate",
                "expired",
            ),
            (
                CertSpec {
                    valid_after: NOW + 10,
                    ..CertSpec::default()
                },
                "bad_certificate",
                "not valid before",
            ),
            (
                CertSpec {
                    cert_type: CertType::Host,
                    ..CertSpec::default()
                },
                "bad_certificate",
                "host certificate",
            ),
            (
                CertSpec {
                    critical: vec![("verify-required".into(), String::new())],
                    ..CertSpec::default()
                },
                "bad_certificate",
                "unknown critical option",
            ),
            (
                CertSpec {
                    hosts: None,
                    ..CertSpec::default()
                },
                "bad_certificate",
                "hosts@breakglass.dev",
            ),
            (
                CertSpec {
                    key_id: Some("alice".into()),
                    ..CertSpec::default()
                },
                "bad_certificate",
                "key id",
            ),
        ];
        for (spec, code, needle) in cases {
            let e = denied(w.open_info(Some(&w.cert_info(&spec))));
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        // force-command and source-address are known critical options.
        let ok = CertSpec {
            critical: vec![
                ("force-command".into(), "/bin/true".into()),
                ("source-address".into(), "192.0.2.0/24".into()),
            ],
            ..CertSpec::default()
        };
        assert!(matches!(
            w.open_info(Some(&w.cert_info(&ok))),
            Outcome::Success
        ));
    }

    #[test]
    fn other_ca_is_denied_when_claiming_the_profile_and_ignored_otherwise() {
        let w = World::new();
        let other = key();
        let e = denied(w.open_info(Some(&auth_info(&sign(&other, &CertSpec::default())))));
        assert_eq!(e.code(), "untrusted_ca");
        // A certificate of some other system (not our key id, no extensions of ours) is not ours.
        let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
            &mut ssh_key::rand_core::OsRng,
            key().public_key().key_data().clone(),
            NOW - 10,
            NOW + 10,
        )
        .unwrap();
        b.key_id("corp-ldap-alice").unwrap();
        b.valid_principal("alice").unwrap();
        let foreign = b.sign(&other).unwrap();
        assert!(matches!(
            w.open_info(Some(&auth_info(&foreign))),
            Outcome::Ignore
        ));
    }

    #[test]
    fn bad_options_deny_and_name_the_option() {
        let mut w = World::new();
        w.args.push("frobnicate=yes".into());
        let e = denied(w.open_info(Some(&w.cert_info(&CertSpec::default()))));
        assert_eq!(e.code(), "bad_option");
        let log = w.host.log_text();
        assert!(log.contains("reason=bad_option"), "{log}");
        assert!(log.contains("frobnicate=yes"), "{log}");
        // Even a plain login is denied: a broken configuration must be visible.
        assert!(matches!(w.open_info(None), Outcome::Deny(_)));
    }

    #[test]
    fn broken_files_deny() {
        let w = World::new();
        std::fs::write(w.dir.path().join("ca.pub"), "not a key\n").unwrap();
        let e = denied(w.open_info(None));
        assert_eq!(e.code(), "bad_file");
        assert!(e.to_string().contains("line 1"), "{e}");
        std::fs::write(w.dir.path().join("ca.pub"), "# only comments\n").unwrap();
        assert!(
            denied(w.open_info(None))
                .to_string()
                .contains("holds no key")
        );
        std::fs::remove_file(w.dir.path().join("ca.pub")).unwrap();
        assert!(
            denied(w.open_info(None))
                .to_string()
                .contains("cannot open trusted CA keys file")
        );
    }

    #[test]
    fn session_needs_audit_id_guard_and_spool() {
        let mut w = World::new();
        let info = w.cert_info(&CertSpec::default());
        w.host.audit_session = None;
        assert_eq!(denied(w.open_info(Some(&info))).code(), "no_audit_session");
        w.host.audit_session = Some(3);
        w.host.guard_result = Err("boom".into());
        let e = denied(w.open_info(Some(&info)));
        assert_eq!(e.code(), "guard_error");
        assert!(e.to_string().contains("boom"));
        w.host.guard_result = Ok(());
        std::fs::remove_dir_all(w.dir.path().join("spool")).unwrap();
        std::fs::write(w.dir.path().join("spool"), "a file").unwrap();
        assert_eq!(denied(w.open_info(Some(&info))).code(), "spool_error");
    }

    #[test]
    fn denial_outside_sshd_starts_no_guard() {
        let mut w = World::new();
        w.host.sshd = false;
        let _ = denied(w.open_info(Some("garbage\u{7f}")));
        assert!(w.host.guards.borrow().is_empty());
    }

    #[test]
    fn host_option_overrides_hostname() {
        let mut w = World::new();
        w.args.push("host=web-1".into());
        let e = denied(w.open_info(Some(&w.cert_info(&CertSpec::default()))));
        assert_eq!(e.code(), "host_scope");
        let info = w.cert_info(&CertSpec {
            hosts: Some("db-9,web-1".into()),
            ..CertSpec::default()
        });
        assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
    }

    #[test]
    fn panics_become_denials() {
        let o = catch_panics(&[], || panic!("boom"));
        assert!(matches!(&o, Outcome::Deny(Error::Internal(m)) if m == "boom"));
        assert_eq!(o.session_code(), PamResultCode::PAM_SESSION_ERR);
        assert_eq!(Outcome::Ignore.session_code(), PamResultCode::PAM_IGNORE);
        assert_eq!(Outcome::Success.session_code(), PamResultCode::PAM_SUCCESS);
    }

    #[test]
    fn revoked_certificates_are_denied() {
        let mut w = World::new();
        let ca_pub = w.dir.path().join("ca.pub");
        let spec_file = w.dir.path().join("krl.spec");
        let krl = w.dir.path().join("revoked.krl");
        std::fs::write(
            &spec_file,
            "serial: 4242\nserial: 9000-9100\nid: breakglass/g-0000000000000077/eve\n",
        )
        .unwrap();
        let st = Command::new("ssh-keygen")
            .args(["-q", "-k", "-f"])
            .arg(&krl)
            .arg("-s")
            .arg(&ca_pub)
            .arg(&spec_file)
            .status()
            .unwrap();
        assert!(st.success());
        w.args.push(format!("krl={}", krl.display()));
        let cases = [
            (CertSpec::default(), Some("serial 4242")),
            (
                CertSpec {
                    serial: 9050,
                    ..CertSpec::default()
                },
                Some("serial 9050"),
            ),
            (
                CertSpec {
                    serial: 9101,
                    ..CertSpec::default()
                },
                None,
            ),
            (
                CertSpec {
                    serial: 1,
                    grant: 0x77,
                    requester: "eve".into(),
                    ..CertSpec::default()
                },
                Some("key id"),
            ),
        ];
        for (spec, revoked) in cases {
            let o = w.open_info(Some(&w.cert_info(&spec)));
            match revoked {
                Some(needle) => {
                    let e = denied(o);
                    assert_eq!(e.code(), "revoked");
                    assert!(e.to_string().contains(needle), "{e}");
                }
                None => assert!(matches!(o, Outcome::Success), "{o:?}"),
            }
        }
        // A garbage KRL fails closed, like sshd's RevokedKeys.
        std::fs::write(&krl, "garbage").unwrap();
        assert_eq!(denied(w.open_info(None)).code(), "bad_file");
    }

    #[test]
    fn a_grant_the_watcher_marked_revoked_is_denied_while_the_krl_still_admits_it() {
        use breakglass_proto::sessions::{RevocationMarker, RevokedGrant, grant_marker_path};
        let mut w = World::new();
        // A current KRL that does not list the grant yet.
        let krl = w.dir.path().join("revoked.krl");
        std::fs::write(
            &krl,
            breakglass_proto::krl::Krl::new(3, 0).to_bytes().unwrap(),
        )
        .unwrap();
        w.args.push(format!("krl={}", krl.display()));
        let info = w.cert_info(&CertSpec::default());
        // No registry directory (no watcher on this host): the KRL decides.
        assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
        let sessions = w.dir.path().join("sessions");
        std::fs::create_dir_all(&sessions).unwrap();
        assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
        // The watcher marks the grant: denied, saying who revoked it and why.
        let marker = grant_marker_path(&sessions, "g-00000000000000ff").unwrap();
        let g = RevokedGrant {
            marker: RevocationMarker {
                grant: "g-00000000000000ff".into(),
                revoked_by: "user:admin@example.com".into(),
                reason: "INC-9 key exposed".into(),
                version: 12,
            },
            expires: NOW + 600,
        };
        std::fs::write(&marker, g.to_text()).unwrap();
        let e = denied(w.open_info(Some(&info)));
        assert_eq!(e.code(), "revoked");
        assert!(
            e.to_string().contains("admin@example.com") && e.to_string().contains("INC-9"),
            "{e}"
        );
        // Another grant of the same holder is not affected.
        let other = w.cert_info(&CertSpec {
            grant: 0x100,
            serial: 4243,
            ..CertSpec::default()
        });
        assert!(matches!(w.open_info(Some(&other)), Outcome::Success));
        // A marker that cannot be parsed still denies.
        std::fs::write(&marker, "torn").unwrap();
        assert_eq!(denied(w.open_info(Some(&info))).code(), "revoked");
        // A registry that cannot be checked denies (a revocation cannot be ruled out).
        std::fs::remove_file(&marker).unwrap();
        std::fs::remove_dir(&sessions).unwrap();
        std::fs::write(&sessions, "not a directory").unwrap();
        let e = denied(w.open_info(Some(&info)));
        assert_eq!(e.code(), "bad_file");
        assert!(e.to_string().contains("sessions="), "{e}");
    }

    #[test]
    fn stale_krl_fails_closed_or_open_as_configured() {
        let mut w = World::new();
        let krl = w.dir.path().join("revoked.krl");
        std::fs::write(
            &krl,
            breakglass_proto::krl::Krl::new(1, 0).to_bytes().unwrap(),
        )
        .unwrap();
        let set_age = |secs: u64| {
            std::fs::File::options()
                .write(true)
                .open(&krl)
                .unwrap()
                .set_modified(UNIX_EPOCH + Duration::from_secs(NOW - secs))
                .unwrap();
        };
        let base = w.args.clone();
        let info = w.cert_info(&CertSpec::default());
        w.args
            .extend([format!("krl={}", krl.display()), "krl_max_age=1h".into()]);
        set_age(60);
        assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
        set_age(7200);
        let e = denied(w.open_info(Some(&info)));
        assert!(
            e.to_string().contains("krl_max_age=3600") && e.to_string().contains("krl_fail=closed"),
            "{e}"
        );
        w.args = base;
        w.args.extend([
            format!("krl={}", krl.display()),
            "krl_max_age=1h".into(),
            "krl_fail=open".into(),
        ]);
        assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
        assert!(
            w.host.log_text().contains("event=krl_stale"),
            "{}",
            w.host.log_text()
        );
    }
}
