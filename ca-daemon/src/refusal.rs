//! Refusals are on the record: a call refused by policy is an audit event of its own
//! (`request_refused` or `action_refused`, with a stable [`RefusalKind`], the rule and the
//! reason), hence also an authpriv syslog line, and counted per identity.
//!
//! # Bounded
//! Refusals must not become a way to fill the disk: per identity and UTC hour, at most
//! `[refusals] per_identity_per_hour` refusals are recorded one by one. The next one is not,
//! and instead one `refusals_limited` event records that the limit was hit; every further
//! refusal of that identity in the hour is refused all the same but not recorded. The
//! counts are part of the [`State`](crate::state::State), so a restart rebuilds them from
//! the log; an in-flight reservation per identity makes "at most the limit, and exactly one
//! limit event" hold for concurrent refusals too.
//!
//! # Alerted
//! The refusal that brings an identity to `[refusals] alert_threshold` within the hour sends
//! a [`RefusalAlert`] to `[refusals] webhooks` (once per identity and hour).
//!
//! # When the log cannot be written
//! A refusal is never turned into success: the caller gets the same refusal, word for word,
//! whether or not it could be recorded (an unauthorized caller learns nothing about the
//! state of the log). What could not be recorded is logged at error level by the daemon.
//!
//! The recording itself is [`crate::service::refusals`]; the rules and their bookkeeping
//! are here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use breakglass_proto::audit::event::{ActionRefused, RequestRefused};
use breakglass_proto::audit::{EventKind, Timestamp};

use crate::config::{Identity, RefusalSettings};
use crate::error::Error;
use crate::policy::Caller;
use crate::request::AccessRequest;
use crate::state::State;

pub use breakglass_proto::audit::event::RefusalKind;

/// One refusal by policy, as it is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A certificate request was refused.
    Request(Box<RequestRefused>),
    /// A call on a request or grant was refused.
    Action(ActionRefused),
}

impl Refusal {
    /// A refused call on a request or grant: `action` is its stable name (`approve`,
    /// `revoke`, …), `target` what it named (`r-…`, `g-…`, or empty).
    #[must_use]
    pub fn action(
        who: &Caller,
        action: &str,
        target: &str,
        kind: RefusalKind,
        reason: &Error,
    ) -> Self {
        Refusal::Action(ActionRefused {
            kind,
            identity: who.identity.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            reason: reason.to_string(),
        })
    }

    /// A refused certificate request; `rule` and `tier` name the rule that refused or came
    /// closest, when there is one.
    #[must_use]
    pub fn request(
        who: &Caller,
        access: &AccessRequest,
        emergency: bool,
        kind: RefusalKind,
        (rule, tier): (Option<&str>, Option<&str>),
        reason: &Error,
    ) -> Self {
        Refusal::Request(Box::new(RequestRefused {
            kind,
            identity: who.identity.clone(),
            principals: access.principals.clone(),
            hosts: access.hosts.clone(),
            command: access.force_command.clone(),
            ttl_seconds: access.ttl.as_secs(),
            emergency,
            drill: access.drill,
            request_reason: access.reason.clone(),
            rule: rule.unwrap_or_default().to_owned(),
            tier: tier.unwrap_or_default().to_owned(),
            reason: reason.to_string(),
            request_id: None,
        }))
    }

    /// The kind of refusal.
    #[must_use]
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Request(r) => r.kind,
            Refusal::Action(a) => a.kind,
        }
    }

    /// The identity refused.
    #[must_use]
    pub fn identity(&self) -> &str {
        match self {
            Refusal::Request(r) => &r.identity,
            Refusal::Action(a) => &a.identity,
        }
    }

    /// `request`, or the refused call's name.
    #[must_use]
    pub fn action_name(&self) -> &str {
        match self {
            Refusal::Request(_) => "request",
            Refusal::Action(a) => &a.action,
        }
    }

    /// The refusal as the caller was told it.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Request(r) => &r.reason,
            Refusal::Action(a) => &a.reason,
        }
    }

    /// The refusal's audit event.
    pub(crate) fn into_event_kind(self) -> EventKind {
        match self {
            Refusal::Request(r) => EventKind::RequestRefused(r),
            Refusal::Action(a) => EventKind::ActionRefused(a),
        }
    }
}

/// What happens to one refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Admission {
    /// Record it; `alert` when it is the one that reaches the alert threshold.
    Record { alert: bool },
    /// The limit is reached: record `refusals_limited` instead of it.
    Limit,
    /// The limit was reached and recorded: refuse without recording.
    Suppress,
}

/// Reservations for refusals being recorded, so that concurrent ones of one identity
/// never record more than the limit, nor two limit events.
#[derive(Clone, Copy, Debug, Default)]
struct InFlight {
    start: Timestamp,
    records: u32,
    limit_event: bool,
}

/// Refusal settings and the bookkeeping of refusals being recorded.
#[derive(Debug)]
pub struct Refusals {
    /// Swapped whole by a reload ([`Refusals::replace`]).
    settings: ArcSwap<RefusalSettings>,
    known: ArcSwap<HashSet<String>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
}

impl Refusals {
    /// Refusal handling with these settings; `identities` are the known ones.
    #[must_use]
    pub fn new(settings: RefusalSettings, identities: &[Identity]) -> Self {
        Self {
            settings: ArcSwap::from_pointee(settings),
            known: ArcSwap::from_pointee(identities.iter().map(|i| i.id.clone()).collect()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> Arc<RefusalSettings> {
        self.settings.load_full()
    }

    /// Puts the settings and identities of a reloaded configuration in force; refusals
    /// being recorded keep their reservations.
    pub(crate) fn replace(&self, settings: RefusalSettings, identities: &[Identity]) {
        self.known
            .store(Arc::new(identities.iter().map(|i| i.id.clone()).collect()));
        self.settings.store(Arc::new(settings));
    }

    /// True when the configuration lists `identity`.
    #[must_use]
    pub fn is_known(&self, identity: &str) -> bool {
        self.known.load().contains(identity)
    }

    /// `kind`, or [`RefusalKind::UnknownIdentity`] when the caller is not a configured
    /// identity (then that is what stands out).
    #[must_use]
    pub fn kind_for(&self, who: &Caller, kind: RefusalKind) -> RefusalKind {
        if self.is_known(&who.identity) {
            kind
        } else {
            RefusalKind::UnknownIdentity
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides what to do with a refusal of `identity` at `at`, and reserves it. Call with
    /// the state locked (lock order: state, then reservations).
    pub(crate) fn admit(&self, st: &State, identity: &str, at: Timestamp) -> Admission {
        let w = st.refusal_window(identity, at);
        let mut all = self.lock();
        let f = all.entry(identity.to_owned()).or_default();
        if f.start != w.start {
            *f = InFlight {
                start: w.start,
                ..InFlight::default()
            };
        }
        let taken = w.recorded.saturating_add(f.records);
        let settings = self.settings.load();
        if taken < settings.per_identity_per_hour {
            f.records += 1;
            let threshold = settings.alert_threshold;
            Admission::Record {
                alert: threshold > 0 && taken + 1 == threshold,
            }
        } else if !w.limited && !f.limit_event {
            f.limit_event = true;
            Admission::Limit
        } else {
            if f.records == 0 && !f.limit_event {
                all.remove(identity);
            }
            Admission::Suppress
        }
    }

    /// Ends the reservation `admission` made (after its event is applied, or failed).
    pub(crate) fn release(&self, identity: &str, start: Timestamp, admission: Admission) {
        let mut all = self.lock();
        let Some(f) = all.get_mut(identity) else {
            return;
        };
        if f.start == start {
            match admission {
                Admission::Record { .. } => f.records = f.records.saturating_sub(1),
                Admission::Limit => f.limit_event = false,
                Admission::Suppress => {}
            }
        }
        if f.records == 0 && !f.limit_event {
            all.remove(identity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::event::RefusalsLimited;
    use breakglass_proto::audit::{Actor, Event};

    use crate::state::{REFUSAL_WINDOW_MS, refusal_window_start};

    fn refusals(limit: u32, threshold: u32) -> Refusals {
        Refusals::new(
            RefusalSettings {
                per_identity_per_hour: limit,
                alert_threshold: threshold,
                webhooks: vec![],
            },
            &[Identity {
                id: "alice@example.com".into(),
                groups: vec![],
                owner: None,
                ssh_keys: vec![],
            }],
        )
    }

    fn refused(identity: &str, at: Timestamp) -> Event {
        Event::new(
            at,
            Actor::User(identity.into()),
            EventKind::ActionRefused(ActionRefused {
                kind: RefusalKind::NotApprover,
                identity: identity.into(),
                action: "approve".into(),
                target: "r-0000000000000001".into(),
                reason: "no".into(),
            }),
        )
    }

    /// Admits and, for what is to be recorded, applies the event as `record_refusal` does.
    fn step(r: &Refusals, st: &mut State, identity: &str, at: Timestamp) -> Admission {
        let a = r.admit(st, identity, at);
        let start = refusal_window_start(at);
        match a {
            Admission::Record { .. } => st.apply(st.events, &refused(identity, at)),
            Admission::Limit => st.apply(
                st.events,
                &Event::new(
                    at,
                    Actor::Daemon,
                    EventKind::RefusalsLimited(RefusalsLimited {
                        identity: identity.into(),
                        window_start: start,
                        window_end: Timestamp(start.0 + REFUSAL_WINDOW_MS),
                        limit: 3,
                    }),
                ),
            ),
            Admission::Suppress => {}
        }
        r.release(identity, start, a);
        a
    }

    #[test]
    fn the_limit_records_n_then_one_limit_event_then_nothing_until_the_next_hour() {
        let r = refusals(3, 2);
        let mut st = State::default();
        let hour = Timestamp(REFUSAL_WINDOW_MS * 500_000);
        let got: Vec<Admission> = (0..7)
            .map(|i| step(&r, &mut st, "m@x", Timestamp(hour.0 + i * 1000)))
            .collect();
        assert_eq!(
            got,
            [
                Admission::Record { alert: false },
                Admission::Record { alert: true },
                Admission::Record { alert: false },
                Admission::Limit,
                Admission::Suppress,
                Admission::Suppress,
                Admission::Suppress,
            ]
        );
        // Another identity has its own allowance.
        assert_eq!(
            step(&r, &mut st, "n@x", hour),
            Admission::Record { alert: false }
        );
        // The next hour starts afresh.
        let next = Timestamp(hour.0 + REFUSAL_WINDOW_MS);
        assert_eq!(
            step(&r, &mut st, "m@x", next),
            Admission::Record { alert: false }
        );
        assert!(r.lock().is_empty(), "no reservation is left behind");
    }

    #[test]
    fn concurrent_refusals_never_exceed_the_limit_nor_make_two_limit_events() {
        let r = refusals(2, 0);
        let st = State::default();
        let at = Timestamp(REFUSAL_WINDOW_MS * 7);
        // Five refusals admitted before any is recorded (all in flight at once).
        let got: Vec<Admission> = (0..5).map(|_| r.admit(&st, "m@x", at)).collect();
        assert_eq!(
            got,
            [
                Admission::Record { alert: false },
                Admission::Record { alert: false },
                Admission::Limit,
                Admission::Suppress,
                Admission::Suppress,
            ]
        );
        // A record that failed frees its slot for the next refusal.
        r.release("m@x", refusal_window_start(at), got[0]);
        assert_eq!(r.admit(&st, "m@x", at), Admission::Record { alert: false });
    }

    #[test]
    fn counts_are_rebuilt_from_the_log() {
        let r = refusals(3, 0);
        let mut st = State::default();
        let at = Timestamp(REFUSAL_WINDOW_MS * 9 + 5);
        for _ in 0..3 {
            assert!(matches!(
                step(&r, &mut st, "m@x", at),
                Admission::Record { .. }
            ));
        }
        assert_eq!(step(&r, &mut st, "m@x", at), Admission::Limit);
        // A restart replays the same events into a fresh state.
        let events: Vec<Event> = (0..3)
            .map(|_| refused("m@x", at))
            .chain([Event::new(
                at,
                Actor::Daemon,
                EventKind::RefusalsLimited(RefusalsLimited {
                    identity: "m@x".into(),
                    window_start: refusal_window_start(at),
                    window_end: Timestamp(refusal_window_start(at).0 + REFUSAL_WINDOW_MS),
                    limit: 3,
                }),
            )])
            .collect();
        let mut replayed = State::default();
        for (i, e) in events.iter().enumerate() {
            replayed.apply(i as u64, e);
        }
        assert_eq!(
            replayed.refusal_window("m@x", at),
            st.refusal_window("m@x", at)
        );
        assert_eq!(
            refusals(3, 0).admit(&replayed, "m@x", at),
            Admission::Suppress
        );
    }

    #[test]
    fn an_unknown_caller_is_named_so() {
        let r = refusals(3, 0);
        let caller = |id: &str| Caller {
            identity: id.into(),
            groups: vec![],
            owner: None,
            transport: "mtls",
            uid: None,
            ssh_key_login: false,
        };
        assert_eq!(
            r.kind_for(&caller("alice@example.com"), RefusalKind::NotApprover),
            RefusalKind::NotApprover
        );
        assert_eq!(
            r.kind_for(&caller("mallory@example.com"), RefusalKind::NotApprover),
            RefusalKind::UnknownIdentity
        );
    }
}
