//! Child processes whose output tests watch while they run, and the processes of the
//! machine as `/proc` shows them.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A child's stdout and stderr, collected into one buffer by background threads.
#[derive(Clone, Debug)]
pub struct Captured {
    output: Arc<Mutex<Vec<u8>>>,
    readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Captured {
    /// Takes the child's piped stdout and stderr and collects both in the background.
    pub fn take(child: &mut Child) -> Self {
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&output);
            let mut stream = stream;
            readers.push(thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            }));
        }
        Self {
            output,
            readers: Arc::new(Mutex::new(readers)),
        }
    }

    /// Everything printed so far (stdout and stderr).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("lock")).into_owned()
    }

    /// Waits up to `timeout` for both streams to end (the child and whatever inherited
    /// them have exited), so that [`text`](Self::text) holds everything.
    pub fn drain(&self, timeout: Duration) -> bool {
        crate::wait::until(timeout, Duration::from_millis(10), || {
            self.readers
                .lock()
                .expect("lock")
                .iter()
                .all(JoinHandle::is_finished)
        })
    }

    /// Waits up to `timeout` (looking every `every`) for the output to contain `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration, every: Duration) -> bool {
        crate::wait::until(timeout, every, || self.text().contains(needle))
    }
}

/// Waits up to `timeout` (looking every `every`) for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration, every: Duration) -> Option<ExitStatus> {
    crate::wait::poll(timeout, every, || child.try_wait().ok().flatten())
}

/// A running child whose stdout and stderr are collected in the background, and whose
/// stdin (when piped) the test writes to; killed on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Captured,
}

impl Running {
    /// Spawns `cmd` with stdout and stderr piped into one buffer; stdin as `cmd` has it
    /// (piped: [`send`](Self::send) writes to it).
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        let output = Captured::take(&mut child);
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            output,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes to the child's stdin.
    pub fn send(&mut self, text: &str) {
        if let Some(s) = self.stdin.as_mut() {
            s.write_all(text.as_bytes()).expect("write to the child");
            s.flush().expect("flush");
        }
    }

    /// Everything the child printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Waits up to `timeout` (looking every `every`) for the output to contain `needle`.
    pub fn wait_output(&self, needle: &str, timeout: Duration, every: Duration) -> bool {
        self.output.wait_for(needle, timeout, every)
    }

    /// Waits up to `timeout` (looking every `every`) for the child to exit, then for its
    /// output to end; returns its status and the time it was seen to exit.
    pub fn wait_exit(
        &mut self,
        timeout: Duration,
        every: Duration,
    ) -> Option<(ExitStatus, SystemTime)> {
        let st = wait_exit(&mut self.child, timeout, every)?;
        let at = SystemTime::now();
        self.drain_output();
        Some((st, at))
    }

    /// The child's exit status, once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `timeout` for the child to exit (SIGKILL after
    /// that), then for its output to end; returns the status it exited with on its own.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        // It may have exited already: a failed signal is no error here.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let status = wait_exit(&mut self.child, timeout, Duration::from_millis(20));
        if status.is_none() {
            self.kill();
        }
        self.drain_output();
        status
    }

    /// Waits (up to 2 s) for the child's output to end, once it has exited.
    pub fn drain_output(&self) {
        self.output.drain(Duration::from_secs(2));
    }

    /// Sends `sig` to the child (`group`: to its process group).
    pub fn signal(&self, sig: Signal, group: bool) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        kill(Pid::from_raw(if group { -pid } else { pid }), sig).expect("signal the child");
    }

    /// Kills the child and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Live (non-zombie) pids for which `pred` holds.
pub fn processes_where(pred: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| !is_gone(pid) && pred(pid))
        .collect()
}

/// True when `pid` has exited (no process, or a zombie).
pub fn is_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The real uid of `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The command line of `pid`, NULs as spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) -> nix::Result<()> {
    kill(
        Pid::from_raw(i32::try_from(pid).expect("pid")),
        Signal::SIGKILL,
    )
}

/// Runs `cmd` and asserts that it succeeded (showing what it printed otherwise);
/// returns its stdout.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's status, stdout and stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status={:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
