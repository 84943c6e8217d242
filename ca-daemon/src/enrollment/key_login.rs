//! The break-glass login with an SSH key (`breakglass login --ssh-key`), the daemon's
//! side, and the keys enrolled for it (`breakglass-ca identity add-key` / `remove-key`).
//!
//! The login needs no OpenID provider: `BeginLogin` with method `ssh-key` gives a nonce;
//! the person signs the challenge naming this daemon (its TLS CA's fingerprint) and the
//! nonce with `ssh-keygen -Y sign` in the fixed namespace
//! ([`breakglass_proto::ssh_login`]); `Login` uses the nonce up first (a failed attempt
//! burns it too), then checks that the signature's key is enrolled (in `[[identities]]
//! ssh_keys`, or by `identity add-key` in the log), that it verifies in that namespace
//! over that challenge, and, for a FIDO2 key, that the key saw a touch. The client
//! certificate is the one an OpenID Connect login gets (the identity's groups, the same
//! lifetime rules), with the client CA's mark of an SSH-key login in its subject, which
//! each tier's `ssh_key_login` holds it to ([`crate::policy::SshKeyLogin`]).
//!
//! The signature itself is checked in [`crate::ssh_signature`] (no state: fuzzed on its own).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use breakglass_proto::audit::event::{ClientCertificateIssued, SshKeyAdded, SshKeyRemoved};
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp};
use breakglass_proto::enrollment::HOST_IDENTITY_PREFIX;
use breakglass_proto::ssh_login::{self, SSH_KEY_METHOD};
use breakglass_proto::text;
use breakglass_proto::v1::{LoginResponse, SshKeyResponse};
use ssh_key::{HashAlg, PublicKey};

use super::Enrollment;
use crate::client_ca::ClientCaError;
use crate::error::{EnrollmentError, Error};
use crate::policy::Caller;

impl Enrollment {
    /// Refuses when no identity has an enrolled SSH key (a login could not succeed).
    pub(super) fn require_ssh_key_logins(&self) -> Result<(), Error> {
        let any = !self.svc.state().identities.ssh_keys.is_empty()
            || self.svc.authenticator().any_configured_key();
        if any {
            Ok(())
        } else {
            Err(EnrollmentError::SshKeyLoginOff.into())
        }
    }

    /// The login with an SSH key: uses up `nonce`, verifies `armored` (an SSHSIG of the
    /// challenge for this daemon and nonce by an enrolled key) and signs a client
    /// certificate of the key's identity for the key of `csr_der`.
    pub(super) async fn ssh_key_login(
        &self,
        nonce: &str,
        armored: &str,
        csr_der: &[u8],
    ) -> Result<LoginResponse, Error> {
        self.require_ssh_key_logins()?;
        let ca = self.client_ca()?;
        let now = SystemTime::now();
        self.take_nonce(nonce, true, now)?;
        let refused = |why: String| -> Error {
            tracing::info!(reason = %why, "SSH-key login refused");
            EnrollmentError::SshKeyLoginRefused(why).into()
        };
        let (identity, fingerprint) = self
            .verify_login_signature(nonce, armored)
            .map_err(refused)?;
        self.refuse_disabled(&identity)?;
        let groups = self.svc.authenticator().groups_of(&identity).ok_or_else(|| {
            refused(format!(
                "{identity} is no longer in [[identities]] and has no login on record, so it has no groups"
            ))
        })?;
        let lifetime = self.login_lifetime(&groups);
        let signed = ca
            .sign_ssh_key_login(csr_der, &identity, lifetime, now)
            .map_err(|e| match e {
                ClientCaError::BadCsr(why) => Error::invalid_field("csr_der", why),
                other => EnrollmentError::Sign(other.to_string()).into(),
            })?;
        let not_after = Timestamp::from_system_time(signed.not_after);
        self.svc
            .record(Event::new(
                Timestamp::from_system_time(now),
                Actor::User(identity.clone()),
                EventKind::ClientCertificateIssued(ClientCertificateIssued {
                    identity: identity.clone(),
                    groups: groups.clone(),
                    serial: signed.serial.clone(),
                    public_key_sha256: signed.public_key_sha256,
                    not_after,
                    method: SSH_KEY_METHOD.to_owned(),
                    join_token_sha256: None,
                }),
            ))
            .await?;
        tracing::warn!(%identity, key = %fingerprint, ?groups, serial = %signed.serial, "logged in with an SSH key (the break-glass login)");
        Ok(LoginResponse {
            identity,
            groups,
            certificate_pem: signed.pem,
            not_after: crate::service::secs(not_after),
            tls_ca_pem: self.tls_ca_pem.clone(),
            method: SSH_KEY_METHOD.to_owned(),
        })
    }

    /// The identity whose enrolled key made `armored` over this daemon's challenge for
    /// `nonce`, and the key's fingerprint; or why not.
    fn verify_login_signature(
        &self,
        nonce: &str,
        armored: &str,
    ) -> Result<(String, String), String> {
        let key = crate::ssh_signature::verify_login(armored, &self.tls_ca_fingerprint, nonce)?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let line = ssh_login::key_text(&key)?;
        let identity = self
            .svc
            .authenticator()
            .configured_key_owner(key.key_data())
            .or_else(|| {
                self.svc
                    .state()
                    .identities
                    .ssh_key_owner(&line)
                    .map(str::to_owned)
            })
            .ok_or_else(|| {
                format!(
                    "the key {fingerprint} is not enrolled for any identity (an administrator \
                     enrolls it with `breakglass-ca identity add-key ID --key FILE.pub`)"
                )
            })?;
        Ok((identity, fingerprint))
    }

    /// The lifetime of a login's client certificate for `groups`: `[oidc] login_ttl` and
    /// `group_login_ttl` when set, else the default 12 hours.
    fn login_lifetime(&self, groups: &[String]) -> Duration {
        match &self.oidc {
            Some(v) => crate::oidc::claims::lifetime(
                &groups.iter().cloned().collect::<BTreeSet<_>>(),
                v.settings(),
            ),
            None => crate::config::DEFAULT_LOGIN_TTL,
        }
    }

    /// Enrolls the SSH public key `line` for `identity`'s break-glass login.
    pub async fn add_ssh_key(
        &self,
        who: &Caller,
        identity: &str,
        line: &str,
    ) -> Result<SshKeyResponse, Error> {
        let identity = check_person(identity)?;
        let key = ssh_login::parse_key(line).map_err(|e| Error::invalid_field("public_key", e))?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let text = ssh_login::key_text(&key).map_err(Error::Internal)?;
        self.refuse_disabled(identity)?;
        if self.svc.authenticator().groups_of(identity).is_none() {
            return Err(EnrollmentError::SshKey(format!(
                "{identity} is not in [[identities]] and has never logged in, so a login with the \
                 key would have no groups: list it under [[identities]] with its groups (its keys \
                 may go there too, as ssh_keys), or let it log in with `breakglass login` once"
            ))
            .into());
        }
        // One at a time, across daemons too (on PostgreSQL: under the decision lock, on a
        // state caught up with every daemon's entries).
        let _one_at_a_time = self.svc.transition().await?;
        let owner = self
            .svc
            .authenticator()
            .configured_key_owner(key.key_data())
            .or_else(|| {
                self.svc
                    .state()
                    .identities
                    .ssh_key_owner(&text)
                    .map(str::to_owned)
            });
        match owner {
            Some(o) if o == identity => {
                return Ok(SshKeyResponse {
                    audit_index: 0,
                    fingerprint,
                    changed: false,
                });
            }
            Some(o) => {
                return Err(EnrollmentError::SshKey(format!(
                    "the key {fingerprint} logs in {o} already: a key logs in one identity \
                     (remove it there first, or give {identity} a key of its own)"
                ))
                .into());
            }
            None => {}
        }
        let audit_index = self
            .svc
            .record(Event::new(
                Timestamp::from_system_time(SystemTime::now()),
                who.actor(),
                EventKind::SshKeyAdded(SshKeyAdded {
                    identity: identity.to_owned(),
                    public_key: text,
                }),
            ))
            .await?;
        tracing::warn!(identity, key = %fingerprint, added_by = %who.actor(), "SSH key enrolled for the break-glass login");
        Ok(SshKeyResponse {
            audit_index,
            fingerprint,
            changed: true,
        })
    }

    /// Removes the enrolled SSH public key `line` of `identity`.
    pub async fn remove_ssh_key(
        &self,
        who: &Caller,
        identity: &str,
        line: &str,
    ) -> Result<SshKeyResponse, Error> {
        let identity = check_person(identity)?;
        // Any key that parses: one enrolled before the rules tightened must go too.
        let key = PublicKey::from_openssh(line.trim()).map_err(|e| {
            Error::invalid_field("public_key", format!("not an OpenSSH public key line: {e}"))
        })?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let text = ssh_login::key_text(&key).map_err(Error::Internal)?;
        // One at a time, across daemons too (on PostgreSQL: under the decision lock, on a
        // state caught up with every daemon's entries).
        let _one_at_a_time = self.svc.transition().await?;
        let enrolled = self
            .svc
            .state()
            .identities
            .ssh_keys
            .get(identity)
            .is_some_and(|keys| keys.contains(&text));
        if !enrolled {
            if self
                .svc
                .authenticator()
                .configured_key_owner(key.key_data())
                .as_deref()
                == Some(identity)
            {
                return Err(EnrollmentError::SshKey(format!(
                    "the key {fingerprint} of {identity} is listed in the configuration \
                     ([[identities]] ssh_keys): remove it there and reload (SIGHUP)"
                ))
                .into());
            }
            return Ok(SshKeyResponse {
                audit_index: 0,
                fingerprint,
                changed: false,
            });
        }
        let audit_index = self
            .svc
            .record(Event::new(
                Timestamp::from_system_time(SystemTime::now()),
                who.actor(),
                EventKind::SshKeyRemoved(SshKeyRemoved {
                    identity: identity.to_owned(),
                    public_key: text,
                }),
            ))
            .await?;
        tracing::warn!(identity, key = %fingerprint, removed_by = %who.actor(), "SSH key removed");
        Ok(SshKeyResponse {
            audit_index,
            fingerprint,
            changed: true,
        })
    }
}

/// A person's identity an SSH key may be enrolled for: not a host, not an admin-socket
/// user.
fn check_person(identity: &str) -> Result<&str, Error> {
    let identity = identity.trim();
    text::check_identity(identity).map_err(|e| Error::invalid_field("identity", e))?;
    if crate::identity::is_admin_socket_identity(identity)
        || identity.starts_with(HOST_IDENTITY_PREFIX)
    {
        return Err(Error::invalid_field(
            "identity",
            format!(
                "{identity} is not a person's identity: SSH keys log people in (hosts enroll with a \
                 join token; admin-socket users need no login)"
            ),
        ));
    }
    Ok(identity)
}
