//! How an operation on the database fails (a leaf: every part of `pg` uses it).

/// Why an operation on the database failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database cannot be reached or refused the login.
    #[error(
        "cannot connect to PostgreSQL at {url}: {reason}; check [postgres] url, the role's \
         password and that the server accepts connections"
    )]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// A statement failed.
    #[error("PostgreSQL: {what}: {reason}")]
    Statement {
        /// What was being done.
        what: String,
        /// What the server or the client said.
        reason: String,
    },
    /// The database's schema is newer than this build knows.
    #[error(
        "the database's breakglass schema is version {found}, newer than this breakglass-ca \
         knows ({known}): upgrade breakglass-ca"
    )]
    SchemaTooNew {
        /// The version in the database.
        found: i32,
        /// The newest version this build has.
        known: i32,
    },
    /// The schema must be created or migrated, and the role connected may not do it.
    #[error(
        "the database's breakglass schema is version {found}, this breakglass-ca needs \
         {known}, and role {role} may not change it ({reason}): run `breakglass-ca audit \
         migrate --config FILE --url <a URL of the tables' owner> --grant-to {role}` once, \
         then start the daemons"
    )]
    MigrationDenied {
        /// The version in the database.
        found: i32,
        /// The version this build needs.
        known: i32,
        /// The role connected.
        role: String,
        /// What the server said.
        reason: String,
    },
    /// `audit import` into a database that already holds a log.
    #[error(
        "the database already holds an audit log ({size} entries): import only into an empty \
         one (a new database, or after moving this one aside)"
    )]
    NotEmpty {
        /// Entries it holds.
        size: u64,
    },
    /// `audit export` into a directory that holds something.
    #[error("{} is not empty: export into a new directory", .0.display())]
    TargetNotEmpty(std::path::PathBuf),
    /// The database holds no log (`audit export` of a database never imported into or
    /// served from).
    #[error("the database holds no audit log yet (no head row): nothing to export")]
    NoLog,
    /// What the database holds is not a log this key signed, or not a consistent one.
    #[error("the database's audit log does not verify: {0}")]
    Damaged(String),
    /// Reading or writing the log directory failed, or it does not verify.
    #[error(transparent)]
    Local(#[from] crate::audit::base::AuditError),
}

impl PgError {
    /// A failed statement: `what` was being done.
    pub(crate) fn statement(what: &str, e: &tokio_postgres::Error) -> Self {
        Self::Statement {
            what: what.to_owned(),
            reason: db_reason(e),
        }
    }
}

/// The server's message of `e` (with its detail), or the client's.
pub(crate) fn db_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}
