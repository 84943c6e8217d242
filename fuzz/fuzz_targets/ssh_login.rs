//! The break-glass login's untrusted inputs: the armored SSHSIG signature a `Login` call
//! carries (`LoginRequest.ssh_signature` → `breakglass_ca::ssh_signature::verify_login`,
//! which the daemon runs before looking the key up) and an enrolled key's OpenSSH line
//! (`[[identities]] ssh_keys`, `identity add-key` → `ssh_login::parse_key`).
//!
//! Properties: a signature that verifies for one daemon and nonce verifies for no other
//! nonce and no other daemon; an accepted key line prints back (without its comment) to a
//! line that parses to the same key; what the fuzz key signs over the challenge for the
//! input as nonce verifies in the login namespace and not in another.
#![no_main]

use breakglass_ca::ssh_signature::verify_login;
use breakglass_fuzz::ca_key;
use breakglass_proto::ssh_login::{SSH_LOGIN_NAMESPACE, challenge, key_text, parse_key};
use libfuzzer_sys::fuzz_target;
use ssh_key::{HashAlg, LineEnding, SshSig};

/// The daemon and nonce of the committed seed signatures (`fuzz/seeds/ssh_login/`).
const DAEMON: &str = "SHA256:fuzz-daemon";
const NONCE: &str = "fuzz-nonce";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = verify_login(text, DAEMON, NONCE) {
        assert!(verify_login(text, DAEMON, "another-nonce").is_err());
        assert!(verify_login(text, "SHA256:another-daemon", NONCE).is_err());
        assert!(key_text(&key).is_ok());
    }
    if let Ok(key) = parse_key(text) {
        let line = key_text(&key).expect("an accepted key prints");
        let again = parse_key(&line).expect("a printed key parses");
        assert_eq!(again.key_data(), key.key_data());
        assert_eq!(key_text(&again).as_deref(), Ok(line.as_str()));
    }
    if text.len() <= 256 {
        let sig = SshSig::sign(
            ca_key(),
            SSH_LOGIN_NAMESPACE,
            HashAlg::Sha512,
            challenge(DAEMON, text).as_bytes(),
        )
        .expect("the fuzz key signs")
        .to_pem(LineEnding::LF)
        .expect("a signature prints");
        let key = verify_login(&sig, DAEMON, text).expect("what the fuzz key signs verifies");
        assert_eq!(key.key_data(), ca_key().public_key().key_data());
        let other = SshSig::sign(
            ca_key(),
            "file",
            HashAlg::Sha512,
            challenge(DAEMON, text).as_bytes(),
        )
        .expect("the fuzz key signs")
        .to_pem(LineEnding::LF)
        .expect("a signature prints");
        assert!(verify_login(&other, DAEMON, text).is_err());
    }
});
