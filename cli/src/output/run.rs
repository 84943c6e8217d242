//! A command line in JSON mode (`--output json`, `--json`): the same library calls as
//! the text mode, the result printed once as the command's JSON type, progress and hints
//! on standard error. Commands that print no data refuse JSON rather than print text
//! where a program expects JSON.
#![forbid(unsafe_code)]

use breakglass_proto::text::escaped as esc;

use super::schema::SCHEMAS;
use super::{
    CaKeysOut, CertificateOut, DoctorOut, PendingOut, RequestCmdOut, RequestOut, ReviewListOut,
    ReviewOut, RevokeOut, WhoamiOut, print,
};
use crate::approvals::{self, RequestResult};
use crate::audit::AuditCmd;
use crate::cli::{Cli, Command, ReviewSub};
use crate::commands;
use crate::error::CliError;
use crate::host::{HostCmd, doctor};

/// Runs `cli` printing its result as JSON; returns the error to report (after the JSON,
/// when the command has a result to show even though it fails: `revoke`, `host doctor`).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let overrides = cli.conn.overrides();
    let target = match cli.command {
        Command::Audit(AuditCmd::Show(mut a)) => {
            a.filter.json = true;
            return crate::audit::run(AuditCmd::Show(a), &overrides).await;
        }
        Command::Audit(AuditCmd::Tail(mut a)) => {
            a.filter.json = true;
            return crate::audit::run(AuditCmd::Tail(a), &overrides).await;
        }
        Command::Host(HostCmd::Doctor(mut a)) => {
            a.witness = a.witness.with_config(&overrides)?;
            let report = doctor::check(&a, &overrides).await;
            let out = DoctorOut::from(&report);
            print(&out)?;
            return match out.failures {
                0 => Ok(()),
                n => Err(CliError::Misconfigured(format!(
                    "host doctor found {n} problem(s): the findings with \"level\": \"fail\" in the JSON, each with its fix"
                ))),
            };
        }
        // Refused before the settings are read: the command has nothing to print as JSON.
        Command::Request(_)
        | Command::Fetch { .. }
        | Command::Pending
        | Command::Show { .. }
        | Command::Approve { .. }
        | Command::Deny { .. }
        | Command::Cancel { .. }
        | Command::Review(_)
        | Command::CaKeys { .. }
        | Command::Whoami
        | Command::Revoke(_)
        | Command::Status => overrides.resolve()?,
        _ => return Err(no_json()),
    };
    match cli.command {
        Command::Request(r) => {
            let first_host = r.hosts.first().cloned().unwrap_or_default();
            let (args, mode) = r.into_request()?;
            let added = args.add_to_agent.is_some();
            // Progress for people on stderr, as for the text output: stdout is the JSON.
            let wait = crate::wait_line::WaitLine::stderr();
            let result = approvals::request_live_noting(
                &target,
                &args,
                mode,
                |i| wait.update(i),
                |n| wait.note(n),
            )
            .await;
            drop(wait);
            let result = result?;
            let out = match result {
                RequestResult::Issued(outcome) => RequestCmdOut {
                    state: "issued",
                    request_id: outcome.response.request_id.clone(),
                    certificate: Some(CertificateOut::new(&outcome, &first_host, added)),
                    request: None,
                },
                RequestResult::Pending(info) => {
                    eprintln!(
                        "Waiting for approval. Get the certificate later with: breakglass fetch {}",
                        esc(&info.request_id)
                    );
                    RequestCmdOut {
                        state: "pending",
                        request_id: info.request_id.clone(),
                        certificate: None,
                        request: Some(RequestOut::from(info.as_ref())),
                    }
                }
            };
            print(&out)
        }
        Command::Fetch { id, public_key } => {
            let outcome = approvals::fetch(&target, &id, public_key.as_deref()).await?;
            // The response does not name hosts: the command has a placeholder.
            print(&CertificateOut::new(&outcome, "HOST", false))
        }
        Command::Pending => print(&PendingOut {
            requests: approvals::pending(&target)
                .await?
                .iter()
                .map(RequestOut::from)
                .collect(),
        }),
        Command::Show { id } => print(&RequestOut::from(&approvals::show(&target, &id).await?)),
        Command::Approve { id, comment } => print(&RequestOut::from(
            &approvals::approve(&target, &id, &comment).await?,
        )),
        Command::Deny { id, reason } => print(&RequestOut::from(
            &approvals::deny(&target, &id, &reason).await?,
        )),
        Command::Cancel { id, reason } => print(&RequestOut::from(
            &approvals::cancel(&target, &id, &reason).await?,
        )),
        Command::Review(r) => match (r.list, r.id) {
            (Some(ReviewSub::List { all }), _) => print(&ReviewListOut {
                grants: approvals::review_list(&target, all)
                    .await?
                    .iter()
                    .map(ReviewOut::from)
                    .collect(),
            }),
            (None, Some(id)) => {
                let (Some(verdict), Some(note)) = (r.verdict, r.note) else {
                    return Err(CliError::Usage(
                        "review ID needs --verdict ok|misuse and --note TEXT".into(),
                    ));
                };
                let item = approvals::review(&target, &id, &verdict, &note).await?;
                print(&ReviewOut::from(&item))
            }
            (None, None) => Err(CliError::Usage(
                "use `breakglass review list` or `breakglass review ID --verdict ok|misuse --note TEXT`".into(),
            )),
        },
        Command::CaKeys { out } => {
            let keys = commands::ca_public_keys(&target).await?;
            let written_to = match out {
                Some(p) => {
                    let mut text = keys
                        .iter()
                        .map(|k| k.public_key.as_str())
                        .collect::<Vec<_>>()
                        .join("\n");
                    text.push('\n');
                    commands::write_atomic(&p, text.as_bytes(), 0o644)?;
                    Some(p.display().to_string())
                }
                None => None,
            };
            print(&CaKeysOut::new(&keys, written_to))
        }
        Command::Whoami => print(&WhoamiOut::from(&commands::who_am_i(&target).await?)),
        Command::Revoke(r) => {
            let (answer, key) = crate::revoke::send(&target, &r).await?;
            print(&RevokeOut::new(&answer, key.map(|k| k.to_string())))?;
            if crate::revoke::krl_published(&answer) {
                Ok(())
            } else {
                Err(CliError::Unavailable(
                    crate::revoke::describe(&answer).trim_end().to_owned(),
                ))
            }
        }
        Command::Status => print(&crate::status::status(&target).await?.json()),
        _ => Err(no_json()),
    }
}

/// The refusal of JSON by a command that prints no data.
fn no_json() -> CliError {
    let with: Vec<&str> = SCHEMAS.iter().map(|s| s.command).collect();
    CliError::Usage(format!(
        "this command has no JSON output (--output json / --json); the commands that have one: {}, audit show, audit tail",
        with.join(", ")
    ))
}
