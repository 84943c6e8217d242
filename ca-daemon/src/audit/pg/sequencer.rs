//! The group commit as a transaction: the writer thread's way to PostgreSQL
//! (`[audit] backend = "postgres"`; `docs/several-daemons.md`).
//!
//! One batch = one transaction, driven by the writer step by step
//! ([`Sequencer::lock_head`], [`Sequencer::append`]): the head row taken `FOR UPDATE` (the
//! lock that orders every writer of the log), with its size, frontier and signed
//! checkpoint; the batch's entries inserted after them, the frontier extended, the
//! checkpoint signed and inserted, the head moved, `pg_notify`, commit. The batches other
//! writers committed before it are read in the commit's round trip, after the commit, and
//! go into the mirror and the state then: the lock is held for two round trips and the
//! commit, whatever the others wrote.
//!
//! The writer thread blocks on each call (it runs this on its own current-thread runtime):
//! it already blocks on `fdatasync` with the embedded backend, and its callers wait for it.

use breakglass_proto::audit::{Checkpoint, Frontier, NoteSigner};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::connect::connect;
use super::error::PgError;
use super::schema::{frontier_bytes, frontier_of, migrate};
use crate::config::postgres::PostgresSettings;

/// One committed batch of the database's log: its leaves, and the signed checkpoint that
/// closes it.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// Index of its first entry.
    pub first: u64,
    /// The entries' leaf bytes.
    pub leaves: Vec<Vec<u8>>,
    /// The signed note of the checkpoint closing it.
    pub note: String,
}

/// Longest span of entries read to catch up in one go (the rest on the next try).
const CATCH_UP_MAX: i64 = 50_000;

/// The head row as a batch found it, holding it.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// Entries in the log.
    pub size: u64,
    /// The Merkle frontier at `size` (`None` when the stored nodes do not fit `size`).
    pub frontier: Option<Frontier>,
    /// The signed checkpoint at `size`.
    pub note: String,
}

/// The statements of a batch and of a catch-up, prepared once per connection: a batch then
/// costs two round trips (`BEGIN` with the head's lock; the append with `COMMIT` and the
/// read of the batches this daemon lacks, each group pipelined), not one or two per
/// statement.
#[derive(Clone)]
struct Prepared {
    /// The head row, taken `FOR UPDATE`.
    lock: Statement,
    /// The entries, the checkpoint, the head moved and the notification, in one statement.
    append: Statement,
    /// The head's size, read without taking it.
    size: Statement,
    /// The checkpoints of sizes in `($1, $2]`, in order.
    checkpoints: Statement,
    /// The entries of indices in `[$1, $2)`, in order.
    entries: Statement,
}

/// Takes the head row (the lock that orders every writer of the log).
const LOCK_HEAD: &str = "SELECT size, frontier, checkpoint FROM audit_head FOR UPDATE";
/// See [`Prepared::size`].
const HEAD_SIZE: &str = "SELECT size FROM audit_head";
/// See [`Prepared::checkpoints`].
const CHECKPOINTS: &str =
    "SELECT size, note FROM audit_checkpoints WHERE size > $1 AND size <= $2 ORDER BY size";
/// See [`Prepared::entries`].
const ENTRIES: &str =
    "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx";

/// Appends a batch: $1 the indices, $2 the leaves, $3 the new size, $4 its signed
/// checkpoint, $5 the new frontier, $6 the notification's payload (the new size).
fn append_sql() -> String {
    format!(
        "WITH entries AS (INSERT INTO audit_entries (idx, leaf) \
             SELECT * FROM unnest($1::bigint[], $2::bytea[])), \
         checkpoint AS (INSERT INTO audit_checkpoints (size, note) VALUES ($3::bigint, $4::text)), \
         head AS (UPDATE audit_head SET size = $3::bigint, frontier = $5::bytea, checkpoint = $4::text) \
         SELECT pg_notify('{}', $6::text)",
        super::listen::CHANNEL
    )
}

impl Prepared {
    async fn on(c: &Client) -> Result<Self, PgError> {
        let prepare = async |sql: &str, what: &str| {
            c.prepare(sql)
                .await
                .map_err(|e| PgError::statement(&format!("preparing {what}"), &e))
        };
        Ok(Self {
            lock: prepare(LOCK_HEAD, "the head's lock").await?,
            append: prepare(&append_sql(), "the batch's append").await?,
            size: prepare(HEAD_SIZE, "the head's size").await?,
            checkpoints: prepare(CHECKPOINTS, "the catch-up's checkpoints").await?,
            entries: prepare(ENTRIES, "the catch-up's entries").await?,
        })
    }
}

/// The writer's connection to the database.
pub(crate) struct Sequencer {
    rt: tokio::runtime::Runtime,
    settings: PostgresSettings,
    client: Option<Client>,
    /// The statements prepared on `client`.
    prepared: Option<Prepared>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("settings", &self.settings)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Sequencer {
    /// A sequencer for the database of `settings` (it connects when first used).
    pub fn new(settings: PostgresSettings) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the PostgreSQL client's runtime: {e}"))?;
        Ok(Self {
            rt,
            settings,
            client: None,
            prepared: None,
        })
    }

    /// The connection, made (and the schema migrated) when there is none or it broke.
    fn client(&mut self) -> Result<&mut Client, PgError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.prepared = None;
            let settings = self.settings.clone();
            let (client, prepared) = self.rt.block_on(async move {
                let mut c = connect(&settings).await?;
                migrate(&mut c).await?;
                let prepared = Prepared::on(&c).await?;
                Ok::<_, PgError>((c, prepared))
            })?;
            tracing::info!(url = %crate::config::postgres::redacted_url(&self.settings.url),
                "connected to the PostgreSQL audit database");
            self.client = Some(client);
            self.prepared = Some(prepared);
        }
        self.client.as_mut().ok_or_else(|| PgError::Statement {
            what: "connecting".into(),
            reason: "no connection".into(),
        })
    }

    /// Runs `f` with the connection; a failure drops a connection that broke, so the next
    /// call reconnects.
    fn with_client<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut Client, &Prepared) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.client()?;
        let Self {
            rt,
            client,
            prepared,
            ..
        } = self;
        let (Some(c), Some(p)) = (client.as_mut(), prepared.as_ref()) else {
            return Err(PgError::Statement {
                what: "connecting".into(),
                reason: "no connection".into(),
            });
        };
        let out = rt.block_on(f(c, p));
        if out.is_err() && client.as_ref().is_some_and(Client::is_closed) {
            *client = None;
        }
        out
    }

    /// At open: checks the database's log against the mirror's (`mirror`, closed by a
    /// checkpoint with note `mirror_note`) and returns the batches the mirror lacks. An
    /// empty database with an empty mirror gets its head row (size 0).
    pub fn reconcile(
        &mut self,
        mirror: &Frontier,
        mirror_note: &str,
        signer: &NoteSigner,
    ) -> Result<Vec<Batch>, PgError> {
        let origin = signer.name().to_owned();
        let mirror_size = mirror.size();
        let mirror_note = mirror_note.to_owned();
        let empty_note = signer
            .sign_checkpoint(&Checkpoint {
                origin: origin.clone(),
                size: 0,
                root: Frontier::new().root(),
                extensions: Vec::new(),
            })
            .map_err(|e| PgError::Damaged(format!("cannot sign the empty checkpoint: {e}")))?;
        self.with_client(async move |c, p| {
            let head = c
                .query_opt("SELECT origin, size FROM audit_head", &[])
                .await
                .map_err(|e| PgError::statement("reading the head row", &e))?;
            let Some(head) = head else {
                if mirror_size > 0 {
                    return Err(PgError::Damaged(format!(
                        "the database holds no log, but the audit directory holds {mirror_size} \
                         entries: move them into the database first (breakglass-ca audit import)"
                    )));
                }
                c.execute(
                    "INSERT INTO audit_head (origin, size, frontier, checkpoint) \
                     VALUES ($1, 0, ''::bytea, $2) ON CONFLICT DO NOTHING",
                    &[&origin, &empty_note],
                )
                .await
                .map_err(|e| PgError::statement("creating the head row", &e))?;
                return Ok(Vec::new());
            };
            let db_origin: String = head.get(0);
            let size = u64::try_from(head.get::<_, i64>(1)).unwrap_or(0);
            if db_origin != origin {
                return Err(PgError::Damaged(format!(
                    "the database's log has origin {db_origin:?}, the configured audit key's is \
                     {origin:?}"
                )));
            }
            if size < mirror_size {
                return Err(PgError::Damaged(format!(
                    "the database holds {size} entries, fewer than the {mirror_size} of this \
                     daemon's mirror: the database lost acknowledged commits (restored from a \
                     backup, or a failover without synchronous replication); refusing to \
                     continue a log that was rolled back"
                )));
            }
            if mirror_size > 0 {
                let at: Option<String> = c
                    .query_opt(
                        "SELECT note FROM audit_checkpoints WHERE size = $1",
                        &[&to_i64(mirror_size)],
                    )
                    .await
                    .map_err(|e| PgError::statement("reading a checkpoint", &e))?
                    .map(|r| r.get(0));
                if at.as_deref() != Some(mirror_note.as_str()) {
                    return Err(PgError::Damaged(format!(
                        "the database's checkpoint at {mirror_size} entries is not the one this \
                         daemon's mirror ends with: the mirror belongs to another log, or the \
                         log was forked; move the audit directory aside after investigation"
                    )));
                }
            }
            missing(c, p, mirror_size, size).await
        })
    }

    /// Starts a batch: `BEGIN`, and the head row taken `FOR UPDATE` (the lock that orders
    /// every writer of the log). The transaction stays open on this connection until
    /// [`append`](Self::append) commits it or [`abort`](Self::abort) ends it.
    pub fn lock_head(&mut self) -> Result<Head, PgError> {
        self.with_client(async move |c, p| {
            // One round trip: requests go out in the order first polled (`biased`).
            let c = &*c;
            let (begun, head) =
                tokio::join!(biased; c.batch_execute("BEGIN"), c.query_one(&p.lock, &[]));
            begun.map_err(|e| PgError::statement("starting the batch", &e))?;
            let head = head.map_err(|e| PgError::statement("locking the head row", &e))?;
            let size = u64::try_from(head.get::<_, i64>(0)).unwrap_or(0);
            let nodes: Vec<u8> = head.get(1);
            Ok(Head {
                size,
                frontier: frontier_of(size, &nodes),
                note: head.get(2),
            })
        })
    }

    /// What the database holds after entry `from` (up to `to`, which ends a batch): whole
    /// batches, the first at `from`.
    pub fn read_missing(&mut self, from: u64, to: u64) -> Result<Vec<Batch>, PgError> {
        self.with_client(async move |c, p| missing(c, p, from, to).await)
    }

    /// Ends a batch: the entries `leaves` at `first..`, the checkpoint `note` of the tree
    /// `after` them, the head moved, the other daemons notified, `COMMIT`; then, in the same
    /// round trip but after the commit (the head row is free again), the batches other
    /// writers committed between `read_from` (this daemon's mirror's end) and `first`.
    /// `Ok(None)`: committed, but that read failed (read them with
    /// [`read_missing`](Self::read_missing)).
    pub fn append(
        &mut self,
        first: u64,
        leaves: &[Vec<u8>],
        after: &Frontier,
        note: &str,
        read_from: u64,
    ) -> Result<Option<Vec<Batch>>, PgError> {
        let idx: Vec<i64> = (first..).take(leaves.len()).map(to_i64).collect();
        let (size, frontier) = (to_i64(after.size()), frontier_bytes(after));
        let payload = after.size().to_string();
        self.with_client(async move |c, p| {
            // One round trip: the append, `COMMIT`, then the read (sent in this order,
            // `biased`). A failed append makes the `COMMIT` a rollback; it is reported as
            // the failure.
            let c = &*c;
            let params: [&(dyn ToSql + Sync); 6] =
                [&idx, &leaves, &size, &note, &frontier, &payload];
            let (appended, committed, read) = tokio::join!(biased;
                c.execute(&p.append, &params),
                c.batch_execute("COMMIT"),
                missing(c, p, read_from, first),
            );
            appended.map_err(|e| PgError::statement("appending the batch", &e))?;
            committed.map_err(|e| PgError::statement("committing the batch", &e))?;
            Ok(read.ok())
        })
    }

    /// The batches the database holds after the mirror's `frontier` (none when it holds
    /// no more), read without taking the head row.
    pub fn behind(&mut self, frontier: &Frontier) -> Result<Vec<Batch>, PgError> {
        let from = frontier.size();
        self.with_client(async move |c, p| {
            let size: i64 = c
                .query_one(&p.size, &[])
                .await
                .map_err(|e| PgError::statement("reading the head row", &e))?
                .get(0);
            let size = u64::try_from(size).unwrap_or(0);
            if size < from {
                return Err(PgError::Damaged(format!(
                    "the database holds {size} entries, fewer than the {from} of this \
                     daemon's mirror: it lost acknowledged commits"
                )));
            }
            missing(c, p, from, size).await
        })
    }

    /// Ends a batch without writing (`ROLLBACK`); a connection that cannot is dropped, which
    /// ends it too.
    pub fn abort(&mut self) {
        let Self { rt, client, .. } = self;
        let Some(c) = client.as_ref() else {
            return;
        };
        if rt.block_on(c.batch_execute("ROLLBACK")).is_err() {
            *client = None;
        }
    }
}

/// The batches of entries `from..to` (`to` ends a batch; at most [`CATCH_UP_MAX`] entries,
/// whole batches, at least one), each with its checkpoint. The checkpoints and the entries
/// are read in one round trip (pipelined); a single batch longer than `CATCH_UP_MAX`
/// needs a second.
async fn missing(c: &Client, p: &Prepared, from: u64, to: u64) -> Result<Vec<Batch>, PgError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let capped = to.min(from.saturating_add(CATCH_UP_MAX.unsigned_abs()));
    let (lo, hi, cap) = (to_i64(from), to_i64(to), to_i64(capped));
    let (sizes, indices): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 2]) =
        ([&lo, &hi], [&lo, &cap]);
    let (cps, rows) = tokio::join!(biased;
        c.query(&p.checkpoints, &sizes),
        c.query(&p.entries, &indices),
    );
    let cps = cps.map_err(|e| PgError::statement("reading checkpoints to catch up", &e))?;
    let mut rows = rows.map_err(|e| PgError::statement("reading entries to catch up", &e))?;
    // The whole batches within CATCH_UP_MAX entries (at least one).
    let mut closes: Vec<(u64, String)> = Vec::new();
    for row in cps {
        let end = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        if !closes.is_empty() && to_i64(end - from) > CATCH_UP_MAX {
            break;
        }
        closes.push((end, row.get(1)));
    }
    let until = closes.last().map_or(from, |(end, _)| *end);
    if until > capped {
        rows = c
            .query(&p.entries, &[&to_i64(from), &to_i64(until)])
            .await
            .map_err(|e| PgError::statement("reading entries to catch up", &e))?;
    }
    rows.truncate(usize::try_from(until - from).unwrap_or(usize::MAX));
    if rows.len() as u64 != until - from
        || rows
            .last()
            .is_some_and(|r| r.get::<_, i64>(0) != to_i64(until - 1))
    {
        return Err(PgError::Damaged(format!(
            "entries {from} to {until} are not all in the database"
        )));
    }
    let mut leaves = rows.iter().map(|r| r.get::<_, Vec<u8>>(1));
    let mut batches = Vec::new();
    let mut start = from;
    for (end, note) in closes {
        batches.push(Batch {
            first: start,
            leaves: leaves
                .by_ref()
                .take(usize::try_from(end - start).unwrap_or(0))
                .collect(),
            note,
        });
        start = end;
    }
    if batches.is_empty() {
        return Err(PgError::Damaged(format!(
            "no checkpoint closes the entries after {from}"
        )));
    }
    Ok(batches)
}
