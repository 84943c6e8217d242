//! The daemon's client CA: signs mTLS client certificates from a certificate signing
//! request (the requester's proof that it holds the key), for one identity and one
//! lifetime. Host enrollment and renewal use it ([`crate::enrollment`]); so will logins.
//!
//! The certificate carries only what the daemon decides: the identity as its one SAN (a
//! URI such as `host://db-7`, or an e-mail address), client-auth key usage, the validity
//! window, a random serial. Everything the CSR asks for beyond its public key is ignored.
//! `init --dev` makes its sample client certificates with the same parameters
//! ([`client_params`]).

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use ssh_key::sha2::{Digest, Sha256};
use time::OffsetDateTime;

use breakglass_proto::ssh_login::SSH_KEY_LOGIN_UNIT;

use crate::keyfile::{self, Secrecy};

/// Largest CA certificate or key file read.
const MAX_PEM: u64 = 1 << 20;
/// Largest CSR accepted (a P-256 or Ed25519 CSR is a few hundred bytes).
pub const MAX_CSR_BYTES: usize = 16 * 1024;
/// How far `not_before` is set in the past, for clock skew.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why the client CA could not be loaded or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    /// A file failed the safety checks or could not be read.
    #[error("{0}")]
    File(#[from] keyfile::FileError),
    /// The CA certificate or key is unusable.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The CSR is not one (or its signature does not verify with its own key).
    #[error(
        "the certificate signing request is not a valid PKCS#10 request signed by its own key ({0}); \
         let `breakglass host enroll` make it"
    )]
    BadCsr(String),
    /// Signing failed.
    #[error("signing the client certificate: {0}")]
    Sign(String),
}

/// A client certificate the CA signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The certificate, PEM.
    pub pem: String,
    /// Its serial, hex.
    pub serial: String,
    /// When it stops being valid.
    pub not_after: SystemTime,
    /// SHA-256 of its SubjectPublicKeyInfo (DER).
    pub public_key_sha256: [u8; 32],
}

/// The client CA: its certificate and private key.
pub struct ClientCa {
    cert: CertificateDer<'static>,
    key: KeyPair,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa").finish_non_exhaustive()
    }
}

impl ClientCa {
    /// Loads the CA from `cert` (its first certificate) and `key` (PEM, mode 0600), which
    /// must belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, ClientCaError> {
        let bad = |p: &Path, reason: String| ClientCaError::Bad {
            path: p.display().to_string(),
            reason,
        };
        let cert_bytes = keyfile::read_checked(cert, MAX_PEM, Secrecy::Public)?;
        let first = rustls_pemfile::certs(&mut cert_bytes.as_slice())
            .next()
            .ok_or_else(|| bad(cert, "holds no CERTIFICATE block".into()))?
            .map_err(|e| bad(cert, format!("is not PEM: {e}")))?;
        let key_bytes = keyfile::read_checked(key, MAX_PEM, Secrecy::Secret)?;
        let key_pem = String::from_utf8(key_bytes).map_err(|_| bad(key, "is not PEM".into()))?;
        let key_pair = KeyPair::from_pem(&key_pem)
            .map_err(|e| bad(key, format!("is not a usable key: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(first.as_ref())
            .map_err(|e| bad(cert, format!("is not a certificate: {e}")))?;
        if parsed.tbs_certificate.subject_pki.raw != key_pair.subject_public_key_info().as_slice() {
            return Err(bad(
                key,
                format!(
                    "is not the key of the first certificate in {}; set [server] client_ca_key \
                     to the client CA's own key",
                    cert.display()
                ),
            ));
        }
        // Checked once here, so that signing cannot fail on it later.
        Issuer::from_ca_cert_der(&first, &key_pair)
            .map_err(|e| bad(cert, format!("cannot issue certificates: {e}")))?;
        Ok(Self {
            cert: first,
            key: key_pair,
        })
    }

    /// Signs a client certificate for `identity`, valid from a little before `now` until
    /// `now + lifetime`, for the public key of `csr_der` once its signature verifies.
    pub fn sign(
        &self,
        csr_der: &[u8],
        identity: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Signed, ClientCaError> {
        self.sign_with_unit(csr_der, identity, lifetime, now, None)
    }

    /// [`ClientCa::sign`] for a login with an SSH key: the subject also carries the OU
    /// [`SSH_KEY_LOGIN_UNIT`], which [`crate::identity`] reads back at every call.
    pub fn sign_ssh_key_login(
        &self,
        csr_der: &[u8],
        identity: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<Signed, ClientCaError> {
        self.sign_with_unit(csr_der, identity, lifetime, now, Some(SSH_KEY_LOGIN_UNIT))
    }

    fn sign_with_unit(
        &self,
        csr_der: &[u8],
        identity: &str,
        lifetime: Duration,
        now: SystemTime,
        unit: Option<&str>,
    ) -> Result<Signed, ClientCaError> {
        if csr_der.len() > MAX_CSR_BYTES {
            return Err(ClientCaError::BadCsr(format!(
                "{} bytes, more than {MAX_CSR_BYTES}",
                csr_der.len()
            )));
        }
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| ClientCaError::BadCsr(e.to_string()))?;
        let now = OffsetDateTime::from(now);
        let not_after = now + lifetime;
        let (mut params, serial) = client_params(
            identity,
            is_email_identity(identity),
            now - BACKDATE,
            not_after,
        )
        .map_err(|e| ClientCaError::Sign(e.to_string()))?;
        if let Some(unit) = unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, unit);
        }
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key)
            .map_err(|e| ClientCaError::Sign(e.to_string()))?;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| ClientCaError::Sign(e.to_string()))?;
        Ok(Signed {
            pem: cert.pem(),
            serial,
            not_after: not_after.into(),
            public_key_sha256: Sha256::digest(csr.public_key.subject_public_key_info()).into(),
        })
    }
}

/// Whether an identity is written as an e-mail SAN (`sre@example.com`) rather than a
/// URI SAN (`host://db-7`).
#[must_use]
pub fn is_email_identity(identity: &str) -> bool {
    identity.contains('@') && !identity.contains("://")
}

/// The parameters of a client certificate for `identity` (an e-mail SAN when `email`, a
/// URI SAN otherwise) valid between the two times, and its serial (hex).
pub fn client_params(
    identity: &str,
    email: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(CertificateParams, String), rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(identity);
    p.subject_alt_names.push(if email {
        SanType::Rfc822Name(identity.try_into()?)
    } else {
        SanType::URI(identity.try_into()?)
    });
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.not_before = not_before;
    p.not_after = not_after;
    let serial = random_serial();
    let hex = serial.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    p.serial_number = Some(serial);
    Ok((p, hex))
}

/// A distinguished name of one common name.
pub fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

/// A random positive 128-bit serial.
pub fn random_serial() -> SerialNumber {
    use ssh_key::rand_core::{OsRng, RngCore};
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::tls_ca;

    fn ca_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let ca = tls_ca("test client CA").unwrap();
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        std::fs::write(&cert, &ca.cert_pem).unwrap();
        std::fs::write(&key, &ca.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }

    fn csr(key: &KeyPair) -> Vec<u8> {
        CertificateParams::new(vec!["evil.example".to_owned()])
            .unwrap()
            .serialize_request(key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn only_the_ca_marks_a_certificate_as_got_by_an_ssh_key_login() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca_files(dir.path());
        let ca = ClientCa::load(&cert, &key).unwrap();
        let k = KeyPair::generate().unwrap();
        // A CSR that asks for the mark in its own subject does not get it.
        let mut asks = CertificateParams::new(Vec::<String>::new()).unwrap();
        asks.distinguished_name
            .push(DnType::OrganizationalUnitName, SSH_KEY_LOGIN_UNIT);
        let asks = asks.serialize_request(&k).unwrap().der().to_vec();
        let der = |s: Signed| {
            rustls_pemfile::certs(&mut s.pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let plain = der(ca.sign(&asks, "sre@example.com", hour, now).unwrap());
        assert_eq!(
            crate::identity::certificate_identity(plain.as_ref()).unwrap(),
            ("sre@example.com".to_owned(), false)
        );
        let marked = der(ca
            .sign_ssh_key_login(&csr(&k), "sre@example.com", hour, now)
            .unwrap());
        assert_eq!(
            crate::identity::certificate_identity(marked.as_ref()).unwrap(),
            ("sre@example.com".to_owned(), true)
        );
    }

    #[test]
    fn a_csr_gets_a_client_certificate_for_the_identity_and_nothing_it_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca_files(dir.path());
        let ca = ClientCa::load(&cert, &key).unwrap();
        let host_key = KeyPair::generate().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let signed = ca.sign(&csr(&host_key), "host://db-7", day, now).unwrap();
        let der = rustls_pemfile::certs(&mut signed.pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        // The SAN the daemon picks, not the CSR's DNS name.
        assert_eq!(
            crate::identity::identity_from_certificate(der.as_ref()).unwrap(),
            "host://db-7"
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(
            parsed.tbs_certificate.subject_pki.raw,
            host_key.subject_public_key_info().as_slice()
        );
        assert!(!format!("{:?}", parsed.subject_alternative_name()).contains("evil"));
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            signed.public_key_sha256,
            <[u8; 32]>::from(Sha256::digest(host_key.subject_public_key_info()))
        );
        let not_after = parsed.validity().not_after.timestamp();
        let want = OffsetDateTime::from(now + day).unix_timestamp();
        assert_eq!(not_after, want);
        // A person's identity is an e-mail SAN.
        let p = ca
            .sign(&csr(&host_key), "sre@example.com", day, now)
            .unwrap();
        let der = rustls_pemfile::certs(&mut p.pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(
            crate::identity::identity_from_certificate(der.as_ref()).unwrap(),
            "sre@example.com"
        );
    }

    #[test]
    fn a_forged_or_foreign_csr_and_a_key_of_another_ca_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca_files(dir.path());
        let ca = ClientCa::load(&cert, &key).unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let mut forged = csr(&KeyPair::generate().unwrap());
        let last = forged.len() - 1;
        forged[last] ^= 1; // the signature no longer verifies: no proof of possession
        for bad in [forged, b"not a csr".to_vec(), vec![0; MAX_CSR_BYTES + 1]] {
            assert!(
                matches!(
                    ca.sign(&bad, "host://db-7", day, now),
                    Err(ClientCaError::BadCsr(_))
                ),
                "{} bytes",
                bad.len()
            );
        }
        // The key of another CA beside this certificate.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (_, other_key) = ca_files(&other);
        let e = ClientCa::load(&cert, &other_key).unwrap_err();
        assert!(
            e.to_string()
                .contains("is not the key of the first certificate"),
            "{e}"
        );
    }
}
