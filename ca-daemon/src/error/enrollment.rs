//! Why an enrollment or identity call failed (join tokens, host enrollment and renewal,
//! disabled identities, calls without a client certificate): [`super::Error::Enrollment`].

use tonic::Code;

/// An enrollment or identity call's failure, with its facts.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// The daemon has no client CA key, so it signs no client certificates.
    #[error(
        "this daemon signs no client certificates: set [server] client_ca_key to the private key \
         of the client CA (the first certificate of [server] client_ca) and restart it"
    )]
    Off,
    /// The token is not one this log knows (mistyped, from another daemon, or expired
    /// long enough ago to be forgotten).
    #[error(
        "the join token is not known (mistyped, for another CA, or expired): ask an \
         administrator for a new one (breakglass-ca token create --host NAME)"
    )]
    UnknownToken,
    /// The token was used already.
    #[error(
        "the join token for host {host:?} was used already (at {used_at}, certificate serial \
         {serial}); a token enrolls once: ask an administrator for a new one (breakglass-ca \
         token create --host {host})"
    )]
    TokenUsed {
        /// The token's host.
        host: String,
        /// When it was used (RFC 3339).
        used_at: String,
        /// The certificate it was used for.
        serial: String,
    },
    /// The token expired.
    #[error(
        "the join token for host {host:?} expired at {expired_at}: ask an administrator for a \
         new one (breakglass-ca token create --host {host})"
    )]
    TokenExpired {
        /// The token's host.
        host: String,
        /// When it expired (RFC 3339).
        expired_at: String,
    },
    /// The identity was disabled by an administrator.
    #[error(
        "identity {identity} is disabled (by {by} at {at}: {reason}): its client certificates \
         are refused; ask an administrator"
    )]
    Disabled {
        /// The identity.
        identity: String,
        /// Who disabled it.
        by: String,
        /// When (RFC 3339).
        at: String,
        /// Why.
        reason: String,
    },
    /// Too many calls without a client certificate from one address.
    #[error(
        "too many calls without a client certificate from {peer} (at most {per_minute} a \
         minute, [server] open_calls_per_minute): wait a minute and try again"
    )]
    RateLimited {
        /// The peer address.
        peer: String,
        /// The limit.
        per_minute: u32,
    },
    /// Renewal by an identity the log did not enroll.
    #[error(
        "{identity} was not enrolled with a join token (its certificate comes from elsewhere, \
         e.g. [[identities]] and the organisation's CA), so this daemon does not renew it"
    )]
    NotEnrolled {
        /// The caller.
        identity: String,
    },
    /// An administration call by someone who is not an administrator.
    #[error(
        "{identity} may not {what}: administrators are the callers of the admin socket and the \
         members of {} ([revocation] admin_groups)",
        .admin_groups.join(", ")
    )]
    NotAdmin {
        /// The caller.
        identity: String,
        /// What was refused (`create join tokens`, `disable identities`).
        what: &'static str,
        /// `[revocation] admin_groups`.
        admin_groups: Vec<String>,
    },
    /// The client CA could not sign (a bad CSR is [`super::Error::InvalidField`]).
    #[error("{0}")]
    Sign(String),
    /// Login with OpenID Connect is not configured.
    #[error(
        "this daemon takes no OpenID Connect logins: its configuration has no [oidc] section \
         (ask an administrator; with an enrolled SSH key, log in with `breakglass login --ssh-key \
         FILE`; hosts enroll with `breakglass host enroll`)"
    )]
    LoginOff,
    /// Too many logins begun and not finished.
    #[error("too many logins are in progress; try again in a minute")]
    LoginsBusy,
    /// The login's nonce is not one this daemon gave, or it was used or expired.
    #[error(
        "this login's nonce is unknown, used already or expired (a nonce is good once, for \
         [enrollment] login_nonce_ttl (10 minutes by default), on the daemon that gave it, for \
         the login method it was asked for): run `breakglass login` again"
    )]
    UnknownNonce,
    /// The ID token was refused.
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// No identity has an enrolled SSH key, so no login with one can succeed.
    #[error(
        "this daemon takes no logins with an SSH key: no identity has one enrolled (an \
         administrator adds one with `breakglass-ca identity add-key ID --key FILE.pub`, or \
         lists it under [[identities]] ssh_keys)"
    )]
    SshKeyLoginOff,
    /// The SSH signature of a login was refused.
    #[error("SSH-key login refused: {0}")]
    SshKeyLoginRefused(String),
    /// An SSH key cannot be enrolled (or removed) as asked.
    #[error("{0}")]
    SshKey(String),
}

impl EnrollmentError {
    /// The gRPC status code.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            EnrollmentError::Off
            | EnrollmentError::NotEnrolled { .. }
            | EnrollmentError::LoginOff
            | EnrollmentError::SshKeyLoginOff
            | EnrollmentError::SshKey(_) => Code::FailedPrecondition,
            EnrollmentError::UnknownNonce
            | EnrollmentError::LoginRefused(_)
            | EnrollmentError::SshKeyLoginRefused(_) => Code::Unauthenticated,
            EnrollmentError::LoginsBusy => Code::ResourceExhausted,
            EnrollmentError::UnknownToken
            | EnrollmentError::TokenUsed { .. }
            | EnrollmentError::TokenExpired { .. }
            | EnrollmentError::Disabled { .. }
            | EnrollmentError::NotAdmin { .. } => Code::PermissionDenied,
            EnrollmentError::RateLimited { .. } => Code::ResourceExhausted,
            EnrollmentError::Sign(_) => Code::Internal,
        }
    }
}
