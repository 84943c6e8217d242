//! The mTLS server configuration: rustls (ring), client certificates from the configured
//! client CA. A client certificate that is presented must verify; a connection without
//! one is accepted, and its calls get no further than the access layer, which answers
//! only the open calls of enrollment without one ([`crate::access::OPEN_CALLS`]) and
//! every other call with `UNAUTHENTICATED`. Connections and handshakes are run by
//! [`crate::accept`].
//!
//! A client certificate whose identity (the SAN [`identity_from_certificate`] picks)
//! is in the `unix:` namespace of the admin socket is refused at the handshake
//! ([`NoAdminSocketIdentities`]), however valid its chain.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::identity::{identity_from_certificate, is_admin_socket_identity, reserved_namespace};
use crate::keyfile::{self, Secrecy};

const MAX_PEM: u64 = 1 << 20;

/// Why the TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file failed the safety checks or could not be read.
    #[error("{0}")]
    File(#[from] keyfile::FileError),
    /// The PEM content is unusable.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn bad(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Bad {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = keyfile::read_checked(path, MAX_PEM, Secrecy::Public)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The process-wide rustls crypto provider (ring). Installed once at start-up.
pub fn install_crypto_provider() {
    // Err means it is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the server TLS configuration: our certificate, client certificates verified
/// when presented (see the module's header for calls without one).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_certs(cert)?;
    let key_pem = keyfile::read_checked(key, MAX_PEM, Secrecy::Secret)?;
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad(key, format!("is not PEM: {e}")))?
        .ok_or_else(|| bad(key, "holds no PRIVATE KEY block"))?;
    let mut roots = RootCertStore::empty();
    for c in read_certs(client_ca)? {
        roots
            .add(c)
            .map_err(|e| bad(client_ca, format!("is not a usable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad(client_ca, format!("cannot verify clients with it: {e}")))?;
    let verifier = Arc::new(NoAdminSocketIdentities(webpki));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad(cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            bad(
                cert,
                format!("does not match the key in {}: {e}", key.display()),
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// A client certificate verifier that refuses, after the chain checks of the inner
/// verifier, every certificate whose identity is in the admin socket's `unix:` namespace.
#[derive(Debug)]
pub struct NoAdminSocketIdentities(pub Arc<dyn ClientCertVerifier>);

/// Why a certificate was refused at the handshake (shown in the handshake failure log).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReservedIdentity(String);

impl ClientCertVerifier for NoAdminSocketIdentities {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.0.verify_client_cert(end_entity, intermediates, now)?;
        // A certificate without a usable SAN passes here: the access layer refuses it
        // with a clearer message (UNAUTHENTICATED) than a TLS alert could carry.
        if let Ok(identity) = identity_from_certificate(end_entity.as_ref())
            && is_admin_socket_identity(&identity)
        {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(ReservedIdentity(reserved_namespace(&identity)))),
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }
}

/// A failed handshake for the log: our own verifier's reason as it reads, else rustls's error.
pub(crate) fn handshake_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(why))))
            if why.downcast_ref::<ReservedIdentity>().is_some() =>
        {
            why.to_string()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{ClientSan, tls_ca, tls_leaf};

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn certificates_claiming_the_unix_namespace_are_refused_at_the_handshake() {
        install_crypto_provider();
        let ca = tls_ca("test CA").unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        let verifier = NoAdminSocketIdentities(
            WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap(),
        );
        let now = time::OffsetDateTime::now_utc();
        let day = std::time::Duration::from_secs(86400);
        let verify = |san| {
            let leaf = tls_leaf(&ca, &[], Some(san), now - day, now + day).unwrap();
            verifier.verify_client_cert(&der(&leaf.cert_pem), &[], UnixTime::now())
        };
        for san in [
            ClientSan::Uri("unix:root"),
            ClientSan::Uri("UNIX:root"),
            ClientSan::Email("unix:root"),
        ] {
            let e = verify(san).unwrap_err();
            // As tokio-rustls reports it to the accept loop, which logs it with the peer.
            let logged = handshake_error(&std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            assert!(
                logged.starts_with("client certificate identity \"")
                    && logged.contains("reserved for local users of the admin socket"),
                "{san:?}: {logged}"
            );
        }
        for san in [
            ClientSan::Uri("host://unix"),
            ClientSan::Email("unix@example.com"),
        ] {
            assert!(verify(san).is_ok(), "{san:?}");
        }
    }
}
