//! `breakglass revoke`: revoke grants by grant id, serial, requester or public key.
//! The daemon records one audit event per revoked grant, publishes a new KRL and
//! tells the hosts' revocation watchers, which end open sessions and refuse new logins
//! at once. Revoking by public key also revokes the key itself, for good.
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
            Selector::PublicKey(
                std::fs::read_to_string(p)
                    .map_err(|e| CliError::Usage(format!("public key {}: {e}", p.display())))?,
            )
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

/// `breakglass revoke`: sends the revocation and says what it did.
pub async fn run(target: &Target, cmd: &RevokeCmd) -> Result<String, CliError> {
    let req = cmd.request()?;
    let key = match &req.target {
        Some(Selector::PublicKey(line)) => ssh_key::PublicKey::from_openssh(line.trim())
            .ok()
            .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256)),
        _ => None,
    };
    let mut out = describe(&revoke(target, req).await?);
    if let Some(fp) = key {
        out.push_str(&format!(
            "public key {fp} is revoked for good: every KRL from now on names it, and no certificate is issued for it again.\n"
        ));
    }
    Ok(out)
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
    if r.krl_version > 0 {
        out.push_str(&format!(
            "KRL version {} includes it; hosts that follow the revocation stream refuse new logins and end open sessions now, the others refuse new logins after their next `breakglass host sync-krl`.\n",
            r.krl_version
        ));
    } else {
        out.push_str(
            "The revocation is recorded, but the KRL could not be published yet; hosts will get it at their next sync.\n",
        );
    }
    out
}
