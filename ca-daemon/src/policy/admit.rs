//! The one admission step of a certificate request ([`Policy::admit`]): the rules' decision
//! ([`Policy::decide`]), then the tier's conditions (its reason and ticket rules, its
//! longest TTL), then a declared emergency (whether the tier allows self-service, and the
//! requester's allowance in the last 24 hours). What it answers is how the request goes
//! on: issued at once, or waiting for approvals, with which TTL. And who may review a
//! grant ([`Policy::require_reviewer`]; who may approve or deny is the tier's,
//! [`Tier::require_approver`](crate::policy::Tier::require_approver)).

use std::time::{Duration, SystemTime};

use breakglass_proto::audit::event::RefusalKind;

use super::caller::Caller;
use super::decide::{Decision, Grant, Policy};
use super::tier::SshKeyLogin;
use crate::error::Error;
use crate::request::AccessRequest;

/// Window of the per-requester emergency limit.
pub const EMERGENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How a request goes on, or why it may not.
#[must_use]
#[derive(Debug)]
pub enum Admission {
    /// Admitted: issued at once or after approvals, as [`Admitted`] says.
    Admit(Admitted),
    /// Refused by policy.
    Refuse(Refused),
}

/// An admitted request: what it is granted and what it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The rule that allowed it, its tier and the extensions to grant.
    pub grant: Grant,
    /// The certificate's lifetime (an emergency's is capped by the tier).
    pub ttl: Duration,
    /// Approvals needed before issuance (0: issued at once).
    pub approvals_required: u32,
    /// How long it may wait for them.
    pub max_wait: Duration,
    /// Groups whose members may approve it.
    pub approver_groups: Vec<String>,
    /// A declared emergency whose requester's allowance is spent: (used, allowed per
    /// day). The request waits for the tier's normal approvals instead.
    pub quota_spent: Option<(usize, u32)>,
}

/// A request refused by policy, as the refusal is recorded and answered.
#[derive(Debug)]
pub struct Refused {
    /// The kind of refusal.
    pub kind: RefusalKind,
    /// The rule that refused or came closest, when there is one.
    pub rule: Option<String>,
    /// Its tier, when the refusal concerns one.
    pub tier: Option<String>,
    /// What the caller is told.
    pub error: Error,
}

impl Policy {
    /// Admits (or refuses) a validated request made at `at`, declared an emergency or not.
    /// `emergencies_since(t)` counts the requester's emergency grants since `t` (per person:
    /// another identity of the same owner shares the allowance); it is asked only for an
    /// emergency the tier allows. `Err` only when the configuration lost a rule's tier.
    pub fn admit(
        &self,
        caller: &Caller,
        req: &AccessRequest,
        emergency: bool,
        at: SystemTime,
        emergencies_since: impl FnOnce(SystemTime) -> usize,
    ) -> Result<Admission, Error> {
        let grant = match self.decide(caller, req, at) {
            Decision::Allow(g) => g,
            Decision::Deny(why) => {
                let tier = why
                    .rule
                    .as_deref()
                    .filter(|_| why.kind != RefusalKind::DenyRule)
                    .and_then(|r| self.rules().iter().find(|x| x.name == r))
                    .map(|r| r.tier.clone());
                return Ok(Admission::Refuse(Refused {
                    kind: why.kind,
                    rule: why.rule.clone(),
                    tier,
                    error: Error::Policy(why),
                }));
            }
        };
        let tier = self
            .tier(&grant.tier)
            .ok_or_else(|| Error::Internal(format!("tier `{}` is not configured", grant.tier)))?;
        let refuse = |kind, error| {
            Ok(Admission::Refuse(Refused {
                kind,
                rule: Some(grant.rule.clone()),
                tier: Some(tier.name.clone()),
                error,
            }))
        };
        // A login made with an SSH key skipped the organisation's provider: the tier says
        // whether it may be used here at all, or only for a declared emergency.
        if caller.ssh_key_login && !tier.ssh_key_login.allows(emergency) {
            let emergency_only =
                tier.ssh_key_login == SshKeyLogin::EmergencyOnly && tier.emergency.is_some();
            return refuse(
                RefusalKind::LoginMethod,
                Error::LoginMethod {
                    tier: tier.name.clone(),
                    emergency_only,
                },
            );
        }
        if let Err(problem) = tier.check_reason(&req.reason) {
            let kind = problem.kind();
            let tier = tier.name.clone();
            return refuse(kind, Error::Reason { tier, problem });
        }
        if req.ttl > tier.max_ttl {
            return refuse(
                RefusalKind::Ttl,
                Error::TtlOverTier {
                    ttl: req.ttl,
                    max: tier.max_ttl,
                    tier: tier.name.clone(),
                },
            );
        }
        let mut admitted = Admitted {
            ttl: req.ttl,
            approvals_required: tier.approvals,
            max_wait: tier.max_wait,
            approver_groups: tier.approver_groups.clone(),
            quota_spent: None,
            grant: grant.clone(),
        };
        if !emergency {
            return Ok(Admission::Admit(admitted));
        }
        let Some(e) = &tier.emergency else {
            return refuse(
                RefusalKind::EmergencyNotAllowed,
                Error::EmergencyNotAllowed {
                    tier: tier.name.clone(),
                    rule: grant.rule.clone(),
                    principals: req.principals.clone(),
                    hosts: req.hosts.clone(),
                    approvals: tier.approvals,
                    approver_groups: tier.approver_groups.clone(),
                },
            );
        };
        let used = emergencies_since(at - EMERGENCY_WINDOW);
        if used < e.per_day as usize {
            admitted.approvals_required = 0;
            admitted.ttl = admitted.ttl.min(e.ttl);
        } else {
            admitted.quota_spent = Some((used, e.per_day));
        }
        Ok(Admission::Admit(admitted))
    }
}

impl Policy {
    /// Refuses a caller outside the reviewer groups of the tier named `tier` (none, when
    /// the configuration no longer defines it), saying who may review.
    pub fn require_reviewer(&self, tier: &str, who: &Caller) -> Result<(), Error> {
        let t = self.tier(tier);
        if t.is_some_and(|t| t.may_review(who)) {
            return Ok(());
        }
        Err(Error::NotReviewer {
            identity: who.identity.clone(),
            tier: tier.to_owned(),
            reviewer_groups: t.map(|t| t.reviewer_groups.clone()).unwrap_or_default(),
            groups: who.groups.clone(),
        })
    }
}
