//! The bottom floor: the Linux system calls the module, the guard and their files and
//! process sweeps need, each wrapped in a safe function. With `hooks` (the top floor,
//! libpam) this is the only place of `unsafe` in the crate; nothing here knows about
//! PAM, certificates or sessions, and nothing here calls back up into the crate.
#![allow(unsafe_code)]

mod fds;
pub mod pty;
mod spawn;

pub use fds::{pidfd_open, pidfd_send_signal, pipe, poll_readable};
pub use spawn::{Child, private_umask, spawn_session_leader};

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

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

/// The login shell of `user` from the password database (NSS: files, LDAP, ...); `None`
/// when there is no such user.
pub fn login_shell(user: &str) -> io::Result<Option<String>> {
    let name = CString::new(user).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain data that getpwnam_r fills; zeroed is a valid value.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives the use of its strings.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() || pw.pw_shell.is_null() {
            return Ok(None);
        }
        // SAFETY: pw_shell points into buf, NUL-terminated, filled by getpwnam_r.
        let shell = unsafe { std::ffi::CStr::from_ptr(pw.pw_shell) };
        return Ok(Some(shell.to_string_lossy().into_owned()));
    }
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

/// Gives the unnamed file `fd` (opened with `O_TMPFILE`) the name `dest`: `linkat` through
/// `/proc/self/fd`, which needs no capability. Fails with `AlreadyExists` if `dest` exists.
pub fn link_unnamed(fd: BorrowedFd<'_>, dest: &Path) -> io::Result<()> {
    let src = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let dst = CString::new(dest.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that live until the call returns.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An open-file-description lock (`F_OFD_SETLK`) on `len` bytes of `fd` from `start`:
/// `write` for a write lock, else unlocks the range. Held per open file (not per process,
/// so two threads' descriptors exclude each other too) until unlocked or the last
/// descriptor of that open file is closed. `Ok(false)`: another open file holds a
/// conflicting lock. Never waits.
pub fn ofd_lock(fd: BorrowedFd<'_>, start: u64, len: u64, write: bool) -> io::Result<bool> {
    let bad = |_| io::Error::from(io::ErrorKind::InvalidInput);
    // SAFETY: flock is plain data; zeroed is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_UNLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::try_from(start).map_err(bad)?;
    fl.l_len = libc::off_t::try_from(len).map_err(bad)?;
    loop {
        // SAFETY: `fl` is a valid flock for the duration of the call; the fd is borrowed.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            _ => return Err(e),
        }
    }
}
