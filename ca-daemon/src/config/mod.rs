//! Daemon configuration: TOML, versioned, unknown fields rejected, validated
//! as a whole before anything is bound or signed.
//!
//! One file per part of the file: [`server`] (`[server]`, `[ca]`), [`audit`] (`[audit]`,
//! `[revocation]`), [`identities`] (`[[identities]]`, `[[admin_users]]`),
//! [`notifications`] (`[notifications]`, `[refusals]`, `[[webhooks]]`), [`policy`] (`[[tiers]]`,
//! `[[rules]]`), [`log`] (`[log]`), [`field`] the rules they share, and [`keys`] the table
//! of every key (its defaults, and `breakglass-ca.toml(5)`); here, the whole.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keyfile;
use crate::policy::Policy;

pub mod audit;
pub mod enrollment;
pub mod field;
pub mod identities;
pub mod keys;
pub mod log;
pub mod notifications;
pub mod oidc;
pub mod policy;
pub mod postgres;
pub mod recordings;
pub mod server;

pub use self::audit::{AuditBackend, AuditSettings, RevocationSettings};
pub use self::enrollment::{DEFAULT_LOGIN_NONCE_TTL, EnrollmentSettings};
pub use self::field::ConfigError;
pub use self::identities::{
    ADMIN_SOCKET_NAMESPACE, AdminUser, Identity, check_identity, is_admin_socket_identity,
};
pub use self::log::{LogFormat, LogSettings};
pub use self::notifications::{MAX_REFUSALS_PER_HOUR, NotifySettings, RefusalSettings};
pub use self::oidc::{DEFAULT_LOGIN_TTL, OidcSettings};
pub use self::policy::{DEFAULT_TIER, MAX_APPROVALS};
pub use self::recordings::RecordingSettings;
pub use self::server::{CaConfig, HARD_MAX_TTL, ServerConfig};
pub use crate::request::parse_cidr;

/// The only configuration format version this build understands.
pub const CONFIG_VERSION: u32 = 1;
/// Largest configuration file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    server: server::RawServer,
    ca: server::RawCa,
    audit: audit::RawAudit,
    #[serde(default)]
    identities: Vec<identities::RawIdentity>,
    #[serde(default)]
    admin_users: Vec<identities::RawAdminUser>,
    #[serde(default)]
    rules: Vec<policy::RawRule>,
    #[serde(default)]
    tiers: Vec<policy::RawTier>,
    #[serde(default)]
    notifications: Option<notifications::RawNotifications>,
    #[serde(default)]
    revocation: Option<audit::RawRevocation>,
    #[serde(default)]
    refusals: Option<notifications::RawRefusals>,
    #[serde(default)]
    log: Option<log::RawLog>,
    #[serde(default)]
    webhooks: Vec<notifications::RawWebhook>,
    #[serde(default)]
    recordings: Option<recordings::RawRecordings>,
    #[serde(default)]
    oidc: Option<oidc::RawOidc>,
    #[serde(default)]
    enrollment: Option<enrollment::RawEnrollment>,
    #[serde(default)]
    postgres: Option<postgres::RawPostgres>,
}

/// A validated daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File the configuration was read from.
    pub path: PathBuf,
    /// Network and TLS settings.
    pub server: ServerConfig,
    /// CA settings.
    pub ca: CaConfig,
    /// Audit log settings.
    pub audit: AuditSettings,
    /// Known identities (client certificates).
    pub identities: Vec<Identity>,
    /// Groups of the local users of the admin socket.
    pub admin_users: Vec<AdminUser>,
    /// Compiled policy (rules and risk tiers).
    pub policy: Policy,
    /// Notification delivery settings.
    pub notifications: NotifySettings,
    /// Revocation settings.
    pub revocation: RevocationSettings,
    /// Refusal recording and alerting.
    pub refusals: RefusalSettings,
    /// The daemon's own log lines (`[log]`).
    pub log: LogSettings,
    /// Session recordings kept beside the log (`[recordings]`).
    pub recordings: RecordingSettings,
    /// Login with the organisation's OpenID Connect provider (`[oidc]`); `None`: off.
    pub oidc: Option<OidcSettings>,
    /// Host enrollment with join tokens (`[enrollment]`).
    pub enrollment: EnrollmentSettings,
    /// The PostgreSQL database of the audit log (`[postgres]`), if configured.
    pub postgres: Option<postgres::PostgresSettings>,
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in it
    /// are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_hashed(path).map(|(config, _)| config)
    }

    /// [`load`](Self::load), with the SHA-256 of the bytes it read (what a reload records).
    pub fn load_hashed(path: &Path) -> Result<(Self, [u8; 32]), ConfigError> {
        use ssh_key::sha2::{Digest, Sha256};
        let err = |field: &str, reason: String| ConfigError {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let bytes = keyfile::read_checked(path, MAX_CONFIG_BYTES, keyfile::Secrecy::Public)
            .map_err(|e| err("file", e.to_string()))?;
        let sha256 = Sha256::digest(&bytes).into();
        let text = String::from_utf8(bytes).map_err(|_| err("file", "is not UTF-8".into()))?;
        Ok((Self::parse(path, &text)?, sha256))
    }

    /// Parses and validates configuration text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |field: &str, reason: String| ConfigError {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let at_line = |e: toml::de::Error| {
            let msg = e.message().to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "file".to_owned());
            err(&at, msg)
        };
        // Unknown and missing keys and wrong types first, with the line they are on; then
        // the documented defaults of the key table filled in, and the sections parsed
        // from the filled-in table.
        toml::from_str::<RawConfig>(text).map_err(at_line)?;
        let mut doc: toml::Table = toml::from_str(text).map_err(at_line)?;
        keys::check_keys(&mut doc, &err)?;
        let raw: RawConfig = doc.try_into().map_err(|e: toml::de::Error| {
            err("file", format!("{} (a documented default)", e.message()))
        })?;
        Self::from_raw(path, raw)
    }

    /// Validates the parsed sections.
    fn from_raw(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let err = |field: &str, reason: String| ConfigError {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        if raw.version != CONFIG_VERSION {
            return Err(err(
                "version",
                format!(
                    "version {} is not supported; this breakglass-ca reads version {CONFIG_VERSION}",
                    raw.version
                ),
            ));
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        // In file order of the checks before the split: server, ca, audit, revocation,
        // identities, admin users, tiers, notifications, refusals, rules.
        let server = server::parse_server(raw.server, &resolve, &err)?;
        let ca = server::parse_ca(raw.ca, &resolve, &err)?;
        let audit = audit::parse_audit(raw.audit, &resolve, &err)?;
        let revocation = audit::parse_revocation(raw.revocation, &err)?;
        let identities = identities::parse_identities(raw.identities, &err)?;
        let admin_users =
            identities::parse_admin_users(raw.admin_users, server.admin_socket.as_deref(), &err)?;
        let tiers = policy::parse_tiers(raw.tiers, &ca, &err)?;
        let mut notifications =
            notifications::parse_notifications(raw.notifications, &resolve, &err)?;
        let refusals =
            notifications::parse_refusals(raw.refusals.unwrap_or_default(), &tiers, &err)?;
        notifications.formats =
            notifications::parse_webhooks(raw.webhooks, &tiers, &refusals, &err)?;
        let rules = policy::parse_rules(raw.rules, &tiers, &ca, &err)?;
        let recordings = recordings::parse_recordings(raw.recordings.unwrap_or_default(), &err)?;
        let oidc = raw
            .oidc
            .map(|o| oidc::parse_oidc(o, &resolve, &err))
            .transpose()?;
        let enrollment =
            enrollment::parse_enrollment(raw.enrollment.unwrap_or_default(), &resolve, &err)?;
        let postgres = raw
            .postgres
            .map(|p| postgres::parse_postgres(p, &resolve, &err))
            .transpose()?;
        if audit.backend == audit::AuditBackend::Postgres && postgres.is_none() {
            return Err(err(
                "audit.backend",
                "\"postgres\" needs a [postgres] section with the database's url".into(),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            server,
            ca,
            audit,
            identities,
            admin_users,
            policy: Policy::new(rules, tiers),
            notifications,
            revocation,
            refusals,
            log: log::parse_log(raw.log.unwrap_or_default()),
            recordings,
            oidc,
            enrollment,
            postgres,
        })
    }
}

#[cfg(test)]
mod tests;
