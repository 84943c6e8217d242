//! `breakglass audit`: verify the signed audit log (a copy offline, or the daemon's through
//! the Audit API) and print its events.
//!
//! Every check here uses only the contract crate ([`breakglass_proto::audit`]): an auditor
//! needs the log's public key (`log.pub`), not the daemon, and trusts nothing the daemon
//! says without checking it — signatures, roots recomputed from the entries, proofs.

//!
//! `verify.rs` verifies (a directory offline, or the daemon's log through the API),
//! `show.rs` filters and prints events (`show`, `tail`), `fetch.rs` downloads entries.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

use breakglass_proto::v1::AcknowledgeLogForkRequest;
use breakglass_proto::v1::witness_client::WitnessClient;
use clap::{Args, Subcommand};

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::{Overrides, Target};

mod fetch;
mod recording;
mod show;
mod verify;

pub use fetch::{audit_client, fetch_leaves};
pub use recording::{PlayArgs, RecordingArgs, export, play, replay};
pub use show::{Filter, FilterArgs, ShowArgs, TailArgs, format_event, parse_since};
pub use verify::{
    read_dir_events, read_verifier, verify_offline, verify_recordings_offline, verify_remote,
};

/// `breakglass audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the audit log: a copy of its directory offline (DIR --key log.pub), or the
    /// daemon's through the API (--remote)
    Verify(VerifyArgs),
    /// Print events of the log, oldest first
    Show(ShowArgs),
    /// Print the last events; with --follow, keep printing new ones
    Tail(TailArgs),
    /// Administrators: after a host showed a checkpoint the log does not extend (the log was
    /// rolled back or forked; issuance is stopped), acknowledge it once investigated so that
    /// issuance resumes. Recorded in the log with you and the reason
    AcknowledgeFork(AcknowledgeForkArgs),
    /// Replay a session's recording in this terminal, checked against the audit log first.
    /// Writes the recorded terminal output raw (escape sequences included): the one
    /// printer that does not escape untrusted text
    Play(PlayArgs),
    /// Export a session's recording (asciicast v2, as asciinema plays it), checked against
    /// the audit log
    Recording(RecordingArgs),
}

/// `breakglass audit acknowledge-fork`.
#[derive(Debug, Args)]
#[command(after_help = "\
When a host shows the daemon a checkpoint signed with the log's key that the log does not \
extend (audit event log_consistency_failed), the daemon alerts every webhook and stops \
issuing certificates; revocations, host records and reads keep working. Find out what \
happened first (a restored backup, a deleted segment, a compromised CA host?) and, if events \
were lost, restore the audit directory from a backup that extends the hosts' checkpoints: \
then the log extends them again and there is nothing to acknowledge for the hosts that \
have not reported yet.

This acknowledges every report not acknowledged yet (audit event log_fork_acknowledged, \
with you as actor and the reason) and issuance resumes. The hosts keep refusing this log \
until each is re-pinned with `breakglass host witness --reset --reason TEXT`.

Needs an administrator: a member of the daemon's [revocation] admin_groups, e.g. root on \
the admin socket (--server unix:///PATH/admin.sock).")]
pub struct AcknowledgeForkArgs {
    /// What was investigated and done (recorded in the audit log)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// `breakglass audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Log directory (a copy of the daemon's [audit] dir: segments/, checkpoint)
    #[arg(
        value_name = "DIR",
        required_unless_present = "remote",
        conflicts_with = "remote"
    )]
    pub dir: Option<PathBuf>,
    /// Verify the daemon's log through the Audit API instead of a directory
    #[arg(long)]
    pub remote: bool,
    /// The log's public key (log.pub). Required offline; with --remote it pins the key,
    /// otherwise the key the daemon sends is used (and said so). Here --key is not your
    /// client key: give that in the client config or BREAKGLASS_KEY
    #[arg(long, alias = "log-key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A checkpoint saved by an earlier verification: the log must extend it (no
    /// rollback, no deleted events, no rewritten history)
    #[arg(long, value_name = "FILE")]
    pub since: Option<PathBuf>,
    /// Save the checkpoint this verification established, for --since next time. With
    /// --remote and without --save, the --since file is advanced
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Offline: the directory of session recordings to check against the log (a copy of
    /// the daemon's <audit dir>/recordings; default DIR/recordings when it exists). With
    /// --remote every stored recording is fetched and checked
    #[arg(long, value_name = "DIR", conflicts_with = "remote")]
    pub recordings: Option<PathBuf>,
}

/// Runs an audit subcommand. Offline commands never read the client settings.
pub async fn run(cmd: AuditCmd, overrides: &Overrides) -> Result<(), CliError> {
    match cmd {
        AuditCmd::Verify(v) if !v.remote => {
            let dir = v
                .dir
                .as_deref()
                .ok_or_else(|| CliError::Usage("give DIR or --remote".into()))?;
            let key = v.key.as_deref().ok_or_else(|| {
                CliError::Usage(
                    "--key FILE is required to verify a directory (the log's log.pub)".into(),
                )
            })?;
            let mut out = verify::verify_offline(dir, key, v.since.as_deref(), v.save.as_deref())?;
            let result =
                verify::verify_recordings_offline(dir, key, v.recordings.as_deref(), &mut out);
            print!("{out}");
            result?;
        }
        AuditCmd::Verify(v) => {
            // `--key` here is the log's public key; clap also hands it to the global
            // `--key` (the client key), which must then come from the config or env.
            let mut overrides = overrides.clone();
            if overrides.key == v.key {
                overrides.key = None;
            }
            let target = overrides.resolve()?;
            let save = v.save.as_deref().or(v.since.as_deref());
            print!(
                "{}",
                verify::verify_remote(&target, v.key.as_deref(), v.since.as_deref(), save).await?
            );
        }
        AuditCmd::Show(s) => show::show(&s, overrides).await?,
        AuditCmd::Tail(t) => show::tail(t, &overrides.resolve()?).await?,
        AuditCmd::AcknowledgeFork(a) => {
            print!(
                "{}",
                acknowledge_fork(&overrides.resolve()?, &a.reason).await?
            );
        }
        AuditCmd::Play(p) => recording::play(&overrides.resolve()?, &p).await?,
        AuditCmd::Recording(r) => {
            print!(
                "{}",
                recording::export(&overrides.resolve()?, &r.session, &r.out).await?
            );
        }
    }
    Ok(())
}

/// Acknowledges the log forks hosts reported; returns the report to print.
pub async fn acknowledge_fork(target: &Target, reason: &str) -> Result<String, CliError> {
    let r = WitnessClient::new(connect::channel(target)?)
        .acknowledge_log_fork(AcknowledgeLogForkRequest {
            reason: reason.to_owned(),
        })
        .await
        .answer(target)?;
    let mut out = format!(
        "acknowledged {} log_consistency_failed report(s) (audit event {} \
         log_fork_acknowledged); issuance resumes\n",
        r.acknowledged.len(),
        r.audit_index
    );
    for f in &r.acknowledged {
        let _ = writeln!(
            out,
            "  event {}: host {} showed {} events, the log held {}",
            f.index, f.host, f.size, f.log_size
        );
    }
    out.push_str(
        "Re-pin each host once you trust the log: breakglass host witness --reset --reason TEXT\n",
    );
    Ok(out)
}
