//! Bounded polls: every wait in the tests ends, and says so when it gave up.

use std::thread;
use std::time::{Duration, Instant};

/// Calls `f` every `every` until it gives `Some`, for at most `timeout` (at least once).
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// Calls `f` every `every` until it is true, for at most `timeout`; false when it never was.
pub fn until(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    poll(timeout, every, || f().then_some(())).is_some()
}

/// [`poll`] for async tests: sleeps on the runtime's timer between calls.
pub async fn poll_async<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// [`until`] for async tests: sleeps on the runtime's timer between calls.
pub async fn until_async(timeout: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    poll_async(timeout, every, || f().then_some(()))
        .await
        .is_some()
}
