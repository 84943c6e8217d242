//! Why a recording call failed (upload, status, download): [`super::Error::Recording`].

use tonic::Code;

/// A recording call's failure, with its facts.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The upload is malformed (no message, the session changes mid-stream, a chunk too
    /// large, a session id that is not this host's).
    #[error("recording upload: {0}")]
    BadUpload(String),
    /// The log holds no close or forced-end record of this host's session that carries a
    /// recording digest.
    #[error(
        "session {session:?}: the audit log holds no close or forced_end record of this host's \
         session carrying a recording digest; ship the session's records first (breakglass host \
         ship does, in that order)"
    )]
    NotExpected {
        /// The session id.
        session: String,
    },
    /// Another host reported the session.
    #[error(
        "session {session:?} was reported by host {owner:?}, not by you ({host:?}): a host may \
         only upload the recordings of its own sessions"
    )]
    OtherHost {
        /// The session id.
        session: String,
        /// Who reported it.
        owner: String,
        /// The caller.
        host: String,
    },
    /// The upload does not start where the daemon's copy ends.
    #[error(
        "session {session:?}: the upload starts at byte {given} but the daemon holds {held}; \
         ask GetRecordingStatus and send from there"
    )]
    Offset {
        /// The session id.
        session: String,
        /// Where the chunk starts.
        given: u64,
        /// Bytes held.
        held: u64,
    },
    /// Another upload of the same session is running.
    #[error(
        "session {0:?}: another upload of this recording is in progress; try again when it ends"
    )]
    Busy(String),
    /// The bytes do not match the session's audit record: refused, recorded, nothing kept.
    #[error(
        "the recording of session {session:?} was refused: {why}. Nothing was stored (audit \
         event recording_refused); the host's file is not the one its session record commits to"
    )]
    Mismatch {
        /// The session id.
        session: String,
        /// What differs.
        why: String,
    },
    /// No stored recording to read.
    #[error("session {session:?}: {why}")]
    NotFound {
        /// The session id.
        session: String,
        /// Never uploaded, not recorded, or deleted (when).
        why: String,
    },
    /// The recording storage failed (disk): nothing was acknowledged.
    #[error(
        "recording storage {path}: {error}; try again later; operators: check the disk of the audit directory"
    )]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        error: String,
    },
}

impl RecordingError {
    /// The gRPC status code (called from [`super::Error::code`] only).
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            RecordingError::BadUpload(_) | RecordingError::Mismatch { .. } => Code::InvalidArgument,
            RecordingError::OtherHost { .. } => Code::PermissionDenied,
            RecordingError::NotExpected { .. } | RecordingError::Offset { .. } => {
                Code::FailedPrecondition
            }
            RecordingError::Busy(_) => Code::Aborted,
            RecordingError::NotFound { .. } => Code::NotFound,
            RecordingError::Io { .. } => Code::Unavailable,
        }
    }
}
