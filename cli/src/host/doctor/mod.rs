//! `breakglass host doctor`: checks this host's breakglass set-up and prints one line
//! per finding (`ok`, `WARN` or `FAIL`), each problem with the command or config line
//! that fixes it, then a summary.
//!
//! One file per part of the set-up, in the order they run:
//! - [`daemon`]: the daemon reachable with this host's client identity (`host://NAME`),
//!   the clock within the daemon's backdating window, and the CA's audit log as this
//!   host witnessed it (no failure recorded, the log extends the checkpoint seen last);
//! - [`sshd`]: sshd's effective configuration (`sshd -T`): `UsePAM yes`,
//!   `TrustedUserCAKeys` holding every current CA key, `RevokedKeys` present, a valid KRL,
//!   not older than the daemon's, and synced recently (by mtime);
//! - [`pam_line`]: sshd's PAM service: the `pam_breakglass.so` session line present, after
//!   `pam_loginuid.so` and before `pam_env.so` (also inside included files) and
//!   `@include common-session` (or any other session include), its options valid;
//! - [`module`]: the module loadable, its `ca_keys=` holding the CA's keys, its `krl=`
//!   fresh, the guard executable and root-owned, the spool writable, and every
//!   registered session with a live guard (a dead one not replaced means `host
//!   watch-revocations` is not running).
//!
//! [`args`] holds the flags and defaults, [`report`] the findings, [`files`] the file
//! checks the parts share.
#![forbid(unsafe_code)]

use breakglass_proto::pam_options::PamOptions;

use crate::error::CliError;
use crate::settings::Overrides;

mod args;
mod daemon;
mod files;
mod module;
mod pam_line;
mod report;
mod sshd;

pub use args::{DEFAULT_KRL_MAX_AGE, DEFAULT_SSHD, DEFAULT_SSHD_CONFIG, DoctorArgs};
pub use report::{EXIT_PROBLEMS, Finding, Level, Report};

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
    let daemon = daemon::check_daemon(&mut report, overrides).await;
    let bg = report::bg_cmd(overrides);
    daemon::check_witness(&mut report, &args.witness, overrides, &bg).await;

    // The module's krl_max_age= is the default age limit of sshd's KRL too.
    let service = args.pam_service_file();
    let module_max_age = pam_line::read_session_stack(&service).ok().and_then(|s| {
        s.entries
            .iter()
            .find(|e| e.is_breakglass())
            .and_then(|e| PamOptions::parse(&e.rule.args).ok())
            .and_then(|o| o.krl_max_age)
    });
    let max_age = args
        .krl_max_age
        .or(module_max_age)
        .unwrap_or(DEFAULT_KRL_MAX_AGE);

    let sshd = sshd::check_sshd(&mut report, args, &daemon, &bg, max_age);
    if let Some(m) = pam_line::check_pam_line(&mut report, &service, args, &sshd) {
        module::check_module(&mut report, &m, args, &daemon, &bg, max_age, &sshd);
    }
    report
}
