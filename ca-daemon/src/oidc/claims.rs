//! The claims of an ID token whose signature is verified: issuer, audience, validity,
//! nonce (OpenID Connect Core 1.0, 3.1.3.7), then who it is and which policy groups and
//! login lifetime that gives. Pure: time is a parameter.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::OidcError;
use super::login::LoginIdentity;
use crate::config::oidc::{ANY_DOMAIN, OidcSettings};

/// Checks the claims of a verified token for a login that sent `nonce`, at `now` (Unix
/// seconds), and maps them to the identity.
pub fn check(
    claims: &Map<String, Value>,
    settings: &OidcSettings,
    nonce: &str,
    now: u64,
) -> Result<LoginIdentity, OidcError> {
    let string = |name: &'static str| -> Result<&str, OidcError> {
        match claims.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(OidcError::BadClaim {
                claim: name.to_owned(),
                reason: "is not a string".into(),
            }),
            None => Err(OidcError::MissingClaim(name.to_owned())),
        }
    };
    let time = |name: &'static str| -> Result<Option<u64>, OidcError> {
        match claims.get(name) {
            None => Ok(None),
            // Seconds since the epoch; a fraction is allowed by RFC 7519 and dropped.
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| OidcError::BadClaim {
                    claim: name.to_owned(),
                    reason: format!("{n} is not a time in seconds since 1970"),
                }),
            Some(_) => Err(OidcError::BadClaim {
                claim: name.to_owned(),
                reason: "is not a number".into(),
            }),
        }
    };

    let iss = string("iss")?;
    if iss != settings.issuer {
        return Err(OidcError::WrongIssuer {
            got: iss.to_owned(),
            want: settings.issuer.clone(),
        });
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            return Err(OidcError::BadClaim {
                claim: "aud".into(),
                reason: "is neither a string nor a list of strings".into(),
            });
        }
        None => return Err(OidcError::MissingClaim("aud".into())),
    };
    if !audiences.contains(&settings.client_id.as_str()) {
        return Err(OidcError::WrongAudience {
            got: audiences.iter().map(|s| (*s).to_owned()).collect(),
            want: settings.client_id.clone(),
        });
    }
    // Core 3.1.3.7 (4, 5): with other audiences, the authorized party must be us.
    match claims.get("azp") {
        Some(Value::String(azp)) if azp != &settings.client_id => {
            return Err(OidcError::WrongAuthorizedParty {
                got: azp.clone(),
                want: settings.client_id.clone(),
            });
        }
        None if audiences.len() > 1 => {
            return Err(OidcError::WrongAuthorizedParty {
                got: String::new(),
                want: settings.client_id.clone(),
            });
        }
        _ => {}
    }
    let leeway = settings.leeway.as_secs();
    let exp = time("exp")?.ok_or_else(|| OidcError::MissingClaim("exp".into()))?;
    if now > exp.saturating_add(leeway) {
        return Err(OidcError::Expired {
            exp,
            now,
            leeway: settings.leeway,
        });
    }
    let iat = time("iat")?.ok_or_else(|| OidcError::MissingClaim("iat".into()))?;
    if iat > now.saturating_add(leeway) {
        return Err(OidcError::NotYetValid {
            claim: "iat",
            at: iat,
            now,
        });
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(OidcError::NotYetValid {
            claim: "nbf",
            at: nbf,
            now,
        });
    }
    if nonce.is_empty() {
        return Err(OidcError::NoNonceExpected);
    }
    match claims.get("nonce") {
        None => return Err(OidcError::MissingClaim("nonce".into())),
        Some(Value::String(n)) if n == nonce => {}
        Some(_) => return Err(OidcError::WrongNonce),
    }
    let subject = string("sub")?.to_owned();

    let id = identity(claims, settings)?;
    let groups = policy_groups(claims, settings)?;
    let lifetime = lifetime(&groups, settings);
    Ok(LoginIdentity {
        id,
        groups: groups.into_iter().collect(),
        lifetime,
        subject,
    })
}

/// The identity the token names (`identity_claim`), if it may log in.
fn identity(claims: &Map<String, Value>, settings: &OidcSettings) -> Result<String, OidcError> {
    let claim = settings.identity_claim.as_str();
    let bad = |reason: String| OidcError::BadClaim {
        claim: claim.to_owned(),
        reason,
    };
    let id = match claims.get(claim) {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("is not a string".into())),
        None => return Err(OidcError::MissingClaim(claim.to_owned())),
    };
    // Domain names are case-insensitive: the same person is one identity however the
    // provider spells the domain (the local part is kept as it is).
    let id = match id.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => id,
    };
    breakglass_proto::text::check_identity(&id).map_err(|e| bad(format!("{id:?} {e}")))?;
    // A login never takes a name of another kind: host://NAME, unix:USER, URIs.
    if id.contains(':') {
        return Err(bad(format!(
            "{id:?} contains ':': a login identity is never a URI (host://) or unix: name"
        )));
    }
    if claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
        return Err(OidcError::EmailNotVerified(id));
    }
    if settings.allowed_domains.iter().any(|d| d == ANY_DOMAIN) {
        return Ok(id);
    }
    let domain = id
        .rsplit_once('@')
        .map(|(local, d)| (!local.is_empty()).then(|| d.to_ascii_lowercase()))
        .unwrap_or_default();
    match domain {
        Some(d) if settings.allowed_domains.contains(&d) => Ok(id),
        _ => Err(OidcError::DomainNotAllowed {
            identity: id,
            allowed: settings.allowed_domains.clone(),
        }),
    }
}

/// The policy groups the token's provider groups map to (`group_map`).
fn policy_groups(
    claims: &Map<String, Value>,
    settings: &OidcSettings,
) -> Result<BTreeSet<String>, OidcError> {
    let claim = settings.groups_claim.as_str();
    let provider_groups: Vec<&str> = match claims.get(claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| OidcError::BadClaim {
                    claim: claim.to_owned(),
                    reason: format!("has {v}, which is not a group name (a string)"),
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(OidcError::BadClaim {
                claim: claim.to_owned(),
                reason: "is neither a list of strings nor a string".into(),
            });
        }
    };
    Ok(provider_groups
        .iter()
        .filter_map(|g| settings.group_map.get(*g))
        .flatten()
        .cloned()
        .collect())
}

/// The login's lifetime: the shortest `group_login_ttl` of its groups, else `login_ttl`.
pub fn lifetime(groups: &BTreeSet<String>, settings: &OidcSettings) -> Duration {
    groups
        .iter()
        .filter_map(|g| settings.group_login_ttl.get(g))
        .min()
        .copied()
        .unwrap_or(settings.login_ttl)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn settings() -> OidcSettings {
        OidcSettings {
            issuer: "https://idp.example.com".into(),
            client_id: "breakglass".into(),
            identity_claim: "email".into(),
            groups_claim: "groups".into(),
            group_map: BTreeMap::from([
                ("idp-sre".into(), vec!["sre".into()]),
                ("idp-dba".into(), vec!["dba".into(), "readers".into()]),
            ]),
            allowed_domains: vec!["example.com".into()],
            login_ttl: Duration::from_secs(12 * 3600),
            group_login_ttl: BTreeMap::from([("dba".into(), Duration::from_secs(3600))]),
            ca_bundle: "/dev/null".into(),
            leeway: Duration::from_secs(60),
            jwks_min_refresh: Duration::from_secs(60),
        }
    }

    const NOW: u64 = 1_800_000_000;

    fn claims(extra: Value) -> Map<String, Value> {
        let mut c = json!({
            "iss": "https://idp.example.com", "aud": "breakglass", "sub": "u1",
            "exp": NOW + 300, "iat": NOW - 10, "nonce": "n1",
            "email": "alice@Example.COM", "email_verified": true, "groups": ["idp-sre"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.as_object().unwrap().clone()
    }

    fn check_with(extra: Value) -> Result<LoginIdentity, OidcError> {
        check(&claims(extra), &settings(), "n1", NOW)
    }

    #[test]
    fn a_good_token_maps_to_identity_groups_and_lifetime() {
        let l = check_with(json!({})).unwrap();
        assert_eq!(l.id, "alice@example.com", "the domain in lower case");
        assert_eq!(l.subject, "u1");
        assert_eq!(l.groups, vec!["sre".to_owned()]);
        assert_eq!(l.lifetime, Duration::from_secs(12 * 3600));
        let l = check_with(json!({"groups": ["idp-sre", "idp-dba", "idp-other"]})).unwrap();
        assert_eq!(l.groups, vec!["dba", "readers", "sre"]);
        assert_eq!(
            l.lifetime,
            Duration::from_secs(3600),
            "the shortest applies"
        );
        let l = check_with(json!({"groups": "idp-dba"})).unwrap();
        assert_eq!(l.groups, vec!["dba", "readers"]);
        assert!(
            check_with(json!({"groups": null}))
                .unwrap()
                .groups
                .is_empty()
        );
    }

    #[test]
    fn each_claim_check_refuses_with_its_reason() {
        let e = check_with(json!({"iss": "https://evil.example"})).unwrap_err();
        assert!(matches!(e, OidcError::WrongIssuer { .. }), "{e}");
        let e = check_with(json!({"aud": "other"})).unwrap_err();
        assert!(matches!(e, OidcError::WrongAudience { .. }), "{e}");
        let e = check_with(json!({"aud": ["breakglass", "other"]})).unwrap_err();
        assert!(matches!(e, OidcError::WrongAuthorizedParty { .. }), "{e}");
        check_with(json!({"aud": ["breakglass", "other"], "azp": "breakglass"})).unwrap();
        let e = check_with(json!({"exp": NOW - 61})).unwrap_err();
        assert!(matches!(e, OidcError::Expired { .. }), "{e}");
        check_with(json!({"exp": NOW - 59})).unwrap();
        let e = check_with(json!({"iat": NOW + 61})).unwrap_err();
        assert!(
            matches!(e, OidcError::NotYetValid { claim: "iat", .. }),
            "{e}"
        );
        let e = check_with(json!({"nonce": "n2"})).unwrap_err();
        assert!(matches!(e, OidcError::WrongNonce), "{e}");
        let e = check_with(json!({"nonce": null})).unwrap_err();
        assert!(
            matches!(e, OidcError::MissingClaim(ref c) if c == "nonce"),
            "{e}"
        );
        let e = check(&claims(json!({})), &settings(), "", NOW).unwrap_err();
        assert!(matches!(e, OidcError::NoNonceExpected), "{e}");
        let e = check_with(json!({"email_verified": false})).unwrap_err();
        assert!(matches!(e, OidcError::EmailNotVerified(_)), "{e}");
        let e = check_with(json!({"email": "mallory@example.org"})).unwrap_err();
        assert!(matches!(e, OidcError::DomainNotAllowed { .. }), "{e}");
        let e = check_with(json!({"email": "host://db-7"})).unwrap_err();
        assert!(e.to_string().contains("never a URI"), "{e}");
        let e = check_with(json!({"groups": [1]})).unwrap_err();
        assert!(matches!(e, OidcError::BadClaim { .. }), "{e}");
        let mut any = settings();
        any.allowed_domains = vec![ANY_DOMAIN.into()];
        check(
            &claims(json!({"email": "bob@anywhere.example"})),
            &any,
            "n1",
            NOW,
        )
        .unwrap();
    }
}
