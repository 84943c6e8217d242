//! The module's logic: what `open_session` and `close_session` decide and record,
//! written against the [`Pam`] and [`Host`] traits so it runs without libpam in tests.
//! [`crate::hooks`] calls it with the real libpam handle and [`crate::host::RealHost`];
//! the unit tests (`tests.rs`) with a scripted libpam and a recording host.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bg_syslog::{Severity, Syslog};
use breakglass_proto::recording::{NO_ZDOTDIR, RECORDING_ENV, SHELL_LEVEL, ZDOTDIR};
use breakglass_proto::text;
use pam::constants::PamResultCode;

use crate::config::{Config, DEFAULT_GRACE, KrlFail};
use crate::error::Error;
use crate::files;
use crate::guard::{GuardMode, GuardSpec};
use crate::krl::Krl;
use crate::log::{borrowed, record_fields};
use crate::record::OpenSession;
use crate::verify::{self, Checks, TrustedCas, Verdict, VerifiedCertificate, fmt_time};
use breakglass_proto::spool::{RECORD_VERSION, SessionEvent, SessionRecord, record_id, session_id};

/// Syslog ident of the module.
pub const IDENT: &str = "pam_breakglass";
/// How long the module waits for the syslog queue to drain before returning.
pub const SYSLOG_FLUSH: Duration = Duration::from_millis(250);
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
    /// Sets a variable of the PAM environment (sshd hands it to the session).
    fn set_env(&mut self, name: &str, value: &str) -> Result<(), String>;
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
    /// The session's start in milliseconds for its id, from `ms` (now): unique within the
    /// process (see [`unique_ms`]).
    fn session_ms(&self, ms: u64) -> u64 {
        unique_ms(ms)
    }
    /// Kernel audit session id (set by pam_loginuid), if set.
    fn audit_session_id(&self) -> Option<u32>;
    /// The login shell of `user` (password database), if the user exists.
    fn login_shell(&self, user: &str) -> Option<String>;
    /// True when the PAM stack runs inside sshd (denials must then end the connection).
    fn is_sshd(&self) -> bool;
    /// Starts the guard program for session `session` (named on its command line); it
    /// waits for its spec and the commit, which [`PendingGuard::hand_over`] gives it.
    /// Dropped before that, the guard is killed and reaped, having done nothing.
    /// Failures are [`Error::Guard`].
    fn launch_guard(
        &self,
        guard: &Path,
        session: &str,
    ) -> Result<Box<dyn PendingGuard + '_>, Error>;
    /// Starts the guard and waits until it reports that it watches this process:
    /// [`Host::launch_guard`], then [`PendingGuard::hand_over`].
    fn start_guard(
        &self,
        guard: &Path,
        spec: &GuardSpec,
        meanwhile: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.launch_guard(guard, &spec.record.session)?
            .hand_over(spec, meanwhile)
    }
    /// Sends one syslog event and waits briefly for it to leave.
    fn log(&self, socket: &Path, severity: Severity, fields: &[(&str, &str)]);
}

/// A session guard whose program is starting and that waits for its spec
/// ([`Host::launch_guard`]). Dropping it kills and reaps the guard: a guard of a session
/// that is not admitted leaves nothing behind.
pub trait PendingGuard {
    /// The session id the guard was started for.
    fn session(&self) -> &str;
    /// Gives the guard `spec` and runs `meanwhile` while the guard takes it up (it
    /// registers the session); if `meanwhile` succeeds, commits the session and waits
    /// until the guard reports that it watches this process, then lets it run on.
    /// Otherwise the session is withdrawn (the guard unregisters it and exits without
    /// acting), and `meanwhile`'s error is returned. Failures of the guard itself are
    /// [`Error::Guard`].
    fn hand_over(
        self: Box<Self>,
        spec: &GuardSpec,
        meanwhile: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error>;
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
    /// When the hook started, for the `debug` option's `timing_us=` field.
    started: Instant,
    /// How long starting the guard before the checks ended took (`timing_us=`).
    launch: Duration,
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
        let grant = cert.map(|c| c.profile().grant_id.to_string());
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
            serial: cert.map(|c| c.serial()),
            key_id: cert.map(|c| c.key_id().to_owned()),
            requester: cert.map(|c| c.profile().requester.clone()),
            tier: cert.map(|c| c.profile().tier.clone()),
            rhost: self.rhost.clone(),
            tty: self.tty.clone(),
            service: self.service.clone(),
            pid: self.pid,
            audit_session: self.audit_session,
            start: self.now,
            expires: cert.map(|c| c.valid_before()),
            reason: None,
            detail: None,
            duration: None,
            killed: None,
            recording_sha256: None,
            recording_bytes: None,
            recording_duration_ms: None,
        }
    }
}

fn log_fields(host: &dyn Host, socket: &Path, severity: Severity, fields: &[(&str, String)]) {
    host.log(socket, severity, &borrowed(fields));
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
    let grant = cert.profile().grant_id.to_string();
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
        now_ms: host.session_ms(
            now.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ),
        syslog: Config::syslog_hint(args),
        started: Instant::now(),
        launch: Duration::ZERO,
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
        Ok(Some((cert, launched))) => match admit(pam, host, &cfg, &ctx, &cert, launched) {
            Ok(()) => Outcome::Success,
            Err(e) => deny(pam, host, &ctx, Some(&cfg), e, &cfg.guard),
        },
        Ok(None) => Outcome::Ignore,
        Err(e) => deny(pam, host, &ctx, Some(&cfg), e, &cfg.guard),
    }
}

/// A guard started before the certificate's checks end ([`prelaunch`]), or why it could
/// not be; `None`: none was started, [`admit`] starts it.
type Launched<'h> = Option<Result<Box<dyn PendingGuard + 'h>, Error>>;

/// Verifies the login. `Ok(None)`: not a breakglass login and `require` is off. A login
/// that passes comes with its guard, already starting ([`prelaunch`]); on every other
/// way out that guard is dropped, killed and reaped before anything is recorded.
fn decide<'h>(
    pam: &mut dyn Pam,
    host: &'h dyn Host,
    cfg: &Config,
    ctx: &mut Ctx,
) -> Result<Option<(VerifiedCertificate, Launched<'h>)>, Error> {
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
    let mut launched = None;
    let verdict = match verify::parse(info.as_deref(), &trusted) {
        Ok(candidate) => {
            let t = Instant::now();
            launched = prelaunch(host, cfg, ctx, &hostname, &candidate);
            ctx.launch = t.elapsed();
            candidate.verify(&checks)
        }
        Err(verdict) => verdict,
    };
    match verdict {
        Verdict::Verified(cert) => {
            check_grant_marker(&cfg.sessions, &cert)?;
            Ok(Some((*cert, launched)))
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

/// Starts the guard of a login whose certificate a trusted CA claims to have signed,
/// before the certificate is verified: its program loads (on the other core) while the
/// signature and the profile are checked and the open record is written. It gets its
/// spec only once the session is admitted and recorded; a login that is denied drops it,
/// which kills and reaps it (it has registered nothing and written nothing). Nothing is
/// started for a login that is denied whatever the certificate says (no audit session)
/// or whose profile names no grant (the checks reject it).
fn prelaunch<'h>(
    host: &'h dyn Host,
    cfg: &Config,
    ctx: &Ctx,
    hostname: &str,
    candidate: &verify::Candidate,
) -> Launched<'h> {
    ctx.audit_session?;
    let grant = candidate.claimed_grant()?;
    let session = session_id(hostname, Some(&grant), ctx.pid, ctx.now_ms);
    Some(host.launch_guard(&cfg.guard, &session))
}

/// Records the open session durably, starts the guard (or hands its spec to the one
/// `launched` already) and keeps the session data.
fn admit<'h>(
    pam: &mut dyn Pam,
    host: &'h dyn Host,
    cfg: &Config,
    ctx: &Ctx,
    cert: &VerifiedCertificate,
    launched: Launched<'h>,
) -> Result<(), Error> {
    let Some(audit_session) = ctx.audit_session else {
        return Err(Error::NoAuditSession);
    };
    let decided = ctx.started.elapsed();
    let record = ctx.record(SessionEvent::Open, Some(cert));
    // A recording tier's session runs under the recorder, which is told its file here.
    // Only such a session needs the login shell (a password database lookup).
    let shell = if cert.recording() {
        ctx.user.as_deref().and_then(|u| host.login_shell(u))
    } else {
        None
    };
    let recording = crate::recording::prepare(cfg, cert, &record.session, shell.as_deref())?;
    if let Some(cast) = &recording {
        // The recording's file, and what keeps the shell that starts the recorder from
        // reading the user's start-up files first (the recorder undoes both).
        let (level, one) = SHELL_LEVEL;
        for (name, value) in [
            (RECORDING_ENV, &*cast.to_string_lossy()),
            (level, one),
            (ZDOTDIR, NO_ZDOTDIR),
        ] {
            pam.set_env(name, value).map_err(Error::Pam)?;
        }
    }
    let warn_at = cert
        .valid_before()
        .saturating_sub(cfg.warn_before.as_secs());
    let spec = GuardSpec {
        mode: GuardMode::Expire,
        record: record.clone(),
        spool: Some(cfg.spool.clone()),
        syslog: cfg.syslog.clone(),
        audit_session: Some(audit_session),
        // A lead longer than the certificate's life warns right after login, once the
        // terminal exists (sshd allocates it after open_session).
        warn_at: Some(warn_at.max(ctx.now + 2)),
        end_at_ms: cert.valid_before().saturating_mul(1000),
        grace_ms: u64::try_from(DEFAULT_GRACE.as_millis()).unwrap_or(5000),
        sessions: Some(cfg.sessions.clone()),
        ship: cfg.ship.clone(),
        recording: recording.clone(),
    };
    // The open record is durable before the guard is told the session is admitted and
    // before the session starts; its fsync runs while the guard registers the session.
    let guard_start = Instant::now();
    let pending = match launched {
        Some(Ok(pending)) if pending.session() == record.session => pending,
        Some(Err(e)) => return Err(e),
        // None started, or one named otherwise (it cannot be: the same certificate's
        // grant), which is dropped here: killed and reaped.
        _ => host.launch_guard(&cfg.guard, &record.session)?,
    };
    let mut recorded = Duration::ZERO;
    pending.hand_over(&spec, &mut || {
        let t = Instant::now();
        let written =
            crate::record::write(&cfg.spool, cfg.spool_slots, &record).map_err(Error::Spool);
        recorded = t.elapsed();
        written
    })?;
    let guarded = guard_start.elapsed();
    pam.set_session(OpenSession {
        record: record.clone(),
        spool: cfg.spool.clone(),
        spool_slots: cfg.spool_slots,
        syslog: cfg.syslog.clone(),
        recording,
    })
    .map_err(Error::Pam)?;
    let mut f = vec![("event", "session_open".to_owned())];
    f.extend(record_fields(&record));
    f.push(("service", ctx.service.clone().unwrap_or_default()));
    f.push(("audit_session", audit_session.to_string()));
    f.push(("ca", cert.ca_fingerprint().to_owned()));
    if cfg.debug {
        f.push((
            "timing_us",
            timing(&[
                ("verify", decided.saturating_sub(ctx.launch)),
                ("launch", ctx.launch),
                ("record", recorded),
                ("guard", guarded),
                ("total", ctx.started.elapsed()),
            ]),
        ));
    }
    log_fields(host, &cfg.syslog, Severity::Notice, &f);
    pam.tell_user(
        false,
        &format!(
            "breakglass: grant {} admits {} on {} until {}; the session will be ended then.",
            cert.profile().grant_id,
            text::escaped(cert.principal()),
            text::escaped(&record.host),
            fmt_time(cert.valid_before())
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
        && let Err(e) = crate::record::write(&cfg.spool, cfg.spool_slots, &record)
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
            recording: None,
        };
        if let Err(e) = host.start_guard(guard, &spec, &mut || Ok(())) {
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

/// The `debug` option's `timing_us=` value: microseconds per step, `name=µs` each.
fn timing(steps: &[(&str, Duration)]) -> String {
    steps
        .iter()
        .map(|(name, d)| format!("{name}={}", d.as_micros()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `pam_sm_close_session`: records the close of a session this module opened.
pub fn close_session(
    pam: &mut dyn Pam,
    host: &dyn Host,
    args: &[String],
    now: SystemTime,
) -> Outcome {
    let started = Instant::now();
    let Some(open) = pam.session() else {
        return Outcome::Ignore;
    };
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let now = unix(now);
    let mut record = open.record.for_event(SessionEvent::Close, now);
    record.duration = Some(now.saturating_sub(open.record.start));
    if let Some(cast) = &open.recording {
        let ms = now_ms.saturating_sub(open.record.start.saturating_mul(1000));
        crate::recording::seal(cast, ms, &mut record);
    }
    // The spool first: it is what gets shipped; syslog is best effort.
    let written = crate::record::write(&open.spool, open.spool_slots, &record);
    let recorded = started.elapsed();
    if let Err(e) = written {
        log_fields(
            host,
            &open.syslog,
            Severity::Error,
            &[("event", "spool_error".to_owned()), ("detail", e)],
        );
    }
    let mut f = vec![("event", "session_close".to_owned())];
    f.extend(record_fields(&record));
    // The same `debug` the open saw (close_session gets the same arguments).
    if args.iter().any(|a| a == "debug") {
        f.push((
            "timing_us",
            timing(&[("record", recorded), ("total", started.elapsed())]),
        ));
    }
    log_fields(host, &open.syslog, Severity::Notice, &f);
    Outcome::Success
}

/// `ms`, or one more than the last value this process got, whichever is later: the session
/// id holds the sshd pid and this time, so two sessions one process opens within the same
/// millisecond (a PAM program other than sshd; sshd runs one login per process) still get
/// two ids, two record files and two registrations.
pub fn unique_ms(ms: u64) -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = ms.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests;
