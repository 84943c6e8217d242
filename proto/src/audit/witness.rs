//! Does a log's checkpoint extend a checkpoint seen before? The one answer shared by every
//! party that remembers a checkpoint of the log.
//!
//! This is the C2SP witness idea (`tlog-witness`: a witness keeps the latest checkpoint it
//! cosigned per log and accepts a new one only with a consistency proof from it) applied to
//! the parties that already talk to the log: an auditor with a saved checkpoint
//! (`breakglass audit verify --remote --since`), every host (`breakglass host sync-krl`,
//! `ship`, `watch-revocations` keep the latest checkpoint they verified), and the daemon
//! itself when a host shows it a checkpoint. A log that was rolled back (a segment deleted,
//! an older copy restored) or forked (different events under the same key) cannot extend
//! a checkpoint someone saw, whatever proof it sends: the signatures are checked by the
//! caller with [`NoteVerifier::verify_checkpoint`](super::NoteVerifier::verify_checkpoint),
//! the rest here.

use super::merkle::{Hash, verify_consistency};
use super::note::Checkpoint;

/// Why a checkpoint does not extend one seen before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotExtending {
    /// The two checkpoints are of different logs.
    #[error(
        "the checkpoint seen before is of the log {old:?}, the new one of {new:?}: a different log"
    )]
    OtherLog {
        /// Origin of the checkpoint seen before.
        old: String,
        /// Origin of the new one.
        new: String,
    },
    /// The new checkpoint covers fewer events than the one seen before.
    #[error(
        "the checkpoint seen before covers {old} events but the log now holds only {new}: \
         events were removed (rolled back to an older copy, or a deleted segment)"
    )]
    RolledBack {
        /// Size seen before.
        old: u64,
        /// Size now.
        new: u64,
    },
    /// Same size, different root.
    #[error(
        "the log's root at size {size} differs from the checkpoint seen before: history was \
         rewritten (fork)"
    )]
    Forked {
        /// The size both checkpoints claim.
        size: u64,
    },
    /// The consistency proof does not connect the two roots.
    #[error(
        "the consistency proof from {old} to {new} events does not check ({reason}): history \
         was rewritten (fork), or the proof is not the log's"
    )]
    BadProof {
        /// Size seen before.
        old: u64,
        /// Size now.
        new: u64,
        /// What the proof check said.
        reason: String,
    },
}

/// Checks that `new` extends `old` with `proof`, the RFC 6962 consistency proof from
/// `old.size` to `new.size` (empty when the sizes are equal or `old.size` is 0).
///
/// Both checkpoints must already have been verified against the log's key.
pub fn check_extends(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: &[Hash],
) -> Result<(), NotExtending> {
    if old.origin != new.origin {
        return Err(NotExtending::OtherLog {
            old: old.origin.clone(),
            new: new.origin.clone(),
        });
    }
    if old.size > new.size {
        return Err(NotExtending::RolledBack {
            old: old.size,
            new: new.size,
        });
    }
    if old.size == new.size && old.root != new.root {
        return Err(NotExtending::Forked { size: old.size });
    }
    verify_consistency(old.size, new.size, &old.root, &new.root, proof).map_err(|e| {
        NotExtending::BadProof {
            old: old.size,
            new: new.size,
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::{MerkleTree, leaf_hash};

    fn tree(leaves: impl IntoIterator<Item = u64>) -> MerkleTree {
        let mut t = MerkleTree::new();
        for i in leaves {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    fn cp(t: &MerkleTree, size: u64) -> Checkpoint {
        Checkpoint {
            origin: "test/audit/v1".into(),
            size,
            root: t.root_at(size).unwrap(),
            extensions: vec![],
        }
    }

    #[test]
    fn a_grown_log_extends_every_earlier_checkpoint_of_itself() {
        let t = tree(0..40);
        for old in 0..=40 {
            for new in old..=40 {
                let proof = t.consistency_proof(old, new).unwrap();
                check_extends(&cp(&t, old), &cp(&t, new), &proof)
                    .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
            }
        }
    }

    #[test]
    fn a_rolled_back_log_is_named_so() {
        let t = tree(0..20);
        let e = check_extends(&cp(&t, 15), &cp(&t, 9), &[]).unwrap_err();
        assert_eq!(e, NotExtending::RolledBack { old: 15, new: 9 });
        assert!(e.to_string().contains("events were removed"), "{e}");
    }

    #[test]
    fn a_fork_is_caught_at_the_same_size_and_beyond_whatever_proof_comes_with_it() {
        // The same first 10 events, then different ones: a rewritten tail.
        let honest = tree(0..30);
        let forked = tree((0..10).chain(100..120));
        let e = check_extends(&cp(&honest, 20), &cp(&forked, 20), &[]).unwrap_err();
        assert_eq!(e, NotExtending::Forked { size: 20 });
        // Larger: the forked log's own (valid for itself) proof does not reach the old root.
        let proof = forked.consistency_proof(20, 30).unwrap();
        let e = check_extends(&cp(&honest, 20), &cp(&forked, 30), &proof).unwrap_err();
        assert!(
            matches!(
                e,
                NotExtending::BadProof {
                    old: 20,
                    new: 30,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("fork"), "{e}");
        // Neither does the honest log's proof for the forked head, nor an empty one.
        let proof = honest.consistency_proof(20, 30).unwrap();
        assert!(check_extends(&cp(&honest, 20), &cp(&forked, 30), &proof).is_err());
        assert!(check_extends(&cp(&honest, 20), &cp(&forked, 30), &[]).is_err());
        // Up to the fork point the forked log still extends the honest one.
        let proof = forked.consistency_proof(10, 30).unwrap();
        check_extends(&cp(&honest, 10), &cp(&forked, 30), &proof).unwrap();
    }

    #[test]
    fn another_logs_checkpoint_is_refused() {
        let t = tree(0..3);
        let mut other = cp(&t, 3);
        other.origin = "elsewhere/audit/v1".into();
        assert!(matches!(
            check_extends(&cp(&t, 3), &other, &[]),
            Err(NotExtending::OtherLog { .. })
        ));
    }
}
