//! The daemon's state, derived from the audit log and from nothing else.
//!
//! At start-up every event is replayed through [`State::apply`]; afterwards
//! each event is applied right after the log acknowledged it as durable. So
//! the state can never hold something the log does not, and a restart
//! restores it exactly. `apply` is pure: no clock, no I/O.
//!
//! Memory follows what decisions need, not the history: every request and grant is
//! held until a release time ([`State::expiry`], ordered by that time), and evicted once
//! the log's time (the latest time the daemon stamped on an event; hosts' records carry
//! the hosts' clocks and do not count) passes it — a grant shortly after its certificate
//! expired (an emergency one not before it is reviewed and out of the daily count), a
//! decided request shortly after its approval deadline, an issued one with its grant.
//! What is evicted stays in the log and is read back through the on-disk index
//! ([`crate::history`]). Pending requests, live grants, revoked keys, refusal windows and
//! unacknowledged forks stay.
//!
//! A live grant costs one record, not two: an issued request is held with its grant, as
//! the part the grant does not repeat ([`IssuedRequest`]), and rebuilt when asked
//! ([`State::request`]). No certificate text is held at all (it is signed again when
//! fetched, see `service::grants`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use breakglass_proto::audit::event::{
    EndReason, GrantIssued, RequestCreated, ReviewVerdict, SessionRef,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;

use crate::audit::LeafIndex;
use crate::policy::EMERGENCY_WINDOW;

pub mod cow;
pub mod identities;

use cow::{ArcMap, CowMap, CowSet};

/// The state's grants by id (copy on write, see [`cow`]).
pub type Grants = ArcMap<GrantId, Grant>;

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// A certificate was issued for it.
    Issued(GrantId),
    /// An approver (or the policy) said no.
    Denied {
        /// Who denied it.
        by: Actor,
        /// Why.
        reason: String,
    },
    /// It timed out waiting for approvals.
    Expired,
    /// The requester withdrew it.
    Cancelled {
        /// Who cancelled it.
        by: Actor,
        /// Why (may be empty).
        reason: String,
    },
}

/// One access request and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request as created (boxed: the maps of the state hold small values, so that
    /// their nodes' free slots cost little per live request).
    pub created: Box<RequestCreated>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Approvals so far: approver, comment, time.
    pub approvals: Vec<(Actor, String, Timestamp)>,
    /// Current status.
    pub status: RequestStatus,
}

/// One session on a host, assembled from host records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// Host and session identity (from the first record seen).
    pub host: String,
    /// Account logged into.
    pub principal: String,
    /// Host-local session id.
    pub session_id: String,
    /// Client address.
    pub remote_addr: String,
    /// When it opened.
    pub opened_at: Option<Timestamp>,
    /// When the user was warned of its end.
    pub warned_at: Option<Timestamp>,
    /// When the user closed it.
    pub closed_at: Option<Timestamp>,
    /// When and why breakglass ended it.
    pub ended: Option<(EndReason, Timestamp, String)>,
}

/// One issued certificate and what happened to it since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The issuing event (boxed, as [`Request::created`]).
    pub issued: Box<GrantIssued>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Leaf index of the issuing event.
    pub index: LeafIndex,
    /// Revocation: who, why, when (boxed: most grants have none).
    pub revoked: Option<Box<(Actor, String, Timestamp)>>,
    /// Review: verdict, reviewer, comment, when (boxed: most grants have none).
    pub review: Option<Box<(ReviewVerdict, Actor, String, Timestamp)>>,
    /// Sessions reported by hosts, by `host/session id`.
    pub sessions: BTreeMap<String, Session>,
    /// The drill report of a drill grant: passed, when.
    pub drill_report: Option<(bool, Timestamp)>,
    /// Leaf index of its (first) revocation event, the key of [`State::revocations`].
    pub revoked_index: Option<LeafIndex>,
    /// Its request, held here (what the grant does not repeat) rather than as a
    /// [`Request`] of its own: one record per live grant, not two. `None` when the request
    /// is held apart (see [`State::request`]).
    pub request: Option<Box<IssuedRequest>>,
}

/// What an issued request says beyond its grant: the request is held with the grant and
/// rebuilt from both when asked ([`State::request`]). Only a request whose requester,
/// principals, hosts, command, source addresses, rule and tier are its grant's is held so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedRequest {
    /// When it was created.
    pub created_at: Timestamp,
    /// Approvals: approver, comment, time.
    pub approvals: Vec<(Actor, String, Timestamp)>,
    /// The requester's OpenSSH public key line.
    pub public_key: String,
    /// Why access was needed.
    pub reason: String,
    /// Requested lifetime in seconds.
    pub ttl_seconds: u64,
    /// Distinct approvals its tier needed.
    pub approvals_required: u32,
    /// When it would have timed out.
    pub expires_at: Timestamp,
    /// A declared emergency.
    pub emergency: bool,
    /// The extensions asked for, when they are not the ones granted.
    pub extensions: Option<Vec<String>>,
}

impl IssuedRequest {
    /// The part of `r` (issued as `g`) its grant does not say; `None` when `g` does not
    /// repeat what `r` asked for (the request is then held apart).
    fn of(r: &Request, g: &GrantIssued) -> Option<Self> {
        let c = &r.created;
        let same = c.request_id == g.request_id
            && r.status == RequestStatus::Issued(g.grant_id)
            && c.requester == g.requester
            && c.principals == g.principals
            && c.hosts == g.hosts
            && c.command == g.command
            && c.source_addresses == g.source_addresses
            && c.rule == g.rule
            && c.tier == g.tier;
        same.then(|| Self {
            created_at: r.created_at,
            approvals: r.approvals.clone(),
            public_key: c.public_key.clone(),
            reason: c.reason.clone(),
            ttl_seconds: c.ttl_seconds,
            approvals_required: c.approvals_required,
            expires_at: c.expires_at,
            emergency: c.emergency,
            extensions: (c.extensions != g.extensions).then(|| c.extensions.clone()),
        })
    }

    /// The request, whole again.
    #[must_use]
    pub fn request(&self, g: &GrantIssued) -> Request {
        Request {
            created: Box::new(RequestCreated {
                request_id: g.request_id,
                requester: g.requester.clone(),
                public_key: self.public_key.clone(),
                principals: g.principals.clone(),
                hosts: g.hosts.clone(),
                ttl_seconds: self.ttl_seconds,
                reason: self.reason.clone(),
                command: g.command.clone(),
                source_addresses: g.source_addresses.clone(),
                extensions: self
                    .extensions
                    .clone()
                    .unwrap_or_else(|| g.extensions.clone()),
                emergency: self.emergency,
                rule: g.rule.clone(),
                tier: g.tier.clone(),
                approvals_required: self.approvals_required,
                expires_at: self.expires_at,
            }),
            created_at: self.created_at,
            approvals: self.approvals.clone(),
            status: RequestStatus::Issued(g.grant_id),
        }
    }
}

/// A public key revoked for good: in every KRL from now on, and no certificate is
/// issued for it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRevocation {
    /// The grant whose revocation named the key.
    pub grant: GrantId,
    /// Who revoked it.
    pub by: Actor,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
    /// Leaf index of that revocation event.
    pub index: LeafIndex,
}

/// A checkpoint a host showed that this log does not extend (a `LogConsistencyFailed`
/// event): the log was rolled back or forked since the host saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFork {
    /// Leaf index of the event.
    pub index: LeafIndex,
    /// When it was recorded.
    pub at: Timestamp,
    /// The host that showed it.
    pub host: String,
    /// Size of the host's checkpoint.
    pub size: u64,
    /// Root of the host's checkpoint.
    pub root: [u8; 32],
    /// This log's size when the host showed it.
    pub log_size: u64,
}

/// Everything the daemon needs to decide, rebuilt from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Requests held apart from a grant: pending ones, those that ended without a grant,
    /// and issued ones whose grant does not repeat what they asked for. An issued request
    /// is otherwise held with its grant ([`Grant::request`], found through
    /// [`issued_requests`](Self::issued_requests)). Read any request with
    /// [`request`](Self::request).
    pub(crate) loose_requests: BTreeMap<RequestId, Request>,
    /// The grant holding each request held with its grant.
    pub(crate) issued_requests: CowMap<RequestId, GrantId>,
    /// Requests still pending (waiting for approvals or issuance).
    pub pending: BTreeSet<RequestId>,
    /// All grants (copy on write, see [`cow`]).
    pub grants: Grants,
    /// Grant of each certificate serial.
    pub serials: CowMap<u64, GrantId>,
    /// Host record ids already in the log (a re-delivered record is not appended twice).
    pub host_records: HashSet<String>,
    /// Sessions reported for grants this log does not hold, by `host/session id`.
    pub orphan_sessions: BTreeMap<String, Session>,
    /// Latest published KRL version.
    pub krl_version: u64,
    /// Leaf index of the latest `KrlPublished` event: a revocation after it is not in
    /// any published KRL yet.
    pub krl_published_index: Option<LeafIndex>,
    /// Revoked grants by the leaf index of their (first) revocation event: the
    /// sequence numbers of the revocation stream.
    pub revocations: BTreeMap<LeafIndex, GrantId>,
    /// Refusals per identity in its latest rate-limit window (see [`RefusalWindow`]).
    pub refusals: HashMap<String, RefusalWindow>,
    /// Public keys revoked for good (`revoke --public-key`), by `SHA256:` fingerprint:
    /// the first revocation that named each.
    pub revoked_keys: BTreeMap<String, KeyRevocation>,
    /// Checkpoints hosts showed that this log does not extend, not acknowledged yet: while
    /// there is one, no certificate is issued. Kept in the log, so a restart keeps it.
    pub log_forks: Vec<LogFork>,
    /// `(size, root)` of the host checkpoints an administrator acknowledged
    /// (`LogForkAcknowledged`): shown again, they stop nothing.
    pub acknowledged_forks: BTreeSet<(u64, [u8; 32])>,
    /// Number of events applied.
    pub events: u64,
    /// One past the highest leaf index applied: equal to `events` when the state holds
    /// exactly the log's first `events` entries (see [`State::is_prefix`]).
    pub top: LeafIndex,
    /// What leaves memory when: `(release time in Unix ms, what)`, soonest first. Every
    /// request and grant that is not held for good has exactly one entry.
    pub expiry: CowSet<(u64, Held)>,
    /// The log's time: the latest time applied of an event the daemon stamped (not a
    /// host's record) (Unix ms). What is held until before it is evicted.
    pub clock: u64,
    /// Keep everything (no eviction): for rebuilding one request or grant from its
    /// events read back from the log.
    pub keep_history: bool,
    /// Recorded sessions: the digest each close record commits to, stored, deleted
    /// ([`crate::recordings`]).
    pub recordings: breakglass_proto::audit::recordings::RecordingIndex,
    /// Join tokens, enrolled and disabled identities ([`identities`]).
    pub identities: identities::Identities,
}

/// Length of the window of the per-identity refusal limit (`per_identity_per_hour`).
pub const REFUSAL_WINDOW_MS: u64 = 3_600_000;
/// Identities tracked before windows that have ended are dropped.
const MAX_REFUSAL_WINDOWS: usize = 4096;

/// The refusals of one identity recorded in one window (a whole UTC hour).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalWindow {
    /// Start of the window.
    pub start: Timestamp,
    /// `request_refused` and `action_refused` events recorded in it.
    pub recorded: u32,
    /// Whether its `refusals_limited` event is recorded.
    pub limited: bool,
}

/// Start of the refusal window holding `t`.
#[must_use]
pub fn refusal_window_start(t: Timestamp) -> Timestamp {
    Timestamp(t.0 - t.0 % REFUSAL_WINDOW_MS)
}

impl State {
    /// Applies one durable event. Events about unknown requests or grants are
    /// kept in the log but change nothing here.
    pub fn apply(&mut self, index: LeafIndex, event: &Event) {
        self.events += 1;
        self.top = self.top.max(index.saturating_add(1));
        self.recordings.apply(index, event);
        let at = event.time;
        match &event.kind {
            EventKind::RequestCreated(r) => {
                // A request id seen before: the new request replaces the old one.
                if let Some(g) = self.issued_requests.remove(&r.request_id)
                    && let Some(g) = self.grants.get_mut(&g)
                {
                    g.request = None;
                }
                self.loose_requests.insert(
                    r.request_id,
                    Request {
                        created: Box::new(r.clone()),
                        created_at: at,
                        approvals: Vec::new(),
                        status: RequestStatus::Pending,
                    },
                );
                self.pending.insert(r.request_id);
            }
            EventKind::ApprovalAdded(a) => {
                let approval = (event.actor.clone(), a.comment.clone(), at);
                if let Some(r) = self.loose_requests.get_mut(&a.request_id) {
                    r.approvals.push(approval);
                } else if let Some(r) = self
                    .issued_requests
                    .get(&a.request_id)
                    .and_then(|g| self.grants.get_mut(g))
                    .and_then(|g| g.request.as_mut())
                {
                    r.approvals.push(approval);
                }
            }
            EventKind::RequestDenied(d) => {
                // Only a pending request can end this way; a late event changes nothing.
                if let Some(r) = self
                    .loose_requests
                    .get_mut(&d.request_id)
                    .filter(|r| r.status == RequestStatus::Pending)
                {
                    r.status = RequestStatus::Denied {
                        by: event.actor.clone(),
                        reason: d.reason.clone(),
                    };
                }
            }
            EventKind::RequestExpired(e) => {
                // Only a pending request can end this way; a late event changes nothing.
                if let Some(r) = self
                    .loose_requests
                    .get_mut(&e.request_id)
                    .filter(|r| r.status == RequestStatus::Pending)
                {
                    r.status = RequestStatus::Expired;
                }
            }
            EventKind::RequestCancelled(c) => {
                // Only a pending request can end this way; a late event changes nothing.
                if let Some(r) = self
                    .loose_requests
                    .get_mut(&c.request_id)
                    .filter(|r| r.status == RequestStatus::Pending)
                {
                    r.status = RequestStatus::Cancelled {
                        by: event.actor.clone(),
                        reason: c.reason.clone(),
                    };
                }
            }
            EventKind::GrantIssued(g) => {
                // A second grant for a request held with another, or a grant id seen
                // before: the request is held apart again.
                self.unfold_request(g.request_id);
                if let Some(r) = self
                    .grants
                    .get(&g.grant_id)
                    .filter(|old| old.request.is_some())
                    .map(|old| old.issued.request_id)
                {
                    self.unfold_request(r);
                }
                if let Some(r) = self.loose_requests.get_mut(&g.request_id) {
                    r.status = RequestStatus::Issued(g.grant_id);
                }
                self.serials.insert(g.serial, g.grant_id);
                self.grants.insert(
                    g.grant_id,
                    Grant {
                        issued: g.clone(),
                        issued_at: at,
                        index,
                        revoked: None,
                        review: None,
                        sessions: BTreeMap::new(),
                        drill_report: None,
                        revoked_index: None,
                        request: None,
                    },
                );
                self.fold_request(g.request_id);
                if let Some(release) = self.grants.get(&g.grant_id).and_then(release_of_grant) {
                    self.expiry.insert((release, Held::Grant(g.grant_id)));
                }
            }
            EventKind::GrantRevoked(r) => {
                if let Some(g) = self.grants.get_mut(&r.grant_id) {
                    if g.revoked.is_none() {
                        self.revocations.insert(index, r.grant_id);
                        g.revoked_index = Some(index);
                    }
                    g.revoked.get_or_insert_with(|| {
                        Box::new((event.actor.clone(), r.reason.clone(), at))
                    });
                }
                if let Some(key) = &r.revoked_key {
                    self.revoked_keys
                        .entry(key.clone())
                        .or_insert_with(|| KeyRevocation {
                            grant: r.grant_id,
                            by: event.actor.clone(),
                            reason: r.reason.clone(),
                            at,
                            index,
                        });
                }
            }
            EventKind::GrantReviewed(r) => {
                if let Some(g) = self.grants.get_mut(&r.grant_id) {
                    let before = release_of_grant(g);
                    g.review = Some(Box::new((
                        r.verdict,
                        event.actor.clone(),
                        r.comment.clone(),
                        at,
                    )));
                    let after = release_of_grant(g);
                    self.requeue(Held::Grant(r.grant_id), before, after);
                }
            }
            EventKind::SessionOpened(s) => {
                let session = self.session(&s.session, at);
                session.opened_at = Some(at);
                session.remote_addr = s.remote_addr.clone();
            }
            EventKind::SessionWarned(s) => {
                self.session(&s.session, at).warned_at = Some(at);
            }
            EventKind::SessionClosed(s) => {
                self.session(&s.session, at).closed_at = Some(at);
            }
            EventKind::SessionEnded(s) => {
                self.session(&s.session, at).ended = Some((s.reason, at, s.detail.clone()));
            }
            EventKind::KrlPublished(k) => {
                self.krl_version = self.krl_version.max(k.version);
                self.krl_published_index = Some(index);
            }
            EventKind::DrillReported(d) => {
                if let Some(g) = self.grants.get_mut(&d.grant_id) {
                    g.drill_report.get_or_insert((d.passed, at));
                }
            }
            EventKind::RequestRefused(r) => {
                if let Some(w) = self.refusal_window_mut(&r.identity, at) {
                    w.recorded = w.recorded.saturating_add(1);
                }
            }
            EventKind::ActionRefused(r) => {
                if let Some(w) = self.refusal_window_mut(&r.identity, at) {
                    w.recorded = w.recorded.saturating_add(1);
                }
            }
            EventKind::RefusalsLimited(l) => {
                if let Some(w) = self.refusal_window_mut(&l.identity, l.window_start) {
                    w.limited = true;
                }
            }
            EventKind::LogConsistencyFailed(f) => self.log_forks.push(LogFork {
                index,
                at,
                host: f.host.clone(),
                size: f.size,
                root: f.root,
                log_size: f.log_size,
            }),
            EventKind::LogForkAcknowledged(_) => {
                for f in self.log_forks.drain(..) {
                    self.acknowledged_forks.insert((f.size, f.root));
                }
            }
            EventKind::CaKeyAdded(_) | EventKind::Heartbeat(_) | EventKind::ConfigReloaded(_) => {}
            // Kept in `self.recordings` (applied above).
            EventKind::RecordingStored(_)
            | EventKind::RecordingRefused(_)
            | EventKind::RecordingDeleted(_) => {}
            EventKind::JoinTokenCreated(t) => self.identities.token_created(t, at),
            EventKind::ClientCertificateIssued(c) => self.identities.certificate_issued(c, at),
            EventKind::IdentityDisabled(d) => self.identities.disabled(d, &event.actor, at),
            EventKind::SshKeyAdded(k) => self.identities.ssh_key_added(k),
            EventKind::SshKeyRemoved(k) => self.identities.ssh_key_removed(k),
        }
        if let Some(s) = event.kind.session()
            && self.host_records.insert(s.record_id.clone())
        {
            self.expiry.insert((
                at.0.saturating_add(RECORD_KEEP_MS),
                Held::Record(s.record_id.clone()),
            ));
        }
        // A request leaves the pending set with its first final event.
        let decided = match &event.kind {
            EventKind::RequestDenied(d) => Some(d.request_id),
            EventKind::RequestExpired(e) => Some(e.request_id),
            EventKind::RequestCancelled(c) => Some(c.request_id),
            EventKind::GrantIssued(g) => Some(g.request_id),
            _ => None,
        };
        if let Some(id) = decided
            && self.pending.remove(&id)
            && let Some(release) = self.loose_requests.get(&id).and_then(release_of_request)
        {
            self.expiry.insert((release, Held::Request(id)));
        }
        // Only times the daemon stamped move the clock: a host's record carries the host's
        // own time, and a host clock days ahead must not evict live grants, nor the
        // emergencies the daily limit counts.
        if !matches!(event.actor, Actor::Host(_)) {
            self.clock = self.clock.max(at.0);
        }
        if !self.keep_history {
            self.evict_before(self.clock);
        }
    }

    /// Request `id`, if held: apart, or rebuilt from the grant it is held with.
    #[must_use]
    pub fn request(&self, id: RequestId) -> Option<Cow<'_, Request>> {
        if let Some(r) = self.loose_requests.get(&id) {
            return Some(Cow::Borrowed(r));
        }
        let g = self.grants.get(self.issued_requests.get(&id)?)?;
        Some(Cow::Owned(g.request.as_deref()?.request(&g.issued)))
    }

    /// A request of [`pending`](Self::pending), by reference: those are held apart (only an
    /// issued request is held with its grant).
    #[must_use]
    pub fn pending_request(&self, id: RequestId) -> Option<&Request> {
        self.loose_requests.get(&id)
    }

    /// Number of requests held (apart, and with their grants).
    #[must_use]
    pub fn requests_held(&self) -> usize {
        self.loose_requests.len() + self.issued_requests.len()
    }

    /// Every request held, in no particular order (those held with a grant rebuilt).
    pub fn requests(&self) -> impl Iterator<Item = Cow<'_, Request>> {
        self.loose_requests.values().map(Cow::Borrowed).chain(
            self.issued_requests
                .values()
                .filter_map(|g| self.grants.get(g))
                .filter_map(|g| Some(Cow::Owned(g.request.as_deref()?.request(&g.issued)))),
        )
    }

    /// Holds request `id` with its grant when that grant was just issued for it and
    /// repeats what it asked for.
    fn fold_request(&mut self, id: RequestId) {
        if self.issued_requests.contains_key(&id) {
            return;
        }
        let Some(RequestStatus::Issued(grant)) = self.loose_requests.get(&id).map(|r| &r.status)
        else {
            return;
        };
        let grant = *grant;
        let Some(g) = self.grants.get(&grant) else {
            return;
        };
        let Some(folded) = self
            .loose_requests
            .get(&id)
            .and_then(|r| IssuedRequest::of(r, &g.issued))
        else {
            return;
        };
        self.loose_requests.remove(&id);
        if let Some(g) = self.grants.get_mut(&grant) {
            g.request = Some(Box::new(folded));
        }
        self.issued_requests.insert(id, grant);
    }

    /// Holds request `id` apart again, if it is held with a grant.
    fn unfold_request(&mut self, id: RequestId) {
        let Some(grant) = self.issued_requests.remove(&id) else {
            return;
        };
        if let Some(g) = self.grants.get_mut(&grant)
            && let Some(r) = g.request.take()
        {
            self.loose_requests.insert(id, r.request(&g.issued));
        }
    }

    /// True when the state holds exactly the log's first [`events`](Self::events) entries:
    /// no later entry was applied before an earlier one that is still on its way (appends
    /// of concurrent callers are applied in the order their callers resume).
    #[must_use]
    pub fn is_prefix(&self) -> bool {
        self.top == self.events
    }

    /// The refusals of `identity` recorded in the window holding `at` (none yet: zero).
    #[must_use]
    pub fn refusal_window(&self, identity: &str, at: Timestamp) -> RefusalWindow {
        let start = refusal_window_start(at);
        match self.refusals.get(identity) {
            Some(w) if w.start == start => *w,
            _ => RefusalWindow {
                start,
                ..RefusalWindow::default()
            },
        }
    }

    /// The window of `identity` holding `at`, started afresh when `at` is in a later window
    /// than the one kept; `None` for an earlier window (a late event changes nothing).
    fn refusal_window_mut(&mut self, identity: &str, at: Timestamp) -> Option<&mut RefusalWindow> {
        let start = refusal_window_start(at);
        if self.refusals.len() >= MAX_REFUSAL_WINDOWS && !self.refusals.contains_key(identity) {
            // Only the current window counts: drop identities whose window has ended.
            self.refusals.retain(|_, w| w.start >= start);
        }
        let w = self
            .refusals
            .entry(identity.to_owned())
            .or_insert(RefusalWindow {
                start,
                ..RefusalWindow::default()
            });
        if w.start < start {
            *w = RefusalWindow {
                start,
                ..RefusalWindow::default()
            };
        }
        (w.start == start).then_some(w)
    }

    /// The session a host record is about, created on first sight. Sessions of
    /// grants the daemon does not know are kept apart, in `orphan_sessions`.
    fn session(&mut self, r: &SessionRef, at: Timestamp) -> &mut Session {
        let key = format!("{}/{}", r.host, r.session_id);
        let sessions = match self.grants.get_mut(&r.grant_id) {
            Some(g) => &mut g.sessions,
            None => {
                if !self.orphan_sessions.contains_key(&key) {
                    let release = at.0.saturating_add(ORPHAN_KEEP_MS);
                    self.expiry.insert((release, Held::Orphan(key.clone())));
                }
                &mut self.orphan_sessions
            }
        };
        sessions.entry(key).or_insert_with(|| Session {
            host: r.host.clone(),
            principal: r.principal.clone(),
            session_id: r.session_id.clone(),
            ..Session::default()
        })
    }
}

// When the state lets go of what it holds: release times, ordered by time, and eviction
// as the log's time passes them. O(log n) per insert and per eviction; no scan.
/// How long a grant stays in memory after its certificate expired: late host records
/// (a session ended at expiry) still find it; later ones are read from the log.
pub const GRANT_KEEP_AFTER_EXPIRY_MS: u64 = 120_000;
/// How long a decided request that was not issued (denied, expired, cancelled) stays
/// in memory after its approval deadline.
pub const REQUEST_KEEP_AFTER_DEADLINE_MS: u64 = 120_000;
/// How long a session reported for a grant not in memory is kept.
pub const ORPHAN_KEEP_MS: u64 = 3_600_000;
/// How long a host record id is remembered in memory (a re-delivery after that is found
/// through the on-disk index).
pub const RECORD_KEEP_MS: u64 = 3_600_000;

/// What the state holds until a release time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Held {
    /// A grant (with its request and serial).
    Grant(GrantId),
    /// A request decided without a grant.
    Request(RequestId),
    /// A session of a grant not in memory, by `host/session id`.
    Orphan(String),
    /// A host record id (duplicate detection).
    Record(String),
}

/// When `g` may leave memory (Unix ms): after its certificate expired, and for an
/// emergency grant after it left the daily emergency count; `None` while it is an
/// emergency grant not reviewed yet (the review list shows it).
#[must_use]
pub fn release_of_grant(g: &Grant) -> Option<u64> {
    if g.issued.emergency && g.review.is_none() {
        return None;
    }
    let expired = g
        .issued
        .valid_before
        .saturating_mul(1000)
        .saturating_add(GRANT_KEEP_AFTER_EXPIRY_MS);
    let counted = if g.issued.emergency {
        let window = u64::try_from(EMERGENCY_WINDOW.as_millis()).unwrap_or(u64::MAX);
        g.issued_at.0.saturating_add(window)
    } else {
        0
    };
    Some(expired.max(counted))
}

/// When `r` may leave memory (Unix ms): a request decided without a grant, shortly after
/// its approval deadline; `None` while pending or issued (it leaves with its grant).
#[must_use]
pub fn release_of_request(r: &Request) -> Option<u64> {
    match r.status {
        RequestStatus::Pending | RequestStatus::Issued(_) => None,
        RequestStatus::Denied { .. } | RequestStatus::Expired | RequestStatus::Cancelled { .. } => {
            Some(
                r.created
                    .expires_at
                    .0
                    .max(r.created_at.0)
                    .saturating_add(REQUEST_KEEP_AFTER_DEADLINE_MS),
            )
        }
    }
}

impl State {
    /// Evicts everything held until before `t` (Unix ms).
    pub fn evict_before(&mut self, t: u64) {
        while let Some((release, _)) = self.expiry.get_min()
            && *release < t
        {
            let Some((_, held)) = self.expiry.remove_min() else {
                break;
            };
            self.evict(held);
        }
    }

    fn evict(&mut self, held: Held) {
        match held {
            Held::Grant(id) => {
                let Some(g) = self.grants.remove(&id) else {
                    return;
                };
                if self.serials.get(&g.issued.serial) == Some(&id) {
                    self.serials.remove(&g.issued.serial);
                }
                if let Some(i) = g.revoked_index {
                    self.revocations.remove(&i);
                }
                let request = g.issued.request_id;
                if self
                    .loose_requests
                    .get(&request)
                    .is_some_and(|r| r.status == RequestStatus::Issued(id))
                {
                    self.loose_requests.remove(&request);
                }
                if self.issued_requests.get(&request) == Some(&id) {
                    self.issued_requests.remove(&request);
                }
            }
            Held::Request(id) => {
                // Issued after all (a late grant): it leaves with its grant instead.
                if self
                    .loose_requests
                    .get(&id)
                    .is_some_and(|r| release_of_request(r).is_some())
                {
                    self.loose_requests.remove(&id);
                }
            }
            Held::Orphan(key) => {
                self.orphan_sessions.remove(&key);
            }
            Held::Record(id) => {
                self.host_records.remove(&id);
            }
        }
    }

    /// Moves `what` from release `before` to release `after` in the queue.
    pub(super) fn requeue(&mut self, what: Held, before: Option<u64>, after: Option<u64>) {
        if before == after {
            return;
        }
        if let Some(b) = before {
            self.expiry.remove(&(b, what.clone()));
        }
        if let Some(a) = after {
            self.expiry.insert((a, what));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::event::{LogConsistencyFailed, LogForkAcknowledged};

    fn shown(host: &str, size: u64, root: u8) -> Event {
        Event::new(
            Timestamp(1),
            Actor::Host(format!("host://{host}")),
            EventKind::LogConsistencyFailed(Box::new(LogConsistencyFailed {
                host: host.into(),
                checkpoint: String::new(),
                size,
                root: [root; 32],
                log_size: 3,
                log_root: [0; 32],
            })),
        )
    }

    #[test]
    fn a_shown_fork_halts_until_acknowledged_and_replay_agrees() {
        let ack = Event::new(
            Timestamp(2),
            Actor::LocalUid(0),
            EventKind::LogForkAcknowledged(LogForkAcknowledged {
                reason: "restored from backup".into(),
                reports: 2,
            }),
        );
        let log = [
            shown("db-7", 9, 1),
            shown("web-1", 8, 2),
            ack,
            shown("db-7", 12, 3),
        ];
        let mut st = State::default();
        for (i, e) in log.iter().enumerate().take(2) {
            st.apply(i as u64, e);
        }
        assert_eq!(st.log_forks.len(), 2);
        assert_eq!(st.log_forks[1].host, "web-1");
        st.apply(2, &log[2]);
        assert!(st.log_forks.is_empty());
        assert!(st.acknowledged_forks.contains(&(9, [1; 32])));
        assert!(st.acknowledged_forks.contains(&(8, [2; 32])));
        st.apply(3, &log[3]);
        assert_eq!(st.log_forks.len(), 1);
        assert_eq!(st.log_forks[0].index, 3);
        // A restart replays the same events into the same state.
        let mut again = State::default();
        for (i, e) in log.iter().enumerate() {
            again.apply(i as u64, e);
        }
        assert_eq!(again.log_forks, st.log_forks);
        assert_eq!(again.acknowledged_forks, st.acknowledged_forks);
    }
}
