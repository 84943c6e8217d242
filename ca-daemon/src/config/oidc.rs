//! `[oidc]`: people log in with the organisation's OpenID Connect provider
//! ([`crate::oidc`] verifies their ID tokens).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::field::{ConfigError, check_word, duration_field};

/// Default of `login_ttl`: a working day.
pub const DEFAULT_LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);
/// Allowed range of `login_ttl` and of each `group_login_ttl`.
const LOGIN_TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 86_400));
/// Default of `leeway`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
const LEEWAY_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(300));
/// Default of `jwks_min_refresh`.
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);
const JWKS_MIN_REFRESH_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));
/// Default of `ca_bundle`: Debian's bundle of public CAs.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// `allowed_domains = ["*"]`: any identity, e-mail address or not.
pub const ANY_DOMAIN: &str = "*";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    issuer: String,
    client_id: String,
    #[serde(default)]
    identity_claim: Option<String>,
    #[serde(default)]
    groups_claim: Option<String>,
    #[serde(default)]
    group_map: BTreeMap<String, Vec<String>>,
    allowed_domains: Vec<String>,
    #[serde(default)]
    login_ttl: Option<String>,
    #[serde(default)]
    group_login_ttl: BTreeMap<String, String>,
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
    #[serde(default)]
    leeway: Option<String>,
    #[serde(default)]
    jwks_min_refresh: Option<String>,
}

/// Validated `[oidc]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The provider's issuer URL, exactly as its ID tokens' `iss` and its discovery
    /// document say it (https, or http on a loopback address).
    pub issuer: String,
    /// The client id breakglass has at the provider: the audience of its ID tokens.
    pub client_id: String,
    /// The claim whose value is the identity (`email`).
    pub identity_claim: String,
    /// The claim that lists the identity's groups at the provider (`groups`).
    pub groups_claim: String,
    /// Provider group → policy groups; groups not listed give nothing.
    pub group_map: BTreeMap<String, Vec<String>>,
    /// Lower-case e-mail domains an identity must be in; [`ANY_DOMAIN`] alone: any.
    pub allowed_domains: Vec<String>,
    /// Lifetime of the client certificate of a login.
    pub login_ttl: Duration,
    /// A shorter (or longer) lifetime for members of a policy group; the shortest of the
    /// identity's groups applies.
    pub group_login_ttl: BTreeMap<String, Duration>,
    /// CA bundle (PEM) that an https issuer's certificate must chain to.
    pub ca_bundle: PathBuf,
    /// Clock skew allowed on `exp` and `iat`.
    pub leeway: Duration,
    /// Least time between two fetches of the provider's keys for a token whose key id is
    /// not among the known keys.
    pub jwks_min_refresh: Duration,
}

/// Validates `[oidc]`.
pub(super) fn parse_oidc(
    raw: RawOidc,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<OidcSettings, ConfigError> {
    check_issuer(&raw.issuer).map_err(|e| err("oidc.issuer", e))?;
    if raw.client_id.is_empty() || raw.client_id.len() > 256 {
        return Err(err(
            "oidc.client_id",
            "must be 1 to 256 bytes: the client id breakglass is registered with at the provider"
                .into(),
        ));
    }
    let claim = |field: &str, value: Option<String>, default: &str| {
        let value = value.unwrap_or_else(|| default.to_owned());
        if value.is_empty() || value.len() > 128 {
            return Err(err(field, "must be a claim name of 1 to 128 bytes".into()));
        }
        Ok(value)
    };
    let identity_claim = claim("oidc.identity_claim", raw.identity_claim, "email")?;
    let groups_claim = claim("oidc.groups_claim", raw.groups_claim, "groups")?;
    let mut policy_groups = Vec::new();
    for (idp_group, groups) in &raw.group_map {
        let at = format!("oidc.group_map.{idp_group}");
        if idp_group.is_empty() {
            return Err(err(
                "oidc.group_map",
                "a provider group name is empty".into(),
            ));
        }
        for g in groups {
            check_word(g).map_err(|e| err(&at, format!("policy group {e}")))?;
            policy_groups.push(g.as_str());
        }
    }
    if raw.allowed_domains.is_empty() {
        return Err(err(
            "oidc.allowed_domains",
            "is empty, so nobody could log in: list the e-mail domains of your organisation \
             ([\"example.com\"]), or [\"*\"] to accept any identity the provider vouches for"
                .into(),
        ));
    }
    let mut allowed_domains = Vec::new();
    for d in &raw.allowed_domains {
        let d = d.to_ascii_lowercase();
        let ok = d == ANY_DOMAIN
            || (!d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }));
        if !ok {
            return Err(err(
                "oidc.allowed_domains",
                format!("{d:?} is not a domain name like \"example.com\" (or \"*\" for any)"),
            ));
        }
        allowed_domains.push(d);
    }
    if allowed_domains.len() > 1 && allowed_domains.iter().any(|d| d == ANY_DOMAIN) {
        return Err(err(
            "oidc.allowed_domains",
            "\"*\" accepts any identity: give it alone, or list only domains".into(),
        ));
    }
    let login_ttl = duration_field(raw.login_ttl.as_deref(), DEFAULT_LOGIN_TTL, LOGIN_TTL_RANGE)
        .map_err(|e| err("oidc.login_ttl", e))?;
    let mut group_login_ttl = BTreeMap::new();
    for (group, ttl) in raw.group_login_ttl {
        let at = format!("oidc.group_login_ttl.{group}");
        if !policy_groups.contains(&group.as_str()) {
            return Err(err(
                &at,
                format!(
                    "no provider group maps to the policy group {group:?} in oidc.group_map, \
                     so this lifetime would never apply"
                ),
            ));
        }
        let ttl =
            duration_field(Some(&ttl), login_ttl, LOGIN_TTL_RANGE).map_err(|e| err(&at, e))?;
        group_login_ttl.insert(group, ttl);
    }
    Ok(OidcSettings {
        issuer: raw.issuer,
        client_id: raw.client_id,
        identity_claim,
        groups_claim,
        group_map: raw.group_map,
        allowed_domains,
        login_ttl,
        group_login_ttl,
        ca_bundle: resolve(
            raw.ca_bundle
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_CA_BUNDLE)),
        ),
        leeway: duration_field(raw.leeway.as_deref(), DEFAULT_LEEWAY, LEEWAY_RANGE)
            .map_err(|e| err("oidc.leeway", e))?,
        jwks_min_refresh: duration_field(
            raw.jwks_min_refresh.as_deref(),
            DEFAULT_JWKS_MIN_REFRESH,
            JWKS_MIN_REFRESH_RANGE,
        )
        .map_err(|e| err("oidc.jwks_min_refresh", e))?,
    })
}

/// An issuer URL: https, or plain http to a loopback address (a provider on the same
/// machine, as in tests) ([`breakglass_proto::oidc::check_provider_url`]); no query or
/// fragment.
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    breakglass_proto::oidc::check_provider_url(issuer)?;
    if issuer.contains(['?', '#']) {
        return Err(format!("{issuer:?} must have no query or fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const MIN: &str = "version = 1\n[server]\nlisten = \"127.0.0.1:7443\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n[ca]\nsigning_key = \"s\"\n[audit]\ndir = \"audit\"\nkey = \"audit_key.pem\"\n";

    const OIDC: &str = "[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"breakglass\"\ngroup_map = { \"idp-sre\" = [\"sre\"], \"idp-dba\" = [\"dba\", \"readers\"] }\nallowed_domains = [\"Example.com\"]\ngroup_login_ttl = { dba = \"1h\" }\n";

    fn parse(oidc: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("/etc/breakglass-ca/breakglass-ca.toml"),
            &format!("{MIN}{oidc}"),
        )
    }

    #[test]
    fn oidc_is_off_without_the_section_and_has_documented_defaults() {
        assert_eq!(parse("").unwrap().oidc, None);
        let o = parse(OIDC).unwrap().oidc.unwrap();
        assert_eq!(o.identity_claim, "email");
        assert_eq!(o.groups_claim, "groups");
        assert_eq!(o.allowed_domains, ["example.com"]);
        assert_eq!(o.login_ttl, DEFAULT_LOGIN_TTL);
        assert_eq!(o.group_login_ttl["dba"], Duration::from_secs(3600));
        assert_eq!(o.group_map["idp-dba"], ["dba", "readers"]);
        assert_eq!(o.ca_bundle, Path::new(DEFAULT_CA_BUNDLE));
        assert_eq!(o.leeway, DEFAULT_LEEWAY);
        assert_eq!(o.jwks_min_refresh, DEFAULT_JWKS_MIN_REFRESH);
    }

    #[test]
    fn oidc_errors_name_the_field_and_what_to_do() {
        let cases = [
            (
                "issuer = \"https://idp.example.com\"",
                "issuer = \"http://idp.example.com\"",
                "oidc.issuer",
                "plain http",
            ),
            (
                "allowed_domains = [\"Example.com\"]",
                "allowed_domains = []",
                "oidc.allowed_domains",
                "nobody could log in",
            ),
            (
                "allowed_domains = [\"Example.com\"]",
                "allowed_domains = [\"*\", \"example.com\"]",
                "oidc.allowed_domains",
                "alone",
            ),
            (
                "allowed_domains = [\"Example.com\"]",
                "allowed_domains = [\"@example.com\"]",
                "oidc.allowed_domains",
                "not a domain name",
            ),
            (
                "dba = \"1h\"",
                "ops = \"1h\"",
                "oidc.group_login_ttl.ops",
                "would never apply",
            ),
            (
                "dba = \"1h\"",
                "dba = \"10d\"",
                "oidc.group_login_ttl.dba",
                "outside the allowed range",
            ),
            (
                "[\"dba\", \"readers\"]",
                "[\"dba team\"]",
                "oidc.group_map.idp-dba",
                "policy group",
            ),
            // Missing keys are found by the first pass, with the line of the section.
            (
                "client_id = \"breakglass\"\n",
                "",
                "line 11",
                "missing field `client_id`",
            ),
        ];
        for (from, to, field, reason) in cases {
            let text = OIDC.replace(from, to);
            assert_ne!(text, OIDC, "{from}");
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        assert!(check_issuer("https://idp.example.com").is_ok());
        assert!(check_issuer("https://idp.example.com/realms/corp").is_ok());
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer("http://[::1]:8080").is_ok());
        let e = check_issuer("http://idp.example.com").unwrap_err();
        assert!(e.contains("plain http"), "{e}");
        let e = check_issuer("ftp://idp.example.com").unwrap_err();
        assert!(e.contains("https://"), "{e}");
        let e = check_issuer("https://idp.example.com/?x=1").unwrap_err();
        assert!(e.contains("no query"), "{e}");
    }
}
