//! The read side: entries, roots and proofs, read from the segments and the index on disk,
//! each checked against the latest signed checkpoint before it is returned.
//!
//! The index's hashes are derived data ([`super::index`]): a damaged one must not reach an
//! auditor as a proof the log signed. So a root of an earlier size comes with a consistency
//! proof to the signed root, an inclusion proof is verified against such a root, and a range
//! of entries is hashed into the signed root ([`root_with_leaves`]). A mismatch blames the
//! entry when its bytes differ from the hash it was indexed with, else the index
//! ([`Shared::index_damaged`]).

use std::sync::Arc;

use breakglass_proto::audit::merkle::{
    consistency_proof_of, inclusion_proof_of, leaf_hash, root_of, root_with_leaves,
};
use breakglass_proto::audit::segment::RecordKind;
use breakglass_proto::audit::{Hash, verify_consistency, verify_inclusion};

use super::base::{AuditError, MAX_ENTRIES_PER_READ};
use super::store::{Shared, read_record_at};

/// The latest signed tree head: what every read is checked against.
#[derive(Debug, Clone, Copy)]
struct Signed {
    size: u64,
    root: Hash,
}

impl Shared {
    fn signed(&self) -> Signed {
        let idx = self.read();
        Signed {
            size: idx.size(),
            root: idx.checkpoint.checkpoint.root,
        }
    }

    /// Leaf bytes of entries `start..end`, checked against the signed checkpoint.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        let (signed, segments) = {
            let idx = self.read();
            let size = idx.size();
            if start > end || end > size {
                return Err(AuditError::OutOfRange(format!(
                    "entries {start}..{end} are not within the log's {size} entries"
                )));
            }
            if end - start > MAX_ENTRIES_PER_READ {
                return Err(AuditError::OutOfRange(format!(
                    "at most {MAX_ENTRIES_PER_READ} entries per read, {} asked",
                    end - start
                )));
            }
            // Only the segments the range spans (a handful at most).
            let first = idx.segment_of(start).map_or(0, |s| s.first);
            let segments: Vec<_> = idx
                .segments
                .iter()
                .filter(|s| s.first >= first && s.first < end.max(start + 1))
                .map(|s| (s.first, s.path.clone(), Arc::clone(&s.file)))
                .collect();
            (
                Signed {
                    size,
                    root: idx.checkpoint.checkpoint.root,
                },
                segments,
            )
        };
        if start == end {
            return Ok(Vec::new());
        }
        let offsets = self.disk.offsets(start, end)?;
        let mut out = Vec::with_capacity(offsets.len());
        let mut hashes = Vec::with_capacity(offsets.len());
        let mut places = Vec::with_capacity(offsets.len());
        for (i, off) in (start..).zip(offsets) {
            let s = segments.partition_point(|s| s.0 <= i).saturating_sub(1);
            let Some((_, path, file)) = segments.get(s) else {
                return Err(self.index_damaged(&format!("no segment holds entry {i}")));
            };
            let (kind, leaf, _) = read_record_at(file, path, off).map_err(|e| match e {
                AuditError::Corrupt {
                    segment,
                    offset,
                    reason,
                } => AuditError::Corrupt {
                    segment,
                    offset,
                    reason: format!("entry {i}: {reason}"),
                },
                e => e,
            })?;
            if kind != RecordKind::Event {
                return Err(AuditError::Corrupt {
                    segment: path.clone(),
                    offset: off,
                    reason: format!("entry {i}: record is a {kind:?}, not an event"),
                });
            }
            hashes.push(leaf_hash(&leaf));
            places.push((path, off));
            out.push(leaf);
        }
        let root = root_with_leaves(&self.disk.at(signed.size), signed.size, start, &hashes)?;
        if root == signed.root {
            return Ok(out);
        }
        // Which is wrong: an entry's bytes (changed since they were indexed), or the index?
        for ((i, h), (path, off)) in (start..).zip(&hashes).zip(places) {
            if self.disk.node(0, i)? != *h {
                return Err(AuditError::Corrupt {
                    segment: path.clone(),
                    offset: off,
                    reason: format!("entry {i} changed on disk since it was written"),
                });
            }
        }
        Err(self.index_damaged(&format!(
            "entries {start}..{end} do not hash to the signed root of size {}",
            signed.size
        )))
    }

    /// Root of the tree of `size` entries, checked against the signed checkpoint.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.checked_root(self.signed(), size)
    }

    fn checked_root(&self, signed: Signed, size: u64) -> Result<Hash, AuditError> {
        let tree = self.disk.at(signed.size);
        if size == signed.size {
            return Ok(signed.root);
        }
        let root = root_of(&tree, size)?;
        let proof = consistency_proof_of(&tree, size, signed.size)?;
        verify_consistency(size, signed.size, &root, &signed.root, &proof).map_err(|e| {
            self.index_damaged(&format!(
                "its root at size {size} is not consistent with the signed root: {e}"
            ))
        })?;
        Ok(root)
    }

    /// Inclusion proof of entry `index` in the tree of `size`, checked before it is returned.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        let signed = self.signed();
        let tree = self.disk.at(signed.size);
        let proof = inclusion_proof_of(&tree, index, size)?;
        let leaf = self.disk.node(0, index)?;
        let root = self.checked_root(signed, size)?;
        verify_inclusion(&leaf, index, size, &proof, &root).map_err(|e| {
            self.index_damaged(&format!("inclusion proof of {index} in {size}: {e}"))
        })?;
        Ok(proof)
    }

    /// Consistency proof between the trees of `old` and `new`, checked before it is returned.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        let signed = self.signed();
        let tree = self.disk.at(signed.size);
        let proof = consistency_proof_of(&tree, old, new)?;
        let old_root = self.checked_root(signed, old)?;
        let new_root = self.checked_root(signed, new)?;
        verify_consistency(old, new, &old_root, &new_root, &proof).map_err(|e| {
            self.index_damaged(&format!("consistency proof from {old} to {new}: {e}"))
        })?;
        Ok(proof)
    }
}
