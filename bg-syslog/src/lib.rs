//! A syslog sender that never blocks its caller.
//!
//! Events are single RFC 3164 lines with a `key=value` body, sent to a Unix
//! datagram socket (`/dev/log` by default) with facility `authpriv`:
//!
//! ```text
//! <86>Nov 29 12:08:47 pam_breakglass[4242]: event=session_open user=alice grant=g-00000000000000ff
//! ```
//!
//! Why a thread: the `syslog` crate writes synchronously, blocks when the
//! receiver stops reading (the kernel queues only `net.unix.max_dgram_qlen`
//! datagrams) and never reconnects after the receiver restarts. Here the
//! caller only formats the line and hands it to a bounded queue with
//! `try_send`; a dedicated sender thread owns the socket, writes with a
//! timeout and reconnects after any error. Per wake-up it takes every line
//! queued (up to 64) and formats their header once: still one RFC 3164
//! datagram per line. When the queue is full or the
//! socket is gone the line is dropped and counted ([`Syslog::dropped`]).
//!
//! Short-lived processes (a PAM module call, a helper about to exit) call
//! [`Syslog::flush`] with a deadline before they return.
//!
//! ```no_run
//! use std::time::Duration;
//! use bg_syslog::{Severity, Syslog};
//!
//! let log = Syslog::new("breakglass-ca", bg_syslog::DEFAULT_SOCKET);
//! log.send(Severity::Info, &[("event", "cert_issued"), ("user", "alice")]);
//! log.flush(Duration::from_millis(200));
//! ```
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use breakglass_proto::text;
use syslog::{Facility, Formatter3164, LogFormat, Logger, LoggerBackend};

/// The system's local syslog socket (also the PAM module's default `syslog=`).
pub const DEFAULT_SOCKET: &str = breakglass_proto::pam_options::DEFAULT_SYSLOG;
/// Longest value written for one field; longer values are cut and marked.
pub const MAX_VALUE_LEN: usize = 512;
/// Default number of lines the queue holds before new lines are dropped.
pub const DEFAULT_CAPACITY: usize = 256;
/// Most lines the sender thread takes from the queue per wake-up.
const MAX_BATCH: usize = 64;
/// Default time one datagram write may block the sender thread.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Severity of one event (RFC 5424 section 6.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// System is unusable.
    Emergency,
    /// Action must be taken immediately.
    Alert,
    /// Critical condition.
    Critical,
    /// Error condition.
    Error,
    /// Warning condition.
    Warning,
    /// Normal but significant condition.
    Notice,
    /// Informational message.
    Info,
    /// Debug-level message.
    Debug,
}

/// Tuning knobs of a [`Syslog`]; [`Options::default`] suits most callers.
#[derive(Clone, Debug)]
pub struct Options {
    /// Lines the queue holds before new ones are dropped.
    pub capacity: usize,
    /// Longest time a single datagram write may block the sender thread.
    pub write_timeout: Duration,
    /// Syslog facility (default `authpriv`).
    pub facility: Facility,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            facility: Facility::LOG_AUTHPRIV,
        }
    }
}

enum Msg {
    Line(Severity, String),
    Flush(SyncSender<()>),
}

/// Handle to a syslog sender thread. Cheap to use from any thread; never blocks in
/// [`Syslog::send`].
#[derive(Debug)]
pub struct Syslog {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
}

impl Syslog {
    /// Starts a sender for `ident` (the program name shown in the log) writing to the
    /// Unix datagram socket at `path`, with default [`Options`].
    #[must_use]
    pub fn new(ident: &str, path: impl Into<PathBuf>) -> Self {
        Self::with_options(ident, path, Options::default())
    }

    /// Starts a sender with explicit [`Options`].
    #[must_use]
    pub fn with_options(ident: &str, path: impl Into<PathBuf>, options: Options) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::sync_channel(options.capacity.max(1));
        let sender = Sender {
            path: path.into(),
            formatter: Formatter3164 {
                facility: options.facility,
                hostname: None,
                process: sanitize_ident(ident),
                pid: std::process::id(),
            },
            write_timeout: options.write_timeout,
            logger: None,
            dropped: Arc::clone(&dropped),
        };
        let spawned = thread::Builder::new()
            .name("bg-syslog".into())
            .spawn(move || sender.run(rx));
        // Without a thread every line counts as dropped; logging must never fail the caller.
        let tx = spawned.is_ok().then_some(tx);
        Self { tx, dropped }
    }

    /// Queues one event line built from `fields` (`key=value`, in order). Returns false
    /// (and counts a drop) when the line could not be queued.
    pub fn send(&self, severity: Severity, fields: &[(&str, &str)]) -> bool {
        let line = format_fields(fields);
        let queued = match &self.tx {
            Some(tx) => match tx.try_send(Msg::Line(severity, line)) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Waits at most `timeout` until every line queued before this call has been written
    /// (or dropped). Returns true if the queue drained in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = &self.tx else { return false };
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = m;
                    thread::sleep(Duration::from_millis(2));
                }
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Number of lines dropped so far (queue full, socket missing, write failed).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has drained the queue. Never join:
        // a stuck socket must not hold up the caller.
        self.tx = None;
    }
}

struct Sender {
    path: PathBuf,
    formatter: Formatter3164,
    write_timeout: Duration,
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    dropped: Arc<AtomicU64>,
}

impl Sender {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
            // Everything queued meanwhile goes out in the same wake-up, under one header.
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            self.send_batch(&mut batch);
        }
    }

    /// Writes the lines of `batch` (emptied), one datagram each, in order; acknowledges
    /// flushes in their place.
    fn send_batch(&mut self, batch: &mut Vec<Msg>) {
        // The RFC 3164 header (`<priority>timestamp ident[pid]: `) of each severity,
        // formatted once per batch: the timestamp has a resolution of one second.
        let mut headers: Vec<(Severity, Vec<u8>)> = Vec::new();
        let mut datagram = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                Msg::Line(severity, line) => {
                    datagram.clear();
                    match headers.iter().find(|(s, _)| *s == severity) {
                        Some((_, h)) => datagram.extend_from_slice(h),
                        None => {
                            let mut h = Vec::new();
                            // Writing into a Vec cannot fail.
                            let _ = self.formatter.format(&mut h, level(severity), "");
                            datagram.extend_from_slice(&h);
                            headers.push((severity, h));
                        }
                    }
                    datagram.extend_from_slice(line.as_bytes());
                    // One retry on a fresh connection covers a restarted receiver.
                    let ok = self.write(&datagram) || self.write(&datagram);
                    if !ok {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Msg::Flush(ack) => {
                    let _ = ack.try_send(());
                }
            }
        }
    }

    /// Sends one formatted line as one datagram (or one null-terminated stream message).
    fn write(&mut self, datagram: &[u8]) -> bool {
        if self.logger.is_none() {
            self.logger = self.connect().ok();
        }
        let Some(logger) = self.logger.as_mut() else {
            return false;
        };
        if logger.backend.write(datagram).is_err() {
            self.logger = None;
            return false;
        }
        true
    }

    fn connect(&self) -> io::Result<Logger<LoggerBackend, Formatter3164>> {
        let logger = syslog::unix_custom(self.formatter.clone(), &self.path)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let timeout = Some(self.write_timeout.max(Duration::from_millis(1)));
        match &logger.backend {
            LoggerBackend::Unix(sock) => sock.set_write_timeout(timeout)?,
            LoggerBackend::UnixStream(w) => w.get_ref().set_write_timeout(timeout)?,
            LoggerBackend::Udp(sock, _) => sock.set_write_timeout(timeout)?,
            LoggerBackend::Tcp(w) => w.get_ref().set_write_timeout(timeout)?,
        }
        Ok(logger)
    }
}

/// The syslog crate's severity of `s` (for callers that format lines with that crate).
#[must_use]
pub fn level(s: Severity) -> syslog::Severity {
    match s {
        Severity::Emergency => syslog::Severity::LOG_EMERG,
        Severity::Alert => syslog::Severity::LOG_ALERT,
        Severity::Critical => syslog::Severity::LOG_CRIT,
        Severity::Error => syslog::Severity::LOG_ERR,
        Severity::Warning => syslog::Severity::LOG_WARNING,
        Severity::Notice => syslog::Severity::LOG_NOTICE,
        Severity::Info => syslog::Severity::LOG_INFO,
        Severity::Debug => syslog::Severity::LOG_DEBUG,
    }
}

/// Program names may not contain spaces, `[` or `:` in RFC 3164.
fn sanitize_ident(ident: &str) -> String {
    let s: String = ident
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '[' | ']' | ':'))
        .take(48)
        .collect();
    if s.is_empty() { "breakglass".into() } else { s }
}

/// Formats `fields` as one `key=value` line: keys are lower-cased and keep `[a-z0-9_]`
/// (others become `_`); values are written bare when they hold only safe characters,
/// otherwise double-quoted with `\"` and the escapes of
/// [`breakglass_proto::text::escape`] (`\\`, `\n`, `\x1b`, `\u{202e}`: no control
/// character, bidi control or line separator reaches the log raw); values longer than
/// [`MAX_VALUE_LEN`] bytes are cut and end in `...`.
#[must_use]
pub fn format_fields(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if key.is_empty() {
            out.push('_');
        }
        out.extend(key.chars().map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        }));
        out.push('=');
        let (value, cut) = truncate(value, MAX_VALUE_LEN);
        if !cut && text::is_bare_value(value) {
            out.push_str(value);
            continue;
        }
        let quoted = text::quote(value);
        // Cut values end in `...` inside the quotes.
        out.push_str(&quoted[..quoted.len() - 1]);
        if cut {
            out.push_str("...");
        }
        out.push('"');
    }
    out
}

fn truncate(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn recv(sock: &UnixDatagram) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let n = sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let line = format_fields(&[
            ("event", "session_open"),
            ("reason", "host scope \"db-*\" does not match web-1"),
            ("empty", ""),
            ("Bad Key", "x\ny\u{1}"),
        ]);
        assert_eq!(
            line,
            "event=session_open reason=\"host scope \\\"db-*\\\" does not match web-1\" empty=\"\" bad_key=\"x\\ny\\x01\""
        );
    }

    #[test]
    fn hazards_never_reach_the_line_raw() {
        for nasty in text::NASTY_SAMPLES {
            let line = format_fields(&[("event", "x"), ("detail", nasty)]);
            assert!(!line.chars().any(text::is_hazard), "{line:?}");
            assert_eq!(line, format!("event=x detail={}", text::quote(nasty)));
        }
        assert_eq!(
            format_fields(&[("r", "a\u{202e}b\u{2028}c\u{9b}")]),
            "r=\"a\\u{202e}b\\u{2028}c\\u{9b}\""
        );
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(400);
        let line = format_fields(&[("v", &long)]);
        assert!(line.len() < MAX_VALUE_LEN + 20, "{}", line.len());
        assert!(line.ends_with("...\""));
    }

    #[test]
    fn lines_reach_the_socket_as_rfc3164_authpriv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::new("pam_breakglass", &path);
        assert!(log.send(
            Severity::Info,
            &[("event", "session_open"), ("user", "alice")]
        ));
        assert!(log.flush(Duration::from_secs(2)));
        let line = recv(&sock).unwrap();
        // authpriv (10) * 8 + info (6) = 86
        assert!(line.starts_with("<86>"), "{line}");
        assert!(
            line.ends_with(&format!(
                "pam_breakglass[{}]: event=session_open user=alice",
                std::process::id()
            )),
            "{line}"
        );
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn missing_socket_counts_drops_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let log = Syslog::new("t", dir.path().join("nothing-here"));
        let start = Instant::now();
        for _ in 0..10 {
            log.send(Severity::Error, &[("event", "x")]);
        }
        assert!(log.flush(Duration::from_secs(2)));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(log.dropped(), 10);
    }

    #[test]
    fn receiver_not_reading_does_not_block_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let _sock = UnixDatagram::bind(&path).unwrap(); // never read
        let log = Syslog::with_options(
            "t",
            &path,
            Options {
                capacity: 8,
                write_timeout: Duration::from_millis(20),
                ..Options::default()
            },
        );
        let start = Instant::now();
        for i in 0..200 {
            log.send(Severity::Info, &[("n", &i.to_string())]);
        }
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "send blocked for {:?}",
            start.elapsed()
        );
        log.flush(Duration::from_secs(5));
        assert!(log.dropped() > 100, "dropped {}", log.dropped());
    }

    /// Every datagram waiting on `sock` (none after a short quiet spell).
    fn drain(sock: &UnixDatagram) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }

    #[test]
    fn a_burst_within_the_queue_bound_arrives_whole_one_datagram_per_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // A reader thread slowed down by a busy machine must not turn into drops.
        let log = Syslog::with_options(
            "t",
            &path,
            Options {
                write_timeout: Duration::from_secs(10),
                ..Options::default()
            },
        );
        // Fewer than the queue holds, more than one batch, two severities mixed.
        let n = DEFAULT_CAPACITY - 1;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < n {
                match recv(&sock) {
                    Some(l) => got.push(l),
                    None => break,
                }
            }
            got
        });
        for i in 0..n {
            let severity = if i % 3 == 0 {
                Severity::Warning
            } else {
                Severity::Info
            };
            assert!(log.send(severity, &[("n", &i.to_string())]));
        }
        assert!(log.flush(Duration::from_secs(5)));
        let got = reader.join().unwrap();
        assert_eq!(got.len(), n);
        let pid = std::process::id();
        for (i, line) in got.iter().enumerate() {
            // authpriv (10) * 8 + warning (4) or info (6)
            let pri = if i % 3 == 0 { "<84>" } else { "<86>" };
            assert!(line.starts_with(pri), "{line}");
            assert!(line.ends_with(&format!(" t[{pid}]: n={i}")), "{line}");
        }
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn lines_beyond_the_queue_bound_are_dropped_and_counted_never_lost_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap(); // read only at the end
        let log = Syslog::with_options(
            "t",
            &path,
            Options {
                capacity: 8,
                write_timeout: Duration::from_millis(5),
                ..Options::default()
            },
        );
        let sent = 5000;
        let mut refused = 0;
        for i in 0..sent {
            if !log.send(Severity::Info, &[("n", &i.to_string())]) {
                refused += 1;
            }
        }
        log.flush(Duration::from_secs(10));
        let got = drain(&sock);
        // Each line either reached the socket or was counted as dropped.
        assert_eq!(got.len() as u64 + log.dropped(), sent);
        assert!(
            refused > 0 && log.dropped() >= refused,
            "{refused} {}",
            log.dropped()
        );
        // What arrived is in order.
        let numbers: Vec<u64> = got
            .iter()
            .map(|l| l.rsplit("n=").next().unwrap().parse().unwrap())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    }

    #[test]
    fn reconnects_after_receiver_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::new("t", &path);
        log.send(Severity::Info, &[("n", "1")]);
        assert!(log.flush(Duration::from_secs(2)));
        assert!(recv(&sock).unwrap().ends_with("n=1"));
        drop(sock);
        std::fs::remove_file(&path).unwrap();
        let sock = UnixDatagram::bind(&path).unwrap();
        log.send(Severity::Info, &[("n", "2")]);
        assert!(log.flush(Duration::from_secs(2)));
        assert!(recv(&sock).unwrap().ends_with("n=2"));
        assert_eq!(log.dropped(), 0);
    }
}
