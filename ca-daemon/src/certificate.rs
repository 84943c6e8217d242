//! Where the certificate is built and signed, following the breakglass
//! profile (see `breakglass_proto::profile`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::profile::{
    self, CRITICAL_FORCE_COMMAND, CRITICAL_SOURCE_ADDRESS, EXT_GRANT_ID, EXT_HOSTS, EXT_TIER,
    GrantId,
};
use ipnet::IpNet;
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Algorithm, Certificate, HashAlg, PrivateKey, PublicKey, certificate};

use crate::error::Error;
use crate::keyfile::{self, Secrecy};

const MAX_KEY_FILE: u64 = 64 * 1024;

/// What one certificate must say. Built from a validated request and an allow decision.
#[derive(Clone, Debug)]
pub struct CertSpec<'a> {
    /// Grant id.
    pub grant_id: GrantId,
    /// Identity of the requester.
    pub requester: &'a str,
    /// The requester's key.
    pub subject: &'a PublicKey,
    /// Principals (never empty).
    pub principals: &'a [String],
    /// Host scope (never empty).
    pub hosts: &'a [String],
    /// Tier of the allowing rule.
    pub tier: &'a str,
    /// Lifetime from now.
    pub ttl: Duration,
    /// Forced command.
    pub force_command: Option<&'a str>,
    /// source-address CIDRs.
    pub source_addresses: &'a [IpNet],
    /// permit-* extensions.
    pub extensions: &'a [String],
}

/// A freshly signed certificate and its facts.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub certificate: Certificate,
    /// Serial number.
    pub serial: u64,
    /// Key id.
    pub key_id: String,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
}

/// A CA public key as published to hosts.
#[derive(Clone, Debug)]
pub struct PublishedKey {
    /// The key.
    pub key: PublicKey,
    /// Whether it signs new certificates.
    pub signing: bool,
}

/// The SSH certificate authority: the signing key plus keys still trusted.
pub struct CertificateAuthority {
    signing: PrivateKey,
    /// The signing key with what signing derives from it computed once.
    ready: ReadyKey,
    published: Vec<PublishedKey>,
    backdate: Duration,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CertificateAuthority")
            .field(
                "signing",
                &self.signing.public_key().fingerprint(HashAlg::Sha256),
            )
            .field("published", &self.published.len())
            .field("backdate", &self.backdate)
            .finish()
    }
}

/// Why the CA keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaKeyError {
    /// The key file failed the safety checks or could not be read.
    #[error("CA key {0}")]
    File(#[from] keyfile::FileError),
    /// The key file is not what we need.
    #[error("CA key {path}: {reason}")]
    Bad {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl CertificateAuthority {
    /// Loads the signing key (checked: owner, mode 0600, no symlink) and extra public keys.
    pub fn load(
        signing_key: &Path,
        extra_public_keys: &[std::path::PathBuf],
        backdate: Duration,
    ) -> Result<Self, CaKeyError> {
        let bad = |p: &Path, reason: String| CaKeyError::Bad {
            path: p.display().to_string(),
            reason,
        };
        let bytes = keyfile::read_checked(signing_key, MAX_KEY_FILE, Secrecy::Secret)?;
        let signing = PrivateKey::from_openssh(&bytes)
            .map_err(|e| bad(signing_key, format!("is not an OpenSSH private key: {e}")))?;
        if signing.is_encrypted() {
            return Err(bad(
                signing_key,
                "is encrypted; the daemon needs an unencrypted key".into(),
            ));
        }
        if signing.algorithm() != Algorithm::Ed25519 {
            return Err(bad(
                signing_key,
                format!(
                    "is {}; breakglass signs with Ed25519 only",
                    signing.algorithm()
                ),
            ));
        }
        let mut published = vec![PublishedKey {
            key: signing.public_key().clone(),
            signing: true,
        }];
        for p in extra_public_keys {
            let bytes = keyfile::read_checked(p, MAX_KEY_FILE, Secrecy::Public)?;
            let text = String::from_utf8(bytes).map_err(|_| bad(p, "is not UTF-8".into()))?;
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                let key = PublicKey::from_openssh(line)
                    .map_err(|e| bad(p, format!("holds a line that is not a public key: {e}")))?;
                if !published.iter().any(|k| k.key.key_data() == key.key_data()) {
                    published.push(PublishedKey {
                        key,
                        signing: false,
                    });
                }
            }
        }
        let ready = ReadyKey::new(&signing).map_err(|e| bad(signing_key, e))?;
        Ok(Self {
            signing,
            ready,
            published,
            backdate,
        })
    }

    /// Creates a new Ed25519 CA key file (mode 0600).
    pub fn generate(path: &Path, comment: &str) -> std::io::Result<PublicKey> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        key.set_comment(comment);
        let text = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        keyfile::write_new(path, text.as_bytes(), 0o600)?;
        Ok(key.public_key().clone())
    }

    /// `SHA256:` fingerprint of the signing key.
    pub fn signing_fingerprint(&self) -> String {
        self.signing
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// An SSHSIG (PEM armored, as `ssh-keygen -Y sign` writes) by the signing key
    /// over `msg` in `namespace`; hosts verify it with the published CA keys.
    pub fn sign_sshsig(&self, namespace: &str, msg: &[u8]) -> Result<String, Error> {
        self.signing
            .sign(namespace, HashAlg::Sha512, msg)
            .and_then(|sig| sig.to_pem(ssh_key::LineEnding::LF))
            .map_err(|e| Error::Internal(format!("signing with the CA key: {e}")))
    }

    /// How far `valid_after` is set in the past, for clock skew.
    pub fn backdate(&self) -> Duration {
        self.backdate
    }

    /// The keys hosts should trust, signing key first.
    pub fn published(&self) -> &[PublishedKey] {
        &self.published
    }

    /// Draws a fresh grant id.
    pub fn new_grant_id() -> GrantId {
        GrantId(OsRng.next_u64())
    }

    /// Builds and signs a certificate valid from `now - backdate` to `now + ttl`.
    pub fn issue(&self, spec: &CertSpec<'_>, now: SystemTime) -> Result<Issued, Error> {
        if spec.principals.is_empty() {
            return Err(Error::Internal(
                "refusing to sign a certificate without principals".into(),
            ));
        }
        if spec.hosts.is_empty() {
            return Err(Error::Internal(
                "refusing to sign a certificate without host scope".into(),
            ));
        }
        if spec.ttl.is_zero() {
            return Err(Error::Internal(
                "refusing to sign a certificate with zero lifetime".into(),
            ));
        }
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Internal("system clock is before 1970".into()))?
            .as_secs();
        let valid_after = now_s.saturating_sub(self.backdate.as_secs());
        let valid_before = now_s + spec.ttl.as_secs();
        // A zero serial reads as "no serial" in some tools; never issue it.
        let serial = loop {
            let s = OsRng.next_u64();
            if s != 0 {
                break s;
            }
        };
        self.sign_fixed(spec, serial, valid_after, valid_before)
    }

    /// Signs a grant's certificate again from what the audit log recorded
    /// (serial and validity of its `GrantIssued` event): the result is
    /// byte-identical to the certificate first issued, because the nonce is
    /// derived from grant id and serial and Ed25519 signatures are
    /// deterministic, provided the same CA key signs (callers check the
    /// recorded CA fingerprint). Nothing new is granted.
    pub fn rebuild(
        &self,
        spec: &CertSpec<'_>,
        serial: u64,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<Issued, Error> {
        if spec.principals.is_empty() || spec.hosts.is_empty() || valid_before <= valid_after {
            return Err(Error::Internal(
                "refusing to rebuild a certificate without principals, host scope or lifetime"
                    .into(),
            ));
        }
        self.sign_fixed(spec, serial, valid_after, valid_before)
    }

    fn sign_fixed(
        &self,
        spec: &CertSpec<'_>,
        serial: u64,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<Issued, Error> {
        let internal = |e: ssh_key::Error| Error::Internal(format!("building certificate: {e}"));
        let key_id = profile::key_id(spec.grant_id, spec.requester);

        let mut b = certificate::Builder::new(
            cert_nonce(spec.grant_id, serial),
            spec.subject.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(internal)?;
        b.serial(serial).map_err(internal)?;
        b.key_id(key_id.clone()).map_err(internal)?;
        b.cert_type(certificate::CertType::User).map_err(internal)?;
        for p in spec.principals {
            b.valid_principal(p.clone()).map_err(internal)?;
        }
        if let Some(cmd) = spec.force_command {
            b.critical_option(CRITICAL_FORCE_COMMAND, cmd)
                .map_err(internal)?;
        }
        if !spec.source_addresses.is_empty() {
            let list: Vec<String> = spec
                .source_addresses
                .iter()
                .map(ToString::to_string)
                .collect();
            b.critical_option(CRITICAL_SOURCE_ADDRESS, list.join(","))
                .map_err(internal)?;
        }
        for x in spec.extensions {
            b.extension(x.clone(), "").map_err(internal)?;
        }
        b.extension(EXT_GRANT_ID, spec.grant_id.to_string())
            .map_err(internal)?;
        b.extension(EXT_HOSTS, profile::encode_hosts(spec.hosts))
            .map_err(internal)?;
        b.extension(EXT_TIER, spec.tier).map_err(internal)?;
        b.comment(key_id.clone()).map_err(internal)?;
        let certificate = b.sign(&self.ready).map_err(internal)?;
        Ok(Issued {
            certificate,
            serial,
            key_id,
            valid_after,
            valid_before,
        })
    }
}

/// The CA's Ed25519 key ready to sign. ssh-key signs with a `PrivateKey` by deriving the
/// Ed25519 signing key from its seed (a SHA-512 and a base-point multiplication) for
/// every signature, a tenth of the daemon's CPU per certificate; this derives it once.
struct ReadyKey {
    key: ed25519_dalek::SigningKey,
    public: ssh_key::public::KeyData,
}

impl ReadyKey {
    fn new(private: &PrivateKey) -> Result<Self, String> {
        let keypair = private
            .key_data()
            .ed25519()
            .ok_or_else(|| "is not an Ed25519 key".to_owned())?;
        let key = ed25519_dalek::SigningKey::from_bytes(&keypair.private.to_bytes());
        if key.verifying_key().as_bytes() != keypair.public.as_ref() {
            return Err("holds a public key that does not match its private key".into());
        }
        Ok(Self {
            key,
            public: private.public_key().key_data().clone(),
        })
    }
}

impl signature::Signer<ssh_key::Signature> for ReadyKey {
    fn try_sign(&self, msg: &[u8]) -> Result<ssh_key::Signature, signature::Error> {
        let sig = ed25519_dalek::Signer::sign(&self.key, msg);
        ssh_key::Signature::new(Algorithm::Ed25519, sig.to_bytes().to_vec())
            .map_err(|_| signature::Error::new())
    }
}

impl From<&ReadyKey> for ssh_key::public::KeyData {
    fn from(k: &ReadyKey) -> Self {
        k.public.clone()
    }
}

/// The certificate nonce: SHA-256 over a label, the grant id and the serial.
/// Both are drawn from the OS RNG when the grant is signed, so the nonce is
/// as unpredictable to the requester as a random one, and the certificate can
/// be signed again, identically, from the audit log.
fn cert_nonce(grant: GrantId, serial: u64) -> Vec<u8> {
    let mut input = b"breakglass certificate nonce v1\0".to_vec();
    input.extend_from_slice(&grant.0.to_be_bytes());
    input.extend_from_slice(&serial.to_be_bytes());
    HashAlg::Sha256.digest(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_certificate_is_byte_identical_and_only_from_the_same_grant() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca");
        CertificateAuthority::generate(&key, "test CA").unwrap();
        let ca = CertificateAuthority::load(&key, &[], Duration::from_secs(60)).unwrap();
        let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let principals = vec!["postgres".to_owned()];
        let hosts = vec!["db-*".to_owned()];
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ext = vec!["permit-pty".to_owned()];
        let spec = CertSpec {
            grant_id: GrantId(0x1234),
            requester: "alice@example.com",
            subject: user.public_key(),
            principals: &principals,
            hosts: &hosts,
            tier: "high",
            ttl: Duration::from_secs(600),
            force_command: Some("/usr/bin/psql"),
            source_addresses: &nets,
            extensions: &ext,
        };
        let first = ca.issue(&spec, SystemTime::now()).unwrap();
        let again = ca
            .rebuild(&spec, first.serial, first.valid_after, first.valid_before)
            .unwrap();
        assert_eq!(
            again.certificate.to_openssh().unwrap(),
            first.certificate.to_openssh().unwrap()
        );
        // Another grant id gives another nonce, so another certificate.
        let other = CertSpec {
            grant_id: GrantId(0x1235),
            ..spec.clone()
        };
        let moved = ca
            .rebuild(&other, first.serial, first.valid_after, first.valid_before)
            .unwrap();
        assert_ne!(moved.certificate.nonce(), first.certificate.nonce());
        assert!(
            ca.rebuild(&spec, first.serial, first.valid_before, first.valid_before)
                .is_err()
        );
        // The ready key signs exactly as ssh-key's own signing with the private key
        // would, and what it signs verifies under the CA key.
        let mut b = certificate::Builder::new(
            first.certificate.nonce().to_vec(),
            user.public_key().key_data().clone(),
            first.valid_after,
            first.valid_before,
        )
        .unwrap();
        b.serial(first.serial).unwrap();
        b.key_id(first.key_id.clone()).unwrap();
        b.cert_type(certificate::CertType::User).unwrap();
        b.valid_principal("postgres").unwrap();
        for (name, value) in first.certificate.critical_options().iter() {
            b.critical_option(name.clone(), value.clone()).unwrap();
        }
        for (name, value) in first.certificate.extensions().iter() {
            b.extension(name.clone(), value.clone()).unwrap();
        }
        b.comment(first.key_id.clone()).unwrap();
        let by_private_key = b.sign(&ca.signing).unwrap();
        assert_eq!(
            by_private_key.to_openssh().unwrap(),
            first.certificate.to_openssh().unwrap()
        );
        let fp = ca.signing.public_key().fingerprint(HashAlg::Sha256);
        first
            .certificate
            .validate_at(first.valid_after + 1, &[fp])
            .expect("the certificate verifies under the CA key");
    }
}
