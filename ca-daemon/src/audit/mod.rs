//! The audit log engine: where the log is written.
//!
//! Every state change of the daemon is an [`Event`] appended here; the daemon's state is
//! rebuilt from [`AuditLog::replay`] at start-up. Formats (events, records, checkpoints)
//! are defined in the contract crate, [`breakglass_proto::audit`], so that an auditor can
//! verify a copy of the log without the daemon.
//!
//! # Layout of the data directory
//! ```text
//! <dir>/segments/<first leaf index, 20 digits>.seg   records, see `segment`
//! <dir>/checkpoint                                   latest signed checkpoint (refreshed lazily)
//! <dir>/log.pub                                      verifier key text
//! <dir>/index/{offsets,tree,synced}                  derived: see `index`
//! ```
//!
//! # Writing
//! [`AuditLog::append`] sends the encoded event into a bounded queue. One dedicated OS
//! thread (fsync never blocks a tokio worker) drains up to `max_batch` events, appends them
//! and one signed checkpoint covering them to the active segment with **one write and one
//! fdatasync**, and only then acknowledges each caller with its leaf index. When the write
//! or the sync fails, every caller of that batch gets [`AuditError::Unavailable`], the
//! segment is cut back to its last durable length, and the next batch tries again: nothing
//! is acknowledged that is not durable, and the log resumes by itself once the disk
//! accepts writes again.
//!
//! # Opening
//! [`AuditLog::open`] reads only what the index on disk does not cover (entries' offsets and
//! the Merkle tree, kept beside the segments, see `index`): the index is checked against
//! the root recorded at its last sync, then the segments' bytes after it are scanned as the
//! full scan would (framing, CRC, every checkpoint's size and root, the signature of each
//! segment's last checkpoint) and indexed. An index that cannot be trusted is rebuilt from
//! every segment (logged). A torn tail after the last valid checkpoint — a batch
//! interrupted by a crash, never acknowledged — is cut and logged. Damage in what is
//! scanned is [`AuditError::Corrupt`] naming the segment, offset and reason: the daemon
//! must refuse to start. Memory does not grow with the log: the writer keeps the tree's
//! frontier, readers pread the index (reads in `reads`, each checked against the latest
//! signed checkpoint).

mod base;
mod feed;
mod index;
mod key;
pub mod pg;
mod reads;
mod stats;
mod store;
mod writer;

/// The writer's request for `events`, and where its answer arrives.
fn append_request(
    events: &[Event],
) -> Result<(Request, oneshot::Receiver<Result<LeafIndex, AuditError>>), AuditError> {
    if events.is_empty() {
        return Err(AuditError::OutOfRange("no events to append".into()));
    }
    let leaves = events
        .iter()
        .map(Event::encode)
        .collect::<Result<Vec<_>, _>>()?;
    let (reply, rx) = oneshot::channel();
    Ok((Request::Append { leaves, reply }, rx))
}

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::thread::JoinHandle;

use breakglass_proto::audit::{Event, Hash, NoteSigner, NoteVerifier, SignedCheckpoint};
use tokio::sync::{mpsc, oneshot};

pub use self::base::{AuditConfig, AuditError, LeafIndex, MAX_ENTRIES_PER_READ};
pub use self::key::{generate_audit_key, load_audit_key, public_key_path};
pub use self::stats::{CommitStats, PROBE_FILE};
pub use self::store::Replay;
use self::writer::Request;

/// Committed batches in index order, each with its first entry's index
/// ([`AuditLog::take_foreign`]).
pub type Batches = mpsc::UnboundedReceiver<(LeafIndex, Vec<Event>)>;

/// Handle to the audit log; cheap to clone, usable from any tokio task or thread.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Request>,
    shared: Arc<store::Shared>,
    /// The log's key, also held by the writer thread (which signs the checkpoints).
    signer: Arc<NoteSigner>,
    writer: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// Entries the writer found in the database that did not come through its queue (see
    /// [`take_foreign`](Self::take_foreign)).
    foreign: Arc<std::sync::Mutex<Option<Batches>>>,
    /// A database orders the log (see [`sequenced`](Self::sequenced)).
    sequenced: bool,
    /// With a database: the lock across daemons for decisions.
    decisions: Option<pg::lock::DecisionLock>,
    /// With a database: a size its log is known to have reached, for the writer's next
    /// look at it (see `writer::Writer::follow_database`).
    known: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.shared.dir)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `config.dir`, recovers it and starts the writer thread.
    ///
    /// Blocking (it reads the whole log): call it before serving, or in `spawn_blocking`.
    /// Fails with [`AuditError::Corrupt`] when the log is damaged: refuse to start then.
    pub fn open(config: AuditConfig, signer: NoteSigner) -> Result<Self, AuditError> {
        let opened = store::open(&config, &signer)?;
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let shared = opened.shared.clone();
        let signer = Arc::new(signer);
        let (foreign_tx, foreign_rx) = mpsc::unbounded_channel();
        let sequenced = config.db.is_some();
        let decisions = config.db.clone().map(pg::lock::DecisionLock::new);
        let known = Arc::new(std::sync::atomic::AtomicU64::new(0));
        if let Some(db) = config.db.clone() {
            // Weak: the listener must not keep the writer's queue open.
            let (alive, nudge) = (tx.downgrade(), tx.downgrade());
            let (known, mirror) = (known.clone(), shared.clone());
            let listener = std::thread::Builder::new()
                .name("audit-listen".into())
                .spawn(move || {
                    pg::listen::listen(
                        &db,
                        || alive.upgrade().is_some_and(|t| !t.is_closed()),
                        |size| {
                            // A batch the mirror holds already (this daemon's own, or one
                            // read by a commit since) needs no look.
                            if let Some(size) = size {
                                known.fetch_max(size, std::sync::atomic::Ordering::AcqRel);
                                if mirror.read().size() >= size {
                                    return;
                                }
                            }
                            if let Some(t) = nudge.upgrade() {
                                let _ = t.try_send(Request::Follow);
                            }
                        },
                    );
                });
            if let Err(e) = listener {
                tracing::warn!(error = %e, "no thread to LISTEN for other daemons' batches; \
                    following the audit database by polling only");
            }
        }
        let w = writer::Writer::new(opened, signer.clone(), config, foreign_tx, known.clone())?;
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer::run(rx, w))
            .map_err(|e| AuditError::io("audit-writer thread", e))?;
        Ok(Self {
            tx,
            shared,
            signer,
            writer: Arc::new(std::sync::Mutex::new(Some(handle))),
            foreign: Arc::new(std::sync::Mutex::new(Some(foreign_rx))),
            sequenced,
            decisions,
            known,
        })
    }

    /// With `[audit] backend = "postgres"`, every batch committed after open, this
    /// handle's and other writers' (and one whose commit answer was lost), in index order,
    /// with the first one's index: the daemon applies them to its state from here, and an
    /// [`append`](Self::append)'s caller waits until its entry is applied instead of
    /// applying it (see [`sequenced`](Self::sequenced)). With the embedded backend nothing
    /// comes. Only the first call gets the receiver.
    pub fn take_foreign(&self) -> Option<Batches> {
        self.foreign.lock().ok().and_then(|mut f| f.take())
    }

    /// Whether the state is applied from [`take_foreign`](Self::take_foreign) (a database
    /// orders the log) rather than by each appender.
    #[must_use]
    pub fn sequenced(&self) -> bool {
        self.sequenced
    }

    /// With a database: takes the lock across daemons under which decisions are made
    /// (waiting for other daemons' decisions), asks the writer to catch up now, and returns
    /// it with the log's size: the caller's state must hold that many entries before it
    /// decides. `None` with the embedded backend (one daemon: its own lock suffices).
    pub async fn lock_decisions(
        &self,
    ) -> Result<Option<(pg::lock::DecisionGuard, u64)>, AuditError> {
        let Some(lock) = &self.decisions else {
            return Ok(None);
        };
        let (guard, size) = lock
            .lock()
            .await
            .map_err(|e| AuditError::Unavailable(e.to_string()))?;
        if self.size() < size {
            self.known
                .fetch_max(size, std::sync::atomic::Ordering::AcqRel);
            let _ = self.tx.try_send(Request::Follow);
        }
        Ok(Some((guard, size)))
    }

    /// Appends an event; returns its leaf index once it is durable under a signed checkpoint.
    ///
    /// Cancel-safe in the sense that dropping the future never acknowledges anything, but an
    /// event already queued may still be written.
    pub async fn append(&self, event: &Event) -> Result<LeafIndex, AuditError> {
        self.append_all(std::slice::from_ref(event)).await
    }

    /// Appends `events` as one unit: at contiguous indices, in this order, in one write
    /// under one signed checkpoint, so that after any crash the log holds all of them or
    /// none (what no checkpoint covers is cut at open). Returns the first one's index once
    /// they are durable. An empty slice is refused.
    pub async fn append_all(&self, events: &[Event]) -> Result<LeafIndex, AuditError> {
        let (request, rx) = append_request(events)?;
        self.tx
            .send(request)
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`append`](Self::append) for synchronous callers. Must not be called from inside an
    /// async task (it blocks the thread).
    pub fn append_blocking(&self, event: &Event) -> Result<LeafIndex, AuditError> {
        let (request, rx) = append_request(std::slice::from_ref(event))?;
        self.tx
            .blocking_send(request)
            .map_err(|_| AuditError::Closed)?;
        rx.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Stops the writer after the events already queued; later appends fail with
    /// [`AuditError::Closed`]. Reads keep working.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
        self.join_writer();
    }

    /// Feeds the systemd watchdog from the writer thread until the writer stops: every
    /// `every`, a keep-alive is queued (never waiting: a full queue means the writer is
    /// behind) and the writer answers it with `WATCHDOG=1` when it gets to it. A writer
    /// stuck in a write or an fdatasync answers none, so systemd restarts the daemon.
    /// Must be called inside the runtime.
    pub fn feed_watchdog(&self, every: std::time::Duration) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match tx.try_send(Request::KeepAlive) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
    }

    /// [`shutdown`](Self::shutdown) for synchronous callers.
    pub fn shutdown_blocking(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.blocking_send(Request::Shutdown { reply }).is_ok() {
            let _ = rx.blocking_recv();
        }
        self.join_writer();
    }

    fn join_writer(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Which of the entries `from..end` this daemon appended: `None` when every one (the
    /// embedded log); with a database, the ranges of this daemon's batches among them (the
    /// others' came from other daemons). Each range is told once: ranges before `end` are
    /// forgotten. For the syslog follower.
    #[must_use]
    pub fn appended_here(&self, from: u64, end: u64) -> Option<Vec<std::ops::Range<u64>>> {
        self.shared.own_between(from, end)
    }

    /// Number of durable events.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.shared.read().size()
    }

    /// The latest durable signed checkpoint (for an empty log, a signed checkpoint of size 0).
    #[must_use]
    pub fn latest_checkpoint(&self) -> SignedCheckpoint {
        self.shared.read().checkpoint.clone()
    }

    /// The verifier (public key) of the log.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        self.shared.verifier.clone()
    }

    /// The log key's signature of `digest` for `domain` (see [`NoteSigner::sign_digest`]):
    /// how files derived from the log (the state snapshot) are tied to its key.
    #[must_use]
    pub fn sign_digest(&self, domain: &str, digest: &Hash) -> [u8; 64] {
        self.signer.sign_digest(domain, digest)
    }

    /// The message of the last failed write, while the log cannot be written; `None` when
    /// the last batch succeeded. For health checks.
    #[must_use]
    pub fn write_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Bytes of the log's segment files on disk (the active one's durable part and any
    /// bytes a failed write left after it, until they are cut), for metrics.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.shared
            .read()
            .segments
            .iter()
            .filter_map(|s| s.file.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Commit measurements (latency, group size, last checkpoint), for metrics.
    #[must_use]
    pub fn commit_stats(&self) -> &CommitStats {
        &self.shared.stats
    }

    /// Why the log cannot be written now, or `None` when it can: its writer thread is
    /// gone, or its directory refuses a small synced write ([`PROBE_FILE`]). The writer's
    /// last failure, if any, is added to the reason. For the readiness probe.
    #[must_use]
    pub fn unwritable(&self) -> Option<String> {
        if self.tx.is_closed() {
            return Some("the audit log writer has stopped".into());
        }
        let probe = stats::probe_writable(&self.shared.dir).err()?;
        Some(match self.write_error() {
            Some(last) => format!("audit log not writable: {probe} (last failed append: {last})"),
            None => format!("audit log not writable: {probe}"),
        })
    }

    /// Number of batches (each one write + one fdatasync) committed since open.
    #[must_use]
    pub fn batches(&self) -> u64 {
        self.shared
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Leaf bytes (canonical event encodings) of entries `start..end`, at most
    /// [`MAX_ENTRIES_PER_READ`]. Each is re-checked against its CRC, and the range against
    /// the latest signed checkpoint.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, AuditError> {
        self.shared.entries(start, end)
    }

    /// Decoded events `start..end` with their indices, at most [`MAX_ENTRIES_PER_READ`].
    pub fn events(&self, start: u64, end: u64) -> Result<Vec<(LeafIndex, Event)>, AuditError> {
        self.entries(start, end)?
            .into_iter()
            .zip(start..)
            .map(|(leaf, i)| {
                Event::decode(&leaf)
                    .map(|e| (i, e))
                    .map_err(|e| AuditError::OutOfRange(format!("event {i}: {e}")))
            })
            .collect()
    }

    /// Calls `visit` with each durable event `from..end` (`end` cut to the log's size and to
    /// [`MAX_ENTRIES_PER_READ`] entries), in order, and returns how many it visited: for
    /// the log's followers. The
    /// events of the batches the writer committed last come from memory, decoded once for
    /// every follower (see `feed`); older ones are read from the segments as
    /// [`events`](Self::events) reads them.
    pub fn follow(
        &self,
        from: u64,
        end: u64,
        mut visit: impl FnMut(LeafIndex, &Event),
    ) -> Result<u64, AuditError> {
        let end = end.min(self.size()).min(from + MAX_ENTRIES_PER_READ);
        let mut at = from;
        while at < end {
            let fed = self.shared.feed.covering(at, end);
            if fed.is_empty() {
                // Not held (older than the feed, or pushed a moment after the checkpoint
                // that made it durable): from the segments, up to what the feed holds.
                let upto = match self.shared.feed.first_held() {
                    Some(f) if f > at => f.min(end),
                    _ => end,
                };
                if upto <= at {
                    break;
                }
                for (i, e) in self.events(at, upto)? {
                    visit(i, &e);
                }
                at = upto;
                continue;
            }
            for b in fed {
                let events = b.events().map_err(AuditError::OutOfRange)?;
                for (i, e) in (b.first..).zip(events) {
                    if i >= at && i < end {
                        visit(i, e);
                    }
                }
                at = b.end().clamp(at, end);
            }
        }
        Ok(at - from)
    }

    /// Inclusion proof of entry `index` in the tree of `size` entries (RFC 6962 `PATH`),
    /// verified against the latest signed checkpoint before it is returned.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        self.shared.inclusion_proof(index, size)
    }

    /// Consistency proof between the trees of `old` and `new` entries (RFC 6962 `PROOF`),
    /// verified against the latest signed checkpoint before it is returned.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        self.shared.consistency_proof(old, new)
    }

    /// Root of the tree of `size` entries, shown consistent with the latest signed
    /// checkpoint.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.shared.root_at(size)
    }

    /// Every durable event in order, read back from the segments (for rebuilding the daemon's
    /// state at start-up). Covers the log as it is when called.
    #[must_use]
    pub fn replay(&self) -> Replay {
        self.shared.replay()
    }

    /// The durable events from entry `start` on, in order: [`replay`](Self::replay) without
    /// reading what comes before (the index on disk says where `start` is). For a state
    /// loaded from a snapshot taken at `start` entries.
    pub fn replay_from(&self, start: u64) -> Result<Replay, AuditError> {
        self.shared.replay_from(start)
    }
}
