//! What follows a grant: the review of an emergency grant (a verdict by someone in the
//! tier's reviewer groups, never the requester) and the report of a break-glass drill.

use breakglass_proto::audit::event::{DrillReported, GrantReviewed, ReviewVerdict};
use breakglass_proto::audit::{Event, EventKind};
use breakglass_proto::profile::GrantId;
use breakglass_proto::text;
use breakglass_proto::v1::ReviewItem;

use super::views::review_item;
use super::{Service, check_note, now};
use crate::error::Error;
use crate::notify::NoticeKind;
use crate::policy::Caller;
use crate::refusal::RefusalKind;

/// A drill's outcome, as its requester reports it.
#[derive(Clone, Copy, Debug)]
pub struct DrillOutcome<'a> {
    /// True when every step passed.
    pub passed: bool,
    /// The step that failed; empty when passed.
    pub failed_step: &'a str,
    /// What went wrong; empty when passed.
    pub detail: &'a str,
    /// From the request to the remote command's marker, in milliseconds (0: not reached).
    pub request_to_shell_ms: u64,
    /// From the end of the session to its records in the log, in milliseconds.
    pub logout_to_audit_ms: u64,
}

impl Service {
    /// Records the outcome of a drill on one of the caller's own drill grants
    /// (once per grant). A failure is logged and alerted like an emergency:
    /// to syslog and to the webhooks of the grant's tier.
    pub async fn report_drill(
        &self,
        who: &Caller,
        grant_id: GrantId,
        report: DrillOutcome<'_>,
    ) -> Result<u64, Error> {
        let failed_step = report.failed_step.trim().to_owned();
        if !failed_step.is_empty() {
            text::check_code(&failed_step).map_err(|e| Error::invalid_field("failed_step", e))?;
        }
        let detail = check_note("detail", report.detail, None)?;
        if report.passed != failed_step.is_empty() {
            return Err(Error::invalid_field(
                "failed_step",
                "name the step that failed exactly when the drill did not pass",
            ));
        }
        let _t = self.transition().await?;
        let found = {
            let st = self.state();
            self.own_grant(&st, who, grant_id, "report the drill of")
                .and_then(|g| {
                    if !self.policy().tier(&g.issued.tier).is_some_and(|t| t.drill) {
                        return Err(Error::NotDrillTier {
                            grant: grant_id,
                            tier: g.issued.tier.clone(),
                        });
                    }
                    if g.drill_report.is_some() {
                        return Err(Error::DrillReported(grant_id));
                    }
                    Ok((
                        g.issued.request_id,
                        g.issued.tier.clone(),
                        g.issued.hosts.join(","),
                        g.issued.principals.join(","),
                    ))
                })
        };
        let (request_id, tier, host, principal) = match found {
            Err(e @ Error::OnlyRequester { .. }) => {
                let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
                let target = grant_id.to_string();
                drop(_t);
                return Err(self
                    .refuse_action(who, "report_drill", &target, kind, e)
                    .await);
            }
            other => other?,
        };
        let (_, at) = now();
        let index = self
            .record(Event::new(
                at,
                who.actor(),
                EventKind::DrillReported(DrillReported {
                    grant_id,
                    passed: report.passed,
                    failed_step: failed_step.clone(),
                    detail: detail.clone(),
                    request_to_shell_ms: report.request_to_shell_ms,
                    logout_to_audit_ms: report.logout_to_audit_ms,
                }),
            ))
            .await?;
        if report.passed {
            tracing::info!(
                grant = %grant_id,
                requester = %who.identity,
                host = %host,
                principal = %principal,
                tier = %tier,
                request_to_shell_ms = report.request_to_shell_ms,
                logout_to_audit_ms = report.logout_to_audit_ms,
                audit_index = index,
                "break-glass drill passed"
            );
        } else {
            tracing::warn!(
                grant = %grant_id,
                requester = %who.identity,
                host = %host,
                principal = %principal,
                tier = %tier,
                failed_step = %failed_step,
                detail = %detail,
                audit_index = index,
                "break-glass drill FAILED: emergency access to this host may not work"
            );
            self.notify_request(
                request_id,
                NoticeKind::DrillFailed,
                &who.actor(),
                Some(grant_id),
                Some(format!(
                    "break-glass drill on {host} as {principal} failed at step {failed_step}: {detail}"
                )),
            );
        }
        Ok(index)
    }

    /// Records a review verdict on a grant.
    pub async fn review(
        &self,
        who: &Caller,
        grant_id: GrantId,
        verdict: ReviewVerdict,
        note: &str,
    ) -> Result<ReviewItem, Error> {
        let note = check_note("note", note, Some("say what you checked (--note TEXT)"))?;
        let _t = self.transition().await?;
        // From memory, or from the log for a grant memory no longer holds (a reviewed
        // emergency leaves memory a day after it was issued; a review names it later).
        let (requester, tier) = {
            let (g, _) = self
                .grant_anytime(grant_id)
                .ok_or(Error::NoGrant(grant_id))?;
            if let Some((_, by, _, _)) = g.review.as_deref() {
                return Err(Error::AlreadyReviewed {
                    grant: grant_id,
                    by: by.clone(),
                });
            }
            (g.issued.requester, g.issued.tier)
        };
        let target = grant_id.to_string();
        if self.same_person(who, &requester) {
            let e = Error::SelfReview(grant_id);
            let kind = RefusalKind::SelfApproval;
            drop(_t);
            return Err(self.refuse_action(who, "review", &target, kind, e).await);
        }
        if let Err(e) = self.policy().require_reviewer(&tier, who) {
            let kind = self.refusals.kind_for(who, RefusalKind::NotReviewer);
            drop(_t);
            return Err(self.refuse_action(who, "review", &target, kind, e).await);
        }
        let (_, at) = now();
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::GrantReviewed(GrantReviewed {
                grant_id,
                verdict,
                comment: note,
            }),
        ))
        .await?;
        // The review itself may have released the grant from memory (an emergency issued
        // more than a day ago, its certificate expired): the answer is read back anyway.
        let (g, r) = self.grant_anytime(grant_id).ok_or_else(|| {
            Error::Internal(format!(
                "grant {grant_id} was reviewed but cannot be read back from the audit log; see the daemon's log"
            ))
        })?;
        Ok(review_item(&g, r.as_ref(), &self.state().recordings))
    }
}
