//! Opening and recovering the log directory, and what readers share with the writer.
//!
//! Start-up does not read the history: the index on disk ([`super::index`]) holds every
//! entry's offset and the tree's hashes up to its watermark, checked against the root
//! recorded with it; only the segments' bytes after it are scanned (checked as by the full
//! scan: framing, CRC, every checkpoint's size and root, the last one's signature) and
//! indexed. An index that cannot be trusted is rebuilt from every segment, with a log line.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use breakglass_proto::audit::merkle::{leaf_hash, root_of, root_with_leaves};
use breakglass_proto::audit::segment::{
    CHECKPOINT_FILE, MAX_PAYLOAD_LEN, PUBLIC_KEY_FILE, Parsed, RECORD_HEADER_LEN, RecordKind,
    SEGMENTS_DIR, list_segments, parse_record,
};
use breakglass_proto::audit::verify::{
    ScanFrom, ScanOptions, ScanSummary, read_checkpoint_file, scan_log_from,
};
use breakglass_proto::audit::{
    Checkpoint, Event, Frontier, Hash, NoteSigner, NoteVerifier, SignedCheckpoint,
};

use super::base::{AuditConfig, AuditError, LeafIndex};
use super::index::{DiskIndex, INDEX_DIR, Watermark};

/// A segment readers can read from.
pub(crate) struct SegmentHandle {
    pub first: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
}

/// What readers see: only durable, checkpointed state. The entries' offsets and the tree's
/// hashes are in [`Shared::disk`], up to `checkpoint.checkpoint.size`.
pub(crate) struct Index {
    pub segments: Vec<SegmentHandle>,
    pub checkpoint: SignedCheckpoint,
}

impl Index {
    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.checkpoint.checkpoint.size
    }

    /// The segment holding entry `i` (which must be below [`Self::size`]).
    pub fn segment_of(&self, i: u64) -> Option<&SegmentHandle> {
        let s = self.segments.partition_point(|s| s.first <= i);
        s.checked_sub(1).map(|s| &self.segments[s])
    }
}

/// State shared by the handle and the writer thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub verifier: NoteVerifier,
    index: RwLock<Index>,
    /// Every entry's offset and the tree's hashes (the writer appends, readers pread).
    pub disk: DiskIndex,
    /// Set when a read found the index disagreeing with the signed checkpoint: its
    /// watermark is gone and stays gone, so the next start rebuilds it.
    pub index_damaged: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Batches committed since open (one fdatasync each).
    pub batches: std::sync::atomic::AtomicU64,
    /// Commit measurements for the metrics listener.
    pub stats: super::stats::CommitStats,
    /// With a database, which entries this process appended (see [`OwnBatches`]).
    pub own: Mutex<OwnBatches>,
    /// The batches just committed, for the followers (see [`super::feed`]).
    pub feed: super::feed::Feed,
}

/// Most index ranges [`OwnBatches`] holds for a follower that does not come to read them
/// (a bound, not a size reached in use: the syslog follower takes them every 50 ms).
pub(crate) const MAX_OWN_BATCHES: usize = 1 << 16;

/// With a database the log holds every daemon's batches; the syslog follower writes only
/// the events this daemon appended, so that a syslog collector gets each event once, from
/// the daemon that took it. `shared_log` is false for the embedded log: every event is
/// this process's.
#[derive(Debug, Default)]
pub(crate) struct OwnBatches {
    pub shared_log: bool,
    /// The index ranges of this daemon's batches not yet taken by the follower, in order.
    pub ranges: VecDeque<std::ops::Range<u64>>,
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
    /// Notes that this process appended the entries `range` (to a shared log).
    pub(crate) fn own_batch(&self, range: std::ops::Range<u64>) {
        let mut own = self
            .own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if own.ranges.len() >= MAX_OWN_BATCHES {
            own.ranges.pop_front();
        }
        own.ranges.push_back(range);
    }

    /// Which of the entries `from..end` this process appended: `None` when all of them
    /// (the embedded log), else the ranges among them. Forgets the ranges before `end`.
    pub(crate) fn own_between(&self, from: u64, end: u64) -> Option<Vec<std::ops::Range<u64>>> {
        let mut own = self
            .own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !own.shared_log {
            return None;
        }
        let mine = own
            .ranges
            .iter()
            .filter(|r| r.start < end && r.end > from)
            .cloned()
            .collect();
        while own.ranges.front().is_some_and(|r| r.end <= end) {
            own.ranges.pop_front();
        }
        Some(mine)
    }
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

    /// The index disagrees with the signed checkpoint (`what`): logged, its watermark
    /// removed so that the next start rebuilds it from the segments, and the error for the
    /// reader. Nothing unchecked was served.
    pub fn index_damaged(&self, what: &str) -> AuditError {
        self.index_damaged.store(true, Ordering::SeqCst);
        self.disk.clear_cache();
        tracing::error!(reason = %what,
            "the audit index does not match the signed checkpoint; it is rebuilt from the \
             segments at the next start");
        if let Err(e) = self.disk.forget_watermark() {
            tracing::error!(error = %e, "cannot remove the audit index watermark");
        }
        AuditError::Corrupt {
            segment: self.dir.join(INDEX_DIR),
            offset: 0,
            reason: format!(
                "{what}: the index does not match the signed checkpoint (nothing was served \
                 from it); restart the daemon to rebuild it from the segments"
            ),
        }
    }

    /// Every durable event, in order (see [`super::AuditLog::replay`]).
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
            resume: None,
            path: PathBuf::new(),
            next: 0,
            end: idx.size(),
            done: false,
        }
    }

    /// Every durable event from entry `start` on, in order (see [`super::AuditLog::replay_from`]).
    pub fn replay_from(&self, start: u64) -> Result<Replay, AuditError> {
        let idx = self.read();
        let end = idx.size();
        if start > end {
            return Err(AuditError::OutOfRange(format!(
                "replay from entry {start}: the log holds {end} entries"
            )));
        }
        let (segments, resume) = if start == end {
            (VecDeque::new(), None)
        } else {
            let from = idx.segment_of(start).map_or(0, |s| s.first);
            let offset = self.disk.offsets(start, start + 1)?[0];
            (
                idx.segments
                    .iter()
                    .filter(|s| s.first >= from)
                    .map(|s| (s.first, s.path.clone()))
                    .collect(),
                Some(offset),
            )
        };
        Ok(Replay {
            segments,
            data: Vec::new(),
            pos: 0,
            resume,
            path: PathBuf::new(),
            next: start,
            end,
            done: false,
        })
    }
}

/// Iterator over the durable events, in order (see [`super::AuditLog::replay`]).
#[derive(Debug)]
pub struct Replay {
    segments: VecDeque<(u64, PathBuf)>,
    data: Vec<u8>,
    pos: usize,
    /// Where the first segment's reading starts (the index's offset of the first entry).
    resume: Option<u64>,
    path: PathBuf,
    next: u64,
    end: u64,
    done: bool,
}

impl Replay {
    /// Number of events in the log when the replay started (its last index + 1).
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
                let resume = self.resume.take();
                if resume.is_none() && first != self.next {
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
                self.pos = usize::try_from(resume.unwrap_or(0)).unwrap_or(usize::MAX);
                if self.pos >= self.data.len() {
                    let n = self.next;
                    return self.fail(format!("entry {n} is not where the index says"));
                }
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

/// Reads the record at `offset` of `file`: its kind and payload, and its length.
pub(crate) fn read_record_at(
    file: &File,
    path: &Path,
    offset: u64,
) -> Result<(RecordKind, Vec<u8>, u64), AuditError> {
    let corrupt = |reason: String| AuditError::Corrupt {
        segment: path.to_owned(),
        offset,
        reason,
    };
    let short = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt("the record runs past the end of the segment".into())
        } else {
            AuditError::io(path, e)
        }
    };
    let mut head = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut head, offset).map_err(short)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if len > MAX_PAYLOAD_LEN {
        return Err(corrupt(format!(
            "record length {len} exceeds the {MAX_PAYLOAD_LEN}-byte limit"
        )));
    }
    let mut rec = vec![0u8; RECORD_HEADER_LEN + len as usize];
    file.read_exact_at(&mut rec, offset).map_err(short)?;
    match parse_record(&rec) {
        Parsed::Record { kind, payload, len } => Ok((kind, payload.to_vec(), len as u64)),
        Parsed::Truncated { .. } => Err(corrupt("truncated record".into())),
        Parsed::Invalid(r) => Err(corrupt(r)),
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

/// Opens the log directory: checks the key, recovers the segments from where the index on
/// disk ends (or rebuilds the index from all of them when it cannot be trusted).
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

    let started = std::time::Instant::now();
    let disk = DiskIndex::open(&dir)?;
    let resumed = match resume_point(&dir, &disk) {
        Ok(from) => from,
        Err(why) => {
            rebuild_notice(&why);
            disk.forget_watermark()?;
            None
        }
    };
    let recovered = match recover(&dir, &verifier, &disk, resumed.as_ref(), file_cp.as_ref()) {
        Ok(r) => r,
        Err(Doubt::Index(why)) => {
            rebuild_notice(&why);
            disk.forget_watermark()?;
            recover(&dir, &verifier, &disk, None, file_cp.as_ref()).map_err(Doubt::into_error)?
        }
        Err(Doubt::Fatal(e)) => return Err(e),
    };
    let Recovered {
        summary,
        indexed_from,
    } = recovered;

    let seg_dir = dir.join(SEGMENTS_DIR);
    if let Some(t) = &summary.torn_tail {
        tracing::warn!(
            segment = %t.segment.display(),
            offset = t.offset,
            bytes = t.len,
            reason = %t.reason,
            "cutting the torn tail of the audit log (an interrupted batch that was never acknowledged)"
        );
        let torn_is_empty = summary
            .segments
            .last()
            .is_some_and(|s| s.committed_len == 0 && s.path == t.segment);
        if torn_is_empty {
            std::fs::remove_file(&t.segment).map_err(|e| AuditError::io(&t.segment, e))?;
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
    // The index now covers exactly the log: cut what a crash left beyond it, and record the
    // new watermark when entries were indexed (so the next start reads none of them again).
    disk.truncate(summary.size)?;
    if summary.size > indexed_from
        && let Err(e) = disk.sync(Watermark {
            size: summary.size,
            root: summary.frontier.root(),
        })
    {
        // The index is complete in the page cache; only the next start's speed depends on
        // the watermark (a full disk must not keep the daemon from serving reads).
        tracing::warn!(error = %e, "cannot sync the audit index at start-up; the next start reads more of the log");
    }

    let all = list_segments(&dir).map_err(|e| AuditError::io(&seg_dir, e))?;
    let committed_len = summary
        .segments
        .last()
        .map(|s| (s.first_index, s.committed_len));
    let mut handles = Vec::with_capacity(all.len());
    let mut active = None;
    let n = all.len();
    for (i, (first, path)) in all.into_iter().enumerate() {
        let is_last = i + 1 == n;
        if !is_last {
            make_read_only(&path)?;
        }
        let file = File::open(&path).map_err(|e| AuditError::io(&path, e))?;
        let meta = file.metadata().map_err(|e| AuditError::io(&path, e))?;
        let writable = meta.permissions().mode() & 0o200 != 0;
        if is_last && writable {
            let wf = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| AuditError::io(&path, e))?;
            let len = match committed_len {
                Some((f, len)) if f == first => len,
                // Not read by this start (the index covers it whole): its durable length is
                // its length, the torn tail of an earlier start having been cut then.
                _ => meta.len(),
            };
            active = Some(Active {
                file: wf,
                path: path.clone(),
                first,
                len,
                registered: true,
            });
        }
        handles.push(SegmentHandle {
            first,
            path,
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
        indexed = summary.size - indexed_from,
        checkpoints = summary.checkpoints,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "audit log opened"
    );
    let shared = Arc::new(Shared {
        dir,
        verifier,
        index: RwLock::new(Index {
            segments: handles,
            checkpoint,
        }),
        disk,
        index_damaged: AtomicBool::new(false),
        last_error: Mutex::new(None),
        batches: std::sync::atomic::AtomicU64::new(0),
        stats: super::stats::CommitStats::new(
            active
                .as_ref()
                .and_then(|a| a.file.metadata().ok()?.modified().ok()),
        ),
        own: Mutex::default(),
        feed: super::feed::Feed::default(),
    });
    Ok(Opened {
        shared,
        active,
        frontier: summary.frontier,
    })
}

/// Why the fast path was left: the index cannot be trusted (rebuild it and try again), or
/// the log itself is bad.
enum Doubt {
    Index(String),
    Fatal(AuditError),
}

impl From<AuditError> for Doubt {
    fn from(e: AuditError) -> Self {
        Doubt::Fatal(e)
    }
}

impl Doubt {
    /// After a full rebuild no index is left to doubt (a full scan says `Fatal` only).
    fn into_error(self) -> AuditError {
        match self {
            Doubt::Index(reason) => AuditError::Corrupt {
                segment: PathBuf::from(INDEX_DIR),
                offset: 0,
                reason,
            },
            Doubt::Fatal(e) => e,
        }
    }
}

fn rebuild_notice(why: &str) {
    tracing::warn!(reason = %why,
        "rebuilding the audit index from every segment (start-up reads the whole log once)");
}

/// Where to resume reading the segments: just after the last entry the index's watermark
/// covers, with the tree up to it read from the index and checked against the watermark's
/// root; `None` for an index of nothing. An error says why the index cannot be used.
fn resume_point(dir: &Path, disk: &DiskIndex) -> Result<Option<ScanFrom>, String> {
    let mark = disk.watermark()?;
    if mark.size == 0 {
        return Ok(None);
    }
    let on_disk = disk.entries_on_disk().map_err(|e| e.to_string())?;
    if on_disk < mark.size {
        return Err(format!(
            "the index files hold {on_disk} entries, their watermark says {}",
            mark.size
        ));
    }
    let frontier = disk.frontier(mark.size).map_err(|e| e.to_string())?;
    if frontier.root() != mark.root {
        return Err(format!(
            "the root recomputed from the index at {} entries differs from its watermark's",
            mark.size
        ));
    }
    // The last entry the index covers must be where it says, with the hash it says.
    let last = mark.size - 1;
    let offset = disk.offsets(last, mark.size).map_err(|e| e.to_string())?[0];
    let segments = list_segments(dir).map_err(|e| e.to_string())?;
    let Some((first, path)) = segments.iter().rev().find(|(f, _)| *f <= last) else {
        return Err(format!(
            "no segment holds entry {last}, which the index covers"
        ));
    };
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (kind, payload, len) = read_record_at(&file, path, offset).map_err(|e| e.to_string())?;
    let h = leaf_hash(&payload);
    let root =
        root_with_leaves(&disk.at(mark.size), mark.size, last, &[h]).map_err(|e| e.to_string())?;
    if kind != RecordKind::Event || root != mark.root {
        return Err(format!(
            "entry {last} at byte {offset} of {} is not the one the index covers",
            path.display()
        ));
    }
    Ok(Some(ScanFrom {
        segment_first: *first,
        offset: offset + len,
        frontier,
    }))
}

/// What [`recover`] found.
struct Recovered {
    summary: ScanSummary,
    /// Entries the index held before (the rest were indexed by this start).
    indexed_from: u64,
}

/// Entries indexed per write while the segments are scanned.
const INDEX_CHUNK: usize = 65_536;

/// Scans the segments from `from` (all of them when `None`), indexes what it reads, and
/// checks the result against the checkpoint file. The log is not changed (the torn tail is
/// the caller's to cut).
fn recover(
    dir: &Path,
    verifier: &NoteVerifier,
    disk: &DiskIndex,
    from: Option<&ScanFrom>,
    file_cp: Option<&Checkpoint>,
) -> Result<Recovered, Doubt> {
    let indexed_from = from.map_or(0, |f| f.frontier.size());
    disk.truncate(indexed_from)?;
    let opts = ScanOptions {
        every_signature: false,
        roots_at: file_cp
            .iter()
            .map(|c| c.size)
            .filter(|n| *n > indexed_from)
            .collect(),
    };
    let mut frontier = from.map_or_else(Frontier::new, |f| f.frontier.clone());
    let mut next = indexed_from;
    let mut offsets = Vec::with_capacity(INDEX_CHUNK);
    let mut stored: Vec<Hash> = Vec::with_capacity(2 * INDEX_CHUNK);
    let mut index_error = None;
    let flush = |offsets: &mut Vec<u64>, stored: &mut Vec<Hash>, next: &mut u64| {
        let r = disk.append(*next, offsets, stored);
        *next += offsets.len() as u64;
        offsets.clear();
        stored.clear();
        r
    };
    let scanned = scan_log_from(dir, verifier, &opts, from, |e| {
        frontier.push_stored(e.leaf_hash, |h| stored.push(h));
        offsets.push(e.offset);
        if offsets.len() >= INDEX_CHUNK
            && let Err(err) = flush(&mut offsets, &mut stored, &mut next)
        {
            let msg = err.to_string();
            index_error = Some(err);
            return Err(msg);
        }
        Ok(())
    });
    if let Some(e) = index_error {
        return Err(Doubt::Fatal(e));
    }
    let summary = match scanned {
        Ok(s) => s,
        Err(e) if from.is_some() => return Err(Doubt::Index(format!("resuming the scan: {e}"))),
        Err(e) => return Err(Doubt::Fatal(e.into())),
    };
    flush(&mut offsets, &mut stored, &mut next)?;
    let doubt = |reason: String| {
        if from.is_some() {
            Doubt::Index(reason)
        } else {
            Doubt::Fatal(AuditError::Corrupt {
                segment: dir.join(CHECKPOINT_FILE),
                offset: 0,
                reason,
            })
        }
    };
    if indexed_from > 0
        && summary
            .last_checkpoint
            .as_ref()
            .is_none_or(|c| c.checkpoint.size < indexed_from)
    {
        return Err(doubt(format!(
            "no checkpoint covers the {indexed_from} entries of the index"
        )));
    }
    if let Some(c) = file_cp {
        let root = if c.size <= indexed_from {
            Some(root_of(&disk.at(indexed_from), c.size)?)
        } else {
            summary
                .roots
                .iter()
                .find(|(n, _)| *n == c.size)
                .map(|r| r.1)
        };
        if c.size > summary.size {
            return Err(doubt(format!(
                "the checkpoint file covers {} events but the segments hold only {}: \
                 a segment was deleted or rolled back",
                c.size, summary.size
            )));
        }
        if root != Some(c.root) {
            return Err(doubt(format!(
                "the segments' root at size {} differs from the checkpoint file's: \
                 history was rewritten",
                c.size
            )));
        }
    }
    Ok(Recovered {
        summary,
        indexed_from,
    })
}
