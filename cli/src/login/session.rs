//! `breakglass login`: the daemon's side of a login. The daemon gives a one-time nonce and
//! names its OpenID Connect provider (`Enrollment/BeginLogin`); the person gets an ID token
//! carrying that nonce from the provider ([`super::oidc`]: device flow, or code + PKCE in a
//! browser); a new key is made here and never leaves this machine; the daemon checks the
//! token and signs a short-lived client certificate for the key (`Enrollment/Login`). The
//! key, the certificate and the daemon's TLS CA go into the login directory (default
//! `~/.config/breakglass/`), with a `client.toml` pointing at them that every other command
//! reads by default.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use breakglass_proto::v1::enrollment_client::EnrollmentClient;
use breakglass_proto::v1::{BeginLoginRequest, BeginLoginResponse, LoginRequest, LoginResponse};
use clap::Args;
use tonic::transport::Channel;

use super::oidc::{OidcClient, Provider};
use crate::commands::write_atomic;
use crate::error::CliError;
use crate::host::enroll::{fetch_tls_ca, new_key_and_csr, pin, pinned_channel, toml_string};
use crate::settings::Overrides;

/// The client settings file a login writes (and the default one every command reads).
pub const CLIENT_FILE: &str = "client.toml";
const KEY_FILE: &str = "login.key";
const CERT_FILE: &str = "login.crt";
const TLS_CA_FILE: &str = "ca.crt";
/// First line of a `client.toml` written by a login: only such a file is replaced.
const WRITTEN_BY_LOGIN: &str = "# breakglass client settings, written by `breakglass login`";

/// `breakglass login`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "With the device flow (the default) it prints a URL and a code: \
    open the URL on any device with a browser, enter the code and log in there; this works \
    on a jump host without a browser. With --browser it listens on a loopback port for the \
    provider's redirect (authorization code with PKCE). The daemon's TLS CA comes from \
    --ca-cert (or the client config), or on first contact from the daemon itself, checked \
    against --ca-fingerprint. When the organisation's provider is down, log in with an \
    enrolled SSH key instead: --ssh-key FILE signs the daemon's one-time challenge with \
    `ssh-keygen -Y sign` (FILE is a private key, or the .pub of a key in ssh-agent; a FIDO2 \
    sk- key asks for a touch). Such a login reaches what each tier's ssh_key_login allows, \
    by default only declared emergencies (breakglass request --emergency); see README, \
    \"Break-glass login with an SSH key\".\n\nExamples:\n  \
    breakglass login --server https://ca.example.com:8443 --ca-fingerprint SHA256:...\n  \
    breakglass login --browser\n  \
    breakglass login --ssh-key ~/.ssh/id_ed25519_sk"
)]
pub struct LoginArgs {
    /// SHA-256 fingerprint of the daemon's TLS CA (SHA256:<base64>, from your
    /// administrator): checked on first contact, before anything else is sent. Not needed
    /// with --ca-cert or a client config that names the CA
    #[arg(long, value_name = "SHA256:...")]
    pub ca_fingerprint: Option<String>,
    /// Log in in a browser on this machine (authorization code + PKCE on a loopback
    /// redirect) instead of the device flow
    #[arg(long)]
    pub browser: bool,
    /// Where the key (0600), the certificate, the daemon's CA and client.toml go
    /// [default: ~/.config/breakglass]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The break-glass login, without the identity provider: sign the daemon's challenge
    /// with this enrolled SSH key (a private key file, or the .pub of a key in ssh-agent;
    /// FIDO2 sk- keys ask for a touch)
    #[arg(long, value_name = "FILE", conflicts_with = "browser")]
    pub ssh_key: Option<PathBuf>,
}

/// A login under way: the daemon's answer to `BeginLogin` and how to reach it.
#[derive(Debug)]
pub struct Begun {
    /// The nonce, the provider's issuer and client id.
    pub begin: BeginLoginResponse,
    /// The daemon's address.
    pub url: String,
    /// Its TLS CA (PEM).
    pub ca_pem: String,
    /// Name to verify in its certificate, if not the host of `url`.
    pub server_name: Option<String>,
    /// Further daemons of the same log the settings name (`--server` repeated, `servers`):
    /// not used by the login (its nonce is `url`'s), kept in the settings it writes.
    pub fallbacks: Vec<String>,
    channel: Channel,
}

/// What a login wrote.
#[derive(Debug)]
pub struct LoggedIn {
    /// The daemon's answer.
    pub answer: LoginResponse,
    /// The client settings written (or the files, when an existing `client.toml` was left).
    pub config: PathBuf,
    /// True when `config` is a `client.toml` this login wrote.
    pub wrote_config: bool,
}

fn default_dir() -> Result<PathBuf, CliError> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("breakglass"))
        .ok_or_else(|| {
            CliError::Usage("neither HOME nor XDG_CONFIG_HOME is set: give --dir".into())
        })
}

/// Asks the daemon for a login nonce, over a connection that verifies the daemon (its CA
/// from the settings, or pinned by `ca_fingerprint` on first contact).
pub async fn begin(overrides: &Overrides, ca_fingerprint: Option<&str>) -> Result<Begun, CliError> {
    begin_method(overrides, ca_fingerprint, "").await
}

/// [`begin`] for a login `method`: "" (OpenID Connect) or
/// [`breakglass_proto::ssh_login::BEGIN_SSH_KEY`].
pub async fn begin_method(
    overrides: &Overrides,
    ca_fingerprint: Option<&str>,
    method: &str,
) -> Result<Begun, CliError> {
    let file = overrides.client_file()?;
    let mut servers = overrides.servers(&file);
    let fallbacks = servers.split_off(servers.len().min(1));
    let url = servers.pop().ok_or_else(|| {
        CliError::Usage(
            "give the daemon's address: breakglass login --server https://HOST:PORT ...".into(),
        )
    })?;
    if url.starts_with("unix://") {
        return Err(CliError::Usage(
            "the admin socket needs no login: use breakglass with --server https://HOST:PORT"
                .into(),
        ));
    }
    let server_name = overrides.server_name.clone().or(file.server_name);
    let ca_pem = match (ca_fingerprint, overrides.ca_cert.clone().or(file.ca_cert)) {
        (Some(fp), _) => {
            let fetched = fetch_tls_ca(&url, server_name.as_deref()).await?;
            pin(&fetched, fp)?
        }
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| CliError::Config(format!("the daemon's CA {}: {e}", path.display())))?,
        (None, None) => {
            return Err(CliError::Usage(
                "give the daemon's TLS CA: --ca-fingerprint SHA256:... (from your administrator) or --ca-cert FILE".into(),
            ));
        }
    };
    let channel = pinned_channel(&url, &ca_pem, server_name.as_deref())?;
    let begin = EnrollmentClient::new(channel.clone())
        .begin_login(BeginLoginRequest {
            method: method.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| CliError::from_status(s, &url))?;
    Ok(Begun {
        begin,
        url,
        ca_pem,
        server_name,
        fallbacks,
        channel,
    })
}

/// Trades `id_token` (carrying the login's nonce) and a new key's CSR for a client
/// certificate, and writes the key, the certificate, the CA and the client settings
/// into `dir` (or the default directory).
pub async fn finish(
    begun: Begun,
    id_token: &str,
    dir: Option<&Path>,
) -> Result<LoggedIn, CliError> {
    finish_with(begun, id_token, "", dir).await
}

/// Trades `signature` (`ssh-keygen -Y sign` of the login's challenge by an enrolled SSH
/// key, [`super::ssh_key::sign_login`]) for a client certificate, as [`finish`] does.
pub async fn finish_ssh_key(
    begun: Begun,
    signature: &str,
    dir: Option<&Path>,
) -> Result<LoggedIn, CliError> {
    finish_with(begun, "", signature, dir).await
}

async fn finish_with(
    begun: Begun,
    id_token: &str,
    ssh_signature: &str,
    dir: Option<&Path>,
) -> Result<LoggedIn, CliError> {
    let (key_pem, csr_der) = new_key_and_csr()?;
    let answer = EnrollmentClient::new(begun.channel.clone())
        .login(LoginRequest {
            nonce: begun.begin.nonce.clone(),
            id_token: id_token.to_owned(),
            csr_der,
            ssh_signature: ssh_signature.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| CliError::from_status(s, &begun.url))?;
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => default_dir()?,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Io(format!("creating {}: {e}", dir.display())))?;
    write_atomic(&dir.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_atomic(
        &dir.join(CERT_FILE),
        answer.certificate_pem.as_bytes(),
        0o644,
    )?;
    let ca = if answer.tls_ca_pem.is_empty() {
        &begun.ca_pem
    } else {
        &answer.tls_ca_pem
    };
    write_atomic(&dir.join(TLS_CA_FILE), ca.as_bytes(), 0o644)?;
    let config = dir.join(CLIENT_FILE);
    let ours = match std::fs::read_to_string(&config) {
        Ok(text) => text.starts_with(WRITTEN_BY_LOGIN),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(CliError::Io(format!("reading {}: {e}", config.display()))),
    };
    if ours {
        let mut toml = format!(
            "{WRITTEN_BY_LOGIN} for {identity}.\n\
             # Relative paths are relative to this file; the next login replaces it.\n\
             server = {server}\n\
             ca_cert = \"{TLS_CA_FILE}\"\n\
             cert = \"{CERT_FILE}\"\n\
             key = \"{KEY_FILE}\"\n",
            identity = answer.identity,
            server = toml_string(&begun.url),
        );
        if let Some(n) = &begun.server_name {
            toml.push_str(&format!("server_name = {}\n", toml_string(n)));
        }
        if !begun.fallbacks.is_empty() {
            let list: Vec<String> = begun.fallbacks.iter().map(|s| toml_string(s)).collect();
            toml.push_str(&format!("servers = [{}]\n", list.join(", ")));
        }
        write_atomic(&config, toml.as_bytes(), 0o644)?;
    }
    Ok(LoggedIn {
        answer,
        config,
        wrote_config: ours,
    })
}

/// `breakglass login`: the whole login, the provider's part on stderr.
pub async fn run(args: &LoginArgs, overrides: &Overrides) -> Result<String, CliError> {
    if let Some(key) = &args.ssh_key {
        let begun = begin_method(
            overrides,
            args.ca_fingerprint.as_deref(),
            breakglass_proto::ssh_login::BEGIN_SSH_KEY,
        )
        .await?;
        let signature = super::ssh_key::sign_login(key, &begun.ca_pem, &begun.begin.nonce)?;
        let done = finish_ssh_key(begun, &signature, args.dir.as_deref()).await?;
        return Ok(describe(&done));
    }
    let begun = begin(overrides, args.ca_fingerprint.as_deref()).await?;
    let provider = Provider::new(&begun.begin.issuer, &begun.begin.client_id);
    let client = OidcClient::discover(provider).await?;
    let nonce = begun.begin.nonce.clone();
    let id_token = if args.browser {
        let login = client.start_code(&nonce).await?;
        eprintln!(
            "Open this URL in your browser and log in:\n\n  {}\n",
            login.authorization_url
        );
        client
            .finish_code(login, super::oidc::CODE_FLOW_TIMEOUT)
            .await?
    } else {
        let login = client.start_device(&nonce).await?;
        eprintln!("{}", login.instructions());
        client.finish_device(&login).await?
    };
    let done = finish(begun, &id_token, args.dir.as_deref()).await?;
    Ok(describe(&done))
}

/// What a login says when it is done.
#[must_use]
pub fn describe(done: &LoggedIn) -> String {
    let a = &done.answer;
    let groups = if a.groups.is_empty() {
        "none".to_owned()
    } else {
        a.groups.join(", ")
    };
    let until = breakglass_proto::audit::fields::rfc3339(u64::try_from(a.not_after).unwrap_or(0));
    let settings = if done.wrote_config {
        format!("client settings: {}", done.config.display())
    } else {
        format!(
            "{} was not written by a login and was left alone: point its cert, key and ca_cert at {}, {} and {} beside it",
            done.config.display(),
            CERT_FILE,
            KEY_FILE,
            TLS_CA_FILE
        )
    };
    let method = if a.method == breakglass_proto::ssh_login::SSH_KEY_METHOD {
        "This is the break-glass login (an SSH key): each tier takes it as its ssh_key_login \
         says, by default only for a declared emergency (breakglass request --emergency).\n"
    } else {
        ""
    };
    format!(
        "Logged in as {} (groups: {groups}) until {until}.\n{method}{settings}\n",
        a.identity
    )
}
