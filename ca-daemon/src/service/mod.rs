//! The request lifecycle's shared core: the [`Service`] state every part works on, and
//! [`Service::record`], the one way the daemon changes state.
//!
//! Every transition is an audit event recorded through [`Service::record`] (durable first,
//! then applied to the [`State`]), with the caller as actor; a restart replays them and
//! restores pending requests and approvals exactly. Transitions of existing requests are
//! serialised by one async lock so that two approvers cannot both issue; creating and
//! issuing a zero-approval request takes no lock (the benchmark path).
//!
//! The rooms:
//! - [`lifecycle`]: create, approve / deny / cancel, expiry: pending → approved → issued,
//!   or denied, expired, cancelled;
//! - [`grants`]: issuing the certificate of a request, and producing it again later;
//! - [`review`]: what follows a grant: emergency reviews and drill reports;
//! - [`views`]: what callers may see of requests and grants, in the wire's terms;
//! - [`refusals`]: refusals by policy on the record.
//!
//! The gRPC faces that call these are in [`crate::api`]; where access is decided is
//! [`crate::policy`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use breakglass_proto::audit::{Actor, Event, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::text;
use breakglass_proto::v1::{RequestCertificateResponse, RequestInfo};
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::certificate::CertificateAuthority;
use crate::config::Config;
use crate::error::{Error, Halt};
use crate::history::History;
use crate::identity::{Authenticator, unix_identity};
use crate::metrics::counters::Metrics;
use crate::notify::{self, NoticeKind, Notifier};
use crate::policy::{Caller, Policy};
use crate::refusal::Refusals;
use crate::state::{self, State};

pub mod grants;
pub mod lifecycle;
mod past;
pub mod refusals;
pub mod review;
pub mod views;

/// How often pending requests are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Longest approval comment, denial or review note.
const MAX_NOTE_BYTES: usize = 1024;

/// Longest a decision waits for this daemon's state to catch up with the database.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// Held while a transition is decided and recorded ([`Service::transition`]).
#[derive(Debug)]
pub(crate) struct Transition<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    _global: Option<crate::audit::pg::DecisionGuard>,
}

/// Shared state of the request lifecycle.
#[derive(Debug)]
pub struct Service {
    pub(crate) ca: CertificateAuthority,
    /// What a reload may change ([`crate::reload`]), swapped whole: read once per call.
    live: ArcSwap<Live>,
    pub(crate) audit: AuditLog,
    state: Mutex<State>,
    notifier: Notifier,
    /// Bumped after every recorded event; watchers re-read their request.
    changes: watch::Sender<u64>,
    /// With a database ordering the log ([`AuditLog::sequenced`]): one past the highest
    /// leaf index the state has applied; `record` waits for its entry here.
    applied: watch::Sender<u64>,
    /// Serialises transitions of existing requests.
    transitions: tokio::sync::Mutex<()>,
    /// Refusal settings and bookkeeping (see [`crate::refusal`]).
    pub(crate) refusals: Refusals,
    /// What the metrics listener reports (see [`crate::metrics`]).
    metrics: Metrics,
    /// Who is calling: shared with the access layer and the interceptors, so that a reload
    /// replaces the identities everywhere at once.
    authenticator: Authenticator,
    /// History no longer in memory, read from the log through its on-disk index.
    history: Arc<History>,
}

/// The part of the configuration the service reads that a reload may replace
/// ([`crate::reload`]): one value, swapped whole, so one call sees one configuration.
#[derive(Debug)]
pub struct Live {
    /// Compiled policy (rules and risk tiers, with their webhooks).
    pub policy: Arc<Policy>,
    /// Longest TTL any request may ask for (`[ca] max_ttl`).
    pub max_ttl: Duration,
    /// Identity → owner (the person behind it), from the configuration.
    owners: HashMap<String, String>,
    /// The client configuration approvers are told to use (`[notifications] client_config`).
    client_config: Option<String>,
    /// A `certificate issued` line per certificate at info level (`[log] issuance_lines`).
    issuance_lines: bool,
}

impl Live {
    /// The reloadable part of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            policy: Arc::new(config.policy.clone()),
            max_ttl: config.ca.max_ttl,
            owners: config
                .identities
                .iter()
                .filter_map(|i| i.owner.clone().map(|o| (i.id.clone(), o)))
                .collect(),
            client_config: config.notifications.client_config.clone(),
            issuance_lines: config.log.issuance_lines,
        }
    }
}

/// What creating a request produced.
#[derive(Debug)]
pub struct Created {
    /// The request's id.
    pub id: RequestId,
    /// The request as it stands.
    pub info: RequestInfo,
    /// The certificate, when issued at once.
    pub certificate: Option<RequestCertificateResponse>,
}

/// Whether `event` changes who callers are ([`Authenticator::follow_log`]).
fn is_identity_event(event: &Event) -> bool {
    matches!(
        event.kind,
        breakglass_proto::audit::EventKind::ClientCertificateIssued(_)
            | breakglass_proto::audit::EventKind::IdentityDisabled(_)
    )
}

/// The clock, read once: as `SystemTime` and as a log timestamp.
pub(crate) fn now() -> (SystemTime, Timestamp) {
    let t = SystemTime::now();
    (t, Timestamp::from_system_time(t))
}

/// A log timestamp in whole Unix seconds, as the wire carries times.
pub(crate) fn secs(t: Timestamp) -> i64 {
    i64::try_from(t.unix_seconds()).unwrap_or(i64::MAX)
}

/// A free-text field (`field` names it): trimmed, at most [`MAX_NOTE_BYTES`], no hazard
/// ([`text::check_free_text`]); `if_empty` is the refusal of an empty one, when it is
/// required.
pub(crate) fn check_note(
    field: &'static str,
    note: &str,
    if_empty: Option<&str>,
) -> Result<String, Error> {
    let t = note.trim();
    if let Some(why) = if_empty
        && t.is_empty()
    {
        return Err(Error::invalid_field(field, why));
    }
    text::check_free_text(t, MAX_NOTE_BYTES).map_err(|e| Error::invalid_field(field, e))?;
    Ok(t.to_owned())
}

/// How an actor is named on the wire: a user by its identity, others as the log writes them.
pub(crate) fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::User(id) => id.clone(),
        other => other.to_string(),
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
        let authenticator = Authenticator::from_config(config);
        authenticator.follow_log(&state.identities);
        let top = state.top;
        let svc = Arc::new(Self {
            ca,
            live: ArcSwap::from_pointee(Live::of(config)),
            state: Mutex::new(state),
            notifier: Notifier::new(config.notifications.clone()),
            changes: watch::channel(0).0,
            applied: watch::channel(top).0,
            transitions: tokio::sync::Mutex::new(()),
            refusals: Refusals::new(config.refusals.clone(), &config.identities),
            metrics: Metrics::default(),
            authenticator,
            history: Arc::new(History::new(audit.clone(), &config.audit.dir)),
            audit,
        });
        svc.follow_foreign_entries();
        svc
    }

    /// The state derived from the log.
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-applied
        // in a way the log does not describe; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration in force that a reload may change: load it once per call.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.live.load().policy.clone()
    }

    /// The longest TTL any request may ask for (`[ca] max_ttl`).
    pub fn max_ttl(&self) -> Duration {
        self.live.load().max_ttl
    }

    /// The client configuration approvers are told to use.
    pub(crate) fn client_config(&self) -> Option<String> {
        self.live.load().client_config.clone()
    }

    /// Puts the reloadable part of `config` in force ([`crate::reload`], after the
    /// `config_reloaded` event is durable): policy, tiers and their webhooks, identities'
    /// owners, refusal and notification settings. Calls under way finish with what they
    /// loaded.
    pub(crate) fn replace_live(&self, config: &Config) {
        self.authenticator.replace(config);
        self.refusals
            .replace(config.refusals.clone(), &config.identities);
        self.notifier.replace_settings(config.notifications.clone());
        self.live.store(Arc::new(Live::of(config)));
    }

    /// Who is calling, by the identities in force (shared by every listener).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Counters and histograms for the metrics listener.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
        let started = Instant::now();
        let appended = self.audit.append(&event).await;
        self.metrics.recorded(
            std::slice::from_ref(&event),
            appended.is_ok(),
            started.elapsed(),
        );
        let index = appended.map_err(|e| {
            tracing::error!(error = %e, "audit log append failed");
            Error::AuditUnavailable(e)
        })?;
        if self.audit.sequenced() {
            self.wait_applied(index).await;
            then(&mut self.state());
            self.changes.send_modify(|n| *n += 1);
            return Ok(index);
        }
        {
            let mut st = self.state();
            st.apply(index, &event);
            if is_identity_event(&event) {
                self.authenticator.follow_log(&st.identities);
            }
            then(&mut st);
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(index)
    }

    /// Appends `events` as one unit ([`AuditLog::append_all`]: one write, one checkpoint,
    /// all or none after a crash) and applies them in order once durable. Returns the
    /// first one's index.
    pub(crate) async fn record_all(&self, events: &[Event]) -> Result<u64, Error> {
        let started = Instant::now();
        let appended = self.audit.append_all(events).await;
        self.metrics
            .recorded(events, appended.is_ok(), started.elapsed());
        let first = appended.map_err(|e| {
            tracing::error!(error = %e, "audit log append failed");
            Error::AuditUnavailable(e)
        })?;
        if self.audit.sequenced() {
            self.wait_applied(first + events.len() as u64 - 1).await;
            self.changes.send_modify(|n| *n += 1);
            return Ok(first);
        }
        {
            let mut st = self.state();
            for (i, event) in (first..).zip(events) {
                st.apply(i, event);
            }
            if events.iter().any(is_identity_event) {
                self.authenticator.follow_log(&st.identities);
            }
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(first)
    }

    /// Taken before a transition is decided (see `transitions`); with a database ordering
    /// the log, also the lock across daemons, and the state caught up to the log's end
    /// first, so that a decision sees every daemon's entries.
    pub(crate) async fn transition(&self) -> Result<Transition<'_>, Error> {
        let local = self.transitions.lock().await;
        let global = match self
            .audit
            .lock_decisions()
            .await
            .map_err(Error::AuditUnavailable)?
        {
            None => None,
            Some((guard, size)) => {
                if size > 0
                    && tokio::time::timeout(CATCH_UP_WAIT, self.wait_applied(size - 1))
                        .await
                        .is_err()
                {
                    return Err(Error::AuditUnavailable(
                        crate::audit::AuditError::Unavailable(format!(
                            "this daemon did not catch up with the audit database's {size} \
                             entries within {CATCH_UP_WAIT:?}; nothing was decided"
                        )),
                    ));
                }
                Some(guard)
            }
        };
        Ok(Transition {
            _local: local,
            _global: global,
        })
    }

    /// Waits until the state has applied leaf `index` (a database orders the log: the
    /// writer hands every batch to [`Self::follow_foreign_entries`] before it answers).
    async fn wait_applied(&self, index: u64) {
        let mut applied = self.applied.subscribe();
        // The sender lives as long as the service: the wait ends when the entry is applied.
        let _ = applied.wait_for(|top| *top > index).await;
    }

    /// With a database ordering the log ([`AuditLog::sequenced`]): applies every batch
    /// committed after start-up, this daemon's and the others', in index order (an entry
    /// the state already holds, loaded at start-up, is skipped). Once: a second call finds
    /// the batches' receiver taken.
    fn follow_foreign_entries(self: &Arc<Self>) {
        if !self.audit.sequenced() {
            return;
        }
        // Built outside a runtime (the binary builds, then runs): `start_background`
        // starts it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(mut rx) = self.audit.take_foreign() else {
            return;
        };
        let svc = Arc::clone(self);
        runtime.spawn(async move {
            while let Some((first, events)) = rx.recv().await {
                let top = {
                    let mut st = svc.state();
                    for (i, event) in (first..).zip(&events) {
                        if i >= st.top {
                            st.apply(i, event);
                        }
                    }
                    if events.iter().any(is_identity_event) {
                        svc.authenticator.follow_log(&st.identities);
                    }
                    st.top
                };
                svc.applied.send_replace(top);
                svc.changes.send_modify(|n| *n += 1);
            }
        });
    }

    /// Why no certificate may be issued now: a host showed a checkpoint of this log that the
    /// log does not extend (rolled back or forked) and no administrator acknowledged it yet
    /// (`crate::witness`). `None` when issuance may go on.
    pub fn halted(&self) -> Option<Halt> {
        let st = self.state();
        let first = st.log_forks.first()?;
        Some(Halt {
            host: first.host.clone(),
            size: first.size,
            log_size: first.log_size,
            index: first.index,
            others: st.log_forks.len() - 1,
        })
    }

    fn check_not_halted(&self) -> Result<(), Error> {
        match self.halted() {
            Some(halt) => Err(Error::Halted(halt)),
            None => Ok(()),
        }
    }

    /// Starts the background work: notification delivery, and expiry (and
    /// issuance of fully approved requests left behind by a failure) of
    /// pending requests until `stop` turns true.
    pub fn start_background(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.notifier.start();
        self.keep_history_indexed(stop.clone());
        // Started in `new` when that ran inside a runtime; otherwise now (once).
        self.follow_foreign_entries();
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

    /// The person behind an identity: its configured owner, or itself.
    fn person(&self, identity: &str) -> String {
        self.live
            .load()
            .owners
            .get(identity)
            .map_or(identity, String::as_str)
            .to_owned()
    }

    fn actor_person(&self, actor: &Actor) -> String {
        match actor {
            Actor::User(id) => self.person(id),
            Actor::LocalUid(uid) => self.person(&unix_identity(*uid)),
            other => other.to_string(),
        }
    }

    /// True when the caller is the requester, or another identity of the same owner.
    fn same_person(&self, who: &Caller, requester: &str) -> bool {
        who.identity == requester
            || self.person(&who.identity) == self.person(requester)
            || who.owner.as_deref() == Some(self.person(requester).as_str())
    }

    /// True when `who`, as a person, already approved `r`.
    fn has_approved(&self, who: &Caller, r: &state::Request) -> bool {
        let me = self.person(&who.identity);
        r.approvals
            .iter()
            .any(|(a, _, _)| self.actor_person(a) == me)
    }

    /// Distinct approvers of a request (one per person), in approval order.
    fn approvers(&self, r: &state::Request) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (actor, _, _) in &r.approvals {
            if seen.insert(self.actor_person(actor)) {
                out.push(actor_name(actor));
            }
        }
        out
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
            let Some(r) = st.request(id) else {
                return;
            };
            (r.created.clone(), self.approvers(&r))
        };
        let urls = self
            .policy()
            .tier(&created.tier)
            .map(|t| t.webhooks.clone())
            .unwrap_or_default();
        let mut n = notify::notice(
            kind,
            &created,
            approvers,
            actor,
            self.client_config().as_deref(),
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
}
