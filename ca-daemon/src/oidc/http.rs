//! The provider's documents over HTTP/1.1: one GET of a JSON document (discovery, JWKS),
//! https checked against the configured CA bundle, plain http only to a loopback address
//! (`breakglass_proto::oidc::check_provider_url`), a size cap and a deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use tokio::net::TcpStream;

/// Largest document accepted from the provider.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Longest a fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches JSON documents from the provider.
#[derive(Clone)]
pub struct Fetcher {
    tls: Option<tokio_rustls::TlsConnector>,
    bundle_error: Option<String>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Fetcher {
    /// A fetcher whose https connections trust the CAs of `bundle` (PEM). A bundle that
    /// cannot be read is reported at the first https fetch, not here: a provider on
    /// loopback http needs none.
    #[must_use]
    pub fn new(bundle: &Path) -> Self {
        match tls_connector(bundle) {
            Ok(tls) => Self {
                tls: Some(tls),
                bundle_error: None,
            },
            Err(e) => Self {
                tls: None,
                bundle_error: Some(e),
            },
        }
    }

    /// GETs `url` and parses the answer as JSON; any answer but 200 is an error.
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get(url))
            .await
            .map_err(|_| {
                format!(
                    "no answer from {url} within {}",
                    crate::fmt_duration(FETCH_TIMEOUT)
                )
            })??;
        serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer JSON: {e}"))
    }

    async fn get(&self, url: &str) -> Result<Bytes, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        breakglass_proto::oidc::check_provider_url(url)?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| format!("{url} has no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
        let connect_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let tcp = TcpStream::connect((connect_host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {connect_host}:{port}: {e}"))?;
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "breakglass-ca")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        if https {
            let tls = self.tls.as_ref().ok_or_else(|| {
                format!(
                    "{url} is https but the CA bundle (oidc.ca_bundle) is unusable: {}",
                    self.bundle_error.as_deref().unwrap_or("no certificates")
                )
            })?;
            let name = rustls::pki_types::ServerName::try_from(connect_host.clone())
                .map_err(|e| format!("server name {connect_host}: {e}"))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {connect_host}: {e}"))?;
            exchange(hyper_util::rt::TokioIo::new(stream), req, url).await
        } else {
            exchange(hyper_util::rt::TokioIo::new(tcp), req, url).await
        }
    }
}

async fn exchange<T>(io: T, req: hyper::Request<Empty<Bytes>>, url: &str) -> Result<Bytes, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with {url}: {e}"))?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP request to {url}: {e}"))?;
        let status = resp.status();
        if status != hyper::StatusCode::OK {
            return Err(format!("{url} answered {status}"));
        }
        Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("reading {url}: {e} (at most {MAX_DOCUMENT_BYTES} bytes)"))
    }
    .await;
    conn.abort();
    result
}

fn tls_connector(bundle: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    let pem = std::fs::read(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", bundle.display()))?;
        // A bundle may hold certificates webpki cannot use; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no usable CA certificate", bundle.display()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS settings: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
