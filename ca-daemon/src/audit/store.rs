//! Opening and recovering the log directory, the in-memory index, and the read side.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::segment::{
    CHECKPOINT_FILE, PUBLIC_KEY_FILE, Parsed, RECORD_HEADER_LEN, RecordKind, SEGMENTS_DIR,
    parse_record,
};
use breakglass_proto::audit::verify::{ScanOptions, read_checkpoint_file, scan_log};
use breakglass_proto::audit::{
    Checkpoint, Event, Frontier, MerkleTree, NoteSigner, NoteVerifier, SignedCheckpoint,
};

use super::base::{AuditConfig, AuditError, LeafIndex, MAX_ENTRIES_PER_READ};

/// A segment readers can read from.
pub(crate) struct SegmentHandle {
    pub first: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
}

/// What readers see: only durable, checkpointed state.
pub(crate) struct Index {
    pub tree: MerkleTree,
    /// Byte offset of each event's record in its segment.
    pub offsets: Vec<u64>,
    pub segments: Vec<SegmentHandle>,
    pub checkpoint: SignedCheckpoint,
}

/// State shared by the handle and the writer thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub verifier: NoteVerifier,
    index: RwLock<Index>,
    pub last_error: Mutex<Option<String>>,
    /// Batches committed since open (one fdatasync each).
    pub batches: std::sync::atomic::AtomicU64,
    /// Commit measurements for the metrics listener.
    pub stats: super::stats::CommitStats,
}

/// The segment the writer appends to.
pub(crate) struct Active {
    pub file: File,
    pub path: PathBuf,
    pub first: u64,
    /// Durable length: everything before it is synced and ends with a checkpoint.
    pub len: u64,
    /// Whether readers know this segment yet.
    pub registered: bool,
}

/// The result of [`open`], handed to the writer thread.
pub(crate) struct Opened {
    pub shared: Arc<Shared>,
    pub active: Option<Active>,
    pub frontier: Frontier,
}

impl Shared {
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }

    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        // Copy what is needed under the lock, read the files without it.
        let (plan, hashes) = {
            let idx = self.read();
            let size = idx.tree.size();
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
            let mut plan = Vec::with_capacity((end - start) as usize);
            let mut hashes = Vec::with_capacity(plan.capacity());
            for i in start..end {
                let s = idx.segments.partition_point(|s| s.first <= i) - 1;
                let seg = &idx.segments[s];
                plan.push((seg.file.clone(), seg.path.clone(), idx.offsets[i as usize]));
                hashes.push(idx.tree.leaf(i).unwrap_or_default());
            }
            (plan, hashes)
        };
        let mut out = Vec::with_capacity(plan.len());
        for ((file, path, off), (expect, i)) in
            plan.into_iter().zip(hashes.into_iter().zip(start..))
        {
            let corrupt = |reason: String| AuditError::Corrupt {
                segment: path.clone(),
                offset: off,
                reason,
            };
            let mut head = [0u8; RECORD_HEADER_LEN];
            file.read_exact_at(&mut head, off)
                .map_err(|e| AuditError::io(&path, e))?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut rec = vec![0u8; RECORD_HEADER_LEN + len];
            file.read_exact_at(&mut rec, off)
                .map_err(|e| AuditError::io(&path, e))?;
            let leaf = match parse_record(&rec) {
                Parsed::Record {
                    kind: RecordKind::Event,
                    payload,
                    ..
                } => payload,
                Parsed::Record { kind, .. } => {
                    return Err(corrupt(format!(
                        "entry {i}: record is a {kind:?}, not an event"
                    )));
                }
                Parsed::Truncated { .. } => return Err(corrupt(format!("entry {i}: truncated"))),
                Parsed::Invalid(r) => return Err(corrupt(format!("entry {i}: {r}"))),
            };
            if leaf_hash(leaf) != expect {
                return Err(corrupt(format!(
                    "entry {i} changed on disk since it was written"
                )));
            }
            out.push(leaf.to_vec());
        }
        Ok(out)
    }

    pub fn replay(&self) -> Replay {
        let idx = self.read();
        Replay {
            segments: idx
                .segments
                .iter()
                .map(|s| (s.first, s.path.clone()))
                .collect(),
            data: Vec::new(),
            pos: 0,
            path: PathBuf::new(),
            next: 0,
            end: idx.tree.size(),
            done: false,
        }
    }
}

/// Iterator over every durable event, in order (see [`super::AuditLog::replay`]).
#[derive(Debug)]
pub struct Replay {
    segments: VecDeque<(u64, PathBuf)>,
    data: Vec<u8>,
    pos: usize,
    path: PathBuf,
    next: u64,
    end: u64,
    done: bool,
}

impl Replay {
    /// Number of events the replay covers in total.
    #[must_use]
    pub fn len_total(&self) -> u64 {
        self.end
    }

    fn fail(&mut self, reason: String) -> Option<Result<(LeafIndex, Event), AuditError>> {
        self.done = true;
        Some(Err(AuditError::Corrupt {
            segment: self.path.clone(),
            offset: self.pos as u64,
            reason,
        }))
    }
}

impl Iterator for Replay {
    type Item = Result<(LeafIndex, Event), AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.next >= self.end {
                return None;
            }
            if self.pos >= self.data.len() {
                let Some((first, path)) = self.segments.pop_front() else {
                    let n = self.next;
                    return self.fail(format!("segments end after {n} of {} events", self.end));
                };
                if first != self.next {
                    self.path = path;
                    self.pos = 0;
                    let n = self.next;
                    return self.fail(format!("segment starts at {first}, expected {n}"));
                }
                match std::fs::read(&path) {
                    Ok(d) => self.data = d,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(AuditError::io(path, e)));
                    }
                }
                self.path = path;
                self.pos = 0;
                continue;
            }
            match parse_record(&self.data[self.pos..]) {
                Parsed::Record { kind, payload, len } => {
                    let at = self.pos;
                    self.pos += len;
                    if kind != RecordKind::Event {
                        continue;
                    }
                    let i = self.next;
                    self.next += 1;
                    return Some(Event::decode(payload).map(|e| (i, e)).map_err(|e| {
                        self.done = true;
                        AuditError::Corrupt {
                            segment: self.path.clone(),
                            offset: at as u64,
                            reason: format!("event {i}: {e}"),
                        }
                    }));
                }
                Parsed::Truncated { .. } => return self.fail("truncated record".into()),
                Parsed::Invalid(r) => return self.fail(r),
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(dir, e))
}

/// Replaces `<dir>/checkpoint` atomically (temp file + rename); with `durable`, also fsyncs
/// the file and the directory.
pub(crate) fn write_checkpoint_file(
    dir: &Path,
    note: &str,
    durable: bool,
) -> Result<(), AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(note.as_bytes())?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        AuditError::io(&path, e)
    })?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}

fn make_read_only(path: &Path) -> Result<(), AuditError> {
    let meta = std::fs::metadata(path).map_err(|e| AuditError::io(path, e))?;
    if meta.permissions().mode() & 0o222 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
            .map_err(|e| AuditError::io(path, e))?;
    }
    Ok(())
}

/// Opens the log directory: checks the key, scans and recovers the segments, builds the index.
pub(crate) fn open(config: &AuditConfig, signer: &NoteSigner) -> Result<Opened, AuditError> {
    let dir = config.dir.clone();
    let seg_dir = dir.join(SEGMENTS_DIR);
    if !seg_dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&seg_dir)
            .map_err(|e| AuditError::io(&seg_dir, e))?;
        fsync_dir(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    let verifier = signer.verifier();
    let pub_path = dir.join(PUBLIC_KEY_FILE);
    match std::fs::read_to_string(&pub_path) {
        Ok(text) => {
            let on_disk = NoteVerifier::parse(&text)
                .map_err(|e| AuditError::Key(format!("{}: {e}", pub_path.display())))?;
            if on_disk != verifier {
                return Err(AuditError::Key(format!(
                    "{} is {on_disk}, but the configured audit key is {verifier}: this log was \
                     signed with another key or origin",
                    pub_path.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            super::key::write_public_key(&pub_path, &verifier)?;
        }
        Err(e) => return Err(AuditError::io(&pub_path, e)),
    }

    // The checkpoint file is a convenience copy, refreshed lazily: a missing or unreadable
    // one is rewritten, but a validly signed one the segments do not extend means segments
    // were deleted or rolled back.
    let file_cp = match read_checkpoint_file(&dir, &verifier) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unreadable audit checkpoint file; it will be rewritten");
            None
        }
    };

    let mut tree = MerkleTree::new();
    let mut offsets = Vec::new();
    let opts = ScanOptions {
        every_signature: false,
        roots_at: file_cp.iter().map(|c| c.size).collect(),
    };
    let started = std::time::Instant::now();
    let summary = scan_log(&dir, &verifier, &opts, |e| {
        tree.push(e.leaf_hash);
        offsets.push(e.offset);
        Ok(())
    })?;
    if let Some(c) = &file_cp {
        let root = summary
            .roots
            .iter()
            .find(|(n, _)| *n == c.size)
            .map(|r| r.1);
        if c.size > summary.size || root != Some(c.root) {
            return Err(AuditError::Corrupt {
                segment: dir.join(CHECKPOINT_FILE),
                offset: 0,
                reason: if c.size > summary.size {
                    format!(
                        "the checkpoint file covers {} events but the segments hold only {}: \
                         a segment was deleted or rolled back",
                        c.size, summary.size
                    )
                } else {
                    format!(
                        "the segments' root at size {} differs from the checkpoint file's: \
                         history was rewritten",
                        c.size
                    )
                },
            });
        }
    }

    let mut segments = summary.segments.clone();
    if let Some(t) = &summary.torn_tail {
        tracing::warn!(
            segment = %t.segment.display(),
            offset = t.offset,
            bytes = t.len,
            reason = %t.reason,
            "cutting the torn tail of the audit log (an interrupted batch that was never acknowledged)"
        );
        let last = segments.last().map(|s| s.committed_len);
        if last == Some(0) {
            std::fs::remove_file(&t.segment).map_err(|e| AuditError::io(&t.segment, e))?;
            segments.pop();
        } else {
            let f = OpenOptions::new()
                .write(true)
                .open(&t.segment)
                .map_err(|e| AuditError::io(&t.segment, e))?;
            f.set_len(t.offset)
                .and_then(|()| f.sync_all())
                .map_err(|e| AuditError::io(&t.segment, e))?;
        }
        fsync_dir(&seg_dir)?;
    }

    let mut handles = Vec::with_capacity(segments.len());
    let mut active = None;
    let n = segments.len();
    for (i, s) in segments.iter().enumerate() {
        let is_last = i + 1 == n;
        if !is_last {
            make_read_only(&s.path)?;
        }
        let file = File::open(&s.path).map_err(|e| AuditError::io(&s.path, e))?;
        let writable = file
            .metadata()
            .map_err(|e| AuditError::io(&s.path, e))?
            .permissions()
            .mode()
            & 0o200
            != 0;
        if is_last && writable {
            let wf = OpenOptions::new()
                .write(true)
                .open(&s.path)
                .map_err(|e| AuditError::io(&s.path, e))?;
            active = Some(Active {
                file: wf,
                path: s.path.clone(),
                first: s.first_index,
                len: s.committed_len,
                registered: true,
            });
        }
        handles.push(SegmentHandle {
            first: s.first_index,
            path: s.path.clone(),
            file: Arc::new(file),
        });
    }

    let checkpoint = match summary.last_checkpoint.clone() {
        Some(c) => c,
        None => {
            let cp = Checkpoint {
                origin: signer.name().to_owned(),
                size: 0,
                root: Frontier::new().root(),
                extensions: Vec::new(),
            };
            let note = signer
                .sign_checkpoint(&cp)
                .map_err(|e| AuditError::Key(e.to_string()))?;
            SignedCheckpoint {
                checkpoint: cp,
                note,
            }
        }
    };
    if summary.last_checkpoint.is_some()
        && file_cp.as_ref() != Some(&checkpoint.checkpoint)
        && let Err(e) = write_checkpoint_file(&dir, &checkpoint.note, true)
    {
        // Only a convenience copy (the segments hold every checkpoint): a full disk must not
        // keep the daemon from starting and serving reads and revocation lists. The writer
        // refreshes the file after its next batch.
        tracing::warn!(error = %e,
            "cannot refresh the audit checkpoint file at start-up; starting without it");
    }
    tracing::info!(
        dir = %dir.display(),
        events = summary.size,
        segments = handles.len(),
        checkpoints = summary.checkpoints,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "audit log opened"
    );
    let shared = Arc::new(Shared {
        dir,
        verifier,
        index: RwLock::new(Index {
            tree,
            offsets,
            segments: handles,
            checkpoint,
        }),
        last_error: Mutex::new(None),
        batches: std::sync::atomic::AtomicU64::new(0),
        stats: super::stats::CommitStats::new(
            active
                .as_ref()
                .and_then(|a| a.file.metadata().ok()?.modified().ok()),
        ),
    });
    Ok(Opened {
        shared,
        active,
        frontier: summary.frontier,
    })
}
