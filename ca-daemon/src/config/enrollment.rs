//! `[enrollment]`: how hosts get their mTLS client certificates themselves (one-time join
//! tokens, `breakglass host enroll`; [`crate::enrollment`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::field::{ConfigError, duration_field};

/// Default of `[enrollment] host_certificate_ttl`.
pub const DEFAULT_HOST_CERTIFICATE_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Default of `[enrollment] token_ttl`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Default of `[enrollment] login_nonce_ttl`: the person has this long to finish the
/// provider's device or browser flow, or to touch their security key.
pub const DEFAULT_LOGIN_NONCE_TTL: Duration = Duration::from_secs(600);
/// Default of `[enrollment] max_token_ttl`.
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnrollment {
    #[serde(default)]
    tls_ca: Option<PathBuf>,
    #[serde(default)]
    host_certificate_ttl: Option<String>,
    #[serde(default)]
    token_ttl: Option<String>,
    #[serde(default)]
    max_token_ttl: Option<String>,
    #[serde(default)]
    login_nonce_ttl: Option<String>,
}

/// Enrollment settings.
#[derive(Debug, Clone)]
pub struct EnrollmentSettings {
    /// The CA certificate(s) of the daemon's TLS certificate, sent to hosts on first
    /// contact (`None`: `[server] client_ca`).
    pub tls_ca: Option<PathBuf>,
    /// Lifetime of a host's client certificate (enrolled or renewed).
    pub host_certificate_ttl: Duration,
    /// Lifetime of a join token when `token create` names none.
    pub token_ttl: Duration,
    /// Longest lifetime `token create --ttl` may ask for.
    pub max_token_ttl: Duration,
    /// How long a login's nonce is good (`breakglass login`, either method).
    pub login_nonce_ttl: Duration,
}

impl Default for EnrollmentSettings {
    fn default() -> Self {
        Self {
            tls_ca: None,
            host_certificate_ttl: DEFAULT_HOST_CERTIFICATE_TTL,
            token_ttl: DEFAULT_TOKEN_TTL,
            max_token_ttl: DEFAULT_MAX_TOKEN_TTL,
            login_nonce_ttl: DEFAULT_LOGIN_NONCE_TTL,
        }
    }
}

/// Validates `[enrollment]`.
pub(super) fn parse_enrollment(
    raw: RawEnrollment,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<EnrollmentSettings, ConfigError> {
    let hour = Duration::from_secs(3600);
    let max_token_ttl = duration_field(
        raw.max_token_ttl.as_deref(),
        DEFAULT_MAX_TOKEN_TTL,
        (Duration::from_secs(60), Duration::from_secs(30 * 86_400)),
    )
    .map_err(|e| err("enrollment.max_token_ttl", e))?;
    let token_ttl = duration_field(
        raw.token_ttl.as_deref(),
        DEFAULT_TOKEN_TTL,
        (Duration::from_secs(60), max_token_ttl),
    )
    .map_err(|e| {
        err(
            "enrollment.token_ttl",
            format!("{e} (at most max_token_ttl)"),
        )
    })?;
    Ok(EnrollmentSettings {
        tls_ca: raw.tls_ca.as_deref().map(resolve),
        host_certificate_ttl: duration_field(
            raw.host_certificate_ttl.as_deref(),
            DEFAULT_HOST_CERTIFICATE_TTL,
            (hour, Duration::from_secs(400 * 86_400)),
        )
        .map_err(|e| err("enrollment.host_certificate_ttl", e))?,
        token_ttl,
        max_token_ttl,
        login_nonce_ttl: duration_field(
            raw.login_nonce_ttl.as_deref(),
            DEFAULT_LOGIN_NONCE_TTL,
            (Duration::from_secs(1), hour),
        )
        .map_err(|e| err("enrollment.login_nonce_ttl", e))?,
    })
}
