//! A real OpenID provider for the login tests: node `oidc-provider` (a certified OpenID
//! Provider, `tests/oidc-provider/server.mjs`, installed by `scripts/install-deps`) on a
//! free loopback port, stopped on drop; and a [`Browser`] that goes through its pages over
//! HTTP as a person's browser would (the device page, the user code, the login form, the
//! consent page; redirects and cookies), with no shortcut into the provider.
//!
//! The provider's users (`server.mjs`): `alice` (alice@example.com, group idp-sre), `bob`
//! (bob@example.com, idp-dba and idp-unmapped), `carol` (carol@elsewhere.example,
//! idp-sre); the password of each is `USER-password`. Its clients: `breakglass` (ID tokens
//! RS256), `breakglass-es256` (ES256), `other-app` (RS256).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use breakglass_ca::config::OidcSettings;
use breakglass_cli::login::http::{Client, Request, Response};
use breakglass_cli::login::oidc::{OidcClient, Provider};
use breakglass_test_support::process::Running;
use breakglass_test_support::{can_run, free_port, have, workspace};

/// The client whose ID tokens are RS256.
pub const CLIENT: &str = "breakglass";
/// The client whose ID tokens are ES256.
pub const CLIENT_ES256: &str = "breakglass-es256";
/// Another application at the same provider.
pub const OTHER_CLIENT: &str = "other-app";
/// The scopes the test clients ask for.
pub const SCOPE: &str = "openid email groups";

/// Longest wait for the provider to answer its discovery document after a start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One of the provider's signing keys (private, for forging tokens in tests).
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// Its key id in the JWKS.
    pub kid: String,
    /// `RS256` or `ES256`.
    pub alg: String,
    /// The private key, PKCS#8 PEM.
    pub pem: String,
}

/// The provider, running; stopped on drop.
#[derive(Debug)]
pub struct TestProvider {
    /// Its loopback port.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
    options: Options,
    dir: tempfile::TempDir,
    running: Running,
}

/// How a [`TestProvider`] behaves where tests need it to differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long a device code lives, in seconds.
    pub device_ttl: u32,
    /// Polls of the token endpoint closer together than this (seconds) answer
    /// `slow_down`; `None`: the advertised interval (1 s).
    pub enforced_interval: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            device_ttl: 600,
            enforced_interval: None,
        }
    }
}

fn provider_dir() -> PathBuf {
    workspace().join("tests/oidc-provider")
}

impl TestProvider {
    /// Starts the provider; `None` (after a loud message, or a panic under CI) when
    /// `node` or the provider's npm packages are missing.
    pub async fn start() -> Option<Self> {
        Self::start_with(Options::default()).await
    }

    /// [`start`](Self::start), its device codes living `device_ttl` seconds.
    pub async fn start_with_device_ttl(device_ttl: u32) -> Option<Self> {
        Self::start_with(Options {
            device_ttl,
            ..Options::default()
        })
        .await
    }

    /// [`start`](Self::start) with `options`.
    pub async fn start_with(options: Options) -> Option<Self> {
        let installed = provider_dir()
            .join("node_modules/oidc-provider/package.json")
            .exists();
        if !can_run(
            "node and the test OpenID provider (scripts/install-deps: npm ci in tests/oidc-provider)",
            have("node") && installed,
        ) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let running = spawn(port, options, &dir);
        let provider = Self {
            port,
            issuer: format!("http://127.0.0.1:{port}"),
            options,
            dir,
            running,
        };
        provider.wait_ready().await;
        Some(provider)
    }

    /// Restarts the provider on the same port with new signing keys: its JWKS no longer
    /// has the old ones (and its sessions and codes are gone).
    pub async fn rotate_keys(&mut self) {
        self.running.terminate(Duration::from_secs(5));
        self.running = spawn(self.port, self.options, &self.dir);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let http = Client::new(std::path::Path::new("/dev/null"));
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        for _ in 0..(START_TIMEOUT.as_millis() / 100) {
            if let Ok(r) = http.get(&url).await
                && r.status == 200
            {
                return;
            }
            if self.running_exited() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the test OpenID provider did not answer {url}; its output:\n{}",
            self.running.output()
        );
    }

    fn running_exited(&self) -> bool {
        breakglass_test_support::process::is_gone(self.running.pid())
    }

    /// What the provider printed so far.
    pub fn output(&self) -> String {
        self.running.output()
    }

    /// The provider's current private signing keys (RS256, ES256).
    pub fn signing_keys(&self) -> Vec<SigningKey> {
        let text = std::fs::read_to_string(self.dir.path().join("keys.json")).expect("keys.json");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("keys.json is JSON");
        doc["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| SigningKey {
                kid: k["kid"].as_str().expect("kid").to_owned(),
                alg: k["alg"].as_str().expect("alg").to_owned(),
                pem: k["pem"].as_str().expect("pem").to_owned(),
            })
            .collect()
    }

    /// `[oidc]` settings for this provider and `client_id`: alice and carol's idp-sre →
    /// sre, bob's idp-dba → dba (1 h logins), only example.com, no leeway, keys fetched
    /// again at once for an unknown key id.
    pub fn settings(&self, client_id: &str) -> OidcSettings {
        OidcSettings {
            issuer: self.issuer.clone(),
            client_id: client_id.to_owned(),
            identity_claim: "email".into(),
            groups_claim: "groups".into(),
            group_map: BTreeMap::from([
                ("idp-sre".into(), vec!["sre".into()]),
                ("idp-dba".into(), vec!["dba".into()]),
            ]),
            allowed_domains: vec!["example.com".into()],
            login_ttl: Duration::from_secs(12 * 3600),
            group_login_ttl: BTreeMap::from([("dba".into(), Duration::from_secs(3600))]),
            ca_bundle: "/nonexistent/ca-bundle.pem".into(),
            leeway: Duration::ZERO,
            jwks_min_refresh: Duration::ZERO,
        }
    }

    /// The CLI's view of this provider for `client_id`.
    pub fn provider(&self, client_id: &str) -> Provider {
        let mut p = Provider::new(&self.issuer, client_id);
        p.scope = SCOPE.to_owned();
        p
    }

    /// The CLI's client of this provider for `client_id`, its endpoints discovered.
    pub async fn client(&self, client_id: &str) -> OidcClient {
        OidcClient::discover(self.provider(client_id))
            .await
            .expect("discovery of the test provider")
    }

    /// A whole device flow: the CLI starts it and polls, while `user`'s browser opens the
    /// verification page, enters the code, logs in and consents. The ID token.
    pub async fn device_login(&self, client_id: &str, user: &str, nonce: &str) -> String {
        let client = self.client(client_id).await;
        let login = client
            .start_device(nonce)
            .await
            .expect("device authorization");
        let mut browser = Browser::new();
        let (user, verification_uri, user_code) = (
            user.to_owned(),
            login.verification_uri.clone(),
            login.user_code.clone(),
        );
        let person = tokio::spawn(async move {
            browser
                .complete_device_flow(&verification_uri, &user_code, &user)
                .await;
        });
        let token = client.finish_device(&login).await;
        person.await.expect("the browser's part");
        token.expect("the device flow's ID token")
    }

    /// A whole authorization code flow with PKCE: the CLI listens on a loopback port,
    /// `user`'s browser opens the authorization URL, logs in, consents and is sent back
    /// to the CLI. The ID token.
    pub async fn code_login(&self, client_id: &str, user: &str, nonce: &str) -> String {
        let client = self.client(client_id).await;
        let login = client.start_code(nonce).await.expect("code flow start");
        let url = login.authorization_url.clone();
        let user = user.to_owned();
        let person = tokio::spawn(async move {
            let mut browser = Browser::new();
            let page = browser.log_in(Browser::get(&url), &user).await;
            assert!(
                page.text().contains("Logged in to breakglass"),
                "the browser ended at {} with {}",
                page.url,
                page.text()
            );
        });
        let token = client.finish_code(login, Duration::from_secs(60)).await;
        person.await.expect("the browser's part");
        token.expect("the code flow's ID token")
    }
}

fn spawn(port: u16, options: Options, dir: &tempfile::TempDir) -> Running {
    let mut cmd = Command::new("node");
    cmd.arg(provider_dir().join("server.mjs"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--client-id")
        .arg(CLIENT)
        .arg("--keys-out")
        .arg(dir.path().join("keys.json"))
        .arg("--device-ttl")
        .arg(options.device_ttl.to_string())
        .current_dir(provider_dir());
    if let Some(seconds) = options.enforced_interval {
        cmd.arg("--enforced-interval").arg(seconds.to_string());
    }
    Running::spawn(&mut cmd)
}

/// A page the browser arrived at.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where (after redirects).
    pub url: String,
    /// The answer.
    pub response: Response,
}

impl Page {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.response.body).into_owned()
    }

    /// The page's forms.
    pub fn forms(&self) -> Vec<Form> {
        forms(&self.text())
    }
}

/// A form of a page: where it posts, and its inputs as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// The `action`.
    pub action: String,
    /// `name` → `value` of its inputs, in order.
    pub inputs: Vec<(String, String)>,
}

impl Form {
    /// Whether it has an input `name`.
    pub fn has(&self, name: &str) -> bool {
        self.inputs.iter().any(|(n, _)| n == name)
    }
}

/// A person's browser, over plain HTTP: follows redirects, keeps cookies per origin,
/// submits forms.
#[derive(Debug)]
pub struct Browser {
    http: Client,
    cookies: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser without cookies.
    pub fn new() -> Self {
        Self {
            http: Client::new(std::path::Path::new("/dev/null")),
            cookies: BTreeMap::new(),
        }
    }

    /// A GET of `url`, for [`Browser::go`] and [`Browser::log_in`].
    pub fn get(url: &str) -> Request {
        Request {
            method: "GET",
            url: url.to_owned(),
            ..Request::default()
        }
    }

    /// Sends `req` and follows redirects (at most 20) to the page they end at.
    pub async fn go(&mut self, mut req: Request) -> Page {
        for _ in 0..20 {
            let origin = origin(&req.url);
            if let Some(jar) = self.cookies.get(&origin) {
                let cookie = jar
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                req.headers.push(("cookie".into(), cookie));
            }
            let url = req.url.clone();
            let response = self
                .http
                .send(req)
                .await
                .unwrap_or_else(|e| panic!("the browser could not load {url}: {e}"));
            for (name, value) in &response.headers {
                if name == "set-cookie"
                    && let Some((n, v)) = value.split(';').next().and_then(|c| c.split_once('='))
                {
                    let jar = self.cookies.entry(origin.clone()).or_default();
                    if v.is_empty() {
                        jar.remove(n.trim());
                    } else {
                        jar.insert(n.trim().to_owned(), v.to_owned());
                    }
                }
            }
            match (response.status, response.header("location")) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => {
                    req = Self::get(&resolve(&url, location));
                }
                _ => return Page { url, response },
            }
        }
        panic!("more than 20 redirects");
    }

    /// Submits `form` of `page` with `fields` set (the others as they are).
    pub async fn submit(&mut self, page: &Page, form: &Form, fields: &[(&str, &str)]) -> Page {
        let mut inputs = form.inputs.clone();
        for (name, value) in fields {
            match inputs.iter_mut().find(|(n, _)| n == name) {
                Some(input) => input.1 = (*value).to_owned(),
                None => inputs.push(((*name).to_owned(), (*value).to_owned())),
            }
        }
        self.go(Request {
            method: "POST",
            url: resolve(&page.url, &form.action),
            headers: Vec::new(),
            form: Some(inputs),
        })
        .await
    }

    /// From `req`, goes through the provider's pages as `user` would: the login form (user
    /// name and password), the consent page, a device confirmation; returns the first
    /// page with none of these (the end of the flow).
    pub async fn log_in(&mut self, req: Request, user: &str) -> Page {
        self.log_in_with(req, user, &format!("{user}-password"))
            .await
    }

    /// [`log_in`](Self::log_in) with `password`; a wrong one is typed once, and the page
    /// that answers it is returned.
    pub async fn log_in_with(&mut self, req: Request, user: &str, password: &str) -> Page {
        let mut page = self.go(req).await;
        let mut typed = false;
        for _ in 0..10 {
            let forms = page.forms();
            if let Some(form) = forms.iter().find(|f| f.has("password")) {
                if typed {
                    return page;
                }
                typed = true;
                let form = form.clone();
                page = self
                    .submit(&page, &form, &[("login", user), ("password", password)])
                    .await;
            } else if let Some(form) = forms
                .iter()
                .find(|f| f.has("confirm") || f.action.ends_with("/confirm"))
            {
                let form = form.clone();
                page = self.submit(&page, &form, &[]).await;
            } else {
                return page;
            }
        }
        panic!("the provider kept asking at {}: {}", page.url, page.text());
    }

    /// The person's part of a device flow: open `verification_uri`, enter `user_code`,
    /// log in as `user`, consent; asserts the provider's success page.
    pub async fn complete_device_flow(
        &mut self,
        verification_uri: &str,
        user_code: &str,
        user: &str,
    ) {
        let req = self.enter_user_code(verification_uri, user_code).await;
        let end = self.log_in(req, user).await;
        assert!(
            end.text().contains("Sign-in Success"),
            "the device flow ended at {} with {}",
            end.url,
            end.text()
        );
    }

    /// A person who enters `user_code` but then presses Abort on the provider's
    /// confirmation page; returns the page the provider shows then.
    pub async fn abort_device_flow(&mut self, verification_uri: &str, user_code: &str) -> Page {
        let req = self.enter_user_code(verification_uri, user_code).await;
        let page = self.go(req).await;
        let form = page
            .forms()
            .into_iter()
            .find(|f| f.has("confirm"))
            .unwrap_or_else(|| panic!("no confirmation at {}: {}", page.url, page.text()));
        self.submit(&page, &form, &[("abort", "yes")]).await
    }

    /// Opens `verification_uri` and fills in `user_code`: the request that submits it.
    pub async fn enter_user_code(&mut self, verification_uri: &str, user_code: &str) -> Request {
        let page = self.go(Self::get(verification_uri)).await;
        let form = page
            .forms()
            .into_iter()
            .find(|f| f.has("user_code"))
            .unwrap_or_else(|| panic!("no user code form at {}: {}", page.url, page.text()));
        let mut inputs = form.inputs.clone();
        for input in &mut inputs {
            if input.0 == "user_code" {
                input.1 = user_code.to_owned();
            }
        }
        Request {
            method: "POST",
            url: resolve(&page.url, &form.action),
            headers: Vec::new(),
            form: Some(inputs),
        }
    }
}

/// `scheme://host:port` of `url`.
fn origin(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    url[..end].to_owned()
}

/// `location` against `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

/// The forms of an HTML page and their inputs (enough HTML for the provider's pages).
pub fn forms(html: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start..];
        let end = after.find("</form>").unwrap_or(after.len());
        let body = &after[..end];
        let tag_end = body.find('>').unwrap_or(body.len());
        let action = attribute(&body[..tag_end], "action").unwrap_or_default();
        let mut inputs = Vec::new();
        let mut inner = &body[tag_end..];
        while let Some(i) = inner.find("<input") {
            let tag = &inner[i..];
            let close = tag.find('>').unwrap_or(tag.len());
            if let Some(name) = attribute(&tag[..close], "name") {
                inputs.push((name, attribute(&tag[..close], "value").unwrap_or_default()));
            }
            inner = &tag[close..];
        }
        out.push(Form { action, inputs });
        rest = &after[end..];
    }
    out
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&amp;", "&")
            .replace("&#34;", "\"")
            .replace("&quot;", "\""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_their_inputs_are_read() {
        let html = r#"<p>x</p><form id="f" method="post" action="http://h/device?a=1&amp;b=2">
<input type="hidden" name="xsrf" value="abc"/><input type="text" name="user_code" placeholder="code"/>
</form><form method="post" action="/interaction/u/confirm"><button>Go</button></form>"#;
        let f = forms(html);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].action, "http://h/device?a=1&b=2");
        assert_eq!(
            f[0].inputs,
            vec![
                ("xsrf".into(), "abc".into()),
                ("user_code".into(), String::new())
            ]
        );
        assert!(f[1].inputs.is_empty());
        assert_eq!(resolve("http://h:1/a/b", "/c"), "http://h:1/c");
        assert_eq!(resolve("http://h:1/a/b", "http://x/y"), "http://x/y");
    }
}
