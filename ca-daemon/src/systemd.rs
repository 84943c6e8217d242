//! What the daemon tells systemd (`Type=notify`): ready, reloading, stopping, and the
//! watchdog keep-alive. Nothing is sent without `NOTIFY_SOCKET` (the daemon run by hand, in
//! tests, or under another supervisor), and a failed send is logged, never fatal.
//!
//! The watchdog is fed from the audit writer thread ([`crate::audit`]): a keep-alive goes
//! through the writer's queue and is answered there, so a writer stuck in a `write` or an
//! `fdatasync` stops the pings and systemd restarts the daemon after `WatchdogSec=`. No
//! other timer pings.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states` to systemd, if it listens; logs a failure.
fn send(what: &str, states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot tell systemd {what}");
    }
}

/// `READY=1`: the log is replayed and the listeners are bound (and, after a reload, the new
/// configuration is in force or was refused).
pub fn ready(status: &str) {
    send("ready", &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (which `Type=notify-reload` on systemd >= 253
/// requires to match the reload to its request).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => tracing::warn!(error = %e, "cannot read the monotonic clock for systemd"),
    }
    states.push(NotifyState::Status("reloading the configuration"));
    send("reloading", &states);
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send(
        "stopping",
        &[NotifyState::Stopping, NotifyState::Status("shutting down")],
    );
}

/// `WATCHDOG=1`: the audit writer is alive and not stuck. Called by the writer thread only.
pub fn watchdog() {
    send("the watchdog keep-alive", &[NotifyState::Watchdog]);
}

/// How often the watchdog wants a keep-alive (half of `WATCHDOG_USEC`, as systemd advises),
/// or `None` when the service has no watchdog (or it is meant for another process).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
