//! Identities the daemon vouches for itself: one-time join tokens, host enrollment and
//! renewal, and disabling an identity. Every change is an audit event (recorded through
//! [`Service::record`], so several daemons reading one log agree), and the state keeps
//! what decisions need ([`crate::state::identities`]).
//!
//! - `token create`: N tokens for a host; the log keeps only their SHA-256
//!   (`join_token_created`), the administrator sees the tokens once.
//! - `EnrollHost`: a token and a CSR (the host's key never leaves it) → a `host://NAME`
//!   client certificate from the client CA ([`crate::client_ca`]). The token is used up by
//!   the `client_certificate_issued` event; token checks and that event are serialised, so
//!   a token enrolls once however many hosts race with it.
//! - `RenewHost`: an enrolled host, with its current certificate, gets a new one.
//! - `DisableIdentity`: `identity_disabled`, after which [`crate::identity`] refuses every
//!   call of the identity; then its live grants are revoked through the one revocation
//!   path ([`crate::revocation::Revocations::revoke`]), which ends their sessions.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use breakglass_proto::audit::event::{ClientCertificateIssued, IdentityDisabled, JoinTokenCreated};
use breakglass_proto::audit::fields::rfc3339;
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp};
use breakglass_proto::enrollment::{
    HOST_IDENTITY_PREFIX, JOIN_TOKEN_BYTES, ca_fingerprint, join_token, join_token_hash,
};
use breakglass_proto::text;
use breakglass_proto::v1::revoke_request::Target;
use breakglass_proto::v1::{
    BeginLoginResponse, CreateJoinTokensResponse, DisableIdentityResponse, GetTlsCaResponse,
    HostCertificateResponse, LoginResponse, RevokeRequest,
};

use crate::client_ca::{ClientCa, ClientCaError};
use crate::config::{Config, EnrollmentSettings};
use crate::error::{EnrollmentError, Error};
use crate::hosts::HOST_GROUP;
use crate::keyfile::{self, Secrecy};
use crate::policy::Caller;
use crate::revocation::Revocations;
use crate::service::Service;
use breakglass_proto::ssh_login::{BEGIN_SSH_KEY, SSH_LOGIN_NAMESPACE};

mod key_login;

/// Most tokens one `token create` makes.
pub const MAX_TOKENS_PER_CALL: u32 = 100;

/// Why enrollment could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentSetupError {
    /// The client CA could not be loaded.
    #[error("[server] client_ca_key: {0}")]
    ClientCa(#[from] ClientCaError),
    /// The TLS CA file is unusable.
    #[error("[enrollment] tls_ca {path}: {reason}")]
    TlsCa {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Join tokens, enrollment, renewal and disabling, over the service's log and state.
#[derive(Debug)]
pub struct Enrollment {
    svc: Arc<Service>,
    revocations: Arc<Revocations>,
    client_ca: Option<ClientCa>,
    tls_ca_pem: String,
    tls_ca_fingerprint: String,
    settings: EnrollmentSettings,
    /// ID tokens of the organisation's provider (`[oidc]`), when logins are on.
    oidc: Option<crate::oidc::Verifier>,
    /// Login nonces given and not used yet, with when each expires and whether it is for
    /// a login with an SSH key.
    nonces: std::sync::Mutex<std::collections::HashMap<String, (SystemTime, bool)>>,
}

/// How long a login's nonce is good by default (the person has this long to finish the
/// provider's device or browser flow); `[enrollment] login_nonce_ttl`.
pub const LOGIN_NONCE_TTL: Duration = crate::config::DEFAULT_LOGIN_NONCE_TTL;
/// Most logins begun and not finished at once (each holds only its nonce).
const MAX_PENDING_LOGINS: usize = 10_000;

/// The CA certificate(s) of the daemon's TLS certificate (PEM text) and the fingerprint
/// of the first.
pub fn load_tls_ca(path: &Path) -> Result<(String, String), EnrollmentSetupError> {
    let bad = |reason: String| EnrollmentSetupError::TlsCa {
        path: path.display().to_string(),
        reason,
    };
    let bytes =
        keyfile::read_checked(path, 1 << 20, Secrecy::Public).map_err(|e| bad(e.to_string()))?;
    let first = rustls_pemfile::certs(&mut bytes.as_slice())
        .next()
        .ok_or_else(|| bad("holds no CERTIFICATE block".into()))?
        .map_err(|e| bad(format!("is not PEM: {e}")))?;
    let pem = String::from_utf8(bytes).map_err(|_| bad("is not UTF-8 PEM".into()))?;
    Ok((pem, ca_fingerprint(first.as_ref())))
}

impl Enrollment {
    /// Sets enrollment up from `config`: the client CA (when `[server] client_ca_key` is
    /// set) and the TLS CA hosts pin.
    pub fn new(
        svc: Arc<Service>,
        revocations: Arc<Revocations>,
        config: &Config,
    ) -> Result<Arc<Self>, EnrollmentSetupError> {
        let client_ca = config
            .server
            .client_ca_key
            .as_deref()
            .map(|key| ClientCa::load(&config.server.client_ca, key))
            .transpose()?;
        let tls_ca = config
            .enrollment
            .tls_ca
            .as_deref()
            .unwrap_or(&config.server.client_ca);
        let (tls_ca_pem, tls_ca_fingerprint) = load_tls_ca(tls_ca)?;
        Ok(Arc::new(Self {
            svc,
            revocations,
            client_ca,
            tls_ca_pem,
            tls_ca_fingerprint,
            settings: config.enrollment.clone(),
            oidc: config.oidc.clone().map(crate::oidc::Verifier::new),
            nonces: std::sync::Mutex::default(),
        }))
    }

    /// What a host fetches on first contact.
    pub fn tls_ca(&self) -> GetTlsCaResponse {
        GetTlsCaResponse {
            ca_pem: self.tls_ca_pem.clone(),
            fingerprint: self.tls_ca_fingerprint.clone(),
        }
    }

    fn client_ca(&self) -> Result<&ClientCa, Error> {
        self.client_ca
            .as_ref()
            .ok_or_else(|| EnrollmentError::Off.into())
    }

    /// Creates `count` one-time join tokens for `host`, valid for `ttl` (or the default).
    pub async fn create_tokens(
        &self,
        who: &Caller,
        host: &str,
        ttl: Option<Duration>,
        count: u32,
    ) -> Result<CreateJoinTokensResponse, Error> {
        self.client_ca()?;
        let host = host.trim();
        check_host_name(host)?;
        let identity = format!("{HOST_IDENTITY_PREFIX}{host}");
        self.refuse_disabled(&identity)?;
        let ttl = ttl.unwrap_or(self.settings.token_ttl);
        if ttl.is_zero() || ttl > self.settings.max_token_ttl {
            return Err(Error::invalid_field(
                "ttl_seconds",
                format!(
                    "{} is outside 1s to {} ([enrollment] max_token_ttl)",
                    crate::fmt_duration(ttl),
                    crate::fmt_duration(self.settings.max_token_ttl)
                ),
            ));
        }
        let count = count.max(1);
        if count > MAX_TOKENS_PER_CALL {
            return Err(Error::invalid_field(
                "count",
                format!("{count} is more than {MAX_TOKENS_PER_CALL} tokens in one call"),
            ));
        }
        let now = SystemTime::now();
        let at = Timestamp::from_system_time(now);
        let expires_at = Timestamp::from_system_time(now + ttl);
        let mut tokens = Vec::new();
        let mut events = Vec::new();
        for _ in 0..count {
            let token = join_token(&random_bytes());
            let token_sha256 = join_token_hash(&token)
                .map_err(|e| Error::Internal(format!("a fresh join token does not parse: {e}")))?;
            events.push(Event::new(
                at,
                who.actor(),
                EventKind::JoinTokenCreated(JoinTokenCreated {
                    token_sha256,
                    host: host.to_owned(),
                    expires_at,
                }),
            ));
            tokens.push(token);
        }
        self.svc.record_all(&events).await?;
        tracing::info!(host, count, created_by = %who.actor(), expires_at = %rfc3339(expires_at.unix_seconds()), "join tokens created");
        Ok(CreateJoinTokensResponse {
            tokens,
            expires_at: crate::service::secs(expires_at),
            ca_fingerprint: self.tls_ca_fingerprint.clone(),
            identity,
        })
    }

    /// Enrolls a host: uses up `token` and signs a certificate for the key of `csr_der`.
    pub async fn enroll(
        &self,
        token: &str,
        csr_der: &[u8],
    ) -> Result<HostCertificateResponse, Error> {
        let ca = self.client_ca()?;
        let hash = join_token_hash(token.trim()).map_err(|e| Error::invalid_field("token", e))?;
        // One at a time, across daemons too (on PostgreSQL: under the decision lock, on a
        // state caught up with every daemon's entries).
        let _one_at_a_time = self.svc.transition().await?;
        let now = SystemTime::now();
        let at = Timestamp::from_system_time(now);
        let host = {
            let st = self.svc.state();
            let t = st
                .identities
                .tokens
                .get(&hash)
                .ok_or(EnrollmentError::UnknownToken)?;
            if let Some((used_at, serial)) = &t.used {
                return Err(EnrollmentError::TokenUsed {
                    host: t.host.clone(),
                    used_at: rfc3339(used_at.unix_seconds()),
                    serial: serial.clone(),
                }
                .into());
            }
            if t.expires_at < at {
                return Err(EnrollmentError::TokenExpired {
                    host: t.host.clone(),
                    expired_at: rfc3339(t.expires_at.unix_seconds()),
                }
                .into());
            }
            t.host.clone()
        };
        let identity = format!("{HOST_IDENTITY_PREFIX}{host}");
        self.refuse_disabled(&identity)?;
        let signed = self.sign(ca, csr_der, &identity, now)?;
        self.record_issued(&identity, &signed, "enroll", Some(hash), at)
            .await?;
        tracing::info!(%identity, serial = %signed.serial, "host enrolled with a join token");
        self.answer(identity, signed)
    }

    /// Renews the certificate of the enrolled host `who` for the key of `csr_der`.
    pub async fn renew(
        &self,
        who: &Caller,
        csr_der: &[u8],
    ) -> Result<HostCertificateResponse, Error> {
        let ca = self.client_ca()?;
        crate::hosts::host_name(who)?;
        if !self
            .svc
            .state()
            .identities
            .enrolled
            .contains_key(&who.identity)
        {
            return Err(EnrollmentError::NotEnrolled {
                identity: who.identity.clone(),
            }
            .into());
        }
        let now = SystemTime::now();
        let signed = self.sign(ca, csr_der, &who.identity, now)?;
        self.record_issued(
            &who.identity,
            &signed,
            "renew",
            None,
            Timestamp::from_system_time(now),
        )
        .await?;
        tracing::info!(identity = %who.identity, serial = %signed.serial, "host certificate renewed");
        self.answer(who.identity.clone(), signed)
    }

    fn sign(
        &self,
        ca: &ClientCa,
        csr_der: &[u8],
        identity: &str,
        now: SystemTime,
    ) -> Result<crate::client_ca::Signed, Error> {
        ca.sign(csr_der, identity, self.settings.host_certificate_ttl, now)
            .map_err(|e| match e {
                ClientCaError::BadCsr(why) => Error::invalid_field("csr_der", why),
                other => EnrollmentError::Sign(other.to_string()).into(),
            })
    }

    async fn record_issued(
        &self,
        identity: &str,
        signed: &crate::client_ca::Signed,
        method: &str,
        token: Option<[u8; 32]>,
        at: Timestamp,
    ) -> Result<u64, Error> {
        self.svc
            .record(Event::new(
                at,
                Actor::Host(identity.to_owned()),
                EventKind::ClientCertificateIssued(ClientCertificateIssued {
                    identity: identity.to_owned(),
                    groups: vec![HOST_GROUP.to_owned()],
                    serial: signed.serial.clone(),
                    public_key_sha256: signed.public_key_sha256,
                    not_after: Timestamp::from_system_time(signed.not_after),
                    method: method.to_owned(),
                    join_token_sha256: token,
                }),
            ))
            .await
    }

    fn answer(
        &self,
        identity: String,
        signed: crate::client_ca::Signed,
    ) -> Result<HostCertificateResponse, Error> {
        let ssh_ca_keys = self
            .svc
            .ca
            .published()
            .iter()
            .map(|k| {
                k.key
                    .to_openssh()
                    .map_err(|e| Error::Internal(format!("encoding CA key: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostCertificateResponse {
            identity,
            certificate_pem: signed.pem,
            not_after: crate::service::secs(Timestamp::from_system_time(signed.not_after)),
            serial: signed.serial,
            ssh_ca_keys,
            audit_public_key: format!("{}\n", self.svc.audit.verifier()),
            tls_ca_pem: self.tls_ca_pem.clone(),
        })
    }

    /// Starts a login: a new nonce, and the provider to get an ID token from (`method`
    /// empty), or the namespace to sign it in (`method` [`BEGIN_SSH_KEY`]).
    pub fn begin_login(&self, method: &str) -> Result<BeginLoginResponse, Error> {
        let ssh_key = match method {
            "" => false,
            BEGIN_SSH_KEY => true,
            other => {
                return Err(Error::invalid_field(
                    "method",
                    format!(
                        "{other:?} is not a login method: \"\" (OpenID Connect) or \"{BEGIN_SSH_KEY}\""
                    ),
                ));
            }
        };
        let settings = if ssh_key {
            self.require_ssh_key_logins()?;
            None
        } else {
            Some(
                self.oidc
                    .as_ref()
                    .map(crate::oidc::Verifier::settings)
                    .ok_or(EnrollmentError::LoginOff)?,
            )
        };
        self.client_ca()?;
        let ttl = self.settings.login_nonce_ttl;
        let now = SystemTime::now();
        let nonce = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
        };
        {
            let mut nonces = self
                .nonces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            nonces.retain(|_, (until, _)| *until > now);
            if nonces.len() >= MAX_PENDING_LOGINS {
                return Err(EnrollmentError::LoginsBusy.into());
            }
            nonces.insert(nonce.clone(), (now + ttl, ssh_key));
        }
        Ok(BeginLoginResponse {
            nonce,
            expires_at: crate::service::secs(Timestamp::from_system_time(now + ttl)),
            issuer: settings.map(|s| s.issuer.clone()).unwrap_or_default(),
            client_id: settings.map(|s| s.client_id.clone()).unwrap_or_default(),
            ssh_namespace: if ssh_key {
                SSH_LOGIN_NAMESPACE.to_owned()
            } else {
                String::new()
            },
        })
    }

    /// Uses up `nonce`: it must be one this daemon gave for this method, not expired.
    fn take_nonce(&self, nonce: &str, ssh_key: bool, now: SystemTime) -> Result<(), Error> {
        let known = self
            .nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(nonce)
            .is_some_and(|(until, method)| until > now && method == ssh_key);
        if known {
            Ok(())
        } else {
            Err(EnrollmentError::UnknownNonce.into())
        }
    }

    /// Finishes a login: uses up `nonce`, verifies `id_token` (which must carry it) and
    /// signs a client certificate of the identity it proves for the key of `csr_der`.
    /// With `ssh_signature` instead of a token, the login with an SSH key
    /// ([`Enrollment::ssh_key_login`]).
    pub async fn login(
        &self,
        nonce: &str,
        id_token: &str,
        csr_der: &[u8],
        ssh_signature: &str,
    ) -> Result<LoginResponse, Error> {
        if !ssh_signature.is_empty() {
            return self.ssh_key_login(nonce, ssh_signature, csr_der).await;
        }
        let verifier = self.oidc.as_ref().ok_or(EnrollmentError::LoginOff)?;
        let ca = self.client_ca()?;
        let now = SystemTime::now();
        self.take_nonce(nonce, false, now)?;
        let who = verifier.verify(id_token, nonce).await.map_err(|e| {
            tracing::info!(reason = %e, "login refused");
            EnrollmentError::LoginRefused(e.to_string())
        })?;
        self.refuse_disabled(&who.id)?;
        let signed = ca
            .sign(csr_der, &who.id, who.lifetime, now)
            .map_err(|e| match e {
                ClientCaError::BadCsr(why) => Error::invalid_field("csr_der", why),
                other => EnrollmentError::Sign(other.to_string()).into(),
            })?;
        let not_after = Timestamp::from_system_time(signed.not_after);
        self.svc
            .record(Event::new(
                Timestamp::from_system_time(now),
                Actor::User(who.id.clone()),
                EventKind::ClientCertificateIssued(ClientCertificateIssued {
                    identity: who.id.clone(),
                    groups: who.groups.clone(),
                    serial: signed.serial.clone(),
                    public_key_sha256: signed.public_key_sha256,
                    not_after,
                    method: "login".to_owned(),
                    join_token_sha256: None,
                }),
            ))
            .await?;
        tracing::info!(identity = %who.id, groups = ?who.groups, serial = %signed.serial, "logged in with OpenID Connect");
        Ok(LoginResponse {
            identity: who.id,
            groups: who.groups,
            certificate_pem: signed.pem,
            not_after: crate::service::secs(not_after),
            tls_ca_pem: self.tls_ca_pem.clone(),
            method: "login".to_owned(),
        })
    }

    /// Refuses a disabled identity.
    fn refuse_disabled(&self, identity: &str) -> Result<(), Error> {
        match self.svc.state().identities.disabled.get(identity) {
            Some(d) => Err(d.refusal(identity).into()),
            None => Ok(()),
        }
    }

    /// Disables `identity` (recorded first: from then on its calls are refused), then
    /// revokes its live grants.
    pub async fn disable(
        &self,
        who: &Caller,
        identity: &str,
        reason: &str,
    ) -> Result<DisableIdentityResponse, Error> {
        let identity = identity.trim();
        text::check_identity(identity).map_err(|e| Error::invalid_field("identity", e))?;
        if crate::identity::is_admin_socket_identity(identity) {
            return Err(Error::invalid_field(
                "identity",
                format!(
                    "{identity} is a local user of the admin socket, not a certificate identity: \
                     take it out of [[admin_users]] (or the socket's permissions) instead"
                ),
            ));
        }
        let reason = crate::service::check_note(
            "reason",
            reason,
            Some("say why the identity is disabled (e.g. left the company, host decommissioned)"),
        )?;
        let already = self.svc.state().identities.disabled.contains_key(identity);
        let audit_index = if already {
            0
        } else {
            let i = self
                .svc
                .record(Event::new(
                    Timestamp::from_system_time(SystemTime::now()),
                    who.actor(),
                    EventKind::IdentityDisabled(IdentityDisabled {
                        identity: identity.to_owned(),
                        reason: reason.clone(),
                    }),
                ))
                .await?;
            tracing::warn!(identity, disabled_by = %who.actor(), reason = %reason, "identity disabled");
            i
        };
        // Its live grants, through the one revocation path (KRL, stream, sessions ended).
        let revoked = match self
            .revocations
            .revoke(
                who,
                RevokeRequest {
                    target: Some(Target::Requester(identity.to_owned())),
                    reason: format!("identity {identity} disabled: {reason}"),
                },
            )
            .await
        {
            Ok(r) => r.revoked.into_iter().map(|g| g.grant_id).collect(),
            Err(Error::NothingToRevoke(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(DisableIdentityResponse {
            audit_index,
            revoked_grants: revoked,
            already_disabled: already,
        })
    }
}

/// A host name a token may name: a name (no pattern) by the host name rules.
fn check_host_name(host: &str) -> Result<(), Error> {
    breakglass_proto::names::check_host_pattern(host)
        .map_err(|e| Error::invalid_field("host", e))?;
    if host.contains(['*', '?']) {
        return Err(Error::invalid_field(
            "host",
            "a host name cannot be a pattern",
        ));
    }
    Ok(())
}

fn random_bytes() -> [u8; JOIN_TOKEN_BYTES] {
    use ssh_key::rand_core::{OsRng, RngCore};
    let mut b = [0u8; JOIN_TOKEN_BYTES];
    OsRng.fill_bytes(&mut b);
    b
}
