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

/// The schema version the database holds (0: none yet), read without writing anything, so
/// that a role that may not create tables can check it.
pub async fn version(client: &Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('breakglass_schema') IS NOT NULL", &[])
        .await
        .map_err(|e| PgError::statement("looking for breakglass_schema", &e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM breakglass_schema",
            &[],
        )
        .await
        .map_err(|e| PgError::statement("reading the schema version", &e))?
        .get(0))
}

/// Applies the migrations the database lacks; returns the version it then has. A database
/// that is up to date is only read, so the daemons' role needs no right to create tables
/// (see [`grant_to`]); when it lacks that right and the schema is behind, the error says
/// to run `breakglass-ca audit migrate` as the owner.
pub async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let known = current_version();
    let found = version(client).await?;
    if found > known {
        return Err(PgError::SchemaTooNew { found, known });
    }
    if found == known {
        return Ok(known);
    }
    let denied = async |client: &Client, e: &tokio_postgres::Error, what: &str| {
        if e.code() != Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            return PgError::statement(what, e);
        }
        let role = match client.query_one("SELECT current_user::text", &[]).await {
            Ok(row) => row.get(0),
            Err(_) => "(this role)".to_owned(),
        };
        PgError::MigrationDenied {
            found,
            known,
            role,
            reason: super::error::db_reason(e),
        }
    };
    if let Err(e) = apply(client).await {
        return Err(match e {
            Applied::Db(what, e) => denied(client, &e, &what).await,
            Applied::Other(e) => e,
        });
    }
    if found < known {
        tracing::info!(from = found, to = known, "audit database schema migrated");
    }
    Ok(known)
}

/// Why [`apply`] failed: a statement (with what it was doing), or something else.
enum Applied {
    Db(String, tokio_postgres::Error),
    Other(PgError),
}

/// The migrations in one transaction under the migration lock.
async fn apply(client: &mut Client) -> Result<(), Applied> {
    let at = |what: &str| {
        let what = what.to_owned();
        move |e| Applied::Db(what, e)
    };
    let tx = client
        .transaction()
        .await
        .map_err(at("starting the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(at("taking the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS breakglass_schema (
            version integer PRIMARY KEY,
            applied timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(at("creating breakglass_schema"))?;
    // Read again under the lock: another daemon may have migrated meanwhile.
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM breakglass_schema",
            &[],
        )
        .await
        .map_err(at("reading the schema version"))?
        .get(0);
    let known = current_version();
    if found > known {
        return Err(Applied::Other(PgError::SchemaTooNew { found, known }));
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(sql)
            .await
            .map_err(at(&format!("schema migration {version}")))?;
        tx.execute(
            "INSERT INTO breakglass_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(at(&format!("recording migration {version}")))?;
    }
    tx.commit().await.map_err(at("committing the migration"))?;
    Ok(())
}

/// Gives `role` what a daemon needs and no more: it reads the log and appends to it (the
/// head row: insert once, then update), but may not delete, truncate or change an entry
/// or a checkpoint, nor change the schema. Run by the tables' owner after [`migrate`].
pub async fn grant_to(client: &Client, role: &str) -> Result<(), PgError> {
    let role = quote_ident(role);
    client
        .batch_execute(&format!(
            "GRANT SELECT, INSERT ON audit_entries, audit_checkpoints TO {role};
             GRANT SELECT, INSERT, UPDATE ON audit_head TO {role};
             GRANT SELECT ON breakglass_schema TO {role};"
        ))
        .await
        .map_err(|e| PgError::statement(&format!("granting the daemons' rights to {role}"), &e))
}

/// `name` as an SQL identifier (double-quoted, inner quotes doubled).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
