//! The writer thread: group commit of events and one signed checkpoint per batch.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::segment::{
    RecordKind, SEGMENTS_DIR, encode_record, header_payload, segment_file_name,
};
use breakglass_proto::audit::{Checkpoint, Hash, NoteSigner, SignedCheckpoint};
use tokio::sync::{mpsc, oneshot};

use super::base::{AuditConfig, AuditError, LeafIndex};
use super::index::Watermark;
use super::store::{Active, Opened, SegmentHandle, Shared, write_checkpoint_file};

/// What the writer thread is asked to do.
pub(super) enum Request {
    /// Events that are committed together, in this order, at contiguous indices, under
    /// one checkpoint: all of them or none (the reply is the first one's index).
    Append {
        leaves: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<LeafIndex, AuditError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// The systemd watchdog's keep-alive: answered (`WATCHDOG=1`) when the writer gets to
    /// it, so a writer stuck in a write or an fdatasync stops the pings.
    KeepAlive,
}

/// The `checkpoint` file is refreshed at most this often, off the commit path (it is a
/// convenience copy; the segments hold every checkpoint durably, and the file is rewritten
/// durably at shutdown and at open).
const CHECKPOINT_FILE_INTERVAL: Duration = Duration::from_secs(1);

/// Longest a batch waits for callers expected back (those answered by the previous batch)
/// before it is committed. Without it, N concurrent callers split into two alternating
/// half-size batches; with it they share one fdatasync. A lone caller never waits: it is
/// the only one expected. The writer waits asleep ([`recv_until`]), never spinning: on a
/// two-core machine a spinning writer takes a core from the callers it waits for.
const GATHER_WAIT: Duration = Duration::from_micros(100);

/// What [`recv_until`] got.
enum Gathered {
    Request(Request),
    /// The deadline passed first.
    Late,
    /// Every sender is gone.
    Closed,
}

/// Wakes the writer thread (parked in [`recv_until`]) when the queue gets a request.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The next request, waiting for it parked until `deadline` at the latest. `cx` wakes
/// the calling thread (an [`Unpark`] of it).
fn recv_until(
    rx: &mut mpsc::Receiver<Request>,
    cx: &mut Context<'_>,
    deadline: Instant,
) -> Gathered {
    loop {
        match rx.poll_recv(cx) {
            Poll::Ready(Some(r)) => return Gathered::Request(r),
            Poll::Ready(None) => return Gathered::Closed,
            Poll::Pending => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Gathered::Late;
                }
                // A wake-up before the deadline (or a spurious one) polls again.
                std::thread::park_timeout(left);
            }
        }
    }
}

type Reply = oneshot::Sender<Result<LeafIndex, AuditError>>;

struct Writer {
    shared: Arc<Shared>,
    active: Option<Active>,
    frontier: breakglass_proto::audit::Frontier,
    signer: Arc<NoteSigner>,
    config: AuditConfig,
    /// A failed write may have left bytes after the durable length.
    needs_repair: bool,
    buf: Vec<u8>,
    /// Latest checkpoints for the thread that refreshes the `checkpoint` file and syncs the
    /// index.
    checkpoint_file: Option<std::sync::mpsc::Sender<Published>>,
    /// Reused buffers of one batch's index entries: record offsets, stored hashes.
    offsets: Vec<u64>,
    stored: Vec<Hash>,
}

/// What one successful commit produced.
struct Committed {
    first_index: u64,
    checkpoint: SignedCheckpoint,
}

/// The index on disk is synced (and its watermark moved) by the checkpoint thread, off the
/// commit path, this often or after [`INDEX_SYNC_EVENTS`] new entries, whichever comes
/// first: a start after a crash reads at most about that much of the log again (see
/// [`super::index`]).
const INDEX_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// See [`INDEX_SYNC_INTERVAL`].
const INDEX_SYNC_EVENTS: u64 = 100_000;

/// What the checkpoint thread is told after each commit.
struct Published {
    note: String,
    size: u64,
    root: Hash,
}

pub(crate) fn run(
    mut rx: mpsc::Receiver<Request>,
    opened: Opened,
    signer: Arc<NoteSigner>,
    config: AuditConfig,
) {
    let mut w = Writer {
        shared: opened.shared,
        active: opened.active,
        frontier: opened.frontier,
        signer,
        config,
        needs_repair: false,
        buf: Vec::with_capacity(1 << 20),
        checkpoint_file: None,
        offsets: Vec::new(),
        stored: Vec::new(),
    };
    let (cp_tx, cp_rx) = std::sync::mpsc::channel::<Published>();
    let cp_shared = Arc::clone(&w.shared);
    let cp_thread = std::thread::Builder::new()
        .name("audit-checkpoint".into())
        .spawn(move || refresh_checkpoint_file(&cp_shared, &cp_rx));
    let cp_thread = match cp_thread {
        Ok(t) => {
            w.checkpoint_file = Some(cp_tx);
            Some(t)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no thread to refresh the audit checkpoint file; it is written at shutdown only");
            None
        }
    };
    let max_batch = w.config.max_batch.max(1);
    let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(max_batch);
    // One reply per request, with how many of `leaves` it brought.
    let mut replies: Vec<(Reply, usize)> = Vec::with_capacity(max_batch);
    // How many callers the next batch can expect: those just answered (they usually come
    // straight back) plus those already queued. See GATHER_WAIT.
    let mut expected = 0usize;
    let take = |leaves: &mut Vec<Vec<u8>>,
                replies: &mut Vec<(Reply, usize)>,
                mut more: Vec<Vec<u8>>,
                reply| {
        replies.push((reply, more.len()));
        leaves.append(&mut more);
    };
    // Wakes this thread when a request arrives while it waits in `recv_until`.
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        let mut shutdown = None;
        match rx.blocking_recv() {
            None => break,
            Some(Request::Append {
                leaves: more,
                reply,
            }) => {
                take(&mut leaves, &mut replies, more, reply);
            }
            Some(Request::Shutdown { reply }) => shutdown = Some(reply),
            Some(Request::KeepAlive) => crate::systemd::watchdog(),
        }
        let gather_until = Instant::now() + GATHER_WAIT;
        let target = expected.clamp(1, max_batch);
        while shutdown.is_none() && leaves.len() < max_batch {
            match rx.try_recv() {
                Ok(Request::Append {
                    leaves: more,
                    reply,
                }) => {
                    take(&mut leaves, &mut replies, more, reply);
                }
                Ok(Request::Shutdown { reply }) => shutdown = Some(reply),
                Ok(Request::KeepAlive) => crate::systemd::watchdog(),
                Err(mpsc::error::TryRecvError::Empty) if replies.len() < target => {
                    // Asleep until a caller comes back or the window closes: the tokio
                    // workers get both cores meanwhile.
                    match recv_until(&mut rx, &mut cx, gather_until) {
                        Gathered::Request(Request::Append {
                            leaves: more,
                            reply,
                        }) => take(&mut leaves, &mut replies, more, reply),
                        Gathered::Request(Request::Shutdown { reply }) => shutdown = Some(reply),
                        Gathered::Request(Request::KeepAlive) => crate::systemd::watchdog(),
                        Gathered::Late | Gathered::Closed => break,
                    }
                }
                Err(_) => break,
            }
        }
        let answered = replies.len();
        if !leaves.is_empty() {
            w.commit(&leaves, &mut replies);
            leaves.clear();
        }
        if let Some(reply) = shutdown {
            rx.close();
            while let Ok(r) = rx.try_recv() {
                match r {
                    Request::Append { reply, .. } => {
                        let _ = reply.send(Err(AuditError::Closed));
                    }
                    Request::Shutdown { reply } => {
                        let _ = reply.send(());
                    }
                    Request::KeepAlive => {}
                }
            }
            w.final_checkpoint_file(cp_thread);
            let _ = reply.send(());
            return;
        }
        expected = answered + rx.len();
    }
    w.final_checkpoint_file(cp_thread);
}

impl Writer {
    fn commit(&mut self, leaves: &[Vec<u8>], replies: &mut Vec<(Reply, usize)>) {
        let started = Instant::now();
        match self.try_commit(leaves) {
            Ok(c) => {
                self.shared.stats.committed(leaves.len(), started.elapsed());
                let first = c.first_index;
                let published = Published {
                    note: c.checkpoint.note.clone(),
                    size: c.checkpoint.checkpoint.size,
                    root: c.checkpoint.checkpoint.root,
                };
                {
                    let mut idx = self.shared.write();
                    idx.checkpoint = c.checkpoint;
                    if let Some(a) = self.active.as_mut().filter(|a| !a.registered) {
                        match File::open(&a.path) {
                            Ok(f) => {
                                idx.segments.push(SegmentHandle {
                                    first: a.first,
                                    path: a.path.clone(),
                                    file: Arc::new(f),
                                });
                                a.registered = true;
                            }
                            Err(e) => {
                                // The data is durable; only reads of this segment are affected
                                // until the next batch retries.
                                tracing::error!(segment = %a.path.display(), error = %e,
                                    "cannot open the new audit segment for reading");
                            }
                        }
                    }
                }
                self.shared.set_error(None);
                self.shared
                    .batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(tx) = &self.checkpoint_file {
                    let _ = tx.send(published);
                }
                let mut next = first;
                for (r, n) in replies.drain(..) {
                    let _ = r.send(Ok(next));
                    next += n as u64;
                }
            }
            Err(msg) => {
                tracing::error!(error = %msg, events = leaves.len(),
                    "audit batch not written; callers told the log is unavailable");
                self.shared.set_error(Some(msg.clone()));
                for (r, _) in replies.drain(..) {
                    let _ = r.send(Err(AuditError::Unavailable(msg.clone())));
                }
            }
        }
    }

    fn try_commit(&mut self, leaves: &[Vec<u8>]) -> Result<Committed, String> {
        if self.needs_repair {
            self.repair()?;
        }
        let must_roll = self
            .active
            .as_ref()
            .is_none_or(|a| a.len >= self.config.segment_max_bytes);
        if must_roll {
            self.roll()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err("no active segment".into());
        };
        let base = active.len;
        self.buf.clear();
        if base == 0 {
            encode_record(
                RecordKind::Header,
                &header_payload(active.first),
                &mut self.buf,
            );
        }
        let mut frontier = self.frontier.clone();
        let first_index = frontier.size();
        self.offsets.clear();
        self.stored.clear();
        for leaf in leaves {
            let stored = &mut self.stored;
            frontier.push_stored(leaf_hash(leaf), |h| stored.push(h));
            self.offsets.push(base + self.buf.len() as u64);
            encode_record(RecordKind::Event, leaf, &mut self.buf);
        }
        // The index first (page cache only; a crash is recovered from the segments): a
        // batch whose index cannot be written is not committed. Readers see none of it
        // until the checkpoint is published.
        self.shared
            .disk
            .append(first_index, &self.offsets, &self.stored)
            .map_err(|e| format!("cannot write the audit index: {e}"))?;
        let checkpoint = Checkpoint {
            origin: self.signer.name().to_owned(),
            size: frontier.size(),
            root: frontier.root(),
            extensions: Vec::new(),
        };
        let note = self
            .signer
            .sign_checkpoint(&checkpoint)
            .map_err(|e| format!("cannot sign the checkpoint: {e}"))?;
        encode_record(RecordKind::Checkpoint, note.as_bytes(), &mut self.buf);
        let written = active
            .file
            .write_all_at(&self.buf, base)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = written {
            let msg = format!("{}: {e}", active.path.display());
            self.needs_repair = true;
            if let Err(r) = self.repair() {
                tracing::warn!(error = %r, "audit segment not cut back yet; retrying before the next batch");
            }
            return Err(msg);
        }
        active.len = base + self.buf.len() as u64;
        self.frontier = frontier;
        Ok(Committed {
            first_index,
            checkpoint: SignedCheckpoint { checkpoint, note },
        })
    }

    /// Cuts the active segment back to its durable length after a failed write.
    fn repair(&mut self) -> Result<(), String> {
        if let Some(a) = &self.active {
            a.file
                .set_len(a.len)
                .and_then(|()| a.file.sync_data())
                .map_err(|e| {
                    format!(
                        "{}: cannot cut back to the last durable byte {} after a failed write: {e}",
                        a.path.display(),
                        a.len
                    )
                })?;
        }
        self.needs_repair = false;
        Ok(())
    }

    /// Starts a new segment at the current tree size and closes the old one (read-only).
    fn roll(&mut self) -> Result<(), String> {
        let first = self.frontier.size();
        let dir = self.config.dir.join(SEGMENTS_DIR);
        let path = dir.join(segment_file_name(first));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| format!("{}: cannot create segment: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if len != 0 {
            return Err(format!(
                "{}: a segment with this name already holds {len} bytes",
                path.display()
            ));
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: cannot sync directory: {e}", dir.display()))?;
        if let Some(old) = self.active.take() {
            if let Err(e) =
                std::fs::set_permissions(&old.path, std::fs::Permissions::from_mode(0o444))
            {
                tracing::warn!(segment = %old.path.display(), error = %e,
                    "cannot make the closed audit segment read-only");
            }
            tracing::info!(closed = %old.path.display(), new = %path.display(), "audit segment rolled");
        }
        self.active = Some(Active {
            file,
            path,
            first,
            len: 0,
            registered: false,
        });
        Ok(())
    }

    /// Stops the refresh thread, then writes the latest checkpoint durably and syncs the
    /// index up to it (the next start then reads nothing again).
    fn final_checkpoint_file(&mut self, thread: Option<std::thread::JoinHandle<()>>) {
        self.checkpoint_file = None;
        if let Some(t) = thread {
            let _ = t.join();
        }
        if self.frontier.size() == 0 {
            return;
        }
        let cp = self.shared.read().checkpoint.clone();
        if let Err(e) = write_checkpoint_file(&self.config.dir, &cp.note, true) {
            tracing::warn!(error = %e, "cannot write the audit checkpoint file at shutdown");
        }
        sync_index(&self.shared, cp.checkpoint.size, cp.checkpoint.root);
    }
}

/// Syncs the index files and moves their watermark to `size` (unless a read found the
/// index damaged: then it is rebuilt at the next start and gets no watermark).
fn sync_index(shared: &Shared, size: u64, root: Hash) {
    if shared
        .index_damaged
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    if let Err(e) = shared.disk.sync(Watermark { size, root }) {
        tracing::warn!(error = %e, "cannot sync the audit index; the next start reads more of the log");
    }
}

/// Thread body: writes the latest note received, at most every [`CHECKPOINT_FILE_INTERVAL`],
/// and syncs the index (see [`INDEX_SYNC_INTERVAL`]), until the writer drops its sender
/// (which then does both a last time itself).
fn refresh_checkpoint_file(shared: &Shared, rx: &std::sync::mpsc::Receiver<Published>) {
    let dir = shared.dir.as_path();
    let mut pending: Option<Published> = None;
    let mut index_synced = (Instant::now(), shared.read().size());
    loop {
        let mut p = match pending.take() {
            Some(n) => n,
            None => match rx.recv() {
                Ok(n) => n,
                Err(_) => return,
            },
        };
        while let Ok(newer) = rx.try_recv() {
            p = newer;
        }
        if let Err(e) = write_checkpoint_file(dir, &p.note, false) {
            tracing::warn!(error = %e, "cannot refresh the audit checkpoint file");
        }
        if index_synced.0.elapsed() >= INDEX_SYNC_INTERVAL
            || p.size.saturating_sub(index_synced.1) >= INDEX_SYNC_EVENTS
        {
            sync_index(shared, p.size, p.root);
            index_synced = (Instant::now(), p.size);
        }
        let until = Instant::now() + CHECKPOINT_FILE_INTERVAL;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(newer) => pending = Some(newer),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}
