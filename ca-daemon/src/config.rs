//! Daemon configuration: TOML, versioned, unknown fields rejected, validated
//! as a whole before anything is bound or signed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use breakglass_proto::{names, profile::PERMIT_EXTENSIONS};
use ipnet::IpNet;
use serde::Deserialize;

use crate::keyfile;
use crate::policy::{Effect, Emergency, Policy, Rule, Tier};

/// The only configuration format version this build understands.
pub const CONFIG_VERSION: u32 = 1;
/// Largest configuration file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// No certificate ever outlives this, whatever the configuration says.
pub const HARD_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A configuration error: which field, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {field}: {reason}")]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// Dotted path of the offending field (`rules[2].max_ttl`), or `file`.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    server: RawServer,
    ca: RawCa,
    audit: RawAudit,
    #[serde(default)]
    identities: Vec<RawIdentity>,
    #[serde(default)]
    admin_users: Vec<RawAdminUser>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    tiers: Vec<RawTier>,
    #[serde(default)]
    notifications: Option<RawNotifications>,
    #[serde(default)]
    revocation: Option<RawRevocation>,
    #[serde(default)]
    refusals: Option<RawRefusals>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefusals {
    #[serde(default)]
    per_identity_per_hour: Option<u32>,
    #[serde(default)]
    alert_threshold: Option<u32>,
    #[serde(default)]
    webhooks: Option<Vec<String>>,
}

/// How refusals by policy are recorded and alerted (`[refusals]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSettings {
    /// Refusals recorded one by one per identity and hour; beyond, they are still refused
    /// but only one `refusals_limited` event records that the limit was hit.
    pub per_identity_per_hour: u32,
    /// The refusal of an identity within one hour that sends the alert webhook (0 = never).
    pub alert_threshold: u32,
    /// Where that alert goes (by default, every webhook of every tier).
    pub webhooks: Vec<String>,
}

impl Default for RefusalSettings {
    fn default() -> Self {
        Self {
            per_identity_per_hour: 60,
            alert_threshold: 10,
            webhooks: Vec::new(),
        }
    }
}

/// Most refusals per identity and hour the configuration may ask to record one by one.
pub const MAX_REFUSALS_PER_HOUR: u32 = 100_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    name: String,
    #[serde(default)]
    approvals: u32,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    reviewers: Option<Vec<String>>,
    #[serde(default)]
    reason_required: Option<bool>,
    #[serde(default)]
    reason_min_length: usize,
    #[serde(default)]
    ticket_required: bool,
    #[serde(default)]
    ticket_pattern: Option<String>,
    max_ttl: String,
    #[serde(default)]
    max_wait: Option<String>,
    #[serde(default)]
    emergency: bool,
    #[serde(default)]
    emergency_ttl: Option<String>,
    #[serde(default)]
    emergency_per_day: Option<u32>,
    #[serde(default)]
    session_recording: bool,
    #[serde(default)]
    webhooks: Vec<String>,
    #[serde(default)]
    drill: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotifications {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    queue: Option<usize>,
    #[serde(default)]
    syslog: Option<bool>,
    #[serde(default)]
    syslog_socket: Option<PathBuf>,
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
    #[serde(default)]
    client_config: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    #[serde(default)]
    admin_socket: Option<PathBuf>,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    handshake_timeout: Option<String>,
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default)]
    max_handshakes: Option<usize>,
    #[serde(default)]
    max_handshakes_per_source: Option<usize>,
    #[serde(default)]
    shutdown_grace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    signing_key: PathBuf,
    #[serde(default)]
    extra_public_keys: Vec<PathBuf>,
    #[serde(default)]
    backdate: Option<String>,
    #[serde(default)]
    max_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    id: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminUser {
    user: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default)]
    effect: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    interactive: bool,
    #[serde(default)]
    source_addresses: Option<Vec<String>>,
    #[serde(default)]
    max_ttl: Option<String>,
    #[serde(default)]
    extensions: Vec<String>,
    #[serde(default)]
    hours: Vec<String>,
}

/// How notifications (webhooks, syslog) are delivered.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Longest one webhook POST may take (connect + answer).
    pub timeout: Duration,
    /// Further attempts after a failed POST.
    pub retries: u32,
    /// Delay before the first retry (doubled for each further one).
    pub retry_delay: Duration,
    /// Notifications queued before new ones are dropped (issuance never waits).
    pub queue: usize,
    /// Also write one syslog line per notification.
    pub syslog: bool,
    /// The syslog socket.
    pub syslog_socket: PathBuf,
    /// PEM roots for `https://` webhooks.
    pub ca_bundle: PathBuf,
    /// `--config` argument shown in the approve command of notifications.
    pub client_config: Option<String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retries: 3,
            retry_delay: Duration::from_secs(1),
            queue: 1024,
            syslog: false,
            syslog_socket: PathBuf::from("/dev/log"),
            ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            client_config: None,
        }
    }
}

/// Network and TLS settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP address of the mTLS gRPC listener.
    pub listen: SocketAddr,
    /// Local admin Unix socket, if any.
    pub admin_socket: Option<PathBuf>,
    /// Server certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// Server private key (PEM, mode 0600).
    pub tls_key: PathBuf,
    /// CA that signs client certificates (PEM).
    pub client_ca: PathBuf,
    /// Longest a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Most TCP connections, handshaking or established (None: derived from the file
    /// descriptor limit at start-up, see [`crate::accept::Limits`]).
    pub max_connections: Option<usize>,
    /// Most unauthenticated TLS handshakes in flight; a new one sheds the oldest.
    pub max_handshakes: usize,
    /// Most unauthenticated TLS handshakes in flight from one source address (IPv6: /64).
    pub max_handshakes_per_source: usize,
    /// How long in-flight calls may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

/// SSH certificate authority settings.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// OpenSSH Ed25519 private key that signs certificates (mode 0600).
    pub signing_key: PathBuf,
    /// Further CA public keys published to hosts (rotation).
    pub extra_public_keys: Vec<PathBuf>,
    /// How far `valid_after` is set in the past, for clock skew.
    pub backdate: Duration,
    /// Longest TTL any request may ask for.
    pub max_ttl: Duration,
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
}

/// A known caller identity (`[[identities]]`): someone or something with a client certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The SAN (URI or e-mail) of the client certificate; never in the `unix:` namespace.
    pub id: String,
    /// Groups the identity belongs to.
    pub groups: Vec<String>,
    /// The person behind the identity (several identities may share one owner).
    pub owner: Option<String>,
}

/// A local user of the admin socket (`[[admin_users]]`), identified by `SO_PEERCRED`
/// as `unix:<user>`.
#[derive(Debug, Clone)]
pub struct AdminUser {
    /// The Unix user name (without `unix:`).
    pub user: String,
    /// Groups the user has on the admin socket.
    pub groups: Vec<String>,
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
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in it
    /// are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |field: &str, reason: String| ConfigError {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let bytes = keyfile::read_checked(path, MAX_CONFIG_BYTES, keyfile::Secrecy::Public)
            .map_err(|e| err("file", e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| err("file", "is not UTF-8".into()))?;
        Self::parse(path, &text)
    }

    /// Parses and validates configuration text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let err = |field: &str, reason: String| ConfigError {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "file".to_owned());
            err(&at, msg)
        })?;
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

        let listen = raw.server.listen.parse::<SocketAddr>().map_err(|e| {
            err(
                "server.listen",
                format!("{:?} is not an address:port ({e})", raw.server.listen),
            )
        })?;
        let server = ServerConfig {
            listen,
            admin_socket: raw.server.admin_socket.as_deref().map(resolve),
            tls_cert: resolve(&raw.server.tls_cert),
            tls_key: resolve(&raw.server.tls_key),
            client_ca: resolve(&raw.server.client_ca),
            handshake_timeout: duration_field(
                raw.server.handshake_timeout.as_deref(),
                Duration::from_secs(5),
                (Duration::from_millis(100), Duration::from_secs(300)),
            )
            .map_err(|r| err("server.handshake_timeout", r))?,
            max_connections: raw
                .server
                .max_connections
                .map(|n| count_field(n, (2, 1 << 20)))
                .transpose()
                .map_err(|r| err("server.max_connections", r))?,
            max_handshakes: count_field(raw.server.max_handshakes.unwrap_or(256), (1, 65536))
                .map_err(|r| err("server.max_handshakes", r))?,
            max_handshakes_per_source: count_field(
                raw.server.max_handshakes_per_source.unwrap_or(32),
                (1, 65536),
            )
            .map_err(|r| err("server.max_handshakes_per_source", r))?,
            shutdown_grace: duration_field(
                raw.server.shutdown_grace.as_deref(),
                Duration::from_secs(10),
                (Duration::ZERO, Duration::from_secs(600)),
            )
            .map_err(|r| err("server.shutdown_grace", r))?,
        };
        if server.max_handshakes_per_source > server.max_handshakes {
            return Err(err(
                "server.max_handshakes_per_source",
                format!(
                    "{} is more than max_handshakes ({}); one source can never hold more than all",
                    server.max_handshakes_per_source, server.max_handshakes
                ),
            ));
        }
        if let Some(max) = server.max_connections
            && server.max_handshakes > max / 2
        {
            return Err(err(
                "server.max_handshakes",
                format!(
                    "{} is more than half of max_connections ({max}); unauthenticated \
                     handshakes may hold at most half of the connection slots, so lower it \
                     to {} or raise max_connections",
                    server.max_handshakes,
                    max / 2
                ),
            ));
        }

        let ca = CaConfig {
            signing_key: resolve(&raw.ca.signing_key),
            extra_public_keys: raw
                .ca
                .extra_public_keys
                .iter()
                .map(|p| resolve(p))
                .collect(),
            backdate: duration_field(
                raw.ca.backdate.as_deref(),
                Duration::from_secs(120),
                (Duration::ZERO, Duration::from_secs(3600)),
            )
            .map_err(|r| err("ca.backdate", r))?,
            max_ttl: duration_field(
                raw.ca.max_ttl.as_deref(),
                Duration::from_secs(12 * 3600),
                (Duration::from_secs(1), HARD_MAX_TTL),
            )
            .map_err(|r| err("ca.max_ttl", r))?,
        };

        let origin = raw
            .audit
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
        let segment_mib = raw.audit.segment_max_mib.unwrap_or(64);
        if !(1..=4096).contains(&segment_mib) {
            return Err(err(
                "audit.segment_max_mib",
                format!("{segment_mib} is outside 1 to 4096"),
            ));
        }
        let max_batch = raw.audit.max_batch.unwrap_or(1024);
        if !(1..=65536).contains(&max_batch) {
            return Err(err(
                "audit.max_batch",
                format!("{max_batch} is outside 1 to 65536"),
            ));
        }
        let audit = AuditSettings {
            dir: resolve(&raw.audit.dir),
            key: resolve(&raw.audit.key),
            origin,
            segment_max_bytes: segment_mib * 1024 * 1024,
            max_batch,
            reader_groups: raw
                .audit
                .reader_groups
                .unwrap_or_else(|| vec!["auditors".to_owned(), "admins".to_owned()]),
            syslog_socket: raw
                .audit
                .syslog_socket
                .map_or_else(|| PathBuf::from(bg_syslog::DEFAULT_SOCKET), |p| resolve(&p)),
        };
        for g in &audit.reader_groups {
            check_word(g).map_err(|r| err("audit.reader_groups", r))?;
        }

        let revocation = RevocationSettings {
            admin_groups: raw
                .revocation
                .unwrap_or_default()
                .admin_groups
                .unwrap_or_else(|| vec!["admins".to_owned()]),
        };
        for g in &revocation.admin_groups {
            check_word(g).map_err(|r| err("revocation.admin_groups", r))?;
        }
        let mut seen = BTreeSet::new();
        let mut identities = Vec::new();
        for (i, id) in raw.identities.into_iter().enumerate() {
            let field = format!("identities[{i}]");
            check_identity(&id.id).map_err(|r| err(&format!("{field}.id"), r))?;
            if crate::identity::is_admin_socket_identity(&id.id) {
                return Err(err(
                    &format!("{field}.id"),
                    admin_socket_identity_in_identities(&id.id, &id.groups),
                ));
            }
            if !seen.insert(id.id.clone()) {
                return Err(err(
                    &format!("{field}.id"),
                    format!("identity {:?} is listed twice", id.id),
                ));
            }
            for g in &id.groups {
                check_word(g).map_err(|r| err(&format!("{field}.groups"), r))?;
            }
            identities.push(Identity {
                id: id.id,
                groups: id.groups,
                owner: id.owner,
            });
        }

        let mut admin_users = Vec::new();
        for (i, u) in raw.admin_users.into_iter().enumerate() {
            let field = format!("admin_users[{i}]");
            if server.admin_socket.is_none() {
                return Err(err(
                    &format!("{field}.user"),
                    "[server] admin_socket is not set, so no local user can connect; \
                     set admin_socket or remove [[admin_users]]"
                        .into(),
                ));
            }
            if let Some(bare) = u.user.strip_prefix(crate::identity::ADMIN_SOCKET_NAMESPACE) {
                return Err(err(
                    &format!("{field}.user"),
                    format!("write the Unix user name without the unix: prefix: user = {bare:?}"),
                ));
            }
            names::check_principal(&u.user).map_err(|r| {
                err(
                    &format!("{field}.user"),
                    format!("{r} (user is a local Unix user name, like \"root\")"),
                )
            })?;
            if admin_users.iter().any(|a: &AdminUser| a.user == u.user) {
                return Err(err(
                    &format!("{field}.user"),
                    format!("user {:?} is listed twice", u.user),
                ));
            }
            for g in &u.groups {
                check_word(g).map_err(|r| err(&format!("{field}.groups"), r))?;
            }
            admin_users.push(AdminUser {
                user: u.user,
                groups: u.groups,
            });
        }

        let tiers = parse_tiers(raw.tiers, &ca, &err)?;
        let notifications = match raw.notifications {
            None => NotifySettings::default(),
            Some(n) => {
                let d = NotifySettings::default();
                let queue = n.queue.unwrap_or(d.queue);
                if !(1..=1_000_000).contains(&queue) {
                    return Err(err(
                        "notifications.queue",
                        format!("{queue} is outside 1 to 1000000"),
                    ));
                }
                let retries = n.retries.unwrap_or(d.retries);
                if retries > 20 {
                    return Err(err(
                        "notifications.retries",
                        format!("{retries} is more than 20"),
                    ));
                }
                NotifySettings {
                    timeout: duration_field(
                        n.timeout.as_deref(),
                        d.timeout,
                        (Duration::from_millis(100), Duration::from_secs(120)),
                    )
                    .map_err(|r| err("notifications.timeout", r))?,
                    retries,
                    retry_delay: duration_field(
                        n.retry_delay.as_deref(),
                        d.retry_delay,
                        (Duration::from_millis(10), Duration::from_secs(600)),
                    )
                    .map_err(|r| err("notifications.retry_delay", r))?,
                    queue,
                    syslog: n.syslog.unwrap_or(d.syslog),
                    syslog_socket: n.syslog_socket.map_or(d.syslog_socket, |p| resolve(&p)),
                    ca_bundle: n.ca_bundle.map_or(d.ca_bundle, |p| resolve(&p)),
                    client_config: n.client_config,
                }
            }
        };

        let refusals = parse_refusals(raw.refusals.unwrap_or_default(), &tiers, &err)?;

        let mut names_seen = BTreeSet::new();
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let field = |f: &str| format!("rules[{i}].{f}");
            check_word(&r.name).map_err(|e| err(&field("name"), e))?;
            if !names_seen.insert(r.name.clone()) {
                return Err(err(
                    &field("name"),
                    format!("rule name {:?} is used twice", r.name),
                ));
            }
            let effect = match r.effect.as_deref() {
                None | Some("allow") => Effect::Allow,
                Some("deny") => Effect::Deny,
                Some(other) => {
                    return Err(err(
                        &field("effect"),
                        format!("{other:?} is not \"allow\" or \"deny\""),
                    ));
                }
            };
            for id in &r.identities {
                if id != "*" {
                    check_identity(id).map_err(|e| err(&field("identities"), e))?;
                }
            }
            for g in &r.groups {
                check_word(g).map_err(|e| err(&field("groups"), e))?;
            }
            for p in &r.principals {
                check_pattern(p, names::check_principal)
                    .map_err(|e| err(&field("principals"), e))?;
            }
            for h in &r.hosts {
                names::check_host_pattern(h).map_err(|e| err(&field("hosts"), e))?;
            }
            for c in &r.commands {
                crate::request::check_command(c).map_err(|e| err(&field("commands"), e))?;
            }
            let source_addresses = match &r.source_addresses {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|s| parse_cidr(s))
                        .collect::<Result<Vec<IpNet>, String>>()
                        .map_err(|e| err(&field("source_addresses"), e))?,
                ),
            };
            for x in &r.extensions {
                if !PERMIT_EXTENSIONS.contains(&x.as_str()) {
                    return Err(err(
                        &field("extensions"),
                        format!("{x:?} is not one of {}", PERMIT_EXTENSIONS.join(", ")),
                    ));
                }
            }
            let max_ttl = match (&effect, r.max_ttl.as_deref()) {
                (Effect::Allow, None) => {
                    return Err(err(
                        &field("max_ttl"),
                        "an allow rule needs max_ttl (for example \"30m\")".into(),
                    ));
                }
                (_, s) => duration_field(s, ca.max_ttl, (Duration::from_secs(1), ca.max_ttl))
                    .map_err(|e| err(&field("max_ttl"), format!("{e} (ca.max_ttl)")))?,
            };
            if effect == Effect::Allow {
                if r.identities.is_empty() && r.groups.is_empty() {
                    return Err(err(
                        &field("groups"),
                        "an allow rule must name identities or groups (use identities = [\"*\"] for everyone)".into(),
                    ));
                }
                if r.principals.is_empty() {
                    return Err(err(
                        &field("principals"),
                        "an allow rule must name at least one principal".into(),
                    ));
                }
                if r.hosts.is_empty() {
                    return Err(err(
                        &field("hosts"),
                        "an allow rule must name at least one host".into(),
                    ));
                }
                if r.commands.is_empty() && !r.interactive {
                    return Err(err(
                        &field("commands"),
                        "an allow rule must list commands or set interactive = true".into(),
                    ));
                }
            }
            // A deny rule needs no tier; an allow rule's tier must exist.
            let deny_without_tier = effect == Effect::Deny && r.tier.is_none();
            let tier = r.tier.unwrap_or_else(|| DEFAULT_TIER.to_owned());
            check_word(&tier).map_err(|e| err(&field("tier"), e))?;
            let found = tiers.iter().find(|t| t.name == tier);
            let Some(t) = found.or(if deny_without_tier {
                tiers.first()
            } else {
                None
            }) else {
                return Err(err(
                    &field("tier"),
                    format!(
                        "tier {tier:?} is not defined; [[tiers]] defines {}",
                        tiers
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            // A drill tier issues without approval: its rules may grant nothing but the
            // drill's harmless command, never a shell or a permit-* extension.
            if effect == Effect::Allow && t.drill {
                let drill = breakglass_proto::profile::DRILL_COMMAND;
                if r.interactive {
                    return Err(err(
                        &field("interactive"),
                        format!(
                            "rule of drill tier {:?}: drill grants need no shell (set interactive = false)",
                            t.name
                        ),
                    ));
                }
                if r.commands.iter().any(|c| c != drill) {
                    return Err(err(
                        &field("commands"),
                        format!(
                            "rule of drill tier {:?}: drill grants run only {drill:?} (commands = [{drill:?}])",
                            t.name
                        ),
                    ));
                }
                if !r.extensions.is_empty() {
                    return Err(err(
                        &field("extensions"),
                        format!(
                            "rule of drill tier {:?}: drill grants carry no permit-* extensions",
                            t.name
                        ),
                    ));
                }
            }
            if effect == Effect::Allow && max_ttl > t.max_ttl {
                return Err(err(
                    &field("max_ttl"),
                    format!(
                        "{} exceeds the {} max_ttl of tier {:?}",
                        crate::fmt_duration(max_ttl),
                        crate::fmt_duration(t.max_ttl),
                        t.name
                    ),
                ));
            }
            let hours = r
                .hours
                .iter()
                .map(|h| parse_hours(h))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(&field("hours"), e))?;
            rules.push(Rule {
                name: r.name,
                effect,
                tier,
                identities: r.identities,
                groups: r.groups,
                principals: r.principals,
                hosts: r.hosts,
                commands: r.commands,
                interactive: r.interactive,
                source_addresses,
                max_ttl,
                extensions: r.extensions.into_iter().collect(),
                hours,
            });
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
        })
    }
}

/// Validates `[refusals]`. Without `webhooks`, the alert goes to every distinct webhook
/// of the tiers (whoever hears of break-glass use hears of repeated refusals);
/// `webhooks = []` sends none.
fn parse_refusals(
    raw: RawRefusals,
    tiers: &[Tier],
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<RefusalSettings, ConfigError> {
    let d = RefusalSettings::default();
    let limit = raw.per_identity_per_hour.unwrap_or(d.per_identity_per_hour);
    if !(1..=MAX_REFUSALS_PER_HOUR).contains(&limit) {
        return Err(err(
            "refusals.per_identity_per_hour",
            format!(
                "{limit} is outside 1 to {MAX_REFUSALS_PER_HOUR} (refusals recorded one by one per identity and hour)"
            ),
        ));
    }
    let threshold = raw.alert_threshold.unwrap_or(d.alert_threshold.min(limit));
    if threshold > limit {
        return Err(err(
            "refusals.alert_threshold",
            format!(
                "{threshold} is more than refusals.per_identity_per_hour ({limit}): refusals beyond that limit are not recorded one by one, so they cannot be counted towards the alert; lower alert_threshold or raise the limit (0 turns the alert off)"
            ),
        ));
    }
    let webhooks = match raw.webhooks {
        Some(list) => {
            for w in &list {
                crate::notify::check_webhook_url(w).map_err(|e| err("refusals.webhooks", e))?;
            }
            list
        }
        None => {
            let mut all: Vec<String> = Vec::new();
            for w in tiers.iter().flat_map(|t| &t.webhooks) {
                if !all.contains(w) {
                    all.push(w.clone());
                }
            }
            all
        }
    };
    Ok(RefusalSettings {
        per_identity_per_hour: limit,
        alert_threshold: threshold,
        webhooks,
    })
}

/// Tier of rules that name none.
pub const DEFAULT_TIER: &str = "standard";
/// Most approvals a tier may require.
pub const MAX_APPROVALS: u32 = 10;

/// Validates the `[[tiers]]`, listed from least to most restrictive. Without
/// any, one tier [`DEFAULT_TIER`] exists: no approval, no emergency.
fn parse_tiers(
    raw: Vec<RawTier>,
    ca: &CaConfig,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<Tier>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![Tier {
            name: DEFAULT_TIER.to_owned(),
            rank: 0,
            approvals: 0,
            approver_groups: Vec::new(),
            reviewer_groups: Vec::new(),
            reason_required: true,
            reason_min_length: 0,
            ticket: None,
            max_ttl: ca.max_ttl,
            max_wait: Duration::from_secs(900),
            emergency: None,
            session_recording: false,
            webhooks: Vec::new(),
            drill: false,
        }]);
    }
    let mut tiers: Vec<Tier> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("tiers[{i}].{f}");
        check_word(&t.name).map_err(|e| err(&field("name"), e))?;
        if tiers.iter().any(|x| x.name == t.name) {
            return Err(err(
                &field("name"),
                format!("tier {:?} is defined twice", t.name),
            ));
        }
        if t.approvals > MAX_APPROVALS {
            return Err(err(
                &field("approvals"),
                format!("{} is more than {MAX_APPROVALS}", t.approvals),
            ));
        }
        for g in t.approvers.iter().chain(t.reviewers.iter().flatten()) {
            check_word(g).map_err(|e| err(&field("approvers"), e))?;
        }
        if t.approvals > 0 && t.approvers.is_empty() {
            return Err(err(
                &field("approvers"),
                format!(
                    "tier {:?} needs {} approval(s): name the groups that may approve (approvers = [\"oncall-leads\"])",
                    t.name, t.approvals
                ),
            ));
        }
        let ticket = match (t.ticket_required, t.ticket_pattern) {
            (false, None) => None,
            (true, None) => {
                return Err(err(
                    &field("ticket_pattern"),
                    "ticket_required = true needs a ticket_pattern (for example \"(INC|CHG)-[0-9]+\")".into(),
                ));
            }
            (required, Some(p)) => {
                let re = regex::Regex::new(&p).map_err(|e| {
                    err(
                        &field("ticket_pattern"),
                        format!("{p:?} is not a regular expression: {e}"),
                    )
                })?;
                required.then_some(re)
            }
        };
        if t.reason_min_length > 1024 {
            return Err(err(
                &field("reason_min_length"),
                format!(
                    "{} is longer than a reason may be (1024)",
                    t.reason_min_length
                ),
            ));
        }
        let max_ttl = duration_field(
            Some(&t.max_ttl),
            ca.max_ttl,
            (Duration::from_secs(1), ca.max_ttl),
        )
        .map_err(|e| err(&field("max_ttl"), format!("{e} (ca.max_ttl)")))?;
        let max_wait = duration_field(
            t.max_wait.as_deref(),
            Duration::from_secs(900),
            (Duration::from_secs(1), Duration::from_secs(7 * 86400)),
        )
        .map_err(|e| err(&field("max_wait"), e))?;
        let emergency = if t.emergency {
            let ttl = duration_field(
                t.emergency_ttl.as_deref(),
                max_ttl,
                (Duration::from_secs(1), max_ttl),
            )
            .map_err(|e| err(&field("emergency_ttl"), format!("{e} (the tier's max_ttl)")))?;
            Some(Emergency {
                ttl,
                per_day: t.emergency_per_day.unwrap_or(3),
            })
        } else {
            if t.emergency_ttl.is_some() || t.emergency_per_day.is_some() {
                return Err(err(
                    &field("emergency"),
                    "emergency_ttl or emergency_per_day is set but emergency = false; set emergency = true or remove them".into(),
                ));
            }
            None
        };
        for w in &t.webhooks {
            crate::notify::check_webhook_url(w).map_err(|e| err(&field("webhooks"), e))?;
        }
        // A drill runs from a timer: it cannot wait for a person, and it is no emergency.
        if t.drill && t.approvals > 0 {
            return Err(err(
                &field("approvals"),
                format!(
                    "tier {:?} is a drill tier (drill = true): drill grants are issued without approval, so set approvals = 0",
                    t.name
                ),
            ));
        }
        if t.drill && emergency.is_some() {
            return Err(err(
                &field("emergency"),
                format!(
                    "tier {:?} is a drill tier (drill = true): drills are not emergencies, so set emergency = false",
                    t.name
                ),
            ));
        }
        tiers.push(Tier {
            rank: i,
            reviewer_groups: t.reviewers.unwrap_or_else(|| t.approvers.clone()),
            name: t.name,
            approvals: t.approvals,
            approver_groups: t.approvers,
            reason_required: t.reason_required.unwrap_or(true),
            reason_min_length: t.reason_min_length,
            ticket,
            max_ttl,
            max_wait,
            emergency,
            session_recording: t.session_recording,
            webhooks: t.webhooks,
            drill: t.drill,
        });
    }
    Ok(tiers)
}

/// Parses a UTC time-of-day window `HH:MM-HH:MM` into minutes of the day
/// `[start, end)`; a window may wrap midnight (`22:00-06:00`).
fn parse_hours(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a UTC time window like \"08:00-18:00\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Result<u16, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (minute(a)?, minute(b)?);
    if start == end {
        return Err(format!("{s:?} is an empty window"));
    }
    Ok((start, end))
}

/// Parses a duration like `90s`, `15m`, `2h`, checking it against `(min, max)`.
fn duration_field(
    value: Option<&str>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Result<Duration, String> {
    let Some(s) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"90s\", \"15m\" or \"2h\" ({e})"))?;
    if d < min || d > max {
        return Err(format!(
            "{s} is outside the allowed range {} to {}",
            crate::fmt_duration(min),
            crate::fmt_duration(max)
        ));
    }
    Ok(d)
}

/// Checks a count against its allowed range.
fn count_field(n: usize, (min, max): (usize, usize)) -> Result<usize, String> {
    if n < min || n > max {
        return Err(format!("{n} is outside the allowed range {min} to {max}"));
    }
    Ok(n)
}

/// Parses `10.0.0.0/8` or a bare address (taken as a single host).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR block like 10.1.0.0/16 or an IP address"))
}

/// The error for a `unix:` id in `[[identities]]`: where admin-socket users get groups now.
fn admin_socket_identity_in_identities(id: &str, groups: &[String]) -> String {
    let user = id
        .get(crate::identity::ADMIN_SOCKET_NAMESPACE.len()..)
        .unwrap_or_default();
    let groups = groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{id:?}: the unix: namespace is reserved for local users of the admin socket \
         (identified by SO_PEERCRED), and no client certificate may claim it; \
         give the local user its groups under [[admin_users]] instead: \
         [[admin_users]] user = {user:?} groups = [{groups}]"
    )
}

/// Identities are SANs (e-mail or URI) or `unix:<user>`: one token, no hazard
/// ([`breakglass_proto::text::check_identity`]).
pub fn check_identity(id: &str) -> Result<(), String> {
    breakglass_proto::text::check_identity(id).map_err(|e| format!("identity {id:?} {e}"))
}

fn check_word(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "{s:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}

/// A principal pattern: a valid name where `*` and `?` may stand for characters
/// (the grammar of [`breakglass_proto::patterns`]).
fn check_pattern(p: &str, check: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    let literal: String = p
        .chars()
        .map(|c| {
            if breakglass_proto::patterns::is_wildcard(c) {
                'x'
            } else {
                c
            }
        })
        .collect();
    check(&literal).map_err(|e| format!("pattern {p:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/breakglass/ca.toml"), text)
    }

    const MIN: &str = "version = 1\n[server]\nlisten = \"127.0.0.1:7443\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n[ca]\nsigning_key = \"s\"\n[audit]\ndir = \"audit\"\nkey = \"audit_key.pem\"\n";

    #[test]
    fn the_dev_config_is_valid() {
        let c = parse(&crate::init::dev_config("127.0.0.1:7443".parse().unwrap())).unwrap();
        assert_eq!(c.ca.signing_key, Path::new("/etc/breakglass/ssh_ca"));
        assert_eq!(c.policy.rules().len(), 5);
        let names: Vec<&str> = c.policy.tiers().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["low", "elevated", "critical", "drill"]);
        assert!(c.policy.tier("drill").unwrap().drill);
        assert_eq!(c.policy.tier("low").unwrap().approvals, 0);
        assert_eq!(c.policy.tier("critical").unwrap().approvals, 2);
        // The admin socket's root gets its groups from [[admin_users]], not [[identities]].
        assert!(c.identities.iter().all(|i| !i.id.starts_with("unix:")));
        assert_eq!(c.admin_users[0].user, "root");
        assert_eq!(c.admin_users[0].groups, ["admins"]);
        assert_eq!(c.refusals, RefusalSettings::default());
    }

    #[test]
    fn the_example_config_has_four_tiers_that_decide_as_documented() {
        use crate::policy::{Caller, Decision};
        use crate::request::AccessRequest;
        let text = include_str!("../../packaging/ca/breakglass-ca.example.toml");
        let c = parse(text).unwrap();
        let tiers: Vec<&str> = c.policy.tiers().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tiers,
            ["readonly", "standard", "production", "prod-root", "drill"]
        );
        let approvals: Vec<u32> = c.policy.tiers().iter().map(|t| t.approvals).collect();
        assert_eq!(approvals, [0, 1, 1, 2, 0]);
        assert!(c.policy.tier("prod-root").unwrap().emergency.is_none());
        assert!(c.policy.tier("production").unwrap().session_recording);
        assert_eq!(c.notifications.retries, 3);
        assert_eq!(
            c.refusals.webhooks,
            ["https://soc.example.com/hooks/breakglass-refusals"]
        );
        let alice = Caller {
            identity: "alice@example.com".into(),
            groups: vec!["sre".into()],
            owner: Some("alice".into()),
            transport: "mtls",
            uid: None,
        };
        let req = |p: &str, h: &str, cmd: Option<&str>| AccessRequest {
            principals: vec![p.into()],
            hosts: vec![h.into()],
            ttl: Duration::from_secs(900),
            reason: "INC-1 investigating".into(),
            force_command: cmd.map(str::to_owned),
            source_addresses: vec![],
            extensions: None,
            drill: false,
        };
        let day = std::time::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
        let noon = day + Duration::from_secs(12 * 3600);
        let night = day + Duration::from_secs(23 * 3600);
        let tier = |r: &AccessRequest, at| match c.policy.decide(&alice, r, at) {
            Decision::Allow(g) => g.tier,
            Decision::Deny(why) => format!("denied: {why}"),
        };
        let ro = Some("/usr/bin/systemctl status");
        assert_eq!(
            tier(&req("app", "web-1.staging.example.com", ro), noon),
            "readonly"
        );
        assert_eq!(
            tier(&req("app", "web-1.staging.example.com", None), noon),
            "standard"
        );
        assert_eq!(
            tier(&req("app", "web-1.prod.example.com", ro), noon),
            "standard"
        );
        assert_eq!(
            tier(&req("app", "web-1.prod.example.com", None), noon),
            "production"
        );
        assert_eq!(
            tier(&req("app", "web-1.prod.example.com", None), night),
            "prod-root"
        );
        assert_eq!(
            tier(&req("root", "db-1.prod.example.com", None), noon),
            "prod-root"
        );
        assert!(tier(&req("root", "audit-1.prod.example.com", None), noon).starts_with("denied"));
        // Host patterns: the whole fleet as a pattern would reach the audit hosts, so it is
        // refused as root; a narrower pattern clear of them is granted; and nothing wider
        // than a rule's pattern is.
        let all = tier(&req("root", "*.prod.example.com", None), noon);
        assert!(
            all.starts_with("denied: denied by policy rule `no-root-on-audit`"),
            "{all}"
        );
        assert_eq!(
            tier(&req("root", "db-*.prod.example.com", None), noon),
            "prod-root"
        );
        assert_eq!(
            tier(&req("app", "*.prod.example.com", None), noon),
            "production"
        );
        let wide = tier(&req("app", "*.example.com", None), noon);
        assert!(
            wide.contains("host pattern *.example.com is not allowed"),
            "{wide}"
        );

        // Drills: only the drill runner, only as a drill, only the drill's command.
        let runner = Caller {
            identity: "spiffe://example.com/breakglass/drill-runner".into(),
            groups: vec!["drill-runners".into()],
            owner: None,
            transport: "mtls",
            uid: None,
        };
        let drill = AccessRequest {
            drill: true,
            ttl: Duration::from_secs(300),
            ..req(
                "breakglass-drill",
                "canary-1.prod.example.com",
                Some("echo breakglass-drill"),
            )
        };
        let decide = |who: &Caller, r: &AccessRequest| match c.policy.decide(who, r, night) {
            Decision::Allow(g) => g.tier,
            Decision::Deny(why) => format!("denied: {why}"),
        };
        assert_eq!(decide(&runner, &drill), "drill");
        let not_a_drill = AccessRequest {
            drill: false,
            ..drill.clone()
        };
        assert!(decide(&runner, &not_a_drill).starts_with("denied: no policy rule"));
        assert!(decide(&alice, &drill).starts_with("denied: no drill rule lets alice@example.com"));
        let shell = AccessRequest {
            force_command: None,
            ..drill.clone()
        };
        assert!(
            decide(&runner, &shell).contains("interactive shell is not allowed"),
            "{}",
            decide(&runner, &shell)
        );
    }

    #[test]
    fn a_drill_tier_never_needs_approval_and_is_no_emergency() {
        let rule = "[[rules]]\nname = \"r\"\ntier = \"d\"\ngroups = [\"g\"]\nprincipals = [\"a\"]\nhosts = [\"h\"]\ncommands = [\"echo breakglass-drill\"]\nmax_ttl = \"5m\"\n";
        let ok = "[[tiers]]\nname = \"d\"\ndrill = true\nmax_ttl = \"5m\"\n";
        let c = parse(&format!("{MIN}{ok}{rule}")).unwrap();
        assert!(c.policy.tier("d").unwrap().drill);
        let approvals = "[[tiers]]\nname = \"d\"\ndrill = true\napprovals = 1\napprovers = [\"x\"]\nmax_ttl = \"5m\"\n";
        let e = parse(&format!("{MIN}{approvals}{rule}")).unwrap_err();
        assert_eq!(e.field, "tiers[0].approvals");
        assert!(e.reason.contains("set approvals = 0"), "{e}");
        let emergency =
            "[[tiers]]\nname = \"d\"\ndrill = true\nemergency = true\nmax_ttl = \"5m\"\n";
        let e = parse(&format!("{MIN}{emergency}{rule}")).unwrap_err();
        assert_eq!(e.field, "tiers[0].emergency");
        // Its rules grant only the drill's command: no shell, no other command, no extension.
        for (change, field) in [
            ("interactive = true\n", "rules[0].interactive"),
            ("commands = [\"/bin/sh\"]\n", "rules[0].commands"),
            ("extensions = [\"permit-pty\"]\n", "rules[0].extensions"),
        ] {
            let bad = rule.replace("commands = [\"echo breakglass-drill\"]\n", change);
            let bad = if field.ends_with("commands") || field.ends_with("interactive") {
                bad
            } else {
                format!("{rule}{change}")
            };
            let e = parse(&format!("{MIN}{ok}{bad}")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn tier_errors_name_the_tier_field() {
        let tier =
            "[[tiers]]\nname = \"t\"\napprovals = 1\napprovers = [\"leads\"]\nmax_ttl = \"1h\"\n";
        let rule = "[[rules]]\nname = \"r\"\ntier = \"t\"\ngroups = [\"g\"]\nprincipals = [\"a\"]\nhosts = [\"h\"]\ninteractive = true\nmax_ttl = \"30m\"\n";
        parse(&format!("{MIN}{tier}{rule}")).unwrap();
        let cases = [
            (
                tier.replace("approvers = [\"leads\"]\n", ""),
                rule.to_owned(),
                "tiers[0].approvers",
            ),
            (
                tier.replace("approvals = 1", "approvals = 11"),
                rule.to_owned(),
                "tiers[0].approvals",
            ),
            (
                format!("{tier}ticket_required = true\n"),
                rule.to_owned(),
                "tiers[0].ticket_pattern",
            ),
            (
                format!("{tier}ticket_required = true\nticket_pattern = \"(\"\n"),
                rule.to_owned(),
                "tiers[0].ticket_pattern",
            ),
            (
                format!("{tier}emergency_ttl = \"5m\"\n"),
                rule.to_owned(),
                "tiers[0].emergency",
            ),
            (
                format!("{tier}emergency = true\nemergency_ttl = \"2h\"\n"),
                rule.to_owned(),
                "tiers[0].emergency_ttl",
            ),
            (
                format!("{tier}webhooks = [\"ftp://x/\"]\n"),
                rule.to_owned(),
                "tiers[0].webhooks",
            ),
            (format!("{tier}{tier}"), rule.to_owned(), "tiers[1].name"),
            (
                tier.to_owned(),
                rule.replace("tier = \"t\"", "tier = \"nope\""),
                "rules[0].tier",
            ),
            (
                tier.to_owned(),
                rule.replace("tier = \"t\"\n", ""),
                "rules[0].tier",
            ),
            (
                tier.to_owned(),
                rule.replace("max_ttl = \"30m\"", "max_ttl = \"2h\""),
                "rules[0].max_ttl",
            ),
            (
                tier.to_owned(),
                format!("{rule}hours = [\"25:00-26:00\"]\n"),
                "rules[0].hours",
            ),
        ];
        for (t, r, field) in cases {
            let e = parse(&format!("{MIN}{t}{r}")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn unknown_fields_and_versions_are_rejected_with_the_field() {
        let e = parse(&MIN.replace("[ca]", "colour = \"blue\"\n[ca]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = parse(&MIN.replace("version = 1", "version = 2")).unwrap_err();
        assert_eq!(e.field, "version");
    }

    #[test]
    fn unix_identities_are_refused_in_identities_and_pointed_at_admin_users() {
        let ok = "[[identities]]\nid = \"a@example.com\"\ngroups = [\"sre\"]\n";
        for id in ["unix:root", "UNIX:root", "unix:uid=0"] {
            let bad = format!("{ok}[[identities]]\nid = \"{id}\"\ngroups = [\"admins\"]\n");
            let e = parse(&format!("{MIN}{bad}")).unwrap_err();
            assert_eq!(e.field, "identities[1].id", "{e}");
            assert!(
                e.reason
                    .contains("reserved for local users of the admin socket")
                    && e.reason.contains("[[admin_users]]")
                    && e.reason.contains("groups = [\"admins\"]"),
                "{e}"
            );
        }
        let e = parse(&format!("{MIN}[[identities]]\nid = \"unix:root\"\n")).unwrap_err();
        assert!(e.reason.contains("user = \"root\""), "{e}");
    }

    #[test]
    fn admin_users_give_local_users_groups_and_are_checked() {
        let with_socket = MIN.replace(
            "listen = \"127.0.0.1:7443\"\n",
            "listen = \"127.0.0.1:7443\"\nadmin_socket = \"admin.sock\"\n",
        );
        let root = "[[admin_users]]\nuser = \"root\"\ngroups = [\"admins\"]\n";
        let c = parse(&format!("{with_socket}{root}")).unwrap();
        assert_eq!(c.admin_users.len(), 1);
        assert_eq!(c.admin_users[0].user, "root");
        assert_eq!(c.admin_users[0].groups, ["admins"]);
        assert!(c.identities.is_empty());
        let cases = [
            (
                format!("{with_socket}{root}{root}"),
                "admin_users[1].user",
                "listed twice",
            ),
            (
                format!("{with_socket}{}", root.replace("\"root\"", "\"unix:root\"")),
                "admin_users[0].user",
                "without the unix: prefix",
            ),
            (
                format!("{with_socket}{}", root.replace("\"root\"", "\"ro ot\"")),
                "admin_users[0].user",
                "local Unix user name",
            ),
            (
                format!("{with_socket}{}", root.replace("\"admins\"", "\"ad mins\"")),
                "admin_users[0].groups",
                "letters, digits",
            ),
            (
                format!("{MIN}{root}"),
                "admin_users[0].user",
                "admin_socket is not set",
            ),
        ];
        for (text, field, says) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.reason.contains(says), "{e}");
        }
        let e = parse(&format!("{with_socket}{root}owner = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `owner`"), "{e}");
    }

    #[test]
    fn the_readme_identities_example_is_valid() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("**Identities.**").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let with_socket = MIN.replace(
            "listen = \"127.0.0.1:7443\"\n",
            "listen = \"127.0.0.1:7443\"\nadmin_socket = \"admin.sock\"\n",
        );
        let c = parse(&format!("{with_socket}{example}")).unwrap();
        assert_eq!(c.identities[0].id, "alice@example.com");
        assert_eq!(c.admin_users[0].user, "root");
    }

    #[test]
    fn rule_errors_name_the_rule_field() {
        let rule = "[[rules]]\nname = \"r\"\ngroups = [\"g\"]\nprincipals = [\"a\"]\nhosts = [\"h\"]\ninteractive = true\nmax_ttl = \"30m\"\n";
        parse(&format!("{MIN}{rule}")).unwrap();
        parse(&format!(
            "{MIN}{}",
            rule.replace("hosts = [\"h\"]", "hosts = [\"db-??.*.example\"]")
                .replace("principals = [\"a\"]", "principals = [\"app-*\", \"?\"]")
        ))
        .unwrap();
        let cases = [
            (
                rule.replace("max_ttl = \"30m\"", "max_ttl = \"30 parsecs\""),
                "rules[0].max_ttl",
            ),
            (
                rule.replace("max_ttl = \"30m\"", "max_ttl = \"13h\""),
                "rules[0].max_ttl",
            ),
            (rule.replace("max_ttl = \"30m\"\n", ""), "rules[0].max_ttl"),
            (
                rule.replace("hosts = [\"h\"]", "hosts = [\"a b\"]"),
                "rules[0].hosts",
            ),
            (
                rule.replace("principals = [\"a\"]", "principals = [\"a,b\"]"),
                "rules[0].principals",
            ),
            // Patterns have `*` and `?` only: no `[...]` classes, which hosts do not match.
            (
                rule.replace("hosts = [\"h\"]", "hosts = [\"db-[0-9]\"]"),
                "rules[0].hosts",
            ),
            (
                rule.replace("principals = [\"a\"]", "principals = [\"app-[ab]\"]"),
                "rules[0].principals",
            ),
            (
                rule.replace("interactive = true", "interactive = false"),
                "rules[0].commands",
            ),
            (
                format!("{rule}source_addresses = [\"10.0.0.1/8\"]\n"),
                "rules[0].source_addresses",
            ),
            (
                format!("{rule}extensions = [\"permit-all\"]\n"),
                "rules[0].extensions",
            ),
            (format!("{rule}effect = \"maybe\"\n"), "rules[0].effect"),
            (format!("{rule}{rule}"), "rules[1].name"),
        ];
        for (text, field) in cases {
            let e = parse(&format!("{MIN}{text}")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn refusal_settings_have_defaults_limits_and_a_webhook_fallback() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.refusals, RefusalSettings::default());
        assert_eq!(
            (c.refusals.per_identity_per_hour, c.refusals.alert_threshold),
            (60, 10)
        );
        let tiers = "[[tiers]]\nname = \"a\"\nmax_ttl = \"1h\"\nwebhooks = [\"http://127.0.0.1:1/a\", \"http://127.0.0.1:1/b\"]\n\
                     [[tiers]]\nname = \"b\"\nmax_ttl = \"1h\"\nwebhooks = [\"http://127.0.0.1:1/b\"]\n";
        // Without `webhooks`, the alert goes to every distinct tier webhook; `[]` to none.
        let c = parse(&format!("{MIN}{tiers}")).unwrap();
        assert_eq!(
            c.refusals.webhooks,
            ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]
        );
        let c = parse(&format!("{MIN}{tiers}[refusals]\nwebhooks = []\n")).unwrap();
        assert!(c.refusals.webhooks.is_empty());
        let c = parse(&format!(
            "{MIN}[refusals]\nper_identity_per_hour = 5\nwebhooks = [\"https://soc.example/hook\"]\n"
        ))
        .unwrap();
        assert_eq!(
            c.refusals,
            RefusalSettings {
                per_identity_per_hour: 5,
                // The default threshold never exceeds the limit.
                alert_threshold: 5,
                webhooks: vec!["https://soc.example/hook".into()],
            }
        );
        let cases = [
            (
                "per_identity_per_hour = 0",
                "refusals.per_identity_per_hour",
            ),
            (
                "per_identity_per_hour = 100001",
                "refusals.per_identity_per_hour",
            ),
            (
                "per_identity_per_hour = 5\nalert_threshold = 6",
                "refusals.alert_threshold",
            ),
            ("webhooks = [\"ftp://x/\"]", "refusals.webhooks"),
        ];
        for (text, field) in cases {
            let e = parse(&format!("{MIN}[refusals]\n{text}\n")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let e = parse(&format!("{MIN}[refusals]\nper_hour = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `per_hour`"), "{e}");
        let e = parse(&format!(
            "{MIN}[refusals]\nper_identity_per_hour = 5\nalert_threshold = 6\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("lower alert_threshold"), "{e}");
    }

    #[test]
    fn connection_limits_default_and_are_checked_with_the_field() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.server.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.server.max_connections, None);
        assert_eq!(c.server.max_handshakes, 256);
        assert_eq!(c.server.max_handshakes_per_source, 32);
        let with = |lines: &str| {
            MIN.replace(
                "client_ca = \"ca\"\n",
                &format!("client_ca = \"ca\"\n{lines}\n"),
            )
        };
        let c = parse(&with(
            "max_connections = 1000\nmax_handshakes = 500\nmax_handshakes_per_source = 4",
        ))
        .unwrap();
        assert_eq!(c.server.max_connections, Some(1000));
        assert_eq!(
            (c.server.max_handshakes, c.server.max_handshakes_per_source),
            (500, 4)
        );
        let cases = [
            (
                "max_connections = 1",
                "server.max_connections",
                "range 2 to",
            ),
            ("max_handshakes = 0", "server.max_handshakes", "range 1 to"),
            (
                "max_handshakes_per_source = 0",
                "server.max_handshakes_per_source",
                "range 1 to",
            ),
            (
                "max_handshakes = 8\nmax_handshakes_per_source = 9",
                "server.max_handshakes_per_source",
                "more than max_handshakes (8)",
            ),
            (
                "max_connections = 100\nmax_handshakes = 51",
                "server.max_handshakes",
                "lower it to 50",
            ),
            ("max_handshakes = -1", "line 7", "invalid value"),
            (
                "handshake_timeout = \"1h\"",
                "server.handshake_timeout",
                "5m",
            ),
        ];
        for (lines, field, says) in cases {
            let e = parse(&with(lines)).unwrap_err();
            assert_eq!(e.field, field, "{lines}: {e}");
            assert!(e.reason.contains(says), "{lines}: {e}");
        }
    }
}
