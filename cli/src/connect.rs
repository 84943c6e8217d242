//! Opens a gRPC channel to the daemon (mTLS over TCP, or the local admin socket), and
//! turns the answers of its calls into results ([`Answer`]).
#![forbid(unsafe_code)]

use std::time::Duration;

use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::CliError;
use crate::settings::Target;

/// The process-wide rustls crypto provider (ring). Call once at start-up.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))
}

/// Connects lazily (the first call dials) so that connection errors carry the call's context.
pub fn channel(target: &Target) -> Result<Channel, CliError> {
    install_crypto_provider();
    match target {
        Target::Unix(path) => {
            let url = format!("unix://{}", path.display());
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|e| CliError::Usage(format!("socket path {url}: {e}")))?;
            Ok(ep.connect_timeout(Duration::from_secs(5)).connect_lazy())
        }
        Target::Tls {
            url,
            ca_cert,
            cert,
            key,
            server_name,
        } => {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca_cert, "CA certificate")?))
                .identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            if let Some(n) = server_name {
                tls = tls.domain_name(n.clone());
            }
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|e| CliError::Usage(format!("server {url}: {e}")))?
                .tls_config(tls)
                .map_err(|e| CliError::Usage(format!("TLS settings: {e}")))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60));
            Ok(ep.connect_lazy())
        }
    }
}

/// A BreakGlass API client.
pub fn client(target: &Target) -> Result<BreakGlassClient<Channel>, CliError> {
    Ok(BreakGlassClient::new(channel(target)?))
}

/// The message of a unary gRPC call, or its failure explained ([`CliError::from_status`]).
pub trait Answer<T> {
    /// `client.who_am_i(req).await.answer(target)?`
    fn answer(self, target: &Target) -> Result<T, CliError>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self, target: &Target) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| CliError::from_status(s, &target.shown()))
    }
}
