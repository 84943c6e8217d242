//! The KRL the daemon publishes: built from the revocation state (revoked grants that
//! have not expired yet, so the list stays small, and the public keys revoked for good
//! by `revoke --public-key`), versioned, signed with the CA key, and recorded in the
//! audit log (`KrlPublished`) whenever its content changes.
//!
//! A KRL is published only once its `KrlPublished` event is durable. When that cannot be
//! recorded (the audit log's disk is full), hosts are served the last published KRL
//! together with what it lacks and why ([`Served`]), and the revocation service retries
//! until a KRL listing every revocation is out ([`crate::revocation`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use breakglass_proto::audit::event::KrlPublished;
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp};
use breakglass_proto::krl::{Krl, SIGNATURE_NAMESPACE};
use ssh_key::sha2::{Digest, Sha256};
use ssh_key::{Fingerprint, HashAlg};

use crate::audit::LeafIndex;
use crate::certificate::CertificateAuthority;
use crate::error::Error;
use crate::service::Service;
use crate::state::{Grant, State};

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

impl Entry {
    /// How the KRL names the certificate of `grant`.
    fn of(grant: &Grant) -> Self {
        Self {
            ca_fingerprint: grant.issued.ca_fingerprint.clone(),
            serial: grant.issued.serial,
            key_id: grant.issued.key_id.clone(),
        }
    }
}

/// The revoked grants whose certificate is still valid at `now` (Unix seconds), by the
/// leaf index of their revocation. Expired certificates are refused by sshd anyway.
fn live_revocations(state: &State, now: u64) -> impl Iterator<Item = (LeafIndex, &Grant)> {
    state
        .revocations
        .iter()
        .filter_map(|(index, id)| state.grants.get(id).map(|g| (*index, g)))
        .filter(move |(_, g)| g.issued.valid_before > now)
}

/// What the KRL must revoke at `now` (Unix seconds): every revoked grant whose
/// certificate is still valid.
#[must_use]
pub fn entries(state: &State, now: u64) -> BTreeSet<Entry> {
    live_revocations(state, now)
        .map(|(_, g)| Entry::of(g))
        .collect()
}

/// True when a revocation was recorded after the last `KrlPublished` event (the daemon
/// stopped, or could not record the KRL, before publishing it).
#[must_use]
pub fn revocation_after_last_krl(state: &State) -> bool {
    let newest = state
        .revocations
        .keys()
        .chain(state.revoked_keys.values().map(|k| &k.index))
        .max();
    match (newest, state.krl_published_index) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(r), Some(k)) => *r > k,
    }
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

/// What hosts get when they fetch the KRL now.
#[derive(Debug)]
pub struct Served {
    /// The newest published KRL.
    pub krl: Arc<Published>,
    /// Revocations it does not list, when a newer KRL could not be published.
    pub behind: Option<Behind>,
}

/// Revocations recorded in the audit log that the served KRL does not list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// How many (revoked grants still valid, and revoked public keys).
    pub revocations: u64,
    /// Leaf index of the newest of them (a revocation stream sequence number).
    pub newest: LeafIndex,
    /// Why no newer KRL is published.
    pub reason: String,
}

/// The revocations in `state` that `krl` does not list at `now`: `None` when it lists
/// them all (an older KRL may list more: certificates that have expired since).
#[must_use]
pub fn unlisted(state: &State, krl: &Published, now: u64) -> Option<(u64, LeafIndex)> {
    let grants = live_revocations(state, now)
        .filter(|(_, g)| !krl.entries.contains(&Entry::of(g)))
        .map(|(index, _)| index);
    let keys = state
        .revoked_keys
        .iter()
        .filter(|(fp, _)| !krl.keys.contains(*fp))
        .map(|(_, k)| k.index);
    grants.chain(keys).fold(None, |acc, index| match acc {
        None => Some((1, index)),
        Some((n, newest)) => Some((n + 1, newest.max(index))),
    })
}

/// Keeps the latest published KRL and publishes a new version when the content changes.
#[derive(Debug, Default)]
pub struct Publisher {
    current: tokio::sync::Mutex<Option<Arc<Published>>>,
    /// Why the last attempt to publish failed; `None` since a KRL was published.
    failure: std::sync::Mutex<Option<String>>,
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
        let r = self.publish(svc, &mut cur).await;
        let failure = match &r {
            Ok(_) => None,
            // The writer's own message names the file and the OS error (disk full, ...).
            Err(Error::Unavailable(_)) => Some(svc.audit.write_error().map_or_else(
                || {
                    r.as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                },
                |w| format!("the audit log cannot be written ({w})"),
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Ok(mut f) = self.failure.lock() {
            *f = failure;
        }
        r
    }

    /// Why the last attempt to publish failed, while no KRL was published since.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// What hosts get now. Publishes a new KRL if the content changed, unless `attempt` is
    /// false and the last attempt failed (the retry loop owns retrying then, so fetches do
    /// not hammer a full disk); when none can be published, the last published KRL and
    /// what it lacks. An error only when no KRL was published since the daemon started.
    pub async fn serve(&self, svc: &Service, attempt: bool) -> Result<Served, Error> {
        if (attempt || self.failure().is_none())
            && let Ok(krl) = self.current(svc).await
        {
            return Ok(Served { krl, behind: None });
        }
        let reason = self
            .failure()
            .unwrap_or_else(|| "the last attempt to publish failed".into());
        let cached = self.current.lock().await.clone();
        let Some(krl) = cached else {
            return Err(Error::Unavailable(format!(
                "no KRL can be served: none was published since breakglass-ca started, and a \
                 new one cannot be published: {reason}. Hosts keep the KRL they have; \
                 breakglass-ca publishes one by itself as soon as it can record it"
            )));
        };
        let behind = unlisted(&svc.state(), &krl, unix_now()).map(|(revocations, newest)| Behind {
            revocations,
            newest,
            reason,
        });
        Ok(Served { krl, behind })
    }

    /// Builds, signs and records a new version if the content changed.
    async fn publish(
        &self,
        svc: &Service,
        cur: &mut Option<Arc<Published>>,
    ) -> Result<Arc<Published>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::RequestId;
    use breakglass_proto::audit::event::{GrantIssued, GrantRevoked};
    use breakglass_proto::profile::GrantId;

    const NOW: u64 = 1_800_000_000;

    fn issued(n: u64, valid_before: u64) -> Event {
        Event::new(
            Timestamp(1),
            Actor::Daemon,
            EventKind::GrantIssued(Box::new(GrantIssued {
                request_id: RequestId(n),
                grant_id: GrantId(n),
                serial: 100 + n,
                key_id: format!("g-{n}"),
                ca_fingerprint: "SHA256:ca".into(),
                key_fingerprint: format!("SHA256:key{n}"),
                principals: vec!["postgres".into()],
                hosts: vec!["db-7".into()],
                command: None,
                source_addresses: vec![],
                extensions: vec![],
                valid_after: 1,
                valid_before,
                requester: "sre@example.com".into(),
                approvers: vec![],
                rule: "r".into(),
                tier: "low".into(),
                emergency: false,
            })),
        )
    }

    fn revoked(n: u64, key: Option<&str>) -> Event {
        Event::new(
            Timestamp(2),
            Actor::Daemon,
            EventKind::GrantRevoked(GrantRevoked {
                grant_id: GrantId(n),
                serial: 100 + n,
                reason: "INC-1".into(),
                revoked_key: key.map(str::to_owned),
            }),
        )
    }

    fn krl_published(version: u64) -> Event {
        Event::new(
            Timestamp(3),
            Actor::Daemon,
            EventKind::KrlPublished(KrlPublished {
                sha256: [0; 32],
                version,
                revoked_serials: 0,
            }),
        )
    }

    /// The KRL as published from `state` at `NOW`.
    fn published(state: &State) -> Published {
        Published {
            version: state.krl_version,
            generated: NOW,
            bytes: Vec::new(),
            signature: String::new(),
            revoked_serials: 0,
            entries: entries(state, NOW),
            keys: revoked_keys(state),
        }
    }

    #[test]
    fn revocations_a_published_krl_lacks_are_counted_with_the_newest_one() {
        let mut st = State::default();
        let mut log = vec![
            issued(1, NOW + 600),
            issued(2, NOW + 600),
            issued(3, NOW - 1),
        ];
        log.push(revoked(1, None)); // index 3
        for (i, e) in log.iter().enumerate() {
            st.apply(i as u64, e);
        }
        assert!(revocation_after_last_krl(&st), "revocation 3, no KRL yet");
        st.apply(4, &krl_published(1));
        assert!(!revocation_after_last_krl(&st));
        let v1 = published(&st);
        assert_eq!(unlisted(&st, &v1, NOW), None);

        // Grant 2 revoked, then the key of grant 1 for good: two revocations v1 lacks.
        st.apply(5, &revoked(2, None));
        st.apply(6, &revoked(1, Some("SHA256:key1")));
        // An expired certificate needs no KRL entry: not counted.
        st.apply(7, &revoked(3, None));
        assert!(revocation_after_last_krl(&st));
        assert_eq!(unlisted(&st, &v1, NOW), Some((2, 6)));

        st.apply(8, &krl_published(2));
        assert!(!revocation_after_last_krl(&st));
        let v2 = published(&st);
        assert_eq!(unlisted(&st, &v2, NOW), None);
        // Once grant 2's certificate expires, the older v2 lists more than needed: current.
        assert_eq!(unlisted(&st, &v2, NOW + 601), None);
    }
}
