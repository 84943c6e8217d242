//! `breakglass-ca audit import`, `audit export` and `audit migrate`: an embedded log into
//! PostgreSQL (the way from one machine to several daemons), the database's log out as
//! segment files for offline verification, and the schema created by its owner for
//! daemons whose role may only read and append. The work is in [`crate::audit::pg::transfer`]; this is the
//! command line's face: the configuration read, the connection made, the result told.

use std::path::PathBuf;

use base64::Engine;
use clap::Args;

use crate::audit::pg::{self, PgError, Transferred};
use breakglass_proto::audit::NoteVerifier;

use crate::config::Config;
use crate::config::postgres::PostgresSettings;

/// `breakglass-ca audit ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Copy an embedded audit log into the PostgreSQL database of [postgres] (which must
    /// hold no log yet)
    ///
    /// The directory is verified first as `breakglass audit verify` does, with the
    /// configured audit key ([audit] key and origin); its committed events and every
    /// batch's signed checkpoint are then written in one transaction, so the database
    /// holds all of them or none. The schema is created (or migrated) first. A database
    /// that holds any entry is refused. Prints the size and root, which equal the
    /// directory's. Stop the daemon that writes the directory first. When the daemons'
    /// role may only read and append, run it as the tables' owner (--url).
    Import(ImportArgs),
    /// Write the PostgreSQL database's audit log as segment files into a new directory
    ///
    /// The log is read in one consistent snapshot; every checkpoint is checked against the
    /// configured audit key and the entries before it. The directory (with `checkpoint` and
    /// `log.pub`) verifies offline with `breakglass audit verify DIR --key
    /// DIR/log.pub`.
    Export(ExportArgs),
    /// Create or upgrade the audit log's tables in the PostgreSQL database, as their owner,
    /// and give the daemons' role only what it needs
    ///
    /// A daemon migrates the schema itself at start-up when its role may create tables.
    /// For a role that may not (no DELETE, TRUNCATE or UPDATE of the log: see "Running
    /// several daemons" in the README), run this once as the owner, and again after an
    /// upgrade that changes the schema. With --grant-to, the role gets SELECT and INSERT on
    /// the entries and checkpoints, SELECT, INSERT and UPDATE on the head row, SELECT on
    /// the schema version, and nothing else. Prints the schema version.
    Migrate(MigrateArgs),
}

/// `breakglass-ca audit import`.
#[derive(Debug, Args, Clone)]
pub struct ImportArgs {
    /// Configuration file ([audit] key and origin, [postgres])
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The log directory to import [default: [audit] dir]
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub owner: AsOwner,
}

/// `breakglass-ca audit export`.
#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// Configuration file ([audit] key and origin, [postgres])
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The directory to write (new, or empty)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

/// Connecting as another role than the daemons' (the tables' owner).
#[derive(Debug, Args, Clone)]
pub struct AsOwner {
    /// Connect as this URL instead of [postgres] url (the tables' owner, e.g.
    /// postgresql://breakglass_owner@db1:5432/breakglass); its password comes from
    /// --password-file or the URL
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// File holding the --url role's password (mode 0600)
    #[arg(long, value_name = "FILE", requires = "url")]
    pub password_file: Option<PathBuf>,
}

impl AsOwner {
    /// `db` with this URL and password file, when one is given.
    fn apply(&self, db: &mut PostgresSettings) {
        if let Some(url) = &self.url {
            // The configured password file is the daemons' role's, not this one's.
            db.url.clone_from(url);
            db.password_file.clone_from(&self.password_file);
        }
    }
}

/// `breakglass-ca audit migrate`.
#[derive(Debug, Args, Clone)]
pub struct MigrateArgs {
    /// Configuration file ([postgres]: TLS, timeouts, and the URL unless --url is given)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub owner: AsOwner,
    /// Give this role (the daemons' [postgres] role) the rights a daemon needs, and no more
    #[arg(long, value_name = "ROLE")]
    pub grant_to: Option<String>,
}

/// Why an `audit` command failed, with its exit status.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// The transfer failed.
    #[error(transparent)]
    Pg(#[from] PgError),
}

impl TransferError {
    /// sysexits: 64 for the configuration, 69 for an unreachable database, 65 for a log that
    /// does not verify or a database that is not empty, 73 for an export directory that is
    /// not empty, 77 for a role that may not migrate, 74 for other failures.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            TransferError::Config(_) => 64,
            TransferError::Pg(PgError::Connect { .. }) => 69,
            TransferError::Pg(PgError::NotEmpty { .. } | PgError::Damaged(_) | PgError::NoLog) => {
                65
            }
            TransferError::Pg(PgError::TargetNotEmpty(_)) => 73,
            TransferError::Pg(PgError::MigrationDenied { .. }) => 77,
            TransferError::Pg(_) => 74,
        }
    }
}

/// The configuration, the audit key's verifier and the database settings.
fn load(path: &std::path::Path) -> Result<(Config, NoteVerifier, PostgresSettings), TransferError> {
    let config = Config::load(path).map_err(|e| TransferError::Config(e.to_string()))?;
    let Some(db) = config.postgres.clone() else {
        return Err(TransferError::Config(format!(
            "{}: no [postgres] section: add one with the database's url",
            path.display()
        )));
    };
    let signer = crate::audit::load_audit_key(&config.audit.key, &config.audit.origin)
        .map_err(|e| TransferError::Config(e.to_string()))?;
    Ok((config, signer.verifier(), db))
}

fn told(what: &str, t: &Transferred) -> String {
    format!(
        "{what}: {} entries, {} checkpoints, root {}\n",
        t.size,
        t.checkpoints,
        base64::engine::general_purpose::STANDARD.encode(t.root)
    )
}

/// Runs `audit import`; returns what to print.
pub async fn import(args: &ImportArgs) -> Result<String, TransferError> {
    let (config, verifier, mut db) = load(&args.config)?;
    args.owner.apply(&mut db);
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| config.audit.dir.clone());
    let mut client = pg::connect(&db).await?;
    let t = pg::import(&mut client, &from, &verifier).await?;
    Ok(told(&format!("imported {}", from.display()), &t))
}

/// Runs `audit export`; returns what to print.
pub async fn export(args: &ExportArgs) -> Result<String, TransferError> {
    let (config, verifier, db) = load(&args.config)?;
    let mut client = pg::connect(&db).await?;
    let t = pg::export(
        &mut client,
        &args.to,
        &verifier,
        config.audit.segment_max_bytes,
    )
    .await?;
    Ok(told(&format!("exported to {}", args.to.display()), &t))
}

/// Runs `audit migrate`; returns what to print.
pub async fn migrate(args: &MigrateArgs) -> Result<String, TransferError> {
    let config = Config::load(&args.config).map_err(|e| TransferError::Config(e.to_string()))?;
    let Some(mut db) = config.postgres.clone() else {
        return Err(TransferError::Config(format!(
            "{}: no [postgres] section: add one with the database's url",
            args.config.display()
        )));
    };
    args.owner.apply(&mut db);
    let mut client = pg::connect(&db).await?;
    let version = pg::schema::migrate(&mut client).await?;
    let mut told = format!("the audit database's schema is at version {version}\n");
    if let Some(role) = &args.grant_to {
        pg::schema::grant_to(&client, role).await?;
        told.push_str(&format!(
            "role {role} may read the log and append to it; it may not delete, truncate or \
             change entries, checkpoints or the schema\n"
        ));
    }
    Ok(told)
}
