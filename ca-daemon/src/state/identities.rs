//! Identities the log vouches for and the ones it has cut off: join tokens (created,
//! used), client certificates the daemon signed for enrolled hosts, disabled identities.
//! Part of [`super::State`]: derived from the log only, so several daemons reading one
//! log agree on them.

use std::collections::{BTreeMap, BTreeSet};

use breakglass_proto::audit::event::{
    ClientCertificateIssued, IdentityDisabled, JoinTokenCreated, SshKeyAdded, SshKeyRemoved,
};
use breakglass_proto::audit::{Actor, Timestamp};

/// A join token, by the hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// The host it enrolls.
    pub host: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// After this it is refused.
    pub expires_at: Timestamp,
    /// When it was used, and for which certificate serial.
    pub used: Option<(Timestamp, String)>,
}

/// An identity enrolled through the log (not listed in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolled {
    /// Its groups, from its latest certificate.
    pub groups: Vec<String>,
    /// Serial (hex) of its latest certificate.
    pub serial: String,
    /// When its latest certificate expires.
    pub not_after: Timestamp,
    /// When it was first enrolled.
    pub since: Timestamp,
}

/// A disabled identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disabled {
    /// Who disabled it.
    pub by: Actor,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

impl Disabled {
    /// The refusal a call of the disabled `identity` gets.
    #[must_use]
    pub fn refusal(&self, identity: &str) -> crate::error::EnrollmentError {
        crate::error::EnrollmentError::Disabled {
            identity: identity.to_owned(),
            by: self.by.to_string(),
            at: breakglass_proto::audit::fields::rfc3339(self.at.unix_seconds()),
            reason: self.reason.clone(),
        }
    }
}

/// What the log says about identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identities {
    /// Join tokens not expired yet (used ones too, so that a second use is told apart
    /// from a wrong token), by the SHA-256 of the token.
    pub tokens: BTreeMap<[u8; 32], JoinToken>,
    /// Identities the daemon signed client certificates for, by identity.
    pub enrolled: BTreeMap<String, Enrolled>,
    /// Disabled identities, by identity.
    pub disabled: BTreeMap<String, Disabled>,
    /// SSH public keys enrolled for the break-glass login (`identity add-key`), by
    /// identity: OpenSSH lines without comment.
    pub ssh_keys: BTreeMap<String, BTreeSet<String>>,
}

impl Identities {
    /// Applies `join_token_created`.
    pub fn token_created(&mut self, e: &JoinTokenCreated, at: Timestamp) {
        self.forget_expired_tokens(at);
        self.tokens.entry(e.token_sha256).or_insert(JoinToken {
            host: e.host.clone(),
            created_at: at,
            expires_at: e.expires_at,
            used: None,
        });
    }

    /// Applies `client_certificate_issued`: the token it names is used up, the identity
    /// enrolled (a renewal keeps when it was first enrolled).
    pub fn certificate_issued(&mut self, e: &ClientCertificateIssued, at: Timestamp) {
        self.forget_expired_tokens(at);
        if let Some(t) = e.join_token_sha256.and_then(|h| self.tokens.get_mut(&h)) {
            t.used.get_or_insert((at, e.serial.clone()));
        }
        let since = self.enrolled.get(&e.identity).map_or(at, |p| p.since);
        self.enrolled.insert(
            e.identity.clone(),
            Enrolled {
                groups: e.groups.clone(),
                serial: e.serial.clone(),
                not_after: e.not_after,
                since,
            },
        );
    }

    /// Applies `identity_disabled` (the first one counts).
    pub fn disabled(&mut self, e: &IdentityDisabled, by: &Actor, at: Timestamp) {
        self.disabled.entry(e.identity.clone()).or_insert(Disabled {
            by: by.clone(),
            reason: e.reason.clone(),
            at,
        });
    }

    /// Applies `ssh_key_added`.
    pub fn ssh_key_added(&mut self, e: &SshKeyAdded) {
        self.ssh_keys
            .entry(e.identity.clone())
            .or_default()
            .insert(e.public_key.clone());
    }

    /// Applies `ssh_key_removed`.
    pub fn ssh_key_removed(&mut self, e: &SshKeyRemoved) {
        if let Some(keys) = self.ssh_keys.get_mut(&e.identity) {
            keys.remove(&e.public_key);
            if keys.is_empty() {
                self.ssh_keys.remove(&e.identity);
            }
        }
    }

    /// The identity an enrolled key (an OpenSSH line without comment) logs in, if any.
    #[must_use]
    pub fn ssh_key_owner(&self, key: &str) -> Option<&str> {
        self.ssh_keys
            .iter()
            .find(|(_, keys)| keys.contains(key))
            .map(|(id, _)| id.as_str())
    }

    /// Drops tokens that expired before `now` (the log's time): they are refused
    /// whether known or not.
    fn forget_expired_tokens(&mut self, now: Timestamp) {
        self.tokens.retain(|_, t| t.expires_at >= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(identity: &str, token: Option<[u8; 32]>, serial: &str) -> ClientCertificateIssued {
        ClientCertificateIssued {
            identity: identity.into(),
            groups: vec!["hosts".into()],
            serial: serial.into(),
            public_key_sha256: [0; 32],
            not_after: Timestamp(9_000),
            method: if token.is_some() { "enroll" } else { "renew" }.into(),
            join_token_sha256: token,
        }
    }

    #[test]
    fn a_token_is_used_once_forgotten_after_expiry_and_renewal_keeps_the_enrollment_time() {
        let mut ids = Identities::default();
        let created = |host: &str, expires| JoinTokenCreated {
            token_sha256: [host.len() as u8; 32],
            host: host.into(),
            expires_at: Timestamp(expires),
        };
        ids.token_created(&created("db-7", 1_000), Timestamp(10));
        ids.token_created(&created("db-70", 5_000), Timestamp(20));
        ids.certificate_issued(&issued("host://db-7", Some([4; 32]), "01"), Timestamp(30));
        ids.certificate_issued(&issued("host://db-7", Some([4; 32]), "02"), Timestamp(40));
        // The first use counts.
        assert_eq!(
            ids.tokens[&[4; 32]].used,
            Some((Timestamp(30), "01".into()))
        );
        assert_eq!(ids.enrolled["host://db-7"].since, Timestamp(30));
        ids.certificate_issued(&issued("host://db-7", None, "03"), Timestamp(2_000));
        assert_eq!(ids.enrolled["host://db-7"].serial, "03");
        assert_eq!(ids.enrolled["host://db-7"].since, Timestamp(30));
        // At 2000 the first token (expired at 1000) is forgotten, the second is not.
        assert!(!ids.tokens.contains_key(&[4; 32]));
        assert!(ids.tokens.contains_key(&[5; 32]));
        let d = IdentityDisabled {
            identity: "host://db-7".into(),
            reason: "first".into(),
        };
        ids.disabled(&d, &Actor::LocalUid(0), Timestamp(50));
        let again = IdentityDisabled {
            reason: "second".into(),
            ..d
        };
        ids.disabled(&again, &Actor::Daemon, Timestamp(60));
        assert_eq!(ids.disabled["host://db-7"].reason, "first");
    }
}
