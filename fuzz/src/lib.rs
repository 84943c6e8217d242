//! What the fuzz targets share: the fuzz-only keys (`fixtures/`), the fixed clock and host
//! the PAM checks run against, and the "signed bytes never verify after a change" check.
//! The targets themselves (`fuzz_targets/`) are thin wrappers over the real parsers.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use breakglass_proto::audit::ed25519_dalek::SigningKey;
use breakglass_proto::audit::ed25519_dalek::pkcs8::DecodePrivateKey;
use breakglass_proto::audit::{NoteSigner, NoteVerifier};
use ssh_key::{Certificate, PrivateKey, PublicKey};

/// The clock of the PAM checks: 2030-01-01T00:00:00Z, inside the validity that
/// `make-seeds` gives its `ssh-keygen` certificates (2026 to 2036).
pub const NOW: u64 = 1_893_456_000;
/// The PAM user of the PAM checks (the seeds' certificates name it).
pub const USER: &str = "postgres";
/// This host's name in the PAM checks (the seeds' host scopes match it).
pub const HOST: &str = "web-1.dev.example";
/// Origin of the audit log the seeds were written to (the daemon's default).
pub const AUDIT_ORIGIN: &str = "breakglass-ca/audit/v1";
/// Serials the fixture KRL revokes (by serial, and a range).
pub const REVOKED_SERIALS: [u64; 2] = [13, 1313];
/// Serial range the fixture KRL revokes.
pub const REVOKED_RANGE: (u64, u64) = (100_000, 100_099);
/// Key id the fixture KRL revokes.
pub const REVOKED_KEY_ID: &str = "breakglass/g-00000000000000bb/revoked@example.com";

const CA_PRIVATE: &str = include_str!("../fixtures/fuzz-ca");
const CA_PUBLIC: &str = include_str!("../fixtures/fuzz-ca.pub");
const AUDIT_KEY: &str = include_str!("../fixtures/audit-key.pem");

/// The fuzz-only SSH CA (signs certificates in `cert_fields`).
pub fn ca_key() -> &'static PrivateKey {
    static K: OnceLock<PrivateKey> = OnceLock::new();
    K.get_or_init(|| PrivateKey::from_openssh(CA_PRIVATE).expect("fixtures/fuzz-ca parses"))
}

/// The fuzz-only CA's public key.
pub fn ca_public() -> &'static PublicKey {
    static K: OnceLock<PublicKey> = OnceLock::new();
    K.get_or_init(|| {
        PublicKey::from_openssh(CA_PUBLIC.trim()).expect("fixtures/fuzz-ca.pub parses")
    })
}

/// The trusted CA keys file of the PAM checks: the fuzz CA only.
pub fn trusted_cas() -> &'static pam_breakglass::verify::TrustedCas {
    static T: OnceLock<pam_breakglass::verify::TrustedCas> = OnceLock::new();
    T.get_or_init(|| {
        pam_breakglass::verify::TrustedCas::parse(CA_PUBLIC, "fixtures/fuzz-ca.pub")
            .expect("the fixture CA key is a trusted CA keys file")
    })
}

/// The KRL of the PAM checks, built with the contract crate's encoder and read back by
/// the module's reader: [`REVOKED_SERIALS`], [`REVOKED_RANGE`] and [`REVOKED_KEY_ID`] of
/// the fuzz CA.
pub fn fixture_krl() -> &'static pam_breakglass::krl::Krl {
    static K: OnceLock<pam_breakglass::krl::Krl> = OnceLock::new();
    K.get_or_init(|| {
        let ca = ca_public().key_data();
        let mut krl = breakglass_proto::krl::Krl::new(1, NOW - 3600);
        for s in REVOKED_SERIALS {
            krl.revoke_serial(ca, s).expect("serial");
        }
        krl.revoke_serial_range(ca, REVOKED_RANGE.0, REVOKED_RANGE.1)
            .expect("range");
        krl.revoke_key_id(Some(ca), REVOKED_KEY_ID).expect("key id");
        let bytes = krl.to_bytes().expect("KRL encodes");
        pam_breakglass::krl::Krl::parse(&bytes).expect("the module reads the CA's KRL")
    })
}

/// Whether the fixture KRL revokes `serial` or `key_id`.
#[must_use]
pub fn fixture_revokes(serial: u64, key_id: &str) -> bool {
    REVOKED_SERIALS.contains(&serial)
        || (REVOKED_RANGE.0..=REVOKED_RANGE.1).contains(&serial)
        || key_id == REVOKED_KEY_ID
}

/// The audit log key the seeds' logs were written with.
pub fn audit_signer() -> &'static NoteSigner {
    static S: OnceLock<NoteSigner> = OnceLock::new();
    S.get_or_init(new_audit_signer)
}

/// A new handle on the audit log key (the daemon's log takes one by value).
#[must_use]
pub fn new_audit_signer() -> NoteSigner {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        SigningKey::from_pkcs8_pem(AUDIT_KEY).expect("fixtures/audit-key.pem parses")
    });
    NoteSigner::new(AUDIT_ORIGIN, key.clone()).expect("audit origin")
}

/// The verifier of [`audit_signer`].
pub fn audit_verifier() -> &'static NoteVerifier {
    static V: OnceLock<NoteVerifier> = OnceLock::new();
    V.get_or_init(|| audit_signer().verifier())
}

/// A position in `0..len` chosen by the input (FNV-1a), so that over many runs every
/// position gets its turn without the target doing `len` checks per input.
#[must_use]
pub fn pick(data: &[u8], len: usize) -> usize {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(h % len.max(1) as u64).unwrap_or(0)
}

/// Length of the encoded Ed25519 signature at the end of a certificate blob made by the
/// fuzz CA: `string(string("ssh-ed25519") ‖ string(64 bytes))`.
const ED25519_SIGNATURE_FIELD: usize = 4 + (4 + 11) + (4 + 64);

/// The certificate login line of `SSH_AUTH_INFO_0` for `cert`.
#[must_use]
pub fn auth_info_line(cert: &Certificate) -> Option<String> {
    let line = cert.to_openssh().ok()?;
    let mut parts = line.split(' ');
    Some(format!("publickey {} {}\n", parts.next()?, parts.next()?))
}

/// Checks that the module refuses `cert` (which it just verified) once any byte it signed
/// is changed: one byte of the signed part, chosen by `data`, is flipped, and the verdict
/// must no longer be `Verified`. Panics (a finding) otherwise.
pub fn assert_signed_bytes_bind(cert: &Certificate, data: &[u8]) {
    let Some(line) = auth_info_line(cert) else {
        return;
    };
    let mut fields = line.trim_end().split(' ');
    let (Some(_), Some(keytype), Some(b64)) = (fields.next(), fields.next(), fields.next()) else {
        return;
    };
    let Ok(mut blob) = B64.decode(b64) else {
        return;
    };
    let Some(signed_len) = blob.len().checked_sub(ED25519_SIGNATURE_FIELD) else {
        return;
    };
    let at = pick(data, signed_len);
    blob[at] ^= 1 << (data.len() % 8);
    let changed = format!("publickey {keytype} {}\n", B64.encode(&blob));
    let checks = checks();
    let verdict = pam_breakglass::verify::verify(Some(changed.as_bytes()), &checks);
    assert!(
        !matches!(verdict, pam_breakglass::verify::Verdict::Verified(_)),
        "a certificate with signed byte {at} changed was accepted: {verdict:?}"
    );
}

/// The checks of the PAM module: the fuzz CA, the fixture KRL, [`USER`], [`HOST`], [`NOW`].
#[must_use]
pub fn checks() -> pam_breakglass::verify::Checks<'static> {
    pam_breakglass::verify::Checks {
        trusted: trusted_cas(),
        krl: Some(fixture_krl()),
        user: USER,
        host: HOST,
        now: NOW,
    }
}

/// Where a target keeps the files it writes: `$BREAKGLASS_FUZZ_TMP` (`scripts/fuzz` sets it
/// and removes it afterwards), else `/dev/shm`, else the temporary directory.
#[must_use]
pub fn scratch_root() -> PathBuf {
    if let Some(d) = std::env::var_os("BREAKGLASS_FUZZ_TMP") {
        return d.into();
    }
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}
