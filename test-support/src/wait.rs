//! Bounded polls: every wait in the tests ends, and says so when it gave up.

use std::ops::ControlFlow::{self, Break, Continue};
use std::thread;
use std::time::{Duration, Instant};

/// One look: `Break(Some(v))` when `f` gave `v`, `Break(None)` once past `deadline`.
fn look<T>(deadline: Instant, f: &mut impl FnMut() -> Option<T>) -> ControlFlow<Option<T>> {
    if let Some(v) = f() {
        return Break(Some(v));
    }
    if Instant::now() >= deadline {
        return Break(None);
    }
    Continue(())
}

/// Calls `f` every `every` until it gives `Some`, for at most `timeout` (at least once).
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Break(v) = look(deadline, &mut f) {
            return v;
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
        if let Break(v) = look(deadline, &mut f) {
            return v;
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
