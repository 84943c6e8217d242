//! OpenID Connect facts both sides need: where a provider may be reached. The daemon
//! fetches the provider's keys from there (`breakglass-ca`'s `oidc`), the CLI its
//! endpoints (`breakglass login`).
#![forbid(unsafe_code)]

/// A provider URL (issuer, endpoint, JWKS): `https://HOST...`, or plain `http://` only to a
/// loopback address (`127.0.0.0/8`, `[::1]`, `localhost`: a provider on the same machine,
/// as in tests), since the keys that vouch for every login come from there.
pub fn check_provider_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL: it must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(inner) = host_port.strip_prefix('[') {
        inner.split_once(']').map_or("", |(h, _)| h)
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{url:?} is plain http: an OpenID provider is reached over https (plain http only on a loopback address)"
        )),
        _ => Err(format!("{url:?} must start with https://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_https_or_loopback_http() {
        for ok in [
            "https://idp.example.com",
            "https://idp.example.com:8443/realms/corp",
            "http://127.0.0.1:8080",
            "http://127.1.2.3/x",
            "http://[::1]:8080/jwks",
            "http://localhost:9000",
        ] {
            check_provider_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("http://idp.example.com", "plain http"),
            ("http://127.0.0.1.evil.example/", "plain http"),
            ("http://127.0.0.1@evil.example/", "plain http"),
            ("http://[::2]/", "plain http"),
            ("ftp://idp.example.com", "https://"),
            ("idp.example.com", "not a URL"),
            ("https:///path", "no host"),
        ] {
            let e = check_provider_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
