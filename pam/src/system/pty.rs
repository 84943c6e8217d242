//! The terminal and process calls of the session recorder: a pty pair, window sizes, raw
//! mode, signals as a readable fd, a poll over several fds, the recorded command started
//! in its own session without the recorder's group, and the recorder made non-dumpable.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::ptr;

/// Opens a new pty: (master, slave), both close-on-exec, with the kernel's default modes.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    open_pty_with(None)
}

/// Opens a new pty whose modes (line discipline settings: erase and interrupt characters,
/// output processing, UTF-8 input ...) are those of the terminal `like`, as `script(1)`
/// does: what the user's terminal set up holds inside the recorded session too.
pub fn open_pty_like(like: BorrowedFd<'_>) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: termios is plain data; zeroed is a valid value for tcgetattr to fill.
    let mut modes: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills the struct we pass.
    if unsafe { libc::tcgetattr(like.as_raw_fd(), &mut modes) } < 0 {
        return Err(io::Error::last_os_error());
    }
    open_pty_with(Some(&modes))
}

fn open_pty_with(modes: Option<&libc::termios>) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut master: RawFd = -1;
    let mut slave: RawFd = -1;
    // SAFETY: openpty writes two fds into the two ints; name and winsize are NULL (not
    // used), termios is NULL or a valid struct it only reads.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            ptr::null_mut(),
            modes.map_or(ptr::null(), ptr::from_ref),
            ptr::null(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded: both fds are new and owned by nobody else.
    let pair = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&pair.0, &pair.1] {
        // SAFETY: F_SETFD on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(pair)
}

/// Makes reads and writes of `fd` return `WouldBlock` instead of waiting.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd the caller holds.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True when `fd` is a terminal.
#[must_use]
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only inspects the fd.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// The window size of the terminal `fd`: (columns, rows).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: winsize is plain data; zeroed is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize struct we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_col, ws.ws_row))
}

/// Sets the window size of the terminal `fd` (the pty then signals its foreground group).
pub fn set_window_size(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize struct we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal put into raw mode; its old mode comes back on drop.
#[derive(Debug)]
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal `fd` into raw mode (the inner pty does the line discipline).
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<Self> {
        // SAFETY: termios is plain data; zeroed is a valid value for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr fills the struct we pass.
        if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut saved) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct we pass.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads the struct we pass.
        if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &raw) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads the saved struct; a closed fd only makes it fail.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset/sigaddset only edit the set we pass.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
    }
    set
}

/// Blocks `signals` and returns an fd that becomes readable when one arrives (signalfd):
/// signals are then read in the poll loop, not in handlers. Children started with
/// [`spawn`] get an empty mask back.
pub fn signal_fd(signals: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: sigprocmask reads the set; the old mask is not wanted (NULL).
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd with -1 creates a new fd for the set we pass.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The next signal waiting on a [`signal_fd`], if any.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    // SAFETY: signalfd_siginfo is plain data; zeroed is a valid buffer.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: read writes at most `size` bytes into `info`.
    let n = unsafe { libc::read(fd.as_raw_fd(), ptr::addr_of_mut!(info).cast(), size) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok((n as usize == size).then_some(info.ssi_signo as i32))
}

/// Waits until one of `fds` is ready for `events` or `timeout_ms` passes (-1: forever).
/// Returns each fd's `revents`. EINTR returns all zeros.
pub fn poll(fds: &[(BorrowedFd<'_>, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, events)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *events,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid pollfd array of the length given for the whole call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents).collect())
}

/// Starts `cmd` as the recorded command: with an empty signal mask, with the real group id
/// as real, effective and saved group id (the recorder's set-gid group is not handed on),
/// and, with `controlling_tty`, as the leader of a new session whose controlling terminal
/// is its stdin (the pty slave).
pub fn spawn(cmd: &mut Command, controlling_tty: bool) -> io::Result<Child> {
    // SAFETY: getgid has no preconditions and cannot fail.
    let gid = unsafe { libc::getgid() };
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (sigprocmask, setresgid, setsid, ioctl).
    unsafe {
        cmd.pre_exec(move || {
            let empty = sigset(&[]);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setresgid(gid, gid, gid) < 0 {
                return Err(io::Error::last_os_error());
            }
            if controlling_tty {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `signal` to the process group `pgid` (the recorded command's session).
pub fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill with a negative pid signals a process group; it only reads its arguments.
    if unsafe { libc::kill(-pgid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes this process non-dumpable: no core file, and other processes of the same user
/// can neither ptrace it nor open its `/proc/PID/mem` (the kernel already does this at
/// the exec of a set-gid program; this keeps it so whatever the exec path).
pub fn set_non_dumpable() -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument; the rest are ignored.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes an unprivileged process may still write to the file system of `fd`.
pub fn free_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: statvfs is plain data; zeroed is a valid buffer for fstatvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatvfs fills the struct we pass.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Starts the writeback to disk of `len` bytes of the file `fd` from `offset`, without
/// waiting for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`).
pub fn start_writeback(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let range = |v: u64| {
        libc::off64_t::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (offset, len) = (range(offset)?, range(len)?);
    // SAFETY: sync_file_range takes an fd we borrow and plain integers.
    let rc =
        unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The effective group id of this process.
#[must_use]
pub fn getegid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn modes(fd: BorrowedFd<'_>) -> libc::termios {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
        t
    }

    #[test]
    fn a_pty_opened_like_another_has_its_modes() {
        let (_m, outer) = open_pty().unwrap();
        let mut t = modes(outer.as_fd());
        t.c_cc[libc::VERASE] = 0x08;
        t.c_iflag |= libc::IUTF8;
        t.c_oflag &= !libc::ONLCR;
        // SAFETY: tcsetattr reads the struct we pass.
        assert_eq!(
            unsafe { libc::tcsetattr(outer.as_raw_fd(), libc::TCSANOW, &t) },
            0
        );
        let (_m2, inner) = open_pty_like(outer.as_fd()).unwrap();
        let u = modes(inner.as_fd());
        assert_eq!(u.c_cc[libc::VERASE], 0x08);
        assert_ne!(u.c_iflag & libc::IUTF8, 0);
        assert_eq!(u.c_oflag & libc::ONLCR, 0);
        // The default differs, so the copy is what made them equal.
        let (_m3, plain) = open_pty().unwrap();
        assert_ne!(modes(plain.as_fd()).c_cc[libc::VERASE], 0x08);
    }
}
