//! Events of the CA daemon and its log: KRL published, CA key added, heartbeat, and a
//! host's report that the log does not extend what it saw (with its acknowledgement).

use super::codec::fields;

fields! {
    /// A new key revocation list was published.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct KrlPublished {
        /// SHA-256 of the KRL file.
        pub sha256: [u8; 32],
        /// KRL version number.
        pub version: u64,
        /// Number of revoked serials in it.
        pub revoked_serials: u64,
    }
}

fields! {
    /// A CA key was added to the trusted set.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct CaKeyAdded {
        /// OpenSSH public key line.
        pub public_key: String,
        /// `SHA256:` fingerprint.
        pub fingerprint: String,
        /// True when it became the key that signs new certificates.
        pub signing: bool,
    }
}

fields! {
    /// Periodic liveness and freshness marker (checkpoints carry no time themselves).
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    pub struct Heartbeat {}
}

fields! {
    /// A host (the actor) showed a checkpoint signed with this log's key that the log does not
    /// extend: the log was rolled back or forked since the host saw it. Issuance stops until an
    /// administrator acknowledges ([`LogForkAcknowledged`]).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct LogConsistencyFailed {
        /// The host's name.
        pub host: String,
        /// The host's checkpoint, the signed note it sent: the evidence (it verifies with the
        /// log's public key, yet this log does not extend it).
        pub checkpoint: String,
        /// Its size.
        pub size: u64,
        /// Its root.
        pub root: [u8; 32],
        /// This log's size when the host showed it.
        pub log_size: u64,
        /// This log's root then.
        pub log_root: [u8; 32],
    }
}

fields! {
    /// An administrator (the actor) acknowledged every [`LogConsistencyFailed`] before this
    /// event that was not acknowledged yet: issuance resumes.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct LogForkAcknowledged {
        /// Why: what was investigated and done.
        pub reason: String,
        /// How many reports it acknowledges.
        pub reports: u64,
    }
}

fields! {
    /// The daemon re-read its configuration file (SIGHUP, `systemctl reload`) and put the new
    /// policy, tiers, identities and notification settings in force. A configuration that was
    /// refused leaves no event: the running one stays.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ConfigReloaded {
        /// The configuration file's path.
        pub path: String,
        /// SHA-256 of the file's bytes as read.
        pub sha256: [u8; 32],
        /// Rules in force after the reload.
        pub rules: u64,
        /// Identities (`[[identities]]`) in force after the reload.
        pub identities: u64,
    }
}
