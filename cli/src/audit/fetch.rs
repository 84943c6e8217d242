//! Downloading the daemon's log through the Audit API, for `verify --remote`, `show` and
//! `tail`.
#![forbid(unsafe_code)]

use breakglass_proto::audit::Event;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::{GetCheckpointRequest, GetEntriesRequest};
use tonic::transport::Channel;

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
