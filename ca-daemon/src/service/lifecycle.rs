//! The request lifecycle: a request is created (and, when its tier needs no approval or
//! for an allowed emergency, issued at once), then approved, denied or cancelled by
//! people, or expires; fully approved requests are issued.

use breakglass_proto::audit::event::{
    ApprovalAdded, RequestCancelled, RequestCreated, RequestDenied, RequestExpired,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::v1::{RequestCertificateResponse, RequestInfo, RequestState};
use ssh_key::PublicKey;
use ssh_key::rand_core::{OsRng, RngCore};

use super::views::{WATCH_REFRESH, final_result};
use super::{Created, Service, check_note, now};
use crate::error::{Closed, Error, RequesterAct};
use crate::notify::NoticeKind;
use crate::policy::{Admission, Admitted, Caller, Tier};
use crate::refusal::RefusalKind;
use crate::request::AccessRequest;
use crate::state::{self, RequestStatus};

/// How someone settles a pending request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// An approver approves it.
    Approve,
    /// An approver denies it: it ends.
    Deny,
    /// Its requester withdraws it: it ends.
    Cancel,
}

impl Settle {
    /// The call's stable name (in refusal records and messages).
    pub fn action(self) -> &'static str {
        match self {
            Settle::Approve => "approve",
            Settle::Deny => "deny",
            Settle::Cancel => "cancel",
        }
    }
}

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
                let Some(r) = st.pending_request(*id) else {
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
        let Ok(_t) = self.transition().await else {
            // The database is unreachable: the next sweep tries again.
            return;
        };
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
                        .pending_request(id)
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

    /// Admits (by policy) and records a new request; issues it at once when its tier needs
    /// no approval or for an allowed emergency.
    pub async fn create(
        &self,
        who: &Caller,
        access: AccessRequest,
        key: PublicKey,
        emergency: bool,
    ) -> Result<Created, Error> {
        let (id, certificate) = self.open_request(who, access, key, emergency).await?;
        Ok(Created {
            id,
            info: self.info_of(id, Some(who))?,
            certificate,
        })
    }

    /// [`create`](Self::create) without the request's view: its id, and its certificate
    /// when it was issued at once.
    async fn open_request(
        &self,
        who: &Caller,
        access: AccessRequest,
        key: PublicKey,
        emergency: bool,
    ) -> Result<(RequestId, Option<RequestCertificateResponse>), Error> {
        self.refuse_revoked_key(&key)?;
        self.check_not_halted()?;
        if access.drill && emergency {
            return Err(Error::DrillAndEmergency);
        }
        let (t, at) = now();
        // Held while counting and recording an emergency, so concurrent
        // emergencies cannot slip past the daily limit.
        let emergency_lock = if emergency {
            Some(self.transition().await?)
        } else {
            None
        };
        // Per person: a second identity of the same owner shares the allowance.
        let emergencies_since = |since| {
            let since = Timestamp::from_system_time(since);
            let me = self.person(&who.identity);
            self.state()
                .grants
                .values()
                .filter(|g| {
                    g.issued.emergency
                        && g.issued_at >= since
                        && self.person(&g.issued.requester) == me
                })
                .count()
        };
        let admitted = match self
            .policy()
            .admit(who, &access, emergency, t, emergencies_since)?
        {
            Admission::Admit(a) => a,
            Admission::Refuse(r) => {
                drop(emergency_lock);
                // No rule concerns a caller the configuration does not know: say so.
                let kind = match r.kind {
                    RefusalKind::NoRule if r.rule.is_none() => {
                        self.refusals.kind_for(who, RefusalKind::NoRule)
                    }
                    kind => kind,
                };
                let rule_and_tier = (r.rule.as_deref(), r.tier.as_deref());
                return Err(self
                    .refuse_request(who, &access, emergency, kind, rule_and_tier, r.error)
                    .await);
            }
        };
        let Admitted {
            grant,
            ttl,
            approvals_required,
            max_wait,
            approver_groups,
            quota_spent,
        } = admitted;
        if let Some((used, per_day)) = quota_spent {
            tracing::warn!(
                requester = %who.identity,
                used,
                limit = per_day,
                "emergency limit reached; the request needs normal approval"
            );
        }
        let request_id = RequestId(OsRng.next_u64());
        let expires_at = Timestamp::from_system_time(t + max_wait);
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
        if approvals_required == 0 && quota_spent.is_none() {
            let certificate = self.create_issued(created, &key, who.actor()).await?;
            drop(emergency_lock);
            return Ok((request_id, Some(certificate)));
        }
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::RequestCreated(created),
        ))
        .await?;
        if let Some((used, per_day)) = quota_spent {
            let why = Error::EmergencyQuotaSpent {
                used,
                per_day,
                request: request_id,
                approvals: approvals_required,
                approver_groups,
            };
            self.record_emergency_quota(who, &access, (&grant.rule, &grant.tier), request_id, why)
                .await;
        }
        if approvals_required == 0 {
            let certificate = self.issue(request_id, who.actor()).await?;
            drop(emergency_lock);
            return Ok((request_id, Some(certificate)));
        }
        drop(emergency_lock);
        tracing::info!(
            request = %request_id,
            requester = %who.identity,
            tier = %grant.tier,
            approvals = approvals_required,
            "request waits for approval"
        );
        self.notify_request(request_id, NoticeKind::Pending, &who.actor(), None, None);
        Ok((request_id, None))
    }

    /// A pending request and its tier, or why it cannot change any more.
    fn pending_with_tier(&self, id: RequestId) -> Result<(state::Request, Tier), Error> {
        let (_, at) = now();
        // A request evicted from memory has ended: read back, it says how.
        let r = self.request_anytime(id).ok_or(Error::NoRequest(id))?;
        let closed = |how| Err(Error::Closed { request: id, how });
        match &r.status {
            RequestStatus::Pending if at >= r.created.expires_at => {
                return closed(Closed::ExpiredWaiting);
            }
            RequestStatus::Pending => {}
            RequestStatus::Issued(g) => return closed(Closed::Issued(*g)),
            RequestStatus::Denied { by, .. } => return closed(Closed::Denied(by.clone())),
            RequestStatus::Expired => return closed(Closed::Expired),
            RequestStatus::Cancelled { by, .. } => return closed(Closed::Cancelled(by.clone())),
        }
        let tier = self
            .policy()
            .tier(&r.created.tier)
            .cloned()
            .ok_or_else(|| Error::TierGone {
                request: id,
                tier: r.created.tier.clone(),
            })?;
        Ok((r, tier))
    }

    /// Approves, denies or cancels a pending request as `who`, with `note` (the comment or
    /// the reason): checked, then recorded; refusals by policy are on the record. The
    /// answer is the request as it stands (issued, when this was its last approval).
    pub async fn settle(
        &self,
        who: &Caller,
        id: RequestId,
        how: Settle,
        note: &str,
    ) -> Result<RequestInfo, Error> {
        let note = match how {
            Settle::Approve => check_note("comment", note, None)?,
            Settle::Deny => check_note(
                "reason",
                note,
                Some("say why the request is denied (--reason TEXT)"),
            )?,
            Settle::Cancel => check_note("reason", note, None)?,
        };
        let transitions = self.transition().await?;
        let (r, tier) = self.pending_with_tier(id)?;
        if let Some((kind, e)) = self.refusal_to_settle(who, &r, &tier, how) {
            // A refusal changes no request: record it without holding up transitions.
            drop(transitions);
            let target = id.to_string();
            return Err(self
                .refuse_action(who, how.action(), &target, kind, e)
                .await);
        }
        let kind = match how {
            Settle::Approve => {
                let required = r.created.approvals_required as usize;
                let before = self.approvers(&r).len();
                if required == 0 || before >= required {
                    return Err(Error::NoApprovalNeeded(id));
                }
                if self.has_approved(who, &r) {
                    return Err(Error::AlreadyApproved {
                        request: id,
                        missing: required - before,
                        approver_groups: tier.approver_groups.clone(),
                    });
                }
                EventKind::ApprovalAdded(ApprovalAdded {
                    request_id: id,
                    comment: note.clone(),
                })
            }
            Settle::Deny => EventKind::RequestDenied(RequestDenied {
                request_id: id,
                reason: note.clone(),
            }),
            Settle::Cancel => EventKind::RequestCancelled(RequestCancelled {
                request_id: id,
                reason: note.clone(),
            }),
        };
        let (_, at) = now();
        self.record(Event::new(at, who.actor(), kind)).await?;
        match how {
            Settle::Approve => {
                tracing::info!(request = %id, approver = %who.identity, "approval added");
                self.notify_request(id, NoticeKind::Approval, &who.actor(), None, None);
                let required = r.created.approvals_required as usize;
                if self.approvers(&r).len() + 1 >= required
                    && let Err(e) = self.issue(id, who.actor()).await
                {
                    // The approval is recorded; the sweep retries issuance.
                    tracing::error!(request = %id, error = %e, "issuing after the last approval failed");
                }
            }
            Settle::Deny => {
                tracing::info!(request = %id, by = %who.identity, reason = %note, "request denied by approver");
                self.notify_request(id, NoticeKind::Denied, &who.actor(), None, Some(note));
            }
            Settle::Cancel => {
                self.notify_request(id, NoticeKind::Cancelled, &who.actor(), None, Some(note));
            }
        }
        self.info_of(id, Some(who))
    }

    /// Why `who` may not settle `r` so, with the refusal's kind for the record (`None`: they
    /// may). Approvers (of its tier, not its requester) approve and deny; its requester
    /// cancels.
    fn refusal_to_settle(
        &self,
        who: &Caller,
        r: &state::Request,
        tier: &Tier,
        how: Settle,
    ) -> Option<(RefusalKind, Error)> {
        let id = r.created.request_id;
        let requester = &r.created.requester;
        let own = self.same_person(who, requester);
        match how {
            Settle::Cancel if own => None,
            Settle::Cancel => Some((
                self.refusals.kind_for(who, RefusalKind::NotRequester),
                Error::OnlyRequester {
                    requester: requester.clone(),
                    act: RequesterAct::Cancel(id),
                },
            )),
            Settle::Approve if own => Some((
                RefusalKind::SelfApproval,
                Error::SelfApproval {
                    request: id,
                    requester: requester.clone(),
                    approver_groups: tier.approver_groups.clone(),
                },
            )),
            Settle::Deny if own => Some((RefusalKind::SelfApproval, Error::SelfDenial(id))),
            // An approval is no emergency: a login made with an SSH key approves only where
            // the tier takes such logins for anything (`ssh_key_login = "any"`).
            Settle::Approve if who.ssh_key_login && !tier.ssh_key_login.allows(false) => Some((
                RefusalKind::LoginMethod,
                Error::LoginMethod {
                    tier: tier.name.clone(),
                    emergency_only: false,
                },
            )),
            Settle::Approve | Settle::Deny => tier
                .require_approver(who, how.action())
                .err()
                .map(|e| (self.refusals.kind_for(who, RefusalKind::NotApprover), e)),
        }
    }

    /// Creates a request and waits until it is issued or ends otherwise.
    pub async fn create_and_wait(
        &self,
        who: &Caller,
        access: AccessRequest,
        key: PublicKey,
        emergency: bool,
    ) -> Result<RequestCertificateResponse, Error> {
        // The request's view is only needed while it waits.
        let (id, certificate) = self.open_request(who, access, key, emergency).await?;
        if let Some(c) = certificate {
            return Ok(c);
        }
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
                    return Err(Error::ShuttingDown);
                },
                _ = tokio::time::sleep(WATCH_REFRESH) => {}
            }
        }
    }
}
