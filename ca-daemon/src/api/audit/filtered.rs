//! `GetEntries` with a filter (`grant`, `since_ms`): the matching entries only, found
//! through the log's on-disk index ([`crate::history`]) instead of sending the whole log
//! to be filtered by the caller. Every entry returned is read from the log and checked
//! against the filter; the index only narrows where to look.

use breakglass_proto::audit::{Event, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::v1::GetEntriesResponse;

use crate::audit::{AuditError, AuditLog, MAX_ENTRIES_PER_READ};
use crate::error::Error;
use crate::history::History;

/// Most entries returned by one `GetEntries` call.
pub const MAX_ENTRIES_PER_CALL: u64 = 1000;
/// Entries are cut once an answer holds this many bytes (under tonic's 4 MiB default).
pub const MAX_ENTRY_BYTES_PER_CALL: usize = 2 * 1024 * 1024;

/// Entries examined by one `--since` call before it answers with what it found.
const MAX_SCANNED_PER_CALL: u64 = 4 * MAX_ENTRIES_PER_READ;

/// What a filtered `GetEntries` asks for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Filter {
    grant: Option<GrantId>,
    since: Option<Timestamp>,
}

/// Answer being filled: stops at the entry or byte limit.
#[derive(Debug, Default)]
struct Answer {
    out: GetEntriesResponse,
    bytes: usize,
}

impl Answer {
    /// Adds one entry; false when the answer is full (the entry is not added).
    fn add(&mut self, index: u64, leaf: Vec<u8>) -> bool {
        let full = self.out.entries.len() as u64 >= MAX_ENTRIES_PER_CALL
            || (!self.out.entries.is_empty()
                && self.bytes + leaf.len() + 8 > MAX_ENTRY_BYTES_PER_CALL);
        if full {
            return false;
        }
        self.bytes += leaf.len() + 8;
        self.out.indices.push(index);
        self.out.entries.push(leaf);
        true
    }
}

impl Filter {
    /// The filter of a request's fields; a malformed grant id is refused.
    pub(super) fn new(grant: &str, since_ms: u64) -> Result<Self, Error> {
        let grant = if grant.is_empty() {
            None
        } else {
            Some(
                grant
                    .trim()
                    .parse::<GrantId>()
                    .map_err(|e| Error::invalid_field("grant", e))?,
            )
        };
        Ok(Self {
            grant,
            since: (since_ms > 0).then_some(Timestamp(since_ms)),
        })
    }

    fn time_ok(&self, e: &Event) -> bool {
        self.since.is_none_or(|t| e.time >= t)
    }

    /// The matching entries of `start..end`, as many as one answer holds. Blocking.
    pub(super) fn read(
        &self,
        log: &AuditLog,
        history: &History,
        start: u64,
        end: u64,
    ) -> Result<GetEntriesResponse, AuditError> {
        let mut a = Answer::default();
        a.out.start = start;
        a.out.next = end;
        if let Some(g) = self.grant {
            for (i, e) in history.grant_story(g)? {
                if i < start || i >= end || !self.time_ok(&e) {
                    continue;
                }
                let Some(leaf) = log.entries(i, i + 1)?.pop() else {
                    continue;
                };
                if !a.add(i, leaf) {
                    a.out.next = i;
                    break;
                }
            }
            return Ok(a.out);
        }
        let since = self.since.unwrap_or_default();
        let mut scanned = 0;
        'ranges: for (from, to) in history.ranges_since(since, start, end)? {
            let mut at = from;
            while at < to {
                if scanned >= MAX_SCANNED_PER_CALL {
                    a.out.next = at;
                    break 'ranges;
                }
                let upto = to.min(at + MAX_ENTRIES_PER_READ);
                for (i, leaf) in (at..).zip(log.entries(at, upto)?) {
                    let e = Event::decode(&leaf)
                        .map_err(|e| AuditError::OutOfRange(format!("event {i}: {e}")))?;
                    if self.time_ok(&e) && !a.add(i, leaf) {
                        a.out.next = i;
                        break 'ranges;
                    }
                }
                scanned += upto - at;
                at = upto;
            }
        }
        Ok(a.out)
    }
}
