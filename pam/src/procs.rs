//! Finding and ending the processes of a login session by kernel audit session id
//! (`/proc/<pid>/sessionid`, set by pam_loginuid and inherited by every child, `setsid`
//! and `nohup` included; users cannot change it).
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crate::system;

/// Rounds of the sweep: processes may fork while it runs.
const SWEEP_ROUNDS: usize = 20;

/// The audit session id of process `pid`.
#[must_use]
pub fn audit_session_of(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/sessionid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The audit session id of this process; `None` when it has none (not in a login
/// session: `pam_loginuid` never ran for it).
#[must_use]
pub fn audit_session_of_self() -> Option<u32> {
    audit_session_of(system::getpid()).filter(|&id| id != u32::MAX)
}

/// The live (not zombie) processes of audit session `id`.
#[must_use]
pub fn members(id: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| audit_session_of(pid) == Some(id) && !is_zombie(pid))
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Start time of process `pid` (clock ticks after boot, `/proc/<pid>/stat` field 22):
/// with the pid, it names one process for good (pids are recycled, start times are not).
#[must_use]
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after the command name start at field 3 (state).
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The pid a pidfd of this process refers to (`Pid:` in its fdinfo).
#[must_use]
pub fn pidfd_pid(fd: std::os::fd::BorrowedFd<'_>) -> Option<u32> {
    use std::os::fd::AsRawFd;
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()
        .filter(|&p: &i64| p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

/// (device, inode) of a process's executable.
fn exe_id(pid: &str) -> Option<(u64, u64)> {
    let m = fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((m.dev(), m.ino()))
}

fn is_root_owned(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            // real, effective, saved, filesystem
            Some(line.split_whitespace().skip(1).take(3).all(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Live processes of audit session `id`, except `exclude` and other session guards
/// (root processes running this same executable: the module starts them, and two can
/// share a session id when one process opens several sessions).
#[must_use]
pub fn session_pids(id: u32, exclude: u32) -> Vec<u32> {
    let me = exe_id("self");
    members(id)
        .into_iter()
        .filter(|&pid| pid != exclude)
        .filter(|&pid| {
            let exe = exe_id(&pid.to_string());
            !(exe.is_some() && (exe == me || exe == SPARED.get().copied()) && is_root_owned(pid))
        })
        .collect()
}

/// Another executable whose root-owned processes are not part of any session: the record
/// shipper the guard starts (it inherits the session's audit id, but is ours, not the
/// user's, and must neither keep a closed session "open" nor be swept at expiry).
static SPARED: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Spares root-owned processes of the executable at `path` (see [`session_pids`]).
pub fn spare_executable(path: &std::path::Path) {
    if let Ok(m) = fs::metadata(path) {
        let _ = SPARED.set((m.dev(), m.ino()));
    }
}

/// SIGKILLs every process of audit session `id` except `exclude`, until none is left or
/// the rounds run out. Each kill goes through a pidfd after re-checking the session id,
/// so a recycled pid is never hit. Returns the number of processes killed.
pub fn kill_session(id: u32, exclude: u32) -> u32 {
    let mut killed = BTreeSet::new();
    for _ in 0..SWEEP_ROUNDS {
        let pids = session_pids(id, exclude);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let Ok(fd) = system::pidfd_open(pid) else {
                continue;
            };
            // The pidfd pins the process; check it is still one of ours.
            if audit_session_of(pid) != Some(id) {
                continue;
            }
            if system::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    u32::try_from(killed.len()).unwrap_or(u32::MAX)
}

/// Writes `message` to every terminal the session's processes have on fds 0-2; when
/// they have none (a command without a pty), to their stderr pipes. Returns what was
/// written to.
pub fn tell_session(id: u32, exclude: u32, message: &str) -> Vec<String> {
    let pids = session_pids(id, exclude);
    let mut ttys = BTreeSet::new();
    let mut pipes = Vec::new();
    let mut seen_pipes = BTreeSet::new();
    for pid in &pids {
        for fd in 0..3 {
            let Ok(target) = fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
                continue;
            };
            let t = target.to_string_lossy().into_owned();
            if t.starts_with("/dev/pts/") || t.starts_with("/dev/tty") {
                ttys.insert(target);
            } else if fd == 2 && t.starts_with("pipe:") && seen_pipes.insert(t.clone()) {
                pipes.push((PathBuf::from(format!("/proc/{pid}/fd/2")), t));
            }
        }
    }
    let mut reached = Vec::new();
    for tty in &ttys {
        let is_tty = fs::metadata(tty)
            .map(|m| m.file_type().is_char_device())
            .unwrap_or(false);
        if is_tty && write_nonblocking(tty, message) {
            reached.push(tty.display().to_string());
        }
    }
    if ttys.is_empty() {
        for (path, name) in pipes {
            if write_nonblocking(&path, message) {
                reached.push(name);
            }
        }
    }
    reached
}

fn write_nonblocking(path: &std::path::Path, message: &str) -> bool {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| f.write_all(message.as_bytes()))
        .is_ok()
}
