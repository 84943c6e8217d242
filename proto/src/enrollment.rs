//! What a host and the daemon must agree on to enroll: the join token's form and the hash
//! the audit log keeps of it, and the fingerprint that pins the daemon's TLS CA on first
//! contact (`breakglass host enroll --ca-fingerprint`).
#![forbid(unsafe_code)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// Every join token starts with this.
pub const JOIN_TOKEN_PREFIX: &str = "bgjoin_";
/// Random bytes in a join token.
pub const JOIN_TOKEN_BYTES: usize = 32;
/// The identity namespace of hosts (`host://NAME`).
pub const HOST_IDENTITY_PREFIX: &str = "host://";

/// A join token made from `random` bytes: the prefix and the bytes in base64url.
#[must_use]
pub fn join_token(random: &[u8; JOIN_TOKEN_BYTES]) -> String {
    format!("{JOIN_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random))
}

/// The SHA-256 of a well-formed join token: what the audit log records instead of it.
pub fn join_token_hash(token: &str) -> Result<[u8; 32], String> {
    let body = token.strip_prefix(JOIN_TOKEN_PREFIX).ok_or_else(|| {
        format!("a join token starts with {JOIN_TOKEN_PREFIX:?}; copy it whole from `breakglass-ca token create`")
    })?;
    match URL_SAFE_NO_PAD.decode(body) {
        Ok(b) if b.len() == JOIN_TOKEN_BYTES => Ok(Sha256::digest(token.as_bytes()).into()),
        _ => Err(format!(
            "the join token is damaged (not {JOIN_TOKEN_PREFIX} and {JOIN_TOKEN_BYTES} bytes of base64url); copy it whole from `breakglass-ca token create`"
        )),
    }
}

/// `SHA256:<base64, no padding>` of a certificate's DER, as `ssh-keygen -l` writes key
/// fingerprints.
#[must_use]
pub fn ca_fingerprint(der: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(der)))
}

/// A fingerprint as given on a command line, in the form [`ca_fingerprint`] writes
/// (trailing `=` padding tolerated).
pub fn parse_fingerprint(given: &str) -> Result<String, String> {
    let b64 = given.trim().strip_prefix("SHA256:").ok_or_else(|| {
        format!(
            "--ca-fingerprint {given:?} must be SHA256:<base64>, as `breakglass-ca token create` prints it"
        )
    })?;
    match STANDARD_NO_PAD.decode(b64.trim_end_matches('=')) {
        Ok(b) if b.len() == 32 => Ok(format!("SHA256:{}", STANDARD_NO_PAD.encode(b))),
        _ => Err(format!(
            "--ca-fingerprint {given:?} is not SHA256: and 32 bytes of base64; copy it from `breakglass-ca token create`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_hash_only_in_their_own_form() {
        let t = join_token(&[7; JOIN_TOKEN_BYTES]);
        assert!(t.starts_with(JOIN_TOKEN_PREFIX));
        let h = join_token_hash(&t).unwrap();
        assert_eq!(h, <[u8; 32]>::from(Sha256::digest(t.as_bytes())));
        assert_ne!(
            h,
            join_token_hash(&join_token(&[8; JOIN_TOKEN_BYTES])).unwrap()
        );
        for bad in [
            "",
            "bgjoin_",
            "x",
            &t[1..],
            &format!("{t}A"),
            &t.replace('_', "-"),
        ] {
            assert!(join_token_hash(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprints_round_trip_and_refuse_other_forms() {
        let f = ca_fingerprint(b"certificate");
        assert_eq!(parse_fingerprint(&f).unwrap(), f);
        assert_eq!(parse_fingerprint(&format!(" {f}= ")).unwrap(), f);
        for bad in ["", "SHA256:", "sha1:abc", &f[7..], "SHA256:AAAA"] {
            assert!(parse_fingerprint(bad).is_err(), "{bad:?}");
        }
    }
}
