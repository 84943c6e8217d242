//! The independent Merkle tree the audit log tests check against: `tlog_tiles`, a port
//! of Go's `sumdb/tlog`, over its stored hashes. It takes no type of the contract crate,
//! so the contract crate's own unit tests use it too.

use tlog_tiles::{Error, Hash, HashReader, stored_hashes};

/// Go-style stored hashes of a log, record by record, for `tlog_tiles`'s tree hashes and
/// proofs.
#[derive(Debug, Default)]
pub struct TlogStore(Vec<Hash>);

impl TlogStore {
    /// Adds the record `data` as the next leaf.
    pub fn push(&mut self, index: u64, data: &[u8]) {
        let add = stored_hashes(index, data, &*self).expect("stored hashes of the next record");
        self.0.extend(add);
    }
}

impl HashReader for TlogStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(usize::try_from(i).map_err(|_| Error::IndexesNotInTree)?)
                    .copied()
                    .ok_or(Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Proof hashes as the wire carries them (32 bytes each), as `tlog_tiles` hashes.
pub fn tlog_hashes(v: Vec<Vec<u8>>) -> Vec<Hash> {
    v.into_iter()
        .map(|h| Hash(h.try_into().expect("32-byte hash")))
        .collect()
}
