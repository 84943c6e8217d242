//! Starting a program in a session of its own (`posix_spawn` with `POSIX_SPAWN_SETSID`).
//!
//! Why `posix_spawn` and not fork: the module runs in sshd's [priv] process, whose page
//! tables a fork copies (twice, for a double fork) on the path of every login; glibc's
//! `posix_spawn` shares the parent's memory until the exec (`CLONE_VM | CLONE_VFORK`),
//! so the cost does not grow with the caller. The program stays the caller's child (a
//! fork of its own to re-parent itself costs it ~0.1 ms plus copy-on-write faults on
//! every page it then writes: 0.25 ms of a login, measured); a caller that keeps it
//! running [`Child::release`]s it, and it is re-parented to init when the caller exits.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

/// Fd numbers [`spawn_session_leader`] can hand fds over on: 3 to 9.
const TARGETS: std::ops::Range<RawFd> = 3..10;
/// Most fds [`spawn_session_leader`] hands over.
const MAX_FDS: usize = 7;
/// Signals the program starts with at their default disposition (whatever the caller
/// ignores or handles).
const DEFAULT_SIGNALS: [libc::c_int; 9] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGCHLD,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// A child started by [`spawn_session_leader`] and not reaped yet. Dropping it kills
/// and reaps it if it has not exited: a child the caller did not mean to keep running
/// ([`Child::release`]) is not left behind.
#[derive(Debug)]
#[must_use = "the child must be reaped (Child::reap_within) or released (Child::release)"]
pub struct Child {
    pid: libc::pid_t,
    /// Pidfd of the child (`None` if the caller's program reaped it already).
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

impl Child {
    /// The child's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or(0)
    }

    /// Lets the child run on: it is neither killed nor waited for. It stays this
    /// process's child (re-parented to init when this process exits).
    pub fn release(mut self) {
        self.reaped = true;
    }

    /// Waits at most `timeout` for the child to exit and reaps it. Returns false if it
    /// still runs.
    pub fn reap_within(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.reaped {
            return Ok(true);
        }
        if let Some(fd) = &self.pidfd
            && !super::fds::poll_readable(fd.as_fd(), timeout)?
        {
            return Ok(false);
        }
        self.wait()?;
        Ok(true)
    }

    /// Waits for the child, which has exited (its pidfd is readable) or was killed.
    fn wait(&mut self) -> io::Result<()> {
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid int.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // The host program reaps children itself (SIGCHLD ignored, or a handler
                // that waited first).
                Some(libc::ECHILD) => break,
                _ => return Err(e),
            }
        }
        self.reaped = true;
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // Through the pidfd: no other process can be hit, even if the host program
        // reaped the child and its pid was reused.
        if let Some(fd) = &self.pidfd {
            let _ = super::fds::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            let _ = self.wait();
        }
    }
}

/// Starts `program` as the leader of a new session (`setsid`), with `/dev/null` on fds
/// 0-2, each `(fd, target)` of `fds` on fd number `target` (3 to 9), every other
/// inherited fd closed, an empty signal mask, default signal dispositions and a
/// minimal environment. Returns once the program is executing (or fails with the
/// reason exec failed); the caller reaps the returned [`Child`].
pub fn spawn_session_leader(
    program: &CStr,
    args: &[CString],
    fds: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<Child> {
    let repeated = (1..fds.len()).any(|i| fds[..i].iter().any(|(_, t)| *t == fds[i].1));
    if fds.len() > MAX_FDS || repeated || fds.iter().any(|(_, t)| !TARGETS.contains(t)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_FDS} fds, each onto its own number from 3 to 9"),
        ));
    }
    // Copies above the target range, so that no dup2 onto a target clobbers a source
    // (close-on-exec: only the dup2'd numbers reach the program).
    let mut high = Vec::with_capacity(fds.len());
    for (fd, target) in fds {
        high.push((dup_above(*fd, TARGETS.end)?, *target));
    }
    let first_free = fds
        .iter()
        .map(|(_, t)| t + 1)
        .max()
        .unwrap_or(TARGETS.start);

    let mut argv: Vec<*mut libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(program.as_ptr().cast_mut());
    argv.extend(args.iter().map(|a| a.as_ptr().cast_mut()));
    argv.push(ptr::null_mut());
    let path_env = c"PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    let envp: [*mut libc::c_char; 2] = [path_env.as_ptr().cast_mut(), ptr::null_mut()];

    let actions = FileActions::new()?;
    check(
        // SAFETY: `actions` is initialised; the path is a NUL-terminated static string.
        unsafe {
            libc::posix_spawn_file_actions_addopen(
                actions.as_ptr(),
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDWR,
                0,
            )
        },
    )?;
    for fd in 1..3 {
        // SAFETY: `actions` is initialised.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(actions.as_ptr(), 0, fd) })?;
    }
    for (fd, target) in &high {
        // SAFETY: `actions` is initialised; `fd` stays open until posix_spawn returns.
        check(unsafe {
            libc::posix_spawn_file_actions_adddup2(actions.as_ptr(), fd.as_raw_fd(), *target)
        })?;
    }
    for n in TARGETS.start..first_free {
        if !fds.iter().any(|(_, t)| *t == n) {
            // SAFETY: `actions` is initialised. Closing a number that is not open is
            // not an error for glibc's posix_spawn.
            check(unsafe { libc::posix_spawn_file_actions_addclose(actions.as_ptr(), n) })?;
        }
    }
    close_from(&actions, first_free)?;

    let attr = SpawnAttr::new()?;
    // SAFETY (block): `attr` is initialised; the sets are valid sigset_t values.
    unsafe {
        let mut empty = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(empty.as_mut_ptr());
        let mut defaults = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(defaults.as_mut_ptr());
        for sig in DEFAULT_SIGNALS {
            libc::sigaddset(defaults.as_mut_ptr(), sig);
        }
        check(libc::posix_spawnattr_setsigmask(
            attr.as_ptr(),
            empty.as_ptr(),
        ))?;
        check(libc::posix_spawnattr_setsigdefault(
            attr.as_ptr(),
            defaults.as_ptr(),
        ))?;
        let flags = libc::POSIX_SPAWN_SETSID
            | libc::c_short::try_from(libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF)
                .unwrap_or(0);
        check(libc::posix_spawnattr_setflags(attr.as_ptr(), flags))?;
    }

    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer refers to initialised memory that outlives the call; argv
    // and envp are NULL-terminated arrays of NUL-terminated strings.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            actions.as_ptr(),
            attr.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    drop(high);
    let pidfd = u32::try_from(pid)
        .ok()
        .and_then(|p| super::fds::pidfd_open(p).ok());
    Ok(Child {
        pid,
        pidfd,
        reaped: false,
    })
}

/// Adds to `actions` the closing of every fd from `first` up.
#[cfg(target_env = "gnu")]
fn close_from(actions: &FileActions, first: RawFd) -> io::Result<()> {
    // SAFETY: `actions` is initialised.
    check(unsafe { libc::posix_spawn_file_actions_addclosefrom_np(actions.as_ptr(), first) })
}

/// Adds to `actions` the closing of every fd from `first` up. musl has no closefrom
/// action: each fd open now (`/proc/self/fd`) is closed by number. (Only the session
/// guard is built for musl, and it starts programs with `std::process::Command`; the
/// module, which calls this, is built against glibc.)
#[cfg(not(target_env = "gnu"))]
fn close_from(actions: &FileActions, first: RawFd) -> io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok());
        if let Some(fd) = fd.filter(|fd| *fd >= first) {
            // SAFETY: `actions` is initialised. Closing a number that is not open (the
            // directory's own fd, gone by then) is not an error for musl's posix_spawn.
            check(unsafe { libc::posix_spawn_file_actions_addclose(actions.as_ptr(), fd) })?;
        }
    }
    Ok(())
}

/// Sets the calling process's file mode mask to 077 (`posix_spawn` cannot, and the
/// program then creates nothing that others may read unless it says so).
pub fn private_umask() {
    // SAFETY: umask only sets the process's mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// A close-on-exec copy of `fd` on a number at least `min`.
fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only duplicates the borrowed, open fd.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The result of a `posix_spawn*` call, which returns its error number.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct FileActions(Box<MaybeUninit<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut a = Box::new(MaybeUninit::zeroed());
        // SAFETY: initialises the boxed (stable address) value.
        check(unsafe { libc::posix_spawn_file_actions_init(a.as_mut_ptr()) })?;
        Ok(Self(a))
    }
    fn as_ptr(&self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.as_ptr().cast_mut()
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(self.as_ptr()) };
    }
}

/// `posix_spawnattr_t`, destroyed on drop.
struct SpawnAttr(Box<MaybeUninit<libc::posix_spawnattr_t>>);

impl SpawnAttr {
    fn new() -> io::Result<Self> {
        let mut a = Box::new(MaybeUninit::zeroed());
        // SAFETY: initialises the boxed (stable address) value.
        check(unsafe { libc::posix_spawnattr_init(a.as_mut_ptr()) })?;
        Ok(Self(a))
    }
    fn as_ptr(&self) -> *mut libc::posix_spawnattr_t {
        self.0.as_ptr().cast_mut()
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(self.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn sh(script: &CStr, fds: &[(BorrowedFd<'_>, RawFd)]) -> Child {
        spawn_session_leader(c"/bin/sh", &[c"-c".to_owned(), script.to_owned()], fds).unwrap()
    }

    #[test]
    fn the_program_gets_exactly_the_fds_it_was_given_on_their_numbers() {
        let (read, write) = crate::system::pipe().unwrap();
        let (other_read, _other_write) = crate::system::pipe().unwrap();
        // An fd of ours that is not handed over must not reach the program, even one
        // that is not close-on-exec. (`exec >&4` first: dash saves fds on 10 and up
        // around a redirected loop.)
        let (_kept_read, kept_write) = crate::system::pipe().unwrap();
        let inheritable = inheritable_copy(&kept_write);
        let script =
            c"exec >&4; for fd in 3 4 5 6 7 8 9 10 11 12; do [ -e /proc/$$/fd/$fd ] && printf '%s ' $fd; done";
        let mut child = sh(script, &[(write.as_fd(), 4), (other_read.as_fd(), 6)]);
        drop(write);
        drop(kept_write);
        drop(inheritable);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert_eq!(out, "4 6 ");
        assert!(child.reap_within(Duration::from_secs(10)).unwrap());
    }

    /// A copy of `fd` without close-on-exec, on the lowest free number (>= 3 here).
    fn inheritable_copy(fd: &OwnedFd) -> OwnedFd {
        let copy = fd.try_clone().unwrap();
        // try_clone sets close-on-exec; the test needs an fd the program would inherit.
        let n = copy.as_raw_fd();
        // SAFETY: F_SETFD on an fd we own.
        assert_eq!(unsafe { libc::fcntl(n, libc::F_SETFD, 0) }, 0);
        copy
    }

    #[test]
    fn the_program_leads_its_own_session_with_null_stdio() {
        let (read, write) = crate::system::pipe().unwrap();
        let script = c"cut -d' ' -f6 /proc/$$/stat >&3; echo $$ >&3; readlink /proc/$$/fd/0 >&3";
        let mut child = sh(script, &[(write.as_fd(), 3)]);
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0], lines[1], "session id = own pid: {out}");
        assert_eq!(lines[2], "/dev/null");
        assert!(child.reap_within(Duration::from_secs(10)).unwrap());
    }

    #[test]
    fn exec_failure_is_an_error_and_a_child_that_stays_is_killed_on_drop() {
        let e = spawn_session_leader(c"/nonexistent/guard", &[], &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let mut child = sh(c"sleep 30", &[]);
        assert!(!child.reap_within(Duration::from_millis(50)).unwrap());
        let pid = child.pid();
        drop(child);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_released_child_runs_on() {
        let child = sh(c"sleep 30", &[]);
        let pid = child.pid();
        let pidfd = crate::system::pidfd_open(pid).unwrap();
        child.release();
        assert!(!breakglass_test_support::process::is_gone(pid), "{pid}");
        crate::system::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL).unwrap();
        let mut status = 0;
        // SAFETY: reaps our own child; `status` is a valid int.
        let rc = unsafe { libc::waitpid(libc::pid_t::try_from(pid).unwrap(), &mut status, 0) };
        assert_eq!(u32::try_from(rc).ok(), Some(pid));
    }

    #[test]
    fn targets_outside_3_to_9_or_repeated_are_refused() {
        let (r, _w) = crate::system::pipe().unwrap();
        for fds in [
            vec![(r.as_fd(), 2)],
            vec![(r.as_fd(), 10)],
            vec![(r.as_fd(), 4), (r.as_fd(), 4)],
        ] {
            let e = spawn_session_leader(c"/bin/true", &[], &fds).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{fds:?}");
        }
    }
}
