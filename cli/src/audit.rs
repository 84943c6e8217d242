//! `breakglass audit`: verify the signed audit log (a copy offline, or the daemon's through
//! the Audit API) and print its events.
//!
//! Every check here uses only the contract crate ([`breakglass_proto::audit`]): an auditor
//! needs the log's public key (`log.pub`), not the daemon, and trusts nothing the daemon
//! says without checking it — signatures, roots recomputed from the entries, proofs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::audit::event::EventKind;
use breakglass_proto::audit::fields::{Value, event_fields, rfc3339};
use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::verify::ScanOptions;
use breakglass_proto::audit::{
    Actor, Checkpoint, Event, EventCode, Frontier, Hash, NoteVerifier, RequestId, check_extends,
    scan_log, verify_dir, verify_inclusion,
};
use breakglass_proto::names::host_matches;
use breakglass_proto::profile::GrantId;
use breakglass_proto::text;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::witness_client::WitnessClient;
use breakglass_proto::v1::{
    AcknowledgeLogForkRequest, GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest,
    GetInclusionProofRequest,
};
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use crate::commands::write_atomic;
use crate::connect;
use crate::error::{Answer, CliError};
use crate::settings::{Overrides, Target};

/// Largest key or checkpoint file read.
const MAX_SMALL_FILE: u64 = 64 * 1024;

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
}

/// Which events to print.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only events of this grant (its request, approvals, issuance, sessions, revocation)
    #[arg(long, value_name = "GRANT")]
    pub grant: Option<String>,
    /// Only events of requests and grants of this identity, or caused by it
    #[arg(long, value_name = "IDENTITY")]
    pub requester: Option<String>,
    /// Only sessions on this host and grants/requests whose host scope covers it
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only events at or after TIME (RFC 3339, e.g. 2026-11-29T10:00:00Z, or a duration ago, e.g. 2h)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only refusals: requests and calls refused by policy (request_refused,
    /// action_refused, with the kind of refusal, the rule and the reason) and identities
    /// that reached the hourly refusal limit (refusals_limited)
    #[arg(long)]
    pub refused: bool,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
}

/// `breakglass audit show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Read a copy of the log directory instead of the daemon (needs --key; the copy is
    /// verified while it is read)
    #[arg(long, value_name = "DIR", requires = "key")]
    pub dir: Option<PathBuf>,
    /// The log's public key (log.pub), with --dir
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// `breakglass audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// How many of the last matching events to print
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
    /// Keep running and print new events as they are logged
    #[arg(long, short = 'f')]
    pub follow: bool,
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
            print!(
                "{}",
                verify_offline(dir, key, v.since.as_deref(), v.save.as_deref())?
            );
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
                verify_remote(&target, v.key.as_deref(), v.since.as_deref(), save).await?
            );
        }
        AuditCmd::Show(s) => {
            let filter = Filter::new(&s.filter)?;
            let events = match (&s.dir, &s.key) {
                (Some(dir), Some(key)) => read_dir_events(dir, key)?,
                _ => {
                    let target = overrides.resolve()?;
                    let mut client = audit_client(&target)?;
                    let size = checkpoint_size(&mut client, &target).await?;
                    fetch_events(&mut client, &target, 0, size).await?
                }
            };
            let mut filter = filter;
            for (_, e) in &events {
                filter.observe(e);
            }
            for (i, e) in &events {
                if filter.matches(e) {
                    println!("{}", format_event(*i, e, s.filter.json));
                }
            }
        }
        AuditCmd::Tail(t) => tail(t, &overrides.resolve()?).await?,
        AuditCmd::AcknowledgeFork(a) => {
            print!(
                "{}",
                acknowledge_fork(&overrides.resolve()?, &a.reason).await?
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

fn read_small(path: &Path, what: &str) -> Result<String, CliError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))?;
    let mut s = String::new();
    f.take(MAX_SMALL_FILE)
        .read_to_string(&mut s)
        .map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))?;
    Ok(s)
}

/// Reads a verifier key file (`log.pub`).
pub fn read_verifier(path: &Path) -> Result<NoteVerifier, CliError> {
    let text = read_small(path, "audit public key")?;
    NoteVerifier::parse(text.trim()).map_err(|e| {
        CliError::Usage(format!(
            "audit public key {}: {e} (expected the content of the log's log.pub)",
            path.display()
        ))
    })
}

fn counts_line(counts: &[(EventCode, u64)]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(c, n)| format!("{} {n}", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn save_checkpoint(path: &Path, note: &str) -> Result<(), CliError> {
    write_atomic(path, note.as_bytes(), 0o644)
}

/// Verifies a log directory with only its public key; returns the report to print.
pub fn verify_offline(
    dir: &Path,
    key: &Path,
    since: Option<&Path>,
    save: Option<&Path>,
) -> Result<String, CliError> {
    let verifier = read_verifier(key)?;
    let saved = since
        .map(|p| read_small(p, "saved checkpoint"))
        .transpose()?;
    let report = verify_dir(dir, &verifier, saved.as_deref()).map_err(|e| {
        CliError::Verification(format!(
            "audit log {} does NOT verify: {}",
            dir.display(),
            text::escape_hazards(&e.to_string())
        ))
    })?;
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "OK: audit log {} verifies with key {}",
        dir.display(),
        verifier
    );
    let _ = writeln!(
        out,
        "  {} events in {} segment(s); {} signed checkpoints checked",
        s.size,
        s.segments.len(),
        s.checkpoints
    );
    if let Some(cp) = &s.last_checkpoint {
        let _ = writeln!(
            out,
            "  latest checkpoint: size {}, root {}",
            cp.checkpoint.size,
            b64(&cp.checkpoint.root)
        );
    }
    let _ = writeln!(out, "  events: {}", counts_line(&report.events_by_code));
    if let Some(c) = &report.extends {
        let _ = writeln!(
            out,
            "  extends the saved checkpoint of {} events (no rollback, no rewrite)",
            c.size
        );
    }
    for w in &report.warnings {
        let _ = writeln!(out, "  warning: {}", text::escape_hazards(&w.to_string()));
    }
    if let Some(p) = save {
        match &s.last_checkpoint {
            Some(cp) => {
                save_checkpoint(p, &cp.note)?;
                let _ = writeln!(
                    out,
                    "  saved the checkpoint of {} events to {} (use --since next time)",
                    cp.checkpoint.size,
                    p.display()
                );
            }
            None => {
                let _ = writeln!(out, "  nothing saved: the log is empty");
            }
        }
    }
    Ok(out)
}

fn b64(h: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// An Audit API client.
pub fn audit_client(target: &Target) -> Result<AuditClient<Channel>, CliError> {
    Ok(AuditClient::new(connect::channel(target)?))
}

async fn checkpoint_size(
    client: &mut AuditClient<Channel>,
    target: &Target,
) -> Result<u64, CliError> {
    Ok(client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .answer(target)?
        .size)
}

/// Downloads leaves `start..end` (as many calls as it takes).
pub async fn fetch_leaves(
    client: &mut AuditClient<Channel>,
    target: &Target,
    start: u64,
    end: u64,
) -> Result<Vec<Vec<u8>>, CliError> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let r = client
            .get_entries(GetEntriesRequest { start: at, end })
            .await
            .answer(target)?;
        if r.start != at || r.entries.is_empty() {
            return Err(CliError::Verification(format!(
                "the daemon answered entries from {} ({} entries) when asked from {at}",
                r.start,
                r.entries.len()
            )));
        }
        at += r.entries.len() as u64;
        out.extend(r.entries);
    }
    if at != end {
        return Err(CliError::Verification(format!(
            "the daemon sent {} entries when {} were asked",
            at - start,
            end - start
        )));
    }
    Ok(out)
}

async fn fetch_events(
    client: &mut AuditClient<Channel>,
    target: &Target,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, Event)>, CliError> {
    fetch_leaves(client, target, start, end)
        .await?
        .iter()
        .zip(start..)
        .map(|(leaf, i)| {
            Event::decode(leaf)
                .map(|e| (i, e))
                .map_err(|e| CliError::Verification(format!("entry {i}: {e}")))
        })
        .collect()
}

fn proof_hashes(v: Vec<Vec<u8>>, what: &str) -> Result<Vec<Hash>, CliError> {
    v.into_iter()
        .map(|h| {
            h.try_into().map_err(|_| {
                CliError::Verification(format!("{what}: a proof hash is not 32 bytes"))
            })
        })
        .collect()
}

/// Verifies the daemon's log through the API; returns the report to print.
///
/// Downloads the latest checkpoint and checks its signature (with the pinned key if
/// `key` is given), downloads every entry, checks that each decodes and that the root
/// recomputed from them is the checkpoint's, checks inclusion proofs of the first and last
/// entry, and, with `since`, that the log extends the saved checkpoint — both from the
/// entries and with the daemon's consistency proof. Saves the checkpoint to `save`.
pub async fn verify_remote(
    target: &Target,
    key: Option<&Path>,
    since: Option<&Path>,
    save: Option<&Path>,
) -> Result<String, CliError> {
    let mut out = String::new();
    let mut client = audit_client(target)?;
    let status = |s| CliError::from_status(s, &target.shown());
    let cp_resp = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let verifier = match key {
        Some(k) => {
            let pinned = read_verifier(k)?;
            if pinned.to_string() != cp_resp.verifier_key.trim() {
                return Err(CliError::Verification(format!(
                    "the daemon's audit key {} is not the pinned key {} from {}",
                    text::escaped(cp_resp.verifier_key.trim()),
                    pinned,
                    k.display()
                )));
            }
            pinned
        }
        None => {
            let v = NoteVerifier::parse(cp_resp.verifier_key.trim()).map_err(|e| {
                CliError::Verification(format!("the daemon's audit key does not parse: {e}"))
            })?;
            let _ = writeln!(
                out,
                "note: trusting the audit key the daemon sent ({v}); pin it with --key log.pub"
            );
            v
        }
    };
    let cp = verifier
        .verify_checkpoint(&cp_resp.checkpoint)
        .map_err(|e| {
            CliError::Verification(format!(
                "the daemon's checkpoint does not verify with key {verifier}: {e}"
            ))
        })?;
    let saved: Option<(Checkpoint, PathBuf)> = match since {
        Some(p) => {
            let text = read_small(p, "saved checkpoint")?;
            let c = verifier.verify_checkpoint(&text).map_err(|e| {
                CliError::Verification(format!(
                    "saved checkpoint {}: {e} (it must be signed by the same key)",
                    p.display()
                ))
            })?;
            Some((c, p.to_owned()))
        }
        None => None,
    };
    // Rolled back (smaller than the saved checkpoint): no proof can help, say so first.
    if let Some((s, p)) = &saved
        && s.size > cp.size
        && let Err(e) = check_extends(s, &cp, &[])
    {
        return Err(CliError::Verification(format!(
            "the daemon's log does not extend the saved checkpoint {}: {e}",
            p.display()
        )));
    }

    // Every entry: decodes canonically, and together they give the signed root.
    let leaves = fetch_leaves(&mut client, target, 0, cp.size).await?;
    let mut frontier = Frontier::new();
    let mut root_at_saved = None;
    let mut counts: HashMap<EventCode, u64> = HashMap::new();
    let want = saved.as_ref().map(|(s, _)| s.size);
    if want == Some(0) {
        root_at_saved = Some(frontier.root());
    }
    let mut hashes = Vec::with_capacity(leaves.len());
    for (i, leaf) in leaves.iter().enumerate() {
        let e =
            Event::decode(leaf).map_err(|e| CliError::Verification(format!("entry {i}: {e}")))?;
        *counts.entry(e.code()).or_default() += 1;
        let h = leaf_hash(leaf);
        hashes.push(h);
        frontier.push(h);
        if Some(frontier.size()) == want {
            root_at_saved = Some(frontier.root());
        }
    }
    if frontier.root() != cp.root {
        return Err(CliError::Verification(format!(
            "the root recomputed from the {} entries the daemon sent differs from its signed \
             checkpoint's: an entry was changed or the daemon serves a different log",
            cp.size
        )));
    }
    let _ = writeln!(
        out,
        "OK: audit log of {} verifies (key {verifier})",
        target.shown()
    );
    let _ = writeln!(
        out,
        "  checkpoint: {} events, root {}, signature OK",
        cp.size,
        b64(&cp.root)
    );
    let _ = writeln!(
        out,
        "  {} entries downloaded; each decodes; their root is the checkpoint's",
        cp.size
    );

    // Inclusion proofs of a few entries, checked against the signed root.
    let mut probes = vec![0, cp.size.saturating_sub(1), cp.size / 2];
    if let Some(s) = want
        && s < cp.size
    {
        probes.push(s);
    }
    probes.sort_unstable();
    probes.dedup();
    if cp.size > 0 {
        for &i in &probes {
            let p = client
                .get_inclusion_proof(GetInclusionProofRequest {
                    index: i,
                    tree_size: cp.size,
                })
                .await
                .map_err(status)?
                .into_inner();
            let proof = proof_hashes(p.hashes, "inclusion proof")?;
            verify_inclusion(&hashes[i as usize], i, cp.size, &proof, &cp.root).map_err(|e| {
                CliError::Verification(format!("inclusion proof of entry {i}: {e}"))
            })?;
        }
        let _ = writeln!(
            out,
            "  inclusion proofs of entries {} OK",
            probes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if let Some((s, p)) = &saved {
        if root_at_saved != Some(s.root) {
            return Err(CliError::Verification(format!(
                "the log's root at size {} differs from the saved checkpoint {}: history was \
                 rewritten (fork)",
                s.size,
                p.display()
            )));
        }
        let proof = client
            .get_consistency_proof(GetConsistencyProofRequest {
                old_size: s.size,
                new_size: cp.size,
            })
            .await
            .map_err(status)?
            .into_inner();
        let proof = proof_hashes(proof.hashes, "consistency proof")?;
        check_extends(s, &cp, &proof).map_err(|e| {
            CliError::Verification(format!(
                "the daemon's log does not extend the saved checkpoint {}: {e}",
                p.display()
            ))
        })?;
        let _ = writeln!(
            out,
            "  extends the saved checkpoint of {} events ({}): entries and consistency proof agree",
            s.size,
            p.display()
        );
    }
    let mut counts: Vec<(EventCode, u64)> = counts.into_iter().collect();
    counts.sort();
    let _ = writeln!(out, "  events: {}", counts_line(&counts));
    if let Some(p) = save {
        save_checkpoint(p, &cp_resp.checkpoint)?;
        let _ = writeln!(
            out,
            "  saved the checkpoint of {} events to {} (use --since next time)",
            cp.size,
            p.display()
        );
    }
    Ok(out)
}

/// Reads and verifies a log directory, returning its events.
pub fn read_dir_events(dir: &Path, key: &Path) -> Result<Vec<(u64, Event)>, CliError> {
    let verifier = read_verifier(key)?;
    let mut events = Vec::new();
    scan_log(
        dir,
        &verifier,
        &ScanOptions {
            every_signature: true,
            roots_at: Vec::new(),
        },
        |e| {
            events.push((e.index, Event::decode(e.leaf).map_err(|d| d.to_string())?));
            Ok(())
        },
    )
    .map_err(|e| {
        CliError::Verification(format!(
            "audit log {} does NOT verify: {}",
            dir.display(),
            text::escape_hazards(&e.to_string())
        ))
    })?;
    Ok(events)
}

/// Parses `--since`: RFC 3339 or a duration ago.
pub fn parse_since(s: &str, now: SystemTime) -> Result<u64, CliError> {
    let t = humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_duration(s).map(|d| now - d))
        .map_err(|_| {
            CliError::Usage(format!(
                "--since {s:?} is neither a time like 2026-11-29T10:00:00Z nor a duration like 2h"
            ))
        })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// Event filter of `show` and `tail`. Events are [`observe`](Filter::observe)d first so that
/// a request's events can be tied to the grant that answers it.
#[derive(Debug, Default)]
pub struct Filter {
    grant: Option<GrantId>,
    requester: Option<String>,
    host: Option<String>,
    since_ms: Option<u64>,
    refused: bool,
    /// Requester and grant of each request seen.
    requests: HashMap<RequestId, (String, Option<GrantId>)>,
    /// Request and requester of each grant seen.
    grants: HashMap<GrantId, (RequestId, String)>,
}

impl Filter {
    /// Builds the filter from the flags.
    pub fn new(a: &FilterArgs) -> Result<Self, CliError> {
        Ok(Self {
            grant: a
                .grant
                .as_deref()
                .map(|g| {
                    g.parse::<GrantId>()
                        .map_err(|e| CliError::Usage(format!("--grant: {e}")))
                })
                .transpose()?,
            requester: a.requester.clone(),
            host: a.host.clone(),
            since_ms: a
                .since
                .as_deref()
                .map(|s| parse_since(s, SystemTime::now()))
                .transpose()?,
            refused: a.refused,
            ..Self::default()
        })
    }

    /// Learns which requests and grants belong together.
    pub fn observe(&mut self, e: &Event) {
        match &e.kind {
            EventKind::RequestCreated(r) => {
                self.requests
                    .entry(r.request_id)
                    .or_insert_with(|| (r.requester.clone(), None));
            }
            EventKind::GrantIssued(g) => {
                self.grants
                    .insert(g.grant_id, (g.request_id, g.requester.clone()));
                self.requests
                    .entry(g.request_id)
                    .or_insert_with(|| (g.requester.clone(), None))
                    .1 = Some(g.grant_id);
            }
            _ => {}
        }
    }

    fn request_of(e: &Event) -> Option<RequestId> {
        match &e.kind {
            EventKind::RequestCreated(r) => Some(r.request_id),
            EventKind::ApprovalAdded(r) => Some(r.request_id),
            EventKind::RequestDenied(r) => Some(r.request_id),
            EventKind::RequestExpired(r) => Some(r.request_id),
            EventKind::RequestCancelled(r) => Some(r.request_id),
            EventKind::GrantIssued(g) => Some(g.request_id),
            EventKind::RequestRefused(r) => r.request_id,
            EventKind::ActionRefused(a) => a.target.parse().ok(),
            _ => None,
        }
    }

    /// The identity a refusal event is about.
    fn refused_identity(e: &Event) -> Option<&str> {
        match &e.kind {
            EventKind::RequestRefused(r) => Some(&r.identity),
            EventKind::ActionRefused(a) => Some(&a.identity),
            EventKind::RefusalsLimited(l) => Some(&l.identity),
            _ => None,
        }
    }

    /// True when the event passes every filter given.
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(t) = self.since_ms
            && e.time.0 < t
        {
            return false;
        }
        if self.refused && !e.code().is_refusal() {
            return false;
        }
        let request = Self::request_of(e);
        let refused_grant = match &e.kind {
            EventKind::ActionRefused(a) => a.target.parse::<GrantId>().ok(),
            _ => None,
        };
        let grant = e
            .kind
            .grant_id()
            .or(refused_grant)
            .or_else(|| request.and_then(|r| self.requests.get(&r).and_then(|(_, g)| *g)));
        if let Some(g) = self.grant
            && grant != Some(g)
        {
            return false;
        }
        if let Some(who) = &self.requester {
            let by_request = request
                .and_then(|r| self.requests.get(&r))
                .is_some_and(|(req, _)| req == who);
            let by_grant = grant
                .and_then(|g| self.grants.get(&g))
                .is_some_and(|(_, req)| req == who);
            let by_actor = e.actor == Actor::User(who.clone());
            let refused = Self::refused_identity(e) == Some(who.as_str());
            if !(by_request || by_grant || by_actor || refused) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            let ok = match &e.kind {
                EventKind::RequestCreated(r) => r.hosts.iter().any(|p| host_matches(p, h)),
                EventKind::GrantIssued(g) => g.hosts.iter().any(|p| host_matches(p, h)),
                EventKind::RequestRefused(r) => r.hosts.iter().any(|p| host_matches(p, h)),
                k => k.session().is_some_and(|s| s.host.eq_ignore_ascii_case(h)),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// A JSON string; besides what JSON requires, every hazard ([`text::is_hazard`]: DEL, C1
/// controls, bidi controls, line separators) is written as `\uXXXX`, so the line is safe on
/// a terminal and a JSON reader still gets the exact text.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if text::is_hazard(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value(v: &Value) -> String {
    match v {
        Value::Str(s) => json_string(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(l) => format!(
            "[{}]",
            l.iter()
                .map(|s| json_string(s))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Time(t) => json_string(&rfc3339(*t)),
        Value::None => "null".into(),
    }
}

/// One event as a line of text, or as one JSON object.
#[must_use]
pub fn format_event(index: u64, e: &Event, json: bool) -> String {
    let time = format!(
        "{}.{:03}Z",
        &rfc3339(e.time.0 / 1000)[..19],
        e.time.0 % 1000
    );
    let fields = event_fields(e);
    if json {
        let mut parts = vec![
            format!("\"index\":{index}"),
            format!("\"time\":{}", json_string(&time)),
            format!("\"event\":{}", json_string(e.code().name())),
            format!("\"actor\":{}", json_string(&e.actor.to_string())),
        ];
        parts.extend(
            fields
                .iter()
                .map(|(k, v)| format!("{}:{}", json_string(k), json_value(v))),
        );
        format!("{{{}}}", parts.join(","))
    } else {
        let mut line = format!(
            "{time} #{index} {} {}",
            e.code().name(),
            text::escaped(&e.actor.to_string())
        );
        for (k, v) in &fields {
            if matches!(v, Value::None) || matches!(v, Value::List(l) if l.is_empty()) {
                continue;
            }
            let _ = write!(line, " {k}={}", text::kv_value(&v.to_text()));
        }
        line
    }
}

async fn tail(t: TailArgs, target: &Target) -> Result<(), CliError> {
    let mut filter = Filter::new(&t.filter)?;
    let mut client = audit_client(target)?;
    let size = checkpoint_size(&mut client, target).await?;
    let events = fetch_events(&mut client, target, 0, size).await?;
    for (_, e) in &events {
        filter.observe(e);
    }
    let matching: Vec<&(u64, Event)> = events.iter().filter(|(_, e)| filter.matches(e)).collect();
    for (i, e) in &matching[matching.len().saturating_sub(t.lines)..] {
        println!("{}", format_event(*i, e, t.filter.json));
    }
    if !t.follow {
        return Ok(());
    }
    let mut next = size;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let size = checkpoint_size(&mut client, target).await?;
        if size <= next {
            continue;
        }
        for (i, e) in fetch_events(&mut client, target, next, size).await? {
            filter.observe(&e);
            if filter.matches(&e) {
                println!("{}", format_event(i, &e, t.filter.json));
            }
        }
        next = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::Timestamp;
    use breakglass_proto::audit::event::{GrantIssued, RequestCreated};

    fn created(id: u64, who: &str, host: &str) -> Event {
        Event::new(
            Timestamp(1_000),
            Actor::User(who.into()),
            EventKind::RequestCreated(RequestCreated {
                request_id: RequestId(id),
                requester: who.into(),
                public_key: "ssh-ed25519 AAAA".into(),
                principals: vec!["postgres".into()],
                hosts: vec![host.into()],
                ttl_seconds: 600,
                reason: "INC-1 \"db\" down".into(),
                command: None,
                source_addresses: vec![],
                extensions: vec![],
                emergency: false,
                rule: "r".into(),
                tier: "low".into(),
                approvals_required: 0,
                expires_at: Timestamp(1_000),
            }),
        )
    }

    fn issued(id: u64, grant: u64, who: &str, host: &str) -> Event {
        Event::new(
            Timestamp(2_000),
            Actor::User(who.into()),
            EventKind::GrantIssued(Box::new(GrantIssued {
                request_id: RequestId(id),
                grant_id: GrantId(grant),
                serial: grant,
                key_id: "k".into(),
                ca_fingerprint: "SHA256:x".into(),
                key_fingerprint: "SHA256:y".into(),
                principals: vec!["postgres".into()],
                hosts: vec![host.into()],
                command: None,
                source_addresses: vec![],
                extensions: vec![],
                valid_after: 1,
                valid_before: 601,
                requester: who.into(),
                approvers: vec![],
                rule: "r".into(),
                tier: "low".into(),
                emergency: false,
            })),
        )
    }

    fn filter(args: FilterArgs, events: &[Event]) -> Vec<usize> {
        let mut f = Filter::new(&args).unwrap();
        events.iter().for_each(|e| f.observe(e));
        (0..events.len())
            .filter(|&i| f.matches(&events[i]))
            .collect()
    }

    #[test]
    fn filters_tie_requests_to_their_grants() {
        let ev = [
            created(1, "a@x", "db-*"),
            created(2, "b@x", "web-1"),
            issued(2, 20, "b@x", "web-1"),
            issued(1, 10, "a@x", "db-*"),
        ];
        let g = |s: &str| FilterArgs {
            grant: Some(s.into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(g("g-000000000000000a"), &ev), [0, 3]);
        let r = FilterArgs {
            requester: Some("b@x".into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(r, &ev), [1, 2]);
        let h = FilterArgs {
            host: Some("db-7".into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(h, &ev), [0, 3]);
        let t = FilterArgs {
            since: Some("1970-01-01T00:00:01.500Z".into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(t, &ev), [2, 3]);
    }

    fn refused(who: &str, target: &str) -> Event {
        use breakglass_proto::audit::event::{ActionRefused, RefusalKind};
        Event::new(
            Timestamp(3_000),
            Actor::User(who.into()),
            EventKind::ActionRefused(ActionRefused {
                kind: RefusalKind::NotApprover,
                identity: who.into(),
                action: "approve".into(),
                target: target.into(),
                reason: "m@x may not approve".into(),
            }),
        )
    }

    fn request_refused(who: &str, host: &str) -> Event {
        use breakglass_proto::audit::event::{RefusalKind, RequestRefused};
        Event::new(
            Timestamp(3_000),
            Actor::User(who.into()),
            EventKind::RequestRefused(Box::new(RequestRefused {
                kind: RefusalKind::DenyRule,
                identity: who.into(),
                principals: vec!["root".into()],
                hosts: vec![host.into()],
                command: None,
                ttl_seconds: 60,
                emergency: false,
                drill: false,
                request_reason: "x".into(),
                rule: "no-root".into(),
                tier: String::new(),
                reason: "denied by policy rule `no-root`".into(),
                request_id: None,
            })),
        )
    }

    #[test]
    fn refused_lists_only_refusals_and_combines_with_the_other_filters() {
        use breakglass_proto::audit::event::RefusalsLimited;
        let limited = Event::new(
            Timestamp(4_000),
            Actor::Daemon,
            EventKind::RefusalsLimited(RefusalsLimited {
                identity: "m@x".into(),
                window_start: Timestamp(0),
                window_end: Timestamp(3_600_000),
                limit: 1,
            }),
        );
        let ev = [
            created(1, "a@x", "db-7"),
            issued(1, 10, "a@x", "db-7"),
            refused("m@x", "r-0000000000000001"),
            request_refused("n@x", "db-7"),
            limited,
        ];
        let refused_only = |a: FilterArgs| filter(FilterArgs { refused: true, ..a }, &ev);
        assert_eq!(refused_only(FilterArgs::default()), [2, 3, 4]);
        let who = |w: &str| FilterArgs {
            requester: Some(w.into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(who("m@x")), [2, 4]);
        assert_eq!(refused_only(who("n@x")), [3]);
        // A refused approval of a@x's request is among the events of that request.
        assert_eq!(refused_only(who("a@x")), [2]);
        let g = FilterArgs {
            grant: Some("g-000000000000000a".into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(g), [2]);
        let h = FilterArgs {
            host: Some("db-7".into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(h), [3]);
        let t = FilterArgs {
            since: Some("1970-01-01T00:00:03.500Z".into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(t), [4]);
        let line = format_event(3, &ev[3], false);
        assert!(
            line.contains("request_refused user:n@x refusal=deny_rule identity=n@x"),
            "{line}"
        );
        assert!(line.contains("rule=no-root"), "{line}");
        assert!(!line.contains("tier="), "{line}");
    }

    #[test]
    fn events_print_as_text_and_json() {
        let e = created(1, "a@x", "db-7");
        let text = format_event(4, &e, false);
        assert!(
            text.starts_with("1970-01-01T00:00:01.000Z #4 request_created user:a@x request=r-0000000000000001 requester=a@x"),
            "{text}"
        );
        assert!(text.contains(r#"reason="INC-1 \"db\" down""#), "{text}");
        assert!(!text.contains("command="), "{text}");
        let json = format_event(4, &e, true);
        assert!(json.starts_with("{\"index\":4,\"time\":\"1970-01-01T00:00:01.000Z\",\"event\":\"request_created\",\"actor\":\"user:a@x\""), "{json}");
        assert!(json.contains(r#""hosts":["db-7"]"#), "{json}");
        assert!(json.contains(r#""command":null"#), "{json}");
        assert!(json.contains(r#""reason":"INC-1 \"db\" down""#), "{json}");
    }
}
