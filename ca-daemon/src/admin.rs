//! `breakglass-ca token create` and `breakglass-ca identity disable`: administration
//! through the running daemon's admin socket (the caller is identified by `SO_PEERCRED`;
//! the daemon records the change in its audit log, so it is the one writer).

use std::path::PathBuf;
use std::time::Duration;

use breakglass_proto::audit::fields::rfc3339;
use breakglass_proto::v1::identities_client::IdentitiesClient;
use breakglass_proto::v1::{CreateJoinTokensRequest, DisableIdentityRequest, SshKeyRequest};
use clap::Args;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;

/// Where the packaged daemon's configuration is.
pub const DEFAULT_CONFIG: &str = "/etc/breakglass-ca/breakglass-ca.toml";

/// How to reach the running daemon's admin socket.
#[derive(Debug, Args, Clone)]
pub struct AdminSocket {
    /// The daemon's configuration, to find its [server] admin_socket
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The admin socket itself (instead of the one the configuration names)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// Why an administration command failed, with its exit status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The configuration or a flag is wrong (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The daemon could not be reached (exit 69).
    #[error("{0}")]
    Unavailable(String),
    /// The daemon refused (exit 77 for a refusal of the caller, 65 for bad input, 69 else).
    #[error("{}", .0.message())]
    Refused(tonic::Status),
}

impl AdminError {
    /// The exit status (sysexits.h).
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Usage(_) => 64,
            AdminError::Unavailable(_) => 69,
            AdminError::Refused(s) => match s.code() {
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => 77,
                tonic::Code::InvalidArgument => 65,
                tonic::Code::FailedPrecondition => 78,
                _ => 69,
            },
        }
    }
}

impl AdminSocket {
    async fn channel(&self) -> Result<Channel, AdminError> {
        let path = match &self.socket {
            Some(p) => p.clone(),
            None => Config::load(&self.config)
                .map_err(|e| AdminError::Usage(e.to_string()))?
                .server
                .admin_socket
                .ok_or_else(|| {
                    AdminError::Usage(format!(
                        "{} sets no [server] admin_socket: set one (and restart the daemon), or \
                         pass --socket PATH",
                        self.config.display()
                    ))
                })?,
        };
        Endpoint::from_shared(format!("unix://{}", path.display()))
            .map_err(|e| AdminError::Usage(format!("admin socket {}: {e}", path.display())))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .map_err(|e| {
                AdminError::Unavailable(format!(
                    "cannot reach the daemon's admin socket {} ({e}): is breakglass-ca running, \
                     and are you root or the daemon's user?",
                    path.display()
                ))
            })
    }
}

/// `breakglass-ca token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create one-time join tokens for a host and print them, one a line (stdout), with the
    /// `breakglass host enroll` command to run on the host (stderr)
    ///
    /// Each token enrolls the host once: `breakglass host enroll --server URL --token T
    /// --ca-fingerprint SHA256:...` gets it the client certificate host://NAME in the group
    /// hosts. Only the tokens' SHA-256 hashes are recorded (audit event
    /// join_token_created); a used token is recorded in the certificate's
    /// client_certificate_issued event. Needs [server] client_ca_key.
    Create(TokenCreateArgs),
}

/// `breakglass-ca token create`.
#[derive(Debug, Args, Clone)]
pub struct TokenCreateArgs {
    /// The host's name: its certificate will name host://NAME
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// How long the tokens stay usable [default: [enrollment] token_ttl, 1h]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// How many tokens (each usable once; at most 100)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u32,
    #[command(flatten)]
    pub socket: AdminSocket,
}

/// `breakglass-ca identity ...`.
#[derive(Debug, clap::Subcommand)]
pub enum IdentityCmd {
    /// Disable an identity at once: every call with its client certificates is refused from
    /// now on (checked on each call), and its live grants are revoked (their sessions end)
    ///
    /// Recorded as identity_disabled (and grant_revoked for each grant). Works for
    /// identities of [[identities]] and enrolled hosts alike; a person who leaves is cut off
    /// in one command.
    Disable(IdentityDisableArgs),
    /// Enroll an SSH public key for a person's break-glass login (`breakglass login
    /// --ssh-key`, which needs no OpenID provider)
    ///
    /// The identity must be in [[identities]] or have logged in before (its groups come from
    /// there). Accepted: sk-ssh-ed25519@openssh.com and sk-ecdsa-sha2-nistp256@openssh.com
    /// (FIDO2 keys, recommended: a touch per login), ed25519, ecdsa, rsa of 2048 bits or
    /// more; DSA and short RSA keys are refused. A key logs in one identity. Recorded as
    /// ssh_key_added. What such a login may do is each tier's ssh_key_login (by default
    /// only declared emergencies).
    AddKey(IdentityKeyArgs),
    /// Remove an SSH public key enrolled with add-key (recorded as ssh_key_removed)
    ///
    /// Keys listed in [[identities]] ssh_keys are removed from the configuration instead
    /// (then reload). Client certificates the key already got stay valid until they expire:
    /// to cut the person off at once, use `identity disable`.
    RemoveKey(IdentityKeyArgs),
}

/// `breakglass-ca identity add-key` / `remove-key`.
#[derive(Debug, Args, Clone)]
pub struct IdentityKeyArgs {
    /// The person's identity: a client certificate's SAN (sre@example.com)
    #[arg(value_name = "ID")]
    pub identity: String,
    /// The public key file (e.g. ~/.ssh/id_ed25519_sk.pub), one OpenSSH line
    #[arg(long, value_name = "FILE.pub")]
    pub key: std::path::PathBuf,
    #[command(flatten)]
    pub socket: AdminSocket,
}

/// `breakglass-ca identity disable`.
#[derive(Debug, Args, Clone)]
pub struct IdentityDisableArgs {
    /// The identity: a client certificate's SAN (sre@example.com, host://db-7)
    #[arg(value_name = "ID")]
    pub identity: String,
    /// Why (recorded)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub socket: AdminSocket,
}

/// What `token create` prints: the tokens (stdout), and how to use them (stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    /// For stdout.
    pub out: String,
    /// For stderr.
    pub err: String,
}

/// `breakglass-ca token create`.
pub async fn token_create(args: &TokenCreateArgs) -> Result<Printed, AdminError> {
    let mut client = IdentitiesClient::new(args.socket.channel().await?);
    let r = client
        .create_join_tokens(CreateJoinTokensRequest {
            host: args.host.clone(),
            ttl_seconds: args.ttl.map_or(0, |d| d.as_secs().max(1)),
            count: args.count,
        })
        .await
        .map_err(AdminError::Refused)?
        .into_inner();
    let server = Config::load(&args.socket.config)
        .ok()
        .map(|c| c.server.listen)
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
        .map_or_else(
            || "https://CA-HOST:PORT".to_owned(),
            |a| format!("https://{a}"),
        );
    Ok(Printed {
        out: r.tokens.iter().map(|t| format!("{t}\n")).collect(),
        err: format!(
            "{n} one-time join token(s) for {id}, usable until {until}. On the host, as root:\n  \
             breakglass host enroll --server {server} --token TOKEN --ca-fingerprint {fp}\n",
            n = r.tokens.len(),
            id = r.identity,
            until = rfc3339(u64::try_from(r.expires_at).unwrap_or(0)),
            fp = r.ca_fingerprint,
        ),
    })
}

/// `breakglass-ca identity disable`.
pub async fn identity_disable(args: &IdentityDisableArgs) -> Result<String, AdminError> {
    let mut client = IdentitiesClient::new(args.socket.channel().await?);
    let r = client
        .disable_identity(DisableIdentityRequest {
            identity: args.identity.clone(),
            reason: args.reason.clone(),
        })
        .await
        .map_err(AdminError::Refused)?
        .into_inner();
    let head = if r.already_disabled {
        format!("{} was disabled already", args.identity)
    } else {
        format!(
            "{} disabled (audit index {}): its client certificates are refused from now on",
            args.identity, r.audit_index
        )
    };
    Ok(if r.revoked_grants.is_empty() {
        format!("{head}; it held no live grant\n")
    } else {
        format!(
            "{head}; revoked its live grant(s) {}\n",
            r.revoked_grants.join(", ")
        )
    })
}

/// `breakglass-ca identity add-key` (`add`) or `remove-key`.
pub async fn identity_key(args: &IdentityKeyArgs, add: bool) -> Result<String, AdminError> {
    let line = std::fs::read_to_string(&args.key).map_err(|e| {
        AdminError::Usage(format!(
            "reading the public key {}: {e}",
            args.key.display()
        ))
    })?;
    let line = line
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| {
            AdminError::Usage(format!(
                "{} holds no public key line (\"ssh-ed25519 AAAA...\")",
                args.key.display()
            ))
        })?
        .to_owned();
    let mut client = IdentitiesClient::new(args.socket.channel().await?);
    let req = SshKeyRequest {
        identity: args.identity.clone(),
        public_key: line,
    };
    let r = if add {
        client.add_ssh_key(req).await
    } else {
        client.remove_ssh_key(req).await
    }
    .map_err(AdminError::Refused)?
    .into_inner();
    Ok(match (add, r.changed) {
        (true, true) => format!(
            "{} enrolled for {} (audit index {}): `breakglass login --ssh-key` with it logs {} in\n",
            r.fingerprint, args.identity, r.audit_index, args.identity
        ),
        (true, false) => format!(
            "{} was enrolled for {} already\n",
            r.fingerprint, args.identity
        ),
        (false, true) => format!(
            "{} removed from {} (audit index {}): it no longer logs in\n",
            r.fingerprint, args.identity, r.audit_index
        ),
        (false, false) => format!("{} was not enrolled for {}\n", r.fingerprint, args.identity),
    })
}
