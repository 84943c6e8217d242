//! What the engine's parts share: how it is set up, how it fails, and what a leaf index is.

use std::path::PathBuf;

use breakglass_proto::audit::event::EncodeError;
use breakglass_proto::audit::{LogError, ProofError};

/// Leaf index of an event in the log (0-based).
pub type LeafIndex = u64;

/// Most entries returned by one [`AuditLog::entries`](super::AuditLog::entries) call.
pub const MAX_ENTRIES_PER_READ: u64 = 10_000;

/// How the log engine is set up.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The log directory (e.g. `<data dir>/audit`); created if missing.
    pub dir: PathBuf,
    /// A segment is closed (made read-only) and a new one started once it reaches this size.
    pub segment_max_bytes: u64,
    /// Most events committed by one write + fdatasync.
    pub max_batch: usize,
    /// Capacity of the queue in front of the writer; `append` waits when it is full.
    pub queue_depth: usize,
    /// With `[audit] backend = "postgres"`: the database where batches are durable (`dir`
    /// then holds its mirror).
    pub db: Option<crate::config::postgres::PostgresSettings>,
}

impl AuditConfig {
    /// Defaults for a log in `dir`: 64 MiB segments, batches of up to 1024, queue of 8192.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_max_bytes: 64 * 1024 * 1024,
            max_batch: 1024,
            queue_depth: 8192,
            db: None,
        }
    }
}

/// Why the audit log refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log cannot be written (disk full, I/O error, read-only file system); the event was
    /// not recorded. Map to gRPC `Unavailable`.
    #[error("audit log cannot be written, nothing was recorded: {0}")]
    Unavailable(String),
    /// The log writer has stopped (shutdown, or it failed); the event was not recorded.
    #[error("audit log is closed; the event was not recorded")]
    Closed,
    /// The event cannot be encoded (a field is too long).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The log on disk is damaged before its last valid checkpoint (tampering or media
    /// corruption). The daemon must refuse to start; nothing is repaired automatically.
    #[error(
        "audit log is damaged: {}: byte {offset}: {reason}; refusing to use it (restore the \
         segment from a copy, or move the log aside after investigation)",
        segment.display()
    )]
    Corrupt {
        /// The segment (or checkpoint) file.
        segment: PathBuf,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory of the log could not be read or created.
    #[error("audit log: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The audit key file is missing, unsafe or malformed, or does not match the log.
    #[error("audit key: {0}")]
    Key(String),
    /// A read asked for entries or tree sizes the log does not have.
    #[error("{0}")]
    OutOfRange(String),
}

impl AuditError {
    /// An I/O error on `path` (or on what `path` names, like "tokio runtime").
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<LogError> for AuditError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Io { path, source } => AuditError::Io { path, source },
            LogError::Damaged {
                segment,
                offset,
                reason,
            } => AuditError::Corrupt {
                segment,
                offset,
                reason,
            },
            LogError::NotExtending(reason) | LogError::BadSavedCheckpoint(reason) => {
                AuditError::Corrupt {
                    segment: PathBuf::from(breakglass_proto::audit::segment::CHECKPOINT_FILE),
                    offset: 0,
                    reason,
                }
            }
        }
    }
}

impl From<ProofError> for AuditError {
    fn from(e: ProofError) -> Self {
        AuditError::OutOfRange(e.to_string())
    }
}
