//! Admission of unauthenticated TLS handshakes: at most `max` in flight, at most
//! `per_source` from one source. A new handshake is always admitted; when a cap is
//! reached, an older one is shed to make room:
//! - its source already has `per_source` in flight: that source's oldest;
//! - `max` are in flight: the oldest of the busiest source (the one with the most in
//!   flight; on a tie, the one whose oldest is oldest).
//!
//! Why shed instead of refusing: with a refusing cap, whoever fills it first (idle
//! sockets cost an attacker nothing) keeps everyone else out until the handshake
//! timeout, and can fill it again at once. Shedding the busiest source means a source
//! with a single handshake in flight, which is what a real client has, loses it only
//! when no source has more than one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Where a connection comes from, for the per-source cap: an IPv4 address, or the
/// /64 prefix of an IPv6 address (what one host or one customer usually gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6(p) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*p) << 64)),
        }
    }
}

/// Why a handshake was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// Its source had `per_source` handshakes in flight and opened another one.
    SourceFull,
    /// `max` handshakes were in flight; it was the oldest of the busiest source.
    AllFull,
    /// The daemon needed the descriptor or connection slot it held.
    Reclaimed,
}

impl fmt::Display for ShedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShedReason::SourceFull => "its source is at max_handshakes_per_source",
            ShedReason::AllFull => "max_handshakes are in flight; oldest of the busiest source",
            ShedReason::Reclaimed => "the daemon needed its descriptor",
        })
    }
}

/// A handshake that was shed (its task learns it through its [`Ticket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Shed {
    /// Where the shed handshake came from.
    pub source: Source,
    /// Why it was chosen.
    pub reason: ShedReason,
}

/// The handshakes in flight. Shared by the accept loop (which admits and sheds) and
/// the handshake tasks (whose tickets leave it when they end).
#[derive(Debug)]
pub struct Handshakes {
    max: usize,
    per_source: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Admission order (ids only grow) → source, and the sender whose drop tells the
    /// handshake's task that it was shed.
    live: BTreeMap<u64, (Source, oneshot::Sender<()>)>,
    /// Each source's handshakes, oldest first.
    by_source: HashMap<Source, VecDeque<u64>>,
}

impl Inner {
    /// Removes `id`; dropping its sender tells its task. False if it had already left.
    fn remove(&mut self, id: u64) -> bool {
        let Some((source, _shed)) = self.live.remove(&id) else {
            return false;
        };
        if let Some(q) = self.by_source.get_mut(&source) {
            if let Ok(i) = q.binary_search(&id) {
                q.remove(i);
            }
            if q.is_empty() {
                self.by_source.remove(&source);
            }
        }
        true
    }

    fn oldest_of(&self, source: Source) -> Option<u64> {
        self.by_source.get(&source).and_then(|q| q.front().copied())
    }

    /// The busiest source (most in flight; on a tie, the oldest handshake) and its
    /// oldest handshake. Linear in the number of sources, and only run when full.
    fn busiest(&self) -> Option<(Source, u64)> {
        self.by_source
            .iter()
            .filter_map(|(s, q)| q.front().map(|&oldest| (q.len(), oldest, *s)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, oldest, s)| (s, oldest))
    }
}

impl Handshakes {
    /// At most `max` handshakes in flight, at most `per_source` from one source
    /// (both at least 1).
    pub fn new(max: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            per_source: per_source.max(1),
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-updated in a way that matters
        // more than refusing every connection would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a handshake from `source`, shedding an older one first if a cap is
    /// reached. The ticket must live as long as the handshake.
    pub fn admit(self: &Arc<Self>, source: Source) -> (Ticket, Option<Shed>) {
        let mut inner = self.lock();
        let shed = if inner.by_source.get(&source).map_or(0, VecDeque::len) >= self.per_source {
            inner.oldest_of(source).map(|id| {
                inner.remove(id);
                Shed {
                    source,
                    reason: ShedReason::SourceFull,
                }
            })
        } else if inner.live.len() >= self.max {
            inner.busiest().map(|(victim, id)| {
                inner.remove(id);
                Shed {
                    source: victim,
                    reason: ShedReason::AllFull,
                }
            })
        } else {
            None
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let (tx, rx) = oneshot::channel();
        inner.live.insert(id, (source, tx));
        inner.by_source.entry(source).or_default().push_back(id);
        let ticket = Ticket {
            set: Arc::clone(self),
            id,
            shed: rx,
        };
        (ticket, shed)
    }

    /// Sheds the oldest handshake of the busiest source, if any is in flight: the
    /// daemon needs its descriptor or connection slot.
    pub fn reclaim(&self) -> Option<Shed> {
        let mut inner = self.lock();
        let (source, id) = inner.busiest()?;
        inner.remove(id);
        Some(Shed {
            source,
            reason: ShedReason::Reclaimed,
        })
    }

    /// Handshakes in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().live.len()
    }

    /// Handshakes in flight from `source` now.
    pub fn in_flight_from(&self, source: Source) -> usize {
        self.lock().by_source.get(&source).map_or(0, VecDeque::len)
    }
}

/// One admitted handshake's place. Dropping it (the handshake ended, or its task was
/// dropped) frees the place.
#[derive(Debug)]
pub struct Ticket {
    set: Arc<Handshakes>,
    id: u64,
    shed: oneshot::Receiver<()>,
}

impl Ticket {
    /// Resolves when this handshake has been shed.
    pub async fn shed(&mut self) {
        // Nothing is ever sent: the sender is dropped when the entry is removed.
        let _ = (&mut self.shed).await;
    }

    /// True if this handshake has been shed.
    pub fn is_shed(&mut self) -> bool {
        !matches!(
            self.shed.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        )
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.set.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> Source {
        Source::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64_prefixes() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        assert_eq!(Source::from(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            Source::from(mapped),
            Source::V4(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(Source::from(mapped).to_string(), "192.0.2.7");
    }

    #[test]
    fn a_source_at_its_cap_sheds_its_own_oldest_handshake() {
        let h = Handshakes::new(10, 2);
        let (mut first, none) = h.admit(v4(1));
        assert!(none.is_none());
        let (mut second, _) = h.admit(v4(1));
        let (mut other, _) = h.admit(v4(2));
        let (mut third, shed) = h.admit(v4(1));
        assert_eq!(
            shed,
            Some(Shed {
                source: v4(1),
                reason: ShedReason::SourceFull
            })
        );
        assert!(first.is_shed());
        assert!(!second.is_shed() && !third.is_shed() && !other.is_shed());
        assert_eq!(h.in_flight_from(v4(1)), 2);
        assert_eq!(h.in_flight(), 3);
    }

    #[test]
    fn when_all_are_full_the_busiest_source_loses_its_oldest_and_a_lone_client_is_spared() {
        let h = Handshakes::new(4, 4);
        let (mut client, _) = h.admit(v4(9)); // the oldest of all, alone from its source
        let (mut a1, _) = h.admit(v4(1));
        let (mut a2, _) = h.admit(v4(1));
        let (mut b1, _) = h.admit(v4(2));
        let (mut newcomer, shed) = h.admit(v4(3));
        assert_eq!(
            shed,
            Some(Shed {
                source: v4(1),
                reason: ShedReason::AllFull
            })
        );
        assert!(a1.is_shed());
        assert!(!client.is_shed() && !a2.is_shed() && !b1.is_shed() && !newcomer.is_shed());
        // Now every source has one: the oldest of all goes.
        let (_late, shed) = h.admit(v4(4));
        assert_eq!(shed.map(|s| s.source), Some(v4(9)));
        assert!(client.is_shed());
        assert_eq!(h.in_flight(), 4);
    }

    #[test]
    fn a_finished_handshake_frees_its_place_and_shedding_twice_is_harmless() {
        let h = Handshakes::new(2, 2);
        let (t1, _) = h.admit(v4(1));
        let (t2, _) = h.admit(v4(2));
        drop(t1);
        assert_eq!(h.in_flight(), 1);
        let (_t3, shed) = h.admit(v4(3));
        assert!(shed.is_none(), "a place was free");
        let (_t4, shed) = h.admit(v4(4));
        assert_eq!(shed.map(|s| s.source), Some(v4(2)));
        drop(t2); // already shed: its drop removes nothing else
        assert_eq!(h.in_flight(), 2);
    }

    #[test]
    fn reclaim_sheds_the_busiest_sources_oldest_and_nothing_when_idle() {
        let h = Handshakes::new(8, 8);
        assert_eq!(h.reclaim(), None);
        let (_c, _) = h.admit(v4(9));
        let (mut a1, _) = h.admit(v4(1));
        let (_a2, _) = h.admit(v4(1));
        assert_eq!(
            h.reclaim(),
            Some(Shed {
                source: v4(1),
                reason: ShedReason::Reclaimed
            })
        );
        assert!(a1.is_shed());
    }

    #[tokio::test]
    async fn a_shed_tickets_future_resolves() {
        let h = Handshakes::new(1, 1);
        let (mut t, _) = h.admit(v4(1));
        let (_t2, _) = h.admit(v4(2));
        tokio::time::timeout(std::time::Duration::from_secs(5), t.shed())
            .await
            .expect("the shed handshake is told");
    }

    #[test]
    fn caps_hold_under_any_arrival_order() {
        // A deterministic pseudo-random mix of arrivals and finishes from 1 to 12 sources.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..50 {
            let (max, per) = (1 + round % 9, 1 + round % 4);
            let h = Handshakes::new(max, per);
            let mut held: Vec<(Source, Ticket)> = Vec::new();
            let sources = 1 + (next() % 12) as u8;
            for _ in 0..400 {
                if next() % 4 == 0 && !held.is_empty() {
                    let i = (next() as usize) % held.len();
                    held.swap_remove(i);
                    continue;
                }
                let s = v4((next() % u64::from(sources)) as u8);
                let before_mine = h.in_flight_from(s);
                let busiest_before = (0..sources)
                    .map(|i| h.in_flight_from(v4(i)))
                    .max()
                    .unwrap_or(0);
                let (t, shed) = h.admit(s);
                held.push((s, t));
                held.retain_mut(|(_, t)| !t.is_shed());
                assert!(h.in_flight() <= max, "more than {max} in flight");
                for i in 0..sources {
                    assert!(h.in_flight_from(v4(i)) <= per);
                }
                if let Some(Shed { source, reason }) = shed {
                    match reason {
                        ShedReason::SourceFull => {
                            assert_eq!(source, s);
                            assert_eq!(before_mine, per);
                        }
                        ShedReason::AllFull => assert!(before_mine < per),
                        ShedReason::Reclaimed => unreachable!("admit never reclaims"),
                    }
                    if reason == ShedReason::AllFull {
                        // The victim's source was one of the busiest.
                        let victim_had = h.in_flight_from(source) + 1 - usize::from(source == s);
                        assert_eq!(victim_had, busiest_before);
                    }
                }
                assert_eq!(held.len(), h.in_flight());
            }
        }
    }
}
