//! The audit log contract: event schema, Merkle tree, signed checkpoints, segment format and
//! offline verification.
//!
//! Everything an auditor needs to check a copy of the log with only its public key lives
//! here, synchronous and without the daemon:
//! - [`event`]: the events and their canonical encoding (the Merkle leaves);
//! - [`merkle`]: RFC 6962 hashing, inclusion and consistency proofs;
//! - [`note`]: C2SP tlog-checkpoint bodies and C2SP signed-note Ed25519 signatures;
//! - [`recordings`]: what the log says about session recordings (committed, stored, deleted);
//! - [`segment`]: segment files and record framing;
//! - [`verify`]: the scan shared with the daemon's recovery, and [`verify::verify_dir`];
//! - [`witness`]: whether a checkpoint extends one seen before (auditors, hosts, the daemon).

pub mod event;
pub mod fields;
pub mod merkle;
pub mod note;
pub mod recordings;
pub mod segment;
pub mod verify;
pub mod witness;

#[cfg(test)]
mod oracle_tests;

pub use event::{Actor, Event, EventCode, EventKind, RequestId, Timestamp};
pub use merkle::{Frontier, Hash, MerkleTree, ProofError, verify_consistency, verify_inclusion};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier, SignedCheckpoint};
pub use verify::{LogError, VerifyReport, scan_log, verify_dir};
pub use witness::{NotExtending, check_extends};

/// Re-exported so callers can build a [`NoteSigner`] without naming the crate themselves.
pub use ed25519_dalek;
