//! What the CLI and the daemon must agree on for the break-glass login with an SSH key
//! (`breakglass login --ssh-key`): the SSHSIG namespace, the exact challenge text that is
//! signed, the key types an identity may enroll, and how the client certificate of such a
//! login is marked.
//!
//! The challenge names its purpose, the daemon (the SHA-256 fingerprint of the TLS CA the
//! CLI verified the daemon against, so a daemon cannot pass on another daemon's nonce to be
//! signed for it) and the daemon's one-time nonce. The namespace is fixed: a signature made
//! with the same key for anything else (`git`, `file`, another tool) does not verify here.
#![forbid(unsafe_code)]

use ssh_key::{Algorithm, EcdsaCurve, PublicKey};

/// The SSHSIG namespace of a login signature (`ssh-keygen -Y sign -n ...`).
pub const SSH_LOGIN_NAMESPACE: &str = "breakglass-login@breakglass.dev";
/// The login method recorded for it (`client_certificate_issued` `method`).
pub const SSH_KEY_METHOD: &str = "ssh-key";
/// `BeginLogin`'s method for it (an empty method is the OpenID Connect login).
pub const BEGIN_SSH_KEY: &str = "ssh-key";
/// The organizational unit (OU) of the subject of a client certificate that a login
/// with an SSH key got. The daemon's client CA sets it and a CSR cannot: the daemon
/// reads it back at every call to hold the login to the tiers that take it.
pub const SSH_KEY_LOGIN_UNIT: &str = "breakglass login: ssh-key";
/// Shortest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The text an SSH-key login signs, for the daemon whose TLS CA has fingerprint
/// `daemon` (`SHA256:...`) and the nonce it gave.
#[must_use]
pub fn challenge(daemon: &str, nonce: &str) -> String {
    format!(
        "breakglass login with an SSH key\nnamespace: {SSH_LOGIN_NAMESPACE}\ndaemon: {daemon}\nnonce: {nonce}\n"
    )
}

/// Checks that `key` may be enrolled for logins: Ed25519, ECDSA, RSA of at least
/// [`MIN_RSA_BITS`], or a FIDO2 security key (`sk-ssh-ed25519@openssh.com`,
/// `sk-ecdsa-sha2-nistp256@openssh.com`). DSA and short RSA keys are refused by name.
pub fn check_key(key: &PublicKey) -> Result<(), String> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Ok(()),
        Algorithm::Ecdsa { curve } => match curve {
            EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521 => Ok(()),
        },
        Algorithm::Rsa { .. } => {
            let bits = key
                .key_data()
                .rsa()
                .and_then(|k| k.n.as_positive_bytes())
                .map_or(0, |n| {
                    n.len() * 8 - n.first().map_or(0, |b| b.leading_zeros() as usize)
                });
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "the RSA key has {bits} bits, fewer than {MIN_RSA_BITS}: make a new key, \
                     preferably `ssh-keygen -t ed25519-sk` (a FIDO2 key) or `-t ed25519`"
                ))
            } else {
                Ok(())
            }
        }
        Algorithm::Dsa => Err(
            "DSA keys (ssh-dss) are refused: they are weak and OpenSSH no longer supports them; \
             make a new key, preferably `ssh-keygen -t ed25519-sk` (a FIDO2 key) or `-t ed25519`"
                .into(),
        ),
        other => Err(format!(
            "{} keys are not accepted: use ed25519, ecdsa, rsa (at least {MIN_RSA_BITS} bits), \
             sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com",
            other.as_str()
        )),
    }
}

/// Parses one OpenSSH public key line (`<type> <base64> [comment]`) and checks it with
/// [`check_key`]; the comment is dropped.
pub fn parse_key(line: &str) -> Result<PublicKey, String> {
    let mut key = PublicKey::from_openssh(line.trim()).map_err(|e| {
        format!(
            "{:?} is not an OpenSSH public key line (\"ssh-ed25519 AAAA...\"): {e}",
            abbreviated(line)
        )
    })?;
    check_key(&key)?;
    key.set_comment("");
    Ok(key)
}

/// The key as it is stored and compared: `<type> <base64>`, no comment.
pub fn key_text(key: &PublicKey) -> Result<String, String> {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh()
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("encoding the public key: {e}"))
}

fn abbreviated(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_owned(),
    }
}

/// Public keys for tests: a FIDO2 Ed25519 key (`sk-ssh-ed25519@openssh.com`, made by
/// wrapping an Ed25519 key as `ssh-keygen -t ed25519-sk` would write it: no hardware
/// here), a DSA key and a 1024-bit RSA key (both made by `ssh-keygen`).
pub mod fixtures {
    /// `sk-ssh-ed25519@openssh.com` (fingerprint `SHA256:xd/t7I1JR38SlVvyBtnItPHeF7+JKT8ZzjUEMVJ+yVE`).
    pub const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIMf6OzWeqovcGYSzo1+P4WHy4eIXxcBpp6S6mlWDvsoxAAAABHNzaDo= alice@yubikey";
    /// `ssh-dss`, 1024 bits.
    pub const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAJlpMqN6GjIBDeAuLxIN8waLrSreopWiWbM/7ufw/WEdw4qawg+g0wp7/aVVlPYptAzu0SxxZ722czD450gpt2X7W2vZPdQk7q8luW8t5/csJJJ9NOdCAEkb0e0w4RrKFTl1HQCmM+nvjkqe9kTzrjhBtZXePk/fvm+lBzqbVo0hAAAAFQCUkJH599jP6l2LvaHbi2z1evOk2wAAAIBLkH7iT/aNfveYmIPoOAXJ578I7RBCNC8fnvpkkSMtGRYpEODO+wQTFIVsg1hXedrkJML34pCe8vgMyQ45V/Xua5JE/p+vvMtH8x7/+JijNWqWcpeRMRYjIpYyrpZEXtKqhBWYcBDwT/fM3jEdftJXMVqSwb2SOONxw75yoGFrtAAAAIAim+ck6OCNWUWe/3SSR6WT1ReAGdwVDJaTh+2latB7aatkxip4jSJUrfrgy8SK8zGrH+g40erO56foNavo1Hs4FoG2rXnWJwWvf4Tw38eBzC47/Sn2P6ymHEAvntb6IjDn1G+wejCiLZ3klzdyFpS5Ar2N19Yv2ZTDck3PtIx12A== x";
    /// `ssh-rsa`, 1024 bits.
    pub const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXwA5EpsKNgpZJmPfkucanxB5hBh3NhqtlOJ6EhxnY0r3YhJa+pSO3LfuQHPFH5BseP34xK9fIaJTNqjm+XWWL2HwBl3/fgt2oRiS/Fg7h1HkVjxWCG3jnyH7hLT97ZbZHQm1zDAeoiGsVh/L32C3esUvlii+Ve3U3poTBdTa6NQ== x";
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn ed25519_and_security_keys_are_accepted_dsa_and_short_rsa_refused() {
        let sk = parse_key(SK_ED25519).expect("sk-ssh-ed25519 is accepted");
        assert_eq!(sk.algorithm(), Algorithm::SkEd25519);
        assert!(!key_text(&sk).unwrap().contains("alice"));
        let e = parse_key(DSA).unwrap_err();
        assert!(e.contains("DSA keys (ssh-dss) are refused"), "{e}");
        let e = parse_key(RSA_1024).unwrap_err();
        assert!(e.contains("1024 bits, fewer than 2048"), "{e}");
        assert!(parse_key("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn the_challenge_names_the_namespace_the_daemon_and_the_nonce() {
        let c = challenge("SHA256:abc", "n0nce");
        assert!(c.contains(SSH_LOGIN_NAMESPACE));
        assert!(c.contains("daemon: SHA256:abc\n"));
        assert!(c.ends_with("nonce: n0nce\n"));
        assert_ne!(c, challenge("SHA256:abd", "n0nce"));
    }
}
