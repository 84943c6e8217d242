//! The `breakglass.v1.BreakGlass` gRPC handlers and the request lifecycle.
//! Authentication happened in the interceptor; here: validate, decide, then
//! pending → approved → issued, or denied, expired, cancelled.
//!
//! Every transition is an audit event recorded through [`Service::record`]
//! (durable first, then applied to the [`State`]), with the caller as actor;
//! a restart replays them and restores pending requests and approvals exactly.
//! Transitions of existing requests are serialised by one async lock so that
//! two approvers cannot both issue; creating and issuing a zero-approval
//! request takes no lock (the benchmark path).

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use breakglass_proto::audit::event::{
    ApprovalAdded, DrillReported, GrantIssued, GrantReviewed, RequestCancelled, RequestCreated,
    RequestDenied, RequestExpired, ReviewVerdict,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::{EXT_SESSION_RECORDING, GrantId};
use breakglass_proto::text;
use breakglass_proto::v1::break_glass_server::BreakGlass;
use breakglass_proto::v1::{
    self as wire, ApproveRequest, CaPublicKey, CancelRequest, CreateRequestResponse, DenyRequest,
    GetCaPublicKeysRequest, GetCaPublicKeysResponse, GrantRef, GrantSessionsResponse,
    ListPendingRequest, ListPendingResponse, ListReviewsRequest, ListReviewsResponse,
    ReportDrillRequest, ReportDrillResponse, RequestCertificateRequest, RequestCertificateResponse,
    RequestInfo, RequestRef, RequestState, RequestUpdate, ReviewItem, ReviewRequest, SessionInfo,
    WhoAmIRequest, WhoAmIResponse,
};
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{HashAlg, PublicKey};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::{AuditError, AuditLog};
use crate::certificate::{CertSpec, CertificateAuthority};
use crate::config::Config;
use crate::error::Error;
use crate::fmt_duration;
use crate::identity::{caller, unix_identity};
use crate::notify::{self, NoticeKind, Notifier};
use crate::policy::{Caller, Decision, Policy, Tier};
use crate::refusal::{RefusalKind, Refusals};
use crate::request;
use crate::state::{self, RequestStatus, State};

/// How often pending requests are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How often a watcher is sent the request again (time left) without a change.
const WATCH_REFRESH: Duration = Duration::from_secs(5);
/// Longest approval comment, denial or review note.
const MAX_NOTE_BYTES: usize = 1024;
/// Issued certificates kept in memory for `Fetch` and `WatchRequest`.
const MAX_KEPT_CERTIFICATES: usize = 100_000;
/// Window of the per-requester emergency limit.
const EMERGENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Shared state of the handlers.
#[derive(Debug)]
pub struct Service {
    pub(crate) ca: CertificateAuthority,
    pub(crate) policy: Policy,
    pub(crate) max_ttl: Duration,
    pub(crate) audit: AuditLog,
    state: Mutex<State>,
    /// Identity → owner (the person behind it), from the configuration.
    owners: HashMap<String, String>,
    notifier: Notifier,
    client_config: Option<String>,
    /// Bumped after every recorded event; watchers re-read their request.
    changes: watch::Sender<u64>,
    /// Serialises transitions of existing requests.
    transitions: tokio::sync::Mutex<()>,
    /// Certificates issued since start-up, for the requester to fetch.
    issued: Mutex<HashMap<RequestId, RequestCertificateResponse>>,
    /// Refusal settings and bookkeeping (see [`crate::refusal`]).
    pub(crate) refusals: Refusals,
}

/// What creating a request produced.
#[derive(Debug)]
pub struct Created {
    /// The request as it stands.
    pub info: RequestInfo,
    /// The certificate, when issued at once.
    pub certificate: Option<RequestCertificateResponse>,
}

fn now() -> (SystemTime, Timestamp) {
    let t = SystemTime::now();
    (t, Timestamp::from_system_time(t))
}

fn secs(t: Timestamp) -> i64 {
    i64::try_from(t.unix_seconds()).unwrap_or(i64::MAX)
}

/// A free-text field (`field` names it): trimmed, at most [`MAX_NOTE_BYTES`], no hazard
/// ([`text::check_free_text`]); `if_empty` is the refusal of an empty one, when it is
/// required.
pub(crate) fn check_note(field: &str, note: &str, if_empty: Option<&str>) -> Result<String, Error> {
    let t = note.trim();
    if let Some(why) = if_empty
        && t.is_empty()
    {
        return Err(Error::invalid_field(field, why));
    }
    text::check_free_text(t, MAX_NOTE_BYTES).map_err(|e| Error::invalid_field(field, e))?;
    Ok(t.to_owned())
}

fn parse_request_id(s: &str) -> Result<RequestId, Error> {
    s.trim()
        .parse::<RequestId>()
        .map_err(|e| Error::InvalidArgument(format!("request_id: {e}")))
}

fn groups_text(groups: &[String]) -> String {
    if groups.is_empty() {
        "none".to_owned()
    } else {
        groups.join(", ")
    }
}

impl Service {
    /// Builds the service around a log whose events were replayed into `state`.
    pub fn new(
        ca: CertificateAuthority,
        config: &Config,
        audit: AuditLog,
        state: State,
    ) -> Arc<Self> {
        let owners = config
            .identities
            .iter()
            .filter_map(|i| i.owner.clone().map(|o| (i.id.clone(), o)))
            .collect();
        Arc::new(Self {
            ca,
            policy: config.policy.clone(),
            max_ttl: config.ca.max_ttl,
            audit,
            state: Mutex::new(state),
            owners,
            notifier: Notifier::new(config.notifications.clone()),
            client_config: config.notifications.client_config.clone(),
            changes: watch::channel(0).0,
            transitions: tokio::sync::Mutex::new(()),
            issued: Mutex::new(HashMap::new()),
            refusals: Refusals::new(config.refusals.clone(), &config.identities),
        })
    }

    /// The state derived from the log.
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-applied
        // in a way the log does not describe; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The notification queue (counters for tests and metrics).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Appends an event, and applies it to the state once it is durable.
    /// This is the only way the daemon changes state.
    pub async fn record(&self, event: Event) -> Result<u64, Error> {
        self.record_and(event, |_| {}).await
    }

    /// [`record`](Self::record), running `then` under the state lock right after the event
    /// is applied (not when the log refused it): for bookkeeping that must change together
    /// with the state.
    pub(crate) async fn record_and(
        &self,
        event: Event,
        then: impl FnOnce(&mut State),
    ) -> Result<u64, Error> {
        let index = self.audit.append(&event).await.map_err(audit_unavailable)?;
        {
            let mut st = self.state();
            st.apply(index, &event);
            then(&mut st);
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(index)
    }

    /// Why no certificate may be issued now: a host showed a checkpoint of this log that the
    /// log does not extend (rolled back or forked) and no administrator acknowledged it yet
    /// (`crate::witness`). `None` when issuance may go on.
    pub fn halted(&self) -> Option<String> {
        let st = self.state();
        let first = st.log_forks.first()?;
        let others = st.log_forks.len() - 1;
        Some(format!(
            "issuance is stopped: host {} showed a checkpoint of this CA's audit log ({} events, \
             signed with the log's key) that the log does not extend (it held {} events then): \
             the log was rolled back or forked (audit event {} log_consistency_failed{}). \
             Revocations, host records and reads keep working. Administrators: investigate \
             (restore the audit directory from a backup if events were lost), then acknowledge \
             with `breakglass audit acknowledge-fork --reason TEXT` as an admin",
            first.host,
            first.size,
            first.log_size,
            first.index,
            if others > 0 {
                format!(", and {others} more report(s)")
            } else {
                String::new()
            }
        ))
    }

    fn check_not_halted(&self) -> Result<(), Error> {
        match self.halted() {
            Some(why) => Err(Error::FailedPrecondition(why)),
            None => Ok(()),
        }
    }

    /// Starts the background work: notification delivery, and expiry (and
    /// issuance of fully approved requests left behind by a failure) of
    /// pending requests until `stop` turns true.
    pub fn start_background(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.notifier.start();
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                }
                svc.sweep().await;
            }
        });
    }

    /// Expires overdue pending requests; issues approved ones not yet issued.
    async fn sweep(&self) {
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

    /// The person behind an identity: its configured owner, or itself.
    fn person<'a>(&'a self, identity: &'a str) -> &'a str {
        self.owners.get(identity).map_or(identity, String::as_str)
    }

    fn actor_person(&self, actor: &Actor) -> String {
        match actor {
            Actor::User(id) => self.person(id).to_owned(),
            Actor::LocalUid(uid) => self.person(&unix_identity(*uid)).to_owned(),
            other => other.to_string(),
        }
    }

    /// True when the caller is the requester, or another identity of the same owner.
    fn same_person(&self, who: &Caller, requester: &str) -> bool {
        who.identity == requester
            || self.person(&who.identity) == self.person(requester)
            || who.owner.as_deref() == Some(self.person(requester))
    }

    /// Distinct approvers of a request (one per person), in approval order.
    fn approvers(&self, r: &state::Request) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (actor, _, _) in &r.approvals {
            if seen.insert(self.actor_person(actor)) {
                out.push(match actor {
                    Actor::User(id) => id.clone(),
                    other => other.to_string(),
                });
            }
        }
        out
    }

    fn approve_command(&self, id: RequestId) -> String {
        match &self.client_config {
            Some(c) => format!("breakglass --config {c} approve {id}"),
            None => format!("breakglass approve {id}"),
        }
    }

    /// The wire view of a request, as seen by `who` (if any) at `at`.
    fn info(&self, r: &state::Request, who: Option<&Caller>, at: Timestamp) -> RequestInfo {
        let c = &r.created;
        let tier = self.policy.tier(&c.tier);
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
                    && !r
                        .approvals
                        .iter()
                        .any(|(a, _, _)| self.actor_person(a) == self.person(&w.identity))
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
                    approver: match a {
                        Actor::User(id) => id.clone(),
                        other => other.to_string(),
                    },
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
            approve_command: self.approve_command(c.request_id),
            can_approve,
        }
    }

    fn info_of(&self, id: RequestId, who: Option<&Caller>) -> Result<RequestInfo, Error> {
        let (_, at) = now();
        let st = self.state();
        let r = st
            .requests
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("no request {id}")))?;
        Ok(self.info(r, who, at))
    }

    /// Queues a notification about a request to its tier's webhooks.
    fn notify_request(
        &self,
        id: RequestId,
        kind: NoticeKind,
        actor: &Actor,
        grant: Option<GrantId>,
        detail: Option<String>,
    ) {
        let (_, at) = now();
        let (created, approvers) = {
            let st = self.state();
            let Some(r) = st.requests.get(&id) else {
                return;
            };
            (r.created.clone(), self.approvers(r))
        };
        let urls = self
            .policy
            .tier(&created.tier)
            .map(|t| t.webhooks.clone())
            .unwrap_or_default();
        let mut n = notify::notice(
            kind,
            &created,
            approvers,
            actor,
            self.client_config.as_deref(),
            at,
        );
        n.grant_id = grant.map(|g| g.to_string());
        n.detail = detail;
        self.notifier.send(&urls, n);
    }

    /// The hook for revocation: notifies the webhooks of the grant's tier
    /// (and syslog) that `grant` was revoked by `actor`. Call it after the
    /// `GrantRevoked` event is recorded. Never blocks.
    pub fn notify_revoked(&self, grant: GrantId, actor: &Actor, reason: &str) {
        let request = self.state().grants.get(&grant).map(|g| g.issued.request_id);
        if let Some(id) = request {
            self.notify_request(
                id,
                NoticeKind::Revoked,
                actor,
                Some(grant),
                Some(reason.to_owned()),
            );
        }
    }

    /// Validates, decides and records a new request; issues it at once when
    /// its tier needs no approval or for an allowed emergency.
    pub async fn create(
        &self,
        who: &Caller,
        wire: &RequestCertificateRequest,
    ) -> Result<Created, Error> {
        let (access, key) = request::validate(wire, self.max_ttl)?;
        crate::revocation::refuse_revoked_key(&self.state(), &key)?;
        self.check_not_halted()?;
        if access.drill && wire.emergency {
            return Err(Error::InvalidArgument(
                "a drill is not an emergency: ask with drill or with emergency, not both".into(),
            ));
        }
        let (t, at) = now();
        let emergency = wire.emergency;
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
        if wire.emergency {
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
            emergency: wire.emergency,
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
            info: self.info_of(request_id, Some(who))?,
            certificate: None,
        })
    }

    /// Signs and records the certificate of a pending request, from what its
    /// `RequestCreated` event recorded. Callers hold the transition lock,
    /// except for a request just created with no approvals needed.
    async fn issue(
        &self,
        id: RequestId,
        actor: Actor,
    ) -> Result<RequestCertificateResponse, Error> {
        // The one place a certificate is signed: nothing is issued from a log found rolled
        // back or forked until an administrator acknowledges it.
        self.check_not_halted()?;
        let (created, approvers) = {
            let st = self.state();
            let r = st
                .requests
                .get(&id)
                .ok_or_else(|| Error::NotFound(format!("no request {id}")))?;
            if r.status != RequestStatus::Pending {
                return Err(Error::FailedPrecondition(format!(
                    "request {id} is no longer pending"
                )));
            }
            (r.created.clone(), self.approvers(r))
        };
        let key = PublicKey::from_openssh(&created.public_key)
            .map_err(|e| Error::Internal(format!("recorded public key: {e}")))?;
        // Revoked while the request waited for approvals.
        crate::revocation::refuse_revoked_key(&self.state(), &key)?;
        let sources = created
            .source_addresses
            .iter()
            .map(|s| crate::config::parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("recorded source address: {e}")))?;
        let mut extensions = created.extensions.clone();
        if self
            .policy
            .tier(&created.tier)
            .is_some_and(|t| t.session_recording)
        {
            extensions.push(EXT_SESSION_RECORDING.to_owned());
        }
        let emergency = created.emergency && created.approvals_required == 0;
        let grant_id = CertificateAuthority::new_grant_id();
        let (t, at) = now();
        let issued = self.ca.issue(
            &CertSpec {
                grant_id,
                requester: &created.requester,
                subject: &key,
                principals: &created.principals,
                hosts: &created.hosts,
                tier: &created.tier,
                ttl: Duration::from_secs(created.ttl_seconds),
                force_command: created.command.as_deref(),
                source_addresses: &sources,
                extensions: &extensions,
            },
            t,
        )?;
        // The certificate leaves the daemon only after its grant is durable in
        // the audit log; if the log cannot be written, nothing is issued.
        let index = self
            .record(Event::new(
                at,
                actor.clone(),
                EventKind::GrantIssued(Box::new(GrantIssued {
                    request_id: id,
                    grant_id,
                    serial: issued.serial,
                    key_id: issued.key_id.clone(),
                    ca_fingerprint: self.ca.signing_fingerprint(),
                    key_fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                    principals: created.principals.clone(),
                    hosts: created.hosts.clone(),
                    command: created.command.clone(),
                    source_addresses: created.source_addresses.clone(),
                    extensions: extensions.clone(),
                    valid_after: issued.valid_after,
                    valid_before: issued.valid_before,
                    requester: created.requester.clone(),
                    approvers: approvers.clone(),
                    rule: created.rule.clone(),
                    tier: created.tier.clone(),
                    emergency,
                })),
            ))
            .await?;
        let certificate = issued
            .certificate
            .to_openssh()
            .map_err(|e| Error::Internal(format!("encoding certificate: {e}")))?;
        tracing::info!(
            request = %id,
            grant = %grant_id,
            serial = issued.serial,
            key_id = %issued.key_id,
            requester = %created.requester,
            principals = ?created.principals,
            hosts = ?created.hosts,
            ttl_s = created.ttl_seconds,
            rule = %created.rule,
            tier = %created.tier,
            approvers = ?approvers,
            emergency,
            reason = %created.reason,
            audit_index = index,
            "certificate issued"
        );
        let response = RequestCertificateResponse {
            certificate,
            grant_id: grant_id.to_string(),
            serial: issued.serial,
            key_id: issued.key_id,
            valid_after: issued.valid_after as i64,
            valid_before: issued.valid_before as i64,
            rule: created.rule.clone(),
            tier: created.tier.clone(),
            principals: created.principals.clone(),
            extensions,
            request_id: id.to_string(),
            emergency,
            approvers,
        };
        {
            let mut kept = self.issued.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() >= MAX_KEPT_CERTIFICATES {
                // Drop what has expired; certificates are minutes long.
                let now_s = secs(at);
                kept.retain(|_, c| c.valid_before > now_s);
            }
            kept.insert(id, response.clone());
        }
        // Woken watchers find the certificate now that it is kept.
        self.changes.send_modify(|n| *n += 1);
        let kind = if emergency {
            NoticeKind::Emergency
        } else {
            NoticeKind::Issued
        };
        // Skip building a notice nobody receives (the zero-approval fast path).
        let wanted = self.notifier.syslog_enabled()
            || self
                .policy
                .tier(&created.tier)
                .is_some_and(|t| !t.webhooks.is_empty());
        if wanted {
            self.notify_request(id, kind, &actor, Some(grant_id), None);
        }
        Ok(response)
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
        let me = self.person(&who.identity).to_owned();
        if r.approvals
            .iter()
            .any(|(a, _, _)| self.actor_person(a) == me)
        {
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

    /// Who may see a request: its requester, its tier's approvers and reviewers.
    fn may_see(&self, who: &Caller, r: &state::Request) -> bool {
        self.same_person(who, &r.created.requester)
            || self
                .policy
                .tier(&r.created.tier)
                .is_some_and(|t| t.may_approve(who) || t.may_review(who))
    }

    /// One request, if the caller may see it.
    pub async fn get(&self, who: &Caller, id: RequestId) -> Result<RequestInfo, Error> {
        let (_, at) = now();
        let refused = {
            let st = self.state();
            let r = st
                .requests
                .get(&id)
                .ok_or_else(|| Error::NotFound(format!("no request {id}")))?;
            if self.may_see(who, r) {
                return Ok(self.info(r, Some(who), at));
            }
            Error::PermissionDenied(format!(
                "{} is neither the requester of {id} nor an approver or reviewer of its tier",
                who.identity
            ))
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
            .filter_map(|id| st.requests.get(id))
            .filter(|r| {
                self.same_person(who, &r.created.requester)
                    || self
                        .policy
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
            let st = self.state();
            let r = st
                .requests
                .get(&id)
                .ok_or_else(|| Error::NotFound(format!("no request {id}")))?;
            if self.same_person(who, &r.created.requester) {
                Ok(self.info(r, Some(who), at))
            } else {
                Err(Error::PermissionDenied(format!(
                    "only the requester ({}) may fetch the certificate of {id}",
                    r.created.requester
                )))
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

    /// The certificate of an issued request: kept in memory since issuance,
    /// or signed again, identically, from its recorded `GrantIssued` event
    /// (after a restart). `None` when it was not issued or the CA key that
    /// signed it is no longer the signing key.
    fn certificate_of(&self, id: RequestId) -> Option<RequestCertificateResponse> {
        if let Some(c) = self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
        {
            return Some(c);
        }
        let (grant, public_key) = {
            let st = self.state();
            let r = st.requests.get(&id)?;
            let RequestStatus::Issued(g) = r.status else {
                return None;
            };
            (
                st.grants.get(&g)?.issued.clone(),
                r.created.public_key.clone(),
            )
        };
        if grant.ca_fingerprint != self.ca.signing_fingerprint() {
            return None;
        }
        let key = PublicKey::from_openssh(&public_key).ok()?;
        if key.fingerprint(HashAlg::Sha256).to_string() != grant.key_fingerprint {
            return None;
        }
        let sources = grant
            .source_addresses
            .iter()
            .map(|s| crate::config::parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let rebuilt = self
            .ca
            .rebuild(
                &CertSpec {
                    grant_id: grant.grant_id,
                    requester: &grant.requester,
                    subject: &key,
                    principals: &grant.principals,
                    hosts: &grant.hosts,
                    tier: &grant.tier,
                    ttl: Duration::from_secs(grant.valid_before.saturating_sub(grant.valid_after)),
                    force_command: grant.command.as_deref(),
                    source_addresses: &sources,
                    extensions: &grant.extensions,
                },
                grant.serial,
                grant.valid_after,
                grant.valid_before,
            )
            .map_err(
                |e| tracing::error!(request = %id, error = %e, "rebuilding a certificate failed"),
            )
            .ok()?;
        if rebuilt.key_id != grant.key_id {
            return None;
        }
        let response = RequestCertificateResponse {
            certificate: rebuilt.certificate.to_openssh().ok()?,
            grant_id: grant.grant_id.to_string(),
            serial: grant.serial,
            key_id: grant.key_id.clone(),
            valid_after: grant.valid_after as i64,
            valid_before: grant.valid_before as i64,
            rule: grant.rule.clone(),
            tier: grant.tier.clone(),
            principals: grant.principals.clone(),
            extensions: grant.extensions.clone(),
            request_id: id.to_string(),
            emergency: grant.emergency,
            approvers: grant.approvers.clone(),
        };
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, response.clone());
        Some(response)
    }

    /// Streams a request's state until it is final (its requester only).
    pub async fn watch(
        self: &Arc<Self>,
        who: &Caller,
        id: RequestId,
    ) -> Result<mpsc::Receiver<Result<RequestUpdate, Status>>, Error> {
        let requester = self
            .state()
            .requests
            .get(&id)
            .map(|r| r.created.requester.clone())
            .ok_or_else(|| Error::NotFound(format!("no request {id}")))?;
        if !self.same_person(who, &requester) {
            let e = Error::PermissionDenied(format!(
                "only the requester ({requester}) may watch {id}; use `breakglass show {id}`"
            ));
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

    /// Creates a request and waits until it is issued or ends otherwise.
    pub async fn create_and_wait(
        &self,
        who: &Caller,
        wire: &RequestCertificateRequest,
    ) -> Result<RequestCertificateResponse, Error> {
        let created = self.create(who, wire).await?;
        if let Some(c) = created.certificate {
            return Ok(c);
        }
        let id = parse_request_id(&created.info.request_id)?;
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

    /// Emergency grants (unreviewed, or all) of tiers the caller may review.
    pub fn list_reviews(&self, who: &Caller, include_reviewed: bool) -> Vec<ReviewItem> {
        let st = self.state();
        st.grants
            .values()
            .filter(|g| g.issued.emergency && (include_reviewed || g.review.is_none()))
            .filter(|g| {
                self.policy
                    .tier(&g.issued.tier)
                    .is_some_and(|t| t.may_review(who))
            })
            .map(|g| review_item(g, st.requests.get(&g.issued.request_id)))
            .collect()
    }

    /// The host sessions recorded for one of the caller's own grants.
    pub async fn grant_sessions(
        &self,
        who: &Caller,
        grant: &str,
    ) -> Result<Vec<SessionInfo>, Error> {
        let grant_id = parse_grant_id(grant)?;
        let sessions = {
            let st = self.state();
            self.own_grant(&st, who, grant_id, "list the sessions of")
                .map(session_infos)
        };
        match sessions {
            Err(e @ Error::PermissionDenied(_)) => {
                let kind = self.refusals.kind_for(who, RefusalKind::NotRequester);
                let target = grant_id.to_string();
                Err(self.refuse_action(who, "sessions", &target, kind, e).await)
            }
            other => other,
        }
    }

    /// One of the caller's own grants; `what` names the action in the refusal
    /// ("only the requester (…) may <what> grant g-…").
    fn own_grant<'s>(
        &self,
        st: &'s state::State,
        who: &Caller,
        grant_id: GrantId,
        what: &str,
    ) -> Result<&'s state::Grant, Error> {
        let g = st
            .grants
            .get(&grant_id)
            .ok_or_else(|| Error::NotFound(format!("no grant {grant_id}")))?;
        if !self.same_person(who, &g.issued.requester) {
            return Err(Error::PermissionDenied(format!(
                "only the requester ({}) may {what} grant {grant_id}",
                g.issued.requester
            )));
        }
        Ok(g)
    }

    /// Records the outcome of a drill on one of the caller's own drill grants
    /// (once per grant). A failure is logged and alerted like an emergency:
    /// to syslog and to the webhooks of the grant's tier.
    pub async fn report_drill(
        &self,
        who: &Caller,
        report: &ReportDrillRequest,
    ) -> Result<u64, Error> {
        let grant_id = parse_grant_id(&report.grant_id)?;
        let failed_step = report.failed_step.trim().to_owned();
        if !failed_step.is_empty() {
            text::check_code(&failed_step).map_err(|e| Error::invalid_field("failed_step", e))?;
        }
        let detail = check_note("detail", &report.detail, None)?;
        if report.passed != failed_step.is_empty() {
            return Err(Error::InvalidArgument(
                "failed_step: name the step that failed exactly when the drill did not pass".into(),
            ));
        }
        let _t = self.transitions.lock().await;
        let found = {
            let st = self.state();
            self.own_grant(&st, who, grant_id, "report the drill of")
                .and_then(|g| {
                    if !self.policy.tier(&g.issued.tier).is_some_and(|t| t.drill) {
                        return Err(Error::FailedPrecondition(format!(
                            "grant {grant_id} is of tier `{}`, which is not a drill tier (drill = true)",
                            g.issued.tier
                        )));
                    }
                    if g.drill_report.is_some() {
                        return Err(Error::FailedPrecondition(format!(
                            "the drill of grant {grant_id} was already reported"
                        )));
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
            Err(e @ Error::PermissionDenied(_)) => {
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

    /// Records a review verdict (`ok` or `misuse`) on a grant.
    pub async fn review(
        &self,
        who: &Caller,
        grant: &str,
        verdict: &str,
        note: &str,
    ) -> Result<ReviewItem, Error> {
        let grant_id = parse_grant_id(grant)?;
        let verdict = match verdict.trim() {
            "ok" => ReviewVerdict::Accepted,
            "misuse" => ReviewVerdict::Rejected,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "verdict: {other:?} is not \"ok\" or \"misuse\""
                )));
            }
        };
        let note = check_note("note", note, Some("say what you checked (--note TEXT)"))?;
        let _t = self.transitions.lock().await;
        let (requester, tier) = {
            let st = self.state();
            let g = st
                .grants
                .get(&grant_id)
                .ok_or_else(|| Error::NotFound(format!("no grant {grant_id}")))?;
            if let Some((_, by, _, _)) = &g.review {
                return Err(Error::FailedPrecondition(format!(
                    "grant {grant_id} was already reviewed by {by}"
                )));
            }
            (g.issued.requester.clone(), g.issued.tier.clone())
        };
        let target = grant_id.to_string();
        if self.same_person(who, &requester) {
            let e = Error::PermissionDenied(format!(
                "you cannot review your own grant {grant_id}; someone else must"
            ));
            let kind = RefusalKind::SelfApproval;
            drop(_t);
            return Err(self.refuse_action(who, "review", &target, kind, e).await);
        }
        let t = self.policy.tier(&tier);
        if !t.is_some_and(|t| t.may_review(who)) {
            let e = Error::PermissionDenied(format!(
                "{} may not review grants of tier `{tier}`: reviewers must be in {} (your groups: {})",
                who.identity,
                groups_text(&t.map(|t| t.reviewer_groups.clone()).unwrap_or_default()),
                groups_text(&who.groups)
            ));
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
        let st = self.state();
        let g = st
            .grants
            .get(&grant_id)
            .ok_or_else(|| Error::Internal(format!("grant {grant_id} vanished")))?;
        Ok(review_item(g, st.requests.get(&g.issued.request_id)))
    }
}

/// The certificate of a request that has ended, or why there is none.
fn final_result(
    info: &RequestInfo,
    kept: Option<RequestCertificateResponse>,
) -> Result<RequestCertificateResponse, Error> {
    let id = &info.request_id;
    match RequestState::try_from(info.state).unwrap_or(RequestState::Unspecified) {
        RequestState::Issued => kept.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{id} was issued (grant {}) by a CA key that no longer signs, so its certificate cannot be produced again; ask again",
                info.grant_id
            ))
        }),
        RequestState::Denied => Err(Error::PermissionDenied(format!(
            "request {id} was denied by {}: {}",
            info.decided_by, info.decision_reason
        ))),
        RequestState::Expired => Err(Error::Expired(format!(
            "request {id} expired: nobody approved it in time"
        ))),
        RequestState::Cancelled => Err(Error::Cancelled(format!(
            "request {id} was cancelled by {}",
            info.decided_by
        ))),
        _ => Err(Error::FailedPrecondition(format!(
            "request {id} is still waiting for approval ({} of {} so far)",
            info.approvals.len(),
            info.approvals_required
        ))),
    }
}

fn parse_grant_id(s: &str) -> Result<GrantId, Error> {
    s.trim()
        .parse()
        .map_err(|e| Error::InvalidArgument(format!("grant_id: {e}")))
}

/// The wire view of a grant's host sessions.
fn session_infos(g: &state::Grant) -> Vec<SessionInfo> {
    g.sessions
        .values()
        .map(|s| SessionInfo {
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
        })
        .collect()
}

fn review_item(g: &state::Grant, r: Option<&state::Request>) -> ReviewItem {
    let i = &g.issued;
    let (verdict, reviewer, note, reviewed_at) = match &g.review {
        Some((v, by, note, at)) => (
            match v {
                ReviewVerdict::Accepted => "ok",
                ReviewVerdict::Rejected => "misuse",
            }
            .to_owned(),
            match by {
                Actor::User(u) => u.clone(),
                other => other.to_string(),
            },
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
        sessions: session_infos(g),
        verdict,
        reviewer,
        note,
        reviewed_at,
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

/// The audit log could not record an event: nothing was done.
fn audit_unavailable(e: AuditError) -> Error {
    tracing::error!(error = %e, "audit log append failed");
    Error::Unavailable(format!(
        "{e}; nothing was issued or changed. Try again shortly; operators: check the disk of the audit log"
    ))
}

/// The tonic service: a thin adapter from gRPC to [`Service`].
#[derive(Clone, Debug)]
pub struct Handlers(pub Arc<Service>);

type UpdateStream = Pin<Box<dyn Stream<Item = Result<RequestUpdate, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BreakGlass for Handlers {
    async fn request_certificate(
        &self,
        req: Request<RequestCertificateRequest>,
    ) -> Result<Response<RequestCertificateResponse>, Status> {
        let who = caller(&req)?;
        // Signing is ~40 µs of CPU: cheap enough to run inline.
        Ok(Response::new(
            self.0.create_and_wait(&who, req.get_ref()).await?,
        ))
    }

    async fn create_request(
        &self,
        req: Request<RequestCertificateRequest>,
    ) -> Result<Response<CreateRequestResponse>, Status> {
        let who = caller(&req)?;
        let c = self.0.create(&who, req.get_ref()).await?;
        Ok(Response::new(CreateRequestResponse {
            request: Some(c.info),
            certificate: c.certificate,
        }))
    }

    type WatchRequestStream = UpdateStream;

    async fn watch_request(
        &self,
        req: Request<RequestRef>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        let who = caller(&req)?;
        let id = parse_request_id(&req.get_ref().request_id)?;
        let rx = self.0.watch(&who, id).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_pending(
        &self,
        req: Request<ListPendingRequest>,
    ) -> Result<Response<ListPendingResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(ListPendingResponse {
            requests: self.0.list_pending(&who),
        }))
    }

    async fn get_request(&self, req: Request<RequestRef>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let id = parse_request_id(&req.get_ref().request_id)?;
        Ok(Response::new(self.0.get(&who, id).await?))
    }

    async fn approve(&self, req: Request<ApproveRequest>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let id = parse_request_id(&r.request_id)?;
        Ok(Response::new(self.0.approve(&who, id, &r.comment).await?))
    }

    async fn deny(&self, req: Request<DenyRequest>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let id = parse_request_id(&r.request_id)?;
        Ok(Response::new(self.0.deny(&who, id, &r.reason).await?))
    }

    async fn cancel(&self, req: Request<CancelRequest>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let id = parse_request_id(&r.request_id)?;
        Ok(Response::new(self.0.cancel(&who, id, &r.reason).await?))
    }

    async fn fetch(
        &self,
        req: Request<RequestRef>,
    ) -> Result<Response<RequestCertificateResponse>, Status> {
        let who = caller(&req)?;
        let id = parse_request_id(&req.get_ref().request_id)?;
        Ok(Response::new(self.0.fetch(&who, id).await?))
    }

    async fn list_reviews(
        &self,
        req: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(ListReviewsResponse {
            items: self.0.list_reviews(&who, req.get_ref().include_reviewed),
        }))
    }

    async fn review(&self, req: Request<ReviewRequest>) -> Result<Response<ReviewItem>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.0
                .review(&who, &r.grant_id, &r.verdict, &r.note)
                .await?,
        ))
    }

    async fn get_ca_public_keys(
        &self,
        _req: Request<GetCaPublicKeysRequest>,
    ) -> Result<Response<GetCaPublicKeysResponse>, Status> {
        let keys = self
            .0
            .ca
            .published()
            .iter()
            .map(|k| {
                Ok(CaPublicKey {
                    public_key: k
                        .key
                        .to_openssh()
                        .map_err(|e| Error::Internal(format!("encoding CA key: {e}")))?,
                    fingerprint: k.key.fingerprint(HashAlg::Sha256).to_string(),
                    signing: k.signing,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Response::new(GetCaPublicKeysResponse { keys }))
    }

    async fn get_grant_sessions(
        &self,
        req: Request<GrantRef>,
    ) -> Result<Response<GrantSessionsResponse>, Status> {
        let who = caller(&req)?;
        let grant_id = req.get_ref().grant_id.trim().to_owned();
        let sessions = self.0.grant_sessions(&who, &grant_id).await?;
        Ok(Response::new(GrantSessionsResponse { grant_id, sessions }))
    }

    async fn report_drill(
        &self,
        req: Request<ReportDrillRequest>,
    ) -> Result<Response<ReportDrillResponse>, Status> {
        let who = caller(&req)?;
        let audit_index = self.0.report_drill(&who, req.get_ref()).await?;
        Ok(Response::new(ReportDrillResponse { audit_index }))
    }

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let who = caller(&req)?;
        let (t, _) = now();
        let server_time_unix = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Response::new(WhoAmIResponse {
            identity: who.identity,
            groups: who.groups,
            transport: who.transport.to_owned(),
            server_time_unix,
            backdate_seconds: i64::try_from(self.0.ca.backdate().as_secs()).unwrap_or(i64::MAX),
        }))
    }
}
