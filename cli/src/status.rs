//! `breakglass status`: who I am, when my client certificate expires, my live grants and
//! my pending requests, in one look.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::{
    GrantInfo, ListMyGrantsRequest, ListPendingRequest, RequestInfo, WhoAmIRequest, WhoAmIResponse,
};

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::output::{CredentialOut, GrantOut, RequestOut, StatusOut, seconds_until, time};
use crate::settings::Target;

/// The client certificate the daemon knows you by.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Its file (`--cert`).
    pub file: PathBuf,
    /// Its notAfter, Unix seconds.
    pub not_after: i64,
    /// It came from the break-glass login with an SSH key (the daemon's client CA marks it).
    pub ssh_key_login: bool,
}

/// Everything `breakglass status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// Who the daemon sees.
    pub whoami: WhoAmIResponse,
    /// The client certificate's expiry (none on the admin socket).
    pub credential: Option<Credential>,
    /// My live grants, soonest to expire first.
    pub grants: Vec<GrantInfo>,
    /// My own pending requests.
    pub pending: Vec<RequestInfo>,
    /// Other people's pending requests I may approve now.
    pub to_approve: Vec<RequestInfo>,
}

/// Asks the daemon for everything `status` shows.
pub async fn status(target: &Target) -> Result<Status, CliError> {
    let credential = match target {
        Target::Tls { cert, .. } => Some(Credential {
            file: cert.clone(),
            not_after: not_after(cert)?,
            ssh_key_login: ssh_key_login(cert)?,
        }),
        Target::Unix(_) => None,
    };
    let mut client = connect::client(target)?;
    let whoami = client.who_am_i(WhoAmIRequest {}).await.answer(target)?;
    let grants = client
        .list_my_grants(ListMyGrantsRequest {})
        .await
        .answer(target)?
        .grants;
    let (pending, to_approve) = client
        .list_pending(ListPendingRequest {})
        .await
        .answer(target)?
        .requests
        .into_iter()
        .partition::<Vec<_>, _>(|r| r.requester == whoami.identity);
    Ok(Status {
        whoami,
        credential,
        grants,
        pending,
        to_approve: to_approve.into_iter().filter(|r| r.can_approve).collect(),
    })
}

/// The notAfter of the PEM certificate in `file`, Unix seconds.
pub fn not_after(file: &Path) -> Result<i64, CliError> {
    let bad = |why: String| {
        CliError::Usage(format!(
            "client certificate {}: {why}; pass a PEM certificate with --cert",
            file.display()
        ))
    };
    let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Whether the PEM certificate in `file` came from a login with an SSH key (the OU the
/// daemon's client CA sets for one).
pub fn ssh_key_login(file: &Path) -> Result<bool, CliError> {
    let bad = |why: String| {
        CliError::Usage(format!(
            "client certificate {}: {why}; pass a PEM certificate with --cert",
            file.display()
        ))
    };
    let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    Ok(cert.subject().iter_organizational_unit().any(|ou| {
        ou.as_str()
            .is_ok_and(|v| v == breakglass_proto::ssh_login::SSH_KEY_LOGIN_UNIT)
    }))
}

/// "in 14m 3s", "in 5h 12m", "in 364 days" or "3m ago".
fn relative(unix_seconds: i64) -> String {
    let left = seconds_until(unix_seconds);
    let abs = left.unsigned_abs();
    let d = match abs {
        172_800.. => format!("{} days", abs / 86_400),
        3600.. => format!("{}h {}m", abs / 3600, abs % 3600 / 60),
        _ => humantime::format_duration(Duration::from_secs(abs)).to_string(),
    };
    if left >= 0 {
        format!("in {d}")
    } else {
        format!("{d} ago")
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        esc(&items.join(", ")).to_string()
    }
}

/// The text `breakglass status` prints.
#[must_use]
pub fn describe(s: &Status) -> String {
    let mut out = format!(
        "identity     {} (via {})\ngroups       {}\n",
        esc(&s.whoami.identity),
        esc(&s.whoami.transport),
        list(&s.whoami.groups)
    );
    match &s.credential {
        Some(c) => {
            out.push_str(&format!(
                "credential   client certificate {} expires {} ({})\n",
                esc(&c.file.display().to_string()),
                time(c.not_after),
                relative(c.not_after)
            ));
            if c.ssh_key_login {
                out.push_str(
                    "login        with an SSH key (the break-glass login): each tier takes it \
                     as its ssh_key_login says, by default only for --emergency\n",
                );
            }
        }
        None => out.push_str("credential   the admin socket (no expiry)\n"),
    }
    out.push_str(&format!("\nLive grants ({}):\n", s.grants.len()));
    if s.grants.is_empty() {
        out.push_str("  none\n");
    }
    for g in &s.grants {
        out.push_str(&format!(
            "  {id}  {p}@{h}  command {cmd}  tier {tier}{emergency}  expires {until} ({left})\n",
            id = esc(&g.grant_id),
            p = esc(&g.principals.join(",")),
            h = esc(&g.hosts.join(",")),
            cmd = if g.command.is_empty() {
                "(interactive shell)".to_owned()
            } else {
                esc(&g.command).to_string()
            },
            tier = esc(&g.tier),
            emergency = if g.emergency { "  EMERGENCY" } else { "" },
            until = time(g.valid_before),
            left = relative(g.valid_before),
        ));
    }
    out.push_str(&format!("\nMy pending requests ({}):\n", s.pending.len()));
    if s.pending.is_empty() {
        out.push_str("  none\n");
    }
    for r in &s.pending {
        out.push_str(&format!("  {}\n", crate::approvals::progress_line(r)));
    }
    if !s.to_approve.is_empty() {
        out.push_str(&format!(
            "\nAwaiting your approval ({}): see `breakglass pending`\n",
            s.to_approve.len()
        ));
    }
    out
}

impl Status {
    /// The JSON `breakglass status --json` prints.
    #[must_use]
    pub fn json(&self) -> StatusOut {
        StatusOut {
            identity: self.whoami.identity.clone(),
            groups: self.whoami.groups.clone(),
            transport: self.whoami.transport.clone(),
            credential: self.credential.as_ref().map(|c| CredentialOut {
                certificate_file: c.file.display().to_string(),
                expires_at: time(c.not_after),
                expires_in_seconds: seconds_until(c.not_after),
                ssh_key_login: c.ssh_key_login,
            }),
            grants: self.grants.iter().map(GrantOut::from).collect(),
            pending: self.pending.iter().map(RequestOut::from).collect(),
            awaiting_my_approval: self.to_approve.iter().map(RequestOut::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn time_left_is_shown_to_the_unit_that_matters() {
        // A margin of 30 s each way keeps the expectation stable while the test runs.
        assert_eq!(relative(now() + 3 * 86_400 + 30), "in 3 days");
        assert_eq!(relative(now() + 5 * 3600 + 12 * 60 + 30), "in 5h 12m");
        assert!(relative(now() - 200).ends_with(" ago"));
    }
}
