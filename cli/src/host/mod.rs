//! `breakglass host ...`: the commands a host runs, one module each.
//!
//! - [`ship`]: delivers the spool's session records to the CA, each exactly once;
//! - [`krl_sync`]: installs the CA's signed KRL for sshd (`sync-krl`);
//! - [`watch`]: follows the revocation stream, ends sessions of revoked grants and
//!   replaces dead session guards ([`guard_sweep`]) (`watch-revocations`);
//! - [`witness`]: checks that the CA's audit log extends what this host saw before, as
//!   the three commands above do first;
//! - [`pam_stack`]: puts the module into sshd's PAM stack and takes it out
//!   (`enable-pam`, `disable-pam`);
//! - [`doctor`]: checks the whole set-up and names each fix;
//! - [`enroll`]: gets this host's certificate with a join token (`enroll`) and renews it
//!   (`renew`).
//!
//! [`lock`] is the one way these commands wait for a lock file another process holds.
#![forbid(unsafe_code)]

use clap::Subcommand;

use crate::error::CliError;
use crate::settings::Overrides;

pub mod doctor;
pub mod enroll;
pub mod guard_sweep;
pub mod krl_sync;
pub mod lock;
pub mod pam_stack;
pub mod ship;
pub mod ship_recordings;
pub mod ship_slots;
pub mod watch;
pub mod witness;

/// `breakglass host ...`.
#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Deliver the spooled session records to breakglass-ca (exactly once, oldest first)
    Ship(ship::ShipArgs),
    /// Install the CA's signed KRL for sshd's RevokedKeys (verified, never older, atomic).
    /// The daemon serves the KRL to hosts (this host's host://NAME certificate, in the
    /// group hosts) and admins only
    SyncKrl(krl_sync::SyncKrlArgs),
    /// End open sessions of revoked grants and refuse their new logins at once (follows
    /// the daemon's revocation stream, which it serves to hosts and admins only)
    ///
    /// For each revocation it marks the registered sessions of the grant (their guards end
    /// them), marks the grant itself in the sessions directory (<grant>.grant-revoked; the
    /// PAM module denies new sessions of it), and with --krl installs the CA's new signed
    /// KRL for sshd's RevokedKeys at once, verified and replaced atomically like `host
    /// sync-krl` (which stays the fallback). While the stream is down it polls the KRL.
    ///
    /// It also replaces session guards that died, so their sessions still end at expiry.
    WatchRevocations(watch::WatchArgs),
    /// Add pam_breakglass.so to sshd's PAM session stack (after pam_loginuid, before pam_env), with a backup
    EnablePam(pam_stack::EnablePamArgs),
    /// Remove pam_breakglass.so from sshd's PAM stack, with a backup
    DisablePam(pam_stack::DisablePamArgs),
    /// Check this host's set-up (sshd, PAM line, module, KRL, CA keys, daemon, clock) and
    /// print each problem with its fix; exit 78 when anything FAILs
    Doctor(doctor::DoctorArgs),
    /// Check now that the CA's audit log extends the checkpoint this host saw last (no
    /// rollback, no fork), as sync-krl, ship and watch-revocations do first; --reset re-pins
    /// the log after a log_consistency_failed the CA's operators have acknowledged
    Witness(witness::WitnessCmd),
    /// Get this host's client certificate (host://NAME) with a one-time join token: pins
    /// the daemon's TLS CA by --ca-fingerprint before sending anything, makes the key here
    /// (mode 0600; it never leaves the host), writes DIR/host.toml, the key, the
    /// certificate, the trusted SSH CA keys and a first KRL
    Enroll(enroll::EnrollArgs),
    /// Renew this host's client certificate with the current one (a new key), once two
    /// thirds of its lifetime have passed (or with --force); breakglass-renew.timer runs it
    Renew(enroll::RenewArgs),
}

/// Runs a host subcommand.
pub async fn run(cmd: HostCmd, overrides: &Overrides) -> Result<(), CliError> {
    match cmd {
        HostCmd::Ship(mut a) => {
            let target = overrides.resolve()?;
            a.witness = a.witness.with_config(overrides)?;
            let r = ship::ship(&target, &a).await?;
            eprintln!("{}", r.summary());
        }
        HostCmd::SyncKrl(mut a) => {
            let target = overrides.resolve()?;
            a.witness = a.witness.with_config(overrides)?;
            let r = krl_sync::sync(&target, &a).await?;
            eprintln!("{}", r.summary(&a.out));
        }
        HostCmd::WatchRevocations(mut a) => {
            let target = overrides.resolve()?;
            a.witness = a.witness.with_config(overrides)?;
            watch::watch(&target, &a, std::future::pending()).await?;
        }
        HostCmd::Witness(mut a) => {
            let target = overrides.resolve()?;
            a.witness = a.witness.with_config(overrides)?;
            println!("{}", witness::run(&target, &a).await?);
        }
        HostCmd::EnablePam(a) => println!("{}", pam_stack::enable(&a)?),
        HostCmd::DisablePam(a) => println!("{}", pam_stack::disable(&a)?),
        HostCmd::Doctor(mut a) => {
            a.witness = a.witness.with_config(overrides)?;
            doctor::run(&a, overrides).await?;
        }
        HostCmd::Enroll(a) => {
            let e = enroll::enroll(&a, overrides).await?;
            println!(
                "enrolled as {} (certificate valid until {}); settings in {}",
                e.identity,
                breakglass_proto::audit::fields::rfc3339(u64::try_from(e.not_after).unwrap_or(0)),
                e.config.display()
            );
            println!(
                "next: breakglass --config {} host doctor",
                e.config.display()
            );
        }
        HostCmd::Renew(a) => match enroll::renew(&a, overrides).await? {
            enroll::Renewed::Renewed { serial, not_after } => println!(
                "renewed: certificate serial {serial}, valid until {}",
                breakglass_proto::audit::fields::rfc3339(u64::try_from(not_after).unwrap_or(0))
            ),
            enroll::Renewed::NotDue { not_after } => println!(
                "not due: the certificate is valid until {} (renewed once two thirds of its lifetime have passed; --force renews now)",
                breakglass_proto::audit::fields::rfc3339(u64::try_from(not_after).unwrap_or(0))
            ),
        },
    }
    Ok(())
}
