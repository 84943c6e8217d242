//! The group commit as a transaction: the writer thread's way to PostgreSQL
//! (`[audit] backend = "postgres"`; `docs/several-daemons.md`).
//!
//! One batch = one transaction, driven by the writer step by step
//! ([`Sequencer::lock_head`], [`Sequencer::read_missing`], [`Sequencer::append`]): the head
//! row taken `FOR UPDATE` (the lock that orders every writer of the log); the batches other
//! writers committed since this daemon last looked read, written into its mirror and handed
//! to its state while the lock is held; the batch's entries inserted after them, the
//! frontier extended, the checkpoint signed and inserted, the head moved, `pg_notify`,
//! commit. Holding the lock while catching up means a batch never has to start over.
//!
//! The writer thread blocks on each call (it runs this on its own current-thread runtime):
//! it already blocks on `fdatasync` with the embedded backend, and its callers wait for it.

use breakglass_proto::audit::{Checkpoint, Frontier, NoteSigner};
use tokio_postgres::Client;

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

/// The writer's connection to the database.
pub(crate) struct Sequencer {
    rt: tokio::runtime::Runtime,
    settings: PostgresSettings,
    client: Option<Client>,
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
        })
    }

    /// The connection, made (and the schema migrated) when there is none or it broke.
    fn client(&mut self) -> Result<&mut Client, PgError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let settings = self.settings.clone();
            let client = self.rt.block_on(async move {
                let mut c = connect(&settings).await?;
                migrate(&mut c).await?;
                Ok::<_, PgError>(c)
            })?;
            tracing::info!(url = %crate::config::postgres::redacted_url(&self.settings.url),
                "connected to the PostgreSQL audit database");
            self.client = Some(client);
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
        f: impl AsyncFnOnce(&mut Client) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        self.client()?;
        let Self { rt, client, .. } = self;
        let Some(c) = client.as_mut() else {
            return Err(PgError::Statement {
                what: "connecting".into(),
                reason: "no connection".into(),
            });
        };
        let out = rt.block_on(f(c));
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
        self.with_client(async move |c| {
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
            missing(c, mirror_size, size).await
        })
    }

    /// Starts a batch: `BEGIN`, and the head row taken `FOR UPDATE` (the lock that orders
    /// every writer of the log). Returns the log's size and frontier. The transaction stays
    /// open on this connection until [`append`](Self::append) commits it or
    /// [`abort`](Self::abort) ends it.
    pub fn lock_head(&mut self) -> Result<(u64, Option<Frontier>), PgError> {
        self.with_client(async |c| {
            c.batch_execute("BEGIN")
                .await
                .map_err(|e| PgError::statement("starting the batch", &e))?;
            let head = c
                .query_one("SELECT size, frontier FROM audit_head FOR UPDATE", &[])
                .await
                .map_err(|e| PgError::statement("locking the head row", &e))?;
            let size = u64::try_from(head.get::<_, i64>(0)).unwrap_or(0);
            let nodes: Vec<u8> = head.get(1);
            Ok((size, frontier_of(size, &nodes)))
        })
    }

    /// Inside a batch: what the database holds after entry `from` (up to `to`).
    pub fn read_missing(&mut self, from: u64, to: u64) -> Result<Vec<Batch>, PgError> {
        self.with_client(async move |c| missing(c, from, to).await)
    }

    /// Ends a batch: the entries `leaves` at `first..`, the checkpoint `note` of the tree
    /// `after` them, the head moved, the other daemons notified, `COMMIT`.
    pub fn append(
        &mut self,
        first: u64,
        leaves: &[Vec<u8>],
        after: &Frontier,
        note: &str,
    ) -> Result<(), PgError> {
        let idx: Vec<i64> = (first..).take(leaves.len()).map(to_i64).collect();
        self.with_client(async move |c| {
            c.execute(
                "INSERT INTO audit_entries (idx, leaf) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&idx, &leaves],
            )
            .await
            .map_err(|e| PgError::statement("inserting the batch's entries", &e))?;
            c.execute(
                "INSERT INTO audit_checkpoints (size, note) VALUES ($1, $2)",
                &[&to_i64(after.size()), &note],
            )
            .await
            .map_err(|e| PgError::statement("inserting the batch's checkpoint", &e))?;
            c.execute(
                "UPDATE audit_head SET size = $1, frontier = $2, checkpoint = $3",
                &[&to_i64(after.size()), &frontier_bytes(after), &note],
            )
            .await
            .map_err(|e| PgError::statement("moving the head row", &e))?;
            c.execute(
                &format!("SELECT pg_notify('{}', $1)", super::listen::CHANNEL),
                &[&after.size().to_string()],
            )
            .await
            .map_err(|e| PgError::statement("notifying the other daemons", &e))?;
            c.batch_execute("COMMIT")
                .await
                .map_err(|e| PgError::statement("committing the batch", &e))
        })
    }

    /// The batches the database holds after the mirror's `frontier` (none when it holds
    /// no more), read without taking the head row.
    pub fn behind(&mut self, frontier: &Frontier) -> Result<Vec<Batch>, PgError> {
        let from = frontier.size();
        self.with_client(async move |c| {
            let size: i64 = c
                .query_one("SELECT size FROM audit_head", &[])
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
            missing(c, from, size).await
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

/// The batches of entries `from..to` (at most [`CATCH_UP_MAX`] entries, whole batches),
/// each with its checkpoint.
async fn missing(
    c: &impl tokio_postgres::GenericClient,
    from: u64,
    to: u64,
) -> Result<Vec<Batch>, PgError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let cps = c
        .query(
            "SELECT size, note FROM audit_checkpoints WHERE size > $1 AND size <= $2 \
             ORDER BY size",
            &[&to_i64(from), &to_i64(to)],
        )
        .await
        .map_err(|e| PgError::statement("reading checkpoints to catch up", &e))?;
    let mut batches = Vec::new();
    let mut start = from;
    for row in cps {
        let end = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        if !batches.is_empty() && to_i64(end - from) > CATCH_UP_MAX {
            break;
        }
        let rows = c
            .query(
                "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&to_i64(start), &to_i64(end)],
            )
            .await
            .map_err(|e| PgError::statement("reading entries to catch up", &e))?;
        if rows.len() as u64 != end - start {
            return Err(PgError::Damaged(format!(
                "entries {start} to {end} are not all in the database"
            )));
        }
        batches.push(Batch {
            first: start,
            leaves: rows.iter().map(|r| r.get(1)).collect(),
            note: row.get(1),
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
