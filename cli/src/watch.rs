//! `breakglass host watch-revocations`: the host side of live revocation.
//!
//! Session guards register each breakglass session in a run directory
//! ([`breakglass_proto::sessions`]). This watcher follows the daemon's revocation
//! stream (`WatchRevocations`, resumed from the last sequence number after a
//! reconnect) and, for every session of a revoked grant, writes a revocation marker
//! that the session's guard picks up within a fraction of a second and ends the
//! session the same way as at expiry, with reason `revoked`.
//!
//! When the stream is down (daemon restarting, network trouble) the watcher polls the
//! signed KRL instead, verified against the CA keys, and marks sessions whose serial it
//! lists. When the daemon cannot be reached at all, sessions still end at expiry:
//! the guards never depend on the watcher for that. The watcher does replace guards that
//! died, so that their sessions still end at expiry ([`crate::guard_sweep`]).
//!
//! The guard is a small synchronous program that links no async runtime; keeping the
//! network side in this separate process is what lets it stay that way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::krl::Krl;
use breakglass_proto::sessions::{self, MARKER_SUFFIX, Registration, RevocationMarker};
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{RevocationNotice, WatchRevocationsRequest};
use clap::Args;
use ssh_key::PublicKey;

use crate::connect;
use crate::error::CliError;
use crate::krl_sync;
use crate::settings::Target;

/// A stream that carries nothing (not even a heartbeat) this long is considered dead.
const STREAM_SILENCE: Duration = Duration::from_secs(15);
/// How often the registry is rescanned for new sessions of revoked grants.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// `breakglass host watch-revocations`.
#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Run directory where session guards register sessions (the module's sessions=)
    #[arg(long, value_name = "DIR", default_value = sessions::DEFAULT_DIR)]
    pub sessions: PathBuf,
    /// CA public keys to verify the KRL with while polling [default: fetched from the daemon]
    #[arg(long, value_name = "FILE")]
    pub ca_keys: Option<PathBuf>,
    /// How often to poll the KRL while the revocation stream is down
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub poll: Duration,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the watcher knows: revoked grants that may still have sessions, and where
/// the stream left off.
#[derive(Debug)]
pub struct Watcher {
    dir: PathBuf,
    /// Revoked grants with their marker and certificate expiry.
    revoked: HashMap<String, (RevocationMarker, u64)>,
    /// Last revocation sequence number seen on the stream.
    pub last: u64,
}

impl Watcher {
    /// A watcher over the registry in `dir` (created, mode 0700, if missing; an
    /// existing directory is left as it is: the guards refuse one that is not private).
    pub fn new(dir: &Path) -> Result<Self, CliError> {
        let io =
            |e: std::io::Error| CliError::Io(format!("sessions directory {}: {e}", dir.display()));
        if !dir.exists() {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(io)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            revoked: HashMap::new(),
            last: 0,
        })
    }

    /// The sessions registered now.
    pub fn registrations(&self) -> Vec<Registration> {
        sessions::read_registrations(&self.dir)
    }

    /// Writes the marker that ends `reg`'s session, unless it is already there.
    fn mark(&self, reg: &Registration, marker: &RevocationMarker) -> bool {
        let path = sessions::marker_path(&self.dir, &reg.session);
        if path.exists() {
            return false;
        }
        let tmp = self
            .dir
            .join(format!(".{}{MARKER_SUFFIX}.tmp", reg.session));
        let ok = std::fs::write(&tmp, marker.to_text()).and_then(|()| std::fs::rename(&tmp, &path));
        match ok {
            Ok(()) => {
                eprintln!(
                    "breakglass: ending session {} of revoked grant {} (revoked by {}: {})",
                    reg.session, marker.grant, marker.revoked_by, marker.reason
                );
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                eprintln!(
                    "breakglass: cannot mark session {} as revoked: {e}",
                    reg.session
                );
                false
            }
        }
    }

    /// Takes a revocation from the stream; returns how many sessions were marked.
    pub fn apply_notice(&mut self, n: &RevocationNotice) -> usize {
        self.last = self.last.max(n.version);
        if n.heartbeat || n.grant_id.is_empty() {
            return 0;
        }
        let marker = RevocationMarker {
            grant: n.grant_id.clone(),
            revoked_by: n.revoked_by.clone(),
            reason: n.reason.clone(),
            version: n.version,
        };
        let expires = u64::try_from(n.valid_before).unwrap_or(0);
        self.revoked.insert(n.grant_id.clone(), (marker, expires));
        self.scan()
    }

    /// Marks sessions of known revoked grants (sessions opened after the notice
    /// included); forgets grants whose certificates have expired.
    pub fn scan(&mut self) -> usize {
        let now = unix_now();
        self.revoked.retain(|_, (_, expires)| *expires > now);
        if self.revoked.is_empty() {
            return 0;
        }
        self.registrations()
            .iter()
            .filter(|r| {
                self.revoked
                    .get(&r.grant)
                    .is_some_and(|(m, _)| self.mark(r, m))
            })
            .count()
    }

    /// Marks sessions whose certificate serial a verified KRL revokes (the fallback
    /// while the stream is down).
    pub fn apply_krl(&mut self, krl: &Krl, cas: &[PublicKey]) -> usize {
        self.registrations()
            .iter()
            .filter(|r| {
                cas.iter()
                    .any(|ca| krl.revokes_serial(ca.key_data(), r.serial))
                    && self.mark(
                        r,
                        &RevocationMarker {
                            grant: r.grant.clone(),
                            revoked_by: "unknown (listed in the KRL)".into(),
                            reason: format!(
                                "serial {} is in KRL version {}",
                                r.serial, krl.version
                            ),
                            version: 0,
                        },
                    )
            })
            .count()
    }
}

/// One KRL poll: fetch, verify, mark.
async fn poll_krl(target: &Target, cas: &[PublicKey], w: &mut Watcher) -> Result<usize, CliError> {
    let fetched = krl_sync::fetch(target).await?;
    let krl = krl_sync::verify(&fetched, cas)?;
    Ok(w.apply_krl(&krl, cas))
}

/// Follows the revocation stream until `stop` resolves; falls back to polling the
/// KRL while the stream is down. Runs forever otherwise.
pub async fn watch(
    target: &Target,
    args: &WatchArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let mut w = Watcher::new(&args.sessions)?;
    let _guards = crate::guard_sweep::Sweeper::start(&args.sessions);
    tokio::pin!(stop);
    let mut cas: Option<Vec<PublicKey>> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut client = RevocationsClient::new(connect::channel(target)?);
        let opened = tokio::select! {
            r = client.watch_revocations(WatchRevocationsRequest { from_version: w.last }) => r,
            () = &mut stop => return Ok(()),
        };
        match opened {
            Ok(resp) => {
                eprintln!(
                    "breakglass: watching revocations at {} from sequence {}",
                    target.shown(),
                    w.last
                );
                backoff = Duration::from_secs(1);
                let mut stream = resp.into_inner();
                let mut scan = tokio::time::interval(SCAN_EVERY);
                loop {
                    tokio::select! {
                        m = tokio::time::timeout(STREAM_SILENCE, stream.message()) => match m {
                            Ok(Ok(Some(n))) => {
                                w.apply_notice(&n);
                            }
                            Ok(Ok(None)) => {
                                eprintln!("breakglass: revocation stream ended; reconnecting");
                                break;
                            }
                            Ok(Err(s)) => {
                                eprintln!("breakglass: revocation stream failed: {}", CliError::from_status(s, &target.shown()));
                                break;
                            }
                            Err(_) => {
                                eprintln!("breakglass: revocation stream silent for {STREAM_SILENCE:?}; reconnecting");
                                break;
                            }
                        },
                        _ = scan.tick() => { w.scan(); }
                        () = &mut stop => return Ok(()),
                    }
                }
            }
            Err(s) => eprintln!(
                "breakglass: cannot watch revocations: {}",
                CliError::from_status(s, &target.shown())
            ),
        }
        // The stream is down: check the signed KRL, then retry.
        if cas.is_none() {
            cas = krl_sync::ca_keys(target, args.ca_keys.as_deref())
                .await
                .ok();
        }
        if let Some(c) = &cas {
            match poll_krl(target, c, &mut w).await {
                Ok(n) if n > 0 => {
                    eprintln!("breakglass: {n} session(s) of revoked grants found through the KRL")
                }
                Ok(_) => {}
                Err(e) => eprintln!("breakglass: KRL poll failed: {e}"),
            }
        }
        let wait = backoff.min(args.poll);
        backoff = (backoff * 2).min(args.poll);
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        let mut scan = tokio::time::interval(SCAN_EVERY);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                _ = scan.tick() => { w.scan(); }
                () = &mut stop => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(session: &str, grant: &str, serial: u64) -> Registration {
        Registration {
            session: session.into(),
            grant: grant.into(),
            serial,
            key_id: format!("breakglass/{grant}/sre@example.com"),
            expires: unix_now() + 600,
            guard_pid: 1,
            guard: None,
        }
    }

    #[test]
    fn notices_mark_sessions_of_the_grant_only_and_later_sessions_too() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sessions");
        let mut w = Watcher::new(&d).unwrap();
        for r in [reg("s1", "g-1", 11), reg("s2", "g-2", 12)] {
            std::fs::write(r.path(&d), r.to_text()).unwrap();
        }
        let n = RevocationNotice {
            version: 7,
            grant_id: "g-1".into(),
            serial: 11,
            revoked_by: "user:admin@example.com".into(),
            reason: "INC-9".into(),
            valid_before: i64::try_from(unix_now() + 600).unwrap(),
            ..Default::default()
        };
        assert_eq!(w.apply_notice(&n), 1);
        assert_eq!(w.last, 7);
        let m = std::fs::read_to_string(sessions::marker_path(&d, "s1")).unwrap();
        let m = RevocationMarker::parse(&m).unwrap();
        assert_eq!(m.revoked_by, "user:admin@example.com");
        assert!(!sessions::marker_path(&d, "s2").exists());
        // Marked once only.
        assert_eq!(w.apply_notice(&n), 0);
        // A session of the revoked grant that registers later is marked on the next scan.
        let late = reg("s3", "g-1", 11);
        std::fs::write(late.path(&d), late.to_text()).unwrap();
        assert_eq!(w.scan(), 1);
        assert!(sessions::marker_path(&d, "s3").exists());
        // Heartbeats only move the cursor.
        let hb = RevocationNotice {
            heartbeat: true,
            ..Default::default()
        };
        assert_eq!(w.apply_notice(&hb), 0);
    }

    #[test]
    fn the_krl_fallback_marks_sessions_by_serial_of_our_ca() {
        use ssh_key::rand_core::OsRng;
        let ca = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let other = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(dir.path()).unwrap();
        for r in [reg("a", "g-1", 11), reg("b", "g-2", 12)] {
            std::fs::write(r.path(dir.path()), r.to_text()).unwrap();
        }
        let mut krl = Krl::new(3, 0);
        krl.revoke_serial(ca.public_key().key_data(), 12).unwrap();
        krl.revoke_serial(other.public_key().key_data(), 11)
            .unwrap();
        assert_eq!(w.apply_krl(&krl, &[ca.public_key().clone()]), 1);
        assert!(sessions::marker_path(dir.path(), "b").exists());
        assert!(!sessions::marker_path(dir.path(), "a").exists());
    }
}
