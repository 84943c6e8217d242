//! Events of a session recording on the daemon: stored (verified against the session's
//! close record), refused on arrival, deleted by retention.

use super::codec::fields;
use crate::profile::GrantId;

fields! {
    /// A host uploaded a session's recording and it matched the digest of the session's
    /// close (or forced end) record: the file is stored under its chain hash.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RecordingStored {
        /// Host of the session (the uploader).
        pub host: String,
        /// Host-local session id.
        pub session_id: String,
        /// Grant of the session.
        pub grant_id: GrantId,
        /// Final hash of the recording's chain (`proto::recording`): its storage name.
        pub sha256: [u8; 32],
        /// Size of the file.
        pub bytes: u64,
    }
}

fields! {
    /// A recording upload was refused on arrival (its bytes do not match the session's
    /// close record: size or chain hash); nothing was stored.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RecordingRefused {
        /// Host of the session (the uploader).
        pub host: String,
        /// Host-local session id.
        pub session_id: String,
        /// Grant of the session.
        pub grant_id: GrantId,
        /// What did not match.
        pub reason: String,
    }
}

fields! {
    /// A stored recording was deleted (by the retention sweep: older than `[recordings]
    /// keep`). Its audit record stays; `audit verify` reports the deletion.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RecordingDeleted {
        /// Host of the session.
        pub host: String,
        /// Host-local session id.
        pub session_id: String,
        /// Grant of the session.
        pub grant_id: GrantId,
        /// Final hash of the recording's chain (its storage name).
        pub sha256: [u8; 32],
        /// Why (e.g. `retention: stored more than 90d ago`).
        pub reason: String,
    }
}
