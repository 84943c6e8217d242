//! Moving a log between an embedded directory and the database.
//!
//! - [`import`]: the committed part of a log directory (verified first as `breakglass audit
//!   verify` does: every record, every checkpoint's signature, size and root) into a
//!   database that holds no log, in one transaction, each batch keeping its own signed
//!   checkpoint. The database's root at the end is the directory's.
//! - [`export`]: the database's log, read in one consistent snapshot, as segment files with
//!   every checkpoint in place, plus `checkpoint` and `log.pub`: a directory `breakglass
//!   audit verify` checks offline.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::segment::{
    PUBLIC_KEY_FILE, Parsed, RecordKind, SEGMENTS_DIR, encode_record, header_payload,
    list_segments, parse_record, segment_file_name,
};
use breakglass_proto::audit::verify::verify_dir;
use breakglass_proto::audit::{Frontier, Hash, NoteVerifier};
use tokio_postgres::Client;

use super::error::PgError;
use super::schema::{frontier_bytes, frontier_of, migrate};
use crate::audit::base::AuditError;

/// Rows sent in one INSERT.
const INSERT_CHUNK: usize = 2_000;
/// Entries read in one SELECT.
const READ_CHUNK: i64 = 10_000;

/// What was moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// Entries in the log.
    pub size: u64,
    /// Signed checkpoints moved (one per committed batch).
    pub checkpoints: u64,
    /// The tree's root at `size`.
    pub root: Hash,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Imports the log in `dir` (signed by `verifier`'s key) into the database `client` is
/// connected to, which must hold no log. See the module's header.
pub async fn import(
    client: &mut Client,
    dir: &Path,
    verifier: &NoteVerifier,
) -> Result<Transferred, PgError> {
    let report = verify_dir(dir, verifier, None).map_err(AuditError::from)?;
    let Some(last) = report.summary.last_checkpoint.clone() else {
        return Err(PgError::Local(AuditError::OutOfRange(format!(
            "{}: the log holds no committed event: nothing to import",
            dir.display()
        ))));
    };
    let size = report.summary.size;
    migrate(client).await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::statement("starting the import", &e))?;
    // Two imports at once: the second waits here, then finds the first one's head row.
    tx.batch_execute("LOCK TABLE audit_head, audit_entries, audit_checkpoints IN EXCLUSIVE MODE")
        .await
        .map_err(|e| PgError::statement("locking the log's tables", &e))?;
    let held: i64 = tx
        .query_one(
            "SELECT greatest((SELECT coalesce(max(size), 0) FROM audit_head),
                             (SELECT count(*) FROM audit_entries))",
            &[],
        )
        .await
        .map_err(|e| PgError::statement("checking that the database holds no log", &e))?
        .get(0);
    let has_head: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM audit_head)", &[])
        .await
        .map_err(|e| PgError::statement("checking that the database holds no log", &e))?
        .get(0);
    if held > 0 || has_head {
        return Err(PgError::NotEmpty {
            size: u64::try_from(held).unwrap_or(0),
        });
    }

    let mut frontier = Frontier::new();
    let mut idx: Vec<i64> = Vec::with_capacity(INSERT_CHUNK);
    let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(INSERT_CHUNK);
    let mut cp_sizes: Vec<i64> = Vec::new();
    let mut cp_notes: Vec<String> = Vec::new();
    let mut checkpoints = 0u64;
    let segments = list_segments(dir).map_err(|e| AuditError::io(dir.join(SEGMENTS_DIR), e))?;
    'segments: for (_, path) in segments {
        let data = std::fs::read(&path).map_err(|e| AuditError::io(&path, e))?;
        let mut pos = 0usize;
        while pos < data.len() && frontier.size() <= size {
            let Parsed::Record { kind, payload, len } = parse_record(&data[pos..]) else {
                // Only a torn tail after the last checkpoint: the verification passed.
                break;
            };
            pos += len;
            match kind {
                RecordKind::Header => {}
                RecordKind::Event => {
                    if frontier.size() == size {
                        // Past the last checkpoint: an interrupted batch, never committed.
                        break 'segments;
                    }
                    idx.push(to_i64(frontier.size()));
                    frontier.push(leaf_hash(payload));
                    leaves.push(payload.to_vec());
                    if idx.len() >= INSERT_CHUNK {
                        insert_entries(&tx, &mut idx, &mut leaves).await?;
                    }
                }
                RecordKind::Checkpoint => {
                    let note = String::from_utf8_lossy(payload).into_owned();
                    let cp = verifier
                        .verify_checkpoint(&note)
                        .map_err(|e| PgError::Damaged(format!("{}: {e}", path.display())))?;
                    if cp.size != frontier.size() || cp.root != frontier.root() {
                        return Err(PgError::Damaged(format!(
                            "{}: a checkpoint of size {} does not match the {} events before it",
                            path.display(),
                            cp.size,
                            frontier.size()
                        )));
                    }
                    // A rolled segment's first batch is preceded by the previous segment's
                    // last checkpoint: the same size, kept once.
                    if cp_sizes.last() != Some(&to_i64(cp.size)) && cp.size > 0 {
                        cp_sizes.push(to_i64(cp.size));
                        cp_notes.push(note);
                        checkpoints += 1;
                    }
                    if cp_sizes.len() >= INSERT_CHUNK {
                        insert_checkpoints(&tx, &mut cp_sizes, &mut cp_notes).await?;
                    }
                }
            }
        }
    }
    insert_entries(&tx, &mut idx, &mut leaves).await?;
    insert_checkpoints(&tx, &mut cp_sizes, &mut cp_notes).await?;
    if frontier.size() != size || frontier.root() != last.checkpoint.root {
        return Err(PgError::Damaged(format!(
            "{}: read {} events, the verified log holds {size}",
            dir.display(),
            frontier.size()
        )));
    }
    tx.execute(
        "INSERT INTO audit_head (origin, size, frontier, checkpoint) VALUES ($1, $2, $3, $4)",
        &[
            &verifier.name(),
            &to_i64(size),
            &frontier_bytes(&frontier),
            &last.note,
        ],
    )
    .await
    .map_err(|e| PgError::statement("writing the head row", &e))?;
    tx.commit()
        .await
        .map_err(|e| PgError::statement("committing the import", &e))?;
    Ok(Transferred {
        size,
        checkpoints,
        root: frontier.root(),
    })
}

async fn insert_entries(
    tx: &tokio_postgres::Transaction<'_>,
    idx: &mut Vec<i64>,
    leaves: &mut Vec<Vec<u8>>,
) -> Result<(), PgError> {
    if idx.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO audit_entries (idx, leaf) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        &[&*idx, &*leaves],
    )
    .await
    .map_err(|e| PgError::statement("inserting entries", &e))?;
    idx.clear();
    leaves.clear();
    Ok(())
}

async fn insert_checkpoints(
    tx: &tokio_postgres::Transaction<'_>,
    sizes: &mut Vec<i64>,
    notes: &mut Vec<String>,
) -> Result<(), PgError> {
    if sizes.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO audit_checkpoints (size, note) SELECT * FROM unnest($1::bigint[], $2::text[])",
        &[&*sizes, &*notes],
    )
    .await
    .map_err(|e| PgError::statement("inserting checkpoints", &e))?;
    sizes.clear();
    notes.clear();
    Ok(())
}

/// The segment file being written by [`export`].
struct Out {
    file: File,
    path: std::path::PathBuf,
    len: u64,
}

impl Out {
    fn create(seg_dir: &Path, first: u64) -> Result<Self, PgError> {
        let path = seg_dir.join(segment_file_name(first));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| AuditError::io(&path, e))?;
        let mut out = Self { file, path, len: 0 };
        let mut buf = Vec::new();
        encode_record(RecordKind::Header, &header_payload(first), &mut buf);
        out.write(&buf)?;
        Ok(out)
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), PgError> {
        self.file
            .write_all(buf)
            .map_err(|e| AuditError::io(&self.path, e))?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn finish(self) -> Result<(), PgError> {
        self.file
            .sync_all()
            .map_err(|e| AuditError::io(&self.path, e).into())
    }
}

/// Exports the database's log, checked against `verifier`, into `to` (which must not exist
/// or be empty), segments rolled at `segment_max_bytes` after a checkpoint. See the
/// module's header.
pub async fn export(
    client: &mut Client,
    to: &Path,
    verifier: &NoteVerifier,
    segment_max_bytes: u64,
) -> Result<Transferred, PgError> {
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(PgError::TargetNotEmpty(to.to_owned()));
    }
    let seg_dir = to.join(SEGMENTS_DIR);
    std::fs::create_dir_all(&seg_dir).map_err(|e| AuditError::io(&seg_dir, e))?;
    migrate(client).await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| PgError::statement("starting the export", &e))?;
    let head = tx
        .query_opt(
            "SELECT origin, size, frontier, checkpoint FROM audit_head",
            &[],
        )
        .await
        .map_err(|e| PgError::statement("reading the head row", &e))?
        .ok_or(PgError::NoLog)?;
    let origin: String = head.get(0);
    let size = u64::try_from(head.get::<_, i64>(1)).unwrap_or(0);
    let head_frontier: Vec<u8> = head.get(2);
    let head_note: String = head.get(3);
    if origin != verifier.name() {
        return Err(PgError::Damaged(format!(
            "its origin is {origin:?}, the configured audit key's is {:?}",
            verifier.name()
        )));
    }
    let head_cp = verifier
        .verify_checkpoint(&head_note)
        .map_err(|e| PgError::Damaged(format!("the head row's checkpoint: {e}")))?;
    if head_cp.size != size
        || frontier_of(size, &head_frontier).map(|f| f.root()) != Some(head_cp.root)
    {
        return Err(PgError::Damaged(
            "the head row's size, frontier and checkpoint disagree".into(),
        ));
    }

    let mut frontier = Frontier::new();
    let mut out = Out::create(&seg_dir, 0)?;
    let mut checkpoints = 0u64;
    let mut buf = Vec::new();
    let mut next_cp: Option<(u64, String)> = None;
    let mut cp_after: i64 = 0;
    // Set once no checkpoint is left after `cp_after`.
    let mut no_more_cps = false;
    while frontier.size() < size {
        let rows = tx
            .query(
                "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 \
                 ORDER BY idx LIMIT $3",
                &[&to_i64(frontier.size()), &to_i64(size), &READ_CHUNK],
            )
            .await
            .map_err(|e| PgError::statement("reading entries", &e))?;
        if rows.is_empty() {
            return Err(PgError::Damaged(format!(
                "entry {} is missing (the head row says {size})",
                frontier.size()
            )));
        }
        for row in rows {
            let i = u64::try_from(row.get::<_, i64>(0)).unwrap_or(u64::MAX);
            if i != frontier.size() {
                return Err(PgError::Damaged(format!(
                    "entry {} is missing (the next one is {i})",
                    frontier.size()
                )));
            }
            let leaf: Vec<u8> = row.get(1);
            buf.clear();
            encode_record(RecordKind::Event, &leaf, &mut buf);
            out.write(&buf)?;
            frontier.push(leaf_hash(&leaf));
            // The checkpoint closing this batch, if it ends here.
            if !no_more_cps && next_cp.as_ref().is_none_or(|(n, _)| *n < frontier.size()) {
                let row = tx
                    .query_opt(
                        "SELECT size, note FROM audit_checkpoints WHERE size > $1 \
                         ORDER BY size LIMIT 1",
                        &[&cp_after],
                    )
                    .await
                    .map_err(|e| PgError::statement("reading checkpoints", &e))?;
                no_more_cps = row.is_none();
                next_cp = row.map(|r| {
                    (
                        u64::try_from(r.get::<_, i64>(0)).unwrap_or(u64::MAX),
                        r.get(1),
                    )
                });
            }
            if let Some((n, note)) = next_cp.as_ref().filter(|(n, _)| *n == frontier.size()) {
                let cp = verifier
                    .verify_checkpoint(note)
                    .map_err(|e| PgError::Damaged(format!("checkpoint of size {n}: {e}")))?;
                if cp.root != frontier.root() {
                    return Err(PgError::Damaged(format!(
                        "the checkpoint of size {n} does not match the entries before it"
                    )));
                }
                buf.clear();
                encode_record(RecordKind::Checkpoint, note.as_bytes(), &mut buf);
                out.write(&buf)?;
                checkpoints += 1;
                cp_after = to_i64(*n);
                if out.len >= segment_max_bytes && frontier.size() < size {
                    out.finish()?;
                    out = Out::create(&seg_dir, frontier.size())?;
                }
            }
        }
    }
    if cp_after != to_i64(size) {
        return Err(PgError::Damaged(format!(
            "no checkpoint closes the log at its size {size}"
        )));
    }
    out.finish()?;
    tx.commit()
        .await
        .map_err(|e| PgError::statement("ending the export", &e))?;
    crate::audit::store::write_checkpoint_file(to, &head_note, true)?;
    crate::audit::key::write_public_key(&to.join(PUBLIC_KEY_FILE), verifier)?;
    Ok(Transferred {
        size,
        checkpoints,
        root: frontier.root(),
    })
}
