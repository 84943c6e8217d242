//! The recorder must be the first of the user's processes in the session: sshd starts it
//! through the user's shell, and anything the shell ran before it (a start-up file that
//! escaped the module's guards, a background job) would run unrecorded. The kernel's audit
//! session id (`pam_loginuid`, required by the module) marks every process of the session,
//! including ones that called `setsid` or were re-parented; users cannot change it. So at
//! start the recorder lists the processes of its audit session: its own ancestors (the
//! shell that started it, sshd's session process) and root's (sshd's privileged process,
//! the session guard) belong there; any other process was started before the recorder.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::procs;
use crate::system;

/// Rounds of stopping: a process may fork while it is being stopped.
const STOP_ROUNDS: usize = 20;

/// A process found in the session that the recorder did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stranger {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Field 4 (ppid) is the second after the command name.
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn real_uid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process and its ancestors.
fn self_and_ancestors() -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let mut pid = system::getpid();
    // Bounded: pids form a tree rooted at 1 (0 above it); a loop cannot last.
    while pid > 1 && seen.insert(pid) && seen.len() < 4096 {
        match parent_of(pid) {
            Some(p) => pid = p,
            None => break,
        }
    }
    seen
}

/// The processes of this process's audit session that are neither it, its ancestors, nor
/// root's. Empty outside a login session (no audit session id: a benchmark, a test).
#[must_use]
pub fn strangers() -> Vec<Stranger> {
    let Some(id) = procs::audit_session_of_self() else {
        return Vec::new();
    };
    let mine = self_and_ancestors();
    procs::members(id)
        .into_iter()
        .filter(|pid| !mine.contains(pid))
        .filter(|&pid| real_uid_of(pid).is_some_and(|uid| uid != 0))
        .map(|pid| Stranger {
            pid,
            name: fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".into()),
        })
        .collect()
}

/// Stops (SIGKILL) the processes `found` and any other stranger that appears meanwhile,
/// and returns the reason the session does not start, naming them.
#[must_use]
pub fn refuse(found: &[Stranger]) -> String {
    let mut stopped = BTreeSet::new();
    let mut round: Vec<Stranger> = found.to_vec();
    for _ in 0..STOP_ROUNDS {
        if round.is_empty() {
            break;
        }
        for s in &round {
            if let Ok(fd) = system::pidfd_open(s.pid) {
                // The pidfd pins the process: only a process still in the session is hit.
                if procs::audit_session_of(s.pid) == procs::audit_session_of_self()
                    && system::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).is_ok()
                {
                    stopped.insert(format!("{} (pid {})", s.name, s.pid));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        round = strangers();
    }
    let names: Vec<String> = stopped.into_iter().take(8).collect();
    format!(
        "{} process(es) of this session were started before the recorder and were stopped: {} (a shell start-up file such as ~/.bashrc, or ~/.ssh/rc?); nothing may run unrecorded in a recorded session",
        found.len(),
        if names.is_empty() {
            "none could be stopped".to_owned()
        } else {
            names.join(", ")
        }
    )
}
