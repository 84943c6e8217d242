//! Revocation: revoke grants (each revocation a
//! `GrantRevoked` event, durable before the answer), publish the signed KRL, and
//! stream revocations to hosts so that open sessions end at once.
//!
//! A revocation is done for hosts that read only the KRL once a KRL listing it is
//! published, which needs its `KrlPublished` event in the log. When that cannot be
//! recorded (disk full), the answer says so (`krl_published` false, and why), hosts are
//! served the last published KRL with what it lacks, and a background task publishes
//! again with backoff until it succeeds ([`Revocations::start`]).
//!
//! Who may revoke: members of the configured admin groups (any grant) and the
//! requester of a grant (their own). Reading the KRL and watching revocations is
//! for hosts and admins only (decided by the access layer, [`crate::access`]): the
//! notices say who revoked whose grant and why.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::audit::event::GrantRevoked;
use breakglass_proto::audit::{Event, EventKind, Timestamp};
use breakglass_proto::krl::SIGNATURE_NAMESPACE;
use breakglass_proto::profile::GrantId;
use breakglass_proto::text;
use breakglass_proto::v1::revoke_request::Target;
use breakglass_proto::v1::{
    GetRevocationListResponse, RevocationNotice, RevokeRequest, RevokeResponse, RevokedGrant,
};
use ssh_key::HashAlg;
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::Status;

use crate::audit::LeafIndex;
use crate::error::{Error, NothingToRevoke};
use crate::krl::{Publisher, Served};
use crate::metrics::StreamGuard;
use crate::policy::Caller;
use crate::refusal::RefusalKind;
use crate::service::Service;
use crate::state::State;

/// Longest revocation reason.
const MAX_REASON_BYTES: usize = 1024;
/// How often a watch stream carries a heartbeat when nothing is revoked.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// First wait before a KRL that could not be published is tried again.
const REPUBLISH_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between attempts (the wait doubles from [`REPUBLISH_FIRST`]).
const REPUBLISH_MAX: Duration = Duration::from_secs(10);

/// Revocation state shared by both listeners.
#[derive(Debug)]
pub struct Revocations {
    svc: Arc<Service>,
    admin_groups: Vec<String>,
    krl: Publisher,
    /// The leaf index of the newest revocation: the watch streams read what is new from
    /// the state when it moves ([`Revocations::watch`]).
    latest: watch::Sender<LeafIndex>,
    /// One revocation call at a time: no grant is revoked twice by racing calls.
    revoking: tokio::sync::Mutex<()>,
    /// Wakes the task that publishes the KRL again after a failure.
    republish: tokio::sync::Notify,
    stop: watch::Sender<bool>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Revocations {
    /// Revocation handling over `svc`; `admin_groups` may revoke any grant.
    pub fn new(svc: Arc<Service>, admin_groups: Vec<String>) -> Arc<Self> {
        let (latest, _) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        Arc::new(Self {
            svc,
            admin_groups,
            krl: Publisher::default(),
            latest,
            revoking: tokio::sync::Mutex::new(()),
            republish: tokio::sync::Notify::new(),
            stop,
        })
    }

    /// Starts the task that keeps the KRL published: after a failed publish it tries
    /// again (1 s, doubling to 10 s) until a KRL listing every revocation is recorded, so
    /// no revocation stays unpublished once the audit log can be written again. At start
    /// it publishes a revocation the log holds after its last `KrlPublished`. Runs until
    /// [`shutdown`](Self::shutdown).
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.keep_published().await });
    }

    async fn keep_published(&self) {
        let mut stop = self.stop.subscribe();
        let mut due = crate::krl::revocation_after_last_krl(&self.svc.state());
        loop {
            if *stop.borrow() {
                return;
            }
            if !due {
                tokio::select! {
                    _ = self.republish.notified() => {}
                    _ = stop.changed() => return,
                }
                if self.krl.failure().is_none() {
                    // Published meanwhile (by a revocation or a fetch).
                    continue;
                }
            }
            // At start the first attempt is at once; after a failure, a little later.
            let mut wait = if due { Duration::ZERO } else { REPUBLISH_FIRST };
            due = false;
            let mut attempts = 0u32;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                attempts = attempts.saturating_add(1);
                match self.krl.current(&self.svc).await {
                    Ok(p) => {
                        tracing::info!(
                            version = p.version,
                            attempts,
                            "KRL published by the retry task: hosts that read only the KRL get \
                             every revocation now"
                        );
                        break;
                    }
                    Err(e) => {
                        wait = (wait * 2).clamp(REPUBLISH_FIRST, REPUBLISH_MAX);
                        // 1st, 2nd, 4th, 8th, ... attempt: the log is not flooded.
                        if attempts.is_power_of_two() {
                            tracing::error!(
                                attempts,
                                retry_in = ?wait,
                                error = %e,
                                "KRL still not published: hosts that read only the KRL do not \
                                 refuse the revoked certificates yet; free space on the audit \
                                 log's disk"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Ends every watch stream (at shutdown, so that draining does not wait for them).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    fn is_admin(&self, who: &Caller) -> bool {
        who.groups.iter().any(|g| self.admin_groups.contains(g))
    }

    /// Revokes the grants `req` selects, as `who`.
    pub async fn revoke(&self, who: &Caller, req: RevokeRequest) -> Result<RevokeResponse, Error> {
        let reason = req.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid_field(
                "reason",
                "say why the grant is revoked (e.g. an incident reference)",
            ));
        }
        text::check_free_text(&reason, MAX_REASON_BYTES)
            .map_err(|e| Error::invalid_field("reason", e))?;
        let target = req.target.ok_or(Error::NoRevocationTarget)?;
        // `--public-key` revokes the key itself too: its SHA256 fingerprint rides on the
        // GrantRevoked events and stays in every KRL from now on.
        let revoked_key = match &target {
            Target::PublicKey(line) => Some(
                crate::request::parse_user_key(line)?
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            ),
            _ => None,
        };
        let _one_at_a_time = self.revoking.lock().await;
        let now = unix_now();
        let (matched, key_known) = {
            let st = self.svc.state();
            let known = revoked_key
                .as_ref()
                .is_some_and(|k| st.revoked_keys.contains_key(k));
            (select(&st, &target, now), known)
        };
        // What names a grant that left memory (expired) is looked up in the log.
        let matched = self.svc.select_evicted(matched)?;
        let admin = self.is_admin(who);
        let mut revoked = Vec::new();
        let mut already = Vec::new();
        let mut todo = Vec::new();
        let mut refused = None;
        {
            let st = self.svc.state();
            for id in &matched {
                let Some(g) = st.grants.get(id) else { continue };
                if !admin && g.issued.requester != who.identity {
                    refused = Some((
                        *id,
                        Error::NotGrantOwner {
                            grant: *id,
                            owner: g.issued.requester.clone(),
                            admin_groups: self.admin_groups.clone(),
                        },
                    ));
                    break;
                }
                if g.revoked.is_some() {
                    already.push(id.to_string());
                } else {
                    todo.push((*id, g.issued.clone()));
                }
            }
        }
        if let Some((id, e)) = refused {
            // Recorded without holding the revocation lock of everyone else.
            drop(_one_at_a_time);
            let kind = self.svc.refusals.kind_for(who, RefusalKind::NotRequester);
            let target = id.to_string();
            return Err(self
                .svc
                .refuse_action(who, "revoke", &target, kind, e)
                .await);
        }
        let actor = who.actor();
        if todo.is_empty()
            && !key_known
            && let Some(k) = &revoked_key
            && let Some(id) = matched.first()
        {
            // Every grant of the key is revoked already, but the key itself is not:
            // a repeated GrantRevoked of one of them records the key (the grant's own
            // revocation stays the first one).
            let serial = self
                .svc
                .state()
                .grants
                .get(id)
                .map_or(0, |g| g.issued.serial);
            self.svc
                .record(Event::new(
                    Timestamp::from_system_time(SystemTime::now()),
                    actor.clone(),
                    EventKind::GrantRevoked(GrantRevoked {
                        grant_id: *id,
                        serial,
                        reason: reason.clone(),
                        revoked_key: Some(k.clone()),
                    }),
                ))
                .await?;
            tracing::info!(key = %k, grant = %id, revoked_by = %actor, reason = %reason, "public key revoked");
        }
        for (id, issued) in todo {
            let index = self
                .svc
                .record(Event::new(
                    Timestamp::from_system_time(SystemTime::now()),
                    actor.clone(),
                    EventKind::GrantRevoked(GrantRevoked {
                        grant_id: id,
                        serial: issued.serial,
                        reason: reason.clone(),
                        revoked_key: revoked_key.clone(),
                    }),
                ))
                .await?;
            self.latest.send_replace(index);
            self.svc.notify_revoked(id, &actor, &reason);
            tracing::info!(
                grant = %id,
                serial = issued.serial,
                requester = %issued.requester,
                revoked_by = %actor,
                reason = %reason,
                revoked_key = revoked_key.as_deref().unwrap_or("-"),
                audit_index = index,
                "grant revoked"
            );
            revoked.push(RevokedGrant {
                grant_id: id.to_string(),
                serial: issued.serial,
                key_id: issued.key_id.clone(),
                requester: issued.requester.clone(),
                valid_before: i64::try_from(issued.valid_before).unwrap_or(i64::MAX),
                audit_index: index,
            });
        }
        // The revocations are durable and on the watch streams already; hosts that read
        // only the KRL see them once a KRL listing them is published: say whether it is.
        let (served, unpublished) = match self.krl.serve(&self.svc, true).await {
            Ok(Served { krl, behind: None }) => (krl.version, None),
            Ok(Served {
                krl,
                behind: Some(b),
            }) => (krl.version, Some(b.reason)),
            Err(e) => (0, Some(e.to_string())),
        };
        if self.krl.failure().is_some() {
            self.republish.notify_one();
        }
        if let Some(reason) = &unpublished {
            tracing::error!(
                reason = %reason,
                served_krl_version = served,
                "KRL not published after a revocation: hosts that read only the KRL do not \
                 refuse the revoked certificates yet (the revocation stream has them); \
                 retrying until it is published"
            );
        }
        Ok(RevokeResponse {
            revoked,
            already_revoked: already,
            krl_version: if unpublished.is_none() { served } else { 0 },
            krl_published: unpublished.is_none(),
            krl_not_published_reason: unpublished.unwrap_or_default(),
            served_krl_version: served,
        })
    }

    /// The current signed KRL or, when none can be published, the last published one
    /// and what it lacks.
    pub async fn revocation_list(&self) -> Result<GetRevocationListResponse, Error> {
        let served = self.krl.serve(&self.svc, false).await;
        if self.krl.failure().is_some() {
            self.republish.notify_one();
        }
        let Served { krl: p, behind } = served?;
        let behind = behind.unwrap_or(crate::krl::Behind {
            revocations: 0,
            newest: 0,
            reason: String::new(),
        });
        Ok(GetRevocationListResponse {
            krl: p.bytes.clone(),
            signature: p.signature.clone(),
            version: p.version,
            generated_at: i64::try_from(p.generated).unwrap_or(i64::MAX),
            namespace: SIGNATURE_NAMESPACE.to_owned(),
            revoked_serials: p.revoked_serials,
            unpublished_revocations: behind.revocations,
            newest_unpublished: behind.newest,
            unpublished_reason: behind.reason,
        })
    }

    /// Streams revocations after `from` (backlog first), new ones as they are
    /// recorded, and heartbeats to `identity`, until the client goes away, the daemon
    /// stops, or the audit log disables `identity` (the stream then ends with its refusal).
    ///
    /// The stream holds no buffer of its own and no task: it is polled by its
    /// connection, and whenever [`Self::latest`] moves it reads what is new from the
    /// state (the revocations by sequence number). So a host that reads slowly never
    /// loses a revocation and never makes the daemon queue notices for it: it gets them
    /// from the state when it reads again.
    pub fn watch(self: &Arc<Self>, identity: &str, from: u64) -> Notices {
        let mut latest = self.latest.subscribe();
        // The first poll reads the backlog.
        latest.mark_changed();
        let follower = Follower {
            revs: Arc::clone(self),
            identity: identity.to_owned(),
            last: from,
            pending: VecDeque::new(),
            latest,
            stop: self.stop.subscribe(),
            beat: tokio::time::interval(HEARTBEAT),
            _connected: self.svc.metrics().stream_connected(),
        };
        Notices {
            next: Some(Box::pin(follower.next())),
        }
    }
}

/// One watch stream's place: the last sequence number sent and what is still to send.
#[derive(Debug)]
struct Follower {
    revs: Arc<Revocations>,
    /// Who is watching: the stream ends when the audit log disables them.
    identity: String,
    last: LeafIndex,
    pending: VecDeque<RevocationNotice>,
    latest: watch::Receiver<LeafIndex>,
    stop: watch::Receiver<bool>,
    beat: tokio::time::Interval,
    _connected: StreamGuard,
}

impl Follower {
    /// The next notice (None: the daemon is stopping; an error: the watcher was disabled),
    /// and the follower for the one after.
    async fn next(mut self) -> (Self, Option<Result<RevocationNotice, Status>>) {
        loop {
            if *self.stop.borrow() {
                return (self, None);
            }
            if let Some(n) = self.pending.pop_front() {
                return (self, Some(Ok(n)));
            }
            // Each wake-up (a revocation, or the heartbeat at the latest) also checks that
            // the watcher is not disabled, under the state lock it takes anyway: a disabled
            // identity's stream ends within one heartbeat.
            tokio::select! {
                biased;
                _ = self.stop.changed() => return (self, None),
                r = self.latest.changed() => match r {
                    Ok(()) => {
                        if let Some(refused) = self.catch_up() {
                            return (self, Some(Err(refused)));
                        }
                    }
                    Err(_) => return (self, None),
                },
                _ = self.beat.tick() => {
                    let beat = {
                        let st = self.revs.svc.state();
                        match self.refusal(&st) {
                            Some(refused) => Err(refused),
                            None => Ok(RevocationNotice { heartbeat: true, krl_version: st.krl_version, ..Default::default() }),
                        }
                    };
                    return (self, Some(beat));
                }
            }
        }
    }

    /// The refusal of the watcher's calls, when the state says it is disabled.
    fn refusal(&self, st: &State) -> Option<Status> {
        st.identities
            .disabled
            .get(&self.identity)
            .map(|d| crate::error::Error::from(d.refusal(&self.identity)).into())
    }

    /// Queues the notices of the revocations after `last` that the state holds; the
    /// watcher's refusal instead when it is disabled.
    fn catch_up(&mut self) -> Option<Status> {
        let revs = Arc::clone(&self.revs);
        let st = revs.svc.state();
        if let Some(refused) = self.refusal(&st) {
            return Some(refused);
        }
        let now = unix_now();
        for (i, g) in st.revocations.range(self.last.saturating_add(1)..) {
            self.last = *i;
            if let Some(n) = notice(&st, *i, *g, now) {
                self.pending.push_back(n);
            }
        }
        None
    }
}

/// The wait for a follower's next notice: the follower back, with the notice (None: the
/// stream ends).
type NextNotice =
    Pin<Box<dyn Future<Output = (Follower, Option<Result<RevocationNotice, Status>>)> + Send>>;

/// The stream of one `WatchRevocations` call ([`Revocations::watch`]).
pub struct Notices {
    /// The next notice being waited for; None once the stream has ended.
    next: Option<NextNotice>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("ended", &self.next.is_none())
            .finish()
    }
}

impl Stream for Notices {
    type Item = Result<RevocationNotice, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(next) = self.next.as_mut() else {
            return Poll::Ready(None);
        };
        let (follower, notice) = std::task::ready!(next.as_mut().poll(cx));
        match notice {
            Some(Ok(n)) => {
                self.next = Some(Box::pin(follower.next()));
                Poll::Ready(Some(Ok(n)))
            }
            Some(Err(refused)) => {
                self.next = None;
                Poll::Ready(Some(Err(refused)))
            }
            None => {
                self.next = None;
                Poll::Ready(None)
            }
        }
    }
}

/// The grants a selector names. A grant id or serial must name a grant that is still
/// valid; a requester selects all of their live grants (at least one); a public key
/// selects all of its live grants or, when none is live, its newest grant (so that the
/// key itself can still be revoked).
fn select(st: &State, target: &Target, now: u64) -> Result<Vec<GrantId>, Error> {
    let live = |id: &GrantId| {
        st.grants
            .get(id)
            .is_some_and(|g| g.issued.valid_before > now)
    };
    let one = |id: GrantId, what: String| {
        let g = st
            .grants
            .get(&id)
            .ok_or_else(|| Error::NothingToRevoke(NothingToRevoke::NoGrant(what.clone())))?;
        if g.issued.valid_before <= now {
            return Err(Error::GrantExpired { grant: id, what });
        }
        Ok(vec![id])
    };
    let found: Vec<GrantId> = match target {
        Target::GrantId(s) => {
            let id: GrantId = s.trim().parse().map_err(|e| Error::BadGrantId {
                given: s.clone(),
                why: format!("{e}"),
            })?;
            return one(id, id.to_string());
        }
        Target::Serial(n) => {
            let id = *st
                .serials
                .get(n)
                .ok_or(Error::NothingToRevoke(NothingToRevoke::NoSerial(*n)))?;
            return one(id, format!("serial {n}"));
        }
        Target::Requester(r) => {
            let r = r.trim();
            text::check_identity(r).map_err(|e| Error::invalid_field("requester", e))?;
            st.grants
                .iter()
                .filter(|(id, g)| g.issued.requester == r && live(id))
                .map(|(id, _)| *id)
                .collect()
        }
        Target::PublicKey(line) => {
            let key = crate::request::parse_user_key(line)?;
            let fp = key.fingerprint(HashAlg::Sha256).to_string();
            let of_key = || {
                st.grants
                    .iter()
                    .filter(|(_, g)| g.issued.key_fingerprint == fp)
            };
            let live_ones: Vec<GrantId> = of_key()
                .filter(|(id, _)| live(id))
                .map(|(id, _)| *id)
                .collect();
            if live_ones.is_empty() {
                let newest = of_key()
                    .max_by_key(|(_, g)| g.index)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| {
                        Error::NothingToRevoke(NothingToRevoke::NeverIssued(fp.clone()))
                    })?;
                return Ok(vec![newest]);
            }
            live_ones
        }
    };
    if found.is_empty() {
        return Err(Error::NothingToRevoke(NothingToRevoke::NoLiveGrant));
    }
    let unique: BTreeSet<GrantId> = found.into_iter().collect();
    Ok(unique.into_iter().collect())
}

/// The notice for the revocation at leaf `index` of `grant`, if its certificate is
/// still valid at `now` (watchers only care about sessions that could still run).
fn notice(st: &State, index: LeafIndex, grant: GrantId, now: u64) -> Option<RevocationNotice> {
    let g = st.grants.get(&grant)?;
    if g.issued.valid_before <= now {
        return None;
    }
    let (by, reason, at) = g.revoked.as_deref()?;
    Some(RevocationNotice {
        version: index,
        heartbeat: false,
        grant_id: grant.to_string(),
        serial: g.issued.serial,
        key_id: g.issued.key_id.clone(),
        requester: g.issued.requester.clone(),
        revoked_by: by.to_string(),
        reason: reason.clone(),
        revoked_at: i64::try_from(at.unix_seconds()).unwrap_or(i64::MAX),
        valid_before: i64::try_from(g.issued.valid_before).unwrap_or(i64::MAX),
        krl_version: st.krl_version,
    })
}
