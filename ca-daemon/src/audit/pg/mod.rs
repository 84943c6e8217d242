//! The PostgreSQL home of the audit log (issue 14; the design is `docs/several-daemons.md`):
//! the schema and its migrations ([`schema`]), the connection ([`connect`]), and moving a
//! log between an embedded directory and the database ([`transfer`]: `breakglass-ca audit
//! import` and `audit export`).
//!
//! The database holds the same log as the segment files: the leaves (canonical event
//! bytes) by index, one signed checkpoint per committed batch, and a head row with the
//! size, the Merkle frontier and the latest checkpoint. What a checkpoint signs is what the
//! embedded log's checkpoints sign, so a log exported from the database verifies offline
//! with `breakglass audit verify` and the log's public key alone.

pub mod connect;
pub(crate) mod error;
pub(crate) mod listen;
pub(crate) mod lock;
pub mod schema;
pub(crate) mod sequencer;
pub mod transfer;

pub use self::connect::connect;
pub use self::error::PgError;
pub use self::lock::DecisionGuard;
pub use self::transfer::{Transferred, export, import};
