//! Refusals by policy on the record: each one an audit event within the per-identity
//! limit, the limit being hit recorded once per window, and the alert at the threshold
//! (the rules and their bookkeeping are [`crate::refusal`]'s).

use std::time::SystemTime;

use breakglass_proto::audit::event::RefusalsLimited;
use breakglass_proto::audit::fields::rfc3339;
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};

use super::Service;
use crate::error::Error;
use crate::metrics::counters::Outcome;
use crate::notify::{NoticeKind, RefusalAlert};
use crate::policy::Caller;
use crate::refusal::{Admission, Refusal, RefusalKind};
use crate::request::AccessRequest;
use crate::state::{REFUSAL_WINDOW_MS, refusal_window_start};

impl Service {
    /// Puts a refusal by policy on the record: its event (within the per-identity limit;
    /// the limit being hit is recorded once per window), and the alert webhook at the
    /// threshold. Never fails and never changes the caller's answer: a refusal that cannot
    /// be recorded is logged here and refused all the same.
    pub async fn record_refusal(&self, who: &Caller, refusal: Refusal) {
        let at = Timestamp::from_system_time(SystemTime::now());
        let identity = refusal.identity().to_owned();
        let start = refusal_window_start(at);
        let admission = self.refusals.admit(&self.state(), &identity, at);
        let limit = self.refusals.settings().per_identity_per_hour;
        let (kind, action) = (refusal.kind(), refusal.action_name().to_owned());
        let event = match admission {
            Admission::Suppress => {
                tracing::debug!(
                    identity = %identity,
                    refusal = %kind,
                    action = %action,
                    reason = %refusal.reason(),
                    "refused (not recorded one by one: refusal limit reached this hour)"
                );
                return;
            }
            Admission::Limit => Event::new(
                at,
                Actor::Daemon,
                EventKind::RefusalsLimited(RefusalsLimited {
                    identity: identity.clone(),
                    window_start: start,
                    window_end: Timestamp(start.0 + REFUSAL_WINDOW_MS),
                    limit,
                }),
            ),
            Admission::Record { .. } => {
                Event::new(at, who.actor(), refusal.clone().into_event_kind())
            }
        };
        let recorded = self
            .record_and(event, |_| {
                self.refusals.release(&identity, start, admission)
            })
            .await;
        let index = match recorded {
            Ok(index) => index,
            Err(e) => {
                self.refusals.release(&identity, start, admission);
                tracing::error!(
                    identity = %identity,
                    refusal = %kind,
                    action = %action,
                    reason = %refusal.reason(),
                    error = %e,
                    "refusal NOT recorded in the audit log (the caller was refused all the same)"
                );
                return;
            }
        };
        match admission {
            Admission::Limit => tracing::warn!(
                identity = %identity,
                limit,
                until = %rfc3339((start.0 + REFUSAL_WINDOW_MS) / 1000),
                audit_index = index,
                "refusal limit reached: further refusals of this identity this hour are refused without being recorded one by one"
            ),
            Admission::Record { alert } => {
                tracing::info!(
                    identity = %identity,
                    refusal = %kind,
                    action = %action,
                    reason = %refusal.reason(),
                    audit_index = index,
                    "refused by policy"
                );
                if alert {
                    self.alert_refusals(&refusal, start, index, at);
                }
            }
            Admission::Suppress => {}
        }
    }

    /// Records a refused call on a request or grant and returns the error to answer with.
    pub async fn refuse_action(
        &self,
        who: &Caller,
        action: &str,
        target: &str,
        kind: RefusalKind,
        error: Error,
    ) -> Error {
        self.record_refusal(who, Refusal::action(who, action, target, kind, &error))
            .await;
        error
    }

    /// Records a refused certificate request and returns the error to answer with.
    pub async fn refuse_request(
        &self,
        who: &Caller,
        access: &AccessRequest,
        emergency: bool,
        kind: RefusalKind,
        rule_and_tier: (Option<&str>, Option<&str>),
        error: Error,
    ) -> Error {
        let refusal = Refusal::request(who, access, emergency, kind, rule_and_tier, &error);
        self.metrics.request(rule_and_tier.1, Outcome::Refused);
        self.record_refusal(who, refusal).await;
        error
    }

    /// Records that an emergency was refused because the requester's allowance is spent,
    /// while `request` goes on to wait for normal approval.
    pub async fn record_emergency_quota(
        &self,
        who: &Caller,
        access: &AccessRequest,
        (rule, tier): (&str, &str),
        request: RequestId,
        reason: Error,
    ) {
        let mut r = Refusal::request(
            who,
            access,
            true,
            RefusalKind::EmergencyQuota,
            (Some(rule), Some(tier)),
            &reason,
        );
        if let Refusal::Request(rr) = &mut r {
            rr.request_id = Some(request);
        }
        self.record_refusal(who, r).await;
    }

    fn alert_refusals(&self, refusal: &Refusal, start: Timestamp, index: u64, at: Timestamp) {
        let s = self.refusals.settings();
        let alert = RefusalAlert {
            event: NoticeKind::RefusalThreshold,
            summary: format!(
                "{} was refused {} times since {} (alert threshold {}); latest: {} {}: {}",
                refusal.identity(),
                s.alert_threshold,
                rfc3339(start.unix_seconds()),
                s.alert_threshold,
                refusal.action_name(),
                refusal.kind(),
                refusal.reason()
            ),
            identity: refusal.identity().to_owned(),
            refusals: s.alert_threshold,
            threshold: s.alert_threshold,
            limit: s.per_identity_per_hour,
            window_start: rfc3339(start.unix_seconds()),
            window_end: rfc3339((start.0 + REFUSAL_WINDOW_MS) / 1000),
            kind: refusal.kind().name().to_owned(),
            action: refusal.action_name().to_owned(),
            reason: refusal.reason().to_owned(),
            audit_index: index,
            time: at.0,
        };
        tracing::warn!(
            identity = %alert.identity,
            refusals = alert.refusals,
            webhooks = s.webhooks.len(),
            "refusal alert threshold reached"
        );
        self.notifier().alert_refusals(&s.webhooks, alert);
    }
}
