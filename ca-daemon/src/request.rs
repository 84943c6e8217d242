//! Turns a wire request into a validated [`AccessRequest`]: every field is
//! checked here, once, with a message that says what to fix. Policy and
//! signing only ever see validated values.

use std::collections::BTreeSet;
use std::time::Duration;

use breakglass_proto::names;
use breakglass_proto::profile::PERMIT_EXTENSIONS;
use breakglass_proto::text;
use breakglass_proto::v1::RequestCertificateRequest;
use ipnet::IpNet;
use ssh_key::PublicKey;
use ssh_key::public::KeyData;

use crate::error::Error;
use crate::fmt_duration;

/// Smallest RSA modulus accepted for user keys.
pub const MIN_RSA_BITS: usize = 3072;
const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;
const MAX_PRINCIPALS: usize = 16;
const MAX_HOSTS: usize = 64;
const MAX_SOURCE_ADDRESSES: usize = 32;
const MAX_REASON_BYTES: usize = 1024;
const MAX_COMMAND_BYTES: usize = 4096;

/// A request whose every field has been validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    /// Unix accounts, at least one, no duplicates.
    pub principals: Vec<String>,
    /// Host names or patterns, at least one.
    pub hosts: Vec<String>,
    /// Positive and at most the CA's hard limit.
    pub ttl: Duration,
    /// Why (may be empty here; the tier decides whether that is enough).
    pub reason: String,
    /// Forced command; `None` = interactive.
    pub force_command: Option<String>,
    /// Normalised CIDR blocks.
    pub source_addresses: Vec<IpNet>,
    /// Explicitly requested extensions; `None` = policy default.
    pub extensions: Option<Vec<String>>,
    /// A break-glass drill: decided by drill tiers' rules only.
    pub drill: bool,
}

/// Validates a wire request against the CA's hard TTL limit.
pub fn validate(
    wire: &RequestCertificateRequest,
    max_ttl: Duration,
) -> Result<(AccessRequest, PublicKey), Error> {
    let key = parse_user_key(&wire.public_key)?;

    if wire.principals.is_empty() {
        return Err(Error::invalid_field(
            "principals",
            "give at least one Unix account (--as USER)",
        ));
    }
    if wire.principals.len() > MAX_PRINCIPALS {
        return Err(Error::invalid_field(
            "principals",
            format!(
                "{} given, at most {MAX_PRINCIPALS} are allowed",
                wire.principals.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for p in &wire.principals {
        names::check_principal(p).map_err(|e| Error::invalid_field("principals", e))?;
        if !seen.insert(p) {
            return Err(Error::invalid_field(
                "principals",
                format!("{p} is listed twice"),
            ));
        }
    }

    if wire.hosts.is_empty() {
        return Err(Error::invalid_field(
            "hosts",
            "give at least one host (--host NAME)",
        ));
    }
    if wire.hosts.len() > MAX_HOSTS {
        return Err(Error::invalid_field(
            "hosts",
            format!(
                "{} given, at most {MAX_HOSTS} are allowed",
                wire.hosts.len()
            ),
        ));
    }
    for h in &wire.hosts {
        names::check_host_pattern(h).map_err(|e| Error::invalid_field("hosts", e))?;
    }

    if wire.ttl_seconds <= 0 {
        return Err(Error::invalid_field(
            "ttl",
            format!(
                "must be positive, got {} seconds (for example --ttl 15m)",
                wire.ttl_seconds
            ),
        ));
    }
    let ttl = Duration::from_secs(wire.ttl_seconds as u64);
    if ttl > max_ttl {
        return Err(Error::invalid_field(
            "ttl",
            format!(
                "{} exceeds this CA's hard limit of {}",
                fmt_duration(ttl),
                fmt_duration(max_ttl)
            ),
        ));
    }

    // Whether a reason is required, and how long, is the risk tier's call
    // (see `policy::Tier::check_reason`); its form is checked here.
    let reason = wire.reason.trim();
    if reason.len() > MAX_REASON_BYTES {
        return Err(Error::invalid_field(
            "reason",
            format!(
                "{} bytes is too long; keep it under {MAX_REASON_BYTES} and link a ticket",
                reason.len()
            ),
        ));
    }
    text::check_free_text(reason, MAX_REASON_BYTES)
        .map_err(|e| Error::invalid_field("reason", e))?;

    let force_command = if wire.force_command.is_empty() {
        None
    } else {
        check_command(&wire.force_command).map_err(|e| Error::invalid_field("force_command", e))?;
        Some(wire.force_command.clone())
    };

    if wire.source_addresses.len() > MAX_SOURCE_ADDRESSES {
        return Err(Error::invalid_field(
            "source_addresses",
            format!("at most {MAX_SOURCE_ADDRESSES} are allowed"),
        ));
    }
    let source_addresses = wire
        .source_addresses
        .iter()
        .map(|s| parse_cidr(s).map_err(|e| Error::invalid_field("source_addresses", e)))
        .collect::<Result<Vec<_>, _>>()?;

    let extensions = if wire.extensions.is_empty() {
        None
    } else {
        let mut seen = BTreeSet::new();
        for x in &wire.extensions {
            if !PERMIT_EXTENSIONS.contains(&x.as_str()) {
                return Err(Error::invalid_field(
                    "extensions",
                    format!("{x:?} is not one of {}", PERMIT_EXTENSIONS.join(", ")),
                ));
            }
            if !seen.insert(x) {
                return Err(Error::invalid_field(
                    "extensions",
                    format!("{x} is listed twice"),
                ));
            }
        }
        Some(wire.extensions.clone())
    };

    Ok((
        AccessRequest {
            principals: wire.principals.clone(),
            hosts: wire.hosts.clone(),
            ttl,
            reason: reason.to_owned(),
            force_command,
            source_addresses,
            extensions,
            drill: wire.drill,
        },
        key,
    ))
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

/// A forced command: non-empty, bounded free text ([`text::check_free_text`]: no NUL,
/// newline, other control character, bidi control or line separator).
pub fn check_command(c: &str) -> Result<(), String> {
    if c.trim().is_empty() {
        return Err("is empty".into());
    }
    if c.len() > MAX_COMMAND_BYTES {
        return Err(format!("is {} bytes; at most {MAX_COMMAND_BYTES}", c.len()));
    }
    text::check_free_text(c, MAX_COMMAND_BYTES)
}

/// Parses the requester's OpenSSH public key and checks its type and strength.
pub fn parse_user_key(line: &str) -> Result<PublicKey, Error> {
    let bad = |m: String| Error::invalid_field("public_key", m);
    let line = line.trim();
    if line.is_empty() {
        return Err(bad(
            "is empty; send the contents of your ~/.ssh/id_ed25519.pub".into(),
        ));
    }
    if line.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(bad(format!(
            "is {} bytes; that is not a public key",
            line.len()
        )));
    }
    // The comment is free text that ends up in the audit log.
    text::check_free_text(line, MAX_PUBLIC_KEY_BYTES).map_err(bad)?;
    let key = PublicKey::from_openssh(line).map_err(|e| {
        bad(format!(
            "not an OpenSSH public key line (\"ssh-ed25519 AAAA... comment\"): {e}"
        ))
    })?;
    match key.key_data() {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(key),
        KeyData::Rsa(rsa) => {
            let bits = rsa
                .n
                .as_positive_bytes()
                .map(|b| {
                    let lead = b.first().map_or(8, |x| x.leading_zeros() as usize);
                    b.len() * 8 - lead
                })
                .unwrap_or(0);
            if bits < MIN_RSA_BITS {
                Err(bad(format!(
                    "RSA key of {bits} bits is too weak; at least {MIN_RSA_BITS} bits are required (or use ssh-keygen -t ed25519)"
                )))
            } else {
                Ok(key)
            }
        }
        KeyData::Dsa(_) => Err(bad(
            "DSA keys are not accepted (OpenSSH disabled them); use ssh-keygen -t ed25519".into(),
        )),
        other => Err(bad(format!(
            "key type {} is not accepted; use ed25519, ecdsa, rsa (3072+ bits) or a FIDO sk- key",
            other.algorithm()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::public::{Ed25519PublicKey, SkEd25519};
    use ssh_key::rand_core::OsRng;
    use ssh_key::{Algorithm, PrivateKey};

    fn line(data: KeyData) -> String {
        PublicKey::new(data, "test").to_openssh().unwrap()
    }

    #[test]
    fn fido_and_modern_keys_are_accepted() {
        let ed = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let Some(pk) = ed.public_key().key_data().ed25519().copied() else {
            panic!("ed25519")
        };
        let sk = KeyData::SkEd25519(SkEd25519::new(Ed25519PublicKey(pk.0), "ssh:"));
        let parsed = parse_user_key(&line(sk)).expect("sk-ssh-ed25519 accepted");
        assert_eq!(parsed.algorithm().as_str(), "sk-ssh-ed25519@openssh.com");
        parse_user_key(&line(KeyData::Ed25519(pk))).expect("ed25519 accepted");
    }

    #[test]
    fn garbage_is_refused_with_the_field_name() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 AAAA",
            "not a key at all",
            "ssh-rsa !!!",
        ] {
            let e = parse_user_key(bad).unwrap_err().to_string();
            assert!(e.starts_with("public_key: "), "{e}");
        }
    }
}
