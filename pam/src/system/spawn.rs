//! Starting a program fully detached from the calling process (fork, setsid, fork, exec).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;

/// Fd numbers [`spawn_detached`] can hand fds over on: 3 to 9 (the copies it makes on the
/// way sit at 10 and above, and are closed before exec).
const TARGETS: std::ops::Range<RawFd> = 3..10;
/// Most fds [`spawn_detached`] hands over.
const MAX_FDS: usize = 7;

/// Starts `program` fully detached (fork, setsid, fork, exec), with `/dev/null` on fds
/// 0-2, each `(fd, target)` of `fds` on fd number `target` (3 to 9), every other
/// inherited fd closed, default signal dispositions and a minimal environment. Waits
/// only for the short-lived intermediate child, so no zombie is left to the caller.
pub fn spawn_detached(
    program: &CStr,
    args: &[CString],
    fds: &[(BorrowedFd<'_>, RawFd)],
) -> io::Result<()> {
    let repeated = (1..fds.len()).any(|i| fds[..i].iter().any(|(_, t)| *t == fds[i].1));
    if fds.len() > MAX_FDS || repeated || fds.iter().any(|(_, t)| !TARGETS.contains(t)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_FDS} fds, each onto its own number from 3 to 9"),
        ));
    }
    // Everything the children use is prepared before fork: between fork and exec only
    // async-signal-safe calls are made (the caller may have other threads).
    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(program.as_ptr());
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(ptr::null());
    let path_env = c"PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    let envp: [*const libc::c_char; 2] = [path_env.as_ptr(), ptr::null()];
    let devnull = c"/dev/null";
    let mut moves: [(RawFd, RawFd); MAX_FDS] = [(-1, -1); MAX_FDS];
    for (slot, (fd, target)) in moves.iter_mut().zip(fds) {
        *slot = (fd.as_raw_fd(), *target);
    }
    let moves = &moves[..fds.len()];

    // SAFETY: fork has no preconditions; the child branch below only makes
    // async-signal-safe calls on memory prepared before the fork and ends in exec or _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: see above; every pointer refers to memory that outlives this branch.
        unsafe { detached_child(program.as_ptr(), &argv, &envp, devnull.as_ptr(), moves) }
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
            // waited first); the caller learns from its own channel whether exec worked.
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
    moves: &[(RawFd, RawFd)],
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
        let mut high: [RawFd; MAX_FDS] = [-1; MAX_FDS];
        for (i, &(fd, _)) in moves.iter().enumerate() {
            high[i] = libc::fcntl(fd, libc::F_DUPFD, TARGETS.end);
            if high[i] < 0 {
                libc::_exit(126);
            }
        }
        let mut first = TARGETS.start;
        for (i, &(_, target)) in moves.iter().enumerate() {
            if libc::dup2(high[i], target) < 0 {
                libc::_exit(126);
            }
            first = first.max(target + 1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn the_program_gets_exactly_the_fds_it_was_given_on_their_numbers() {
        let (read, write) = crate::system::pipe().unwrap();
        let (other_read, _other_write) = crate::system::pipe().unwrap();
        // An fd of ours that is not handed over must not reach the program.
        let (_kept_read, kept_write) = crate::system::pipe().unwrap();
        let script =
            c"for fd in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$fd ] && printf '%s ' $fd; done >&4";
        spawn_detached(
            c"/bin/sh",
            &[c"-c".to_owned(), script.to_owned()],
            &[(write.as_fd(), 4), (other_read.as_fd(), 6)],
        )
        .unwrap();
        drop(write);
        drop(kept_write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        assert_eq!(out, "4 6 ");
    }

    #[test]
    fn targets_outside_3_to_9_or_repeated_are_refused() {
        let (r, _w) = crate::system::pipe().unwrap();
        for fds in [
            vec![(r.as_fd(), 2)],
            vec![(r.as_fd(), 10)],
            vec![(r.as_fd(), 4), (r.as_fd(), 4)],
        ] {
            let e = spawn_detached(c"/bin/true", &[], &fds).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{fds:?}");
        }
    }
}
