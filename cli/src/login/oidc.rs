//! Getting an ID token from the organisation's OpenID provider, for the daemon's `Login`
//! call:
//! - the device authorization grant (RFC 8628): print a URL and a code, which the user
//!   opens in any browser (works on a jump host without one), and poll the token endpoint
//!   at the provider's `interval`, 5 s slower after each `slow_down`, until the code
//!   expires ([`OidcClient::start_device`], [`OidcClient::finish_device`]);
//! - the authorization code grant with PKCE (RFC 7636) on a loopback redirect (RFC 8252:
//!   `http://127.0.0.1:PORT/callback`, a port the system picks), when a browser is at hand
//!   ([`OidcClient::start_code`], [`OidcClient::finish_code`]); `state` and the
//!   redirect's `iss` (RFC 9207) are checked.
//!
//! Both send the login's nonce and check that the ID token carries it (the daemon checks
//! it again, with the signature). The token itself is not verified here: the daemon does.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand_core::RngCore as _;
use serde_json::Value;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::http;
use crate::error::CliError;

/// The scopes asked for when none are configured: the ID token's identity and profile.
pub const DEFAULT_SCOPE: &str = "openid email profile";
/// RFC 8628 3.5: the polling interval when the provider gives none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 3.5: what each `slow_down` adds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The longest interval honoured (a provider asking for more is polled at this pace).
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// How long a device code lives when the provider does not say.
const DEFAULT_DEVICE_EXPIRY: Duration = Duration::from_secs(600);
/// Longest wait for the browser's redirect in the code flow.
pub const CODE_FLOW_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest request head read on the loopback redirect listener.
const MAX_REDIRECT_HEAD: usize = 8 * 1024;

/// The provider as the CLI knows it (from the daemon, or the client settings).
#[derive(Debug, Clone)]
pub struct Provider {
    /// Issuer URL (https; http only on loopback).
    pub issuer: String,
    /// breakglass's client id at the provider (a public client).
    pub client_id: String,
    /// Scopes asked for, space-separated; must include `openid`.
    pub scope: String,
    /// CA bundle (PEM) for an https provider.
    pub ca_bundle: PathBuf,
}

impl Provider {
    /// A provider with the default scope and CA bundle.
    #[must_use]
    pub fn new(issuer: &str, client_id: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            ca_bundle: PathBuf::from(http::DEFAULT_CA_BUNDLE),
        }
    }
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where the browser is sent (code flow).
    pub authorization_endpoint: String,
    /// Where codes become tokens.
    pub token_endpoint: String,
    /// Where a device flow starts; `None`: the provider has none.
    pub device_authorization_endpoint: Option<String>,
}

/// A client of one provider, its endpoints discovered.
#[derive(Debug, Clone)]
pub struct OidcClient {
    provider: Provider,
    endpoints: Endpoints,
    http: http::Client,
}

/// A device flow started: what the user is shown, and what the CLI polls with.
#[derive(Clone)]
pub struct DeviceLogin {
    /// The page the user opens.
    pub verification_uri: String,
    /// The same page with the code filled in, if the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// The code the user enters there.
    pub user_code: String,
    device_code: String,
    interval: Duration,
    expires_at: Instant,
    nonce: String,
}

// The device code is a bearer credential until the login ends: never in Debug output.
impl std::fmt::Debug for DeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("verification_uri", &self.verification_uri)
            .field("user_code", &self.user_code)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl DeviceLogin {
    /// What to tell the user: where to go, which code to enter.
    #[must_use]
    pub fn instructions(&self) -> String {
        let mut s = format!(
            "To log in, open {} in a browser and enter the code {}",
            self.verification_uri, self.user_code
        );
        if let Some(complete) = &self.verification_uri_complete {
            s.push_str(&format!("\n(or open {complete})"));
        }
        s
    }
}

/// A code flow started: the URL the browser opens, and the loopback listener that gets
/// its redirect.
pub struct CodeLogin {
    /// The authorization URL to open in a browser.
    pub authorization_url: String,
    /// `http://127.0.0.1:PORT/callback`.
    pub redirect_uri: String,
    listener: TcpListener,
    state: String,
    verifier: String,
    nonce: String,
}

// The PKCE verifier is what makes the code worth anything: never in Debug output.
impl std::fmt::Debug for CodeLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeLogin")
            .field("authorization_url", &self.authorization_url)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// A random, URL-safe token of 256 bits (nonces, `state`, PKCE verifiers).
#[must_use]
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 PKCE challenge of `verifier` (RFC 7636 4.2).
#[must_use]
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn unavailable(provider: &Provider, e: String) -> CliError {
    CliError::Unavailable(format!(
        "the OpenID provider {} cannot be reached: {e} (breakglass login --ssh-key works without it)",
        provider.issuer
    ))
}

impl OidcClient {
    /// Finds the provider's endpoints (`ISSUER/.well-known/openid-configuration`, which
    /// must name the issuer exactly).
    pub async fn discover(provider: Provider) -> Result<Self, CliError> {
        http::check_url(&provider.issuer).map_err(CliError::Usage)?;
        if !provider.scope.split(' ').any(|s| s == "openid") {
            return Err(CliError::Usage(format!(
                "the scope {:?} lacks \"openid\": without it there is no ID token",
                provider.scope
            )));
        }
        let http = http::Client::new(&provider.ca_bundle);
        let url = format!(
            "{}/.well-known/openid-configuration",
            provider.issuer.trim_end_matches('/')
        );
        let answer = http
            .get(&url)
            .await
            .map_err(|e| unavailable(&provider, e))?;
        if answer.status != 200 {
            return Err(unavailable(
                &provider,
                format!("{url} answered HTTP {}", answer.status),
            ));
        }
        let doc = answer.json().map_err(|e| unavailable(&provider, e))?;
        let endpoints = endpoints(&doc, &provider.issuer).map_err(CliError::Config)?;
        Ok(Self {
            provider,
            endpoints,
            http,
        })
    }

    /// The discovered endpoints.
    #[must_use]
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Starts a device flow for a login that sends `nonce`.
    pub async fn start_device(&self, nonce: &str) -> Result<DeviceLogin, CliError> {
        let endpoint = self.endpoints.device_authorization_endpoint.as_deref().ok_or_else(|| {
            CliError::Config(format!(
                "the OpenID provider {} offers no device flow (no device_authorization_endpoint): log in with a browser on this machine",
                self.provider.issuer
            ))
        })?;
        let answer = self
            .http
            .post_form(
                endpoint,
                &[
                    ("client_id", &self.provider.client_id),
                    ("scope", &self.provider.scope),
                    ("nonce", nonce),
                ],
            )
            .await
            .map_err(|e| unavailable(&self.provider, e))?;
        let doc = answer.json().map_err(|e| unavailable(&self.provider, e))?;
        if answer.status != 200 {
            return Err(provider_refusal(&doc, answer.status));
        }
        let text = |name: &str| {
            doc.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    CliError::Data(format!(
                        "the provider's device authorization answer has no {name}"
                    ))
                })
        };
        let seconds = |name: &str| {
            doc.get(name)
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
        };
        Ok(DeviceLogin {
            verification_uri: text("verification_uri")?,
            verification_uri_complete: text("verification_uri_complete").ok(),
            user_code: text("user_code")?,
            device_code: text("device_code")?,
            interval: seconds("interval")
                .unwrap_or(DEFAULT_INTERVAL)
                .min(MAX_INTERVAL),
            expires_at: Instant::now() + seconds("expires_in").unwrap_or(DEFAULT_DEVICE_EXPIRY),
            nonce: nonce.to_owned(),
        })
    }

    /// Polls until the user has logged in at the provider (the ID token), refused, or the
    /// code expired.
    pub async fn finish_device(&self, login: &DeviceLogin) -> Result<String, CliError> {
        let mut interval = login.interval;
        // Bounded: every round waits at least a second, until the code expires.
        loop {
            tokio::time::sleep(interval.max(Duration::from_secs(1))).await;
            if Instant::now() >= login.expires_at {
                return Err(CliError::NotIssued(
                    "the login code expired before the login was finished at the provider: run login again"
                        .into(),
                ));
            }
            let answer = self
                .http
                .post_form(
                    &self.endpoints.token_endpoint,
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("device_code", &login.device_code),
                        ("client_id", &self.provider.client_id),
                    ],
                )
                .await
                .map_err(|e| unavailable(&self.provider, e))?;
            let doc = answer.json().map_err(|e| unavailable(&self.provider, e))?;
            if let Some(token) = on_device_poll(answer.status, &doc, &mut interval)? {
                check_nonce(&token, &login.nonce)?;
                return Ok(token);
            }
        }
    }

    /// Starts a code flow for a login that sends `nonce`: listens on a loopback port for
    /// the browser's redirect.
    pub async fn start_code(&self, nonce: &str) -> Result<CodeLogin, CliError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
            CliError::Io(format!(
                "cannot listen on 127.0.0.1 for the browser's redirect: {e}"
            ))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| CliError::Io(format!("the redirect listener's port: {e}")))?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}/callback");
        let state = random_token();
        let verifier = random_token();
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", self.provider.client_id.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("scope", self.provider.scope.as_str()),
                ("state", state.as_str()),
                ("nonce", nonce),
                ("code_challenge", pkce_challenge(&verifier).as_str()),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        let endpoint = &self.endpoints.authorization_endpoint;
        let join = if endpoint.contains('?') { '&' } else { '?' };
        Ok(CodeLogin {
            authorization_url: format!("{endpoint}{join}{query}"),
            redirect_uri,
            listener,
            state,
            verifier,
            nonce: nonce.to_owned(),
        })
    }

    /// Waits (at most `timeout`) for the browser's redirect, checks it, and trades its code
    /// for the ID token.
    pub async fn finish_code(
        &self,
        login: CodeLogin,
        timeout: Duration,
    ) -> Result<String, CliError> {
        let params = tokio::time::timeout(timeout, self.redirect(&login))
            .await
            .map_err(|_| {
                CliError::NotIssued(format!(
                    "the browser did not come back within {}s: run login again",
                    timeout.as_secs()
                ))
            })??;
        let answer = self
            .http
            .post_form(
                &self.endpoints.token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &params.code),
                    ("redirect_uri", &login.redirect_uri),
                    ("client_id", &self.provider.client_id),
                    ("code_verifier", &login.verifier),
                ],
            )
            .await
            .map_err(|e| unavailable(&self.provider, e))?;
        let doc = answer.json().map_err(|e| unavailable(&self.provider, e))?;
        if answer.status != 200 {
            return Err(provider_refusal(&doc, answer.status));
        }
        let token = id_token(&doc)?;
        check_nonce(&token, &login.nonce)?;
        Ok(token)
    }

    /// Serves the loopback listener until one redirect to `/callback` arrived.
    async fn redirect(&self, login: &CodeLogin) -> Result<Redirect, CliError> {
        loop {
            let (mut stream, _) = login
                .listener
                .accept()
                .await
                .map_err(|e| CliError::Io(format!("the redirect listener: {e}")))?;
            let Ok(Ok(target)) =
                tokio::time::timeout(Duration::from_secs(10), read_request_target(&mut stream))
                    .await
            else {
                continue;
            };
            let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
            if path != "/callback" {
                respond(&mut stream, 404, "Not found.").await;
                continue;
            }
            let result = check_redirect(query, &login.state, &self.provider.issuer);
            let (status, page) = match &result {
                Ok(_) => (200, "Logged in to breakglass. You can close this window."),
                Err(_) => (400, "The login failed: see the terminal."),
            };
            respond(&mut stream, status, page).await;
            return result;
        }
    }
}

/// What the redirect brought.
#[derive(Debug, PartialEq, Eq)]
struct Redirect {
    code: String,
}

/// Checks the redirect's query: our `state`, no `error`, the right `iss` if given, a code.
fn check_redirect(query: &str, state: &str, issuer: &str) -> Result<Redirect, CliError> {
    let get = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if get("state").as_deref() != Some(state) {
        return Err(CliError::Data(
            "the browser came back with another state than this login sent: a redirect not caused by this login was refused; run login again"
                .into(),
        ));
    }
    if let Some(error) = get("error") {
        let description = get("error_description").unwrap_or_default();
        return Err(CliError::Refused(format!(
            "the OpenID provider refused the login: {error} {description}"
        )));
    }
    if let Some(iss) = get("iss")
        && iss != issuer
    {
        return Err(CliError::Data(format!(
            "the browser came back from the issuer {iss:?}, not {issuer:?}: refused"
        )));
    }
    let code = get("code").filter(|c| !c.is_empty()).ok_or_else(|| {
        CliError::Data("the browser came back without an authorization code".into())
    })?;
    Ok(Redirect { code })
}

/// One answer of the token endpoint during a device flow: the ID token, `None` to poll
/// again (with `interval` raised by a `slow_down`), or why the login ended.
fn on_device_poll(
    status: u16,
    doc: &Value,
    interval: &mut Duration,
) -> Result<Option<String>, CliError> {
    if status == 200 {
        return id_token(doc).map(Some);
    }
    match doc.get("error").and_then(Value::as_str) {
        Some("authorization_pending") => Ok(None),
        Some("slow_down") => {
            *interval = (*interval + SLOW_DOWN_STEP).min(MAX_INTERVAL);
            Ok(None)
        }
        Some("access_denied") => Err(CliError::Refused(
            "the login was refused at the OpenID provider".into(),
        )),
        Some("expired_token") => Err(CliError::NotIssued(
            "the login code expired before the login was finished at the provider: run login again"
                .into(),
        )),
        _ => Err(provider_refusal(doc, status)),
    }
}

fn provider_refusal(doc: &Value, status: u16) -> CliError {
    let error = doc.get("error").and_then(Value::as_str).unwrap_or("error");
    let description = doc
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    CliError::Refused(format!(
        "the OpenID provider answered HTTP {status}: {error} {description}"
    ))
}

fn id_token(doc: &Value) -> Result<String, CliError> {
    doc.get("id_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Data(
                "the OpenID provider gave no ID token (is \"openid\" among the scopes?)".into(),
            )
        })
}

/// Checks that the (not yet verified) ID token carries `nonce`: a token meant for another
/// login is refused before it is sent anywhere.
pub fn check_nonce(id_token: &str, nonce: &str) -> Result<(), CliError> {
    let payload = id_token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| CliError::Data("the provider's ID token is not a JWT".into()))?;
    if payload.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(CliError::Data(
            "the provider's ID token does not carry the nonce this login sent: refused".into(),
        ));
    }
    Ok(())
}

/// The endpoints of a discovery document that names `issuer` exactly.
fn endpoints(doc: &Value, issuer: &str) -> Result<Endpoints, String> {
    let named = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if named != issuer {
        return Err(format!(
            "the provider's discovery document names the issuer {named:?}, not {issuer:?}"
        ));
    }
    let url = |name: &str| -> Result<Option<String>, String> {
        match doc.get(name).and_then(Value::as_str) {
            None => Ok(None),
            Some(u) => http::check_url(u)
                .map(|()| Some(u.to_owned()))
                .map_err(|e| format!("{name}: {e}")),
        }
    };
    let required = |name: &str| {
        url(name)?.ok_or_else(|| format!("the provider's discovery document has no {name}"))
    };
    Ok(Endpoints {
        authorization_endpoint: required("authorization_endpoint")?,
        token_endpoint: required("token_endpoint")?,
        device_authorization_endpoint: url("device_authorization_endpoint")?,
    })
}

/// Reads a request head and returns its target (`/callback?code=...`).
async fn read_request_target(stream: &mut tokio::net::TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 || head.len() + n > MAX_REDIRECT_HEAD {
            return Err("request head cut or too large".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => Ok(target.to_owned()),
        _ => Err(format!("not a GET: {line}")),
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, status: u16, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>breakglass login</title></head><body><p>{text}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // The browser's page is a courtesy: the login goes on whether it is read or not.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn device_polling_follows_rfc_8628() {
        let mut interval = Duration::from_secs(1);
        let pending = json!({"error": "authorization_pending"});
        assert!(
            on_device_poll(400, &pending, &mut interval)
                .unwrap()
                .is_none()
        );
        assert_eq!(interval, Duration::from_secs(1));
        let slow = json!({"error": "slow_down"});
        assert!(on_device_poll(400, &slow, &mut interval).unwrap().is_none());
        assert_eq!(interval, Duration::from_secs(6), "slow_down adds 5 s");
        assert!(on_device_poll(400, &slow, &mut interval).unwrap().is_none());
        assert_eq!(interval, Duration::from_secs(11), "for all later polls too");
        let e = on_device_poll(400, &json!({"error": "expired_token"}), &mut interval).unwrap_err();
        assert!(matches!(e, CliError::NotIssued(_)), "{e}");
        let e = on_device_poll(400, &json!({"error": "access_denied"}), &mut interval).unwrap_err();
        assert!(matches!(e, CliError::Refused(_)), "{e}");
        let done = json!({"id_token": "a.b.c", "access_token": "x"});
        assert_eq!(
            on_device_poll(200, &done, &mut interval)
                .unwrap()
                .as_deref(),
            Some("a.b.c")
        );
        let e = on_device_poll(200, &json!({"access_token": "x"}), &mut interval).unwrap_err();
        assert!(e.to_string().contains("no ID token"), "{e}");
    }

    #[test]
    fn the_redirect_must_carry_our_state_and_issuer() {
        let iss = "http://127.0.0.1:9";
        assert_eq!(
            check_redirect("code=c1&state=s1&iss=http%3A%2F%2F127.0.0.1%3A9", "s1", iss).unwrap(),
            Redirect { code: "c1".into() }
        );
        let e = check_redirect("code=c1&state=s2", "s1", iss).unwrap_err();
        assert!(e.to_string().contains("another state"), "{e}");
        let e = check_redirect("code=c1&state=s1&iss=http%3A%2F%2Fevil", "s1", iss).unwrap_err();
        assert!(e.to_string().contains("not \"http://127.0.0.1:9\""), "{e}");
        let e = check_redirect("error=access_denied&state=s1", "s1", iss).unwrap_err();
        assert!(matches!(e, CliError::Refused(_)), "{e}");
        assert!(check_redirect("state=s1", "s1", iss).is_err());
    }

    #[test]
    fn pkce_challenge_is_rfc_7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 43);
    }

    #[test]
    fn the_id_token_must_carry_the_login_nonce() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.sig", b64("{}"), b64(r#"{"nonce":"n1"}"#));
        check_nonce(&token, "n1").unwrap();
        assert!(check_nonce(&token, "n2").is_err());
        assert!(check_nonce("garbage", "n1").is_err());
    }
}
