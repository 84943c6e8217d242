//! `breakglass host watch-revocations`: the host side of live revocation.
//!
//! Session guards register each breakglass session in a run directory
//! ([`breakglass_proto::sessions`]). This watcher follows the daemon's revocation
//! stream (`WatchRevocations`, resumed from the last sequence number after a
//! reconnect) and, for every session of a revoked grant, writes a revocation marker
//! that the session's guard picks up within a fraction of a second and ends the
//! session the same way as at expiry, with reason `revoked`.
//!
//! New logins are refused at once too: for each revoked grant the watcher writes a
//! grant marker (`<grant>.grant-revoked`) that the PAM module checks at session open,
//! and with `--krl` it installs the CA's new signed KRL for sshd's `RevokedKeys`
//! right away, with the same verification and atomic replace as `host sync-krl`
//! ([`krl_sync::install`]). The sync timer stays as the fallback.
//!
//! When the stream is down (daemon restarting, network trouble) the watcher polls the
//! signed KRL instead, verified against the CA keys, and marks sessions whose serial it
//! lists. When the daemon cannot be reached at all, sessions still end at expiry:
//! the guards never depend on the watcher for that. The watcher does replace guards that
//! died, so that their sessions still end at expiry ([`crate::host::guard_sweep`]).
//!
//! The guard is a small synchronous program that links no async runtime; keeping the
//! network side in this separate process is what lets it stay that way.
//!
//! At every (re)connect of the stream, and before every KRL install (also one found by a
//! poll while the stream is down), the watcher witnesses the CA's audit log
//! ([`crate::host::witness::check`]). When the log does not extend the checkpoint this host saw
//! last, the check records, logs and reports it; the watcher keeps ending sessions of
//! revoked grants (that only takes access away), and no KRL from that log is installed.
//!
//! The stream, the witness checks and the KRL fetches share one connection (HTTP/2 streams
//! on one TLS session): at ten thousand hosts a revocation would otherwise cost the daemon
//! twenty thousand TLS handshakes at once, which its handshake limits shed. After the stream
//! breaks, the KRL poll and the next stream go over a new connection.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connect::Channel;
use breakglass_proto::krl::Krl;
use breakglass_proto::profile::GrantId;
use breakglass_proto::sessions::{
    self, GRANT_MARKER_SUFFIX, MARKER_SUFFIX, Registration, RevocationMarker, RevokedGrant,
};
use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{GetRevocationListResponse, RevocationNotice, WatchRevocationsRequest};
use clap::Args;
use ssh_key::PublicKey;

use crate::connect;
use crate::error::CliError;
use crate::host::krl_sync::{self, Synced};
use crate::settings::Target;

/// A stream that carries nothing (not even a heartbeat) this long is considered dead.
const STREAM_SILENCE: Duration = Duration::from_secs(15);
/// How often the registry is rescanned for new sessions of revoked grants.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// How long a failed KRL install waits before the next attempt (news comes sooner).
const KRL_RETRY: Duration = Duration::from_secs(5);
/// Longest a KRL refresh (fetch, witness, install) may take. It runs on the stream's
/// connection and holds up the stream loop meanwhile: a connection that stopped answering
/// must not hide a silent stream for longer than the stream's own bound.
const REFRESH_WAIT: Duration = STREAM_SILENCE;

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
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::flags::parse_duration)]
    pub poll: Duration,
    /// Also keep sshd's KRL here (the file RevokedKeys names): the CA's new signed KRL is
    /// installed as soon as a revocation arrives, verified and replaced like `host
    /// sync-krl` does, so sshd refuses the revoked certificate at the next login
    #[arg(long, value_name = "FILE")]
    pub krl: Option<PathBuf>,
    /// State file holding the installed KRL version [default: <krl>.version, the same
    /// file `host sync-krl --out <krl>` keeps]
    #[arg(long, value_name = "FILE", requires = "krl")]
    pub krl_state: Option<PathBuf>,
    #[command(flatten)]
    pub witness: crate::host::witness::WitnessArgs,
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
                    esc(&reg.session),
                    esc(&marker.grant),
                    esc(&marker.revoked_by),
                    esc(&marker.reason)
                );
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                eprintln!(
                    "breakglass: cannot mark session {} as revoked: {e}",
                    esc(&reg.session)
                );
                false
            }
        }
    }

    /// Writes the grant marker the PAM module checks at session open (`<grant>.grant-revoked`),
    /// unless it is already there. A grant id that is not one is refused (it names a file).
    fn mark_grant(&self, marker: &RevocationMarker, expires: u64) -> bool {
        let Ok(grant) = marker.grant.parse::<GrantId>() else {
            eprintln!(
                "breakglass: ignoring a revocation of {:?}: not a grant id",
                marker.grant
            );
            return false;
        };
        let Some(path) = sessions::grant_marker_path(&self.dir, &grant.to_string()) else {
            return false;
        };
        if path.exists() {
            return false;
        }
        let tmp = self.dir.join(format!(".{grant}{GRANT_MARKER_SUFFIX}.tmp"));
        let text = RevokedGrant {
            marker: marker.clone(),
            expires,
        }
        .to_text();
        match std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            Ok(()) => true,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                eprintln!("breakglass: cannot mark grant {grant} as revoked for new sessions: {e}");
                false
            }
        }
    }

    /// Removes the grant markers of certificates that have expired (sshd refuses those
    /// anyway); returns how many.
    pub fn forget_expired_grants(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = unix_now();
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !name.ends_with(GRANT_MARKER_SUFFIX) {
                    return false;
                }
                let mut text = String::new();
                use std::io::Read;
                let read = std::fs::File::open(e.path())
                    .and_then(|f| f.take(sessions::MAX_FILE).read_to_string(&mut text));
                // Unreadable or torn: keep it (a present marker denies; only root writes here).
                read.is_ok()
                    && RevokedGrant::parse(&text).is_ok_and(|g| g.expires <= now)
                    && std::fs::remove_file(e.path()).is_ok()
            })
            .count()
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
        // New sessions first: the PAM module refuses the grant from now on.
        self.mark_grant(&marker, expires);
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
                if !cas
                    .iter()
                    .any(|ca| krl.revokes_serial(ca.key_data(), r.serial))
                {
                    return false;
                }
                let marker = RevocationMarker {
                    grant: r.grant.clone(),
                    revoked_by: "unknown (listed in the KRL)".into(),
                    reason: format!("serial {} is in KRL version {}", r.serial, krl.version),
                    version: 0,
                };
                self.mark_grant(&marker, r.expires);
                self.mark(r, &marker)
            })
            .count()
    }
}

/// The KRL the watcher keeps installed for sshd (`--krl`).
#[derive(Debug)]
struct KrlKeeper {
    out: PathBuf,
    state: PathBuf,
    /// Version installed (or confirmed) by this watcher.
    installed: Option<u64>,
    /// A revocation (or a heartbeat announcing a newer KRL) is not installed yet.
    due: bool,
    /// After a failed attempt, the next one waits until then (unless news arrives).
    retry_after: Option<std::time::Instant>,
    /// How this host witnesses the CA's audit log before each install.
    witness: crate::host::witness::WitnessArgs,
}

impl KrlKeeper {
    fn new(args: &WatchArgs) -> Option<Self> {
        let out = args.krl.clone()?;
        let state = krl_sync::state_path(&out, args.krl_state.as_deref());
        Some(Self {
            out,
            state,
            installed: None,
            // Install once at start: the host may have missed revocations while down.
            due: true,
            retry_after: None,
            witness: args.witness.clone(),
        })
    }

    /// Makes an install due now (news: a revocation, a newer version, a reconnect).
    fn want_now(&mut self) {
        self.due = true;
        self.retry_after = None;
    }

    fn failed(&mut self) {
        self.retry_after = Some(std::time::Instant::now() + KRL_RETRY);
    }

    /// Takes a notice: a revocation, or a heartbeat announcing a KRL version newer than
    /// the installed one, makes an install due.
    fn note(&mut self, n: &RevocationNotice) {
        if (!n.heartbeat && !n.grant_id.is_empty())
            || (n.heartbeat && n.krl_version > self.installed.unwrap_or(0))
        {
            self.want_now();
        }
    }

    /// Installs `fetched` (verified against `cas`, atomically; refused if older).
    async fn install(&mut self, fetched: &GetRevocationListResponse, cas: &[PublicKey]) {
        match krl_sync::install(fetched, cas, &self.out, &self.state).await {
            Ok(done) => {
                if matches!(done, Synced::Installed { .. }) {
                    eprintln!("breakglass: {}", done.summary(&self.out));
                }
                // A heartbeat announces the newer version once the CA can publish it.
                if let Some(why) = krl_sync::unpublished(fetched) {
                    eprintln!(
                        "breakglass: KRL version {} is not current: {why}",
                        fetched.version
                    );
                }
                self.installed = Some(match done {
                    Synced::Installed { version, .. } | Synced::UpToDate { version } => version,
                });
                self.due = false;
                self.retry_after = None;
            }
            Err(e) => {
                self.failed();
                eprintln!(
                    "breakglass: KRL not installed at {} (retrying in {KRL_RETRY:?}; the installed file is unchanged): {e}",
                    self.out.display()
                );
            }
        }
    }

    /// Fetches and installs the current KRL if an install is due (and, after a
    /// failure, its retry time has come), over `channel` (the stream's connection), within
    /// [`REFRESH_WAIT`].
    async fn refresh(&mut self, target: &Target, channel: &Channel, cas: &mut CaKeys) {
        if !self.due
            || self
                .retry_after
                .is_some_and(|t| std::time::Instant::now() < t)
        {
            return;
        }
        if tokio::time::timeout(REFRESH_WAIT, self.fetch_and_install(target, channel, cas))
            .await
            .is_err()
        {
            self.failed();
            eprintln!(
                "breakglass: no KRL from {} within {REFRESH_WAIT:?} (retrying in {KRL_RETRY:?}; the installed file is unchanged)",
                target.shown()
            );
        }
    }

    async fn fetch_and_install(&mut self, target: &Target, channel: &Channel, cas: &mut CaKeys) {
        let Some(keys) = cas.get(target, channel).await else {
            self.failed();
            return;
        };
        match krl_sync::fetch_on(target, channel).await {
            Ok(fetched) => {
                // Like sync-krl: no KRL from a log this host cannot witness (rolled back or
                // forked) is installed; the old one stays and the failure is on record.
                if let Err(e) = krl_sync::witness_before_install(
                    target,
                    channel,
                    &self.witness,
                    &fetched,
                    &self.out,
                )
                .await
                {
                    self.failed();
                    eprintln!("breakglass: {e}");
                    return;
                }
                self.install(&fetched, keys).await;
            }
            Err(e) => {
                self.failed();
                eprintln!("breakglass: cannot fetch the KRL (retrying in {KRL_RETRY:?}): {e}");
            }
        }
    }
}

/// The CA keys KRLs are verified with, loaded on first use (`--ca-keys`, else from
/// the daemon).
#[derive(Debug)]
struct CaKeys {
    file: Option<PathBuf>,
    keys: Option<Vec<PublicKey>>,
}

impl CaKeys {
    async fn get(&mut self, target: &Target, channel: &Channel) -> Option<&[PublicKey]> {
        if self.keys.is_none() {
            match krl_sync::ca_keys_on(target, channel, self.file.as_deref()).await {
                Ok(k) => self.keys = Some(k),
                Err(e) => eprintln!("breakglass: cannot load the CA keys to verify the KRL: {e}"),
            }
        }
        self.keys.as_deref()
    }
}

/// One KRL poll: fetch, verify, mark, and install it when keeping sshd's KRL (after
/// witnessing the log, as every install does).
async fn poll_krl(
    target: &Target,
    channel: &Channel,
    cas: &[PublicKey],
    w: &mut Watcher,
    keeper: Option<&mut KrlKeeper>,
) -> Result<usize, CliError> {
    let fetched = krl_sync::fetch_on(target, channel).await?;
    let krl = krl_sync::verify(&fetched, cas)?;
    if let Some(k) = keeper {
        // Like every install: no KRL from a log this host cannot witness (rolled back or
        // forked); the old one stays. Ending the KRL's sessions below only takes access away.
        match krl_sync::witness_before_install(target, channel, &k.witness, &fetched, &k.out).await
        {
            Ok(()) => k.install(&fetched, cas).await,
            Err(e) => {
                k.failed();
                eprintln!("breakglass: {e}");
            }
        }
    }
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
    let _guards = crate::host::guard_sweep::Sweeper::start(&args.sessions);
    tokio::pin!(stop);
    let mut cas = CaKeys {
        file: args.ca_keys.clone(),
        keys: None,
    };
    let mut keeper = KrlKeeper::new(args);
    let mut backoff = Duration::from_secs(1);
    // One connection carries the stream, the witness checks and the KRL fetches (HTTP/2
    // multiplexes them): a revocation costs the daemon no TLS handshake per host. It is
    // dialled at the first call, and replaced after the stream breaks.
    let mut channel = connect::channel(target)?;
    loop {
        let mut client = RevocationsClient::new(channel.clone());
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
                let witnessed = tokio::select! {
                    r = crate::host::witness::check(
                        target,
                        &channel,
                        &args.witness,
                        None,
                        "The watcher goes on ending sessions of revoked grants; no KRL from this \
                         log is installed.",
                    ) => r,
                    () = &mut stop => return Ok(()),
                };
                if let Err(e) = witnessed {
                    eprintln!("breakglass: {e}");
                }
                let mut stream = resp.into_inner();
                let mut scan = tokio::time::interval(SCAN_EVERY);
                if let Some(k) = keeper.as_mut() {
                    // Revocations made while the stream was down.
                    k.want_now();
                    k.refresh(target, &channel, &mut cas).await;
                }
                // A deadline, not a timeout per wait: the scan ticks every second and would
                // restart a timeout each time, so a silent stream would never be noticed.
                let mut silent_at = tokio::time::Instant::now() + STREAM_SILENCE;
                loop {
                    tokio::select! {
                        m = tokio::time::timeout_at(silent_at, stream.message()) => match m {
                            Ok(Ok(Some(n))) => {
                                silent_at = tokio::time::Instant::now() + STREAM_SILENCE;
                                w.apply_notice(&n);
                                if let Some(k) = keeper.as_mut() {
                                    k.note(&n);
                                    k.refresh(target, &channel, &mut cas).await;
                                }
                            }
                            Ok(Ok(None)) => {
                                eprintln!("breakglass: revocation stream ended; reconnecting");
                                break;
                            }
                            Ok(Err(s)) => {
                                eprintln!("breakglass: revocation stream failed: {}", connect::failure(target, s));
                                break;
                            }
                            Err(_) => {
                                eprintln!("breakglass: revocation stream silent for {STREAM_SILENCE:?}; reconnecting");
                                break;
                            }
                        },
                        _ = scan.tick() => {
                            w.scan();
                            w.forget_expired_grants();
                            if let Some(k) = keeper.as_mut() {
                                k.refresh(target, &channel, &mut cas).await;
                            }
                        }
                        () = &mut stop => return Ok(()),
                    }
                }
            }
            Err(s) => eprintln!(
                "breakglass: cannot watch revocations: {}",
                connect::failure(target, s)
            ),
        }
        // The stream is down, and its connection may be dead: the poll and the next stream
        // go over a new one. Check the signed KRL, then retry.
        channel = connect::channel(target)?;
        if let Some(c) = cas.get(target, &channel).await {
            match poll_krl(target, &channel, c, &mut w, keeper.as_mut()).await {
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
                _ = scan.tick() => {
                    w.scan();
                    w.forget_expired_grants();
                }
                () = &mut stop => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G1: &str = "g-0000000000000001";
    const G2: &str = "g-0000000000000002";

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
        for r in [reg("s1", G1, 11), reg("s2", G2, 12)] {
            std::fs::write(r.path(&d), r.to_text()).unwrap();
        }
        let n = RevocationNotice {
            version: 7,
            grant_id: G1.into(),
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
        let late = reg("s3", G1, 11);
        std::fs::write(late.path(&d), late.to_text()).unwrap();
        assert_eq!(w.scan(), 1);
        assert!(sessions::marker_path(&d, "s3").exists());
        // New sessions of the grant are refused by the PAM module: the grant marker.
        let sessions::GrantState::Revoked(Some(g)) = sessions::grant_state(&d, G1) else {
            panic!("no grant marker for {G1}")
        };
        assert_eq!(g.marker.reason, "INC-9");
        assert!(g.expires > unix_now());
        assert_eq!(
            sessions::grant_state(&d, G2),
            sessions::GrantState::NotMarked
        );
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
        for r in [reg("a", G1, 11), reg("b", G2, 12)] {
            std::fs::write(r.path(dir.path()), r.to_text()).unwrap();
        }
        let mut krl = Krl::new(3, 0);
        krl.revoke_serial(ca.public_key().key_data(), 12).unwrap();
        krl.revoke_serial(other.public_key().key_data(), 11)
            .unwrap();
        assert_eq!(w.apply_krl(&krl, &[ca.public_key().clone()]), 1);
        assert!(sessions::marker_path(dir.path(), "b").exists());
        assert!(!sessions::marker_path(dir.path(), "a").exists());
        assert!(matches!(
            sessions::grant_state(dir.path(), G2),
            sessions::GrantState::Revoked(Some(_))
        ));
        assert_eq!(
            sessions::grant_state(dir.path(), G1),
            sessions::GrantState::NotMarked
        );
    }

    #[test]
    fn grant_markers_go_when_their_certificates_expire_and_bad_grant_ids_write_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(dir.path()).unwrap();
        let notice = |grant: &str, valid_before: u64| RevocationNotice {
            version: 3,
            grant_id: grant.into(),
            revoked_by: "user:admin@example.com".into(),
            reason: "INC-10".into(),
            valid_before: i64::try_from(valid_before).unwrap(),
            ..Default::default()
        };
        w.apply_notice(&notice(G1, unix_now() + 600));
        w.apply_notice(&notice(G2, unix_now() - 1));
        w.apply_notice(&notice("../../etc/x", unix_now() + 600));
        w.apply_notice(&notice("g-1", unix_now() + 600));
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(),
            vec![
                format!("{G1}{GRANT_MARKER_SUFFIX}"),
                format!("{G2}{GRANT_MARKER_SUFFIX}")
            ]
        );
        // A torn marker stays: a present marker denies.
        std::fs::write(
            dir.path()
                .join(format!("g-00000000000000aa{GRANT_MARKER_SUFFIX}")),
            "x",
        )
        .unwrap();
        assert_eq!(w.forget_expired_grants(), 1);
        assert_eq!(
            names(),
            vec![
                format!("{G1}{GRANT_MARKER_SUFFIX}"),
                format!("g-00000000000000aa{GRANT_MARKER_SUFFIX}")
            ]
        );
    }

    #[test]
    fn revocations_and_newer_heartbeats_make_a_krl_install_due() {
        let args = WatchArgs {
            sessions: PathBuf::from("/run/x"),
            ca_keys: None,
            poll: Duration::from_secs(1),
            krl: Some(PathBuf::from("/etc/ssh/k.krl")),
            krl_state: None,
            witness: crate::host::witness::WitnessArgs::default(),
        };
        let mut k = KrlKeeper::new(&args).unwrap();
        assert_eq!(k.state, PathBuf::from("/etc/ssh/k.krl.version"));
        assert!(k.due, "installs once at start");
        k.due = false;
        k.installed = Some(5);
        // After a failure the next attempt waits, unless news arrives.
        k.failed();
        assert!(k.retry_after.is_some());
        let beat = |v: u64| RevocationNotice {
            heartbeat: true,
            krl_version: v,
            ..Default::default()
        };
        k.note(&beat(5));
        assert!(!k.due);
        assert!(k.retry_after.is_some());
        k.note(&beat(6));
        assert!(k.due);
        assert!(k.retry_after.is_none());
        k.due = false;
        k.note(&RevocationNotice {
            version: 9,
            grant_id: G1.into(),
            ..Default::default()
        });
        assert!(k.due);
        assert!(KrlKeeper::new(&WatchArgs { krl: None, ..args }).is_none());
    }
}
