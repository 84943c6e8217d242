//! The provider's signing keys (its JWKS) and the token header that picks one.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use super::error::OidcError;

/// Algorithms accepted for ID tokens: public-key signatures only.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What the token's header says: how it is signed and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// An accepted public-key algorithm.
    pub alg: Algorithm,
    /// The key id, if the token names one.
    pub kid: Option<String>,
}

impl TokenHeader {
    /// The key id as messages show it.
    pub fn kid_shown(&self) -> String {
        self.kid.clone().unwrap_or_else(|| "(none)".to_owned())
    }
}

/// Reads the header of a compact JWS and refuses what may never verify: `alg: none`,
/// HMAC, unknown algorithms. Read by hand rather than by `jsonwebtoken::decode_header`
/// so that `none` and `HS256` get their own reasons.
pub fn read_header(token: &str) -> Result<TokenHeader, OidcError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed(
            "not three base64url parts separated by '.'".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| OidcError::Malformed(format!("header is not base64url: {e}")))?;
    let header: Value = serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::Malformed(format!("header is not JSON: {e}")))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| OidcError::Malformed("header has no alg".into()))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(OidcError::Unsigned);
    }
    if alg.starts_with("HS") {
        return Err(OidcError::SymmetricAlgorithm(alg.to_owned()));
    }
    let alg = alg
        .parse::<Algorithm>()
        .ok()
        .filter(|a| ACCEPTED.contains(a))
        .ok_or_else(|| OidcError::UnsupportedAlgorithm(alg.to_owned()))?;
    if header.get("crit").is_some() {
        return Err(OidcError::Malformed(
            "header has critical extensions (crit), which this daemon does not understand".into(),
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(OidcError::Malformed("header kid is not a string".into())),
    };
    Ok(TokenHeader { alg, kid })
}

/// One signing key the provider publishes.
#[derive(Clone)]
pub struct ProviderKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl ProviderKey {
    /// The key to verify with.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The signature keys of a JWKS document. Keys for encryption, symmetric keys and keys
/// this daemon cannot use are left out (a provider may publish more kinds than we read).
pub fn parse_jwks(doc: &Value) -> Result<Vec<ProviderKey>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no \"keys\" list")?;
    let mut out = Vec::new();
    for k in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        out.push(ProviderKey {
            kid: jwk.common.key_id.clone(),
            alg,
            family,
            key,
        });
    }
    if out.is_empty() {
        return Err("the JWKS has no signature key this daemon can use (RSA, EC, Ed25519)".into());
    }
    Ok(out)
}

/// The key that verifies a token with `header`: the one with its key id (and a fitting
/// algorithm), or without a key id the only key that fits the algorithm.
pub fn find<'k>(keys: &'k [ProviderKey], header: &TokenHeader) -> Option<&'k ProviderKey> {
    let fits =
        |k: &&ProviderKey| k.family == header.alg.family() && k.alg.is_none_or(|a| a == header.alg);
    match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid.as_str())),
        None => {
            let mut fitting = keys.iter().filter(fits);
            let only = fitting.next();
            fitting.next().is_none().then_some(only).flatten()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn with_header(h: &str) -> String {
        format!("{}.{}.sig", b64(h), b64("{}"))
    }

    #[test]
    fn unsigned_hmac_and_unknown_algorithms_are_refused_by_name() {
        assert_eq!(
            read_header(&with_header(r#"{"alg":"none"}"#)),
            Err(OidcError::Unsigned)
        );
        assert_eq!(
            read_header(&with_header(r#"{"alg":"HS256","kid":"k"}"#)),
            Err(OidcError::SymmetricAlgorithm("HS256".into()))
        );
        assert!(matches!(
            read_header(&with_header(r#"{"alg":"RS1"}"#)),
            Err(OidcError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(read_header("a.b"), Err(OidcError::Malformed(_))));
        let h = read_header(&with_header(r#"{"alg":"ES256","kid":"k1"}"#)).unwrap();
        assert_eq!(h.alg, Algorithm::ES256);
        assert_eq!(h.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn keys_are_found_by_id_and_family_and_symmetric_keys_are_never_used() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "s", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "use": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "e2", "crv": "P-256", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]});
        let keys = parse_jwks(&doc).unwrap();
        assert_eq!(keys.len(), 1);
        let es = |kid: Option<&str>| TokenHeader {
            alg: Algorithm::ES256,
            kid: kid.map(str::to_owned),
        };
        assert!(find(&keys, &es(Some("e1"))).is_some());
        assert!(find(&keys, &es(None)).is_some(), "the only EC key");
        assert!(find(&keys, &es(Some("e2"))).is_none(), "an encryption key");
        assert!(find(&keys, &es(Some("s"))).is_none());
        let rs = TokenHeader {
            alg: Algorithm::RS256,
            kid: Some("e1".into()),
        };
        assert!(find(&keys, &rs).is_none(), "an EC key never checks RS256");
        assert!(
            parse_jwks(&serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).is_err()
        );
    }
}
