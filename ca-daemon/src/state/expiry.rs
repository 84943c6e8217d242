//! When the state lets go of what it holds: release times, ordered by time, and eviction
//! as the log's time passes them. O(log n) per insert and per eviction; no scan.

use breakglass_proto::audit::RequestId;
use breakglass_proto::profile::GrantId;

use super::{EMERGENCY_WINDOW, Grant, Request, RequestStatus, State};

/// How long a grant stays in memory after its certificate expired: late host records
/// (a session ended at expiry) still find it; later ones are read from the log.
pub const GRANT_KEEP_AFTER_EXPIRY_MS: u64 = 120_000;
/// How long a decided request that was not issued (denied, expired, cancelled) stays
/// in memory after its approval deadline.
pub const REQUEST_KEEP_AFTER_DEADLINE_MS: u64 = 120_000;
/// How long a session reported for a grant not in memory is kept.
pub const ORPHAN_KEEP_MS: u64 = 3_600_000;
/// How long a host record id is remembered in memory (a re-delivery after that is found
/// through the on-disk index).
pub const RECORD_KEEP_MS: u64 = 3_600_000;

/// What the state holds until a release time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Held {
    /// A grant (with its request and serial).
    Grant(GrantId),
    /// A request decided without a grant.
    Request(RequestId),
    /// A session of a grant not in memory, by `host/session id`.
    Orphan(String),
    /// A host record id (duplicate detection).
    Record(String),
}

/// When `g` may leave memory (Unix ms): after its certificate expired, and for an
/// emergency grant after it left the daily emergency count; `None` while it is an
/// emergency grant not reviewed yet (the review list shows it).
#[must_use]
pub fn release_of_grant(g: &Grant) -> Option<u64> {
    if g.issued.emergency && g.review.is_none() {
        return None;
    }
    let expired = g
        .issued
        .valid_before
        .saturating_mul(1000)
        .saturating_add(GRANT_KEEP_AFTER_EXPIRY_MS);
    let counted = if g.issued.emergency {
        let window = u64::try_from(EMERGENCY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        g.issued_at.0.saturating_add(window)
    } else {
        0
    };
    Some(expired.max(counted))
}

/// When `r` may leave memory (Unix ms): a request decided without a grant, shortly after
/// its approval deadline; `None` while pending or issued (it leaves with its grant).
#[must_use]
pub fn release_of_request(r: &Request) -> Option<u64> {
    match r.status {
        RequestStatus::Pending | RequestStatus::Issued(_) => None,
        RequestStatus::Denied { .. } | RequestStatus::Expired | RequestStatus::Cancelled { .. } => {
            Some(
                r.created
                    .expires_at
                    .0
                    .max(r.created_at.0)
                    .saturating_add(REQUEST_KEEP_AFTER_DEADLINE_MS),
            )
        }
    }
}

impl State {
    /// Evicts everything held until before `t` (Unix ms).
    pub fn evict_before(&mut self, t: u64) {
        while let Some((release, _)) = self.expiry.first()
            && *release < t
        {
            let Some((_, held)) = self.expiry.pop_first() else {
                break;
            };
            self.evict(held);
        }
    }

    fn evict(&mut self, held: Held) {
        match held {
            Held::Grant(id) => {
                let Some(g) = self.grants.remove(&id) else {
                    return;
                };
                if self.serials.get(&g.issued.serial) == Some(&id) {
                    self.serials.remove(&g.issued.serial);
                }
                if let Some(i) = g.revoked_index {
                    self.revocations.remove(&i);
                }
                let request = g.issued.request_id;
                if self
                    .requests
                    .get(&request)
                    .is_some_and(|r| r.status == RequestStatus::Issued(id))
                {
                    self.requests.remove(&request);
                }
            }
            Held::Request(id) => {
                // Issued after all (a late grant): it leaves with its grant instead.
                if self
                    .requests
                    .get(&id)
                    .is_some_and(|r| release_of_request(r).is_some())
                {
                    self.requests.remove(&id);
                }
            }
            Held::Orphan(key) => {
                self.orphan_sessions.remove(&key);
            }
            Held::Record(id) => {
                self.host_records.remove(&id);
            }
        }
    }

    /// Moves `what` from release `before` to release `after` in the queue.
    pub(super) fn requeue(&mut self, what: Held, before: Option<u64>, after: Option<u64>) {
        if before == after {
            return;
        }
        if let Some(b) = before {
            self.expiry.remove(&(b, what.clone()));
        }
        if let Some(a) = after {
            self.expiry.insert((a, what));
        }
    }
}
