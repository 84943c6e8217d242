//! What the log engine measures of itself, for the metrics listener ([`crate::metrics`]):
//! how long commits take, how many events each carries, when the last checkpoint was
//! written; and the cheap probe of whether the log's directory takes writes now.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::histogram::Histogram;

/// The probe file written (and removed) in the log's directory by [`probe_writable`].
pub const PROBE_FILE: &str = ".writable-probe";

/// Bytes the probe writes: a block, so that a full file system refuses it.
const PROBE_BYTES: usize = 4096;

/// Commit measurements, updated by the writer thread after each successful commit.
#[derive(Debug)]
pub struct CommitStats {
    /// Seconds one commit takes: the batch's write, its fdatasync and its signed checkpoint.
    pub commit_seconds: Histogram,
    /// Events per committed batch (group commit size).
    pub batch_events: Histogram,
    /// Unix time in milliseconds of the newest durable checkpoint (at open: the newest
    /// segment's modification time; 0 for an empty log).
    last_checkpoint_ms: AtomicU64,
}

impl CommitStats {
    /// Empty measurements; `last_checkpoint` is when the newest checkpoint on disk was written.
    pub(super) fn new(last_checkpoint: Option<SystemTime>) -> Self {
        Self {
            // 100 µs .. ~3.3 s: an fdatasync on a fast disk up to a struggling one.
            commit_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16),
            ),
            // 1 .. 4096 events.
            batch_events: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 13),
            ),
            last_checkpoint_ms: AtomicU64::new(last_checkpoint.map_or(0, unix_ms)),
        }
    }

    /// Records one successful commit of `events` that took `took`, finished now.
    pub(super) fn committed(&self, events: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.batch_events.observe(events as f64);
        self.last_checkpoint_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// How long ago the newest durable checkpoint was written (`None`: the log is empty
    /// and nothing was committed since open).
    #[must_use]
    pub fn last_checkpoint_age(&self, now: SystemTime) -> Option<Duration> {
        match self.last_checkpoint_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                now.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether the file system of the log's directory `dir` takes a write now: a block
/// written to [`PROBE_FILE`] with `fdatasync`, then removed. The error says what failed.
pub fn probe_writable(dir: &Path) -> Result<(), String> {
    // One probe at a time: two at once would remove each other's file.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = dir.join(PROBE_FILE);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .and_then(|mut f| {
            f.write_all(&[0u8; PROBE_BYTES])?;
            f.sync_data()
        });
    let removed = std::fs::remove_file(&path);
    written.map_err(|e| format!("{}: {e}", path.display()))?;
    removed.map_err(|e| format!("{}: cannot remove the probe file: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_writes_and_removes_its_file_and_fails_in_a_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        probe_writable(dir.path()).unwrap();
        assert!(!dir.path().join(PROBE_FILE).exists());
        let err = probe_writable(&dir.path().join("gone")).unwrap_err();
        assert!(err.contains("gone/.writable-probe"), "{err}");
    }

    #[test]
    fn the_checkpoint_age_counts_from_the_last_commit() {
        let s = CommitStats::new(None);
        assert_eq!(s.last_checkpoint_age(SystemTime::now()), None);
        s.committed(3, Duration::from_millis(2));
        let later = SystemTime::now() + Duration::from_secs(10);
        let age = s.last_checkpoint_age(later).unwrap();
        assert!(
            age >= Duration::from_secs(9) && age <= Duration::from_secs(11),
            "{age:?}"
        );
    }
}
