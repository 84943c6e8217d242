//! History read back from the log through an on-disk index: what the state no longer
//! holds in memory ([`crate::state`] evicts what decisions no longer need).
//!
//! The index maps the subjects of each event (its request, grant, certificate serial,
//! public key, host record id, whether it is an emergency grant) to leaf indices, and
//! each stretch of the log to the range of its event times. It lives in
//! `<audit dir>/history/`: one immutable file per [`CHUNK`] leaves
//! (`<first leaf, 20 digits>.idx`: sorted `(subject hash, leaf)` pairs, the time range,
//! the log's root at the chunk's end and a checksum), plus the leaves after the last
//! whole chunk, held in memory. It is derived data, brought up to date from the log
//! ([`History::catch_up`]) in the background and before every read; on open each chunk
//! file is checked (checksum, and root against the log) and a damaged, missing or
//! foreign one is rebuilt from the log. It can never make a read wrong: every event
//! found through it is read from the log and checked to be about the subject asked
//! for (a subject hash that collides only costs a read).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::{Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;

use crate::audit::{AuditError, AuditLog, LeafIndex, MAX_ENTRIES_PER_READ};
use crate::state::{Grant, Request, RequestStatus, State};

#[cfg(test)]
mod tests;

/// Leaves per index file.
pub const CHUNK: u64 = 65_536;
/// Directory of the index, in the audit directory.
pub const HISTORY_DIR: &str = "history";
const MAGIC: &[u8; 8] = b"BGHIDX1\n";
const FORMAT_VERSION: u32 = 1;
/// Bytes before the records: magic, version, first, leaves, root, min/max time, count.
const HEADER: usize = 8 + 4 + 8 + 8 + 32 + 8 + 8 + 8;

/// What an event is about, as the index finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A request.
    Request(RequestId),
    /// A grant.
    Grant(GrantId),
    /// A certificate serial.
    Serial(u64),
    /// A certified public key, by `SHA256:` fingerprint.
    Key(String),
    /// A host record id.
    Record(String),
    /// An emergency grant being issued.
    Emergency,
}

impl Subject {
    /// The 64-bit FNV-1a hash the index stores (stable across builds and versions).
    fn key(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            Subject::Request(r) => {
                eat(&[1]);
                eat(&r.0.to_be_bytes());
            }
            Subject::Grant(g) => {
                eat(&[2]);
                eat(&g.0.to_be_bytes());
            }
            Subject::Serial(s) => {
                eat(&[3]);
                eat(&s.to_be_bytes());
            }
            Subject::Key(k) => {
                eat(&[4]);
                eat(k.as_bytes());
            }
            Subject::Record(r) => {
                eat(&[5]);
                eat(r.as_bytes());
            }
            Subject::Emergency => eat(&[6]),
        }
        h
    }

    /// True when `e` is about this subject.
    #[must_use]
    pub fn matches(&self, e: &Event) -> bool {
        subjects(e).contains(self)
    }
}

/// The grant an event is about: its own, or the one an `action_refused` names.
#[must_use]
pub fn grant_of(e: &Event) -> Option<GrantId> {
    e.kind.grant_id().or_else(|| match &e.kind {
        EventKind::ActionRefused(a) => a.target.parse().ok(),
        _ => None,
    })
}

/// Everything the index records of `e`.
#[must_use]
pub fn subjects(e: &Event) -> Vec<Subject> {
    let mut out = Vec::new();
    if let Some(r) = e.kind.request_id() {
        out.push(Subject::Request(r));
    }
    if let Some(g) = grant_of(e) {
        out.push(Subject::Grant(g));
    }
    if let EventKind::GrantIssued(g) = &e.kind {
        out.push(Subject::Serial(g.serial));
        out.push(Subject::Key(g.key_fingerprint.clone()));
        if g.emergency {
            out.push(Subject::Emergency);
        }
    }
    if let Some(s) = e.kind.session() {
        out.push(Subject::Record(s.record_id.clone()));
    }
    out
}

/// One sealed index file.
#[derive(Debug)]
struct Chunk {
    first: u64,
    leaves: u64,
    max_time: u64,
    records: u64,
    file: File,
}

impl Chunk {
    fn record(&self, i: u64) -> std::io::Result<(u64, u64)> {
        let mut b = [0u8; 16];
        self.file.read_exact_at(&mut b, HEADER as u64 + i * 16)?;
        let (k, l) = b.split_at(8);
        Ok((
            u64::from_be_bytes(k.try_into().unwrap_or_default()),
            u64::from_be_bytes(l.try_into().unwrap_or_default()),
        ))
    }

    /// Leaves recorded under `key` (binary search, then the run of equal keys).
    fn find(&self, key: u64, out: &mut BTreeSet<u64>) -> std::io::Result<()> {
        let (mut lo, mut hi) = (0, self.records);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.record(mid)?.0 < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < self.records {
            let (k, leaf) = self.record(i)?;
            if k != key {
                break;
            }
            out.insert(leaf);
            i += 1;
        }
        Ok(())
    }
}

/// The index as loaded.
#[derive(Debug, Default)]
struct Index {
    loaded: bool,
    chunks: Vec<Chunk>,
    /// `(key, leaf)` of the leaves after the last chunk.
    tail: Vec<(u64, u64)>,
    /// Earliest and latest event time of the leaves after the last chunk (`MAX`, 0: none).
    tail_min: u64,
    tail_max: u64,
    /// Leaves indexed: `chunks.len() * chunk + leaves in the tail`.
    upto: u64,
}

/// The on-disk index of the log and the reads through it.
#[derive(Debug)]
pub struct History {
    log: AuditLog,
    dir: PathBuf,
    chunk: u64,
    index: Mutex<Index>,
}

impl History {
    /// The index of `log` in `<audit_dir>/history`. Nothing is read until first used.
    #[must_use]
    pub fn new(log: AuditLog, audit_dir: &Path) -> Self {
        Self::with_chunk(log, audit_dir, CHUNK)
    }

    /// [`new`](Self::new) with `chunk` leaves per file (tests).
    #[must_use]
    pub fn with_chunk(log: AuditLog, audit_dir: &Path, chunk: u64) -> Self {
        Self {
            log,
            dir: audit_dir.join(HISTORY_DIR),
            chunk: chunk.max(1),
            index: Mutex::new(Index::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the index up to the log's size: loads (and checks) the files on first use,
    /// then indexes the leaves not indexed yet, sealing each whole chunk into a file.
    /// Blocking: call it off the async workers.
    pub fn catch_up(&self) -> Result<u64, AuditError> {
        self.catch_up_while(|| true)
    }

    /// [`catch_up`](Self::catch_up), stopping between two batches once `go_on` says no
    /// (the daemon is stopping: indexing a long history must not hold up its exit; the
    /// sealed chunk files stay, and the next start goes on from them). Returns how far the
    /// index reaches.
    pub fn catch_up_while(&self, go_on: impl Fn() -> bool) -> Result<u64, AuditError> {
        // One batch per lock: a long rebuild does not shut out the reads it serves.
        loop {
            let mut ix = self.lock();
            if !ix.loaded {
                self.load(&mut ix);
            }
            let sealed = ix.chunks.last().map_or(0, |c| c.first + c.leaves);
            if ix.upto == sealed + self.chunk
                && let Err(e) = self.seal(&mut ix)
            {
                // Kept in memory; indexing waits at the chunk's end until it is written
                // (reads scan what is not indexed).
                tracing::warn!(error = %e, "history index file not written; retrying later");
                return Ok(ix.upto);
            }
            let end = self.log.size();
            if ix.upto >= end || !go_on() {
                return Ok(ix.upto);
            }
            let to = end
                .min(ix.upto + MAX_ENTRIES_PER_READ)
                .min((ix.upto / self.chunk + 1) * self.chunk);
            // What was just committed comes from the writer's memory (see `AuditLog::follow`).
            let from = ix.upto;
            let ix = &mut *ix;
            let visited = self.log.follow(from, to, |i, e| {
                ix.tail_min = ix.tail_min.min(e.time.0);
                ix.tail_max = ix.tail_max.max(e.time.0);
                for s in subjects(e) {
                    ix.tail.push((s.key(), i));
                }
                ix.upto = i + 1;
            })?;
            if visited == 0 {
                return Ok(ix.upto);
            }
        }
    }

    /// Loads the chunk files that are whole, undamaged and of this log, in order; removes
    /// the first that is not and every later one (they are rebuilt from the log).
    fn load(&self, ix: &mut Index) {
        ix.loaded = true;
        let mut first = 0;
        loop {
            let p = self.chunk_path(first);
            match self.open_chunk(&p, first) {
                Ok(Some(c)) => {
                    first += c.leaves;
                    ix.chunks.push(c);
                }
                Ok(None) => break,
                Err(why) => {
                    tracing::warn!(file = %p.display(), reason = %why, "history index file ignored; rebuilding it from the log");
                    break;
                }
            }
        }
        ix.upto = first;
        ix.tail_min = u64::MAX;
        ix.tail_max = 0;
        // Later files (after a damaged one, or of a longer, foreign log) are stale.
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let stale = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".idx"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= first);
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    fn chunk_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.idx"))
    }

    /// The chunk file at `p` if it is whole and of this log; `Ok(None)` when absent.
    fn open_chunk(&self, p: &Path, first: u64) -> Result<Option<Chunk>, String> {
        let bytes = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if bytes.len() < HEADER + 32 || &bytes[..8] != MAGIC {
            return Err("not an index file".into());
        }
        let (content, sum) = bytes.split_at(bytes.len() - 32);
        if leaf_hash(content) != sum {
            return Err("checksum mismatch".into());
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&content[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let version = u32::from_be_bytes([content[8], content[9], content[10], content[11]]);
        if version != FORMAT_VERSION {
            return Err(format!("format version {version}"));
        }
        let (f, leaves) = (u64_at(12), u64_at(20));
        if f != first || leaves != self.chunk {
            return Err(format!(
                "covers {f}+{leaves}, expected {first}+{}",
                self.chunk
            ));
        }
        let root = &content[28..60];
        let end = first + leaves;
        if end > self.log.size() {
            return Err("covers leaves the log does not have".into());
        }
        let log_root = self.log.root_at(end).map_err(|e| e.to_string())?;
        if log_root != root {
            return Err("the log's root differs: it indexes another log".into());
        }
        let records = u64_at(76);
        if content.len() as u64 != HEADER as u64 + records * 16 {
            return Err("record count does not match the size".into());
        }
        let file = File::open(p).map_err(|e| e.to_string())?;
        Ok(Some(Chunk {
            first,
            leaves,
            max_time: u64_at(68),
            records,
            file,
        }))
    }

    /// Writes the tail (a whole chunk) to its file, atomically, and opens it.
    fn seal(&self, ix: &mut Index) -> Result<(), String> {
        let first = ix.upto - self.chunk;
        let root = self
            .log
            .root_at(ix.upto)
            .map_err(|e| format!("the log's root at {}: {e}", ix.upto))?;
        let mut tail = std::mem::take(&mut ix.tail);
        tail.sort_unstable();
        tail.dedup();
        let mut buf = Vec::with_capacity(HEADER + tail.len() * 16 + 32);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        buf.extend_from_slice(&first.to_be_bytes());
        buf.extend_from_slice(&self.chunk.to_be_bytes());
        buf.extend_from_slice(&root);
        buf.extend_from_slice(&ix.tail_min.to_be_bytes());
        buf.extend_from_slice(&ix.tail_max.to_be_bytes());
        buf.extend_from_slice(&(tail.len() as u64).to_be_bytes());
        for (k, l) in &tail {
            buf.extend_from_slice(&k.to_be_bytes());
            buf.extend_from_slice(&l.to_be_bytes());
        }
        let sum = leaf_hash(&buf);
        buf.extend_from_slice(&sum);
        let p = self.chunk_path(first);
        let written = (|| -> std::io::Result<File> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = p.with_extension("tmp");
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&buf)?;
            // Derived data: no fsync; a torn file fails its checksum and is rebuilt.
            std::fs::rename(&tmp, &p)?;
            File::open(&p)
        })();
        match written {
            Ok(file) => {
                ix.chunks.push(Chunk {
                    first,
                    leaves: self.chunk,
                    max_time: ix.tail_max,
                    records: tail.len() as u64,
                    file,
                });
                ix.tail_min = u64::MAX;
                ix.tail_max = 0;
                Ok(())
            }
            Err(e) => {
                ix.tail = tail;
                Err(format!("{}: {e}", p.display()))
            }
        }
    }

    /// Leaves whose events may be about `subject`, in order.
    pub fn leaves(&self, subject: &Subject) -> Result<BTreeSet<LeafIndex>, AuditError> {
        self.catch_up()?;
        let key = subject.key();
        let ix = self.lock();
        let mut out = BTreeSet::new();
        for c in &ix.chunks {
            c.find(key, &mut out)
                .map_err(|e| AuditError::io(&self.dir, e))?;
        }
        out.extend(ix.tail.iter().filter(|(k, _)| *k == key).map(|(_, l)| *l));
        let upto = ix.upto;
        drop(ix);
        // What is not indexed (appended since, or waiting for its index file) is scanned.
        let end = self.log.size();
        let mut at = upto;
        while at < end {
            let to = end.min(at + MAX_ENTRIES_PER_READ);
            for (i, e) in self.log.events(at, to)? {
                if subjects(&e).iter().any(|s| s.key() == key) {
                    out.insert(i);
                }
            }
            at = to;
        }
        Ok(out)
    }

    /// The events at `leaves` (read from the log) that `keep` accepts.
    pub fn events_at(
        &self,
        leaves: impl IntoIterator<Item = LeafIndex>,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<Vec<(LeafIndex, Event)>, AuditError> {
        let mut out = Vec::new();
        for i in leaves {
            for (i, e) in self.log.events(i, i + 1)? {
                if keep(&e) {
                    out.push((i, e));
                }
            }
        }
        Ok(out)
    }

    /// The events about `subject`, in log order.
    pub fn events_of(&self, subject: &Subject) -> Result<Vec<(LeafIndex, Event)>, AuditError> {
        let leaves = self.leaves(subject)?;
        self.events_at(leaves, |e| subject.matches(e))
    }

    /// Leaf ranges that may hold events at or after `since` (Unix ms), in order, within
    /// `start..end`.
    pub fn ranges_since(
        &self,
        since: Timestamp,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, u64)>, AuditError> {
        let upto = self.catch_up()?;
        let ix = self.lock();
        let mut ranges: Vec<(u64, u64)> = ix
            .chunks
            .iter()
            .filter(|c| c.max_time >= since.0)
            .map(|c| (c.first, c.first + c.leaves))
            .collect();
        let tail_first = ix.chunks.last().map_or(0, |c| c.first + c.leaves);
        if tail_first < upto && ix.tail_max >= since.0 {
            ranges.push((tail_first, upto));
        }
        // Leaves appended since the catch-up are not indexed: they may match.
        ranges.push((upto, end.max(upto)));
        Ok(ranges
            .into_iter()
            .map(|(a, b)| (a.max(start), b.min(end)))
            .filter(|(a, b)| a < b)
            .collect())
    }

    /// The events of grant `g`'s story: the grant's own and those of its request, in log
    /// order (what `audit show --grant` prints).
    pub fn grant_story(&self, g: GrantId) -> Result<Vec<(LeafIndex, Event)>, AuditError> {
        let own = self.events_of(&Subject::Grant(g))?;
        let request = own.iter().find_map(|(_, e)| match &e.kind {
            EventKind::GrantIssued(i) if i.grant_id == g => Some(i.request_id),
            _ => None,
        });
        let mut leaves: BTreeSet<LeafIndex> = own.iter().map(|(i, _)| *i).collect();
        if let Some(r) = request {
            leaves.extend(self.leaves(&Subject::Request(r))?);
        }
        self.events_at(leaves, |e| {
            grant_of(e) == Some(g) || request.is_some_and(|r| e.kind.request_id() == Some(r))
        })
    }

    /// Request `id` and its grant, rebuilt from their events in the log.
    pub fn request(&self, id: RequestId) -> Result<Option<(Request, Option<Grant>)>, AuditError> {
        let mut leaves = self.leaves(&Subject::Request(id))?;
        let grant = self
            .events_at(
                leaves.iter().copied(),
                |e| matches!(&e.kind, EventKind::GrantIssued(g) if g.request_id == id),
            )?
            .into_iter()
            .find_map(|(_, e)| e.kind.grant_id());
        if let Some(g) = grant {
            leaves.extend(self.leaves(&Subject::Grant(g))?);
        }
        let st = self.rebuild(leaves)?;
        let Some(r) = st.request(id).map(std::borrow::Cow::into_owned) else {
            return Ok(None);
        };
        let g = match r.status {
            RequestStatus::Issued(g) => st.grants.get(&g).cloned(),
            _ => None,
        };
        Ok(Some((r, g)))
    }

    /// Grant `id` and its request, rebuilt from their events in the log.
    pub fn grant(&self, id: GrantId) -> Result<Option<(Grant, Option<Request>)>, AuditError> {
        let mut leaves = self.leaves(&Subject::Grant(id))?;
        let request = self
            .events_at(
                leaves.iter().copied(),
                |e| matches!(&e.kind, EventKind::GrantIssued(g) if g.grant_id == id),
            )?
            .into_iter()
            .find_map(|(_, e)| e.kind.request_id());
        if let Some(r) = request {
            leaves.extend(self.leaves(&Subject::Request(r))?);
        }
        let st = self.rebuild(leaves)?;
        let Some(g) = st.grants.get(&id).cloned() else {
            return Ok(None);
        };
        let r = st
            .request(g.issued.request_id)
            .map(std::borrow::Cow::into_owned);
        Ok(Some((g, r)))
    }

    /// The grants issued as emergencies, rebuilt (with their requests), oldest first.
    pub fn emergency_grants(&self) -> Result<Vec<(Grant, Option<Request>)>, AuditError> {
        let issued = self.events_of(&Subject::Emergency)?;
        let mut out = Vec::new();
        for (_, e) in issued {
            if let EventKind::GrantIssued(g) = &e.kind
                && let Some(found) = self.grant(g.grant_id)?
            {
                out.push(found);
            }
        }
        Ok(out)
    }

    /// The newest grant of the public key with `fingerprint`.
    pub fn newest_grant_of_key(&self, fingerprint: &str) -> Result<Option<GrantId>, AuditError> {
        let subject = Subject::Key(fingerprint.to_owned());
        Ok(self
            .events_of(&subject)?
            .into_iter()
            .rev()
            .find_map(|(_, e)| e.kind.grant_id()))
    }

    /// True when a host record with this id is in the log.
    pub fn has_record(&self, record_id: &str) -> Result<bool, AuditError> {
        let subject = Subject::Record(record_id.to_owned());
        Ok(!self.events_of(&subject)?.is_empty())
    }

    /// A state holding only what the events at `leaves` say (nothing evicted).
    fn rebuild(&self, leaves: BTreeSet<LeafIndex>) -> Result<State, AuditError> {
        let mut st = State {
            keep_history: true,
            ..State::default()
        };
        for (i, e) in self.events_at(leaves, |_| true)? {
            st.apply(i, &e);
        }
        Ok(st)
    }
}
