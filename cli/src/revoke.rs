//! `breakglass revoke`: revoke grants by grant id, serial, requester or public key.
//! The daemon records one audit event per revoked grant, publishes a new KRL and
//! tells the hosts' revocation watchers, which end open sessions and refuse new logins
//! at once. Revoking by public key also revokes the key itself, for good.
//!
//! A revocation whose KRL could not be published (the daemon could not record it, e.g.
//! its audit disk is full) is not done for hosts that read only the KRL: the command
//! says what hosts see meanwhile and what to do, and exits 69.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_proto::v1::{RevokeRequest, RevokeResponse};
use clap::{ArgGroup, Args};

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// `breakglass revoke`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Exits 0 once the revocation is recorded in the audit log and a \
    KRL that lists it is published. Exits 69 when it is recorded but its KRL could not be \
    published (the daemon cannot write its audit log, e.g. the disk is full), and says what \
    hosts see: hosts that follow the revocation stream have it already (they end the grant's \
    sessions and refuse new ones); hosts that read only the KRL keep the old one, so sshd \
    there still accepts the certificate, until the daemon publishes the new KRL, which it \
    does by itself as soon as it can write again (no need to revoke again). Exits 69 as well \
    when nothing could be recorded at all."
)]
#[command(group(
    ArgGroup::new("which")
        .required(true)
        .args(["grant", "serial", "requester", "public_key"])
))]
pub struct RevokeCmd {
    /// Revoke this grant (g-…)
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Revoke the grant of this certificate serial
    #[arg(long, value_name = "N")]
    pub serial: Option<u64>,
    /// Revoke every live grant of this requester identity
    #[arg(long, value_name = "IDENTITY")]
    pub requester: Option<String>,
    /// Revoke every live grant whose certificate is for this public key, and the key
    /// itself for good: every KRL from now on names it (so no other certificate for it
    /// gets in, e.g. one signed offline) and no certificate is issued for it again
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Why (recorded in the audit log and sent to the hosts)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

impl RevokeCmd {
    /// The request this command line asks for.
    pub fn request(&self) -> Result<RevokeRequest, CliError> {
        let target = if let Some(g) = &self.grant {
            Selector::GrantId(g.clone())
        } else if let Some(s) = self.serial {
            Selector::Serial(s)
        } else if let Some(r) = &self.requester {
            Selector::Requester(r.clone())
        } else if let Some(p) = &self.public_key {
            Selector::PublicKey(crate::commands::public_key_line(p)?)
        } else {
            return Err(CliError::Usage(
                "say which grants: --grant, --serial, --requester or --public-key".into(),
            ));
        };
        Ok(RevokeRequest {
            target: Some(target),
            reason: self.reason.clone(),
        })
    }
}

/// Sends a revocation.
pub async fn revoke(target: &Target, req: RevokeRequest) -> Result<RevokeResponse, CliError> {
    let mut client = RevocationsClient::new(connect::channel(target)?);
    client.revoke(req).await.answer(target)
}

/// Sends the revocation `cmd` asks for; returns the answer and, when revoking by public
/// key, the key's fingerprint.
pub async fn send(
    target: &Target,
    cmd: &RevokeCmd,
) -> Result<(RevokeResponse, Option<ssh_key::Fingerprint>), CliError> {
    let req = cmd.request()?;
    let key = match &req.target {
        Some(Selector::PublicKey(line)) => ssh_key::PublicKey::from_openssh(line.trim())
            .ok()
            .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256)),
        _ => None,
    };
    Ok((revoke(target, req).await?, key))
}

/// `breakglass revoke`: sends the revocation and says what it did.
pub async fn run(target: &Target, cmd: &RevokeCmd) -> Result<String, CliError> {
    let (r, key) = send(target, cmd).await?;
    let mut out = describe(&r);
    if let Some(fp) = key {
        out.push_str(&format!(
            "public key {fp} is revoked for good: every KRL from now on names it, and no certificate is issued for it again.\n"
        ));
    }
    if !krl_published(&r) {
        return Err(CliError::Unavailable(out.trim_end().to_owned()));
    }
    Ok(out)
}

/// True when hosts can fetch a KRL that lists the revocations (a daemon from before
/// `krl_published` existed sets only `krl_version`, to 0 when it is not published).
pub fn krl_published(r: &RevokeResponse) -> bool {
    r.krl_published || r.krl_version > 0
}

/// Human summary of a revocation.
pub fn describe(r: &RevokeResponse) -> String {
    let mut out = String::new();
    for g in &r.revoked {
        out.push_str(&format!(
            "revoked grant {}  serial {}  requester {}  (audit index {})\n",
            esc(&g.grant_id),
            g.serial,
            esc(&g.requester),
            g.audit_index
        ));
    }
    for g in &r.already_revoked {
        out.push_str(&format!("grant {} was already revoked\n", esc(g)));
    }
    if krl_published(r) {
        out.push_str(&format!(
            "KRL version {} includes it; hosts that follow the revocation stream refuse new logins and end open sessions now, the others refuse new logins after their next `breakglass host sync-krl`.\n",
            r.krl_version
        ));
    } else {
        let kept = if r.served_krl_version > 0 {
            format!(
                "keep KRL version {}, which does not list it",
                r.served_krl_version
            )
        } else {
            "keep the KRL they have installed, which does not list it".to_owned()
        };
        out.push_str(&format!(
            "The revocation is recorded in the audit log, but the KRL that lists it is NOT published: {}.\n\
             What hosts see now:\n\
             - hosts that follow the revocation stream (`breakglass host watch-revocations`) got it: they end the grant's open sessions and refuse its new sessions now;\n\
             - hosts that rely on the KRL alone (`breakglass host sync-krl`) {kept}: sshd there still accepts the certificate until a newer KRL is published and synced (sync-krl says so and exits 69 meanwhile).\n\
             What to do: free space on (or fix) the disk of breakglass-ca's audit log ([audit] dir). breakglass-ca publishes the KRL by itself as soon as it can record it, without another revoke; `breakglass host sync-krl` on a host then installs it.\n",
            if r.krl_not_published_reason.is_empty() {
                "the daemon did not say why".to_owned()
            } else {
                esc(&r.krl_not_published_reason).to_string()
            }
        ));
    }
    out
}
