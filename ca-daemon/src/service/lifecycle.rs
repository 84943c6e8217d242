//! The request lifecycle: a request is created (and, when its tier needs no approval or
//! for an allowed emergency, issued at once), then approved, denied or cancelled by
//! people, or expires; fully approved requests are issued.

use std::time::Duration;

use breakglass_proto::audit::event::{
    ApprovalAdded, RequestCancelled, RequestCreated, RequestDenied, RequestExpired,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::v1::{RequestCertificateResponse, RequestInfo, RequestState};
use ssh_key::PublicKey;
use ssh_key::rand_core::{OsRng, RngCore};

use super::views::{WATCH_REFRESH, final_result};
use super::{Created, Service, check_note, groups_text, now};
use crate::error::Error;
use crate::fmt_duration;
use crate::notify::NoticeKind;
use crate::policy::{Caller, Decision, Tier};
use crate::refusal::RefusalKind;
use crate::request::AccessRequest;
use crate::state::{self, RequestStatus};

/// Window of the per-requester emergency limit.
const EMERGENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl Service {
    /// Expires overdue pending requests; issues approved ones not yet issued.
    pub(super) async fn sweep(&self) {
        let (_, at) = now();
        let (due, approved) = {
            let st = self.state();
            // While issuance is stopped, approved requests wait for the acknowledgement.
            let halted = !st.log_forks.is_empty();
            let mut due = Vec::new();
            let mut approved = Vec::new();
            for id in &st.pending {
                let Some(r) = st.requests.get(id) else {
                    continue;
                };
                let required = r.created.approvals_required;
                if required > 0 && self.approvers(r).len() >= required as usize {
                    if !halted {
                        approved.push(*id);
                    }
                } else if at >= r.created.expires_at {
                    due.push(*id);
                }
            }
            (due, approved)
        };
        if due.is_empty() && approved.is_empty() {
            return;
        }
        let _t = self.transitions.lock().await;
        for id in approved {
            if let Err(e) = self.issue(id, Actor::Daemon).await {
                tracing::error!(request = %id, error = %e, "issuing an approved request failed; will retry");
            }
        }
        for id in due {
            let still = {
                let st = self.state();
                st.pending.contains(&id)
                    && st
                        .requests
                        .get(&id)
                        .is_some_and(|r| at >= r.created.expires_at)
            };
            if !still {
                continue;
            }
            let ev = Event::new(
                at,
                Actor::Daemon,
                EventKind::RequestExpired(RequestExpired { request_id: id }),
            );
            match self.record(ev).await {
                Ok(_) => {
                    tracing::info!(request = %id, "request expired without enough approvals");
                    self.notify_request(id, NoticeKind::Expired, &Actor::Daemon, None, None);
                }
                Err(e) => tracing::error!(request = %id, error = %e, "recording expiry failed"),
            }
        }
    }

    /// Validates, decides and records a new request; issues it at once when
    /// its tier needs no approval or for an allowed emergency.
    pub async fn create(
        &self,
        who: &Caller,
        access: AccessRequest,
        key: PublicKey,
        emergency: bool,
    ) -> Result<Created, Error> {
        crate::revocation::refuse_revoked_key(&self.state(), &key)?;
        self.check_not_halted()?;
        if access.drill && emergency {
            return Err(Error::InvalidArgument(
                "a drill is not an emergency: ask with drill or with emergency, not both".into(),
            ));
        }
        let (t, at) = now();
        let grant = match self.policy.decide(who, &access, t) {
            Decision::Allow(g) => g,
            Decision::Deny(why) => {
                // No rule concerns a caller the configuration does not know: say so.
                let kind = match why.kind {
                    RefusalKind::NoRule if why.rule.is_none() => {
                        self.refusals.kind_for(who, RefusalKind::NoRule)
                    }
                    kind => kind,
                };
                let rule = why.rule.as_deref();
                let tier = rule
                    .filter(|_| kind != RefusalKind::DenyRule)
                    .and_then(|r| self.policy.rules().iter().find(|x| x.name == r))
                    .map(|r| r.tier.as_str());
                return Err(self
                    .refuse_request(
                        who,
                        &access,
                        emergency,
                        kind,
                        (rule, tier),
                        Error::PermissionDenied(why.message),
                    )
                    .await);
            }
        };
        let tier = self
            .policy
            .tier(&grant.tier)
            .ok_or_else(|| Error::Internal(format!("tier `{}` is not configured", grant.tier)))?;
        let rule_and_tier = (Some(grant.rule.as_str()), Some(tier.name.as_str()));
        if let Err((kind, why)) = tier.check_reason(&access.reason) {
            let e = Error::InvalidArgument(why);
            return Err(self
                .refuse_request(who, &access, emergency, kind, rule_and_tier, e)
                .await);
        }
        if access.ttl > tier.max_ttl {
            let e = Error::PermissionDenied(format!(
                "TTL {} exceeds the {} maximum of tier `{}`",
                fmt_duration(access.ttl),
                fmt_duration(tier.max_ttl),
                tier.name
            ));
            return Err(self
                .refuse_request(who, &access, emergency, RefusalKind::Ttl, rule_and_tier, e)
                .await);
        }
        let mut ttl = access.ttl;
        let mut approvals_required = tier.approvals;
        // Held while counting and recording an emergency, so concurrent
        // emergencies cannot slip past the daily limit.
        let mut _emergency_lock = None;
        let mut quota_spent = None;
        if emergency {
            let Some(e) = &tier.emergency else {
                let e = Error::PermissionDenied(format!(
                    "emergency access is not allowed for tier `{}` ({}@{}, rule `{}`); ask without --emergency{}",
                    tier.name,
                    access.principals.join(","),
                    access.hosts.join(","),
                    grant.rule,
                    if tier.approvals > 0 {
                        format!(
                            " and get {} approval(s) from {}",
                            tier.approvals,
                            groups_text(&tier.approver_groups)
                        )
                    } else {
                        String::new()
                    }
                ));
                let kind = RefusalKind::EmergencyNotAllowed;
                return Err(self
                    .refuse_request(who, &access, emergency, kind, rule_and_tier, e)
                    .await);
            };
            _emergency_lock = Some(self.transitions.lock().await);
            let since = Timestamp::from_system_time(t - EMERGENCY_WINDOW);
            // Per person: a second identity of the same owner shares the allowance.
            let me = self.person(&who.identity);
            let used = self
                .state()
                .grants
                .values()
                .filter(|g| {
                    g.issued.emergency
                        && g.issued_at >= since
                        && self.person(&g.issued.requester) == me
                })
                .count();
            if used < e.per_day as usize {
                approvals_required = 0;
                ttl = ttl.min(e.ttl);
            } else {
                tracing::warn!(
                    requester = %who.identity,
                    used,
                    limit = e.per_day,
                    "emergency limit reached; the request needs normal approval"
                );
                quota_spent = Some((used, e.per_day));
            }
        }
        let request_id = RequestId(OsRng.next_u64());
        let expires_at = Timestamp::from_system_time(t + tier.max_wait);
        let created = RequestCreated {
            request_id,
            requester: who.identity.clone(),
            public_key: key
                .to_openssh()
                .map_err(|e| Error::Internal(format!("encoding public key: {e}")))?,
            principals: access.principals.clone(),
            hosts: access.hosts.clone(),
            ttl_seconds: ttl.as_secs(),
            reason: access.reason.clone(),
            command: access.force_command.clone(),
            source_addresses: access
                .source_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            // What will be granted (the policy's default applied).
            extensions: grant.extensions.clone(),
            emergency,
            rule: grant.rule.clone(),
            tier: grant.tier.clone(),
            approvals_required,
            expires_at,
        };
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::RequestCreated(created),
        ))
        .await?;
        if let Some((used, per_day)) = quota_spent {
            let why = format!(
                "emergency self-service refused: {used} of {per_day} emergency grant(s) in 24 hours used; request {request_id} waits for {approvals_required} approval(s) from {}",
                groups_text(&tier.approver_groups)
            );
            self.record_emergency_quota(who, &access, (&grant.rule, &grant.tier), request_id, why)
                .await;
        }
        if approvals_required == 0 {
            let certificate = self.issue(request_id, who.actor()).await?;
            drop(_emergency_lock);
            return Ok(Created {
                id: request_id,
                info: self.info_of(request_id, Some(who))?,
                certificate: Some(certificate),
            });
        }
        drop(_emergency_lock);
        tracing::info!(
            request = %request_id,
            requester = %who.identity,
            tier = %tier.name,
            approvals = approvals_required,
            "request waits for approval"
        );
        self.notify_request(request_id, NoticeKind::Pending, &who.actor(), None, None);
        Ok(Created {
            id: request_id,
            info: self.info_of(request_id, Some(who))?,
            certificate: None,
        })
    }

    /// A pending request and its tier, or why it cannot change any more.
    fn pending_with_tier(&self, id: RequestId) -> Result<(state::Request, Tier), Error> {
        let (_, at) = now();
        let st = self.state();
        let r = st
            .requests
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("no request {id}")))?;
        match &r.status {
            RequestStatus::Pending if at >= r.created.expires_at => {
                return Err(Error::FailedPrecondition(format!(
                    "request {id} has expired waiting for approval"
                )));
            }
            RequestStatus::Pending => {}
            RequestStatus::Issued(g) => {
                return Err(Error::FailedPrecondition(format!(
                    "request {id} was already issued (grant {g})"
                )));
            }
            RequestStatus::Denied { by, .. } => {
                return Err(Error::FailedPrecondition(format!(
                    "request {id} was denied by {by}"
                )));
            }
            RequestStatus::Expired => {
                return Err(Error::FailedPrecondition(format!(
                    "request {id} has expired"
                )));
            }
            RequestStatus::Cancelled { by, .. } => {
                return Err(Error::FailedPrecondition(format!(
                    "request {id} was cancelled by {by}"
                )));
            }
        }
        let tier = self.policy.tier(&r.created.tier).cloned().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "request {id} is of tier `{}`, which the configuration no longer defines",
                r.created.tier
            ))
        })?;
        Ok((r.clone(), tier))
    }

    /// Records an approval; issues the certificate when it is the last one needed.
    pub async fn approve(
        &self,
        who: &Caller,
        id: RequestId,
        comment: &str,
    ) -> Result<RequestInfo, Error> {
        let comment = check_note("comment", comment, None)?;
        let _t = self.transitions.lock().await;
        let (r, tier) = self.pending_with_tier(id)?;
        let target = id.to_string();
        if self.same_person(who, &r.created.requester) {
            let e = Error::PermissionDenied(format!(
                "you cannot approve your own request {id} (requested by {}); it needs approval from someone else in {}",
                r.created.requester,
                groups_text(&tier.approver_groups)
            ));
            let kind = RefusalKind::SelfApproval;
            // A refusal changes no request: record it without holding up transitions.
            drop(_t);
            return Err(self.refuse_action(who, "approve", &target, kind, e).await);
        }
        if let Err(e) = require_approver(who, &tier, "approve") {
            let kind = self.refusals.kind_for(who, RefusalKind::NotApprover);
            drop(_t);
            return Err(self.refuse_action(who, "approve", &target, kind, e).await);
        }
        let required = r.created.approvals_required as usize;
        let before = self.approvers(&r);
        if required == 0 || before.len() >= required {
            return Err(Error::FailedPrecondition(format!(
                "request {id} needs no further approval"
            )));
        }
        if self.has_approved(who, &r) {
            return Err(Error::FailedPrecondition(format!(
                "you already approved {id}; it needs {} more approval(s) from other people in {}",
                required - before.len(),
                groups_text(&tier.approver_groups)
            )));
        }
        let (_, at) = now();
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::ApprovalAdded(ApprovalAdded {
                request_id: id,
                comment,
            }),
        ))
        .await?;
        tracing::info!(request = %id, approver = %who.identity, "approval added");
        self.notify_request(id, NoticeKind::Approval, &who.actor(), None, None);
        if before.len() + 1 >= required
            && let Err(e) = self.issue(id, who.actor()).await
        {
            // The approval is recorded; the sweep retries issuance.
            tracing::error!(request = %id, error = %e, "issuing after the last approval failed");
        }
        self.info_of(id, Some(who))
    }

    /// Denies a pending request: it ends.
    pub async fn deny(
        &self,
        who: &Caller,
        id: RequestId,
        reason: &str,
    ) -> Result<RequestInfo, Error> {
        let reason = check_note(
            "reason",
            reason,
            Some("say why the request is denied (--reason TEXT)"),
        )?;
        let _t = self.transitions.lock().await;
        let (r, tier) = self.pending_with_tier(id)?;
        let target = id.to_string();
        if self.same_person(who, &r.created.requester) {
            let e = Error::PermissionDenied(format!(
                "{id} is your own request: withdraw it with `breakglass cancel {id}`"
            ));
            let kind = RefusalKind::SelfApproval;
            drop(_t);
            return Err(self.refuse_action(who, "deny", &target, kind, e).await);
        }
        if let Err(e) = require_approver(who, &tier, "deny") {
            let kind = self.refusals.kind_for(who, RefusalKind::NotApprover);
            drop(_t);
            return Err(self.refuse_action(who, "deny", &target, kind, e).await);
        }
        let (_, at) = now();
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::RequestDenied(RequestDenied {
                request_id: id,
                reason: reason.clone(),
            }),
        ))
        .await?;
        tracing::info!(request = %id, by = %who.identity, reason = %reason, "request denied by approver");
        self.notify_request(id, NoticeKind::Denied, &who.actor(), None, Some(reason));
        self.info_of(id, Some(who))
    }

    /// Withdraws a pending request (its requester only).
    pub async fn cancel(
        &self,
        who: &Caller,
        id: RequestId,
        reason: &str,
    ) -> Result<RequestInfo, Error> {
        let reason = check_note("reason", reason, None)?;
        let _t = self.transitions.lock().await;
        let (r, _) = self.pending_with_tier(id)?;
        if !self.same_person(who, &r.created.requester) {
            let e = Error::PermissionDenied(format!(
                "only the requester ({}) may cancel {id}; approvers deny with `breakglass deny {id} --reason …`",
                r.created.requester
            ));
            let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
            drop(_t);
            return Err(self
                .refuse_action(who, "cancel", &id.to_string(), kind, e)
                .await);
        }
        let (_, at) = now();
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::RequestCancelled(RequestCancelled {
                request_id: id,
                reason: reason.clone(),
            }),
        ))
        .await?;
        self.notify_request(id, NoticeKind::Cancelled, &who.actor(), None, Some(reason));
        self.info_of(id, Some(who))
    }

    /// Creates a request and waits until it is issued or ends otherwise.
    pub async fn create_and_wait(
        &self,
        who: &Caller,
        access: AccessRequest,
        key: PublicKey,
        emergency: bool,
    ) -> Result<RequestCertificateResponse, Error> {
        let created = self.create(who, access, key, emergency).await?;
        if let Some(c) = created.certificate {
            return Ok(c);
        }
        let id = created.id;
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let info = self.info_of(id, Some(who))?;
            let state = RequestState::try_from(info.state).unwrap_or(RequestState::Unspecified);
            if !matches!(state, RequestState::Pending | RequestState::Approved) {
                return final_result(&info, self.certificate_of(id));
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() {
                    return Err(Error::Unavailable("the daemon is shutting down".into()));
                },
                _ = tokio::time::sleep(WATCH_REFRESH) => {}
            }
        }
    }
}

/// Refuses a caller outside the tier's approver groups, saying who may act.
fn require_approver(who: &Caller, tier: &Tier, verb: &str) -> Result<(), Error> {
    if tier.may_approve(who) {
        return Ok(());
    }
    Err(Error::PermissionDenied(format!(
        "{} may not {verb} requests of tier `{}`: approvers must be in {} (your groups: {})",
        who.identity,
        tier.name,
        groups_text(&tier.approver_groups),
        groups_text(&who.groups)
    )))
}
