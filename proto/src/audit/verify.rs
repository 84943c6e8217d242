//! Reading and verifying a log directory: the scan shared by the daemon's recovery and the
//! auditor's offline `audit verify`.
//!
//! The scan walks every segment in order and checks, for every record, the framing and
//! CRC; for every checkpoint, that its size and root equal those recomputed from the events
//! before it, and its Ed25519 signature. Events are handed to the caller only once a valid
//! checkpoint covers them.
//!
//! Damage is told apart from a torn write like this: bytes after the last valid checkpoint
//! of the **last** segment that do not frame as records (or events no checkpoint covers) are
//! a torn tail — a batch that was being written when the process died, never acknowledged.
//! Anything else — a bad record in an earlier segment, a bad record followed by a valid
//! checkpoint record, a checkpoint with a correct CRC but a wrong root or signature — is
//! damage, reported with the segment file, byte offset and reason.

use std::path::{Path, PathBuf};

use super::event::{Event, MAX_EVENT_LEN};
use super::merkle::{Frontier, Hash, leaf_hash};
use super::note::{Checkpoint, MAX_NOTE_LEN, NoteVerifier, SignedCheckpoint};
use super::segment::{
    CHECKPOINT_FILE, Parsed, RECORD_HEADER_LEN, RecordKind, list_segments, parse_header_payload,
    parse_record,
};

/// Why a log directory could not be read or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record is damaged or inconsistent: tampering or media corruption.
    #[error("{}: byte {offset}: {reason}", segment.display())]
    Damaged {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the record in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log does not extend a checkpoint saved earlier.
    #[error("{0}")]
    NotExtending(String),
    /// The saved checkpoint given to compare with is itself invalid.
    #[error("saved checkpoint: {0}")]
    BadSavedCheckpoint(String),
}

impl LogError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One committed event as seen by the scan.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// Leaf index.
    pub index: u64,
    /// Segment file holding it.
    pub segment: &'a Path,
    /// Byte offset of its record in the segment.
    pub offset: u64,
    /// The leaf bytes (canonical event encoding).
    pub leaf: &'a [u8],
    /// `leaf_hash(leaf)`.
    pub leaf_hash: Hash,
}

/// How thoroughly to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Verify the signature of every checkpoint. When false, every checkpoint's size and root
    /// are still checked, but only the last checkpoint of each segment has its signature
    /// verified (it commits to everything before it): faster start-up for the daemon.
    pub every_signature: bool,
    /// Tree sizes at which to record the root (for consistency with saved checkpoints).
    pub roots_at: Vec<u64>,
}

/// Bytes after the last valid checkpoint of the last segment (an interrupted batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset where the tail starts (end of the last valid checkpoint record, or 0).
    pub offset: u64,
    /// Length of the tail in bytes.
    pub len: u64,
    /// What was found there.
    pub reason: String,
}

/// One segment as found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// Leaf index of its first event.
    pub first_index: u64,
    /// Number of committed events in it.
    pub events: u64,
    /// End of its last valid checkpoint record (0 if it has none).
    pub committed_len: u64,
    /// Its length on disk.
    pub file_len: u64,
}

/// What a successful scan found.
#[derive(Debug, Clone)]
pub struct ScanSummary {
    /// Number of committed events.
    pub size: u64,
    /// The tree frontier at `size`.
    pub frontier: Frontier,
    /// The last valid checkpoint (`None` for an empty log).
    pub last_checkpoint: Option<SignedCheckpoint>,
    /// Number of checkpoint records checked.
    pub checkpoints: u64,
    /// The segments, in order.
    pub segments: Vec<SegmentInfo>,
    /// An interrupted batch at the end of the last segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Roots recorded at the sizes asked for in [`ScanOptions::roots_at`] (those reached).
    pub roots: Vec<(u64, Hash)>,
}

struct Pending {
    offset: u64,
    start: usize,
    end: usize,
    leaf_hash: Hash,
}

/// Where [`scan_log_from`] resumes: the events before it are known (by an index the
/// caller trusts), the scan checks and hands over only what follows.
#[derive(Debug, Clone)]
pub struct ScanFrom {
    /// First leaf index of the segment to resume in.
    pub segment_first: u64,
    /// Byte offset in that segment of the first record to read (just after a known event).
    pub offset: u64,
    /// The tree of the events before the first one read.
    pub frontier: Frontier,
}

/// Scans a log directory (`<dir>/segments/*.seg`), calling `visit` for every committed event
/// in order. An error from `visit` stops the scan and is reported as damage at that record.
pub fn scan_log(
    dir: &Path,
    verifier: &NoteVerifier,
    opts: &ScanOptions,
    visit: impl FnMut(EventRef<'_>) -> Result<(), String>,
) -> Result<ScanSummary, LogError> {
    scan_log_from(dir, verifier, opts, None, visit)
}

/// [`scan_log`] from a point inside the log: segments before `from.segment_first` and the
/// bytes before `from.offset` are not read, and the tree starts as `from.frontier`. The
/// summary then tells about what was read: the resumed segment's [`SegmentInfo::events`]
/// counts only the events after the offset, and its `committed_len` is at least the offset.
pub fn scan_log_from(
    dir: &Path,
    verifier: &NoteVerifier,
    opts: &ScanOptions,
    from: Option<&ScanFrom>,
    mut visit: impl FnMut(EventRef<'_>) -> Result<(), String>,
) -> Result<ScanSummary, LogError> {
    let mut segments = list_segments(dir).map_err(|e| LogError::io(&dir.join("segments"), e))?;
    if let Some(f) = from {
        segments.retain(|(first, _)| *first >= f.segment_first);
        if segments.first().map(|s| s.0) != Some(f.segment_first) {
            return Err(LogError::Damaged {
                segment: dir
                    .join("segments")
                    .join(super::segment::segment_file_name(f.segment_first)),
                offset: 0,
                reason: "the segment to resume the scan in is missing".into(),
            });
        }
    }
    let mut committed = from.map_or_else(Frontier::new, |f| f.frontier.clone());
    let mut summary = ScanSummary {
        size: 0,
        frontier: Frontier::new(),
        last_checkpoint: None,
        checkpoints: 0,
        segments: Vec::new(),
        torn_tail: None,
        roots: Vec::new(),
    };
    if opts.roots_at.contains(&0) {
        summary.roots.push((0, committed.root()));
    }
    let count = segments.len();
    for (si, (first, path)) in segments.into_iter().enumerate() {
        let is_last = si + 1 == count;
        let damaged = |offset: usize, reason: String| LogError::Damaged {
            segment: path.clone(),
            offset: offset as u64,
            reason,
        };
        // Where this segment's reading starts: its first record, or where the scan resumes.
        let resume = from.filter(|_| si == 0).map(|f| f.offset);
        if resume.is_none() && first != committed.size() {
            return Err(damaged(
                0,
                format!(
                    "segment starts at leaf {first}, but the segments before it hold {} events: \
                     a segment is missing, renamed or out of place",
                    committed.size()
                ),
            ));
        }
        let (data, start) = read_segment(&path, resume.unwrap_or(0))?;
        if start > data.len() {
            return Err(damaged(
                start,
                format!(
                    "the scan resumes at byte {start}, past the segment's end ({} bytes)",
                    data.len()
                ),
            ));
        }
        // Leaf index of the first event this scan reads in this segment.
        let base = committed.size();
        let mut info = SegmentInfo {
            path: path.clone(),
            first_index: first,
            events: 0,
            committed_len: start as u64,
            file_len: data.len() as u64,
        };
        let mut work = committed.clone();
        let mut pending: Vec<Pending> = Vec::new();
        // Last checkpoint whose signature is not verified yet (fast mode), with its offset.
        let mut deferred: Option<(usize, SignedCheckpoint)> = None;
        let mut pos = start;
        let mut problem: Option<(usize, String)> = None;
        while pos < data.len() {
            let (kind, payload, len) = match parse_record(&data[pos..]) {
                Parsed::Record { kind, payload, len } => (kind, payload, len),
                Parsed::Truncated { need } => {
                    problem = Some((
                        pos,
                        format!(
                            "truncated record: {} bytes left, the record needs {need}",
                            data.len() - pos
                        ),
                    ));
                    break;
                }
                Parsed::Invalid(reason) => {
                    problem = Some((pos, reason));
                    break;
                }
            };
            if pos == 0 {
                if kind != RecordKind::Header {
                    return Err(damaged(0, "first record is not a segment header".into()));
                }
                let h = parse_header_payload(payload).map_err(|r| damaged(0, r))?;
                if h != first {
                    return Err(damaged(
                        0,
                        format!("segment header says first leaf {h}, file name says {first}"),
                    ));
                }
                pos += len;
                continue;
            }
            match kind {
                RecordKind::Header => {
                    return Err(damaged(
                        pos,
                        "segment header in the middle of a segment".into(),
                    ));
                }
                RecordKind::Event => {
                    if payload.len() > MAX_EVENT_LEN {
                        return Err(damaged(
                            pos,
                            format!("event of {} bytes exceeds the limit", payload.len()),
                        ));
                    }
                    let h = leaf_hash(payload);
                    work.push(h);
                    if opts.roots_at.contains(&work.size()) {
                        summary.roots.push((work.size(), work.root()));
                    }
                    pending.push(Pending {
                        offset: pos as u64,
                        start: pos + RECORD_HEADER_LEN,
                        end: pos + len,
                        leaf_hash: h,
                    });
                }
                RecordKind::Checkpoint => {
                    let signed = check_checkpoint(payload, &work, verifier, opts.every_signature)
                        .map_err(|r| damaged(pos, r))?;
                    for p in pending.drain(..) {
                        let index = base + info.events;
                        visit(EventRef {
                            index,
                            segment: &path,
                            offset: p.offset,
                            leaf: &data[p.start..p.end],
                            leaf_hash: p.leaf_hash,
                        })
                        .map_err(|r| damaged(p.offset as usize, format!("event {index}: {r}")))?;
                        info.events += 1;
                    }
                    debug_assert_eq!(base + info.events, work.size());
                    summary.checkpoints += 1;
                    deferred = if opts.every_signature {
                        None
                    } else {
                        Some((pos, signed.clone()))
                    };
                    summary.last_checkpoint = Some(signed);
                    info.committed_len = (pos + len) as u64;
                    committed.clone_from(&work);
                }
            }
            pos += len;
        }
        if let Some((at, cp)) = deferred {
            verifier.verify(&cp.note).map_err(|e| {
                damaged(
                    at,
                    format!("checkpoint at size {}: {e}", cp.checkpoint.size),
                )
            })?;
        }
        // Anything after the last valid checkpoint: a torn tail (last segment) or damage.
        let tail_start = info.committed_len as usize;
        let problem_at = problem.as_ref().map_or(tail_start, |(at, _)| *at);
        let tail_reason = match problem {
            Some((at, reason)) => {
                if let Some(cp_at) = find_checkpoint_after(&data, at + 1, verifier.name()) {
                    return Err(damaged(
                        at,
                        format!(
                            "{reason}; a checkpoint record follows at byte {cp_at}, so this is \
                             damage, not an interrupted write"
                        ),
                    ));
                }
                Some(format!("at byte {at}: {reason}"))
            }
            None if !pending.is_empty() => Some(format!(
                "{} events after byte {tail_start} are not covered by a checkpoint",
                pending.len()
            )),
            None if data.is_empty() => Some("empty segment file".into()),
            None if info.committed_len == 0 => Some("segment has no checkpoint".into()),
            None => None,
        };
        if let Some(reason) = tail_reason {
            if !is_last {
                return Err(damaged(
                    problem_at,
                    format!("{reason}; only the last segment may end in an interrupted write"),
                ));
            }
            summary.torn_tail = Some(TornTail {
                segment: path.clone(),
                offset: tail_start as u64,
                len: (data.len() - tail_start) as u64,
                reason,
            });
        }
        summary.roots.retain(|(n, _)| *n <= committed.size());
        summary.segments.push(info);
    }
    summary.size = committed.size();
    summary.frontier = committed;
    Ok(summary)
}

/// The bytes of a segment file from `from` on (those before it are left zero, and a zero page
/// never read takes no memory), and `from` as an index into them.
fn read_segment(path: &Path, from: u64) -> Result<(Vec<u8>, usize), LogError> {
    if from == 0 {
        let data = std::fs::read(path).map_err(|e| LogError::io(path, e))?;
        return Ok((data, 0));
    }
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| LogError::io(path, e))?;
    let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    let start = usize::try_from(from).unwrap_or(usize::MAX);
    let Ok(len) = usize::try_from(len) else {
        return Err(LogError::io(
            path,
            std::io::Error::other("segment too large"),
        ));
    };
    let mut data = vec![0u8; len];
    if start < len {
        file.read_exact_at(&mut data[start..], from)
            .map_err(|e| LogError::io(path, e))?;
    }
    Ok((data, start))
}

/// Checks one checkpoint record's payload against the tree so far.
fn check_checkpoint(
    payload: &[u8],
    work: &Frontier,
    verifier: &NoteVerifier,
    verify_signature: bool,
) -> Result<SignedCheckpoint, String> {
    let note = std::str::from_utf8(payload).map_err(|_| "checkpoint is not UTF-8".to_owned())?;
    let checkpoint = if verify_signature {
        verifier
            .verify_checkpoint(note)
            .map_err(|e| format!("checkpoint: {e}"))?
    } else {
        let body = note
            .rfind("\n\n")
            .map(|i| &note[..=i])
            .ok_or_else(|| "checkpoint is not a signed note".to_owned())?;
        Checkpoint::parse(body).map_err(|e| e.to_string())?
    };
    if checkpoint.origin != verifier.name() {
        return Err(format!(
            "checkpoint origin {:?} is not the log's origin {:?}",
            checkpoint.origin,
            verifier.name()
        ));
    }
    if checkpoint.size != work.size() {
        return Err(format!(
            "checkpoint says {} events, {} events precede it",
            checkpoint.size,
            work.size()
        ));
    }
    if checkpoint.root != work.root() {
        return Err(format!(
            "checkpoint root for size {} differs from the root recomputed from the events \
             (an event was changed)",
            checkpoint.size
        ));
    }
    Ok(SignedCheckpoint {
        checkpoint,
        note: note.to_owned(),
    })
}

/// Offset of a record that frames as a checkpoint of this log at or after `from`, if any.
fn find_checkpoint_after(data: &[u8], from: usize, origin: &str) -> Option<usize> {
    let prefix = format!("{origin}\n");
    (from..data.len().saturating_sub(RECORD_HEADER_LEN)).find(|&p| {
        // Cheap filters first: the kind byte and a length a checkpoint note can have.
        let len = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]) as usize;
        data[p + 8] == RecordKind::Checkpoint as u8
            && len <= MAX_NOTE_LEN
            && matches!(parse_record(&data[p..]), Parsed::Record { kind: RecordKind::Checkpoint, payload, .. }
                if payload.starts_with(prefix.as_bytes()))
    })
}

/// What an offline verification established.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The scan's findings.
    pub summary: ScanSummary,
    /// Number of events per code, in code order.
    pub events_by_code: Vec<(super::event::EventCode, u64)>,
    /// The saved checkpoint the log was shown to extend, if one was given.
    pub extends: Option<Checkpoint>,
    /// Warnings that do not fail verification (e.g. a torn tail, a stale checkpoint file).
    pub warnings: Vec<String>,
}

/// Verifies a copy of a log directory offline with only the log's public key.
///
/// Checks framing and CRC of every record, every checkpoint signature, every checkpoint's
/// size and root against the events, that every event decodes, that the `checkpoint` file
/// (if present) is consistent with the segments, and, given `since` (a signed checkpoint
/// saved earlier), that the log extends it: no rollback, no deleted tail, no fork.
pub fn verify_dir(
    dir: &Path,
    verifier: &NoteVerifier,
    since: Option<&str>,
) -> Result<VerifyReport, LogError> {
    let saved = since
        .map(|note| {
            verifier
                .verify_checkpoint(note)
                .map_err(|e| LogError::BadSavedCheckpoint(e.to_string()))
        })
        .transpose()?;
    let file_cp = read_checkpoint_file(dir, verifier)?;
    let mut roots_at = Vec::new();
    roots_at.extend(saved.as_ref().map(|c| c.size));
    roots_at.extend(file_cp.as_ref().map(|c| c.size));
    let opts = ScanOptions {
        every_signature: true,
        roots_at,
    };
    let mut counts = [0u64; super::event::EventCode::ALL.len()];
    let summary = scan_log(dir, verifier, &opts, |e| {
        let ev = Event::decode(e.leaf).map_err(|d| d.to_string())?;
        // Codes are not contiguous (a code is never reused): count by position in ALL.
        if let Some(i) = super::event::EventCode::ALL
            .iter()
            .position(|c| *c == ev.code())
        {
            counts[i] += 1;
        }
        Ok(())
    })?;
    let mut warnings = Vec::new();
    if let Some(t) = &summary.torn_tail {
        warnings.push(format!(
            "{}: {} bytes after byte {} are an interrupted write, not covered by any checkpoint \
             ({}); the daemon cuts them at start-up",
            t.segment.display(),
            t.len,
            t.offset,
            t.reason
        ));
    }
    let root_at = |n: u64| summary.roots.iter().find(|(s, _)| *s == n).map(|(_, r)| *r);
    if let Some(c) = &file_cp {
        if c.size > summary.size {
            return Err(LogError::NotExtending(format!(
                "{}: the checkpoint file covers {} events but the segments hold only {}: \
                 events were removed (deleted or rolled-back segment)",
                dir.join(CHECKPOINT_FILE).display(),
                c.size,
                summary.size
            )));
        }
        if root_at(c.size) != Some(c.root) {
            return Err(LogError::NotExtending(format!(
                "{}: the checkpoint file's root for size {} differs from the segments': \
                 history was rewritten (fork)",
                dir.join(CHECKPOINT_FILE).display(),
                c.size
            )));
        }
        if c.size < summary.size {
            warnings.push(format!(
                "the checkpoint file covers {} of {} events (it is refreshed lazily)",
                c.size, summary.size
            ));
        }
    }
    if let Some(s) = &saved {
        if s.size > summary.size {
            return Err(LogError::NotExtending(format!(
                "the saved checkpoint covers {} events but the log holds only {}: events were \
                 removed (rollback to an older copy or a deleted segment)",
                s.size, summary.size
            )));
        }
        if root_at(s.size) != Some(s.root) {
            return Err(LogError::NotExtending(format!(
                "the log's root at size {} differs from the saved checkpoint's: history was \
                 rewritten (fork)",
                s.size
            )));
        }
    }
    let events_by_code = super::event::EventCode::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (*c, n))
        .collect();
    Ok(VerifyReport {
        summary,
        events_by_code,
        extends: saved,
        warnings,
    })
}

/// Reads and verifies `<dir>/checkpoint`, if present.
pub fn read_checkpoint_file(
    dir: &Path,
    verifier: &NoteVerifier,
) -> Result<Option<Checkpoint>, LogError> {
    let path = dir.join(CHECKPOINT_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    let text = String::from_utf8(text).map_err(|_| LogError::Damaged {
        segment: path.clone(),
        offset: 0,
        reason: "checkpoint file is not UTF-8".into(),
    })?;
    verifier
        .verify_checkpoint(&text)
        .map(Some)
        .map_err(|e| LogError::Damaged {
            segment: path,
            offset: 0,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
