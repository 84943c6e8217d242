//! The daemon under measurement as a child process, as its users run it: `breakglass-ca
//! init --dev`, then `serve` with its own descriptor limit (`prlimit`), so that its RSS
//! and descriptors are its own and can be read from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `daemon init --dev DIR --listen ADDR`; returns the config file it wrote.
pub fn init_dev(daemon: &Path, dir: &Path, addr: SocketAddr) -> Result<PathBuf, String> {
    let init = Command::new(daemon)
        .args(["init", "--dev"])
        .arg(dir)
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
    Ok(dir.join("breakglass-ca.toml"))
}

/// How many descriptors process `pid` holds (None if /proc does not say).
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on every Linux ABI).
const USER_HZ: u64 = 100;

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

/// The body of a plain HTTP GET of `path` from `addr` (the daemon's metrics listener),
/// when it answers 200 within `timeout`.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The machine's idle CPU time so far, all CPUs together (`idle` + `iowait` of
/// `/proc/stat`).
pub fn idle_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let idle = fields.get(3)? + fields.get(4)?;
    Some(Duration::from_nanos(
        idle.saturating_mul(1_000_000_000) / USER_HZ,
    ))
}

/// The resident set size of process `pid` in bytes (None if /proc does not say).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A free TCP port on 127.0.0.1 (free when asked; the daemon binds it right after).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

/// The daemon child process; stopped with SIGTERM (killed if it lingers) on drop.
#[derive(Debug)]
pub struct Daemon(Option<Child>);

impl Daemon {
    /// `daemon serve --config CONFIG`, its output into `log`, under `RLIMIT_NOFILE`
    /// `fd_limit` (soft and hard; None: this process's).
    pub fn spawn(
        daemon: &Path,
        fd_limit: Option<u64>,
        config: &Path,
        log: &Path,
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

    /// Waits until the daemon's `log` holds `needle`; fails with the log if the daemon
    /// exits first (e.g. `prlimit` may not raise the limit in a container) or in `timeout`.
    pub async fn wait_for_log(
        &mut self,
        log: &Path,
        needle: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.0.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "the daemon exited ({status}) before {needle:?}:\n{text}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the daemon did not log {needle:?} within {timeout:?}:\n{text}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A daemon started otherwise (e.g. under `prlimit --as`), stopped the same way.
    pub fn adopt(child: Child) -> Self {
        Self(Some(child))
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut()?.try_wait().ok()?
    }

    /// SIGTERM, then SIGKILL after 30 s.
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The fields of the first log line holding `marker` (from its first `key=`).
pub fn log_fields<'a>(log: &'a str, marker: &str) -> Option<&'a str> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let start = line.find(marker)? + marker.len();
    Some(line[start..].trim())
}
