//! Hosts witness the audit log (the `breakglass.v1.Witness` service; its face is
//! [`crate::api::witness`]).
//!
//! The C2SP witness idea (a witness keeps the latest checkpoint it saw of a log and accepts
//! a new one only with a consistency proof from it) applied to hosts, which talk to the
//! daemon every minute anyway. A host sends the latest checkpoint it verified and gets the
//! daemon's current checkpoint with the consistency proof from its size; it checks both
//! itself (`breakglass host sync-krl`, `ship`, `watch-revocations`).
//!
//! The daemon checks the host's checkpoint too, with the one function the hosts and
//! auditors use ([`check_extends`]). A checkpoint signed with this log's key that this log
//! does not extend proves that the log was rolled back (a segment deleted, an older copy
//! restored) or forked since the host saw it. The daemon then:
//! - records `log_consistency_failed` (the host's signed note is the evidence), logs it at
//!   critical level and alerts every configured webhook;
//! - stops issuing certificates ([`Service::halted`]): no new requests, no issuance.
//!   Revocations, host records and reads keep working: they only add evidence or take
//!   access away;
//! - until an administrator acknowledges it ([`Witness::acknowledge`], recorded as
//!   `log_fork_acknowledged` with who and why).
//!
//! The halt is state derived from the log, so a restart keeps it. If the log itself is
//! rolled back again to before the `log_consistency_failed` event, the daemon forgets it,
//! but the hosts do not: at their next contact they show their checkpoint again and the
//! daemon stops again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use breakglass_proto::audit::event::{LogConsistencyFailed, LogForkAcknowledged};
use breakglass_proto::audit::{
    Actor, Checkpoint, Event, EventKind, NotExtending, Timestamp, check_extends,
};
use breakglass_proto::v1::{
    AcknowledgeLogForkResponse, AcknowledgedFork, WitnessCheckpointRequest,
    WitnessCheckpointResponse,
};

use crate::error::Error;
use crate::hosts::HOST_URI_PREFIX;
use crate::notify::{NoticeKind, log_notice};
use crate::policy::Caller;
use crate::service::{Service, check_note};

/// Longest failure text a host may report.
pub(crate) const MAX_FAILURE_BYTES: usize = 2048;
/// Host-reported failures remembered (so each is alerted once); forgotten when full.
const MAX_REMEMBERED: usize = 10_000;

/// Serializes check-then-record of reports and acknowledgements, so that one host's
/// checkpoint is recorded once and an acknowledgement covers exactly what it names.
static RECORDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Witnessing by hosts, and acknowledgements of forks.
#[derive(Debug)]
pub struct Witness {
    svc: Arc<Service>,
    admin_groups: Vec<String>,
    /// `(host, failure)` reports already alerted.
    alerted: Mutex<HashSet<(String, String)>>,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

impl Witness {
    /// Witnessing over `svc`'s log; members of `admin_groups` may acknowledge a fork.
    #[must_use]
    pub fn new(svc: Arc<Service>, admin_groups: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            svc,
            admin_groups,
            alerted: Mutex::new(HashSet::new()),
        })
    }

    /// Every configured webhook, once: a rolled-back or forked log concerns every tier.
    fn all_webhooks(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .svc
            .policy()
            .tiers()
            .iter()
            .flat_map(|t| t.webhooks.iter().cloned())
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    fn alert(&self, kind: NoticeKind, actor: &Actor, detail: String) {
        self.svc
            .notifier()
            .send(&self.all_webhooks(), log_notice(kind, actor, detail, now()));
    }

    /// Answers host `host`: the daemon's checkpoint and the proof from the host's. Records,
    /// alerts and stops issuance when this log does not extend the host's checkpoint.
    pub async fn witness(
        &self,
        host: &str,
        req: &WitnessCheckpointRequest,
    ) -> Result<WitnessCheckpointResponse, Error> {
        let log = &self.svc.audit;
        let verifier = log.verifier();
        let ours = log.latest_checkpoint();
        let mut proof = Vec::new();
        if !req.checkpoint.is_empty() {
            match verifier.verify_checkpoint(&req.checkpoint) {
                // Not evidence against this log: the host pinned another log (a replaced
                // audit key?). The host finds the key mismatch itself and reports it.
                Err(e) => tracing::warn!(
                    host,
                    error = %e,
                    "host holds a checkpoint that is not signed by this log's key"
                ),
                Ok(theirs) => {
                    let p = if theirs.size <= ours.checkpoint.size {
                        log.consistency_proof(theirs.size, ours.checkpoint.size)
                            .map_err(|e| Error::Internal(format!("consistency proof: {e}")))?
                    } else {
                        Vec::new()
                    };
                    match check_extends(&theirs, &ours.checkpoint, &p) {
                        Ok(()) => proof = p,
                        Err(why) => {
                            self.not_extended(host, req, &theirs, &ours.checkpoint, &why)
                                .await?;
                        }
                    }
                }
            }
        }
        if !req.failure.is_empty() {
            self.host_reported(host, &req.failure);
        }
        let halted = self.svc.halted();
        Ok(WitnessCheckpointResponse {
            checkpoint: ours.note,
            verifier_key: verifier.to_string(),
            size: ours.checkpoint.size,
            consistency_proof: proof.into_iter().map(|h| h.to_vec()).collect(),
            halted: halted.is_some(),
            halt_reason: halted.map(|h| h.to_string()).unwrap_or_default(),
        })
    }

    /// This log does not extend `theirs`, which `host` showed: record (once per host and
    /// checkpoint), log critical, alert, and so stop issuance.
    async fn not_extended(
        &self,
        host: &str,
        req: &WitnessCheckpointRequest,
        theirs: &Checkpoint,
        ours: &Checkpoint,
        why: &NotExtending,
    ) -> Result<(), Error> {
        let _one = RECORDING.lock().await;
        {
            let st = self.svc.state();
            if st.acknowledged_forks.contains(&(theirs.size, theirs.root)) {
                tracing::warn!(
                    host,
                    host_size = theirs.size,
                    "host still holds a checkpoint this log does not extend, already \
                     acknowledged by an administrator; the host refuses this log until it is \
                     re-pinned (breakglass host witness --reset)"
                );
                return Ok(());
            }
            if st
                .log_forks
                .iter()
                .any(|f| f.host == host && (f.size, f.root) == (theirs.size, theirs.root))
            {
                return Ok(());
            }
        }
        let actor = Actor::Host(format!("{HOST_URI_PREFIX}{host}"));
        let index = self
            .svc
            .record(Event::new(
                now(),
                actor.clone(),
                EventKind::LogConsistencyFailed(Box::new(LogConsistencyFailed {
                    host: host.to_owned(),
                    checkpoint: req.checkpoint.clone(),
                    size: theirs.size,
                    root: theirs.root,
                    log_size: ours.size,
                    log_root: ours.root,
                })),
            ))
            .await?;
        let detail = format!(
            "host {host} (KRL version {}) showed a checkpoint of this CA's audit log that the \
             log does not extend: {why}. Issuance is stopped until an administrator investigates and \
             acknowledges with `breakglass audit acknowledge-fork --reason TEXT` (audit event \
             {index})",
            req.krl_version
        );
        tracing::error!(
            host,
            host_size = theirs.size,
            log_size = ours.size,
            host_krl_version = req.krl_version,
            audit_index = index,
            finding = %why,
            "CRITICAL log_consistency_failed: the audit log was rolled back or forked; \
             issuance stopped until acknowledged"
        );
        self.alert(NoticeKind::LogConsistencyFailed, &actor, detail);
        Ok(())
    }

    /// `host` says that this daemon's answer did not extend its checkpoint (e.g. another
    /// log key, or a proof that did not check): logged and alerted once, never trusted to
    /// stop issuance (only a signed checkpoint proves a fork).
    fn host_reported(&self, host: &str, failure: &str) {
        let failure: String = failure
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_FAILURE_BYTES)
            .collect();
        if self.svc.state().log_forks.iter().any(|f| f.host == host) {
            // Already recorded and alerted from its checkpoint.
            return;
        }
        {
            let mut seen = self.alerted.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
            if !seen.insert((host.to_owned(), failure.clone())) {
                return;
            }
        }
        tracing::error!(
            host,
            failure = %failure,
            "log_consistency_failed reported by a host: it does not accept this daemon's audit \
             log as an extension of the checkpoint it saw"
        );
        self.alert(
            NoticeKind::LogConsistencyFailed,
            &Actor::Host(format!("{HOST_URI_PREFIX}{host}")),
            format!("host {host} reports: {failure}"),
        );
    }

    /// Acknowledges every fork report not acknowledged yet, as `who` (an administrator),
    /// for `reason`: issuance resumes.
    pub async fn acknowledge(
        &self,
        who: &Caller,
        reason: &str,
    ) -> Result<AcknowledgeLogForkResponse, Error> {
        if !who.groups.iter().any(|g| self.admin_groups.contains(g)) {
            return Err(Error::NotAdmin {
                identity: who.identity.clone(),
                admin_groups: self.admin_groups.clone(),
            });
        }
        let reason = check_note(
            "reason",
            reason,
            Some("say what was investigated and done (--reason TEXT, one line)"),
        )?;
        let _one = RECORDING.lock().await;
        let forks = self.svc.state().log_forks.clone();
        if forks.is_empty() {
            return Err(Error::NothingToAcknowledge);
        }
        let index = self
            .svc
            .record(Event::new(
                now(),
                who.actor(),
                EventKind::LogForkAcknowledged(LogForkAcknowledged {
                    reason: reason.clone(),
                    reports: forks.len() as u64,
                }),
            ))
            .await?;
        let hosts: Vec<&str> = forks.iter().map(|f| f.host.as_str()).collect();
        tracing::warn!(
            by = %who.identity,
            reason = %reason,
            reports = forks.len(),
            hosts = %hosts.join(","),
            audit_index = index,
            "log fork acknowledged; issuance resumes"
        );
        self.alert(
            NoticeKind::LogForkAcknowledged,
            &who.actor(),
            format!(
                "{} acknowledged {} log_consistency_failed report(s) (hosts {}): {reason}. \
                 Issuance resumes; the hosts refuse this log until they are re-pinned \
                 (breakglass host witness --reset)",
                who.identity,
                forks.len(),
                hosts.join(", ")
            ),
        );
        Ok(AcknowledgeLogForkResponse {
            acknowledged: forks
                .iter()
                .map(|f| AcknowledgedFork {
                    index: f.index,
                    host: f.host.clone(),
                    size: f.size,
                    log_size: f.log_size,
                })
                .collect(),
            audit_index: index,
        })
    }
}
