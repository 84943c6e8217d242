//! HTTP/1.1 to the OpenID provider: one request, one answer, https checked against a CA
//! bundle (plain http only to a loopback address), a size cap and a deadline. No
//! redirects are followed and no cookies kept: the protocol calls need neither (a test's
//! browser, `tests/src/oidc.rs`, keeps its own).
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use tokio::net::TcpStream;

/// Largest answer read.
const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest one exchange may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Debian's bundle of public CAs, the default trust for an https provider.
pub const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Absolute URL.
    pub url: String,
    /// Extra headers (`Cookie`, ...).
    pub headers: Vec<(String, String)>,
    /// A form body (`application/x-www-form-urlencoded`), for a POST.
    pub form: Option<Vec<(String, String)>>,
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-case, in order (`set-cookie` may repeat).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower-case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("the answer (HTTP {}) is not JSON: {e}", self.status))
    }
}

/// Sends HTTP requests to the provider.
#[derive(Clone)]
pub struct Client {
    tls: Result<tokio_rustls::TlsConnector, String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_ok())
            .finish()
    }
}

impl Client {
    /// A client whose https connections trust the CAs in `bundle` (PEM); a bundle that
    /// cannot be read is reported at the first https request.
    #[must_use]
    pub fn new(bundle: &Path) -> Self {
        Self {
            tls: tls_connector(bundle),
        }
    }

    /// Sends `req` and reads the whole answer, whatever its status.
    pub async fn send(&self, req: Request) -> Result<Response, String> {
        let url = req.url.clone();
        tokio::time::timeout(TIMEOUT, self.exchange(req))
            .await
            .map_err(|_| format!("no answer from {url} within {}s", TIMEOUT.as_secs()))?
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Result<Response, String> {
        self.send(Request {
            method: "GET",
            url: url.to_owned(),
            ..Request::default()
        })
        .await
    }

    /// POST a form to `url`.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Response, String> {
        self.send(Request {
            method: "POST",
            url: url.to_owned(),
            headers: Vec::new(),
            form: Some(
                form.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        })
        .await
    }

    async fn exchange(&self, req: Request) -> Result<Response, String> {
        let url = req.url.as_str();
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        check_url(url)?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| format!("{url} has no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map_or(host, |a| a.as_str()).to_owned();
        let connect_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut builder = hyper::Request::builder()
            .method(req.method)
            .uri(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "breakglass")
            .header(hyper::header::ACCEPT, "application/json, text/html");
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = match &req.form {
            Some(form) => {
                builder = builder.header(
                    hyper::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                );
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish()
            }
            None => String::new(),
        };
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request to {url}: {e}"))?;
        let tcp = TcpStream::connect((connect_host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {connect_host}:{port} ({url}): {e}"))?;
        if https {
            let tls = self
                .tls
                .as_ref()
                .map_err(|e| format!("{url} is https but the CA bundle is unusable: {e}"))?;
            let name = rustls::pki_types::ServerName::try_from(connect_host.clone())
                .map_err(|e| format!("server name {connect_host}: {e}"))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {connect_host} ({url}): {e}"))?;
            roundtrip(hyper_util::rt::TokioIo::new(stream), request, url).await
        } else {
            roundtrip(hyper_util::rt::TokioIo::new(tcp), request, url).await
        }
    }
}

/// A provider URL: https, or plain http to a loopback address
/// ([`breakglass_proto::oidc::check_provider_url`]).
pub fn check_url(url: &str) -> Result<(), String> {
    breakglass_proto::oidc::check_provider_url(url)
}

async fn roundtrip<T>(
    io: T,
    req: hyper::Request<Full<Bytes>>,
    url: &str,
) -> Result<Response, String>
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
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                format!("reading the answer of {url}: {e} (at most {MAX_BODY_BYTES} bytes)")
            })?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
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
