//! Ways to make a real process's disk fail: a size-limited tmpfs it fills up, and
//! `strace` error injection into its system calls (`fdatasync`, `pwrite64`, …).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A size-limited tmpfs mounted for one test (needs root); unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `1m`, `512k`) at `path`.
    pub fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("bg-fault-drill")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount tmpfs on {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Self(path.to_owned()))
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Remounts it with `opts` (e.g. `ro`, `rw`).
    pub fn remount(&self, opts: &str) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "remount {} with {opts}: {}",
                self.0.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Writes zeros into `filler` until the file system is full; returns the file's path.
    pub fn fill(&self) -> Result<PathBuf, String> {
        use std::io::Write as _;
        let p = self.0.join("filler");
        let mut f = File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let chunk = vec![0u8; 4096];
        // Bounded by the file system's size: every write adds a page or fails.
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        Ok(p)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
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
