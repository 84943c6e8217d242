//! Requests and grants the state no longer holds in memory (evicted after they ended,
//! see [`crate::state`]), read back from the log through the on-disk index
//! ([`crate::history`]): views of old requests and grants keep working.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use breakglass_proto::audit::{EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;

use tokio::sync::watch;

use super::Service;
use crate::error::{Error, NothingToRevoke};
use crate::history::{History, Subject};
use crate::state::{Grant, RECORD_KEEP_MS, Request};

/// How often the index catches up with the log in the background: often enough that what
/// is new is still in the writer's memory (`AuditLog::follow`), not read back from disk.
const INDEX_EVERY: Duration = Duration::from_millis(50);

impl Service {
    /// The on-disk index of the log and the reads through it.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Request `id` as it stands: from memory, or rebuilt from the log when it was
    /// evicted. A read failure is logged and counts as not found.
    pub(crate) fn request_anytime(&self, id: RequestId) -> Option<Request> {
        if let Some(r) = self.state().request(id) {
            return Some(r.into_owned());
        }
        match self.history.request(id) {
            Ok(found) => found.map(|(r, _)| r),
            Err(e) => {
                tracing::error!(request = %id, error = %e, "reading a request from the audit log failed");
                None
            }
        }
    }

    /// Grant `id` and its request: from memory, or rebuilt from the log when evicted.
    pub(crate) fn grant_anytime(&self, id: GrantId) -> Option<(Grant, Option<Request>)> {
        {
            let st = self.state();
            if let Some(g) = st.grants.get(&id) {
                let r = st.request(g.issued.request_id).map(Cow::into_owned);
                return Some((g.clone(), r));
            }
        }
        match self.history.grant(id) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(grant = %id, error = %e, "reading a grant from the audit log failed");
                None
            }
        }
    }

    /// Keeps the index up to date with the log, every [`INDEX_EVERY`], until `stop` turns
    /// true (a read catches it up anyway; this keeps that catch-up short).
    pub(super) fn keep_history_indexed(&self, mut stop: watch::Receiver<bool>) {
        let (history, log) = (self.history.clone(), self.audit.clone());
        tokio::spawn(async move {
            // How far the index reaches (0: not known yet).
            let mut indexed = 0;
            loop {
                let (h, stopping) = (history.clone(), stop.clone());
                // The runtime waits for this task at exit: it stops at the next batch.
                let go_on = move || !*stopping.borrow();
                let behind = indexed == 0 || log.size() > indexed;
                let caught_up = if behind {
                    tokio::task::spawn_blocking(move || h.catch_up_while(go_on)).await
                } else {
                    Ok(Ok(indexed))
                };
                match caught_up {
                    Ok(Ok(upto)) => indexed = upto,
                    Ok(Err(e)) => tracing::warn!(error = %e, "indexing the audit log failed"),
                    Err(e) => tracing::warn!(error = %e, "indexing the audit log failed"),
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(INDEX_EVERY) => {}
                }
            }
        });
    }

    /// True when the host record `record_id` of time `at` is in the log already. Memory
    /// remembers record ids for [`RECORD_KEEP_MS`] after their time, so an earlier
    /// delivery of a recent record is found there; only an old record is looked up
    /// through the index.
    pub(crate) fn host_record_seen(&self, record_id: &str, at: Timestamp) -> bool {
        {
            let st = self.state();
            if st.host_records.contains(record_id) {
                return true;
            }
            if at.0.saturating_add(RECORD_KEEP_MS) > st.clock {
                return false;
            }
        }
        self.history.has_record(record_id).unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading host records from the audit log failed");
            false
        })
    }

    /// True when grant `id` was issued: in memory, or (evicted) through the index.
    pub(crate) fn grant_known(&self, id: GrantId) -> bool {
        self.state().grants.contains_key(&id)
            || self
                .history
                .events_of(&Subject::Grant(id))
                .is_ok_and(|evs| {
                    evs.iter().any(
                        |(_, e)| matches!(&e.kind, EventKind::GrantIssued(g) if g.grant_id == id),
                    )
                })
    }

    /// A revocation's selection ([`crate::revocation`]) completed with what the state no
    /// longer holds: a grant id or serial of an evicted grant is an expired grant (nothing
    /// to revoke), and a public key whose grants all left memory selects its newest grant
    /// (so that the key itself can still be revoked).
    pub(crate) fn select_evicted(
        &self,
        selected: Result<Vec<GrantId>, Error>,
    ) -> Result<Vec<GrantId>, Error> {
        match selected {
            Err(Error::NothingToRevoke(NothingToRevoke::NoGrant(what))) => {
                match what.parse::<GrantId>() {
                    Ok(grant) if self.grant_known(grant) => {
                        Err(Error::GrantExpired { grant, what })
                    }
                    _ => Err(Error::NothingToRevoke(NothingToRevoke::NoGrant(what))),
                }
            }
            Err(Error::NothingToRevoke(NothingToRevoke::NoSerial(n))) => {
                let issued = self
                    .history
                    .events_of(&Subject::Serial(n))
                    .ok()
                    .and_then(|evs| {
                        evs.into_iter().find_map(|(_, e)| match &e.kind {
                            EventKind::GrantIssued(g) if g.serial == n => Some(g.grant_id),
                            _ => None,
                        })
                    });
                match issued {
                    Some(grant) => Err(Error::GrantExpired {
                        grant,
                        what: format!("serial {n}"),
                    }),
                    None => Err(Error::NothingToRevoke(NothingToRevoke::NoSerial(n))),
                }
            }
            Err(Error::NothingToRevoke(NothingToRevoke::NeverIssued(fp))) => {
                match self.history.newest_grant_of_key(&fp) {
                    Ok(Some(g)) => Ok(vec![g]),
                    _ => Err(Error::NothingToRevoke(NothingToRevoke::NeverIssued(fp))),
                }
            }
            other => other,
        }
    }
}
