//! The log's index on disk, beside the segments: where each entry's record is, and every
//! hash of the Merkle tree. Memory then does not grow with the history (the writer keeps
//! only the frontier, O(log n) hashes), and start-up reads only what the index does not
//! cover yet.
//!
//! ```text
//! <dir>/index/offsets   per entry, the byte offset of its record in its segment (u64 LE)
//! <dir>/index/tree      the tree's hashes, 32 bytes each, in the stored-hash layout
//!                       (merkle::stored_hash_index: each leaf, then the subtrees it completes)
//! <dir>/index/synced    the watermark: the size up to which both files were fsynced, with
//!                       the root recomputed from them then
//! ```
//!
//! Both files only grow at their end, and are written by the writer thread for each batch
//! **before** its segment write (a batch whose index cannot be written is not committed).
//! They are derived data: never synced on the commit path, but every
//! [`SYNC_INTERVAL`](super::writer) by the checkpoint thread, which then moves the
//! watermark. After a crash they may be shorter or longer than the log, or (power loss)
//! hold garbage after the watermark: [`super::store::open`] keeps them up to the watermark
//! only if the root recomputed from them matches it, and rebuilds the rest from the
//! segments. Hashes read later are never trusted on their own: every proof, root and entry
//! range served is checked against the latest signed checkpoint first
//! ([`super::store::Shared`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use breakglass_proto::audit::Hash;
use breakglass_proto::audit::merkle::{
    Frontier, NodeSource, frontier_nodes, stored_hash_count, stored_hash_index,
};
use breakglass_proto::audit::segment::record_crc;

use super::base::AuditError;

/// Directory of the index inside a log directory.
pub const INDEX_DIR: &str = "index";
const OFFSETS_FILE: &str = "offsets";
const TREE_FILE: &str = "tree";
const SYNCED_FILE: &str = "synced";
const SYNCED_MAGIC: &[u8; 8] = b"BGINDEX\x01";
/// magic, size (u64 LE), root, CRC-32C of what precedes it (u32 LE).
const SYNCED_LEN: usize = 8 + 8 + 32 + 4;
const HASH_LEN: u64 = 32;
const OFFSET_LEN: u64 = 8;
/// Nodes kept in memory between reads (about 40 bytes each): the frontier nodes every proof
/// near the end of the log reads again. Cleared when full.
const CACHE_NODES: usize = 4096;

/// The index files of one log, shared by the writer (appends) and readers (preads).
///
/// Readers only read below the published size ([`super::store::Index::size`]); the writer
/// only writes at or above it, so the two never need a lock between them.
#[derive(Debug)]
pub(crate) struct DiskIndex {
    dir: PathBuf,
    offsets: File,
    tree: File,
    cache: Mutex<HashMap<(u32, u64), Hash>>,
}

/// What the `synced` file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermark {
    pub size: u64,
    pub root: Hash,
}

impl DiskIndex {
    /// Opens (or creates) the index files of the log in `log_dir`.
    pub fn open(log_dir: &Path) -> Result<Self, AuditError> {
        let dir = log_dir.join(INDEX_DIR);
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o750)
                .create(&dir)
                .map_err(|e| AuditError::io(&dir, e))?;
        }
        let open = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o640)
                .open(&path)
                .map_err(|e| AuditError::io(&path, e))
        };
        Ok(Self {
            offsets: open(OFFSETS_FILE)?,
            tree: open(TREE_FILE)?,
            dir,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The watermark, or why there is none usable (missing, damaged): then the whole index
    /// is rebuilt.
    pub fn watermark(&self) -> Result<Watermark, String> {
        let path = self.path(SYNCED_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("{} does not exist", path.display()));
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if data.len() != SYNCED_LEN || &data[..8] != SYNCED_MAGIC {
            return Err(format!("{} is not an index watermark", path.display()));
        }
        let body = &data[..SYNCED_LEN - 4];
        let crc = u32::from_le_bytes([data[48], data[49], data[50], data[51]]);
        if record_crc(0, body) != crc {
            return Err(format!("{}: CRC mismatch", path.display()));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&data[8..16]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&data[16..48]);
        Ok(Watermark {
            size: u64::from_le_bytes(size),
            root,
        })
    }

    /// Makes everything written so far durable, then records `mark` as the watermark
    /// (temp file, fsync, rename). Everything below `mark.size` must have been written.
    pub fn sync(&self, mark: Watermark) -> Result<(), AuditError> {
        self.offsets
            .sync_data()
            .map_err(|e| AuditError::io(self.path(OFFSETS_FILE), e))?;
        self.tree
            .sync_data()
            .map_err(|e| AuditError::io(self.path(TREE_FILE), e))?;
        let mut data = Vec::with_capacity(SYNCED_LEN);
        data.extend_from_slice(SYNCED_MAGIC);
        data.extend_from_slice(&mark.size.to_le_bytes());
        data.extend_from_slice(&mark.root);
        data.extend_from_slice(&record_crc(0, &data).to_le_bytes());
        let path = self.path(SYNCED_FILE);
        let tmp = self.path("synced.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| AuditError::io(&path, e))
    }

    /// Forgets the watermark, so that the next open rebuilds the index from the segments.
    pub fn forget_watermark(&self) -> Result<(), AuditError> {
        let path = self.path(SYNCED_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    /// Cuts both files to a tree of `size` entries.
    pub fn truncate(&self, size: u64) -> Result<(), AuditError> {
        self.clear_cache();
        self.offsets
            .set_len(size * OFFSET_LEN)
            .map_err(|e| AuditError::io(self.path(OFFSETS_FILE), e))?;
        self.tree
            .set_len(stored_hash_count(size) * HASH_LEN)
            .map_err(|e| AuditError::io(self.path(TREE_FILE), e))
    }

    /// How many entries both files hold in full.
    pub fn entries_on_disk(&self) -> Result<u64, AuditError> {
        let len = |f: &File, name| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| AuditError::io(self.path(name), e))
        };
        let by_offsets = len(&self.offsets, OFFSETS_FILE)? / OFFSET_LEN;
        let hashes = len(&self.tree, TREE_FILE)? / HASH_LEN;
        // The largest n with stored_hash_count(n) = 2n - popcount(n) <= hashes: at most
        // (hashes + 64) / 2, a few steps down from there.
        let mut n = (hashes.saturating_add(64) / 2).min(by_offsets);
        while n > 0 && stored_hash_count(n) > hashes {
            n -= 1;
        }
        Ok(n)
    }

    /// Writes the entries from `first`: their records' offsets, and the tree's hashes as
    /// [`Frontier::push_stored`] produced them for those entries.
    pub fn append(&self, first: u64, offsets: &[u64], stored: &[Hash]) -> Result<(), AuditError> {
        let mut o = Vec::with_capacity(offsets.len() * 8);
        for x in offsets {
            o.extend_from_slice(&x.to_le_bytes());
        }
        self.offsets
            .write_all_at(&o, first * OFFSET_LEN)
            .map_err(|e| AuditError::io(self.path(OFFSETS_FILE), e))?;
        let h = stored.concat();
        self.tree
            .write_all_at(&h, stored_hash_count(first) * HASH_LEN)
            .map_err(|e| AuditError::io(self.path(TREE_FILE), e))
    }

    /// The byte offsets of the records of entries `start..end` in their segments.
    pub fn offsets(&self, start: u64, end: u64) -> Result<Vec<u64>, AuditError> {
        let mut buf = vec![0u8; ((end - start) * OFFSET_LEN) as usize];
        self.offsets
            .read_exact_at(&mut buf, start * OFFSET_LEN)
            .map_err(|e| self.short(OFFSETS_FILE, start * OFFSET_LEN, &e))?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }

    fn short(&self, name: &str, at: u64, e: &std::io::Error) -> AuditError {
        AuditError::Corrupt {
            segment: self.path(name),
            offset: at,
            reason: format!(
                "cannot read the index ({e}); it is rebuilt from the segments at the next start"
            ),
        }
    }

    /// The root of the complete subtree `(level, index)`, as stored.
    pub fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        if let Some(h) = self.cache().get(&(level, index)) {
            return Ok(*h);
        }
        let at = stored_hash_index(level, index) * HASH_LEN;
        let mut h = [0u8; 32];
        self.tree
            .read_exact_at(&mut h, at)
            .map_err(|e| self.short(TREE_FILE, at, &e))?;
        let mut cache = self.cache();
        if cache.len() >= CACHE_NODES {
            cache.clear();
        }
        cache.insert((level, index), h);
        Ok(h)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u64), Hash>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the cached nodes (after the files were cut or found damaged).
    pub fn clear_cache(&self) {
        self.cache().clear();
    }

    /// The frontier of the first `size` entries, read from the tree file.
    pub fn frontier(&self, size: u64) -> Result<Frontier, AuditError> {
        let nodes = frontier_nodes(size)
            .into_iter()
            .map(|(k, j)| self.node(k, j))
            .collect::<Result<Vec<_>, _>>()?;
        Frontier::from_nodes(size, nodes)
            .ok_or_else(|| AuditError::OutOfRange(format!("no frontier of size {size}")))
    }

    /// The first `size` entries as a [`NodeSource`].
    pub fn at(&self, size: u64) -> TreeAt<'_> {
        TreeAt { index: self, size }
    }
}

/// The tree of the first `size` entries of a [`DiskIndex`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeAt<'a> {
    index: &'a DiskIndex,
    size: u64,
}

impl NodeSource for TreeAt<'_> {
    type Error = AuditError;

    fn size(&self) -> u64 {
        self.size
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        self.index.node(level, index)
    }
}
