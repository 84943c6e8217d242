//! `breakglass host sync-krl`: fetches the CA's KRL, verifies the CA's SSHSIG
//! signature over it and that its version does not go backwards, and installs it for
//! sshd's `RevokedKeys` atomically. Anything wrong leaves the installed file as it
//! was and exits non-zero with the reason: sshd refuses every login when its KRL is
//! missing or garbage, so never an empty or partial file in place.
//!
//! The version last installed is kept in a state file beside the KRL (`<out>.version`):
//! a replayed older KRL (which could un-revoke a grant) is refused. [`install`] is also
//! what `breakglass host watch-revocations --krl` runs at each revocation; an exclusive
//! lock (`<state>.lock`) keeps it and the timer from interleaving their
//! check-then-replace. A successful sync
//! that finds nothing new still touches the KRL, so its modification time says when it
//! was last confirmed (the PAM module's `krl_max_age=` relies on that).
//!
//! When the CA has recorded revocations it could not publish in a KRL yet (its audit disk
//! is full), it serves the last published KRL and says so ([`unpublished`]): the sync
//! installs that KRL if it is newer, does not mark it as confirmed (the file is not
//! touched, so `krl_max_age=` keeps counting), says why no newer KRL is available, and
//! exits 69.
//!
//! Before installing, the host witnesses the CA's audit log ([`crate::host::witness::check`]):
//! a KRL from a daemon whose log does not extend the checkpoint this host saw last (rolled
//! back or forked) is refused.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::connect::Channel;
use breakglass_proto::krl::{Krl, SIGNATURE_NAMESPACE};
use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{GetRevocationListRequest, GetRevocationListResponse};
use clap::Args;
use ssh_key::{PublicKey, SshSig};

use crate::commands::{self, write_atomic};
use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// Largest CA keys file read.
const MAX_CA_KEYS: u64 = 1024 * 1024;
/// How long an install waits for another one (the timer's or the watcher's) to finish.
const INSTALL_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `breakglass host sync-krl`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "When the CA has recorded revocations it could not publish in a \
    KRL yet (it cannot write its audit log, e.g. the disk is full), it serves the last \
    published KRL and says so: sync-krl installs that KRL if it is newer, does not mark the \
    file as confirmed (the module's krl_max_age= keeps counting), says how many revocations \
    it lacks and why, and exits 69. The CA publishes a newer KRL by itself as soon as it can \
    record it; the next sync installs it."
)]
pub struct SyncKrlArgs {
    /// Where to install the KRL (the file sshd's RevokedKeys names)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// CA public keys to verify the signature with (e.g. sshd's TrustedUserCAKeys file)
    /// [default: fetched from the daemon over mTLS]
    #[arg(long, value_name = "FILE")]
    pub ca_keys: Option<PathBuf>,
    /// State file holding the installed version [default: <out>.version]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub witness: crate::host::witness::WitnessArgs,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// A new version was installed.
    Installed {
        /// Its version.
        version: u64,
        /// The version it replaced, if any.
        previous: Option<u64>,
        /// Revoked serials in it.
        serials: u64,
    },
    /// The installed version is current; the file was touched.
    UpToDate {
        /// Its version.
        version: u64,
    },
}

impl Synced {
    /// One line for the log.
    pub fn summary(&self, out: &Path) -> String {
        match self {
            Synced::Installed {
                version,
                previous,
                serials,
            } => format!(
                "installed KRL version {version} ({serials} revoked serials) at {}{}",
                out.display(),
                previous.map_or(String::new(), |p| format!(", replacing version {p}"))
            ),
            Synced::UpToDate { version } => {
                format!("KRL version {version} at {} is current", out.display())
            }
        }
    }
}

/// The state file of `out`.
pub fn state_path(out: &Path, state: Option<&Path>) -> PathBuf {
    state.map_or_else(
        || PathBuf::from(format!("{}.version", out.display())),
        Path::to_path_buf,
    )
}

/// Parses CA public keys, one OpenSSH line each (`TrustedUserCAKeys` format; `#`
/// comments and blank lines skipped).
pub fn parse_ca_keys(text: &str, origin: &str) -> Result<Vec<PublicKey>, CliError> {
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            PublicKey::from_openssh(l)
                .map_err(|e| CliError::Usage(format!("CA keys {origin}: {e}: {l:.40}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(CliError::Usage(format!("CA keys {origin}: no keys in it")));
    }
    Ok(keys)
}

/// Checks the signature (by one of `cas`, in our namespace, over exactly these bytes)
/// and that the KRL parses and carries the version the daemon announced.
pub fn verify(fetched: &GetRevocationListResponse, cas: &[PublicKey]) -> Result<Krl, CliError> {
    let bad = |m: String| CliError::Verification(format!("KRL refused: {m}"));
    let sig = SshSig::from_pem(fetched.signature.as_bytes())
        .map_err(|e| bad(format!("its signature is not an SSHSIG ({e})")))?;
    if sig.namespace() != SIGNATURE_NAMESPACE {
        return Err(bad(format!(
            "signature namespace is {:?}, expected {SIGNATURE_NAMESPACE:?}",
            sig.namespace()
        )));
    }
    let ca = cas
        .iter()
        .find(|k| k.key_data() == sig.public_key())
        .ok_or_else(|| {
            bad(format!(
                "signed by a key that is not one of the {} trusted CA keys",
                cas.len()
            ))
        })?;
    ca.verify(SIGNATURE_NAMESPACE, &fetched.krl, &sig)
        .map_err(|e| {
            bad(format!(
                "the CA signature does not match its {} bytes (tampered or truncated): {e}",
                fetched.krl.len()
            ))
        })?;
    let krl = Krl::parse(&fetched.krl).map_err(|e| bad(e.to_string()))?;
    if krl.version != fetched.version {
        return Err(bad(format!(
            "announced as version {} but its header says {}",
            fetched.version, krl.version
        )));
    }
    Ok(krl)
}

fn read_state(state: &Path) -> Result<Option<u64>, CliError> {
    match std::fs::read_to_string(state) {
        Ok(t) => t.trim().parse().map(Some).map_err(|_| {
            CliError::Io(format!(
                "state file {} does not hold a KRL version; remove it only if you mean to accept any version",
                state.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Io(format!("state file {}: {e}", state.display()))),
    }
}

/// Takes the install lock of `state` (`<state>.lock`), waiting a bounded time for
/// another install to finish.
async fn lock_install(state: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, CliError> {
    let path = PathBuf::from(format!("{}.lock", state.display()));
    let stuck = |why: String| {
        CliError::Io(format!(
            "KRL install lock {}: {why}; is another `breakglass host sync-krl` or watch-revocations stuck?",
            path.display()
        ))
    };
    match super::lock::exclusive(&path, INSTALL_LOCK_WAIT).await {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(stuck(format!(
            "still held after {}s",
            INSTALL_LOCK_WAIT.as_secs()
        ))),
        Err(e) => Err(stuck(e.to_string())),
    }
}

/// Verifies `fetched` and installs it at `out` (atomically, then the state file).
/// Refuses, leaving `out` untouched, a bad signature, a malformed or truncated KRL, or
/// a version older than the one installed. One install at a time per state file.
pub async fn install(
    fetched: &GetRevocationListResponse,
    cas: &[PublicKey],
    out: &Path,
    state: &Path,
) -> Result<Synced, CliError> {
    let krl = verify(fetched, cas)?;
    let _one_at_a_time = lock_install(state).await?;
    let previous = read_state(state)?;
    if let Some(p) = previous
        && krl.version < p
    {
        return Err(CliError::Verification(format!(
            "KRL refused: version {} is older than the installed version {p} (a replayed or rolled-back list could un-revoke grants); {} left as it was",
            krl.version,
            out.display()
        )));
    }
    if previous == Some(krl.version) && std::fs::read(out).is_ok_and(|b| b == fetched.krl) {
        // Confirmed current: record when, for krl_max_age. Not when the CA says this
        // KRL lacks revocations it could not publish yet.
        if fetched.unpublished_revocations == 0 {
            std::fs::File::options()
                .write(true)
                .open(out)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .map_err(|e| CliError::Io(format!("touching {}: {e}", out.display())))?;
        }
        return Ok(Synced::UpToDate {
            version: krl.version,
        });
    }
    write_atomic(out, &fetched.krl, 0o644)?;
    write_atomic(state, format!("{}\n", krl.version).as_bytes(), 0o644)?;
    Ok(Synced::Installed {
        version: krl.version,
        previous,
        serials: krl.serial_count(),
    })
}

/// The CA keys to verify with: from `file`, or fetched from the daemon.
pub async fn ca_keys(target: &Target, file: Option<&Path>) -> Result<Vec<PublicKey>, CliError> {
    match file {
        Some(p) => ca_keys_file(p),
        None => ca_keys_on(target, &connect::channel(target)?, None).await,
    }
}

/// [`ca_keys`] over a connection the caller already has.
pub async fn ca_keys_on(
    target: &Target,
    channel: &Channel,
    file: Option<&Path>,
) -> Result<Vec<PublicKey>, CliError> {
    match file {
        Some(p) => ca_keys_file(p),
        None => {
            let keys = commands::ca_public_keys_on(target, channel.clone()).await?;
            let lines: Vec<String> = keys.into_iter().map(|k| k.public_key).collect();
            parse_ca_keys(&lines.join("\n"), &target.shown())
        }
    }
}

fn ca_keys_file(p: &Path) -> Result<Vec<PublicKey>, CliError> {
    let mut text = String::new();
    use std::io::Read;
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_CA_KEYS).read_to_string(&mut text))
        .map_err(|e| CliError::Usage(format!("CA keys {}: {e}", p.display())))?;
    parse_ca_keys(&text, &p.display().to_string())
}

/// Why no newer KRL than `fetched` is available, when the CA says it has revocations it
/// could not publish yet; `None` when `fetched` is current.
pub fn unpublished(fetched: &GetRevocationListResponse) -> Option<String> {
    if fetched.unpublished_revocations == 0 {
        return None;
    }
    Some(format!(
        "the CA has {} revocation(s), up to version {}, that it could not publish in a KRL yet: {}. \
         KRL version {}, the newest it serves, does not list them: sshd on this host still accepts \
         those certificates (hosts running `breakglass host watch-revocations` refuse their \
         sessions already). The CA publishes a newer KRL by itself as soon as it can record it \
         (its operators: free space on the disk of its audit log); the next sync installs it.",
        fetched.unpublished_revocations,
        fetched.newest_unpublished,
        if fetched.unpublished_reason.is_empty() {
            "it did not say why".to_owned()
        } else {
            esc(&fetched.unpublished_reason).to_string()
        },
        fetched.version,
    ))
}

/// Fetches the signed KRL.
pub async fn fetch(target: &Target) -> Result<GetRevocationListResponse, CliError> {
    fetch_on(target, &connect::channel(target)?).await
}

/// [`fetch`] over a connection the caller already has (the watcher's stream's).
pub async fn fetch_on(
    target: &Target,
    channel: &Channel,
) -> Result<GetRevocationListResponse, CliError> {
    RevocationsClient::new(channel.clone())
        .get_revocation_list(GetRevocationListRequest {})
        .await
        .answer(target)
}

/// The check that comes before any KRL from the daemon is installed: the daemon's audit log
/// must extend the checkpoint this host saw last ([`crate::host::witness::check`]), asked
/// over `channel`, the connection the KRL came on.
pub async fn witness_before_install(
    target: &Target,
    channel: &Channel,
    witness: &crate::host::witness::WitnessArgs,
    fetched: &GetRevocationListResponse,
    out: &Path,
) -> Result<(), CliError> {
    crate::host::witness::check(
        target,
        channel,
        witness,
        Some(fetched.version),
        &format!(
            "The new KRL (version {}) was NOT installed: {} stays as it was.",
            fetched.version,
            out.display()
        ),
    )
    .await
    .map(drop)
}

/// `breakglass host sync-krl`.
pub async fn sync(target: &Target, args: &SyncKrlArgs) -> Result<Synced, CliError> {
    // One connection for the keys, the KRL and the witness check.
    let channel = connect::channel(target)?;
    let cas = ca_keys_on(target, &channel, args.ca_keys.as_deref()).await?;
    let fetched = fetch_on(target, &channel).await?;
    witness_before_install(target, &channel, &args.witness, &fetched, &args.out).await?;
    let done = install(
        &fetched,
        &cas,
        &args.out,
        &state_path(&args.out, args.state.as_deref()),
    )
    .await?;
    let Some(why) = unpublished(&fetched) else {
        return Ok(done);
    };
    let what = match done {
        Synced::UpToDate { version } => format!(
            "KRL version {version} at {} is the newest the CA serves",
            args.out.display()
        ),
        Synced::Installed { .. } => done.summary(&args.out),
    };
    Err(CliError::Unavailable(format!(
        "{what}, but it is not complete: {why} {} is not marked as confirmed meanwhile (krl_max_age= keeps counting).",
        args.out.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

    fn signed(ca: &PrivateKey, version: u64, serials: &[u64]) -> GetRevocationListResponse {
        let mut krl = Krl::new(version, 1_750_000_000);
        for s in serials {
            krl.revoke_serial(ca.public_key().key_data(), *s).unwrap();
        }
        let bytes = krl.to_bytes().unwrap();
        let sig = ca
            .sign(SIGNATURE_NAMESPACE, HashAlg::Sha512, &bytes)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        GetRevocationListResponse {
            krl: bytes,
            signature: sig,
            version,
            generated_at: 1_750_000_000,
            namespace: SIGNATURE_NAMESPACE.into(),
            revoked_serials: serials.len() as u64,
            ..GetRevocationListResponse::default()
        }
    }

    struct Host {
        _dir: tempfile::TempDir,
        out: PathBuf,
        state: PathBuf,
    }

    fn host() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("revoked.krl");
        let state = state_path(&out, None);
        Host {
            _dir: dir,
            out,
            state,
        }
    }

    fn snapshot(p: &Path) -> (Vec<u8>, SystemTime) {
        (
            std::fs::read(p).unwrap(),
            std::fs::metadata(p).unwrap().modified().unwrap(),
        )
    }

    #[tokio::test]
    async fn installs_newer_versions_and_refuses_bad_ones_leaving_the_file_untouched() {
        let ca = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let rogue = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let cas = vec![ca.public_key().clone()];
        let h = host();
        let v5 = signed(&ca, 5, &[11, 12]);
        assert_eq!(
            install(&v5, &cas, &h.out, &h.state).await.unwrap(),
            Synced::Installed {
                version: 5,
                previous: None,
                serials: 2
            }
        );
        assert_eq!(std::fs::read(&h.out).unwrap(), v5.krl);
        let before = snapshot(&h.out);

        let mut refused = Vec::new();
        // An older version, properly signed: a replay.
        refused.push(("older", signed(&ca, 3, &[11])));
        // Signed by a key the host does not trust.
        refused.push(("rogue", signed(&rogue, 9, &[])));
        // A body altered after signing.
        let mut tampered = signed(&ca, 9, &[11]);
        let n = tampered.krl.len();
        tampered.krl[n - 1] ^= 1;
        refused.push(("tampered", tampered));
        // A truncated body.
        let mut truncated = signed(&ca, 9, &[11, 12, 13]);
        truncated.krl.truncate(truncated.krl.len() - 5);
        refused.push(("truncated", truncated));
        // An empty body.
        let mut empty = signed(&ca, 9, &[]);
        empty.krl.clear();
        refused.push(("empty", empty));
        // No signature at all.
        let mut unsigned = signed(&ca, 9, &[]);
        unsigned.signature.clear();
        refused.push(("unsigned", unsigned));
        // A signature from another namespace (e.g. a file signature).
        let mut other_ns = signed(&ca, 9, &[]);
        other_ns.signature = ca
            .sign("file", HashAlg::Sha512, &other_ns.krl)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap();
        refused.push(("namespace", other_ns));
        // A version field that disagrees with the signed header.
        let mut lying = signed(&ca, 4, &[]);
        lying.version = 8;
        refused.push(("lying version", lying));
        for (what, f) in refused {
            let e = install(&f, &cas, &h.out, &h.state).await.unwrap_err();
            assert_eq!(e.exit_code(), 65, "{what}: {e}");
            assert!(e.to_string().contains("KRL refused"), "{what}: {e}");
            assert_eq!(snapshot(&h.out), before, "{what}: file changed");
            assert_eq!(std::fs::read_to_string(&h.state).unwrap(), "5\n");
        }
        // The same version again: confirmed, file content unchanged.
        assert_eq!(
            install(&v5, &cas, &h.out, &h.state).await.unwrap(),
            Synced::UpToDate { version: 5 }
        );
        assert_eq!(std::fs::read(&h.out).unwrap(), v5.krl);
        // A newer one replaces it.
        let v6 = signed(&ca, 6, &[11, 12, 13]);
        assert_eq!(
            install(&v6, &cas, &h.out, &h.state).await.unwrap(),
            Synced::Installed {
                version: 6,
                previous: Some(5),
                serials: 3
            }
        );
        assert_eq!(std::fs::read(&h.out).unwrap(), v6.krl);
    }

    #[tokio::test]
    async fn a_krl_the_ca_says_lacks_revocations_is_installed_but_not_confirmed() {
        let ca = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let cas = vec![ca.public_key().clone()];
        let h = host();
        let v5 = signed(&ca, 5, &[11]);
        assert_eq!(unpublished(&v5), None);
        install(&v5, &cas, &h.out, &h.state).await.unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        let f = std::fs::File::options().write(true).open(&h.out).unwrap();
        f.set_modified(old).unwrap();

        // The CA could not publish a newer KRL: it serves v5 and says what v5 lacks.
        let mut behind = v5.clone();
        behind.unpublished_revocations = 2;
        behind.newest_unpublished = 42;
        behind.unpublished_reason = "the audit log cannot be written (No space left)".into();
        let why = unpublished(&behind).unwrap();
        for want in [
            "the CA has 2 revocation(s), up to version 42, that it could not publish",
            "(No space left)",
            "KRL version 5, the newest it serves, does not list them",
            "sshd on this host still accepts those certificates",
        ] {
            assert!(why.contains(want), "missing {want:?} in {why}");
        }
        assert_eq!(
            install(&behind, &cas, &h.out, &h.state).await.unwrap(),
            Synced::UpToDate { version: 5 }
        );
        assert_eq!(
            snapshot(&h.out).1,
            old,
            "marked as confirmed although incomplete"
        );

        // A newer version is still installed (better than the old one), behind or not.
        let mut v6 = signed(&ca, 6, &[11, 12]);
        v6.unpublished_revocations = 1;
        v6.newest_unpublished = 43;
        assert!(matches!(
            install(&v6, &cas, &h.out, &h.state).await.unwrap(),
            Synced::Installed { version: 6, .. }
        ));
        assert_eq!(std::fs::read(&h.out).unwrap(), v6.krl);
        // The reason is shown escaped.
        v6.unpublished_reason = "disk\x1b[2Jfull".into();
        assert!(!unpublished(&v6).unwrap().contains('\x1b'));
    }

    #[test]
    fn ca_keys_files_parse_like_trusted_user_ca_keys() {
        let ca = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let text = format!(
            "# breakglass CA\n\n{}\n",
            ca.public_key().to_openssh().unwrap()
        );
        assert_eq!(parse_ca_keys(&text, "t").unwrap().len(), 1);
        assert!(parse_ca_keys("# nothing\n", "t").is_err());
        assert!(parse_ca_keys("ssh-ed25519 garbage\n", "t").is_err());
    }
}
