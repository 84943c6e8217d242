//! State snapshots: start-up that does not grow with history.
//!
//! Every so often (`[audit] snapshot_every_events` events or `snapshot_every_seconds`
//! seconds, whichever comes first) the daemon's [`State`] is written to
//! `<audit dir>/state.snapshot`, tied to a checkpoint of the log: the file names the log
//! size it was taken at and the log's root at that size. At start-up
//! ([`load_state`]) the snapshot is loaded when it fits this log (its size is at most the
//! log's and its root is the log's root at that size) and only the events after it are
//! replayed; a damaged, truncated, foreign, unsigned or older-format snapshot is ignored
//! with a warning and the whole log is replayed. The snapshot is derived data: deleting it
//! only makes the next start-up slower.
//!
//! The snapshot is signed with the audit log's key, as the checkpoints are: the state holds
//! what decisions rest on (identities and their enrolled keys, disabled identities, grants,
//! quotas), so whoever can write the audit directory but does not hold the key must not be
//! able to hand the daemon a state of their making. A checksum would only catch damage.
//!
//! # File
//! ```text
//! "BGSTATE\n" | format version u32 | log size u64 | root [32] | body | body length u64
//!            | Ed25519 signature [64] by the audit key, over
//!              "breakglass state snapshot" ‖ 0x00 ‖ SHA-256 (RFC 6962 leaf hash) of everything before
//! ```
//! Written atomically (temp file, fsync, rename, directory fsync), mode 0600, as a stream:
//! the body's length follows it, so the file is hashed and written in one pass with
//! bounded memory, whatever the state's size.
//!
//! # Taking one while issuing
//! The state's big collections are persistent B-trees ([`crate::state::cow`]): [`take`]
//! clones the state under the state lock in time independent of the live grants (a few
//! pointers per big map, plus the small maps), releases the lock, and encodes the copy on
//! its own thread. Issuance goes on meanwhile; what it changes is copied node by node
//! while the snapshot still holds the old one, and freed when the snapshot is written.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::{Hash, NoteSigner, NoteVerifier};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::audit::{AuditError, AuditLog, LeafIndex, MAX_ENTRIES_PER_READ};
use crate::service::Service;
use crate::state::State;

mod codec;
#[cfg(test)]
mod tests;

/// File name of the snapshot in the audit directory.
pub const SNAPSHOT_FILE: &str = "state.snapshot";
/// Version of the snapshot format; a snapshot of another version is ignored (replayed).
pub const FORMAT_VERSION: u32 = 6;
/// What the audit key's signature of a snapshot is for (see [`NoteSigner::sign_digest`]).
pub const SIGNATURE_DOMAIN: &str = "breakglass state snapshot";
/// Length of the signature that ends the file.
const SIGNATURE_LEN: usize = 64;
const MAGIC: &[u8; 8] = b"BGSTATE\n";
/// Length of the header before the body: magic, version, log size, root.
const HEADER_LEN: usize = MAGIC.len() + 4 + 8 + 32;
/// Largest snapshot read (a bigger file is not one of ours).
const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// A state as of a log size.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Events of the log the state reflects (leaves `0..size`).
    pub size: u64,
    /// The log's root at `size`.
    pub root: Hash,
    /// The state.
    pub state: State,
}

/// What signs a snapshot: the audit log's key, held by the log or by itself.
pub trait SnapshotSigner {
    /// The key's signature of `digest` for `domain`, as [`NoteSigner::sign_digest`].
    fn sign_digest(&self, domain: &str, digest: &Hash) -> [u8; 64];
}

impl SnapshotSigner for AuditLog {
    fn sign_digest(&self, domain: &str, digest: &Hash) -> [u8; 64] {
        AuditLog::sign_digest(self, domain, digest)
    }
}

impl SnapshotSigner for NoteSigner {
    fn sign_digest(&self, domain: &str, digest: &Hash) -> [u8; 64] {
        NoteSigner::sign_digest(self, domain, digest)
    }
}

/// The bytes of a snapshot of `state` taken at log `size` with `root`, signed with `key`.
pub fn encode(
    state: &State,
    size: u64,
    root: &Hash,
    key: &dyn SnapshotSigner,
) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    encode_to(state, size, root, key, &mut bytes)?;
    Ok(bytes)
}

/// Writes what bytes [`encode`] returns into `out`, a piece at a time (bounded memory);
/// returns how many.
pub fn encode_to(
    state: &State,
    size: u64,
    root: &Hash,
    key: &dyn SnapshotSigner,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let mut hashed = Hashed::new(out);
    {
        let mut e = codec::Enc::to(&mut hashed);
        e.buf.extend_from_slice(MAGIC);
        e.buf.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        e.u64(size);
        e.buf.extend_from_slice(root);
        codec::encode_state(state, &mut e)?;
        e.flush()?;
    }
    let body = hashed.bytes - HEADER_LEN as u64;
    hashed
        .write_all(&body.to_be_bytes())
        .map_err(|e| e.to_string())?;
    let digest: Hash = hashed.hash.finalize().into();
    let signature = key.sign_digest(SIGNATURE_DOMAIN, &digest);
    hashed
        .out
        .write_all(&signature)
        .map_err(|e| e.to_string())?;
    Ok(hashed.bytes + SIGNATURE_LEN as u64)
}

/// A writer that hashes what passes through it as [`leaf_hash`] does and counts it.
struct Hashed<'a> {
    out: &'a mut dyn Write,
    hash: Sha256,
    bytes: u64,
}

impl<'a> Hashed<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        let mut hash = Sha256::new();
        hash.update([0u8]);
        Self {
            out,
            hash,
            bytes: 0,
        }
    }
}

impl Write for Hashed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The snapshot in `bytes`, signed by `key`, or why they are not a whole snapshot of this
/// format signed by that key.
pub fn decode(bytes: &[u8], key: &NoteVerifier) -> Result<Snapshot, String> {
    if bytes.len() < HEADER_LEN + 8 + SIGNATURE_LEN {
        return Err(format!("{} bytes: too short for a snapshot", bytes.len()));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a breakglass state snapshot (bad magic)".into());
    }
    let (content, signature) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    let signature: &[u8; SIGNATURE_LEN] = signature.try_into().expect("split at its length");
    if !key.verify_digest(SIGNATURE_DOMAIN, &leaf_hash(content), signature) {
        return Err(format!(
            "its signature does not verify with the audit key {}: the file is damaged, \
             truncated, of an older format, or was not written by this log's daemon",
            key.name()
        ));
    }
    let mut d = codec::Dec {
        buf: content,
        pos: MAGIC.len(),
    };
    let version = d.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this daemon reads {FORMAT_VERSION}"
        ));
    }
    let size = d.u64()?;
    let mut root = [0u8; 32];
    root.copy_from_slice(&content[d.pos..HEADER_LEN]);
    let (body, len) = content[HEADER_LEN..].split_at(content.len() - HEADER_LEN - 8);
    let len = u64::from_be_bytes(len.try_into().expect("split 8 bytes from its end"));
    if len != body.len() as u64 {
        return Err(format!(
            "body of {len} bytes announced, {} present",
            body.len()
        ));
    }
    let state = codec::decode_state(body)?;
    if state.events != size || state.top != size {
        return Err(format!(
            "the state counts {} events up to leaf {} but names log size {size}",
            state.events, state.top
        ));
    }
    leaves_within(&state, size)?;
    Ok(Snapshot { size, root, state })
}

/// Refuses a state that names a leaf at or past `size` (it cannot come from the log's first
/// `size` events), or that holds anything at size 0: the empty log's root is every log's,
/// so that root check cannot tell a foreign snapshot of size 0 apart.
fn leaves_within(st: &State, size: u64) -> Result<(), String> {
    if size == 0 {
        return if *st == State::default() {
            Ok(())
        } else {
            Err("taken at log size 0 but not the empty state".into())
        };
    }
    let grants = st
        .grants
        .values()
        .flat_map(|g| [Some(g.index), g.revoked_index]);
    let recordings = st
        .recordings
        .sessions
        .values()
        .flat_map(|r| [Some(r.committed_at), r.stored.map(|(_, i)| i)]);
    let named = grants
        .chain(recordings)
        .flatten()
        .chain(st.revocations.keys().copied())
        .chain(st.krl_published_index)
        .chain(st.revoked_keys.values().map(|k| k.index))
        .chain(st.log_forks.iter().map(|f| f.index));
    match named.max() {
        Some(i) if i >= size => Err(format!(
            "the state names leaf {i} but was taken at log size {size}: it is not of this log"
        )),
        _ => Ok(()),
    }
}

/// Path of the snapshot in audit directory `dir`.
#[must_use]
pub fn path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// Writes a snapshot of `state` at log `size` with `root` into `dir`, replacing the
/// previous one atomically: temp file (0600), streamed with bounded memory, fsync, rename,
/// directory fsync. Returns the bytes written.
pub fn write(
    dir: &Path,
    state: &State,
    size: u64,
    root: &Hash,
    key: &dyn SnapshotSigner,
) -> Result<u64, String> {
    let target = path(dir);
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let done = (|| -> Result<u64, String> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
            .map_err(|e| e.to_string())?;
        let mut out = BufWriter::with_capacity(256 << 10, f);
        let bytes = encode_to(state, size, root, key, &mut out)?;
        let f = out.into_inner().map_err(|e| e.error().to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &target).map_err(|e| e.to_string())?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    })();
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", target.display())
    })
}

/// The snapshot in `dir` if there is one that fits `log` (size at most the log's, root
/// the log's root at that size); `Err` says why the one found is not used.
pub fn read_fitting(dir: &Path, log: &AuditLog) -> Result<Option<Snapshot>, String> {
    let p = path(dir);
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = f.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_SNAPSHOT_BYTES {
        return Err("not a regular file of a plausible size".into());
    }
    let bytes = std::fs::read(&p).map_err(|e| format!("cannot read it: {e}"))?;
    let snap = decode(&bytes, &log.verifier())?;
    let log_size = log.size();
    if snap.size > log_size {
        return Err(format!(
            "taken at log size {}, but the log has {log_size} entries: it is not of this log",
            snap.size
        ));
    }
    let root = log
        .root_at(snap.size)
        .map_err(|e| format!("the log's root at {}: {e}", snap.size))?;
    if root != snap.root {
        return Err(format!(
            "its root at log size {} differs from the log's: it is not of this log",
            snap.size
        ));
    }
    Ok(Some(snap))
}

/// How the state was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Log size of the snapshot used; `None` when the whole log was replayed.
    pub snapshot: Option<u64>,
    /// Why a snapshot found was not used.
    pub ignored: Option<String>,
    /// Events replayed from the log.
    pub replayed: u64,
}

/// The daemon's state for `log`: the snapshot in `dir` when it fits, plus the events after
/// it; otherwise every event. The one way the state is loaded at start-up.
pub fn load_state(log: &AuditLog, dir: &Path) -> Result<(State, Loaded), AuditError> {
    let (mut state, snapshot, ignored) = match read_fitting(dir, log) {
        Ok(Some(s)) => (s.state, Some(s.size), None),
        Ok(None) => (State::default(), None, None),
        Err(why) => {
            tracing::warn!(
                snapshot = %path(dir).display(),
                reason = %why,
                "state snapshot ignored; replaying the whole audit log"
            );
            (State::default(), None, Some(why))
        }
    };
    let from = snapshot.unwrap_or(0);
    let replayed = replay_into(&mut state, log, from)?;
    Ok((
        state,
        Loaded {
            snapshot,
            ignored,
            replayed,
        },
    ))
}

/// Applies the log's events from leaf `from` to its end to `state`; returns how many.
pub fn replay_into(state: &mut State, log: &AuditLog, from: LeafIndex) -> Result<u64, AuditError> {
    let end = log.size();
    let mut at = from;
    while at < end {
        let to = end.min(at + MAX_ENTRIES_PER_READ);
        for (i, e) in log.events(at, to)? {
            state.apply(i, &e);
        }
        at = to;
    }
    Ok(end - from)
}

/// When snapshots are taken.
#[derive(Debug, Clone, Copy)]
pub struct Every {
    /// After this many new events (0: never by count).
    pub events: u64,
    /// After this long, when there are new events (zero: never by time).
    pub interval: Duration,
}

/// Takes a snapshot of `svc`'s state into `dir` when due, until `stop` turns true.
/// Checked once a second. A failure is logged and retried at the next due time.
pub fn run_periodic(
    svc: Arc<Service>,
    dir: PathBuf,
    every: Every,
    mut stop: watch::Receiver<bool>,
) {
    if every.events == 0 && every.interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut last_size = svc.state().events;
        let mut last_at = Instant::now();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let size = svc.state().events;
            let by_count = every.events > 0 && size.saturating_sub(last_size) >= every.events;
            let by_time = !every.interval.is_zero()
                && size > last_size
                && last_at.elapsed() >= every.interval;
            if !(by_count || by_time) {
                continue;
            }
            let svc2 = svc.clone();
            let dir2 = dir.clone();
            let taken = tokio::task::spawn_blocking(move || take(&svc2, &dir2)).await;
            match taken {
                Ok(Ok(Some(n))) => {
                    last_size = n;
                    last_at = Instant::now();
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "state snapshot not written; will retry");
                    last_at = Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "state snapshot task failed"),
            }
        }
    });
}

/// Writes a snapshot of `svc`'s state now, when it holds exactly the log's first
/// `events` entries (no later entry applied before an earlier one); returns the size.
///
/// The state is copied under the state lock (cheap: see the module's documentation) and
/// encoded outside it.
pub fn take(svc: &Service, dir: &Path) -> Result<Option<u64>, String> {
    let (state, locked) = {
        let st = svc.state();
        let locked = Instant::now();
        if !st.is_prefix() {
            return Ok(None);
        }
        (st.clone(), locked.elapsed())
    };
    let size = state.events;
    let root = svc
        .audit
        .root_at(size)
        .map_err(|e| format!("the log's root at {size}: {e}"))?;
    let started = Instant::now();
    let bytes = write(dir, &state, size, &root, &svc.audit)?;
    let encoded = started.elapsed();
    drop(state);
    tracing::debug!(
        "snapshot: state copied in {:.3} ms under the lock, encoded in {} ms, {bytes} bytes",
        locked.as_secs_f64() * 1000.0,
        encoded.as_millis(),
    );
    tracing::info!(
        size,
        bytes,
        locked_us = locked.as_micros() as u64,
        elapsed_ms = encoded.as_millis() as u64,
        "state snapshot written"
    );
    Ok(Some(size))
}
