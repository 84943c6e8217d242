//! What the module and the guard say in syslog about a session: the fields of a session
//! record, shared so that `session_open`, `session_close`, `session_warn` and
//! `session_forced_end` lines describe a session the same way; and how the module and the
//! guard send a line ([`LineSender`]: at once from the calling thread, [`send_now`], with
//! a sender thread only when that fails).
#![forbid(unsafe_code)]

use std::cell::OnceCell;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bg_syslog::{Severity, Syslog};
use syslog::{Facility, Formatter3164, LogFormat};

use crate::verify::fmt_time;
use breakglass_proto::spool::SessionRecord;

/// Fields describing a record, for syslog.
pub fn record_fields(r: &SessionRecord) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    let mut opt = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            f.push((k, v));
        }
    };
    opt("grant", r.grant.clone());
    opt("serial", r.serial.map(|s| s.to_string()));
    opt("key_id", r.key_id.clone());
    opt("requester", r.requester.clone());
    opt("tier", r.tier.clone());
    f.push(("user", r.user.clone()));
    f.push(("host", r.host.clone()));
    f.push(("rhost", r.rhost.clone().unwrap_or_default()));
    f.push(("tty", r.tty.clone().unwrap_or_default()));
    f.push(("pid", r.pid.to_string()));
    if let Some(e) = r.expires {
        f.push(("expires", fmt_time(e)));
    }
    if let Some(d) = r.duration {
        f.push(("duration", d.to_string()));
    }
    f.push(("record", r.record_id.clone()));
    if let Some(sha) = &r.recording_sha256 {
        f.push(("recording_sha256", sha.clone()));
        f.push((
            "recording_bytes",
            r.recording_bytes.unwrap_or_default().to_string(),
        ));
        f.push(("detail", r.detail.clone().unwrap_or_default()));
    }
    f
}

/// Owned field values as the `(&str, &str)` pairs [`bg_syslog::Syslog::send`] takes.
#[must_use]
pub fn borrowed<'a>(fields: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Syslog lines of one program (the module's hook, a guard): each is sent at once from the
/// calling thread as one datagram ([`send_now`]); from the first line that cannot go that
/// way on (a stream socket, a full queue, a receiver restarting), this line and every later
/// one go through a [`Syslog`] sender thread, started then, which reconnects and retries
/// (and keeps the lines in order). A login that logs normally starts no thread.
#[derive(Debug)]
pub struct LineSender {
    ident: &'static str,
    socket: PathBuf,
    thread: OnceCell<Syslog>,
}

impl LineSender {
    /// Lines of `ident` to the Unix socket `socket`.
    #[must_use]
    pub fn new(ident: &'static str, socket: &Path) -> Self {
        Self {
            ident,
            socket: socket.to_owned(),
            thread: OnceCell::new(),
        }
    }

    /// Sends one line; never blocks for long and never fails the caller (a line that
    /// cannot be queued either is counted by the sender thread as dropped).
    pub fn send(&self, severity: Severity, fields: &[(&str, &str)]) {
        if self.thread.get().is_none()
            && send_now(self.ident, &self.socket, severity, fields).is_ok()
        {
            return;
        }
        self.thread
            .get_or_init(|| Syslog::new(self.ident, &self.socket))
            .send(severity, fields);
    }

    /// Waits at most `timeout` for lines handed to the sender thread to leave (at once
    /// when there is none). Returns true if nothing is left queued.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.thread.get().is_none_or(|t| t.flush(timeout))
    }
}

/// Sends one line (the fields as [`bg_syslog::format_fields`] writes them, RFC 3164,
/// facility `authpriv`, like [`bg_syslog::Syslog`]) from the calling thread, as one
/// datagram that never waits: a socket that is missing, not a datagram socket, or whose
/// receiver's queue is full is an error at once. The module sends one line per hook
/// and returns; a sender thread to start and to drain would cost more than the line.
pub fn send_now(
    ident: &str,
    socket: &Path,
    severity: Severity,
    fields: &[(&str, &str)],
) -> io::Result<()> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_AUTHPRIV,
        hostname: None,
        process: ident.to_owned(),
        pid: std::process::id(),
    };
    let line = bg_syslog::format_fields(fields);
    // The formatter unwraps its timestamp's formatting; however unlikely a panic there,
    // it must not reach the PAM hook that sends a line after admitting a session.
    let datagram = std::panic::catch_unwind(|| {
        let mut datagram = Vec::with_capacity(512);
        formatter
            .format(&mut datagram, bg_syslog::level(severity), line)
            .map(|()| datagram)
    })
    .map_err(|_| io::Error::other("the syslog formatter panicked"))?
    .map_err(|e| io::Error::other(e.to_string()))?;
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    sock.connect(socket)?;
    sock.send(&datagram)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
        let path = dir.join("log");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sock, path)
    }

    #[test]
    fn a_line_is_the_same_as_bg_syslog_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, path) = receiver(dir.path());
        let fields = [("event", "session_open"), ("detail", "two words")];
        send_now("pam_breakglass", &path, Severity::Notice, &fields).unwrap();
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).unwrap();
        let direct = String::from_utf8_lossy(&buf[..n]).into_owned();
        let log = bg_syslog::Syslog::new("pam_breakglass", &path);
        log.send(Severity::Notice, &fields);
        assert!(log.flush(Duration::from_secs(5)));
        let n = sock.recv(&mut buf).unwrap();
        let threaded = String::from_utf8_lossy(&buf[..n]).into_owned();
        // authpriv.notice = 10 * 8 + 5; the timestamps may differ by a second.
        assert!(direct.starts_with("<85>"), "{direct}");
        let tail = |l: &str| l.split_once(" pam_breakglass[").map(|(_, t)| t.to_owned());
        assert_eq!(tail(&direct), tail(&threaded));
        assert!(
            direct.ends_with("]: event=session_open detail=\"two words\""),
            "{direct}"
        );
    }

    #[test]
    fn a_missing_socket_or_a_full_queue_is_an_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert!(send_now("x", &gone, Severity::Info, &[("a", "b")]).is_err());
        // A receiver that never reads: its queue fills, and the send fails instead of
        // blocking (the test would hang otherwise).
        let (_sock, path) = receiver(dir.path());
        let sent = (0..100_000)
            .take_while(|_| send_now("x", &path, Severity::Info, &[("a", "b")]).is_ok())
            .count();
        assert!(sent < 100_000, "the queue never filled");
    }
}
