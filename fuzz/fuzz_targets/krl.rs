//! OpenSSH key revocation lists as hosts read them (`breakglass host sync-krl`, the PAM
//! module): the contract crate's parser, the module's wrapper, and revocation lookups
//! (by serial, key id, key and SHA-256 fingerprint) for probe certificates of the fuzz CA.
//!
//! Property: the CA's encoder writes back what the parser read: the re-encoded list
//! parses, revokes exactly the same probe serials and certificates, and re-encodes to
//! the same bytes (a fixed point).
#![no_main]

use std::sync::OnceLock;

use breakglass_fuzz::{REVOKED_KEY_ID, REVOKED_RANGE, REVOKED_SERIALS, ca_key, ca_public};
use breakglass_proto::krl::Krl;
use libfuzzer_sys::fuzz_target;
use ssh_key::certificate::Builder;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{Certificate, PrivateKey};

/// Certificates of the fuzz CA with serials and key ids at and around the ones the
/// seeds revoke, plus one signed by another CA.
fn probes() -> &'static [Certificate] {
    static P: OnceLock<Vec<Certificate>> = OnceLock::new();
    P.get_or_init(|| {
        let user = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
        let other_ca = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
        let serials = [
            0,
            1,
            REVOKED_SERIALS[0],
            REVOKED_SERIALS[1],
            REVOKED_RANGE.0 - 1,
            REVOKED_RANGE.0,
            REVOKED_RANGE.1,
            REVOKED_RANGE.1 + 1,
            u64::MAX,
        ];
        let mut out = Vec::new();
        for (i, serial) in serials.into_iter().enumerate() {
            for (ca, key_id) in [
                (ca_key(), format!("breakglass/g-{i:016x}/sre@example.com")),
                (ca_key(), REVOKED_KEY_ID.to_owned()),
                (&other_ca, REVOKED_KEY_ID.to_owned()),
            ] {
                let mut b = Builder::new(
                    vec![i as u8; 32],
                    user.public_key().key_data().clone(),
                    1_700_000_000,
                    2_000_000_000,
                )
                .expect("builder");
                b.serial(serial).expect("serial");
                b.key_id(key_id).expect("key id");
                b.valid_principal("postgres").expect("principal");
                out.push(b.sign(ca).expect("sign"));
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = pam_breakglass::krl::Krl::parse(data);
    let Ok(krl) = Krl::parse(data) else {
        return;
    };
    let _ = krl.to_string();
    let _ = krl.serial_count();
    let bytes = krl.to_bytes().expect("a parsed KRL encodes");
    let again = Krl::parse(&bytes).expect("the encoder's output parses");
    assert_eq!(
        again.to_bytes().expect("encodes"),
        bytes,
        "encoding is not a fixed point"
    );
    assert_eq!(
        (again.version, again.generated),
        (krl.version, krl.generated)
    );
    let ca = ca_public().key_data();
    let serials = data
        .chunks_exact(8)
        .take(32)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .chain([0, 1, u64::MAX]);
    for s in serials {
        assert_eq!(
            krl.revokes_serial(ca, s),
            again.revokes_serial(ca, s),
            "serial {s}"
        );
    }
    for cert in probes() {
        assert_eq!(
            krl.revoked(cert).is_some(),
            again.revoked(cert).is_some(),
            "serial {} key id {}",
            cert.serial(),
            cert.key_id()
        );
    }
});
