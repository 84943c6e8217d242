//! The keys of `breakglass-ca.toml`, one table: name, type, default and meaning of
//! every key of every section.
//!
//! Validation uses it: after the sections' parsers have refused unknown or missing keys and
//! wrong types (with the line, and the keys there are), [`check_keys`] fills in every
//! documented default before the sections are validated, so the default in force is the
//! one documented (and refuses, as a backstop, a key or section the table lacks).
//! `breakglass-ca.toml(5)` is rendered from it (`xtask/src/man_sections.rs`). A test
//! checks that it lists exactly the fields the sections' parsers accept.

use super::field::ConfigError;

/// A section of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// `server` for `[server]`, `tiers` for `[[tiers]]`, `""` for the top level.
    pub name: &'static str,
    /// An array of tables (`[[tiers]]`), which may be repeated.
    pub array: bool,
    /// The section must be present.
    pub required: bool,
    /// What it configures.
    pub meaning: &'static str,
}

impl Section {
    /// How it is written in the file: `[server]`, `[[tiers]]`, or `(top level)`.
    #[must_use]
    pub fn header(&self) -> String {
        match (self.name, self.array) {
            ("", _) => "(top level)".to_owned(),
            (n, true) => format!("[[{n}]]"),
            (n, false) => format!("[{n}]"),
        }
    }
}

/// What a key's absence means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// The key must be given.
    Required,
    /// This TOML value (filled in when the key is absent).
    Value(&'static str),
    /// Worked out from other settings, as described.
    Derived(&'static str),
}

/// One key of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// [`Section::name`] of its section.
    pub section: &'static str,
    /// The key.
    pub name: &'static str,
    /// Its TOML type, as people read it (`duration`, `list of strings`, …).
    pub kind: &'static str,
    /// What its absence means.
    pub default: Absent,
    /// What it sets, with its allowed range where it has one.
    pub meaning: &'static str,
}

/// The sections, in the order of the page and of validation.
#[rustfmt::skip]
pub const SECTIONS: &[Section] = &[
    Section { name: "", array: false, required: true, meaning: "The format version." },
    Section { name: "server", array: false, required: true, meaning: "The mTLS gRPC listener, the local admin socket, TLS material and connection limits." },
    Section { name: "ca", array: false, required: true, meaning: "The SSH certificate authority: its keys and certificate lifetimes." },
    Section { name: "audit", array: false, required: true, meaning: "The signed, append-only audit log." },
    Section { name: "revocation", array: false, required: false, meaning: "Who may revoke any grant." },
    Section { name: "identities", array: true, required: false, meaning: "Client certificate identities the daemon knows, and their groups. An identity not listed may only call whoami." },
    Section { name: "admin_users", array: true, required: false, meaning: "Local Unix users of the admin socket, and their groups." },
    Section { name: "tiers", array: true, required: false, meaning: "Risk tiers, from least to most restrictive: approvals, emergencies, review, notifications. Without any, one tier \"standard\" exists: no approval, no emergency." },
    Section { name: "notifications", array: false, required: false, meaning: "How webhook and syslog notifications are delivered." },
    Section { name: "refusals", array: false, required: false, meaning: "How refusals by policy are recorded and alerted." },
    Section { name: "rules", array: true, required: false, meaning: "Policy rules: who may log in where, as whom, to run what, for how long, through which tier. Deny rules win over allow rules." },
    Section { name: "log", array: false, required: false, meaning: "The daemon's own log lines on stderr (the journal under systemd)." },
    Section { name: "webhooks", array: true, required: false, meaning: "The body a webhook receives, for webhooks that are not sent the JSON notice: Slack and Mattermost incoming webhooks." },
    Section { name: "recordings", array: false, required: false, meaning: "Session recordings uploaded by hosts (breakglass host ship), stored beside the audit log under <audit dir>/recordings/." },
    Section { name: "oidc", array: false, required: false, meaning: "Login with the organisation's OpenID Connect provider: whose ID tokens are accepted, who the identity is, which policy groups it gets, how long its login lasts. Without it, nobody logs in with OpenID Connect." },
    Section { name: "enrollment", array: false, required: false, meaning: "Hosts that get their host://NAME client certificate themselves: one-time join tokens (breakglass-ca token create), breakglass host enroll and host renew. Needs [server] client_ca_key." },
    Section { name: "postgres", array: false, required: false, meaning: "The PostgreSQL database of the audit log: what breakglass-ca audit import and audit export connect to (README: Running several daemons)." },
];

const fn key(
    section: &'static str,
    name: &'static str,
    kind: &'static str,
    default: Absent,
    meaning: &'static str,
) -> Key {
    Key {
        section,
        name,
        kind,
        default,
        meaning,
    }
}

use Absent::{Derived, Required, Value};

/// Every key, grouped by section in [`SECTIONS`] order.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    key("", "version", "integer", Required, "Format version of the file; this daemon reads version 1."),
    // [server]
    key("server", "listen", "address:port", Required, "TCP address of the mTLS gRPC listener, e.g. \"127.0.0.1:7443\"."),
    key("server", "admin_socket", "path", Derived("no admin socket"), "Unix socket for local administration; its callers are identified by their Unix user (see [[admin_users]])."),
    key("server", "tls_cert", "path", Required, "The daemon's TLS certificate chain (PEM)."),
    key("server", "tls_key", "path", Required, "The daemon's TLS private key (PEM, mode 0600)."),
    key("server", "client_ca", "path", Required, "The CA that signs client certificates (PEM)."),
    key("server", "handshake_timeout", "duration", Value("\"5s\""), "Longest a TLS handshake may take (100ms to 5m)."),
    key("server", "max_connections", "integer", Derived("from the open file limit at start-up"), "Most TCP connections, handshaking or established (2 to 1048576)."),
    key("server", "max_handshakes", "integer", Value("256"), "Most unauthenticated TLS handshakes in flight; a new one sheds the oldest (1 to 65536, at most half of max_connections)."),
    key("server", "max_handshakes_per_source", "integer", Value("32"), "Most unauthenticated TLS handshakes in flight from one source address, IPv6 by /64 (1 to max_handshakes)."),
    key("server", "shutdown_grace", "duration", Value("\"10s\""), "How long calls in flight may take to finish at shutdown (0s to 10m)."),
    key("server", "metrics_listen", "address:port", Derived("off"), "TCP address of the plain-HTTP metrics and probes listener (GET /metrics, /healthz, /readyz); no TLS, no client identity: loopback or a private network. Not the listen address."),
    key("server", "client_ca_key", "path", Derived("off: the daemon signs no client certificates (no host enrollment)"), "Private key (PEM, mode 0600) of the client CA, the first certificate of client_ca: the daemon signs the client certificates of enrolling hosts with it."),
    key("server", "open_calls_per_minute", "integer", Value("30"), "Calls made without a client certificate (Enrollment/GetTlsCa, EnrollHost, BeginLogin, Login) allowed per peer IPv4 address or IPv6 /64 and minute (1 to 100000); more get RESOURCE_EXHAUSTED."),
    // [ca]
    key("ca", "signing_key", "path", Required, "OpenSSH Ed25519 private key that signs certificates (mode 0600)."),
    key("ca", "extra_public_keys", "list of paths", Value("[]"), "Further CA public keys published to hosts by breakglass ca-keys, for key rotation."),
    key("ca", "backdate", "duration", Value("\"2m\""), "How far valid_after is set in the past, for clock skew (0s to 1h)."),
    key("ca", "max_ttl", "duration", Value("\"12h\""), "Longest lifetime of any certificate (1s to 7 days)."),
    // [audit]
    key("audit", "dir", "path", Required, "Directory of the log (segments, checkpoint)."),
    key("audit", "key", "path", Required, "Ed25519 checkpoint signing key (PKCS#8 PEM, mode 0600), not the SSH CA key."),
    key("audit", "origin", "string", Value("\"breakglass-ca/audit/v1\""), "Log origin: the first line of every checkpoint and the key name (1 to 128 printable characters, no spaces or '+')."),
    key("audit", "segment_max_mib", "integer", Value("64"), "Segment size in MiB at which a new segment is started (1 to 4096)."),
    key("audit", "max_batch", "integer", Value("1024"), "Most events written in one group commit (1 to 65536)."),
    key("audit", "reader_groups", "list of strings", Value("[\"auditors\", \"admins\"]"), "Groups whose members may read the log through the Audit API."),
    key("audit", "syslog_socket", "path", Value("\"/dev/log\""), "Syslog datagram socket that gets one authpriv line per recorded event."),
    key("audit", "snapshot_every_events", "integer", Value("1000000"), "A snapshot of the daemon's state (dir/state.snapshot, tied to a checkpoint) is written after this many new events, so that start-up replays only the events after it (0 to 1000000000; 0: not by count)."),
    key("audit", "snapshot_every_seconds", "integer", Value("300"), "A state snapshot is also written after this many seconds when there are new events (0 to 86400; 0: not by time)."),
    key("audit", "backend", "string", Value("\"local\""), "Where the log is durable: \"local\" (the segment files in dir, fdatasynced) or \"postgres\" (the [postgres] database: each group commit is one transaction; dir then holds a mirror of the log that reads are served from). See README: Running several daemons."),
    // [revocation]
    key("revocation", "admin_groups", "list of strings", Value("[\"admins\"]"), "Groups whose members may revoke any grant (requesters may always revoke their own) and acknowledge a log fork hosts reported."),
    // [[identities]]
    key("identities", "id", "string", Required, "The identity in the client certificate (a SPIFFE ID, an e-mail address, or host://NAME)."),
    key("identities", "groups", "list of strings", Value("[]"), "Its groups, which rules, tiers and the settings above name."),
    key("identities", "owner", "string", Derived("the identity is its own owner"), "The person behind it: nobody approves or reviews their own request, not even through a second identity of the same owner."),
    key("identities", "ssh_keys", "list of strings", Value("[]"), "OpenSSH public keys (\"sk-ssh-ed25519@openssh.com AAAA...\"; ed25519, ecdsa, rsa of 2048 bits or more, and FIDO2 sk- keys; not DSA) that log the identity in with breakglass login --ssh-key, the break-glass login that needs no OpenID provider. A key belongs to one identity."),
    // [[admin_users]]
    key("admin_users", "user", "string", Required, "A local Unix user name, as the admin socket sees the caller."),
    key("admin_users", "groups", "list of strings", Value("[]"), "Its groups."),
    // [[tiers]]
    key("tiers", "name", "string", Required, "The tier's name (one word), which rules name."),
    key("tiers", "approvals", "integer", Value("0"), "Approvals a request needs before it is issued (0 to 10)."),
    key("tiers", "approvers", "list of strings", Value("[]"), "Groups whose members may approve; needed when approvals > 0."),
    key("tiers", "reviewers", "list of strings", Derived("the approvers"), "Groups whose members review emergency grants."),
    key("tiers", "reason_required", "boolean", Value("true"), "A request must give a reason."),
    key("tiers", "reason_min_length", "integer", Value("0"), "Shortest reason accepted, in characters (0 to 1024)."),
    key("tiers", "ticket_required", "boolean", Value("false"), "The reason must contain a ticket reference matching ticket_pattern."),
    key("tiers", "ticket_pattern", "string", Derived("none"), "Regular expression of a ticket reference, e.g. \"(INC|CHG)-[0-9]+\"."),
    key("tiers", "max_ttl", "duration", Required, "Longest certificate lifetime in this tier (at most ca.max_ttl)."),
    key("tiers", "max_wait", "duration", Value("\"15m\""), "How long a request waits for approval before it expires (1s to 7 days)."),
    key("tiers", "emergency", "boolean", Value("false"), "Requesters may declare an emergency: issued at once, alerts sent, review required."),
    key("tiers", "emergency_ttl", "duration", Derived("the tier's max_ttl"), "Lifetime cap of an emergency grant (only with emergency = true)."),
    key("tiers", "emergency_per_day", "integer", Derived("3 when emergency = true"), "Emergencies one requester may declare per day (only with emergency = true)."),
    key("tiers", "session_recording", "boolean", Value("false"), "Hosts record the sessions of this tier's grants."),
    key("tiers", "webhooks", "list of strings", Value("[]"), "http:// or https:// URLs that get a notice of each request, approval, issuance and emergency (JSON, or the format of their [[webhooks]] entry)."),
    key("tiers", "drill", "boolean", Value("false"), "A drill tier: matches only drill requests (breakglass drill), issues without approval, never an emergency."),
    key("tiers", "recorder", "string", Value("\"/usr/libexec/breakglass/breakglass-record\""), "Absolute path of the session recorder on hosts; a session_recording tier's certificates run it as their force-command."),
    key("tiers", "record_input", "boolean", Value("false"), "The recorder also records what the user types (asciicast i events; only with session_recording = true)."),
    key("tiers", "ssh_key_login", "string", Value("\"emergency-only\""), "What a login made with an SSH key (breakglass login --ssh-key) may do in this tier: \"emergency-only\" (only a declared emergency, which is issued at once, alerted, reviewed and limited per day; no approvals), \"any\" (like an SSO login, approvals included) or \"off\" (no request, no approval)."),
    // [notifications]
    key("notifications", "timeout", "duration", Value("\"5s\""), "Longest one webhook POST may take, connect and answer (100ms to 2m)."),
    key("notifications", "retries", "integer", Value("3"), "Further attempts after a failed POST (0 to 20)."),
    key("notifications", "retry_delay", "duration", Value("\"1s\""), "Delay before the first retry, doubled for each further one (10ms to 10m)."),
    key("notifications", "queue", "integer", Value("1024"), "Notifications queued before new ones are dropped; issuance never waits (1 to 1000000)."),
    key("notifications", "syslog", "boolean", Value("false"), "Also write one syslog line per notification."),
    key("notifications", "syslog_socket", "path", Value("\"/dev/log\""), "The syslog socket of those lines."),
    key("notifications", "ca_bundle", "path", Value("\"/etc/ssl/certs/ca-certificates.crt\""), "PEM roots that https:// webhooks are verified with."),
    key("notifications", "client_config", "string", Derived("none"), "The --config argument shown in the approve command of each notice."),
    // [refusals]
    key("refusals", "per_identity_per_hour", "integer", Value("60"), "Refusals recorded one by one per identity and hour; beyond, one refusals_limited event (1 to 100000)."),
    key("refusals", "alert_threshold", "integer", Derived("10, or per_identity_per_hour if lower"), "Refusals of one identity within an hour that send the alert (0: never; at most per_identity_per_hour)."),
    key("refusals", "webhooks", "list of strings", Derived("every webhook of every tier"), "Where the alert goes; [] sends none."),
    // [[rules]]
    key("rules", "name", "string", Required, "The rule's name (one word, unique), shown in refusals and the audit log."),
    key("rules", "effect", "string", Value("\"allow\""), "\"allow\" or \"deny\"."),
    key("rules", "tier", "string", Derived("\"standard\"; a deny rule without one applies in every tier"), "The tier of the grants it allows."),
    key("rules", "identities", "list of strings", Value("[]"), "Identities it applies to; \"*\" for everyone."),
    key("rules", "groups", "list of strings", Value("[]"), "Groups it applies to. An allow rule names identities or groups."),
    key("rules", "principals", "list of strings", Value("[]"), "Unix accounts (names or patterns with * and ?); an allow rule names at least one."),
    key("rules", "hosts", "list of strings", Value("[]"), "Host names or patterns (* and ?, case-insensitive); an allow rule names at least one."),
    key("rules", "commands", "list of strings", Value("[]"), "Forced commands it allows (a deny rule: refuses, and refuses a shell too)."),
    key("rules", "interactive", "boolean", Value("false"), "It allows an interactive shell. An allow rule lists commands or sets this."),
    key("rules", "source_addresses", "list of strings", Derived("any source"), "CIDRs the certificate may be used from (source-address)."),
    key("rules", "max_ttl", "duration", Derived("ca.max_ttl for a deny rule; an allow rule must set it"), "Longest certificate lifetime it allows (at most its tier's max_ttl)."),
    key("rules", "extensions", "list of strings", Value("[]"), "permit-* extensions it allows (permit-pty, permit-port-forwarding, permit-agent-forwarding, permit-X11-forwarding, permit-user-rc)."),
    key("rules", "hours", "list of strings", Value("[]"), "UTC time windows it applies in, \"HH:MM-HH:MM\" (may wrap midnight); none: always."),
    // [log]
    key("log", "format", "string", Value("\"text\""), "\"text\" or \"json\" (one JSON object per line); breakglass-ca serve --log-format overrides it. Text has colours only on a terminal without NO_COLOR."),
    key("log", "issuance_lines", "boolean", Value("false"), "One \"certificate issued\" line per certificate at info level; otherwise at debug level (the audit log and its syslog lines record every issuance)."),
    // [[webhooks]]
    key("webhooks", "url", "string", Required, "A webhook URL that a tier's webhooks or [refusals] webhooks name."),
    key("webhooks", "format", "string", Value("\"json\""), "\"json\": the JSON notice; \"slack\": a Slack / Mattermost incoming-webhook body (text and blocks), untrusted text escaped for mrkdwn."),
    // [recordings]
    key("recordings", "keep", "duration", Value("\"90d\""), "How long a stored recording is kept (1s to 10 years): a periodic sweep deletes older ones, each deletion an audit event recording_deleted."),
    // [oidc]
    key("oidc", "issuer", "string", Required, "The provider's issuer URL, exactly as its ID tokens' iss says (https; http only on a loopback address); its keys are found through ISSUER/.well-known/openid-configuration."),
    key("oidc", "client_id", "string", Required, "The client id breakglass is registered with at the provider (a public client with the device flow and the authorization code flow with PKCE): the audience its ID tokens must name."),
    key("oidc", "identity_claim", "string", Value("\"email\""), "The ID token claim whose value is the identity (e.g. email); it may not contain ':' (no host:// or unix: names). With email, a token with email_verified false is refused."),
    key("oidc", "groups_claim", "string", Value("\"groups\""), "The ID token claim that lists the identity's groups at the provider (a list of strings, or one string)."),
    key("oidc", "group_map", "table of lists of strings", Value("{}"), "Provider group -> the policy groups it gives, e.g. { \"idp-sre\" = [\"sre\"] }; provider groups not listed give nothing."),
    key("oidc", "allowed_domains", "list of strings", Required, "E-mail domains an identity must be in (e.g. [\"example.com\"]); [\"*\"] alone accepts any identity the provider vouches for."),
    key("oidc", "login_ttl", "duration", Value("\"12h\""), "Lifetime of the client certificate a login gets (1m to 7 days)."),
    key("oidc", "group_login_ttl", "table of durations", Value("{}"), "Another lifetime for members of a policy group, e.g. { dba = \"1h\" }; the shortest of the identity's groups applies (1m to 7 days)."),
    key("oidc", "ca_bundle", "path", Value("\"/etc/ssl/certs/ca-certificates.crt\""), "CA certificates (PEM) that an https issuer's certificate must chain to."),
    key("oidc", "leeway", "duration", Value("\"60s\""), "Clock skew allowed when checking an ID token's exp and iat (0s to 5m)."),
    key("oidc", "jwks_min_refresh", "duration", Value("\"60s\""), "Least time between two fetches of the provider's keys when a token names a key not yet known (the provider rotated its keys) (0s to 1h)."),
    // [enrollment]
    key("enrollment", "tls_ca", "path", Derived("[server] client_ca"), "CA certificate(s) (PEM) of the daemon's TLS certificate: what hosts fetch on first contact and pin by fingerprint (host enroll --ca-fingerprint)."),
    key("enrollment", "host_certificate_ttl", "duration", Value("\"30d\""), "Lifetime of a host's client certificate, enrolled or renewed (1h to 400d); host renew renews it when less than a third is left."),
    key("enrollment", "token_ttl", "duration", Value("\"1h\""), "How long a join token stays usable when token create gives no --ttl (1m to max_token_ttl)."),
    key("enrollment", "max_token_ttl", "duration", Value("\"7d\""), "Longest --ttl token create may ask for (1m to 30d)."),
    key("enrollment", "login_nonce_ttl", "duration", Value("\"10m\""), "How long the one-time nonce of a breakglass login (OpenID Connect or SSH key) stays usable (1s to 1h)."),
    // [postgres]
    key("postgres", "url", "string", Required, "libpq-style connection URL; several hosts are tried in order, and with target_session_attrs=read-write only a primary is used, e.g. \"postgresql://breakglass@db1:5432,db2:5432/breakglass?target_session_attrs=read-write\". Never logged with its password."),
    key("postgres", "password_file", "path", Derived("the URL's password, if any"), "File holding the role's password (mode 0600); it wins over a password in the URL."),
    key("postgres", "tls", "string", Value("\"verify-full\""), "TLS to the database: \"verify-full\" (the server's certificate must chain to ca_file and name the host) or \"disable\" (loopback only)."),
    key("postgres", "ca_file", "path", Value("\"/etc/ssl/certs/ca-certificates.crt\""), "CA certificates (PEM) the database's certificate must chain to."),
    key("postgres", "connect_timeout", "duration", Value("\"5s\""), "Longest a connection attempt to one host may take (100ms to 10m)."),
    key("postgres", "statement_timeout", "duration", Value("\"5s\""), "Longest one statement, a commit included, may take before it fails (100ms to 10m)."),
];

/// The keys of `section`.
pub fn keys_of(section: &str) -> impl Iterator<Item = &'static Key> + '_ {
    KEYS.iter().filter(move |k| k.section == section)
}

/// Checks the parsed file against [`KEYS`] before its sections are parsed: refuses an
/// unknown section or key (naming the ones there are) and a missing required section or
/// key, and fills in every absent key that has a [`Absent::Value`].
pub fn check_keys(
    doc: &mut toml::Table,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for name in doc.keys() {
        let known = SECTIONS
            .iter()
            .any(|s| !s.name.is_empty() && s.name == name)
            || keys_of("").any(|k| k.name == name);
        if !known {
            return Err(err(
                name,
                format!(
                    "unknown section or key `{name}`; the file has {} (breakglass-ca.toml(5))",
                    list(
                        SECTIONS
                            .iter()
                            .filter(|s| !s.name.is_empty())
                            .map(Section::header)
                            .chain(keys_of("").map(|k| k.name.to_owned()))
                    )
                ),
            ));
        }
    }
    check_table(doc, "", "", err)?;
    for s in SECTIONS.iter().filter(|s| !s.name.is_empty()) {
        match doc.get_mut(s.name) {
            None if s.required => {
                return Err(err(
                    s.name,
                    format!(
                        "the section {} is missing (breakglass-ca.toml(5))",
                        s.header()
                    ),
                ));
            }
            None => {}
            Some(toml::Value::Table(t)) if !s.array => check_table(t, s.name, s.name, err)?,
            Some(toml::Value::Array(items)) if s.array => {
                for (i, item) in items.iter_mut().enumerate() {
                    let at = format!("{}[{i}]", s.name);
                    match item {
                        toml::Value::Table(t) => check_table(t, s.name, &at, err)?,
                        _ => {
                            return Err(err(
                                &at,
                                format!("must be a table: write it as {}", s.header()),
                            ));
                        }
                    }
                }
            }
            Some(_) => return Err(err(s.name, format!("must be written as {}", s.header()))),
        }
    }
    Ok(())
}

/// The keys of one table of `section` (at `at`, for messages).
fn check_table(
    t: &mut toml::Table,
    section: &str,
    at: &str,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let field = |k: &str| {
        if at.is_empty() {
            k.to_owned()
        } else {
            format!("{at}.{k}")
        }
    };
    if !section.is_empty() {
        for name in t.keys() {
            if !keys_of(section).any(|k| k.name == name) {
                return Err(err(
                    &field(name),
                    format!(
                        "unknown key `{name}`; the keys of {} are {} (breakglass-ca.toml(5))",
                        SECTIONS
                            .iter()
                            .find(|s| s.name == section)
                            .map_or_else(String::new, Section::header),
                        list(keys_of(section).map(|k| k.name.to_owned()))
                    ),
                ));
            }
        }
    }
    for k in keys_of(section) {
        if t.contains_key(k.name) {
            continue;
        }
        match k.default {
            Absent::Required => {
                return Err(err(
                    &field(k.name),
                    format!("missing: {} ({})", k.meaning, k.kind),
                ));
            }
            Absent::Value(v) => {
                let value = default_value(v).map_err(|e| {
                    err(
                        &field(k.name),
                        format!("the documented default {v} does not parse: {e}"),
                    )
                })?;
                t.insert(k.name.to_owned(), value);
            }
            Absent::Derived(_) => {}
        }
    }
    Ok(())
}

/// A [`Absent::Value`] as a TOML value.
pub fn default_value(v: &str) -> Result<toml::Value, toml::de::Error> {
    let mut t: toml::Table = toml::from_str(&format!("v = {v}"))?;
    Ok(t.remove("v").unwrap_or(toml::Value::Boolean(false)))
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::de::DeserializeOwned;

    use super::super::{
        Config, RawConfig, audit, enrollment, identities, log, notifications, oidc, policy,
        postgres, recordings, server,
    };
    use super::*;

    /// The fields serde accepts for `T`, from the message of an unknown one.
    fn serde_fields<T: DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let e = toml::from_str::<T>("zz_not_a_key = 1\n").unwrap_err();
        let msg = e.message().to_owned();
        // "expected one of `a`, `b`", or "expected `a`" for a single field.
        let (_, expected) = msg
            .split_once(", expected")
            .unwrap_or_else(|| panic!("no field list in {msg:?}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    fn table_fields(section: &str) -> Vec<String> {
        keys_of(section).map(|k| k.name.to_owned()).collect()
    }

    #[test]
    fn the_table_lists_exactly_the_keys_the_section_parsers_accept() {
        let cases: [(&str, Vec<String>); 16] = [
            ("server", serde_fields::<server::RawServer>()),
            ("ca", serde_fields::<server::RawCa>()),
            ("audit", serde_fields::<audit::RawAudit>()),
            ("revocation", serde_fields::<audit::RawRevocation>()),
            ("identities", serde_fields::<identities::RawIdentity>()),
            ("admin_users", serde_fields::<identities::RawAdminUser>()),
            ("tiers", serde_fields::<policy::RawTier>()),
            (
                "notifications",
                serde_fields::<notifications::RawNotifications>(),
            ),
            ("refusals", serde_fields::<notifications::RawRefusals>()),
            ("rules", serde_fields::<policy::RawRule>()),
            ("log", serde_fields::<log::RawLog>()),
            ("webhooks", serde_fields::<notifications::RawWebhook>()),
            ("recordings", serde_fields::<recordings::RawRecordings>()),
            ("oidc", serde_fields::<oidc::RawOidc>()),
            ("enrollment", serde_fields::<enrollment::RawEnrollment>()),
            ("postgres", serde_fields::<postgres::RawPostgres>()),
        ];
        for (section, accepted) in cases {
            assert_eq!(table_fields(section), accepted, "[{section}]");
        }
        let mut top = table_fields("");
        top.extend(
            SECTIONS
                .iter()
                .filter(|s| !s.name.is_empty())
                .map(|s| s.name.to_owned()),
        );
        // The page lists sections in validation order; the struct has its own.
        let mut accepted = serde_fields::<RawConfig>();
        top.sort();
        accepted.sort();
        assert_eq!(top, accepted);
        // Every key belongs to a section, and every value default is TOML.
        for k in KEYS {
            assert!(SECTIONS.iter().any(|s| s.name == k.section), "{k:?}");
            if let Absent::Value(v) = k.default {
                default_value(v).unwrap_or_else(|e| panic!("{}.{}: {v}: {e}", k.section, k.name));
            }
        }
    }

    /// Every optional key left out, every optional section present but empty.
    const SPARSE: &str = "version = 1\n[server]\nlisten = \"127.0.0.1:7443\"\nadmin_socket = \"/run/a.sock\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n[ca]\nsigning_key = \"s\"\n[audit]\ndir = \"audit\"\nkey = \"audit_key.pem\"\n[revocation]\n[notifications]\n[refusals]\n[[identities]]\nid = \"a@example.com\"\n[[admin_users]]\nuser = \"root\"\n[[tiers]]\nname = \"t\"\nmax_ttl = \"1h\"\n[[rules]]\nname = \"r\"\ntier = \"t\"\nidentities = [\"*\"]\nprincipals = [\"p\"]\nhosts = [\"h\"]\ninteractive = true\nmax_ttl = \"1h\"\n";

    #[test]
    fn the_documented_defaults_are_the_defaults_the_parsers_apply() {
        let path = Path::new("/etc/breakglass-ca/breakglass-ca.toml");
        let filled = Config::parse(path, SPARSE).unwrap();
        // The same file without the table's defaults filled in: the parsers' own.
        let raw: RawConfig = toml::from_str(SPARSE).unwrap();
        let own = Config::from_raw(path, raw).unwrap();
        assert_eq!(format!("{filled:?}"), format!("{own:?}"));
        // And a documented default is really filled in (not left to chance).
        let mut doc: toml::Table = toml::from_str(SPARSE).unwrap();
        let err = |f: &str, r: String| ConfigError {
            path: path.to_owned(),
            field: f.to_owned(),
            reason: r,
        };
        check_keys(&mut doc, &err).unwrap();
        assert_eq!(doc["server"]["handshake_timeout"].as_str(), Some("5s"));
        assert_eq!(doc["tiers"][0]["max_wait"].as_str(), Some("15m"));
    }

    fn checked(text: &str) -> Result<toml::Table, ConfigError> {
        let mut doc: toml::Table = toml::from_str(text).unwrap();
        let err = |f: &str, r: String| ConfigError {
            path: "/etc/breakglass-ca/breakglass-ca.toml".into(),
            field: f.to_owned(),
            reason: r,
        };
        check_keys(&mut doc, &err).map(|()| doc)
    }

    #[test]
    fn unknown_and_missing_keys_are_named_with_the_keys_there_are() {
        let e = checked(&SPARSE.replace(
            "max_ttl = \"1h\"\n[[rules]]",
            "max_ttl = \"1h\"\nmax_tll = \"1h\"\n[[rules]]",
        ))
        .unwrap_err();
        assert_eq!(e.field, "tiers[0].max_tll");
        assert!(
            e.reason
                .contains("unknown key `max_tll`; the keys of [[tiers]] are name, approvals"),
            "{e}"
        );
        let e = checked(&SPARSE.replace("[refusals]\n", "[refusal]\n")).unwrap_err();
        assert_eq!(e.field, "refusal");
        assert!(e.reason.contains("[refusals]"), "{e}");
        let e = checked(&SPARSE.replace("tls_key = \"k\"\n", "")).unwrap_err();
        assert_eq!(e.field, "server.tls_key");
        assert!(
            e.reason
                .starts_with("missing: The daemon's TLS private key"),
            "{e}"
        );
        let e = checked(&SPARSE.replace("[audit]\ndir = \"audit\"\nkey = \"audit_key.pem\"\n", ""))
            .unwrap_err();
        assert_eq!(e.field, "audit");
        // Through the whole validation, the parsers say it first, with the line and the
        // fields there are.
        let path = Path::new("/etc/breakglass-ca/breakglass-ca.toml");
        let e = Config::parse(
            path,
            &SPARSE.replace("[refusals]\n", "[refusals]\nper_hour = 1\n"),
        )
        .unwrap_err();
        assert!(e.field.starts_with("line "), "{e}");
        assert!(
            e.reason
                .contains("unknown field `per_hour`, expected one of `per_identity_per_hour`"),
            "{e}"
        );
    }
}
