//! `breakglass-ca init --dev DIR`: everything a single-machine setup needs, in
//! one step — SSH CA key, a TLS CA with a server certificate for localhost and
//! client certificates for a sample SRE, approver and host, client config
//! files and a commented daemon config that works as it is.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::certificate::CertificateAuthority;
use crate::client_ca::{client_params, dn, random_serial};
use crate::keyfile::write_new;

/// Name of the daemon config file inside a dev directory.
pub const CONFIG_FILE: &str = "breakglass-ca.toml";

/// A client identity created by `init`.
#[derive(Clone, Copy, Debug)]
pub struct SampleClient {
    /// File stem under `clients/`.
    pub name: &'static str,
    /// The SAN the daemon identifies it by.
    pub san: ClientSan,
}

/// The SAN put in a client certificate.
#[derive(Clone, Copy, Debug)]
pub enum ClientSan {
    /// An e-mail address (people).
    Email(&'static str),
    /// A URI (hosts, services).
    Uri(&'static str),
}

impl ClientSan {
    /// The identity string the daemon will see.
    pub fn identity(&self) -> &'static str {
        match self {
            ClientSan::Email(s) | ClientSan::Uri(s) => s,
        }
    }
}

/// The sample clients of a dev setup.
pub const SAMPLE_CLIENTS: [SampleClient; 5] = [
    SampleClient {
        name: "sre",
        san: ClientSan::Email("sre@example.com"),
    },
    SampleClient {
        name: "approver",
        san: ClientSan::Email("approver@example.com"),
    },
    // A second approver: the `critical` tier needs two distinct people.
    SampleClient {
        name: "approver2",
        san: ClientSan::Email("approver2@example.com"),
    },
    SampleClient {
        name: "host",
        san: ClientSan::Uri("host://localhost"),
    },
    SampleClient {
        name: "auditor",
        san: ClientSan::Email("auditor@example.com"),
    },
];

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory already holds a setup.
    #[error(
        "{0} already exists; use it with `breakglass-ca serve --config {0}`, or choose an empty directory"
    )]
    Exists(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating TLS certificates: {0}")]
    Tls(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A PEM certificate and its PEM private key.
#[derive(Debug)]
pub struct CertAndKey {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// Creates a TLS CA certificate (10 years; dev use).
pub fn tls_ca(common_name: &str) -> Result<CertAndKey, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(10 * 365 * 86400);
    p.serial_number = Some(random_serial());
    let cert = p.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a leaf certificate from a TLS CA: a server certificate for `dns`
/// names, or a client certificate with `san`, valid between the two times.
pub fn tls_leaf(
    ca: &CertAndKey,
    server_names: &[&str],
    client: Option<ClientSan>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertAndKey, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let p = match client {
        // Clients get what the daemon's own client CA signs (crate::client_ca).
        Some(san) => {
            let email = matches!(san, ClientSan::Email(_));
            client_params(san.identity(), email, not_before, not_after)?.0
        }
        None => {
            let mut p = CertificateParams::new(
                server_names
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )?;
            p.distinguished_name = dn(server_names.first().copied().unwrap_or("breakglass-ca"));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.not_before = not_before;
            p.not_after = not_after;
            p.serial_number = Some(random_serial());
            p
        }
    };
    let cert = p.signed_by(&key, &issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What `init` created.
#[derive(Debug)]
pub struct DevSetup {
    /// The directory.
    pub dir: PathBuf,
    /// The daemon config file.
    pub config: PathBuf,
    /// SSH CA public key line.
    pub ca_public_key: String,
}

/// The dev setup's metrics listener: loopback, on the port after `listen`'s (before it,
/// for the last port; an ephemeral port when `listen` asks for one).
#[must_use]
pub fn dev_metrics_listen(listen: SocketAddr) -> SocketAddr {
    let port = match listen.port() {
        0 => 0,
        u16::MAX => u16::MAX - 1,
        p => p + 1,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Creates a complete dev setup in `dir` (created if absent, must not already hold one).
pub fn init_dev(dir: &Path, listen: SocketAddr) -> Result<DevSetup, InitError> {
    let config = dir.join(CONFIG_FILE);
    if config.exists() {
        return Err(InitError::Exists(config.display().to_string()));
    }
    for d in [dir.to_owned(), dir.join("tls"), dir.join("clients")] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(io(&d))?;
    }
    let ssh_ca = dir.join("ssh_ca");
    let ca_pub =
        CertificateAuthority::generate(&ssh_ca, "breakglass dev CA").map_err(io(&ssh_ca))?;
    let ca_pub_line = ca_pub
        .to_openssh()
        .map_err(|e| io(&ssh_ca)(std::io::Error::other(e.to_string())))?;
    let pub_path = dir.join("ssh_ca.pub");
    write_new(&pub_path, format!("{ca_pub_line}\n").as_bytes(), 0o644).map_err(io(&pub_path))?;

    let now = OffsetDateTime::now_utc();
    let year = now + Duration::from_secs(365 * 86400);
    let hour_ago = now - Duration::from_secs(3600);
    let ca = tls_ca("breakglass dev TLS CA")?;
    let server = tls_leaf(
        &ca,
        &["localhost", "127.0.0.1", "::1"],
        None,
        hour_ago,
        year,
    )?;
    let files: Vec<(PathBuf, String, u32)> = vec![
        (dir.join("tls/ca.pem"), ca.cert_pem.clone(), 0o644),
        (dir.join("tls/ca-key.pem"), ca.key_pem.clone(), 0o600),
        (dir.join("tls/server.pem"), server.cert_pem, 0o644),
        (dir.join("tls/server-key.pem"), server.key_pem, 0o600),
    ];
    for (p, text, mode) in &files {
        write_new(p, text.as_bytes(), *mode).map_err(io(p))?;
    }
    for c in SAMPLE_CLIENTS {
        let leaf = tls_leaf(&ca, &[], Some(c.san), hour_ago, year)?;
        let cert = dir.join(format!("clients/{}.pem", c.name));
        let key = dir.join(format!("clients/{}-key.pem", c.name));
        let cfg = dir.join(format!("clients/{}.toml", c.name));
        write_new(&cert, leaf.cert_pem.as_bytes(), 0o644).map_err(io(&cert))?;
        write_new(&key, leaf.key_pem.as_bytes(), 0o600).map_err(io(&key))?;
        let mut text = format!(
            "# breakglass client settings for {id} (use with --config or BREAKGLASS_CONFIG).\n\
             # Relative paths are relative to this file.\n\
             server = \"https://{listen}\"\n\
             ca_cert = \"../tls/ca.pem\"\n\
             cert = \"{name}.pem\"\n\
             key = \"{name}-key.pem\"\n",
            id = c.san.identity(),
            name = c.name,
        );
        if c.san.identity().starts_with("host://") {
            // Hosts witness the audit log (host sync-krl, ship, watch-revocations): the
            // log's key pinned from log.pub, and the latest checkpoint this host verified.
            text.push_str(&format!(
                "audit_key = \"../log.pub\"\nwitness_state = \"{}.witness\"\n",
                c.name
            ));
        }
        write_new(&cfg, text.as_bytes(), 0o600).map_err(io(&cfg))?;
    }
    let audit_key = dir.join("audit_key.pem");
    crate::audit::generate_audit_key(&audit_key, "breakglass-ca/audit/v1")
        .map_err(|e| io(&audit_key)(std::io::Error::other(e.to_string())))?;
    write_new(&config, dev_config(listen).as_bytes(), 0o600).map_err(io(&config))?;
    Ok(DevSetup {
        dir: dir.to_owned(),
        config,
        ca_public_key: ca_pub_line,
    })
}

/// The commented dev configuration.
pub fn dev_config(listen: SocketAddr) -> String {
    let metrics_listen = dev_metrics_listen(listen);
    format!(
        r#"# breakglass-ca configuration (dev setup made by `breakglass-ca init --dev`).
# Relative paths are relative to this file. Check it with
#   breakglass-ca check-config --config <this file>
version = 1

[server]
# mTLS gRPC listener. Clients must present a certificate signed by client_ca.
listen = "{listen}"
# Local admin socket (mode 0600); callers are identified as unix:<user>
# (SO_PEERCRED) and get their groups from [[admin_users]].
admin_socket = "admin.sock"
tls_cert = "tls/server.pem"
tls_key = "tls/server-key.pem"          # must be mode 0600
client_ca = "tls/ca.pem"
# With the client CA's key the daemon signs the client certificates of hosts that
# enroll themselves with a one-time join token (breakglass-ca token create, then
# breakglass host enroll on the host). Without it, it signs none.
client_ca_key = "tls/ca-key.pem"       # must be mode 0600
# Unauthenticated TLS handshakes: each may take handshake_timeout; at most
# max_handshakes are in flight (max_handshakes_per_source from one address), and a
# new one sheds the oldest of the busiest address, so idle connections cannot lock
# clients out. TCP connections (max_connections) are capped below the file
# descriptor limit so the admin socket always works; see the README.
handshake_timeout = "5s"
max_handshakes = 256
max_handshakes_per_source = 32
shutdown_grace = "10s"
# Plain-HTTP metrics and probes (/metrics, /healthz, /readyz), on loopback: no TLS,
# no client identity. The dev setup takes the port after the gRPC listener's.
metrics_listen = "{metrics_listen}"

[ca]
# Ed25519 OpenSSH private key that signs user certificates (mode 0600).
signing_key = "ssh_ca"
# Older or next CA public keys to keep publishing to hosts during a rotation.
extra_public_keys = []
# valid_after is set this far in the past to absorb clock skew.
backdate = "2m"
# No request may ask for more than this, whatever the rules say.
max_ttl = "8h"

# Who is who. The id is the URI or e-mail SAN of the client certificate; groups
# are used by the rules. A certificate not listed here may call nothing but
# `breakglass whoami`.
[[identities]]
id = "sre@example.com"
groups = ["sre"]
owner = "sample-sre"

[[identities]]
id = "approver@example.com"
groups = ["approvers"]
owner = "sample-approver"

[[identities]]
id = "approver2@example.com"
groups = ["approvers"]
owner = "sample-approver-2"

[[identities]]
id = "auditor@example.com"
groups = ["auditors"]
owner = "sample-auditor"

# Hosts deliver session records as host://<host name> (a host may only report
# sessions for itself) and need the group "hosts".
[[identities]]
id = "host://localhost"
groups = ["hosts"]

# Local users of the admin socket (identified as unix:<user> by SO_PEERCRED;
# no certificate can claim a unix: identity) and their groups.
[[admin_users]]
user = "root"
groups = ["admins"]

[audit]
# The signed, tamper-evident audit log: every grant is recorded here before the
# certificate is returned, and the daemon's state is rebuilt from it at start-up.
dir = "audit"
# Ed25519 key that signs the log's checkpoints (not the SSH CA key; mode 0600).
# Auditors verify the log with log.pub, written beside it.
key = "audit_key.pem"
origin = "breakglass-ca/audit/v1"
segment_max_mib = 64
# Who may read the log through the Audit API (`breakglass audit ...`).
reader_groups = ["auditors", "admins"]
# One authpriv key=value syslog line per recorded event goes to this socket.
syslog_socket = "/dev/log"

# Refusals by policy (a deny rule, no matching rule, a TTL over the limit, a
# missing ticket, self-approval, an unknown identity, ...) are audit events
# (request_refused, action_refused) and syslog lines. Per identity and hour, at
# most per_identity_per_hour are recorded one by one; the next records one
# refusals_limited event, and later ones are refused without a record.
[refusals]
per_identity_per_hour = 60
# This many refusals of one identity within the hour send one alert to the
# webhooks listed as `webhooks = [...]` here (default: every tier's webhooks;
# [] for none). 0 turns it off.
alert_threshold = 10

# Rules. Deny by default: a request needs an allow rule that covers every
# principal, host, the command (or interactive shell), the source addresses,
# the TTL and the extensions. A matching deny rule always wins.
# principals and hosts are names or patterns (`*` any run of characters, dots
# included; `?` one character; host names compare case-insensitively). A request
# may ask for a host pattern if every host it matches is matched by the rule's
# hosts, and no deny rule names a host it matches.
[[rules]]
name = "no-root"
effect = "deny"
principals = ["root"]

# Risk tiers, from least to most restrictive. When several allow rules match a
# request, the one whose tier comes last here wins. A tier says how many
# distinct approvals (never the requester's, nor another identity of the same
# owner) a request needs, from which groups, how long it may wait, and whether
# a declared emergency (`breakglass request --emergency`) is issued at once.
[[tiers]]
name = "low"
approvals = 0
max_ttl = "30m"

[[tiers]]
name = "elevated"
approvals = 1
approvers = ["approvers"]
reviewers = ["auditors", "approvers"]
reason_min_length = 10
max_ttl = "1h"
max_wait = "15m"
emergency = true
emergency_ttl = "15m"
emergency_per_day = 2
# webhooks = ["https://chat.example.com/hooks/breakglass"]

[[tiers]]
name = "critical"
approvals = 2
approvers = ["approvers"]
reviewers = ["auditors"]
reason_min_length = 10
ticket_required = true
ticket_pattern = "(INC|CHG)-[0-9]+"
max_ttl = "1h"
max_wait = "30m"
emergency = false
session_recording = true

# Break-glass drills (`breakglass drill --host H --as USER`, e.g. from the
# breakglass-drill.timer): a tier with drill = true matches only drill
# requests, and drill requests match only its rules. No approval, a few
# minutes, and only the harmless forced command the drill runs. A failed drill
# is logged and alerted like an emergency, to this tier's webhooks.
[[tiers]]
name = "drill"
drill = true
approvals = 0
max_ttl = "10m"
# webhooks = ["https://pager.example.com/hooks/breakglass"]

[[rules]]
name = "sre-drill-local"
tier = "drill"
groups = ["sre"]
principals = ["*"]
hosts = ["localhost", "127.0.0.1"]
commands = ["echo breakglass-drill"]
max_ttl = "10m"

[[rules]]
name = "sre-local"
tier = "low"
groups = ["sre"]
principals = ["*"]
hosts = ["localhost", "127.0.0.1", "*.dev.example"]
# An interactive shell is allowed, or exactly one of these forced commands.
interactive = true
commands = ["/usr/bin/uptime", "/usr/bin/id"]
# Uncomment to require --source-address within these blocks:
# source_addresses = ["127.0.0.0/8"]
max_ttl = "30m"
extensions = ["permit-pty"]

[[rules]]
name = "sre-staging"
tier = "elevated"
groups = ["sre"]
principals = ["*"]
hosts = ["*.staging.example"]
interactive = true
max_ttl = "1h"
extensions = ["permit-pty"]

[[rules]]
name = "sre-prod"
tier = "critical"
groups = ["sre"]
principals = ["*"]
hosts = ["*.prod.example"]
interactive = true
max_ttl = "1h"
extensions = ["permit-pty"]
"#
    )
}
