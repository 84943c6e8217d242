//! `[postgres]`: the PostgreSQL database of the audit log: what `breakglass-ca audit
//! import` and `audit export` connect to (and, with issue 14's next steps, the backend the
//! daemons serve from; `docs/several-daemons.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::field::{ConfigError, duration_field};

/// Default of `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of `statement_timeout`.
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Allowed range of both timeouts.
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(600));

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    url: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    connect_timeout: Option<String>,
    #[serde(default)]
    statement_timeout: Option<String>,
}

/// How the connection to the database is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTls {
    /// No TLS (a database on loopback or a Unix socket only).
    Disable,
    /// TLS, the server's certificate checked against `ca_file` and the host name.
    VerifyFull,
}

/// The database settings (`[postgres]`).
#[derive(Clone)]
pub struct PostgresSettings {
    /// libpq-style URL (`postgresql://user@host1:5432,host2:5432/db?target_session_attrs=read-write`).
    pub url: String,
    /// File holding the role's password (it wins over one in the URL).
    pub password_file: Option<PathBuf>,
    /// TLS to the database.
    pub tls: DbTls,
    /// CA certificates (PEM) the database's certificate must chain to (with `verify-full`).
    pub ca_file: PathBuf,
    /// Longest a connection attempt to one host may take.
    pub connect_timeout: Duration,
    /// Longest one statement (a commit included) may take before it fails.
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("PostgresSettings")
            .field("url", &redacted_url(&self.url))
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `url` with the password (between `user:` and `@`) replaced by `***`, for messages.
#[must_use]
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, hosts)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{hosts}"),
        None => url.to_owned(),
    }
}

/// Validates `[postgres]`.
pub(super) fn parse_postgres(
    raw: RawPostgres,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<PostgresSettings, ConfigError> {
    if !(raw.url.starts_with("postgresql://") || raw.url.starts_with("postgres://")) {
        return Err(err(
            "postgres.url",
            format!(
                "{:?} is not a postgresql:// URL (for example \"postgresql://breakglass@db1:5432,db2:5432/breakglass?target_session_attrs=read-write\")",
                redacted_url(&raw.url)
            ),
        ));
    }
    raw.url.parse::<tokio_postgres::Config>().map_err(|e| {
        err(
            "postgres.url",
            format!(
                "{:?} is not a valid connection URL: {e}",
                redacted_url(&raw.url)
            ),
        )
    })?;
    let tls = match raw.tls.as_deref().unwrap_or("verify-full") {
        "verify-full" => DbTls::VerifyFull,
        "disable" => DbTls::Disable,
        other => {
            return Err(err(
                "postgres.tls",
                format!("{other:?} is neither \"verify-full\" nor \"disable\""),
            ));
        }
    };
    Ok(PostgresSettings {
        url: raw.url,
        password_file: raw.password_file.map(|p| resolve(&p)),
        tls,
        ca_file: resolve(
            raw.ca_file
                .as_deref()
                .unwrap_or(Path::new("/etc/ssl/certs/ca-certificates.crt")),
        ),
        connect_timeout: duration_field(
            raw.connect_timeout.as_deref(),
            DEFAULT_CONNECT_TIMEOUT,
            TIMEOUT_RANGE,
        )
        .map_err(|e| err("postgres.connect_timeout", e))?,
        statement_timeout: duration_field(
            raw.statement_timeout.as_deref(),
            DEFAULT_STATEMENT_TIMEOUT,
            TIMEOUT_RANGE,
        )
        .map_err(|e| err("postgres.statement_timeout", e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_url_is_never_shown() {
        assert_eq!(
            redacted_url("postgresql://bg:s3cret@db1:5432,db2/bg?sslmode=require"),
            "postgresql://bg:***@db1:5432,db2/bg?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgresql://bg@db1/bg"),
            "postgresql://bg@db1/bg"
        );
    }
}
