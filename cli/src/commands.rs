//! The `breakglass` subcommands.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::{
    CaPublicKey, GetCaPublicKeysRequest, RequestCertificateRequest, RequestCertificateResponse,
    WhoAmIRequest, WhoAmIResponse,
};

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// Everything `breakglass request` needs.
#[derive(Debug, Clone)]
pub struct RequestArgs {
    /// Hosts (names or patterns the policy names).
    pub hosts: Vec<String>,
    /// Unix accounts.
    pub principals: Vec<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// Why.
    pub reason: String,
    /// Forced command.
    pub command: Option<String>,
    /// source-address CIDRs.
    pub source_addresses: Vec<String>,
    /// Public key file; default: the first of ~/.ssh/id_{ed25519,ecdsa,rsa}.pub.
    pub public_key: Option<PathBuf>,
    /// permit-* extensions to ask for.
    pub permit: Vec<String>,
    /// Add the key to the ssh-agent at this socket for the certificate's lifetime.
    pub add_to_agent: Option<PathBuf>,
}

/// Where the key, its public half and the certificate live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// The public key file.
    pub public: PathBuf,
    /// The private key (the public path without `.pub`).
    pub private: PathBuf,
    /// `<private>-cert.pub`, where ssh looks for the certificate.
    pub certificate: PathBuf,
}

impl KeyPaths {
    /// Derives the private key and certificate paths from a public key path.
    pub fn from_public(public: &Path) -> Self {
        let s = public.to_string_lossy();
        let private = PathBuf::from(s.strip_suffix(".pub").unwrap_or(&s));
        let certificate = PathBuf::from(format!("{}-cert.pub", private.display()));
        Self {
            public: public.to_owned(),
            private,
            certificate,
        }
    }
}

/// The key paths and public key text for a request (`--public-key` or the default key).
pub fn read_public_key(public_key: Option<&Path>) -> Result<(KeyPaths, String), CliError> {
    let public = match public_key {
        Some(p) => p.to_owned(),
        None => default_public_key()?,
    };
    let paths = KeyPaths::from_public(&public);
    let text = public_key_line(&paths.public)?;
    Ok((paths, text))
}

/// The OpenSSH public key line in the file at `path`, checked before it is sent: a
/// private key (OpenSSH or PEM) is refused here and never leaves this machine.
pub fn public_key_line(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("public key {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.trim();
    if line.contains("PRIVATE KEY-----") {
        let shown = path.display();
        let public = format!("{}.pub", shown.to_string().trim_end_matches(".pub"));
        let hint = if Path::new(&public).exists() {
            format!("pass the .pub file ({public})")
        } else {
            format!(
                "pass the .pub file (make one with `ssh-keygen -y -f {shown} > {public}` if it \
                 is missing)"
            )
        };
        return Err(CliError::Data(format!(
            "public key {shown}: this is a private key; {hint}. Nothing was sent"
        )));
    }
    match ssh_key::PublicKey::from_openssh(line) {
        Ok(_) => Ok(line.to_owned()),
        Err(e) => Err(CliError::Data(format!(
            "public key {}: not an OpenSSH public key line ({e}); pass the .pub file of your \
             SSH key (one line: `ssh-ed25519 AAAA… comment`), e.g. ~/.ssh/id_ed25519.pub",
            path.display()
        ))),
    }
}

/// The wire request for `args`.
pub fn wire_request(
    args: &RequestArgs,
    public_key: String,
    emergency: bool,
) -> RequestCertificateRequest {
    RequestCertificateRequest {
        public_key,
        principals: args.principals.clone(),
        hosts: args.hosts.clone(),
        ttl_seconds: i64::try_from(args.ttl.as_secs()).unwrap_or(i64::MAX),
        reason: args.reason.clone(),
        force_command: args.command.clone().unwrap_or_default(),
        source_addresses: args.source_addresses.clone(),
        extensions: args.permit.clone(),
        emergency,
        drill: false,
    }
}

/// Writes an issued certificate next to the key (and adds it to the agent).
pub fn save_certificate(
    paths: KeyPaths,
    response: RequestCertificateResponse,
    agent: Option<&Path>,
) -> Result<RequestOutcome, CliError> {
    write_atomic(
        &paths.certificate,
        format!("{}\n", response.certificate.trim_end()).as_bytes(),
        0o644,
    )?;
    if let Some(agent) = agent {
        add_to_agent(agent, &paths, response.valid_before)?;
    }
    Ok(RequestOutcome { response, paths })
}

fn default_public_key() -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| CliError::Usage("HOME is not set; pass --public-key FILE".into()))?;
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .find(|p| p.exists())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no public key found in {}/.ssh; create one with `ssh-keygen -t ed25519` or pass --public-key FILE",
                home.display()
            ))
        })
}

/// Writes `contents` to `path` atomically (temp file in the same directory,
/// fsync, rename) with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Io(format!("writing {}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(contents).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What `request` did, for printing and for callers that drive the CLI as a library.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// The daemon's answer.
    pub response: RequestCertificateResponse,
    /// Where things are.
    pub paths: KeyPaths,
}

/// Asks for a certificate, waits until it is issued (or the request ends),
/// and writes it next to the key. `breakglass request` uses
/// [`crate::approvals::request_live`], which also shows the waiting live.
pub async fn request(target: &Target, args: &RequestArgs) -> Result<RequestOutcome, CliError> {
    let (paths, public_key) = read_public_key(args.public_key.as_deref())?;
    let mut client = connect::client(target)?;
    let response = client
        .request_certificate(wire_request(args, public_key, false))
        .await
        .answer(target)?;
    save_certificate(paths, response, args.add_to_agent.as_deref())
}

/// The ssh-agent socket for `--add-to-agent` (`None` without the flag), checked before
/// asking, so that a missing agent does not waste a grant.
pub fn agent_socket(add_to_agent: bool) -> Result<Option<PathBuf>, CliError> {
    match (add_to_agent, std::env::var_os("SSH_AUTH_SOCK")) {
        (false, _) => Ok(None),
        (true, Some(sock)) => Ok(Some(PathBuf::from(sock))),
        (true, None) => Err(CliError::Usage(
            "--add-to-agent: no ssh-agent is running (SSH_AUTH_SOCK is not set); start one with `eval $(ssh-agent)` or drop the flag".into(),
        )),
    }
}

/// Seconds from now until `valid_before` (Unix seconds), at least 1.
pub fn remaining(valid_before: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (valid_before - now).max(1) as u64
}

fn add_to_agent(agent: &Path, paths: &KeyPaths, valid_before: i64) -> Result<(), CliError> {
    let secs = remaining(valid_before);
    // ssh-add loads <key> and <key>-cert.pub together; -t makes the agent drop both at expiry.
    let status = std::process::Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", agent)
        .arg("-t")
        .arg(secs.to_string())
        .arg(&paths.private)
        .status()
        .map_err(|e| CliError::Io(format!("running ssh-add: {e}")))?;
    if !status.success() {
        return Err(CliError::Io(format!(
            "ssh-add -t {secs} {} failed ({status}); the certificate was written anyway",
            paths.private.display()
        )));
    }
    Ok(())
}

/// The `ssh` command line that uses the certificate to log in to `host`.
pub fn ssh_command(outcome: &RequestOutcome, host: &str) -> String {
    let user = outcome
        .response
        .principals
        .first()
        .map(String::as_str)
        .unwrap_or("USER");
    // The user comes from the daemon's answer: shown escaped like every received text.
    let (user, host) = (esc(user), esc(host));
    format!(
        "ssh -i {} -o CertificateFile={} {user}@{host}",
        shell_quote(&outcome.paths.private.display().to_string()),
        shell_quote(&outcome.paths.certificate.display().to_string()),
    )
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-~+=:@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Human summary of an issued certificate.
pub fn describe(outcome: &RequestOutcome, first_host: &str) -> String {
    let r = &outcome.response;
    let until = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(r.valid_before.max(0) as u64),
    );
    format!(
        "Certificate written to {cert}\n  grant {grant}  serial {serial}  tier {tier}  rule {rule}\n  principals {principals}  extensions {ext}\n  valid until {until} ({left} from now)\n\nLog in with:\n  {ssh}\n",
        cert = esc(&outcome.paths.certificate.display().to_string()),
        grant = esc(&r.grant_id),
        serial = r.serial,
        tier = esc(&r.tier),
        rule = esc(&r.rule),
        principals = esc(&r.principals.join(",")),
        ext = if r.extensions.is_empty() {
            "none".to_owned()
        } else {
            esc(&r.extensions.join(",")).to_string()
        },
        left = humantime::format_duration(Duration::from_secs(remaining(r.valid_before))),
        ssh = ssh_command(outcome, first_host),
    )
}

/// Fetches the CA public keys, one OpenSSH line each (signing key first).
pub async fn ca_keys(target: &Target) -> Result<Vec<String>, CliError> {
    let keys = ca_public_keys(target).await?;
    Ok(keys.into_iter().map(|k| k.public_key).collect())
}

/// Fetches the CA public keys with their fingerprints (signing key first).
pub async fn ca_public_keys(target: &Target) -> Result<Vec<CaPublicKey>, CliError> {
    ca_public_keys_on(target, connect::channel(target)?).await
}

/// [`ca_public_keys`] over a connection the caller already has.
pub async fn ca_public_keys_on(
    target: &Target,
    channel: connect::Channel,
) -> Result<Vec<CaPublicKey>, CliError> {
    Ok(
        breakglass_proto::v1::break_glass_client::BreakGlassClient::new(channel)
            .get_ca_public_keys(GetCaPublicKeysRequest {})
            .await
            .answer(target)?
            .keys,
    )
}

/// Asks the daemon who we are.
pub async fn who_am_i(target: &Target) -> Result<WhoAmIResponse, CliError> {
    let mut client = connect::client(target)?;
    client.who_am_i(WhoAmIRequest {}).await.answer(target)
}

/// Asks the daemon who we are, as `whoami` prints it.
pub async fn whoami(target: &Target) -> Result<String, CliError> {
    let r = who_am_i(target).await?;
    Ok(format!(
        "{} (via {}; groups: {})",
        esc(&r.identity),
        esc(&r.transport),
        if r.groups.is_empty() {
            "none".to_owned()
        } else {
            esc(&r.groups.join(", ")).to_string()
        }
    ))
}
