//! The writer thread: group commit of events and one signed checkpoint per batch.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::segment::{
    RecordKind, SEGMENTS_DIR, encode_record, header_payload, segment_file_name,
};
use breakglass_proto::audit::{Checkpoint, Hash, NoteSigner, SignedCheckpoint};
use tokio::sync::{mpsc, oneshot};

use breakglass_proto::audit::Event;

use super::base::{AuditConfig, AuditError, LeafIndex};
use super::index::Watermark;
use super::pg::sequencer::{Batch, Head, Sequencer};
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
    /// With a database: look for other writers' batches now (a decision is about to be
    /// made on the state), not at the next idle look.
    Follow,
}

/// The `checkpoint` file is refreshed this often, off the commit path (it is a convenience
/// copy; the segments hold every checkpoint durably, and the file is rewritten durably at
/// shutdown and at open). Its thread looks at the latest checkpoint on this period rather
/// than being told of each batch: a wake-up per batch is a context switch per certificate
/// at low concurrency, on the path of the next request.
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

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: Option<Active>,
    frontier: breakglass_proto::audit::Frontier,
    signer: Arc<NoteSigner>,
    config: AuditConfig,
    /// A failed write may have left bytes after the durable length.
    needs_repair: bool,
    buf: Vec<u8>,
    /// Keeps the thread that refreshes the `checkpoint` file and syncs the index running;
    /// dropped to stop it. Nothing is sent: the thread reads the latest checkpoint itself.
    checkpoint_file: Option<std::sync::mpsc::Sender<()>>,
    /// Reused buffers of one batch's index entries: record offsets, stored hashes.
    offsets: Vec<u64>,
    stored: Vec<Hash>,
    /// With `[audit] backend = "postgres"`: the database, where a batch is durable; the
    /// segments are then its mirror (written after the commit, not fdatasynced).
    db: Option<Sequencer>,
    /// Where entries the mirror lacked (found in the database, not appended through this
    /// writer's queue) go, decoded, to be applied to the daemon's state.
    foreign: tokio::sync::mpsc::UnboundedSender<(LeafIndex, Vec<Event>)>,
    /// The last [`Writer::follow_database`] failed (warned once until it works again).
    follow_failing: bool,
    /// With a database: a size its log is known to have reached (a notification's, or the
    /// one a decision read), so that a look for other writers' batches reads them at once,
    /// or not at all when the mirror holds that much already.
    known: Arc<AtomicU64>,
    /// A batch committed to the database but not yet written into the mirror (the
    /// catch-up after it failed): the next batch catches up under the head row's lock
    /// before it appends, as an idle look does, so nothing more is appended while the
    /// mirror cannot follow.
    mirror_lags: bool,
    /// The head checkpoint a batch last vouched for (see [`Writer::trusted_head`]), with
    /// its size and root: the catch-up after that batch's commit need not verify it again.
    vouched: Option<(u64, Hash, String)>,
}

/// How often an idle writer with a database looks for batches other writers committed,
/// when no notification came (`pg::listen` wakes it at once for each).
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

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

impl Writer {
    /// The writer of an opened log. With a database (`config.db`), the database's log is
    /// checked against the mirror and what the mirror lacks is written into it first (the
    /// state loaded after this replays it from the mirror).
    pub(crate) fn new(
        opened: Opened,
        signer: Arc<NoteSigner>,
        config: AuditConfig,
        foreign: tokio::sync::mpsc::UnboundedSender<(LeafIndex, Vec<Event>)>,
        known: Arc<AtomicU64>,
    ) -> Result<Self, AuditError> {
        let db = config
            .db
            .clone()
            .map(Sequencer::new)
            .transpose()
            .map_err(AuditError::Unavailable)?;
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
            db,
            foreign,
            follow_failing: false,
            known,
            mirror_lags: false,
            vouched: None,
        };
        if w.db.is_some() {
            w.shared
                .own
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .shared_log = true;
            // On a thread of its own: the database client blocks on its own runtime, and
            // the caller may be inside one.
            std::thread::scope(|scope| {
                scope
                    .spawn(|| w.catch_up_at_open())
                    .join()
                    .unwrap_or_else(|_| {
                        Err(AuditError::Unavailable(
                            "the audit database catch-up panicked".into(),
                        ))
                    })
            })?;
        }
        Ok(w)
    }
}

pub(crate) fn run(mut rx: mpsc::Receiver<Request>, mut w: Writer) {
    let (cp_tx, cp_rx) = std::sync::mpsc::channel::<()>();
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
        // A look for other writers' batches was asked for: done after the batch gathered
        // now, whose commit reads them anyway (see `Writer::db_batch`).
        let mut follow = false;
        let next = if w.db.is_some() {
            // Idle with a database: look for other writers' batches every FOLLOW_EVERY.
            match recv_until(&mut rx, &mut cx, Instant::now() + FOLLOW_EVERY) {
                Gathered::Request(r) => Some(r),
                Gathered::Late => {
                    w.follow_database(true);
                    continue;
                }
                Gathered::Closed => None,
            }
        } else {
            rx.blocking_recv()
        };
        match next {
            None => break,
            Some(Request::Append {
                leaves: more,
                reply,
            }) => {
                take(&mut leaves, &mut replies, more, reply);
            }
            Some(Request::Shutdown { reply }) => shutdown = Some(reply),
            Some(Request::KeepAlive) => crate::systemd::watchdog(),
            Some(Request::Follow) => follow = true,
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
                Ok(Request::Follow) => follow = true,
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
                        Gathered::Request(Request::Follow) => follow = true,
                        Gathered::Late | Gathered::Closed => break,
                    }
                }
                Err(_) => break,
            }
        }
        let answered = replies.len();
        if !leaves.is_empty() {
            // The batch's leaves go on to the followers' feed (see `publish`).
            w.commit(std::mem::take(&mut leaves), &mut replies);
        }
        if follow {
            w.follow_database(false);
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
                    Request::KeepAlive | Request::Follow => {}
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
    fn commit(&mut self, leaves: Vec<Vec<u8>>, replies: &mut Vec<(Reply, usize)>) {
        let started = Instant::now();
        let committed = if self.db.is_some() {
            self.try_commit_db(&leaves)
        } else {
            self.try_commit(&leaves)
        };
        match committed {
            Ok(c) => {
                self.shared.stats.committed(leaves.len(), started.elapsed());
                let first = c.first_index;
                self.publish(c, leaves);
                self.shared.set_error(None);
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

    /// At open: checks the database's log against the mirror and writes what the mirror
    /// lacks into it (not handed to the state: the state is loaded from the mirror after).
    fn catch_up_at_open(&mut self) -> Result<(), AuditError> {
        loop {
            let note = self.shared.read().checkpoint.note.clone();
            let Some(db) = self.db.as_mut() else {
                return Ok(());
            };
            // A log that went back or belongs to another key needs a human (like a damaged
            // segment); an unreachable database is worth retrying.
            let behind =
                db.reconcile(&self.frontier, &note, &self.signer)
                    .map_err(|e| match e {
                        super::pg::error::PgError::Damaged(reason) => AuditError::Corrupt {
                            segment: "PostgreSQL audit database".into(),
                            offset: 0,
                            reason,
                        },
                        other => AuditError::Unavailable(other.to_string()),
                    })?;
            if behind.is_empty() {
                return Ok(());
            }
            self.catch_up(behind, false)
                .map_err(AuditError::Unavailable)?;
        }
    }

    /// Writes the batches other writers committed into the mirror and hands them to the
    /// state: up to the size known from a notification or a decision (one round trip; none
    /// when the mirror holds that much already, e.g. the last batch's commit read them), or,
    /// when `polled` (idle) and no such size is known, up to the head's. A database that
    /// cannot be read now is tried again at the next look (a warning when that starts, not
    /// at every look).
    fn follow_database(&mut self, polled: bool) {
        let Some(db) = self.db.as_mut() else {
            return;
        };
        let from = self.frontier.size();
        let known = self.known.load(Ordering::Acquire);
        let read = if known > from {
            db.read_missing(from, known)
        } else if polled {
            db.behind(&self.frontier)
        } else {
            return;
        };
        let followed = read
            .map_err(|e| format!("the PostgreSQL audit database: {e}"))
            .and_then(|b| self.catch_up(b, true));
        match followed {
            Ok(()) => {
                self.follow_failing = false;
                self.mirror_lags = false;
            }
            Err(e) => {
                // The known size may be gone (a failover that lost commits): the next look
                // asks the head.
                self.known.store(0, Ordering::Release);
                if !self.follow_failing {
                    self.follow_failing = true;
                    tracing::warn!(error = %e, "cannot follow the audit database; trying again");
                }
            }
        }
    }

    /// Makes a committed batch visible to readers (checkpoint, a new segment), then hands
    /// its `leaves` to the followers' feed; the checkpoint file's thread picks it up from
    /// there.
    fn publish(&mut self, c: Committed, leaves: Vec<Vec<u8>>) {
        let first = c.first_index;
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
        self.shared.feed.push(first, leaves);
        self.shared
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The batch as one database transaction, then into the mirror. Under the head row's
    /// lock the batch extends the head's tree (one this daemon's key signed), whatever other
    /// writers appended since this daemon last looked; their batches are read in the
    /// commit's round trip and written into the mirror and handed to the state before this
    /// one. A batch the database committed but the mirror could not take is answered as a
    /// failure: its callers apply nothing, and the next catch-up finds it in the database
    /// and hands it to the state like any other writer's.
    fn try_commit_db(&mut self, leaves: &[Vec<u8>]) -> Result<Committed, String> {
        let outcome = self
            .db_step(|db| db.lock_head())
            .and_then(|head| self.db_batch(head, leaves));
        if outcome.is_err()
            && let Some(db) = self.db.as_mut()
        {
            db.abort();
        }
        outcome
    }

    /// Runs one step of a database batch; its error is the callers' message.
    fn db_step<T>(
        &mut self,
        step: impl FnOnce(&mut Sequencer) -> Result<T, super::pg::error::PgError>,
    ) -> Result<T, String> {
        let Some(db) = self.db.as_mut() else {
            return Err("no audit database".into());
        };
        step(db).map_err(|e| format!("the PostgreSQL audit database: {e}"))
    }

    /// The body of [`Self::try_commit_db`] once the head row is held.
    fn db_batch(&mut self, head: Head, leaves: &[Vec<u8>]) -> Result<Committed, String> {
        if self.mirror_lags {
            // The mirror could not follow the last commit: catch up under the lock first,
            // and append nothing while that fails.
            while head.size > self.frontier.size() {
                let from = self.frontier.size();
                let batches = self.db_step(|db| db.read_missing(from, head.size))?;
                self.catch_up(batches, true)?;
            }
            self.mirror_lags = false;
        }
        let base = self.trusted_head(&head)?;
        let first = base.size();
        let events = decode_all(leaves, first)?;
        let mut after = base;
        for leaf in leaves {
            after.push(leaf_hash(leaf));
        }
        let note = self
            .signer
            .sign_checkpoint(&Checkpoint {
                origin: self.signer.name().to_owned(),
                size: after.size(),
                root: after.root(),
                extensions: Vec::new(),
            })
            .map_err(|e| format!("cannot sign the checkpoint: {e}"))?;
        let from = self.frontier.size();
        let others = self.db_step(|db| db.append(first, leaves, &after, &note, from))?;
        // Ours, for the syslog follower: told before the mirror makes the entries readable.
        self.shared.own_batch(first..after.size());
        // Committed: the others' batches before it into the mirror and the state, then it.
        let into_mirror = self.catch_up_to(first, others).and_then(|()| {
            let c = self.try_commit(leaves)?;
            if c.checkpoint.note != note {
                return Err("the mirror's checkpoint differs from the database's".into());
            }
            Ok(c)
        });
        let c = into_mirror.map_err(|e| {
            self.mirror_lags = true;
            format!("committed to the audit database, not yet to its mirror: {e}")
        })?;
        // With a database the state applies every batch, this writer's and the others',
        // from this one channel, in index order.
        let _ = self.foreign.send((c.first_index, events));
        Ok(c)
    }

    /// The tree a batch extends: the head row's frontier, when this daemon can vouch for
    /// it: it is the mirror's own, or the head's checkpoint is the one the log's key signs
    /// for that frontier (Ed25519 signatures are deterministic: signing it again and
    /// comparing checks the signature). So a checkpoint is never signed over a tree that no
    /// holder of the key signed before, whatever the database holds; the entries behind the
    /// head are checked against their checkpoints when they go into the mirror.
    fn trusted_head(&mut self, head: &Head) -> Result<breakglass_proto::audit::Frontier, String> {
        let mirror = self.frontier.size();
        let refuse = |why: &str| {
            Err(format!(
                "the database's head ({} entries) {why}: refusing to append",
                head.size
            ))
        };
        let Some(frontier) = head.frontier.clone() else {
            return refuse("holds a frontier that does not fit its size");
        };
        if head.size < mirror {
            return refuse(&format!(
                "is behind this daemon's mirror ({mirror} entries): the database lost \
                 acknowledged commits"
            ));
        }
        if head.size == mirror {
            return if frontier == self.frontier {
                Ok(frontier)
            } else {
                refuse("is not this daemon's log")
            };
        }
        let signed = self
            .signer
            .sign_checkpoint(&Checkpoint {
                origin: self.signer.name().to_owned(),
                size: head.size,
                root: frontier.root(),
                extensions: Vec::new(),
            })
            .map_err(|e| format!("cannot sign the checkpoint: {e}"))?;
        if signed != head.note {
            return refuse("is not signed by the log's key for its frontier");
        }
        self.vouched = Some((head.size, frontier.root(), signed));
        Ok(frontier)
    }

    /// After a commit at `first`: writes the batches other writers committed before it
    /// (`read`, the first of them, and what is still missing after them) into the mirror
    /// and hands them to the state, until the mirror ends at `first`.
    fn catch_up_to(&mut self, first: u64, read: Option<Vec<Batch>>) -> Result<(), String> {
        let mut read = read;
        while self.frontier.size() < first {
            let batches = match read.take() {
                Some(b) if !b.is_empty() => b,
                _ => {
                    let from = self.frontier.size();
                    self.db_step(|db| db.read_missing(from, first))?
                }
            };
            self.catch_up(batches, true)?;
        }
        if self.frontier.size() == first {
            Ok(())
        } else {
            Err(format!(
                "the mirror ends at {}, past the batch's first entry {first}",
                self.frontier.size()
            ))
        }
    }

    /// Writes batches the database holds after the mirror's end into the mirror, each
    /// checked first (its checkpoint signed by the log's key, for exactly these entries
    /// after the mirror's); with `tell`, hands them decoded to the state.
    fn catch_up(&mut self, batches: Vec<Batch>, tell: bool) -> Result<(), String> {
        let verifier = self.signer.verifier();
        for b in batches {
            if b.first != self.frontier.size() {
                return Err(format!(
                    "the database's batch at {} does not follow the mirror's end {}",
                    b.first,
                    self.frontier.size()
                ));
            }
            // The head checkpoint the batch just committed vouched for is not verified again.
            let (size, root) = match &self.vouched {
                Some((size, root, note)) if *note == b.note => (*size, *root),
                _ => {
                    let cp = verifier.verify_checkpoint(&b.note).map_err(|e| {
                        format!("the database's checkpoint after entry {}: {e}", b.first)
                    })?;
                    (cp.size, cp.root)
                }
            };
            let mut f = self.frontier.clone();
            for leaf in &b.leaves {
                f.push(leaf_hash(leaf));
            }
            if size != f.size() || root != f.root() {
                return Err(format!(
                    "the database's checkpoint of size {size} does not match its entries"
                ));
            }
            let events = decode_all(&b.leaves, b.first)?;
            let c = self.try_commit(&b.leaves)?;
            if c.checkpoint.note != b.note {
                return Err("the mirror's checkpoint differs from the database's".into());
            }
            self.publish(c, b.leaves);
            if tell {
                let _ = self.foreign.send((b.first, events));
            }
        }
        Ok(())
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
        // With a database, the segments are its mirror: durable there, not here.
        let sync = self.db.is_none();
        let written = active.file.write_all_at(&self.buf, base).and_then(|()| {
            if sync {
                active.file.sync_data()
            } else {
                Ok(())
            }
        });
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

/// The events of `leaves`, the first one at index `first`.
fn decode_all(leaves: &[Vec<u8>], first: u64) -> Result<Vec<Event>, String> {
    (first..)
        .zip(leaves)
        .map(|(i, l)| Event::decode(l).map_err(|e| format!("entry {i}: {e}")))
        .collect()
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

/// Thread body: every [`CHECKPOINT_FILE_INTERVAL`], writes the latest checkpoint's note when
/// it changed and syncs the index (see [`INDEX_SYNC_INTERVAL`]), until the writer drops its
/// sender (which then does both a last time itself).
fn refresh_checkpoint_file(shared: &Shared, stop: &std::sync::mpsc::Receiver<()>) {
    let dir = shared.dir.as_path();
    let mut written = shared.read().size();
    let mut index_synced = (Instant::now(), written);
    loop {
        match stop.recv_timeout(CHECKPOINT_FILE_INTERVAL) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let (note, size, root) = {
            let idx = shared.read();
            let c = &idx.checkpoint;
            (c.note.clone(), c.checkpoint.size, c.checkpoint.root)
        };
        if size == written {
            continue;
        }
        if let Err(e) = write_checkpoint_file(dir, &note, false) {
            tracing::warn!(error = %e, "cannot refresh the audit checkpoint file");
        } else {
            written = size;
        }
        if index_synced.0.elapsed() >= INDEX_SYNC_INTERVAL
            || size.saturating_sub(index_synced.1) >= INDEX_SYNC_EVENTS
        {
            sync_index(shared, size, root);
            index_synced = (Instant::now(), size);
        }
    }
}
