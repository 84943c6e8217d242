//! Downloading the daemon's log through the Audit API, for `verify --remote`, `show` and
//! `tail`.
#![forbid(unsafe_code)]

use crate::connect::Channel;
use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::{Event, Frontier, NoteVerifier};
use breakglass_proto::text;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::{GetCheckpointRequest, GetEntriesRequest};

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// An Audit API client.
pub fn audit_client(target: &Target) -> Result<AuditClient<Channel>, CliError> {
    Ok(AuditClient::new(connect::channel(target)?))
}

pub(super) async fn checkpoint_size(
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
            .get_entries(GetEntriesRequest {
                start: at,
                end,
                ..GetEntriesRequest::default()
            })
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

pub(super) async fn fetch_events(
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

/// The daemon's log as `tail` reads it, checked as it goes: each checkpoint's signature,
/// with the audit key the daemon sent first (a restarted daemon must keep it), and its
/// root, recomputed from every entry read so far (a Merkle frontier: a few hashes), so
/// that what is printed is what the log signed, and a log rolled back or replaced across
/// a restart is refused.
#[derive(Debug)]
pub(super) struct CheckedLog {
    verifier: NoteVerifier,
    frontier: Frontier,
}

impl CheckedLog {
    /// Reads the checkpoint, trusting the audit key it comes with for the rest of the run,
    /// and every entry up to it; returns the log and its events.
    pub(super) async fn open(
        client: &mut AuditClient<Channel>,
        target: &Target,
    ) -> Result<(Self, Vec<(u64, Event)>), CliError> {
        let cp = client
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .answer(target)?;
        let verifier = NoteVerifier::parse(cp.verifier_key.trim()).map_err(|e| {
            CliError::Verification(format!("the daemon's audit key does not parse: {e}"))
        })?;
        let mut log = Self {
            verifier,
            frontier: Frontier::new(),
        };
        let events = log.advance(client, target).await?;
        Ok((log, events))
    }

    /// Entries read so far.
    pub(super) fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Reads the latest checkpoint and the entries after the ones read, checks them
    /// against it, and returns their events.
    pub(super) async fn advance(
        &mut self,
        client: &mut AuditClient<Channel>,
        target: &Target,
    ) -> Result<Vec<(u64, Event)>, CliError> {
        let resp = client
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .answer(target)?;
        if resp.verifier_key.trim() != self.verifier.to_string() {
            return Err(CliError::Verification(format!(
                "the daemon's audit key is now {}, not {} as before: this is another log; check it with `breakglass audit verify --remote --key log.pub`",
                text::escaped(resp.verifier_key.trim()),
                self.verifier
            )));
        }
        let cp = self
            .verifier
            .verify_checkpoint(&resp.checkpoint)
            .map_err(|e| {
                CliError::Verification(format!(
                    "the daemon's checkpoint does not verify with key {}: {e}",
                    self.verifier
                ))
            })?;
        let start = self.frontier.size();
        if cp.size < start {
            return Err(CliError::Verification(format!(
                "the daemon's audit log now has {} entries, fewer than the {start} already read: it was rolled back or replaced; check it with `breakglass audit verify --remote --since FILE` against a checkpoint you saved",
                cp.size
            )));
        }
        let leaves = fetch_leaves(client, target, start, cp.size).await?;
        let mut frontier = self.frontier.clone();
        let mut events = Vec::with_capacity(leaves.len());
        for (leaf, i) in leaves.iter().zip(start..) {
            frontier.push(leaf_hash(leaf));
            let e = Event::decode(leaf)
                .map_err(|e| CliError::Verification(format!("entry {i}: {e}")))?;
            events.push((i, e));
        }
        if frontier.root() != cp.root {
            return Err(CliError::Verification(format!(
                "the root recomputed from the log's {} entries differs from its signed checkpoint's: an entry was changed, or the log does not extend the part already read; check it with `breakglass audit verify --remote`",
                cp.size
            )));
        }
        self.frontier = frontier;
        Ok(events)
    }
}
