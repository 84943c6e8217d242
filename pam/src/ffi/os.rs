//! Linux system calls for the module and the guard, wrapped safely.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

/// Fd number the guard finds the pidfd of the watched sshd process on.
pub const GUARD_PIDFD: RawFd = 3;
/// Fd number the guard reports readiness on.
pub const GUARD_READY_FD: RawFd = 4;
/// Fd number the guard reads its JSON spec from (kept out of argv, which every local
/// user can read in `ps`).
pub const GUARD_SPEC_FD: RawFd = 5;

/// The calling process's id.
#[must_use]
pub fn getpid() -> u32 {
    std::process::id()
}

/// The calling process's effective user id.
#[must_use]
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens a pidfd for `pid` (close-on-exec).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process `pidfd` refers to (no pid-reuse race).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a NULL siginfo and no flags only reads its arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `flock(2)` on `fd` with `op` (`LOCK_EX`, `LOCK_SH`, `LOCK_UN`, optionally `| LOCK_NB`).
/// EINTR is retried.
pub fn flock(fd: BorrowedFd<'_>, op: i32) -> io::Result<()> {
    loop {
        // SAFETY: flock only takes an fd and an operation; the fd is borrowed, so open.
        if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Takes ownership of an fd number inherited from the parent process, if it is open.
pub fn inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and was handed to this process to own;
    // nothing else in this program refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until `fd` is readable (or hung up) or `timeout` passes. Returns true if readable.
/// EINTR is retried with the full timeout; callers loop on a deadline anyway.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// Creates a pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `program` fully detached (fork, setsid, fork, exec), with `/dev/null` on fds
/// 0-2, `pidfd` on fd [`GUARD_PIDFD`], `ready` on fd [`GUARD_READY_FD`], `spec` on fd
/// [`GUARD_SPEC_FD`], every other inherited fd closed, default signal dispositions and a minimal environment. Waits
/// only for the short-lived intermediate child, so no zombie is left to the caller.
pub fn spawn_detached(
    program: &CStr,
    args: &[CString],
    pidfd: BorrowedFd<'_>,
    ready: BorrowedFd<'_>,
    spec: BorrowedFd<'_>,
) -> io::Result<()> {
    // Everything the children use is prepared before fork: between fork and exec only
    // async-signal-safe calls are made (the caller may have other threads).
    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(program.as_ptr());
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(ptr::null());
    let path_env = c"PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    let envp: [*const libc::c_char; 2] = [path_env.as_ptr(), ptr::null()];
    let devnull = c"/dev/null";
    let fds = [pidfd.as_raw_fd(), ready.as_raw_fd(), spec.as_raw_fd()];

    // SAFETY: fork has no preconditions; the child branch below only makes
    // async-signal-safe calls on memory prepared before the fork and ends in exec or _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: see above; every pointer refers to memory that outlives this branch.
        unsafe { detached_child(program.as_ptr(), &argv, &envp, devnull.as_ptr(), fds) }
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waits for the child forked above; `status` is a valid int.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // The host program reaps children itself (SIGCHLD ignored or a handler that
            // waited first); the readiness pipe tells the caller whether exec worked.
            Some(libc::ECHILD) => break,
            _ => return Err(e),
        }
    }
    Ok(())
}

/// Runs in the forked child; never returns.
///
/// # Safety
/// Must only be called in a freshly forked child; all pointers must be valid.
unsafe fn detached_child(
    program: *const libc::c_char,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char; 2],
    devnull: *const libc::c_char,
    fds: [RawFd; 3],
) -> ! {
    // SAFETY (whole block): async-signal-safe libc calls on valid fds and pointers.
    unsafe {
        if libc::setsid() < 0 {
            libc::_exit(126);
        }
        match libc::fork() {
            -1 => libc::_exit(126),
            0 => {}
            _ => libc::_exit(0),
        }
        // Move the fds above the target range first so the dup2s cannot clobber them.
        let targets = [GUARD_PIDFD, GUARD_READY_FD, GUARD_SPEC_FD];
        let mut high = [-1; 3];
        for i in 0..3 {
            high[i] = libc::fcntl(fds[i], libc::F_DUPFD, 10);
            if high[i] < 0 {
                libc::_exit(126);
            }
        }
        for i in 0..3 {
            if libc::dup2(high[i], targets[i]) < 0 {
                libc::_exit(126);
            }
        }
        let null = libc::open(devnull, libc::O_RDWR);
        if null < 0 {
            libc::_exit(126);
        }
        for fd in 0..3 {
            if null != fd && libc::dup2(null, fd) < 0 {
                libc::_exit(126);
            }
        }
        let first = GUARD_SPEC_FD + 1;
        if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) < 0 {
            for fd in first..4096 {
                libc::close(fd);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGPIPE,
            libc::SIGALRM,
            libc::SIGTERM,
            libc::SIGCHLD,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::umask(0o077);
        libc::execve(program, argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}
