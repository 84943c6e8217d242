//! Faults the drills inject (RELIABILITY.md, "Daemon fault drills" and "Host fault
//! drills"): a full or read-only file system (a size-limited tmpfs), system calls of a
//! running process failing (`strace` error injection), and a syslog socket that is missing
//! or never read.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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

/// `strace` attached to every thread of a running process, making the system calls it
/// names fail (`strace -f -p PID -e inject=SYSCALLS:error=ERRNO[:when=WHEN]`). Stopping
/// it (or dropping it) detaches strace: the process runs on, no longer faulted.
#[derive(Debug)]
pub struct Injection {
    strace: Option<Child>,
    out: PathBuf,
}

impl Injection {
    /// Attaches to `pid` and injects `errno` (e.g. `EIO`) into `syscalls` (comma-separated,
    /// e.g. `fdatasync` or `pwrite64`), on the calls `when` selects (strace's syntax:
    /// `1` the first only, `3+` the third and later; `None`: every call). strace writes
    /// each traced call to `out`. Returns once every thread of the process is traced.
    pub fn attach(
        pid: Pid,
        syscalls: &str,
        errno: &str,
        when: Option<&str>,
        out: &Path,
    ) -> Result<Self, String> {
        let mut inject = format!("inject={syscalls}:error={errno}");
        if let Some(w) = when {
            inject.push_str(&format!(":when={w}"));
        }
        let strace = Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(out)
            .args(["-e", &format!("trace={syscalls}"), "-e", &inject])
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run strace (scripts/install-deps installs it): {e}"))?;
        let tracer = strace.id();
        let mut me = Self {
            strace: Some(strace),
            out: out.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match traced_by(pid) {
                Ok(tracers) if !tracers.is_empty() && tracers.iter().all(|t| *t == tracer) => {
                    return Ok(me);
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Some(st) = me.strace.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let mut err = String::new();
                if let Some(mut e) = me.strace.take().and_then(|mut c| c.stderr.take()) {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("strace exited ({st}) before attaching: {err}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "strace did not attach to every thread of {pid} within 20 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many calls strace has made fail (its `(INJECTED)` lines; complete once it has
    /// detached).
    fn injected(&self) -> usize {
        std::fs::read_to_string(&self.out)
            .map(|t| t.lines().filter(|l| l.contains("(INJECTED)")).count())
            .unwrap_or(0)
    }

    /// Detaches strace (SIGINT) and waits for it; returns how many calls it made fail.
    pub fn stop(mut self) -> Result<usize, String> {
        self.detach()?;
        Ok(self.injected())
    }

    fn detach(&mut self) -> Result<(), String> {
        let Some(mut c) = self.strace.take() else {
            return Ok(());
        };
        if let Ok(pid) = i32::try_from(c.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        match crate::process::wait_exit(&mut c, Duration::from_secs(20), Duration::from_millis(10))
        {
            Some(_) => Ok(()),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                Err("strace did not detach within 20 s of SIGINT; killed".into())
            }
        }
    }
}

impl Drop for Injection {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// The tracer pid (`TracerPid` in `/proc/PID/task/*/status`) of every thread of `pid`
/// (0 for an untraced one).
fn traced_by(pid: Pid) -> Result<Vec<u32>, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut out = Vec::new();
    for t in tasks.flatten() {
        // A thread may end between the listing and the read.
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        out.push(tracer);
    }
    Ok(out)
}
