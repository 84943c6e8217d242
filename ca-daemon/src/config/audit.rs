//! `[audit]` and `[revocation]`: where the signed log lives and who may read it, and who
//! administers revocations.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::field::{ConfigError, check_word};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    dir: PathBuf,
    key: PathBuf,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    segment_max_mib: Option<u64>,
    #[serde(default)]
    max_batch: Option<usize>,
    #[serde(default)]
    reader_groups: Option<Vec<String>>,
    #[serde(default)]
    syslog_socket: Option<PathBuf>,
    #[serde(default)]
    snapshot_every_events: Option<u64>,
    #[serde(default)]
    snapshot_every_seconds: Option<u64>,
    #[serde(default)]
    backend: Option<String>,
}

/// Audit log settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Log directory (segments, checkpoint).
    pub dir: PathBuf,
    /// Ed25519 checkpoint signing key (PKCS#8 PEM, mode 0600), not the SSH CA key.
    pub key: PathBuf,
    /// Log origin: the first line of every checkpoint and the key name.
    pub origin: String,
    /// Segment size at which a new segment is started.
    pub segment_max_bytes: u64,
    /// Most events per group commit.
    pub max_batch: usize,
    /// Groups whose members may read the log through the Audit API.
    pub reader_groups: Vec<String>,
    /// Syslog datagram socket that gets one authpriv line per recorded event.
    pub syslog_socket: PathBuf,
    /// A state snapshot is written after this many new events (0: not by count).
    pub snapshot_every_events: u64,
    /// A state snapshot is written after this long when there are new events (zero: not
    /// by time).
    pub snapshot_every: std::time::Duration,
    /// Where the log is durable: its directory, or the `[postgres]` database (the
    /// directory then holds a mirror of it).
    pub backend: AuditBackend,
}

/// Where the audit log is durable (`[audit] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditBackend {
    /// The segment files in `[audit] dir`, fdatasynced (the default).
    Local,
    /// The `[postgres]` database; `[audit] dir` holds a mirror for reads.
    Postgres,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    #[serde(default)]
    admin_groups: Option<Vec<String>>,
}

/// Revocation settings (`[revocation]`).
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// Groups whose members may revoke any grant (requesters may always revoke their own)
    /// and acknowledge a log fork hosts reported (`crate::witness`).
    pub admin_groups: Vec<String>,
}

/// Validates `[audit]`.
pub(super) fn parse_audit(
    raw: RawAudit,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<AuditSettings, ConfigError> {
    let origin = raw
        .origin
        .clone()
        .unwrap_or_else(|| "breakglass-ca/audit/v1".to_owned());
    if origin.is_empty()
        || origin.len() > 128
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(err(
            "audit.origin",
            format!(
                "{origin:?} must be 1 to 128 printable characters without spaces or '+' (for example \"ca.example.com/audit/v1\")"
            ),
        ));
    }
    let segment_mib = raw.segment_max_mib.unwrap_or(64);
    if !(1..=4096).contains(&segment_mib) {
        return Err(err(
            "audit.segment_max_mib",
            format!("{segment_mib} is outside 1 to 4096"),
        ));
    }
    let max_batch = raw.max_batch.unwrap_or(1024);
    if !(1..=65536).contains(&max_batch) {
        return Err(err(
            "audit.max_batch",
            format!("{max_batch} is outside 1 to 65536"),
        ));
    }
    let snapshot_every_events = raw.snapshot_every_events.unwrap_or(1_000_000);
    if snapshot_every_events > 1_000_000_000 {
        return Err(err(
            "audit.snapshot_every_events",
            format!("{snapshot_every_events} is outside 0 to 1000000000 (0 turns it off)"),
        ));
    }
    let snapshot_every_seconds = raw.snapshot_every_seconds.unwrap_or(300);
    if snapshot_every_seconds > 86_400 {
        return Err(err(
            "audit.snapshot_every_seconds",
            format!("{snapshot_every_seconds} is outside 0 to 86400 (0 turns it off)"),
        ));
    }
    let backend = match raw.backend.as_deref().unwrap_or("local") {
        "local" => AuditBackend::Local,
        "postgres" => AuditBackend::Postgres,
        other => {
            return Err(err(
                "audit.backend",
                format!("{other:?} is neither \"local\" nor \"postgres\""),
            ));
        }
    };
    let audit = AuditSettings {
        dir: resolve(&raw.dir),
        key: resolve(&raw.key),
        origin,
        segment_max_bytes: segment_mib * 1024 * 1024,
        max_batch,
        reader_groups: raw
            .reader_groups
            .unwrap_or_else(|| vec!["auditors".to_owned(), "admins".to_owned()]),
        syslog_socket: raw
            .syslog_socket
            .map_or_else(|| PathBuf::from(bg_syslog::DEFAULT_SOCKET), |p| resolve(&p)),
        snapshot_every_events,
        snapshot_every: std::time::Duration::from_secs(snapshot_every_seconds),
        backend,
    };
    for g in &audit.reader_groups {
        check_word(g).map_err(|r| err("audit.reader_groups", r))?;
    }

    Ok(audit)
}

/// Validates `[revocation]`.
pub(super) fn parse_revocation(
    raw: Option<RawRevocation>,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<RevocationSettings, ConfigError> {
    let revocation = RevocationSettings {
        admin_groups: raw
            .unwrap_or_default()
            .admin_groups
            .unwrap_or_else(|| vec!["admins".to_owned()]),
    };
    for g in &revocation.admin_groups {
        check_word(g).map_err(|r| err("revocation.admin_groups", r))?;
    }
    Ok(revocation)
}
