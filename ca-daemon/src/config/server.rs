//! `[server]` and `[ca]`: the listeners, TLS material, connection limits, and the SSH
//! certificate authority's keys and lifetimes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::field::{ConfigError, count_field, duration_field};

/// No certificate ever outlives this, whatever the configuration says.
pub const HARD_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
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
    #[serde(default)]
    metrics_listen: Option<String>,
    #[serde(default)]
    client_ca_key: Option<PathBuf>,
    #[serde(default)]
    open_calls_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCa {
    signing_key: PathBuf,
    #[serde(default)]
    extra_public_keys: Vec<PathBuf>,
    #[serde(default)]
    backdate: Option<String>,
    #[serde(default)]
    max_ttl: Option<String>,
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
    /// TCP address of the plain-HTTP metrics and probes listener (`/metrics`, `/healthz`,
    /// `/readyz`; see [`crate::metrics`]); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Private key of the client CA (the first certificate of `client_ca`): with it the
    /// daemon signs client certificates itself ([`crate::client_ca`]); `None`: it signs none.
    pub client_ca_key: Option<PathBuf>,
    /// Calls made without a client certificate ([`crate::access::OPEN_CALLS`]) allowed per
    /// peer IPv4 address or IPv6 /64 and minute.
    pub open_calls_per_minute: u32,
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

/// Validates `[server]`.
pub(super) fn parse_server(
    raw: RawServer,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<ServerConfig, ConfigError> {
    let listen = raw.listen.parse::<SocketAddr>().map_err(|e| {
        err(
            "server.listen",
            format!("{:?} is not an address:port ({e})", raw.listen),
        )
    })?;
    let server = ServerConfig {
        listen,
        admin_socket: raw.admin_socket.as_deref().map(resolve),
        tls_cert: resolve(&raw.tls_cert),
        tls_key: resolve(&raw.tls_key),
        client_ca: resolve(&raw.client_ca),
        handshake_timeout: duration_field(
            raw.handshake_timeout.as_deref(),
            Duration::from_secs(5),
            (Duration::from_millis(100), Duration::from_secs(300)),
        )
        .map_err(|r| err("server.handshake_timeout", r))?,
        max_connections: raw
            .max_connections
            .map(|n| count_field(n, (2, 1 << 20)))
            .transpose()
            .map_err(|r| err("server.max_connections", r))?,
        max_handshakes: count_field(raw.max_handshakes.unwrap_or(256), (1, 65536))
            .map_err(|r| err("server.max_handshakes", r))?,
        max_handshakes_per_source: count_field(
            raw.max_handshakes_per_source.unwrap_or(32),
            (1, 65536),
        )
        .map_err(|r| err("server.max_handshakes_per_source", r))?,
        shutdown_grace: duration_field(
            raw.shutdown_grace.as_deref(),
            Duration::from_secs(10),
            (Duration::ZERO, Duration::from_secs(600)),
        )
        .map_err(|r| err("server.shutdown_grace", r))?,
        metrics_listen: raw
            .metrics_listen
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|e| format!("{a:?} is not an address:port ({e})"))
            })
            .transpose()
            .map_err(|r| err("server.metrics_listen", r))?,
        client_ca_key: raw.client_ca_key.as_deref().map(resolve),
        open_calls_per_minute: u32::try_from(
            count_field(
                raw.open_calls_per_minute.unwrap_or(30) as usize,
                (1, 100_000),
            )
            .map_err(|r| err("server.open_calls_per_minute", r))?,
        )
        .unwrap_or(u32::MAX),
    };
    // Port 0 asks for any free port, a different one for each.
    if server.metrics_listen == Some(server.listen) && server.listen.port() != 0 {
        return Err(err(
            "server.metrics_listen",
            format!(
                "{} is also the gRPC listener's address; the metrics listener needs its own port",
                server.listen
            ),
        ));
    }
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

    Ok(server)
}

/// Validates `[ca]`.
pub(super) fn parse_ca(
    raw: RawCa,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<CaConfig, ConfigError> {
    let ca = CaConfig {
        signing_key: resolve(&raw.signing_key),
        extra_public_keys: raw.extra_public_keys.iter().map(|p| resolve(p)).collect(),
        backdate: duration_field(
            raw.backdate.as_deref(),
            Duration::from_secs(120),
            (Duration::ZERO, Duration::from_secs(3600)),
        )
        .map_err(|r| err("ca.backdate", r))?,
        max_ttl: duration_field(
            raw.max_ttl.as_deref(),
            Duration::from_secs(12 * 3600),
            (Duration::from_secs(1), HARD_MAX_TTL),
        )
        .map_err(|r| err("ca.max_ttl", r))?,
    };

    Ok(ca)
}
