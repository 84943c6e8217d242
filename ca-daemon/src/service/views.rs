//! What callers may see of requests and grants, as the wire shows it: the request's
//! state and who may act on it, its certificate once issued, the sessions and reviews of
//! grants.

use breakglass_proto::audit::recordings::RecordingIndex;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use breakglass_proto::audit::event::ReviewVerdict;
use breakglass_proto::audit::{Actor, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::v1::{
    self as wire, RequestCertificateResponse, RequestInfo, RequestState, RequestUpdate, ReviewItem,
    SessionInfo,
};
use tokio::sync::mpsc;
use tonic::Status;

use super::{Service, actor_name, now, secs};
use crate::error::{Error, RequesterAct};
use crate::notify;
use crate::policy::Caller;
use crate::refusal::RefusalKind;
use crate::state::{self, RequestStatus};

/// How often a watcher is sent the request again (time left) without a change.
pub(super) const WATCH_REFRESH: Duration = Duration::from_secs(5);

impl Service {
    /// The wire view of a request, as seen by `who` (if any) at `at`.
    pub(super) fn info(
        &self,
        r: &state::Request,
        who: Option<&Caller>,
        at: Timestamp,
    ) -> RequestInfo {
        let c = &r.created;
        let policy = self.policy();
        let tier = policy.tier(&c.tier);
        let approvers = self.approvers(r);
        let enough = c.approvals_required > 0 && approvers.len() >= c.approvals_required as usize;
        let (state, grant_id, decided_by, decision_reason) = match &r.status {
            RequestStatus::Pending if enough => (
                RequestState::Approved,
                String::new(),
                String::new(),
                String::new(),
            ),
            RequestStatus::Pending => (
                RequestState::Pending,
                String::new(),
                String::new(),
                String::new(),
            ),
            RequestStatus::Issued(g) => (
                RequestState::Issued,
                g.to_string(),
                String::new(),
                String::new(),
            ),
            RequestStatus::Denied { by, reason } => (
                RequestState::Denied,
                String::new(),
                by.to_string(),
                reason.clone(),
            ),
            RequestStatus::Expired => (
                RequestState::Expired,
                String::new(),
                Actor::Daemon.to_string(),
                "no approval in time".to_owned(),
            ),
            RequestStatus::Cancelled { by, reason } => (
                RequestState::Cancelled,
                String::new(),
                by.to_string(),
                reason.clone(),
            ),
        };
        let pending = r.status == RequestStatus::Pending;
        let can_approve = pending
            && !enough
            && who.is_some_and(|w| {
                tier.is_some_and(|t| t.may_approve(w))
                    && !self.same_person(w, &c.requester)
                    && !self.has_approved(w, r)
            });
        RequestInfo {
            request_id: c.request_id.to_string(),
            state: state as i32,
            requester: c.requester.clone(),
            principals: c.principals.clone(),
            hosts: c.hosts.clone(),
            command: c.command.clone().unwrap_or_default(),
            reason: c.reason.clone(),
            tier: c.tier.clone(),
            rule: c.rule.clone(),
            emergency: c.emergency,
            ttl_seconds: i64::try_from(c.ttl_seconds).unwrap_or(i64::MAX),
            approvals_required: c.approvals_required,
            approver_groups: tier.map(|t| t.approver_groups.clone()).unwrap_or_default(),
            approvals: r
                .approvals
                .iter()
                .map(|(a, comment, t)| wire::Approval {
                    approver: actor_name(a),
                    comment: comment.clone(),
                    at: secs(*t),
                })
                .collect(),
            created_at: secs(r.created_at),
            expires_at: secs(c.expires_at),
            seconds_left: if pending {
                (secs(c.expires_at) - secs(at)).max(0)
            } else {
                0
            },
            grant_id,
            decided_by,
            decision_reason,
            approve_command: notify::approve_command(self.client_config().as_deref(), c.request_id),
            can_approve,
        }
    }

    pub(super) fn info_of(
        &self,
        id: RequestId,
        who: Option<&Caller>,
    ) -> Result<RequestInfo, Error> {
        let (_, at) = now();
        let r = self.request_anytime(id).ok_or(Error::NoRequest(id))?;
        Ok(self.info(&r, who, at))
    }

    /// Who may see a request: its requester, its tier's approvers and reviewers.
    fn may_see(&self, who: &Caller, r: &state::Request) -> bool {
        self.same_person(who, &r.created.requester)
            || self
                .policy()
                .tier(&r.created.tier)
                .is_some_and(|t| t.may_approve(who) || t.may_review(who))
    }

    /// One request, if the caller may see it.
    pub async fn get(&self, who: &Caller, id: RequestId) -> Result<RequestInfo, Error> {
        let (_, at) = now();
        let refused = {
            let r = self.request_anytime(id).ok_or(Error::NoRequest(id))?;
            if self.may_see(who, &r) {
                return Ok(self.info(&r, Some(who), at));
            }
            Error::MayNotSee {
                identity: who.identity.clone(),
                request: id,
            }
        };
        let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
        Err(self
            .refuse_action(who, "show", &id.to_string(), kind, refused)
            .await)
    }

    /// Pending requests the caller may approve, and the caller's own.
    pub fn list_pending(&self, who: &Caller) -> Vec<RequestInfo> {
        let (_, at) = now();
        let st = self.state();
        st.pending
            .iter()
            .filter_map(|id| st.pending_request(*id))
            .filter(|r| {
                self.same_person(who, &r.created.requester)
                    || self
                        .policy()
                        .tier(&r.created.tier)
                        .is_some_and(|t| t.may_approve(who))
            })
            .map(|r| self.info(r, Some(who), at))
            .collect()
    }

    /// The certificate of an issued request (its requester only).
    pub async fn fetch(
        &self,
        who: &Caller,
        id: RequestId,
    ) -> Result<RequestCertificateResponse, Error> {
        let info = {
            let (_, at) = now();
            let r = self.request_anytime(id).ok_or(Error::NoRequest(id))?;
            if self.same_person(who, &r.created.requester) {
                Ok(self.info(&r, Some(who), at))
            } else {
                Err(Error::OnlyRequester {
                    requester: r.created.requester.clone(),
                    act: RequesterAct::Fetch(id),
                })
            }
        };
        match info {
            Ok(info) => final_result(&info, self.certificate_of(id)),
            Err(e) => {
                let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
                Err(self
                    .refuse_action(who, "fetch", &id.to_string(), kind, e)
                    .await)
            }
        }
    }

    /// Streams a request's state until it is final (its requester only).
    pub async fn watch(
        self: &Arc<Self>,
        who: &Caller,
        id: RequestId,
    ) -> Result<mpsc::Receiver<Result<RequestUpdate, Status>>, Error> {
        let requester = self
            .request_anytime(id)
            .map(|r| r.created.requester)
            .ok_or(Error::NoRequest(id))?;
        if !self.same_person(who, &requester) {
            let e = Error::OnlyRequester {
                requester,
                act: RequesterAct::Watch(id),
            };
            let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
            return Err(self
                .refuse_action(who, "watch", &id.to_string(), kind, e)
                .await);
        }
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        let who = who.clone();
        let mut changes = self.changes.subscribe();
        tokio::spawn(async move {
            let mut last: Option<RequestInfo> = None;
            let mut since_sent = tokio::time::Instant::now();
            loop {
                changes.borrow_and_update();
                let info = match svc.info_of(id, Some(&who)) {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let state = RequestState::try_from(info.state).unwrap_or(RequestState::Unspecified);
                let done = !matches!(state, RequestState::Pending | RequestState::Approved);
                let certificate = if state == RequestState::Issued {
                    svc.certificate_of(id)
                } else {
                    None
                };
                let changed = last.as_ref().is_none_or(|l| {
                    RequestInfo {
                        seconds_left: 0,
                        ..l.clone()
                    } != RequestInfo {
                        seconds_left: 0,
                        ..info.clone()
                    }
                });
                if changed || done || since_sent.elapsed() >= WATCH_REFRESH {
                    let update = RequestUpdate {
                        request: Some(info.clone()),
                        certificate,
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                    since_sent = tokio::time::Instant::now();
                    last = Some(info);
                }
                if done {
                    return;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(WATCH_REFRESH) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    /// Emergency grants (unreviewed, or all) of tiers the caller may review. Unreviewed
    /// ones are always in memory; reviewed ones that left it are read back from the log.
    pub fn list_reviews(&self, who: &Caller, include_reviewed: bool) -> Vec<ReviewItem> {
        let may_review = |g: &state::Grant| {
            self.policy()
                .tier(&g.issued.tier)
                .is_some_and(|t| t.may_review(who))
        };
        // Reviewed grants that left memory, read from the log before the state is locked.
        let old = if include_reviewed {
            match self.history().emergency_grants() {
                Ok(old) => old,
                Err(e) => {
                    tracing::error!(error = %e, "reading emergency grants from the audit log failed");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let st = self.state();
        let mut items: Vec<(GrantId, ReviewItem)> = st
            .grants
            .values()
            .filter(|g| g.issued.emergency && (include_reviewed || g.review.is_none()))
            .filter(|g| may_review(g))
            .map(|g| {
                let r = st.request(g.issued.request_id);
                (
                    g.issued.grant_id,
                    review_item(g, r.as_deref(), &st.recordings),
                )
            })
            .collect();
        let held: BTreeSet<GrantId> = items.iter().map(|(g, _)| *g).collect();
        items.extend(
            old.iter()
                .filter(|(g, _)| !held.contains(&g.issued.grant_id) && may_review(g))
                .map(|(g, r)| {
                    (
                        g.issued.grant_id,
                        review_item(g, r.as_ref(), &st.recordings),
                    )
                }),
        );
        items.sort_by_key(|(g, _)| *g);
        items.into_iter().map(|(_, item)| item).collect()
    }

    /// The caller's own live grants (issued, not revoked, not expired), soonest to
    /// expire first. Only grants the caller requested (or another identity of the same
    /// owner) are listed, never anyone else's.
    pub fn list_my_grants(&self, who: &Caller) -> Vec<wire::GrantInfo> {
        let (_, at) = now();
        let now = at.unix_seconds();
        let st = self.state();
        let mut grants: Vec<wire::GrantInfo> = st
            .grants
            .values()
            .filter(|g| g.revoked.is_none() && g.issued.valid_before > now)
            .filter(|g| self.same_person(who, &g.issued.requester))
            .map(grant_info)
            .collect();
        grants.sort_by_key(|g| (g.valid_before, g.grant_id.clone()));
        grants
    }

    /// The host sessions recorded for one of the caller's own grants.
    pub async fn grant_sessions(
        &self,
        who: &Caller,
        grant_id: GrantId,
    ) -> Result<Vec<SessionInfo>, Error> {
        // From memory, or read back from the log when the grant was evicted.
        let sessions = self
            .grant_anytime(grant_id)
            .ok_or(Error::NoGrant(grant_id))
            .and_then(|(g, _)| {
                self.check_own(&g, who, "list the sessions of")?;
                Ok(session_infos(&g, &self.state().recordings))
            });
        match sessions {
            Err(e @ Error::OnlyRequester { .. }) => {
                let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
                let target = grant_id.to_string();
                Err(self.refuse_action(who, "sessions", &target, kind, e).await)
            }
            other => other,
        }
    }

    /// One of the caller's own grants; `what` names the action in the refusal
    /// ("only the requester (…) may <what> grant g-…").
    pub(super) fn own_grant<'s>(
        &self,
        st: &'s state::State,
        who: &Caller,
        grant_id: GrantId,
        what: &'static str,
    ) -> Result<&'s state::Grant, Error> {
        let g = st.grants.get(&grant_id).ok_or(Error::NoGrant(grant_id))?;
        self.check_own(g, who, what)?;
        Ok(g)
    }

    /// Refuses `g` unless the caller requested it (or another identity of the same owner).
    pub(super) fn check_own(
        &self,
        g: &state::Grant,
        who: &Caller,
        what: &'static str,
    ) -> Result<(), Error> {
        if !self.same_person(who, &g.issued.requester) {
            return Err(Error::OnlyRequester {
                requester: g.issued.requester.clone(),
                act: RequesterAct::Grant {
                    what,
                    grant: g.issued.grant_id,
                },
            });
        }
        Ok(())
    }
}

/// The certificate of a request that has ended, or why there is none.
pub(super) fn final_result(
    info: &RequestInfo,
    kept: Option<RequestCertificateResponse>,
) -> Result<RequestCertificateResponse, Error> {
    let id = &info.request_id;
    match RequestState::try_from(info.state).unwrap_or(RequestState::Unspecified) {
        RequestState::Issued => kept.ok_or_else(|| Error::CertificateGone {
            request: id.clone(),
            grant: info.grant_id.clone(),
        }),
        RequestState::Denied => Err(Error::RequestDenied {
            request: id.clone(),
            by: info.decided_by.clone(),
            reason: info.decision_reason.clone(),
        }),
        RequestState::Expired => Err(Error::RequestExpired(id.clone())),
        RequestState::Cancelled => Err(Error::RequestCancelled {
            request: id.clone(),
            by: info.decided_by.clone(),
        }),
        _ => Err(Error::StillWaiting {
            request: id.clone(),
            approvals: info.approvals.len(),
            required: info.approvals_required,
        }),
    }
}

/// The wire view of a grant's host sessions.
fn session_infos(g: &state::Grant, recordings: &RecordingIndex) -> Vec<SessionInfo> {
    g.sessions
        .values()
        .map(|s| {
            let rec = recordings.get(&s.session_id).filter(|r| r.host == s.host);
            SessionInfo {
                host: s.host.clone(),
                principal: s.principal.clone(),
                session_id: s.session_id.clone(),
                remote_addr: s.remote_addr.clone(),
                opened_at: s.opened_at.map_or(0, secs),
                closed_at: s.closed_at.map_or(0, secs),
                ended: s
                    .ended
                    .as_ref()
                    .map(|(reason, _, _)| format!("{reason:?}").to_lowercase())
                    .unwrap_or_default(),
                recording: rec.map(|r| r.state().to_owned()).unwrap_or_default(),
                recording_sha256: rec.map(|r| r.digest.sha256_text()).unwrap_or_default(),
                recording_bytes: rec.map_or(0, |r| r.digest.bytes),
                recording_duration_ms: rec.map_or(0, |r| r.digest.duration_ms),
            }
        })
        .collect()
}

/// The wire view of a grant, for its requester.
fn grant_info(g: &state::Grant) -> wire::GrantInfo {
    let i = &g.issued;
    wire::GrantInfo {
        grant_id: i.grant_id.to_string(),
        request_id: i.request_id.to_string(),
        requester: i.requester.clone(),
        principals: i.principals.clone(),
        hosts: i.hosts.clone(),
        command: i.command.clone().unwrap_or_default(),
        tier: i.tier.clone(),
        rule: i.rule.clone(),
        serial: i.serial,
        valid_after: i64::try_from(i.valid_after).unwrap_or(i64::MAX),
        valid_before: i64::try_from(i.valid_before).unwrap_or(i64::MAX),
        emergency: i.emergency,
        source_addresses: i.source_addresses.clone(),
        extensions: i.extensions.clone(),
    }
}

pub(super) fn review_item(
    g: &state::Grant,
    r: Option<&state::Request>,
    recordings: &RecordingIndex,
) -> ReviewItem {
    let i = &g.issued;
    let (verdict, reviewer, note, reviewed_at) = match g.review.as_deref() {
        Some((v, by, note, at)) => (
            match v {
                ReviewVerdict::Accepted => "ok",
                ReviewVerdict::Rejected => "misuse",
            }
            .to_owned(),
            actor_name(by),
            note.clone(),
            secs(*at),
        ),
        None => Default::default(),
    };
    ReviewItem {
        grant_id: i.grant_id.to_string(),
        request_id: i.request_id.to_string(),
        requester: i.requester.clone(),
        principals: i.principals.clone(),
        hosts: i.hosts.clone(),
        command: i.command.clone().unwrap_or_default(),
        reason: r.map(|r| r.created.reason.clone()).unwrap_or_default(),
        tier: i.tier.clone(),
        serial: i.serial,
        valid_after: i.valid_after as i64,
        valid_before: i.valid_before as i64,
        emergency: i.emergency,
        sessions: session_infos(g, recordings),
        verdict,
        reviewer,
        note,
        reviewed_at,
    }
}
