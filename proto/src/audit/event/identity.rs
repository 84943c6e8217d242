//! Events of identities the daemon itself vouches for: join tokens created for a host,
//! client certificates issued (a host's enrollment with a token, its renewal), and an
//! identity disabled by an administrator.

use super::codec::fields;
use super::ids::Timestamp;

fields! {
    /// An administrator created a one-time join token for a host. Only the token's hash
    /// is recorded: the token itself was shown once, to the administrator.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct JoinTokenCreated {
        /// SHA-256 of the token (`proto::enrollment::join_token_hash`).
        pub token_sha256: [u8; 32],
        /// The host's name: the certificate will name `host://<host>`.
        pub host: String,
        /// After this the token is refused.
        pub expires_at: Timestamp,
    }
}

fields! {
    /// The daemon's client CA signed an mTLS client certificate for an identity the log
    /// vouches for (not one of the configuration's `[[identities]]`): a host enrolled with
    /// a join token (which is used up by this event) or renewed its certificate.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ClientCertificateIssued {
        /// The identity (the certificate's SAN), e.g. `host://db-7`.
        pub identity: String,
        /// Its groups from now on.
        pub groups: Vec<String>,
        /// The certificate's serial, hex.
        pub serial: String,
        /// SHA-256 of the certificate's public key (SubjectPublicKeyInfo, DER).
        pub public_key_sha256: [u8; 32],
        /// When the certificate expires.
        pub not_after: Timestamp,
        /// How it was obtained: `enroll` (a join token) or `renew` (the current certificate).
        pub method: String,
        /// The join token used up, for `enroll`.
        pub join_token_sha256: Option<[u8; 32]>,
    }
}

fields! {
    /// An administrator disabled an identity: its client certificates are refused from
    /// now on, and its live grants were revoked (their own `grant_revoked` events).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct IdentityDisabled {
        /// The identity (a certificate's SAN).
        pub identity: String,
        /// Why.
        pub reason: String,
    }
}

fields! {
    /// An administrator enrolled an SSH public key for an identity's break-glass login
    /// (`breakglass-ca identity add-key`): from now on a signature by the key logs the
    /// identity in (`breakglass login --ssh-key`).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SshKeyAdded {
        /// The identity (a certificate's SAN).
        pub identity: String,
        /// The key, one OpenSSH line without comment (`sk-ssh-ed25519@openssh.com AAAA...`).
        pub public_key: String,
    }
}

fields! {
    /// An administrator removed an enrolled SSH public key of an identity
    /// (`breakglass-ca identity remove-key`): it no longer logs the identity in.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SshKeyRemoved {
        /// The identity (a certificate's SAN).
        pub identity: String,
        /// The key, one OpenSSH line without comment.
        pub public_key: String,
    }
}
