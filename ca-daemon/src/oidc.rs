//! OpenID Connect login: the daemon's side. [`Verifier::verify`] checks an ID token that
//! the CLI got from the organisation's provider (device flow, or code + PKCE) and says
//! who it proves, in which policy groups, for how long (`[oidc]`, [`crate::config::oidc`]).
//!
//! The checks: the provider found through discovery (its document must name the
//! configured issuer exactly); the signature by a key of its JWKS, with public-key
//! algorithms only (`alg: none` and HMAC refused by name); a key id not yet known makes
//! the keys be fetched again (the provider rotated them), at most once per
//! `jwks_min_refresh`; then `iss`, `aud` (and `azp`), `exp` and `iat` with `leeway`, and
//! the login's `nonce` ([`claims`]).
//!
//! Why `jsonwebtoken` and not `openidconnect`: the daemon only verifies ID tokens, and
//! needs the whole claims map for its configurable identity and groups claims;
//! `jsonwebtoken` (Keats/jsonwebtoken, widely used) does the part that must not be
//! written by hand, the JWS signature with the RustCrypto backends already in the tree
//! (no aws-lc-rs beside rustls's ring), from JWKs. `openidconnect` would bring `oauth2`,
//! `serde_with` and its own HTTP client abstraction for the same checks, and its typed
//! claims make a configurable groups claim awkward. Discovery is one GET and one
//! comparison; the claim checks follow OpenID Connect Core 3.1.3.7 and are tested
//! against a certified provider (node `oidc-provider`, `tests/tests/oidc.rs`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use crate::config::OidcSettings;

pub mod claims;
pub mod error;
pub mod http;
pub mod keys;
pub mod login;

pub use self::error::OidcError;
pub use self::login::LoginIdentity;

/// Verifies ID tokens of the configured provider. Cheap to share: one per daemon.
#[derive(Debug)]
pub struct Verifier {
    settings: OidcSettings,
    fetcher: http::Fetcher,
    cache: tokio::sync::Mutex<Cache>,
}

/// What is known of the provider: where its keys are, the keys, when they were fetched.
#[derive(Debug, Default)]
struct Cache {
    jwks_uri: Option<String>,
    keys: Vec<keys::ProviderKey>,
    fetched: Option<Instant>,
    /// Why the last fetch failed, while it is too recent to fetch again.
    failed: Option<String>,
}

impl Verifier {
    /// A verifier for `[oidc]`. Nothing is fetched yet: the provider is found at the first
    /// login, so the daemon starts while the provider is down.
    #[must_use]
    pub fn new(settings: OidcSettings) -> Self {
        let fetcher = http::Fetcher::new(&settings.ca_bundle);
        Self {
            settings,
            fetcher,
            cache: tokio::sync::Mutex::new(Cache::default()),
        }
    }

    /// The settings it checks against.
    #[must_use]
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Checks `id_token` for a login that sent `nonce`, now.
    pub async fn verify(&self, id_token: &str, nonce: &str) -> Result<LoginIdentity, OidcError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.verify_at(id_token, nonce, now).await
    }

    /// [`verify`](Self::verify) at `now` (Unix seconds).
    pub async fn verify_at(
        &self,
        id_token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<LoginIdentity, OidcError> {
        let header = keys::read_header(id_token)?;
        let key = self.key_for(&header).await?;
        let claims = verify_signature(id_token, &header, &key)?;
        claims::check(&claims, &self.settings, nonce, now)
    }

    /// Drops the provider's keys and discovery document, so the next login fetches them.
    pub async fn forget_keys(&self) {
        *self.cache.lock().await = Cache::default();
    }

    /// The provider's key for `header`, fetching the keys when none are known, or when the
    /// token names a key not among them (rotation) and the last fetch is older than
    /// `jwks_min_refresh`.
    async fn key_for(&self, header: &keys::TokenHeader) -> Result<keys::ProviderKey, OidcError> {
        let mut cache = self.cache.lock().await;
        if cache.fetched.is_some()
            && let Some(k) = keys::find(&cache.keys, header)
        {
            return Ok(k.clone());
        }
        let may_fetch = cache
            .fetched
            .is_none_or(|at| at.elapsed() >= self.settings.jwks_min_refresh);
        if may_fetch {
            self.fetch_keys(&mut cache).await?;
            if let Some(k) = keys::find(&cache.keys, header) {
                return Ok(k.clone());
            }
        } else if let Some(reason) = &cache.failed {
            return Err(OidcError::Provider {
                issuer: self.settings.issuer.clone(),
                reason: reason.clone(),
            });
        } else {
            tracing::debug!(kid = %header.kid_shown(), "unknown key id; keys fetched too recently to fetch again");
        }
        Err(OidcError::UnknownKey {
            kid: header.kid_shown(),
            issuer: self.settings.issuer.clone(),
        })
    }

    async fn fetch_keys(&self, cache: &mut Cache) -> Result<(), OidcError> {
        // Counted as a fetch even when it fails: a provider that is down is not asked at
        // every login attempt.
        cache.fetched = Some(Instant::now());
        let result = self.fetch_keys_now(cache).await;
        cache.failed = result.as_ref().err().map(|e| match e {
            OidcError::Provider { reason, .. } => reason.clone(),
            other => other.to_string(),
        });
        result
    }

    async fn fetch_keys_now(&self, cache: &mut Cache) -> Result<(), OidcError> {
        let issuer = &self.settings.issuer;
        let provider = |reason: String| OidcError::Provider {
            issuer: issuer.clone(),
            reason,
        };
        let jwks_uri = match &cache.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc = self.fetcher.get_json(&url).await.map_err(provider)?;
                let uri = discovered_jwks_uri(&doc, issuer).map_err(provider)?;
                cache.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc = self.fetcher.get_json(&jwks_uri).await.map_err(provider)?;
        cache.keys = keys::parse_jwks(&doc).map_err(|e| provider(format!("{jwks_uri}: {e}")))?;
        tracing::info!(issuer = %issuer, keys = cache.keys.len(), "fetched the OpenID provider's keys");
        Ok(())
    }
}

/// The `jwks_uri` of a discovery document, which must name `issuer` exactly (OpenID
/// Connect Discovery 1.0, 4.3).
fn discovered_jwks_uri(doc: &Value, issuer: &str) -> Result<String, String> {
    let named = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if named != issuer {
        return Err(format!(
            "its discovery document names the issuer {named:?}, not {issuer:?}: set oidc.issuer to exactly the provider's issuer"
        ));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("its discovery document has no jwks_uri")?;
    breakglass_proto::oidc::check_provider_url(uri).map_err(|e| format!("jwks_uri: {e}"))?;
    Ok(uri.to_owned())
}

/// The token's claims, if `key` verifies its signature with the header's algorithm.
fn verify_signature(
    token: &str,
    header: &keys::TokenHeader,
    key: &keys::ProviderKey,
) -> Result<Map<String, Value>, OidcError> {
    // Only the signature here; the claims are checked by `claims::check` with the
    // daemon's clock as a parameter.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
            | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
            | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => OidcError::BadSignature {
                kid: header.kid_shown(),
            },
            _ => OidcError::Malformed(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_configured_issuer_exactly() {
        let doc = serde_json::json!({"issuer": "https://idp.example.com/", "jwks_uri": "https://idp.example.com/jwks"});
        let e = discovered_jwks_uri(&doc, "https://idp.example.com").unwrap_err();
        assert!(e.contains("set oidc.issuer"), "{e}");
        let doc = serde_json::json!({"issuer": "https://idp.example.com", "jwks_uri": "http://idp.example.com/jwks"});
        let e = discovered_jwks_uri(&doc, "https://idp.example.com").unwrap_err();
        assert!(e.contains("plain http"), "{e}");
        let doc = serde_json::json!({"issuer": "https://idp.example.com", "jwks_uri": "https://idp.example.com/jwks"});
        assert_eq!(
            discovered_jwks_uri(&doc, "https://idp.example.com").unwrap(),
            "https://idp.example.com/jwks"
        );
    }
}
