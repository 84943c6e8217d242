//! The mTLS server configuration: rustls (ring) with mandatory client certificates
//! from the configured client CA. Connections and handshakes are run by
//! [`crate::accept`].

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

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

/// Builds the server TLS configuration: our certificate, client certificates required.
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
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad(client_ca, format!("cannot verify clients with it: {e}")))?;
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
