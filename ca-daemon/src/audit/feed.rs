//! The batches the writer just committed, kept in memory for the log's followers (the
//! syslog follower, the history index): they read what is new from here instead of each
//! reading every event back from the segments (a pread, a CRC and a hash into the signed
//! root per entry) and decoding it again. A batch is decoded once, by the first follower
//! that reads it, for all of them.
//!
//! Only durable batches come here (the writer pushes a batch after its commit is durable
//! and readers can see it), in index order. The feed holds the last [`FEED_ENTRIES`]
//! entries or so: a follower that fell further behind (or one that starts from an older
//! point, after a restart) reads the rest from the segments, as before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use breakglass_proto::audit::Event;

/// About how many entries the feed keeps (whole batches: the newest batch always stays),
/// with their decoded events about 6 MB at most. The followers look every 50 ms: at 30,000
/// events a second that is 1,500 entries.
pub(crate) const FEED_ENTRIES: u64 = 4096;

/// One committed batch: its first entry's index and its leaves as written.
pub(crate) struct FedBatch {
    pub first: u64,
    leaves: Vec<Vec<u8>>,
    events: OnceLock<Result<Vec<Event>, String>>,
}

impl FedBatch {
    /// Index after the batch's last entry.
    pub fn end(&self) -> u64 {
        self.first + self.leaves.len() as u64
    }

    /// The batch's events, decoded on the first call.
    pub fn events(&self) -> Result<&[Event], String> {
        self.events
            .get_or_init(|| {
                (self.first..)
                    .zip(&self.leaves)
                    .map(|(i, l)| Event::decode(l).map_err(|e| format!("event {i}: {e}")))
                    .collect()
            })
            .as_deref()
            .map_err(Clone::clone)
    }
}

/// The newest committed batches, oldest first, contiguous.
#[derive(Default)]
pub(crate) struct Feed {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    batches: VecDeque<Arc<FedBatch>>,
    entries: u64,
}

impl Feed {
    /// Adds the batch the writer committed at `first` (durable and visible to readers).
    pub fn push(&self, first: u64, leaves: Vec<Vec<u8>>) {
        let batch = Arc::new(FedBatch {
            first,
            leaves,
            events: OnceLock::new(),
        });
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Not contiguous (cannot happen: the writer pushes in order): start afresh, so that
        // what is held is always one stretch of the log.
        if held.batches.back().is_some_and(|b| b.end() != first) {
            held.batches.clear();
            held.entries = 0;
        }
        held.entries += batch.leaves.len() as u64;
        held.batches.push_back(batch);
        while held.entries > FEED_ENTRIES && held.batches.len() > 1 {
            if let Some(old) = held.batches.pop_front() {
                held.entries -= old.leaves.len() as u64;
            }
        }
    }

    /// The held batches that hold entries from `from` on, before `end`: empty when entry
    /// `from` is not held (too old, or not pushed yet).
    pub fn covering(&self, from: u64, end: u64) -> Vec<Arc<FedBatch>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let start = held.batches.partition_point(|b| b.end() <= from);
        match held.batches.get(start) {
            Some(b) if b.first <= from => held
                .batches
                .range(start..)
                .take_while(|b| b.first < end)
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The first entry held, if any.
    pub fn first_held(&self) -> Option<u64> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.batches.front().map(|b| b.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::event::Heartbeat;
    use breakglass_proto::audit::{Actor, EventKind, Timestamp};

    fn leaf(t: u64) -> Vec<u8> {
        Event::new(
            Timestamp(t),
            Actor::Daemon,
            EventKind::Heartbeat(Heartbeat {}),
        )
        .encode()
        .unwrap()
    }

    #[test]
    fn covering_returns_the_batches_from_an_entry_on_and_nothing_it_lacks() {
        let f = Feed::default();
        f.push(10, vec![leaf(10), leaf(11)]);
        f.push(12, vec![leaf(12)]);
        f.push(13, vec![leaf(13), leaf(14), leaf(15)]);
        let firsts = |v: Vec<Arc<FedBatch>>| v.iter().map(|b| b.first).collect::<Vec<_>>();
        assert_eq!(firsts(f.covering(11, 16)), [10, 12, 13]);
        assert_eq!(firsts(f.covering(12, 13)), [12]);
        assert_eq!(firsts(f.covering(14, 15)), [13]);
        assert!(f.covering(9, 12).is_empty(), "entry 9 is not held");
        assert!(f.covering(16, 17).is_empty(), "entry 16 is not pushed yet");
        let b = &f.covering(13, 16)[0];
        let times: Vec<u64> = b.events().unwrap().iter().map(|e| e.time.0).collect();
        assert_eq!(times, [13, 14, 15]);
    }

    #[test]
    fn the_feed_keeps_about_its_bound_and_always_the_newest_batch() {
        let f = Feed::default();
        let mut first = 0;
        for _ in 0..(FEED_ENTRIES / 100 + 10) {
            f.push(first, (0..100).map(|_| leaf(1)).collect());
            first += 100;
        }
        let held = first - f.first_held().unwrap();
        assert!(held <= FEED_ENTRIES && held > FEED_ENTRIES - 100, "{held}");
        f.push(first, (0..(2 * FEED_ENTRIES)).map(|_| leaf(1)).collect());
        assert_eq!(
            f.first_held(),
            Some(first),
            "one oversized batch stays alone"
        );
        // A gap (never pushed so): what is held restarts there.
        f.push(first + 3 * FEED_ENTRIES, vec![leaf(1)]);
        assert_eq!(f.first_held(), Some(first + 3 * FEED_ENTRIES));
    }
}
