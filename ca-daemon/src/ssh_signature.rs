//! The check of a login signature on its own, before anything is looked up: the SSHSIG
//! armor (parsed by `ssh-key`, size-capped first), the fixed namespace, an accepted key
//! type, the signature over the challenge naming this daemon and the nonce, and, for a
//! FIDO2 key, the touch. Untrusted input from the wire (`LoginRequest.ssh_signature`);
//! fuzzed by `fuzz/fuzz_targets/ssh_login.rs`.

use breakglass_proto::ssh_login::{self, SSH_LOGIN_NAMESPACE};
use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};

/// Largest armored signature accepted (an RSA-4096 SSHSIG is about 1.2 KiB).
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;
/// The user-presence flag of a FIDO2 signature (the key was touched).
const USER_PRESENT: u8 = 0x01;

/// The key that made `armored`, an SSHSIG signature in [`SSH_LOGIN_NAMESPACE`] of the
/// challenge for the daemon `daemon` (its TLS CA's fingerprint) and `nonce`; or why it
/// is not one.
pub fn verify_login(armored: &str, daemon: &str, nonce: &str) -> Result<PublicKey, String> {
    if armored.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "the signature is {} bytes, more than {MAX_SIGNATURE_BYTES}",
            armored.len()
        ));
    }
    let sig = SshSig::from_pem(armored.trim()).map_err(|e| {
        format!("the signature is not an SSHSIG signature as `ssh-keygen -Y sign` writes it ({e})")
    })?;
    if sig.namespace() != SSH_LOGIN_NAMESPACE {
        return Err(format!(
            "the signature was made for namespace {:?}, not {SSH_LOGIN_NAMESPACE:?}: a \
             signature made for anything else never logs in; use `breakglass login --ssh-key FILE`",
            sig.namespace()
        ));
    }
    let key = PublicKey::from(sig.public_key().clone());
    ssh_login::check_key(&key)?;
    let challenge = ssh_login::challenge(daemon, nonce);
    key.verify(SSH_LOGIN_NAMESPACE, challenge.as_bytes(), &sig)
        .map_err(|e| {
            format!(
                "the signature by {} does not verify over this daemon's challenge for this nonce ({e})",
                key.fingerprint(HashAlg::Sha256)
            )
        })?;
    require_user_presence(&sig)?;
    Ok(key)
}

/// A FIDO2 signature must carry the user-presence flag (the key was touched), as OpenSSH
/// requires by default.
fn require_user_presence(sig: &SshSig) -> Result<(), String> {
    match sig.algorithm() {
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => {
            let data = sig.signature().as_bytes();
            // The flags byte comes before the 4-byte counter at the end.
            let flags = data.len().checked_sub(5).and_then(|i| data.get(i));
            if flags.is_some_and(|f| f & USER_PRESENT != 0) {
                Ok(())
            } else {
                Err(
                    "the security key signed without a touch (no user presence): sign again and \
                     touch the key"
                        .into(),
                )
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{LineEnding, PrivateKey};

    fn signed(key: &PrivateKey, namespace: &str, msg: &str) -> String {
        SshSig::sign(key, namespace, HashAlg::Sha512, msg.as_bytes())
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn only_a_signature_of_this_daemons_challenge_in_the_login_namespace_verifies() {
        let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).unwrap();
        let good = signed(
            &key,
            SSH_LOGIN_NAMESPACE,
            &ssh_login::challenge("SHA256:d", "n"),
        );
        assert_eq!(
            verify_login(&good, "SHA256:d", "n").unwrap().key_data(),
            key.public_key().key_data()
        );
        assert!(
            verify_login(&good, "SHA256:d", "m")
                .unwrap_err()
                .contains("does not verify")
        );
        assert!(
            verify_login(&good, "SHA256:e", "n")
                .unwrap_err()
                .contains("does not verify")
        );
        let git = signed(&key, "git", &ssh_login::challenge("SHA256:d", "n"));
        assert!(
            verify_login(&git, "SHA256:d", "n")
                .unwrap_err()
                .contains("namespace \"git\"")
        );
        assert!(
            verify_login("hello", "SHA256:d", "n")
                .unwrap_err()
                .contains("not an SSHSIG")
        );
        let huge = "A".repeat(MAX_SIGNATURE_BYTES + 1);
        assert!(
            verify_login(&huge, "SHA256:d", "n")
                .unwrap_err()
                .contains("more than")
        );
    }
}
