//! The KRL the daemon publishes: built from the revocation state (revoked grants that
//! have not expired yet, so the list stays small, and the public keys revoked for good
//! by `revoke --public-key`), versioned, signed with the CA key, and recorded in the
//! audit log (`KrlPublished`) whenever its content changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use breakglass_proto::audit::event::KrlPublished;
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp};
use breakglass_proto::krl::{Krl, SIGNATURE_NAMESPACE};
use ssh_key::sha2::{Digest, Sha256};
use ssh_key::{Fingerprint, HashAlg};

use crate::certificate::CertificateAuthority;
use crate::error::Error;
use crate::service::Service;
use crate::state::State;

/// One revoked certificate as the KRL names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// `SHA256:` fingerprint of the CA key that signed it.
    pub ca_fingerprint: String,
    /// Its serial.
    pub serial: u64,
    /// Its key id.
    pub key_id: String,
}

/// What the KRL must revoke at `now` (Unix seconds): every revoked grant whose
/// certificate is still valid. Expired certificates are refused by sshd anyway.
#[must_use]
pub fn entries(state: &State, now: u64) -> BTreeSet<Entry> {
    state
        .revocations
        .values()
        .filter_map(|id| state.grants.get(id))
        .filter(|g| g.issued.valid_before > now)
        .map(|g| Entry {
            ca_fingerprint: g.issued.ca_fingerprint.clone(),
            serial: g.issued.serial,
            key_id: g.issued.key_id.clone(),
        })
        .collect()
}

/// The public keys revoked for good (`SHA256:` fingerprints): they never drop out, as
/// any certificate for such a key (one issued later, or offline with the same CA key)
/// must be refused.
#[must_use]
pub fn revoked_keys(state: &State) -> BTreeSet<String> {
    state.revoked_keys.keys().cloned().collect()
}

/// Builds the KRL for `entries`: serials scoped to the CA key that signed them; by key
/// id where a serial cannot be used (serial 0) or the CA key is no longer published;
/// and `keys` by SHA256 fingerprint (which revokes every certificate of those keys).
pub fn build(
    entries: &BTreeSet<Entry>,
    keys: &BTreeSet<String>,
    ca: &CertificateAuthority,
    version: u64,
    generated: u64,
) -> Result<Krl, Error> {
    let mut krl = Krl::new(version, generated);
    krl.comment = format!("breakglass-ca KRL version {version}");
    let bad =
        |e: breakglass_proto::krl::KrlError| Error::Internal(format!("building the KRL: {e}"));
    for e in entries {
        let key = ca
            .published()
            .iter()
            .find(|k| k.key.fingerprint(HashAlg::Sha256).to_string() == e.ca_fingerprint);
        match key {
            Some(k) if e.serial != 0 => {
                krl.revoke_serial(k.key.key_data(), e.serial).map_err(bad)?
            }
            Some(k) => krl
                .revoke_key_id(Some(k.key.key_data()), &e.key_id)
                .map_err(bad)?,
            None => krl.revoke_key_id(None, &e.key_id).map_err(bad)?,
        }
    }
    for k in keys {
        let fp: Fingerprint = k
            .parse()
            .map_err(|e| Error::Internal(format!("revoked key {k:?} in the audit log: {e}")))?;
        krl.revoke_fingerprint(&fp).map_err(bad)?;
    }
    Ok(krl)
}

/// A published KRL version.
#[derive(Debug)]
pub struct Published {
    /// Its version.
    pub version: u64,
    /// When it was generated (Unix seconds).
    pub generated: u64,
    /// The KRL bytes.
    pub bytes: Vec<u8>,
    /// SSHSIG over `bytes` by the CA signing key (PEM).
    pub signature: String,
    /// Number of serials in it.
    pub revoked_serials: u64,
    entries: BTreeSet<Entry>,
    keys: BTreeSet<String>,
}

/// Keeps the latest published KRL and publishes a new version when the content changes.
#[derive(Debug, Default)]
pub struct Publisher {
    current: tokio::sync::Mutex<Option<Arc<Published>>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Publisher {
    /// The KRL for now: the cached one if nothing changed (no revocation, no revoked
    /// certificate expired), else a new version, recorded in the audit log first.
    pub async fn current(&self, svc: &Service) -> Result<Arc<Published>, Error> {
        let mut cur = self.current.lock().await;
        let now = unix_now();
        let (wanted, keys, logged_version) = {
            let st = svc.state();
            (entries(&st, now), revoked_keys(&st), st.krl_version)
        };
        if let Some(p) = cur.as_ref()
            && p.entries == wanted
            && p.keys == keys
        {
            return Ok(p.clone());
        }
        let version = logged_version.max(cur.as_ref().map_or(0, |p| p.version)) + 1;
        let krl = build(&wanted, &keys, &svc.ca, version, now)?;
        let bytes = krl
            .to_bytes()
            .map_err(|e| Error::Internal(format!("encoding the KRL: {e}")))?;
        let signature = svc.ca.sign_sshsig(SIGNATURE_NAMESPACE, &bytes)?;
        let revoked_serials = krl.serial_count();
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        svc.record(Event::new(
            Timestamp::from_system_time(UNIX_EPOCH + std::time::Duration::from_secs(now)),
            Actor::Daemon,
            EventKind::KrlPublished(KrlPublished {
                sha256,
                version,
                revoked_serials,
            }),
        ))
        .await?;
        tracing::info!(
            version,
            revoked_serials,
            entries = wanted.len(),
            revoked_keys = keys.len(),
            bytes = bytes.len(),
            "KRL published"
        );
        let p = Arc::new(Published {
            version,
            generated: now,
            bytes,
            signature,
            revoked_serials,
            entries: wanted,
            keys,
        });
        *cur = Some(p.clone());
        Ok(p)
    }
}
