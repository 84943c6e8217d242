//! The schema of the log in PostgreSQL and its migrations, compiled into the daemon.
//!
//! Migrations are applied in order, each once, in one transaction under an advisory lock
//! (several daemons or commands starting at once migrate once); the versions applied are
//! rows of `breakglass_schema`. A database whose schema is newer than this build is refused.

use tokio_postgres::Client;

use super::error::PgError;

/// The migrations, version `i + 1` at index `i`. Never edit one that was released: add one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the log. Entries by index (dense: the only writer inserts size..size+n while it
    // holds the head row, and moves size in the same transaction), one signed checkpoint
    // per committed batch, and the head row: size, Merkle frontier (32 bytes per node,
    // largest subtree first) and the latest checkpoint.
    "CREATE TABLE audit_head (
        one        boolean PRIMARY KEY DEFAULT true CHECK (one),
        origin     text    NOT NULL,
        size       bigint  NOT NULL CHECK (size >= 0),
        frontier   bytea   NOT NULL,
        checkpoint text    NOT NULL
    );
    CREATE TABLE audit_entries (
        idx  bigint PRIMARY KEY CHECK (idx >= 0),
        leaf bytea  NOT NULL
    );
    CREATE TABLE audit_checkpoints (
        size bigint PRIMARY KEY CHECK (size > 0),
        note text   NOT NULL
    );",
];

/// Key of the advisory lock migrations take ("bgschema" in ASCII).
const MIGRATION_LOCK: i64 = 0x6267_7363_6865_6d61;

/// The newest schema version this build knows.
#[must_use]
pub fn current_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Applies the migrations the database lacks; returns the version it then has.
pub async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::statement("starting the migration", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| PgError::statement("taking the migration lock", &e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS breakglass_schema (
            version integer PRIMARY KEY,
            applied timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(|e| PgError::statement("creating breakglass_schema", &e))?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM breakglass_schema",
            &[],
        )
        .await
        .map_err(|e| PgError::statement("reading the schema version", &e))?
        .get(0);
    let known = current_version();
    if found > known {
        return Err(PgError::SchemaTooNew { found, known });
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(sql)
            .await
            .map_err(|e| PgError::statement(&format!("schema migration {version}"), &e))?;
        tx.execute(
            "INSERT INTO breakglass_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| PgError::statement(&format!("recording migration {version}"), &e))?;
    }
    tx.commit()
        .await
        .map_err(|e| PgError::statement("committing the migration", &e))?;
    if found < known {
        tracing::info!(from = found, to = known, "audit database schema migrated");
    }
    Ok(known)
}

/// The frontier's nodes as stored in `audit_head.frontier`.
#[must_use]
pub fn frontier_bytes(f: &breakglass_proto::audit::Frontier) -> Vec<u8> {
    f.nodes().concat()
}

/// The frontier of `size` leaves from `audit_head.frontier`; `None` when the bytes are not
/// one 32-byte node per set bit of `size`.
#[must_use]
pub fn frontier_of(size: u64, bytes: &[u8]) -> Option<breakglass_proto::audit::Frontier> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    let nodes = bytes
        .chunks_exact(32)
        .map(|c| <[u8; 32]>::try_from(c).ok())
        .collect::<Option<Vec<_>>>()?;
    breakglass_proto::audit::Frontier::from_nodes(size, nodes)
}
