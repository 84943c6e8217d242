//! A `breakglass-ca` child process for the benchmarks that measure the daemon apart from
//! its load: its own `init --dev` setup, its log in a file, and what `/proc` says of it
//! (descriptors, CPU time, resident memory).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `<daemon> init --dev <setup> --listen <addr>`.
pub fn init_dev(daemon: &Path, setup: &Path, addr: SocketAddr) -> Result<(), String> {
    let init = Command::new(daemon)
        .args(["init", "--dev"])
        .arg(setup)
        .arg("--listen")
        .arg(addr.to_string())
        .output()
        .map_err(|e| format!("running {} init: {e}", daemon.display()))?;
    if !init.status.success() {
        return Err(format!(
            "{} init --dev failed: {}",
            daemon.display(),
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    Ok(())
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// How many descriptors process `pid` holds (None if /proc does not say).
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// CPU time (user + system) process `pid` has used, all its threads together, from
/// `/proc/<pid>/stat` (clock ticks of 10 ms on Linux: measure long enough).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 with the pid and the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_nanos(
        (utime + stime).saturating_mul(1_000_000_000) / USER_HZ,
    ))
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A free loopback port (bound and released; the daemon binds it next).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

/// The daemon child process; stopped with SIGTERM (killed if it lingers) on drop.
#[derive(Debug)]
pub struct ChildDaemon(Option<Child>);

impl ChildDaemon {
    /// Starts `<daemon> serve --config <config>` with stdout and stderr into `log`, under
    /// `RLIMIT_NOFILE` `fd_limit` (through `prlimit`) when given.
    pub fn spawn(
        daemon: &Path,
        config: &Path,
        log: &Path,
        fd_limit: Option<u64>,
    ) -> Result<Self, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match fd_limit {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(daemon);
                c
            }
            None => Command::new(daemon),
        };
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().map_err(|e| {
            format!(
                "starting {}: {e}{}",
                daemon.display(),
                if fd_limit.is_some() {
                    " (prlimit is in util-linux)"
                } else {
                    ""
                }
            )
        })?;
        Ok(Self(Some(child)))
    }

    /// The daemon's process id (prlimit execs the daemon: the child's pid is the daemon's).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after 30 s.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Some(mut child) = self.0.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the file `log` holds `needle`.
pub async fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the daemon did not log {needle:?} within {timeout:?}:\n{text}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
