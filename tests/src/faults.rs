//! Faults the drills inject on a host (RELIABILITY.md, "Host fault drills"): a full file
//! system (a size-limited tmpfs), and a syslog socket that is missing or never read.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

pub use breakglass_test_support::fs::Tmpfs;

/// What the syslog socket a module or guard writes to is during a drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogFault {
    /// A reader collects every line (the test sshd's capture).
    Working,
    /// No socket at the path (syslogd stopped, `/dev/log` gone).
    Missing,
    /// A socket nobody reads, its queue already full (syslogd hung).
    NeverRead,
}

impl SyslogFault {
    /// Every fault, working first.
    pub const ALL: [SyslogFault; 3] = [Self::Working, Self::Missing, Self::NeverRead];

    /// Short name for output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Working => "working",
            Self::Missing => "missing",
            Self::NeverRead => "never read (full)",
        }
    }
}

/// Switches the socket path a module is configured with (`syslog=`) between the working
/// socket bound there, no socket, and a full socket nobody reads. Renaming a bound socket
/// keeps it bound: senders reach whatever is at the path when they connect.
#[derive(Debug)]
pub struct SyslogSwitch {
    path: PathBuf,
    parked: PathBuf,
    full: PathBuf,
    _never_read: UnixDatagram,
    now: SyslogFault,
}

impl SyslogSwitch {
    /// Takes over `path`, where a working socket is bound; parks the other sockets beside it.
    pub fn new(path: &Path) -> Self {
        let dir = path.parent().expect("socket directory");
        let full = dir.join("never-read.sock");
        let never_read = UnixDatagram::bind(&full).expect("bind the never-read socket");
        let queued = fill_socket(&full);
        assert!(queued > 0, "no datagram was queued on {}", full.display());
        Self {
            path: path.to_owned(),
            parked: dir.join("working.sock"),
            full,
            _never_read: never_read,
            now: SyslogFault::Working,
        }
    }

    fn home(&self, f: SyslogFault) -> Option<&Path> {
        match f {
            SyslogFault::Working => Some(&self.parked),
            SyslogFault::NeverRead => Some(&self.full),
            SyslogFault::Missing => None,
        }
    }

    /// Puts `fault` at the path.
    pub fn set(&mut self, fault: SyslogFault) {
        if fault == self.now {
            return;
        }
        if let Some(home) = self.home(self.now) {
            std::fs::rename(&self.path, home).expect("park the socket");
        }
        if let Some(home) = self.home(fault) {
            std::fs::rename(home, &self.path).expect("put the socket in place");
        }
        self.now = fault;
    }
}

impl Drop for SyslogSwitch {
    fn drop(&mut self) {
        self.set(SyslogFault::Working);
        let _ = std::fs::remove_file(&self.full);
    }
}

/// Sends datagrams to the socket at `path`, without blocking, until its queue is full;
/// returns how many were queued.
fn fill_socket(path: &Path) -> usize {
    let tx = UnixDatagram::unbound().expect("socket");
    tx.set_nonblocking(true).expect("non-blocking");
    let line = [b'x'; 512];
    for n in 0..100_000 {
        match tx.send_to(&line, path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return n,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    panic!("{} never filled up", path.display());
}
