//! `breakglass host doctor`: checks this host's breakglass set-up and prints one line
//! per finding (`ok`, `WARN` or `FAIL`), each problem with the command or config line
//! that fixes it, then a summary.
//!
//! What it checks:
//! - the daemon: reachable with this host's client identity (`host://NAME`), and the
//!   clock within the daemon's backdating window;
//! - the CA's audit log, as this host witnessed it: no failure recorded in the witness
//!   state, and the daemon's log extends the checkpoint this host saw last;
//! - sshd's effective configuration (`sshd -T`): `UsePAM yes`, `TrustedUserCAKeys`
//!   holding every current CA key, `RevokedKeys` present, a valid KRL, not older than
//!   the daemon's, and synced recently (by mtime);
//! - sshd's PAM service: the `pam_breakglass.so` session line present, after
//!   `pam_loginuid.so` and before `pam_env.so` (also inside included files) and
//!   `@include common-session` (or any other session include), its options valid, the module loadable, its `ca_keys=`
//!   holding the CA's keys, its `krl=` fresh, the guard executable and root-owned, the
//!   spool writable, and every registered session with a live guard (a dead one not
//!   replaced means `host watch-revocations` is not running).
//!
//! The CLI does not link libpam, so the PAM stack and the module options are parsed here:
//! the rules with [`crate::pam_stack::rules`], the reader `enable-pam` uses too, and judged
//! with [`Placement::judge`], so both agree where the line belongs; the options as
//! `pam/src/config.rs` reads them (a unit test keeps the lists in step).

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pam_stack::{self, Placement, Rule};
use breakglass_proto::krl::Krl;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{GetCaPublicKeysRequest, GetRevocationListRequest, WhoAmIRequest};
use clap::Args;
use ssh_key::{HashAlg, PublicKey};

use crate::connect;
use crate::error::CliError;
use crate::settings::Overrides;

/// Default sshd executable.
pub const DEFAULT_SSHD: &str = "/usr/sbin/sshd";
/// Default sshd configuration.
pub const DEFAULT_SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// Default session guard (the module's default `guard=`).
pub const DEFAULT_GUARD: &str = "/usr/libexec/breakglass/breakglass-guard";
/// Default spool (the module's default `spool=`).
pub const DEFAULT_SPOOL: &str = crate::host::DEFAULT_SPOOL;
/// Oldest acceptable KRL when neither `--krl-max-age` nor the module's `krl_max_age=`
/// says otherwise; `breakglass-krl-sync.timer` touches it every minute.
pub const DEFAULT_KRL_MAX_AGE: Duration = Duration::from_secs(3600);
/// Where the packages install the CA keys and the KRL (used in suggested fixes).
const PACKAGED_CA_KEYS: &str = "/etc/ssh/breakglass_user_ca.pub";
const PACKAGED_KRL: &str = "/etc/ssh/breakglass_revoked.krl";
/// Exit status when a check FAILs (sysexits EX_CONFIG).
pub const EXIT_PROBLEMS: i32 = 78;
/// File names the module goes by (installed, and as cargo builds it).
const MODULE_NAMES: [&str; 2] = ["pam_breakglass.so", "libpam_breakglass.so"];
/// Options of `pam_breakglass.so` that take a value (pam/src/config.rs).
const VALUE_OPTIONS: [&str; 12] = [
    "ca_keys",
    "krl",
    "krl_max_age",
    "krl_fail",
    "host",
    "warn_before",
    "spool",
    "guard",
    "syslog",
    "sessions",
    "ship",
    "ship_config",
];
/// Options of `pam_breakglass.so` that are flags.
const FLAG_OPTIONS: [&str; 2] = ["require", "debug"];
/// Deepest `@include` nesting followed.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Largest config, key or KRL file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// `breakglass host doctor`.
#[derive(Debug, Args, Clone)]
#[command(after_help = "\
Prints one line per check: `ok`, `WARN` (works, but should be fixed) or `FAIL` \
(breakglass access or its enforcement is broken here), each problem followed by the \
command or config line that fixes it, then a summary. Run it as root: `sshd -T` and the \
file checks need it. Every path can be pointed elsewhere, e.g. at a test sshd under \
pam_wrapper.

Exit status: 0 when no check FAILed (WARN lines allowed), 78 (EX_CONFIG) when any \
check FAILed, 64 for bad flags.")]
pub struct DoctorArgs {
    /// sshd executable whose effective configuration (`sshd -T`) is checked
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SSHD)]
    pub sshd: PathBuf,
    /// sshd configuration file given to `sshd -T -f`
    #[arg(long, value_name = "FILE", default_value = DEFAULT_SSHD_CONFIG)]
    pub sshd_config: PathBuf,
    /// sshd's PAM service file [default: <dir>/<file name of --sshd>, where <dir> is
    /// $PAM_WRAPPER_SERVICE_DIR if set (pam_wrapper), else /etc/pam.d]
    #[arg(long, value_name = "FILE")]
    pub pam_service: Option<PathBuf>,
    /// Directory to look for a module named without a path (repeatable)
    /// [default: /usr/lib/<multiarch>/security, /lib/<multiarch>/security,
    /// /usr/lib/security, /lib/security]
    #[arg(long, value_name = "DIR")]
    pub module_dir: Vec<PathBuf>,
    /// Oldest acceptable KRL, by modification time [default: the module's
    /// krl_max_age=, else 1h]
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration)]
    pub krl_max_age: Option<Duration>,
    /// Session guard to check [default: the module's guard=, else
    /// /usr/libexec/breakglass/breakglass-guard]
    #[arg(long, value_name = "PATH")]
    pub guard: Option<PathBuf>,
    /// Spool directory to check [default: the module's spool=, else /var/spool/breakglass]
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    #[command(flatten)]
    pub witness: crate::witness::WitnessArgs,
}

impl DoctorArgs {
    /// The PAM service file: the flag, else sshd's service name (its file name) in the
    /// directory libpam reads (`$PAM_WRAPPER_SERVICE_DIR` under pam_wrapper, else /etc/pam.d).
    #[must_use]
    pub fn pam_service_file(&self) -> PathBuf {
        self.pam_service.clone().unwrap_or_else(|| {
            default_pam_service(&self.sshd, std::env::var_os("PAM_WRAPPER_SERVICE_DIR"))
        })
    }

    fn module_dirs(&self) -> Vec<PathBuf> {
        if !self.module_dir.is_empty() {
            return self.module_dir.clone();
        }
        let arch = match std::env::consts::ARCH {
            "x86" => "i386-linux-gnu",
            "arm" => "arm-linux-gnueabihf",
            "powerpc64" => "powerpc64le-linux-gnu",
            a => return multiarch_dirs(&format!("{a}-linux-gnu")),
        };
        multiarch_dirs(arch)
    }
}

/// sshd 9.2 uses its file name as the PAM service name.
fn default_pam_service(sshd: &Path, wrapper_dir: Option<std::ffi::OsString>) -> PathBuf {
    let name = sshd
        .file_name()
        .map_or_else(|| "sshd".into(), |n| n.to_string_lossy().into_owned());
    wrapper_dir
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/etc/pam.d"), PathBuf::from)
        .join(name)
}

fn multiarch_dirs(triple: &str) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/lib/{triple}/security")),
        PathBuf::from(format!("/lib/{triple}/security")),
        PathBuf::from("/usr/lib/security"),
        PathBuf::from("/lib/security"),
    ]
}

// ---------------------------------------------------------------------------------------
// Findings.

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works, but should be fixed.
    Warn,
    /// Broken: breakglass access or its enforcement does not work here.
    Fail,
}

/// One result of a check.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// Which part: `daemon`, `sshd` or `pam`.
    pub area: &'static str,
    /// What was found.
    pub message: String,
    /// The command or config line that fixes it.
    pub fix: Option<String>,
}

impl Finding {
    /// The finding's line, e.g. `FAIL pam    PAM line missing: ...`.
    #[must_use]
    pub fn line(&self) -> String {
        let tag = match self.level {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        format!("{tag:<4} {:<6} {}", self.area, self.message)
    }
}

/// Everything `host doctor` found, in order.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, level: Level, area: &'static str, message: String, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            area,
            message,
            fix,
        });
    }

    fn ok(&mut self, area: &'static str, message: String) {
        self.push(Level::Ok, area, message, None);
    }

    fn warn(&mut self, area: &'static str, message: String, fix: impl Into<Option<String>>) {
        self.push(Level::Warn, area, message, fix.into());
    }

    fn fail(&mut self, area: &'static str, message: String, fix: impl Into<Option<String>>) {
        self.push(Level::Fail, area, message, fix.into());
    }

    /// How many findings have `level`.
    #[must_use]
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// The finding lines (without fixes).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.findings.iter().map(Finding::line).collect()
    }

    /// The whole report as printed: each finding, its fix indented below it, a summary.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.line());
            out.push('\n');
            if let Some(fix) = &f.fix {
                for (i, l) in fix.lines().enumerate() {
                    out.push_str(if i == 0 {
                        "            fix: "
                    } else {
                        "                 "
                    });
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `host doctor: 14 ok, 1 WARN, 2 FAIL`.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "host doctor: {} ok, {} WARN, {} FAIL",
            self.count(Level::Ok),
            self.count(Level::Warn),
            self.count(Level::Fail)
        )
    }

    /// 0 when nothing FAILed, else [`EXIT_PROBLEMS`].
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.count(Level::Fail) == 0 {
            0
        } else {
            EXIT_PROBLEMS
        }
    }

    /// `Err` (exit 78) when anything FAILed.
    pub fn into_result(self) -> Result<(), CliError> {
        match self.count(Level::Fail) {
            0 => Ok(()),
            n => Err(CliError::Misconfigured(format!(
                "host doctor found {n} problem(s) (the FAIL lines above, each with its fix)"
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entry point.

/// What the daemon told us.
#[derive(Debug, Default)]
struct DaemonView {
    /// The CA's current public keys (signing key first), with fingerprint and role.
    keys: Option<Vec<(PublicKey, String, bool)>>,
    /// The version of the KRL the daemon serves.
    krl_version: Option<u64>,
    /// The daemon has revocations it could not publish in a KRL yet.
    krl_behind: bool,
}

/// How fixes spell the `breakglass` command (with the `--config` given, if any).
fn bg_cmd(overrides: &Overrides) -> String {
    match &overrides.config {
        Some(c) => format!("breakglass --config {}", c.display()),
        None => "breakglass".into(),
    }
}

/// `breakglass host doctor`: runs every check, prints the report, fails (exit 78) on
/// any FAIL.
pub async fn run(args: &DoctorArgs, overrides: &Overrides) -> Result<(), CliError> {
    let report = check(args, overrides).await;
    print!("{}", report.render());
    report.into_result()
}

/// Runs every check.
pub async fn check(args: &DoctorArgs, overrides: &Overrides) -> Report {
    let mut report = Report::default();
    let daemon = check_daemon(&mut report, overrides).await;
    let bg = bg_cmd(overrides);
    check_witness(&mut report, &args.witness, overrides, &bg).await;

    // The module's krl_max_age= is the default age limit of sshd's KRL too.
    let service = args.pam_service_file();
    let module_max_age = read_session_stack(&service).ok().and_then(|s| {
        s.entries
            .iter()
            .find(|e| e.is_breakglass())
            .and_then(|e| parse_module_options(&e.rule.args).ok())
            .and_then(|o| o.krl_max_age)
    });
    let max_age = args
        .krl_max_age
        .or(module_max_age)
        .unwrap_or(DEFAULT_KRL_MAX_AGE);

    let sshd = check_sshd(&mut report, args, &daemon, &bg, max_age);
    if let Some(m) = check_pam_line(&mut report, &service, args, &sshd) {
        check_module(&mut report, &m, args, &daemon, &bg, max_age, &sshd);
    }
    report
}

// ---------------------------------------------------------------------------------------
// The daemon and the clock.

async fn check_daemon(report: &mut Report, overrides: &Overrides) -> DaemonView {
    const A: &str = "daemon";
    let mut view = DaemonView::default();
    let config_fix = "pass --config with this host's client config (the CA's address and \
                      certificate, this host's host://NAME certificate and key), e.g. \
                      --config /etc/breakglass/host.toml"
        .to_owned();
    let target = match overrides.resolve() {
        Ok(t) => t,
        Err(e) => {
            report.fail(
                A,
                format!("no connection settings for breakglass-ca: {e}"),
                config_fix,
            );
            return view;
        }
    };
    let shown = target.shown();
    let channel = match connect::channel(&target) {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                A,
                format!("cannot set up the connection to {shown}: {e}"),
                config_fix,
            );
            return view;
        }
    };
    let sent = SystemTime::now();
    let who = BreakGlassClient::new(channel.clone())
        .who_am_i(WhoAmIRequest {})
        .await;
    let received = SystemTime::now();
    let who = match who {
        Ok(r) => r.into_inner(),
        Err(s) => {
            report.fail(
                A,
                format!(
                    "breakglass-ca not reachable with this host's identity: {}",
                    CliError::from_status(s, &shown)
                        .to_string()
                        .replace('\n', " ")
                ),
                format!(
                    "start breakglass-ca or fix the settings, then check with `{} whoami`",
                    bg_cmd(overrides)
                ),
            );
            return view;
        }
    };
    if who.identity.starts_with("host://") {
        report.ok(
            A,
            format!(
                "breakglass-ca at {shown} reachable as {} (via {})",
                breakglass_proto::text::escaped(&who.identity),
                breakglass_proto::text::escaped(&who.transport)
            ),
        );
    } else {
        report.fail(
            A,
            format!(
                "breakglass-ca at {shown} sees this host as {:?}, a person's or admin identity, \
                 not a host identity (host://NAME): session records and KRL syncs need this host's own certificate",
                who.identity
            ),
            config_fix,
        );
    }
    check_clock(report, &who, sent, received);

    match BreakGlassClient::new(channel.clone())
        .get_ca_public_keys(GetCaPublicKeysRequest {})
        .await
    {
        Ok(r) => {
            let mut keys = Vec::new();
            for k in r.into_inner().keys {
                match PublicKey::from_openssh(&k.public_key) {
                    Ok(p) => {
                        let fp = p.fingerprint(HashAlg::Sha256).to_string();
                        keys.push((p, fp, k.signing));
                    }
                    Err(e) => report.fail(
                        A,
                        format!("breakglass-ca sent a CA key that does not parse: {e}"),
                        None,
                    ),
                }
            }
            view.keys = Some(keys);
        }
        Err(s) => report.fail(
            A,
            format!(
                "cannot fetch the CA keys: {}",
                CliError::from_status(s, &shown)
            ),
            None,
        ),
    }
    match RevocationsClient::new(channel)
        .get_revocation_list(GetRevocationListRequest {})
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            view.krl_version = Some(r.version);
            if let Some(why) = crate::krl_sync::unpublished(&r) {
                view.krl_behind = true;
                report.warn(
                    A,
                    format!("no newer KRL is available: {why}"),
                    "nothing to fix on this host: the CA's operators free space on (or fix) the disk of its audit log ([audit] dir)".to_owned(),
                );
            }
        }
        Err(s) => report.fail(
            A,
            format!("cannot fetch the KRL: {}", CliError::from_status(s, &shown)),
            None,
        ),
    }
    view
}

/// The CA's audit log as this host witnessed it (`crate::witness`).
async fn check_witness(
    report: &mut Report,
    args: &crate::witness::WitnessArgs,
    overrides: &Overrides,
    bg: &str,
) {
    use crate::witness::{FIX, Judgement, judge};
    const A: &str = "witness";
    let Ok(target) = overrides.resolve() else {
        return; // Already a FAIL of the daemon check.
    };
    let state = args.state_path();
    let fix = FIX.replace("breakglass host", &format!("{bg} host"));
    match judge(&target, args).await {
        Ok(Judgement::NotYet) => report.warn(
            A,
            format!(
                "this host has not witnessed the CA's audit log yet (no {})",
                state.display()
            ),
            format!(
                "{bg} host witness (breakglass-krl-sync.timer does it every minute with sync-krl);                  set audit_key in the client config to pin the log's key from a copy of log.pub"
            ),
        ),
        Ok(Judgement::Failed(f)) => report.fail(
            A,
            format!(
                "log_consistency_failed at {}: {} (recorded in {})",
                breakglass_proto::audit::fields::rfc3339(f.at),
                f.message,
                state.display()
            ),
            fix,
        ),
        Ok(Judgement::NotExtending(why)) => report.fail(
            A,
            format!(
                "the CA's audit log at {} does not extend the checkpoint this host saw \
                 ({}): {why}",
                target.shown(),
                state.display()
            ),
            fix,
        ),
        Ok(Judgement::Extends { saved, now, halted }) => {
            report.ok(
                A,
                format!(
                    "the CA's audit log extends the checkpoint this host saw ({saved} events, \
                     {}); now {now} events",
                    state.display()
                ),
            );
            if let Some(h) = halted {
                report.warn(
                    A,
                    format!("breakglass-ca says {h}"),
                    "see the CA's alerts: another host found the log rolled back or forked".to_owned(),
                );
            }
        }
        // Unreachable: the daemon check above already FAILs and says why.
        Err(e @ CliError::Unavailable(_)) => report.warn(
            A,
            format!(
                "cannot check the CA's audit log against {}: {}",
                state.display(),
                e.to_string().replace('\n', " ")
            ),
            None,
        ),
        Err(e) => report.fail(
            A,
            format!(
                "cannot check the CA's audit log against {}: {}",
                state.display(),
                e.to_string().replace('\n', " ")
            ),
            None,
        ),
    }
}

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the clock check concludes from a skew (local minus daemon, seconds).
#[derive(Debug, PartialEq)]
enum Clock {
    Within,
    Outside,
}

/// The daemon reports whole seconds: allow one second for rounding and the round trip.
fn judge_skew(skew: f64, backdate: i64) -> Clock {
    if skew.abs() <= backdate as f64 + 1.0 {
        Clock::Within
    } else {
        Clock::Outside
    }
}

fn check_clock(
    report: &mut Report,
    who: &breakglass_proto::v1::WhoAmIResponse,
    sent: SystemTime,
    received: SystemTime,
) {
    const A: &str = "daemon";
    if who.server_time_unix == 0 {
        report.warn(
            A,
            "clock not checked: this breakglass-ca does not report its time (upgrade it)".into(),
            None,
        );
        return;
    }
    // The daemon read its clock somewhere between sending and receiving, and sent whole
    // seconds (rounded down: on average half a second early).
    let local = (unix_f64(sent) + unix_f64(received)) / 2.0;
    let skew = local - (who.server_time_unix as f64 + 0.5);
    let behind_ahead = if skew < 0.0 { "behind" } else { "ahead of" };
    match judge_skew(skew, who.backdate_seconds) {
        Clock::Within => report.ok(
            A,
            format!(
                "clock {:.0}s {behind_ahead} the CA's, within its {}s backdating window",
                skew.abs(),
                who.backdate_seconds
            ),
        ),
        Clock::Outside => report.fail(
            A,
            format!(
                "clock {:.0}s {behind_ahead} the CA's, more than its {}s backdating window: {}",
                skew.abs(),
                who.backdate_seconds,
                if skew < 0.0 {
                    "fresh certificates are not yet valid here"
                } else {
                    "certificates expire here before their time"
                }
            ),
            "synchronise the clock (e.g. `chronyc makestep` or `systemctl restart systemd-timesyncd`) and keep NTP running on this host and the CA".to_owned(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// sshd.

/// Paths sshd uses, for the PAM checks.
#[derive(Debug, Default)]
struct SshdPaths {
    trusted: Option<PathBuf>,
    revoked: Option<PathBuf>,
}

/// Parses `sshd -T` output: lower-case keyword → values (some keywords repeat).
fn parse_sshd_t(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_owned());
    }
    map
}

fn sshd_effective(args: &DoctorArgs) -> Result<BTreeMap<String, Vec<String>>, String> {
    let shown = format!(
        "{} -T -f {}",
        args.sshd.display(),
        args.sshd_config.display()
    );
    let out = Command::new(&args.sshd)
        .arg("-T")
        .arg("-f")
        .arg(&args.sshd_config)
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            if err.is_empty() { "no message" } else { &err }
        ));
    }
    Ok(parse_sshd_t(&String::from_utf8_lossy(&out.stdout)))
}

fn first<'a>(map: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    map.get(key)
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "none")
}

fn check_sshd(
    report: &mut Report,
    args: &DoctorArgs,
    daemon: &DaemonView,
    bg: &str,
    max_age: Duration,
) -> SshdPaths {
    const A: &str = "sshd";
    let cfg = args.sshd_config.display();
    let mut paths = SshdPaths::default();
    let map = match sshd_effective(args) {
        Ok(m) => m,
        Err(e) => {
            report.fail(
                A,
                format!("cannot read sshd's effective configuration: {e}"),
                format!(
                    "run host doctor as root, and fix what sshd reports (`{} -t -f {cfg}`)",
                    args.sshd.display()
                ),
            );
            return paths;
        }
    };
    match map.get("usepam").and_then(|v| v.first()).map(String::as_str) {
        Some("yes") => report.ok(A, "UsePAM yes".into()),
        other => report.fail(
            A,
            format!(
                "UsePAM is {}: sshd skips the PAM session stack, so pam_breakglass never runs",
                other.unwrap_or("not set")
            ),
            format!("set `UsePAM yes` in {cfg} (or install the breakglass sshd_config.d snippet) and reload sshd"),
        ),
    }

    match first(&map, "trustedusercakeys") {
        None => report.fail(
            A,
            "TrustedUserCAKeys is not set: sshd accepts no breakglass certificate".into(),
            format!(
                "{bg} ca-keys --out {PACKAGED_CA_KEYS}\nthen add `TrustedUserCAKeys {PACKAGED_CA_KEYS}` to {cfg} and reload sshd"
            ),
        ),
        Some(p) => {
            let p = PathBuf::from(p);
            check_ca_keys_file(report, A, "sshd", "TrustedUserCAKeys", &p, daemon, bg);
            paths.trusted = Some(p);
        }
    }

    match first(&map, "revokedkeys") {
        None => report.fail(
            A,
            "RevokedKeys is not set: sshd accepts revoked certificates until they expire".into(),
            format!(
                "{bg} host sync-krl --out {PACKAGED_KRL}{}\nthen add `RevokedKeys {PACKAGED_KRL}` to {cfg} and reload sshd",
                paths
                    .trusted
                    .as_ref()
                    .map_or(String::new(), |t| format!(" --ca-keys {}", t.display()))
            ),
        ),
        Some(p) => {
            let p = PathBuf::from(p);
            check_krl(
                report,
                A,
                "RevokedKeys",
                &p,
                paths.trusted.as_deref(),
                daemon,
                bg,
                max_age,
            );
            paths.revoked = Some(p);
        }
    }
    paths
}

/// Reads a small file, refusing symlinks' surprises by capping the size.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Root-owned and not writable by group or others (what the module demands of its files).
fn ownership_problem(meta: &std::fs::Metadata) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        Some(format!("is owned by uid {}, not root", meta.uid()))
    } else if mode & 0o022 != 0 {
        Some(format!("is writable by group or others (mode {mode:04o})"))
    } else {
        None
    }
}

fn ownership_fix(path: &Path) -> String {
    format!("chown root:root {p} && chmod go-w {p}", p = path.display())
}

/// Checks a file of CA keys (sshd's TrustedUserCAKeys or the module's ca_keys=) against
/// the CA's current keys.
fn check_ca_keys_file(
    report: &mut Report,
    area: &'static str,
    who: &str,
    what: &str,
    path: &Path,
    daemon: &DaemonView,
    bg: &str,
) {
    let fix = format!("{bg} ca-keys --out {}", path.display());
    let text = match read_capped(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            report.fail(
                area,
                format!(
                    "CA key not trusted by {who}: {what} file {} cannot be read: {e}",
                    path.display()
                ),
                fix,
            );
            return;
        }
    };
    let keys = match crate::krl_sync::parse_ca_keys(&text, &path.display().to_string()) {
        Ok(k) => k,
        Err(e) => {
            report.fail(
                area,
                format!("CA key not trusted by {who}: the {what} file is not a list of keys: {e}"),
                fix,
            );
            return;
        }
    };
    if let Ok(meta) = std::fs::metadata(path)
        && let Some(p) = ownership_problem(&meta)
    {
        report.fail(
            area,
            format!("{what} file {} {p}", path.display()),
            ownership_fix(path),
        );
    }
    let Some(current) = &daemon.keys else {
        report.warn(
            area,
            format!(
                "{what} {} holds {} key(s); not compared with the CA's (daemon not reachable)",
                path.display(),
                keys.len()
            ),
            None,
        );
        return;
    };
    let mut missing = 0;
    for (key, fp, signing) in current {
        if !keys.iter().any(|k| k.key_data() == key.key_data()) {
            missing += 1;
            report.fail(
                area,
                format!(
                    "CA key not trusted by {who}: {fp} ({} key of the CA) is not in {} ({what})",
                    if *signing { "signing" } else { "published" },
                    path.display()
                ),
                fix.clone(),
            );
        }
    }
    if missing == 0 {
        report.ok(
            area,
            format!(
                "{what} {} holds the CA's {} current key(s)",
                path.display(),
                current.len()
            ),
        );
    }
}

/// Checks a KRL file: present, valid, root-owned, not older than the daemon's, synced
/// within `max_age`.
#[allow(clippy::too_many_arguments)]
fn check_krl(
    report: &mut Report,
    area: &'static str,
    what: &str,
    path: &Path,
    ca_keys: Option<&Path>,
    daemon: &DaemonView,
    bg: &str,
    max_age: Duration,
) {
    let fix = format!(
        "{bg} host sync-krl --out {}{}",
        path.display(),
        ca_keys.map_or(String::new(), |c| format!(" --ca-keys {}", c.display()))
    );
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.fail(
                area,
                format!(
                    "KRL missing: {} ({what}) does not exist; sshd refuses every public-key login while its RevokedKeys file is missing",
                    path.display()
                ),
                fix,
            );
            return;
        }
        Err(e) => {
            report.fail(
                area,
                format!("KRL missing: {} ({what}): {e}", path.display()),
                fix,
            );
            return;
        }
    };
    let krl = match read_capped(path)
        .map_err(|e| e.to_string())
        .and_then(|b| Krl::parse(&b).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => {
            report.fail(
                area,
                format!(
                    "KRL invalid: {} ({what}): {e}; sshd refuses every public-key login with it",
                    path.display()
                ),
                fix,
            );
            return;
        }
    };
    if let Some(p) = ownership_problem(&meta) {
        report.fail(
            area,
            format!("KRL {} ({what}) {p}", path.display()),
            ownership_fix(path),
        );
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    let age_shown = humantime::format_duration(Duration::from_secs(age.as_secs()));
    let mut fresh = true;
    if let Some(v) = daemon.krl_version
        && krl.version < v
    {
        fresh = false;
        report.fail(
            area,
            format!(
                "KRL stale: {} ({what}) is version {}, the CA serves version {v}: revocations since are not enforced here",
                path.display(),
                krl.version
            ),
            fix.clone(),
        );
    }
    if age > max_age {
        fresh = false;
        report.fail(
            area,
            format!(
                "KRL stale: {} ({what}) was last synced {age_shown} ago, more than the {} allowed (--krl-max-age, or the module's krl_max_age=)",
                path.display(),
                humantime::format_duration(max_age)
            ),
            format!("{fix}\nand check that breakglass-krl-sync.timer runs: systemctl status breakglass-krl-sync.timer"),
        );
    }
    if fresh {
        report.ok(
            area,
            format!(
                "{what} {} is a valid KRL, version {} ({} revoked serials){}, synced {age_shown} ago",
                path.display(),
                krl.version,
                krl.serial_count(),
                if daemon.krl_behind {
                    ", the newest the CA serves (which lacks revocations, see above)"
                } else if daemon.krl_version.is_some() {
                    ", as current as the CA's"
                } else {
                    ""
                }
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// The PAM stack.

/// One module line of a PAM session stack, after following includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamEntry {
    /// The rule as [`pam_stack::rules`] parsed it (control, module, arguments).
    pub rule: Rule,
    /// The file and line it is written in.
    pub file: PathBuf,
    /// Line number in `file` (its first line when `\` continues it).
    pub line: usize,
    /// The line of the service file it comes from (its own, or the include's).
    pub top_line: usize,
    /// The include it came through (`@include common-session`), if any.
    pub via: Option<String>,
}

impl PamEntry {
    /// The module's file name.
    #[must_use]
    pub fn module_name(&self) -> &str {
        self.rule.module_name()
    }

    fn is_breakglass(&self) -> bool {
        MODULE_NAMES.iter().any(|m| self.rule.runs(m))
    }

    fn place(&self) -> String {
        match &self.via {
            None => format!("line {}", self.line),
            Some(v) => format!(
                "line {} of {}, through `{v}` on line {}",
                self.line,
                self.file.display(),
                self.top_line
            ),
        }
    }
}

/// An include in the service file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamInclude {
    /// How it is written (`@include common-session`).
    pub text: String,
    /// Line number in the service file.
    pub line: usize,
    /// A session include the module's line must come before
    /// ([`Rule::is_session_include`]).
    pub session: bool,
}

/// A service's session stack, flattened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionStack {
    /// Module lines in the order PAM runs them.
    pub entries: Vec<PamEntry>,
    /// Includes written in the service file (session or all types).
    pub includes: Vec<PamInclude>,
    /// Included files that could not be read.
    pub problems: Vec<String>,
}

fn resolve_include(dir: &Path, name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// Reads `path`'s session stack, following `@include`, `include` and `substack` (relative
/// names are looked up beside the service file, as libpam does in /etc/pam.d).
pub fn read_session_stack(path: &Path) -> std::io::Result<SessionStack> {
    let text = String::from_utf8_lossy(&read_capped(path)?).into_owned();
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut stack = SessionStack::default();
    collect(&text, path, &dir, 0, None, &mut stack);
    Ok(stack)
}

fn collect(
    text: &str,
    file: &Path,
    dir: &Path,
    depth: usize,
    via: Option<(String, usize)>,
    stack: &mut SessionStack,
) {
    for rule in pam_stack::rules(text) {
        let line = rule.index + 1;
        let top_line = via.as_ref().map_or(line, |(_, l)| *l);
        let Some(name) = rule.included_file().map(str::to_owned) else {
            if rule.is_session_module() {
                stack.entries.push(PamEntry {
                    rule,
                    file: file.to_path_buf(),
                    line,
                    top_line,
                    via: via.as_ref().map(|(v, _)| v.clone()),
                });
            }
            continue;
        };
        let shown = rule.include_text();
        if via.is_none() {
            stack.includes.push(PamInclude {
                text: shown.clone(),
                line,
                session: rule.is_session_include(),
            });
        }
        if depth >= MAX_INCLUDE_DEPTH {
            stack.problems.push(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH} at `{shown}`"
            ));
            continue;
        }
        let inc = resolve_include(dir, &name);
        match read_capped(&inc) {
            Ok(b) => collect(
                &String::from_utf8_lossy(&b),
                &inc,
                dir,
                depth + 1,
                Some(via.clone().unwrap_or((shown, line))),
                stack,
            ),
            Err(e) => stack.problems.push(format!(
                "`{shown}` (line {top_line}): cannot read {}: {e}",
                inc.display()
            )),
        }
    }
}

/// The module options `host doctor` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleOptions {
    /// `ca_keys=`.
    pub ca_keys: PathBuf,
    /// `krl=`.
    pub krl: Option<PathBuf>,
    /// `krl_max_age=`.
    pub krl_max_age: Option<Duration>,
    /// `spool=`.
    pub spool: Option<PathBuf>,
    /// `guard=`.
    pub guard: Option<PathBuf>,
    /// `sessions=`.
    pub sessions: Option<PathBuf>,
}

fn module_duration(key: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(s) => Ok(Duration::from_secs(s)),
        Err(_) => humantime::parse_duration(v)
            .map_err(|e| format!("option `{key}={v}`: {e}; use seconds or a duration like `2m`")),
    }
}

/// Parses the module's arguments as `pam_breakglass.so` does: unknown, repeated or
/// malformed options are errors (the module denies every session then).
pub fn parse_module_options(args: &[String]) -> Result<ModuleOptions, String> {
    let mut o = ModuleOptions::default();
    let mut ca_keys = None;
    let mut seen: Vec<&str> = Vec::new();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg.as_str(), None),
        };
        if seen.contains(&key) {
            return Err(format!("option `{key}` is given twice"));
        }
        seen.push(key);
        let known_value = VALUE_OPTIONS.contains(&key);
        let known_flag = FLAG_OPTIONS.contains(&key);
        match value {
            _ if !known_value && !known_flag => {
                return Err(format!(
                    "unknown option `{arg}`; known options: {}=, {}",
                    VALUE_OPTIONS.join("=, "),
                    FLAG_OPTIONS.join(", ")
                ));
            }
            Some(_) if known_flag => {
                return Err(format!(
                    "option `{arg}`: `{key}` is a flag and takes no value"
                ));
            }
            None if known_value => {
                return Err(format!("option `{key}` needs a value (`{key}=...`)"));
            }
            _ => {}
        }
        let Some(v) = value else { continue };
        let path = || {
            if v.starts_with('/') && !v.split('/').any(|c| c == "..") {
                Ok(PathBuf::from(v))
            } else {
                Err(format!(
                    "option `{key}={v}`: give an absolute path without `..`"
                ))
            }
        };
        match key {
            "ca_keys" => ca_keys = Some(path()?),
            "krl" => o.krl = Some(path()?),
            "spool" => o.spool = Some(path()?),
            "guard" => o.guard = Some(path()?),
            "sessions" => o.sessions = Some(path()?),
            "syslog" | "ship" | "ship_config" => {
                path()?;
            }
            "krl_max_age" => {
                let d = module_duration(key, v)?;
                if d.is_zero() {
                    return Err(
                        "option `krl_max_age=0`: give the longest acceptable KRL age".into(),
                    );
                }
                o.krl_max_age = Some(d);
            }
            "warn_before" => {
                module_duration(key, v)?;
            }
            "krl_fail" if v != "open" && v != "closed" => {
                return Err(format!("option `krl_fail={v}`: use `open` or `closed`"));
            }
            _ => {}
        }
    }
    o.ca_keys = ca_keys.ok_or_else(|| {
        "option `ca_keys=` is required: the file of CA public keys breakglass certificates are signed by"
            .to_owned()
    })?;
    if seen.contains(&"krl_max_age") && o.krl.is_none() {
        return Err("option `krl_max_age=` checks the KRL: give it with `krl=`".into());
    }
    Ok(o)
}

/// The module line that was found and its options.
#[derive(Debug)]
struct ModuleLine {
    entry: PamEntry,
    options: ModuleOptions,
    service: PathBuf,
}

fn suggested_line(sshd: Option<&SshdPaths>) -> String {
    let ca = sshd
        .and_then(|s| s.trusted.as_ref())
        .map_or(PACKAGED_CA_KEYS.to_owned(), |p| p.display().to_string());
    let krl = sshd
        .and_then(|s| s.revoked.as_ref())
        .map_or(PACKAGED_KRL.to_owned(), |p| p.display().to_string());
    format!("session required pam_breakglass.so ca_keys={ca} krl={krl}")
}

/// Finds and places the module line; `None` when there is none usable.
fn check_pam_line(
    report: &mut Report,
    service: &Path,
    args: &DoctorArgs,
    sshd: &SshdPaths,
) -> Option<ModuleLine> {
    const A: &str = "pam";
    let svc = service.display();
    let enable = if args.pam_service.is_none() && args.sshd == Path::new(DEFAULT_SSHD) {
        "breakglass host enable-pam".to_owned()
    } else {
        format!("breakglass host enable-pam --pam-file {svc}")
    };
    let stack = match read_session_stack(service) {
        Ok(s) => s,
        Err(e) => {
            report.fail(
                A,
                format!("PAM line missing: sshd's PAM service file {svc} cannot be read: {e}"),
                format!(
                    "check --pam-service (sshd uses /etc/pam.d/<its file name>), then {enable}"
                ),
            );
            return None;
        }
    };
    for p in &stack.problems {
        report.warn(A, format!("{svc}: {p}"), None);
    }
    let found: Vec<&PamEntry> = stack.entries.iter().filter(|e| e.is_breakglass()).collect();
    let Some(entry) = found.first().copied() else {
        report.fail(
            A,
            format!(
                "PAM line missing: no `session ... pam_breakglass.so` line in {svc}: breakglass sessions are not re-checked, recorded or ended at expiry"
            ),
            format!(
                "{enable}\nor add after `session required pam_loginuid.so` in {svc}:\n  {}",
                suggested_line(Some(sshd))
            ),
        );
        return None;
    };
    if found.len() > 1 {
        report.fail(
            A,
            format!(
                "pam_breakglass.so is in sshd's session stack {} times ({}): every session runs it twice",
                found.len(),
                found.iter().map(|e| e.place()).collect::<Vec<_>>().join("; ")
            ),
            format!("{enable} (keeps one line, in the right place)"),
        );
    }
    let pos = stack
        .entries
        .iter()
        .position(|e| std::ptr::eq(e, entry))
        .unwrap_or_default();
    let before = &stack.entries[..pos];
    if let Some(via) = &entry.via {
        report.fail(
            A,
            format!(
                "pam_breakglass.so is in {} (line {}), included by `{via}` on line {} of {svc}: it belongs in sshd's stack only (included files also run for su, cron and sudo)",
                entry.file.display(),
                entry.line,
                entry.top_line
            ),
            format!("remove line {} of {} and run {enable}", entry.line, entry.file.display()),
        );
    }
    let loginuid_before = before.iter().any(|e| e.rule.is_loginuid());
    let pam_env = before.iter().find(|e| e.rule.is_pam_env());
    let include = stack
        .includes
        .iter()
        .find(|i| i.line < entry.top_line && i.session);
    // The same judgement as enable-pam's (pam_stack::inspect), here over the stack with
    // its includes followed.
    let placement = Placement::judge(pam_env.is_some(), include.is_some(), loginuid_before);
    let placed = entry.via.is_none() && placement == Placement::Correct;
    if !loginuid_before {
        report.fail(
            A,
            format!(
                "pam_loginuid.so does not come before pam_breakglass.so ({} of {svc}): the module denies every session without the audit session id it sets",
                entry.place()
            ),
            format!(
                "add `session required pam_loginuid.so` above line {} of {svc}",
                entry.top_line
            ),
        );
    }
    if let Some(env) = pam_env {
        report.fail(
            A,
            format!(
                "PAM line after pam_env: pam_breakglass.so ({} of {svc}) comes after pam_env.so ({}): a user's ~/.pam_environment can then replace the certificate the module checks",
                entry.place(),
                env.place()
            ),
            format!(
                "{enable} (moves it before pam_env, with a backup)\nor move line {} of {svc} above line {}",
                entry.top_line, env.top_line
            ),
        );
    } else if let Some(inc) = include {
        report.warn(
            A,
            format!(
                "pam_breakglass.so (line {} of {svc}) comes after `{}` (line {}); it should come right after pam_loginuid.so, before it",
                entry.top_line, inc.text, inc.line
            ),
            format!("move line {} of {svc} above line {}", entry.top_line, inc.line),
        );
    }
    if matches!(entry.rule.control.as_str(), "optional" | "sufficient") {
        report.warn(
            A,
            format!(
                "pam_breakglass.so is `{}` ({} of {svc}): a session the module denies still opens",
                entry.rule.control,
                entry.place()
            ),
            format!(
                "use `session required {} ...` on that line",
                entry.rule.module
            ),
        );
    }
    if placed {
        report.ok(
            A,
            format!(
                "PAM line {svc}:{}: after pam_loginuid.so, before pam_env.so and common-session",
                entry.line
            ),
        );
    }
    match parse_module_options(&entry.rule.args) {
        Ok(options) => {
            report.ok(
                A,
                format!("module options parse ({} given)", entry.rule.args.len()),
            );
            Some(ModuleLine {
                entry: entry.clone(),
                options,
                service: service.to_path_buf(),
            })
        }
        Err(e) => {
            report.fail(
                A,
                format!(
                    "module options on {} of {svc}: {e}: the module denies every breakglass session",
                    entry.place()
                ),
                format!("fix the option on that line, e.g.\n  {}", suggested_line(Some(sshd))),
            );
            None
        }
    }
}

/// Loads a PAM module as libpam would (`dlopen` + `dlsym`) to prove it can be loaded.
/// The one `unsafe` of the CLI.
#[allow(unsafe_code)]
fn dlopen_check(path: &Path, symbol: &str) -> Result<(), String> {
    use nix::libc;
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "the path contains a NUL byte".to_owned())?;
    let c_symbol = CString::new(symbol).map_err(|_| "bad symbol name".to_owned())?;
    // SAFETY: both arguments are NUL-terminated strings that outlive the calls; the text
    // dlerror returns is copied before any other dl* call. Loading runs the module's
    // initialisers, as sshd's libpam does. The handle is deliberately never closed:
    // unloading a Rust cdylib with thread-local destructors is not safe, and the process
    // exits soon after.
    unsafe {
        let last_error = || {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_owned()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(last_error());
        }
        libc::dlerror();
        if libc::dlsym(handle, c_symbol.as_ptr()).is_null() {
            return Err(format!("no symbol {symbol}: {}", last_error()));
        }
    }
    Ok(())
}

fn check_module(
    report: &mut Report,
    m: &ModuleLine,
    args: &DoctorArgs,
    daemon: &DaemonView,
    bg: &str,
    max_age: Duration,
    sshd: &SshdPaths,
) {
    const A: &str = "pam";
    let svc = m.service.display();
    // The module file.
    let module = if m.entry.rule.module.starts_with('/') {
        Some(PathBuf::from(&m.entry.rule.module))
    } else {
        args.module_dirs()
            .iter()
            .map(|d| d.join(&m.entry.rule.module))
            .find(|p| p.exists())
    };
    match module {
        None => report.fail(
            A,
            format!(
                "module {} not found in {}",
                m.entry.rule.module,
                args.module_dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "install the libpam-breakglass package (it puts pam_breakglass.so in the multiarch security directory)".to_owned(),
        ),
        Some(path) => match std::fs::metadata(&path) {
            Err(e) => report.fail(
                A,
                format!("module {} (line {} of {svc}): {e}", path.display(), m.entry.top_line),
                "install the libpam-breakglass package, or fix the path on that line".to_owned(),
            ),
            Ok(meta) => {
                if let Some(p) = ownership_problem(&meta) {
                    report.fail(
                        A,
                        format!("module {} {p}: anyone who can write it owns every login", path.display()),
                        ownership_fix(&path),
                    );
                }
                match dlopen_check(&path, "pam_sm_open_session") {
                    Ok(()) => report.ok(
                        A,
                        format!("module {} loads and exports pam_sm_open_session", path.display()),
                    ),
                    Err(e) => report.fail(
                        A,
                        format!("module {} cannot be loaded: {e}", path.display()),
                        format!(
                            "reinstall libpam-breakglass; `ldd {}` shows missing libraries",
                            path.display()
                        ),
                    ),
                }
            }
        },
    }

    // Its CA keys and KRL.
    check_ca_keys_file(
        report,
        A,
        "pam_breakglass",
        "ca_keys=",
        &m.options.ca_keys,
        daemon,
        bg,
    );
    match &m.options.krl {
        None => report.warn(
            A,
            format!(
                "module has no krl= (line {} of {svc}): it does not refuse revoked certificates itself",
                m.entry.top_line
            ),
            format!(
                "add krl={} to that line",
                sshd.revoked
                    .as_ref()
                    .map_or(PACKAGED_KRL.to_owned(), |p| p.display().to_string())
            ),
        ),
        Some(k) if sshd.revoked.as_ref() == Some(k) => report.ok(
            A,
            format!("module krl= is sshd's RevokedKeys {}", k.display()),
        ),
        Some(k) => check_krl(
            report,
            A,
            "module krl=",
            k,
            Some(&m.options.ca_keys),
            daemon,
            bg,
            max_age,
        ),
    }

    // The guard.
    let guard = args
        .guard
        .clone()
        .or_else(|| m.options.guard.clone())
        .unwrap_or_else(|| DEFAULT_GUARD.into());
    let g = guard.display();
    match std::fs::metadata(&guard) {
        Err(e) => report.fail(
            A,
            format!("session guard {g}: {e}: the module denies every breakglass session"),
            format!("install the libpam-breakglass package (or `install -o root -g root -m 0755 -D breakglass-guard {g}`)"),
        ),
        Ok(meta) if !meta.is_file() => report.fail(
            A,
            format!("session guard {g} is not a regular file"),
            format!("install -o root -g root -m 0755 -D breakglass-guard {g}"),
        ),
        Ok(meta) => {
            let mut good = true;
            if meta.mode() & 0o111 == 0 {
                good = false;
                report.fail(
                    A,
                    format!("session guard {g} is not executable (mode {:04o})", meta.mode() & 0o7777),
                    format!("chmod 0755 {g}"),
                );
            }
            if let Some(p) = ownership_problem(&meta) {
                good = false;
                report.fail(A, format!("session guard {g} {p}"), ownership_fix(&guard));
            }
            if good {
                report.ok(A, format!("session guard {g} is executable and root-owned"));
            }
        }
    }

    // The spool.
    let spool = args
        .spool
        .clone()
        .or_else(|| m.options.spool.clone())
        .unwrap_or_else(|| DEFAULT_SPOOL.into());
    check_spool(report, &spool);
    check_guards(
        report,
        m.options
            .sessions
            .as_deref()
            .unwrap_or(Path::new(breakglass_proto::sessions::DEFAULT_DIR)),
    );
}

/// Every open session has a live guard: one that died (SIGKILL, OOM killer) is replaced
/// by `host watch-revocations`; a session still without one means the watcher is not
/// running, and nothing ends that session at expiry.
fn check_guards(report: &mut Report, dir: &Path) {
    use crate::guard_sweep::{GuardState, guard_state};
    const A: &str = "pam";
    let regs = breakglass_proto::sessions::read_registrations(dir);
    let orphans: Vec<_> = regs
        .iter()
        .filter(|r| guard_state(dir, r) == GuardState::Gone)
        .collect();
    if orphans.is_empty() {
        report.ok(
            A,
            format!(
                "{} open session(s) registered in {}, each with a live guard",
                regs.len(),
                dir.display()
            ),
        );
        return;
    }
    for r in orphans {
        report.fail(
            A,
            format!(
                "session {} (grant {}) has no live guard (pid {} is gone): nothing ends it at expiry; \
                 host watch-revocations replaces dead guards within a second, so it is not running{}",
                r.session,
                r.grant,
                r.guard_pid,
                if r.guard.is_none() {
                    " (or this older guard cannot be replaced: end the session by hand)"
                } else {
                    ""
                }
            ),
            "systemctl enable --now breakglass-watch-revocations.service".to_owned(),
        );
    }
}

fn check_spool(report: &mut Report, spool: &Path) {
    const A: &str = "pam";
    let s = spool.display();
    let create = format!("install -o root -g root -m 0700 -d {s}");
    match std::fs::symlink_metadata(spool) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match spool.parent().map(std::fs::metadata) {
                Some(Ok(p)) if p.is_dir() => report.ok(
                    A,
                    format!("spool {s} does not exist yet; the module creates it (mode 0700) at the first session"),
                ),
                _ => report.fail(
                    A,
                    format!("spool {s} does not exist and neither does its parent: the module cannot record sessions and denies them"),
                    format!("install -o root -g root -m 0700 -D -d {s}"),
                ),
            }
        }
        Err(e) => report.fail(A, format!("spool {s}: {e}"), create),
        Ok(meta) if !meta.is_dir() => report.fail(
            A,
            format!("spool {s} is not a directory (symlinks are refused)"),
            format!("rm {s} && {create}"),
        ),
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            if let Some(p) = ownership_problem(&meta) {
                report.fail(
                    A,
                    format!("spool {s} {p}: the module denies every breakglass session"),
                    format!("chown root:root {s} && chmod 0700 {s}"),
                );
                return;
            }
            if let Err(e) = tempfile::Builder::new()
                .prefix(".doctor-")
                .tempfile_in(spool)
            {
                report.fail(
                    A,
                    format!(
                        "spool {s} is not writable: {e}: the module denies every breakglass session"
                    ),
                    format!("free space on its file system, or `chmod 0700 {s}` (owner root)"),
                );
                return;
            }
            if mode == 0o700 {
                report.ok(A, format!("spool {s} is writable, mode 0700"));
            } else {
                report.warn(
                    A,
                    format!(
                        "spool {s} has mode {mode:04o}: session records are readable by others"
                    ),
                    format!("chmod 0700 {s}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const DEBIAN: &str = "\
# PAM configuration for the Secure Shell service
@include common-auth
account    required     pam_nologin.so
@include common-account
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close
session    required     pam_loginuid.so
session    optional     pam_keyinit.so force revoke
@include common-session
session    optional     pam_motd.so  motd=/run/motd.dynamic
session    required     pam_limits.so
session    required     pam_env.so # [1]
session    required     pam_env.so user_readenv=1 \\
    envfile=/etc/default/locale
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open
@include common-password
";

    fn report_for(service: &Path) -> (Report, Option<ModuleLine>) {
        let args = DoctorArgs {
            sshd: DEFAULT_SSHD.into(),
            sshd_config: DEFAULT_SSHD_CONFIG.into(),
            pam_service: Some(service.to_owned()),
            module_dir: vec![],
            krl_max_age: None,
            guard: None,
            spool: None,
            witness: crate::witness::WitnessArgs::default(),
        };
        let mut r = Report::default();
        let m = check_pam_line(&mut r, service, &args, &SshdPaths::default());
        (r, m)
    }

    fn fails(r: &Report) -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.level == Level::Fail)
            .map(Finding::line)
            .collect()
    }

    #[test]
    fn debian_stack_is_flattened_with_includes_and_continuations() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session [default=1] pam_permit.so\nsession required pam_unix.so\n-session optional pam_systemd.so\n",
        );
        let svc = write(dir.path(), "sshd", DEBIAN);
        let s = read_session_stack(&svc).unwrap();
        let names: Vec<&str> = s.entries.iter().map(PamEntry::module_name).collect();
        assert_eq!(
            names,
            [
                "pam_selinux.so",
                "pam_loginuid.so",
                "pam_keyinit.so",
                "pam_permit.so",
                "pam_unix.so",
                "pam_systemd.so",
                "pam_motd.so",
                "pam_limits.so",
                "pam_env.so",
                "pam_env.so",
                "pam_selinux.so"
            ]
        );
        let env = &s.entries[9];
        assert_eq!(
            env.rule.args,
            ["user_readenv=1", "envfile=/etc/default/locale"]
        );
        assert_eq!(env.line, 12);
        let systemd = &s.entries[5];
        assert_eq!(systemd.via.as_deref(), Some("@include common-session"));
        assert_eq!(systemd.top_line, 8);
        assert_eq!(
            s.entries[0].rule.control,
            "[success=ok ignore=ignore module_unknown=ignore default=bad]"
        );
        // common-auth, common-account and common-password are missing here.
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
        assert_eq!(s.includes.len(), 4);
    }

    #[test]
    fn missing_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let svc = write(dir.path(), "sshd", DEBIAN);
        let (r, m) = report_for(&svc);
        assert!(m.is_none());
        let f = fails(&r);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("FAIL pam    PAM line missing: "), "{f:?}");
        assert!(r.render().contains("fix: breakglass host enable-pam"));
    }

    #[test]
    fn line_in_the_right_place_passes_and_its_options_parse() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let text = DEBIAN.replace(
            "session    required     pam_loginuid.so\n",
            "session    required     pam_loginuid.so\nsession required pam_breakglass.so ca_keys=/etc/ssh/ca.pub krl=/etc/ssh/r.krl krl_max_age=15m spool=/var/s\n",
        );
        let svc = write(dir.path(), "sshd", &text);
        let (r, m) = report_for(&svc);
        assert!(fails(&r).is_empty(), "{}", r.render());
        assert_eq!(r.count(Level::Warn), 3, "{}", r.render()); // the missing includes
        let m = m.unwrap();
        assert_eq!(m.entry.line, 7);
        assert_eq!(
            m.options,
            ModuleOptions {
                ca_keys: "/etc/ssh/ca.pub".into(),
                krl: Some("/etc/ssh/r.krl".into()),
                krl_max_age: Some(Duration::from_secs(900)),
                spool: Some("/var/s".into()),
                guard: None,
                sessions: None,
            }
        );
    }

    #[test]
    fn a_session_without_a_live_guard_fails_with_the_watcher_as_fix() {
        use breakglass_proto::sessions::Registration;
        let dir = tempfile::tempdir().unwrap();
        let reg = Registration {
            session: "db-7-g-1-42-1".into(),
            grant: "g-1".into(),
            serial: 1,
            key_id: "breakglass/g-1/sre@example.com".into(),
            expires: 1,
            guard_pid: 999_999_999,
            guard: Some("/usr/libexec/breakglass/breakglass-guard".into()),
        };
        let mut r = Report::default();
        check_guards(&mut r, dir.path());
        assert!(fails(&r).is_empty(), "{}", r.render());
        std::fs::write(reg.path(dir.path()), reg.to_text()).unwrap();
        // Held by a live guard: fine.
        let held = nix::fcntl::Flock::lock(
            std::fs::File::open(reg.path(dir.path())).unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let mut r = Report::default();
        check_guards(&mut r, dir.path());
        assert!(fails(&r).is_empty(), "{}", r.render());
        drop(held);
        let mut r = Report::default();
        check_guards(&mut r, dir.path());
        let text = r.render();
        assert_eq!(fails(&r).len(), 1, "{text}");
        assert!(
            text.contains("db-7-g-1-42-1") && text.contains("no live guard"),
            "{text}"
        );
        assert!(text.contains("breakglass-watch-revocations"), "{text}");
    }

    #[test]
    fn doctor_and_enable_pam_judge_a_place_alike() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        write(dir.path(), "postlogin", "session optional pam_lastlog.so\n");
        let bg = "session required pam_breakglass.so ca_keys=/etc/ssh/ca.pub\n";
        let continued = "session required \\\n  pam_breakglass.so \\\n  ca_keys=/etc/ssh/ca.pub\n";
        let (uid, cs, env) = (
            "session required pam_loginuid.so\n",
            "@include common-session\n",
            "session required pam_env.so\n",
        );
        let post = "session substack postlogin\n";
        let cases = [
            ([uid, bg, cs, env].concat(), Placement::Correct),
            ([uid, continued, cs, env].concat(), Placement::Correct),
            ([bg, uid, cs, env].concat(), Placement::NoLoginuidBefore),
            ([uid, cs, bg, env].concat(), Placement::AfterCommonSession),
            ([uid, post, bg, env].concat(), Placement::AfterCommonSession),
            ([uid, env, bg, cs].concat(), Placement::AfterPamEnv),
            ([uid, cs, env, continued].concat(), Placement::AfterPamEnv),
        ];
        for (text, want) in cases {
            let svc = write(dir.path(), "sshd", &text);
            let (r, m) = report_for(&svc);
            let placement = pam_stack::inspect(&text, "pam_breakglass.so").placement;
            assert_eq!(placement, want, "{text}");
            let doctor_ok = r
                .lines()
                .iter()
                .any(|l| l.starts_with("ok   pam    PAM line "));
            assert_eq!(
                doctor_ok,
                placement == Placement::Correct,
                "{text}\n{}",
                r.render()
            );
            assert_eq!(m.unwrap().entry.rule.args, ["ca_keys=/etc/ssh/ca.pub"]);
            let named = match placement {
                Placement::Correct => None,
                Placement::NoLoginuidBefore => Some("pam_loginuid.so does not come before"),
                Placement::AfterCommonSession => Some("it should come right after pam_loginuid.so"),
                Placement::AfterPamEnv => Some("PAM line after pam_env: "),
                Placement::Missing => Some("PAM line missing: "),
            };
            if let Some(named) = named {
                assert!(
                    r.lines().iter().any(|l| l.contains(named)),
                    "{text}\n{}",
                    r.render()
                );
            }
        }
    }

    #[test]
    fn line_after_pam_env_is_named_also_through_an_include() {
        let dir = tempfile::tempdir().unwrap();
        // Directly after pam_env.
        let text = DEBIAN.replace(
            "session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open\n",
            "session required pam_breakglass.so ca_keys=/etc/ssh/ca.pub\n",
        );
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let svc = write(dir.path(), "sshd", &text);
        let (r, _) = report_for(&svc);
        let f = fails(&r);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("FAIL pam    PAM line after pam_env: pam_breakglass.so (line 14 of "),
            "{f:?}"
        );
        assert!(f[0].contains("comes after pam_env.so (line 11)"), "{f:?}");

        // After an include whose file runs pam_env.
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\nsession required pam_env.so\n",
        );
        let text = DEBIAN.replace(
            "session    optional     pam_motd.so",
            "session required /x/libpam_breakglass.so ca_keys=/etc/ssh/ca.pub\nsession    optional     pam_motd.so",
        );
        let svc = write(dir.path(), "sshd", &text);
        let (r, _) = report_for(&svc);
        let f = fails(&r);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("PAM line after pam_env"), "{f:?}");
        assert!(
            f[0].contains("through `@include common-session` on line 8"),
            "{f:?}"
        );

        // After a harmless common-session: a warning only.
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let (r, _) = report_for(&svc);
        assert!(fails(&r).is_empty(), "{}", r.render());
        assert!(
            r.lines().iter().any(|l| l.starts_with("WARN")
                && l.contains("comes after `@include common-session` (line 8)")),
            "{}",
            r.render()
        );
    }

    #[test]
    fn missing_loginuid_and_bad_options_fail() {
        let dir = tempfile::tempdir().unwrap();
        let svc = write(
            dir.path(),
            "svc",
            "session required pam_breakglass.so ca_keys=/etc/ssh/ca.pub colour=blue\nsession required pam_loginuid.so\n",
        );
        let (r, m) = report_for(&svc);
        assert!(m.is_none());
        let f = fails(&r);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].contains("pam_loginuid.so does not come before"),
            "{f:?}"
        );
        assert!(f[1].contains("unknown option `colour=blue`"), "{f:?}");
    }

    #[test]
    fn module_options_are_checked_like_the_module_does() {
        let p = |a: &[&str]| {
            parse_module_options(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert!(p(&["ca_keys=/a", "require", "debug", "krl=/k", "krl_max_age=90"]).is_ok());
        for (args, needle) in [
            (&["krl=/k"][..], "`ca_keys=` is required"),
            (&["ca_keys=a"], "absolute path"),
            (&["ca_keys=/a", "ca_keys=/b"], "given twice"),
            (&["ca_keys=/a", "require=yes"], "is a flag"),
            (&["ca_keys=/a", "krl"], "needs a value"),
            (&["ca_keys=/a", "bogus"], "unknown option `bogus`"),
            (&["ca_keys=/a", "krl_max_age=10m"], "give it with `krl=`"),
            (
                &["ca_keys=/a", "krl=/k", "krl_max_age=soon"],
                "krl_max_age=soon",
            ),
            (&["ca_keys=/a", "krl_fail=maybe"], "use `open` or `closed`"),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn option_list_matches_the_module() {
        // The module's own table of options (pam/src/config.rs OPTIONS), read from its
        // source: the CLI does not link the module (and so libpam).
        let src = include_str!("../../pam/src/config.rs");
        let table = &src[src.find("pub const OPTIONS").unwrap()..];
        let table = &table[..table.find("\n];").unwrap()];
        let mut theirs: Vec<&str> = table
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name: \""))
            .map(|l| l.trim_end_matches("\","))
            .collect();
        let mut ours: Vec<&str> = VALUE_OPTIONS.iter().chain(&FLAG_OPTIONS).copied().collect();
        theirs.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn pam_service_follows_sshds_file_name() {
        assert_eq!(
            default_pam_service(Path::new("/usr/sbin/sshd"), None),
            Path::new("/etc/pam.d/sshd")
        );
        assert_eq!(
            default_pam_service(
                Path::new("/tmp/demo/sshd-demo"),
                Some("/tmp/demo/pam".into())
            ),
            Path::new("/tmp/demo/pam/sshd-demo")
        );
    }

    #[test]
    fn sshd_t_output_parses() {
        let m = parse_sshd_t(
            "port 2222\nusepam yes\ntrustedusercakeys /etc/ssh/ca.pub\nrevokedkeys none\nhostkey /a\nhostkey /b\n",
        );
        assert_eq!(first(&m, "usepam"), Some("yes"));
        assert_eq!(first(&m, "trustedusercakeys"), Some("/etc/ssh/ca.pub"));
        assert_eq!(first(&m, "revokedkeys"), None);
        assert_eq!(m["hostkey"], ["/a", "/b"]);
    }

    #[test]
    fn clock_skew_is_judged_against_the_backdating_window() {
        assert_eq!(judge_skew(0.4, 120), Clock::Within);
        assert_eq!(judge_skew(-120.9, 120), Clock::Within);
        assert_eq!(judge_skew(-122.0, 120), Clock::Outside);
        assert_eq!(judge_skew(300.0, 120), Clock::Outside);
        assert_eq!(judge_skew(1.5, 0), Clock::Outside);
    }

    #[test]
    fn spool_checks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut r = Report::default();
        check_spool(&mut r, &spool);
        check_spool(&mut r, &dir.path().join("no/such/spool"));
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_spool(&mut r, &spool);
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
        check_spool(&mut r, &spool);
        let l = r.lines();
        assert!(
            l[0].starts_with("ok") && l[0].contains("creates it"),
            "{l:?}"
        );
        assert!(
            l[1].starts_with("FAIL") && l[1].contains("neither does its parent"),
            "{l:?}"
        );
        if nix::unistd::geteuid().is_root() {
            assert!(
                l[2].starts_with("WARN") && l[2].contains("mode 0755"),
                "{l:?}"
            );
            assert!(
                l[3].starts_with("FAIL") && l[3].contains("writable by group or others"),
                "{l:?}"
            );
        } else {
            assert!(l[2].contains("not root"), "{l:?}");
        }
    }

    #[test]
    fn loading_a_library_that_is_not_a_module_fails() {
        let dir = tempfile::tempdir().unwrap();
        let junk = write(dir.path(), "junk.so", "not an ELF file");
        assert!(dlopen_check(&junk, "pam_sm_open_session").is_err());
        // libc loads but is no PAM module.
        let e = dlopen_check(Path::new("libc.so.6"), "pam_sm_open_session").unwrap_err();
        assert!(e.contains("no symbol pam_sm_open_session"), "{e}");
    }
}
