//! `breakglass-record`: the session recorder a recording tier's certificate forces
//! (`force-command`, [`breakglass_proto::recording::RecorderCommand`]). It runs the approved
//! command, or the user's shell, under its own pty when the session has a terminal (pipes
//! for stdin, stdout and stderr otherwise), and writes what the session shows, as
//! asciicast v2, to `<spool>/recordings/<session>.cast` (the path comes in
//! [`RECORDING_ENV`], set by `pam_breakglass`).
//!
//! # Why the user cannot stop or edit the recording (set-gid, not a root helper)
//! The recorder is installed set-gid to the group `breakglass-rec` (mode 2755), and the
//! recordings directory is `root:breakglass-rec` mode 2770: only processes of that group
//! can reach the files in it, and the recorded user is not in it. Exec of a set-gid
//! program makes the process non-dumpable (the recorder also says so with
//! `prctl(PR_SET_DUMPABLE, 0)`), so the user can neither `ptrace` it nor open its
//! `/proc/PID/mem` or `/proc/PID/fd`, and the command it starts has the group dropped
//! (real, effective and saved gid set back to the user's). What the user still can do is
//! send it a signal (same uid): SIGTERM/SIGHUP end the session cleanly; SIGKILL kills the
//! recorder, which closes the pty and ends the session, and the recording's status file
//! then still says `running`, which the session's close record reports. The
//! alternative, handing the pty master to the root session guard over a Unix socket,
//! would make even that impossible but would put a pty relay into a root process that
//! reads user-controlled bytes; one group with one directory is the smaller surface.
//!
//! # Fail closed
//! Nothing runs before the recording file and its status file exist and the asciicast
//! header is written: a missing spool, a full file system or a missing environment end
//! the session with a message on stderr. A write that fails mid-session (the file system
//! filled) ends the session within [`FLUSH_EVERY`] plus [`KILL_GRACE`]: the user is told
//! why, the command's process group gets SIGHUP, then SIGKILL.
//!
//! # Tamper evidence
//! The module and the guard compute the recording's hash chain from the file when they
//! write the close or forced-end record, which carries it into the signed log
//! ([`breakglass_proto::recording`]). The recorder does not hash what it writes: its
//! status file is in the same directory as the recording, so whoever could change the one
//! could change a hash in the other. It says how many bytes the recorder wrote, and the
//! close record names a recording whose size differs.
#![forbid(unsafe_code)]

mod cast;
pub mod first;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use breakglass_proto::recording::{NO_ZDOTDIR, RECORDING_ENV, ZDOTDIR};

use cast::{Cast, End, Recording};
pub use cast::{FLUSH_BYTES, FLUSH_EVERY, QUEUE_PIECES, json_string};

use crate::system::pty;

/// Time the command gets after SIGHUP before SIGKILL when the session must end.
pub const KILL_GRACE: Duration = Duration::from_millis(300);
/// Size of one read from the terminal or a pipe.
const READ_BYTES: usize = 64 * 1024;
/// Exit code when the recording cannot start or fails (the session ends).
pub const EXIT_RECORDING_FAILED: i32 = 70;
/// Exit code for a bad command line.
pub const EXIT_USAGE: i32 = 64;

const USAGE: &str = "usage: breakglass-record --grant GRANT [--input] [-- COMMAND]\n\
Records an SSH session of a breakglass recording tier as asciicast v2. sshd runs it as \
the certificate's force-command; the recording file comes in $BREAKGLASS_RECORDING (set \
by pam_breakglass). Runs COMMAND with the user's shell, or the command the client asked \
for ($SSH_ORIGINAL_COMMAND), or a login shell; --input also records what the user types.";

/// The recorder's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The grant recorded (for the header's title).
    pub grant: String,
    /// Record input too.
    pub input: bool,
    /// The approved command, if any.
    pub command: Option<String>,
}

/// Reads `--grant G [--input] [-- COMMAND]`.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut grant = None;
    let mut input = false;
    let mut it = args.iter();
    let mut command = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--grant" => grant = Some(it.next().ok_or("--grant needs a grant id")?.clone()),
            "--input" => input = true,
            "--" => {
                let rest: Vec<&String> = it.by_ref().collect();
                match rest.as_slice() {
                    [c] => command = Some((*c).clone()),
                    _ => return Err("give the command after -- as one word".into()),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let grant = grant.ok_or("--grant is required")?;
    grant
        .parse::<breakglass_proto::profile::GrantId>()
        .map_err(|e| format!("--grant: {e}"))?;
    Ok(Args {
        grant,
        input,
        command,
    })
}

/// Entry point of the `breakglass-record` executable; returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    if matches!(args, [a] if a == "--help" || a == "-h") {
        println!("{USAGE}");
        return 0;
    }
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("breakglass-record: {e}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    // Set-gid exec made the process non-dumpable already; a failure here is worth a
    // refusal all the same (the protection of the recording depends on it).
    if let Err(e) = pty::set_non_dumpable() {
        eprintln!("breakglass: session not started: the recorder cannot protect itself ({e})");
        return EXIT_RECORDING_FAILED;
    }
    let path = match std::env::var_os(RECORDING_ENV) {
        Some(p) => PathBuf::from(p),
        None => {
            eprintln!(
                "breakglass: session not started: ${RECORDING_ENV} is not set, so this session cannot be recorded (is pam_breakglass.so in sshd's session stack?)"
            );
            return EXIT_RECORDING_FAILED;
        }
    };
    let stdin = io::stdin();
    let tty = pty::is_tty(stdin.as_fd());
    let size = match pty::window_size(stdin.as_fd()) {
        Ok((c, r)) if tty && c > 0 && r > 0 => (c, r),
        _ => (80, 24),
    };
    let cast = match Cast::create(&path, &args.grant, size) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("breakglass: session not started: {e}");
            return EXIT_RECORDING_FAILED;
        }
    };
    // Signals are read from an fd; they are blocked before the writing thread starts so
    // that it inherits the mask and none is delivered to it.
    let signals = pty::signal_fd(&SIGNALS);
    let mut rec = match Recording::start(cast) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("breakglass: session not started: cannot start the recording's writer ({e})");
            return EXIT_RECORDING_FAILED;
        }
    };
    let (status, why) = match (signals, first::strangers()) {
        (Err(e), _) => (None, End::Failed(format!("cannot watch signals: {e}"))),
        (Ok(_), found) if !found.is_empty() => {
            let why = first::refuse(&found);
            eprintln!("breakglass: session not started: {why}");
            (None, End::Failed(why))
        }
        (Ok(signals), _) if tty => run_pty(&mut rec, &signals, &args, size),
        (Ok(signals), _) => run_pipes(&mut rec, &signals, &args),
    };
    rec.finish(&why, status)
        .map_or(EXIT_RECORDING_FAILED, |()| exit_code(status, &why))
}

fn exit_code(status: Option<ExitStatus>, why: &End) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let End::Failed(_) = why {
        return EXIT_RECORDING_FAILED;
    }
    match status {
        Some(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        None => EXIT_RECORDING_FAILED,
    }
}

/// The shell and arguments that run what the session asked for: the approved command,
/// else the client's command, else a login shell.
fn command(args: &Args) -> Command {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| s.starts_with('/'))
        .unwrap_or_else(|| "/bin/sh".into());
    let asked = args
        .command
        .clone()
        .or_else(|| std::env::var("SSH_ORIGINAL_COMMAND").ok());
    let mut cmd = Command::new(&shell);
    match asked {
        Some(c) => {
            cmd.arg("-c").arg(c);
        }
        None => {
            let base = Path::new(&shell)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("sh");
            cmd.arg0(format!("-{base}"));
        }
    }
    cmd.env_remove(RECORDING_ENV);
    // What the module set to keep the user's start-up files from running before the
    // recorder: the session's own shell runs them (recorded).
    cmd.env_remove("SHLVL");
    if std::env::var(ZDOTDIR) == Ok(NO_ZDOTDIR.to_owned()) {
        cmd.env_remove(ZDOTDIR);
    }
    cmd
}

/// Signals the recorder handles in its loop.
const SIGNALS: [i32; 4] = [libc::SIGWINCH, libc::SIGCHLD, libc::SIGHUP, libc::SIGTERM];

fn read_some(mut f: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Writes what the non-blocking `f` takes now of the front of `pending` and removes it;
/// `Ok` also when it takes nothing (full).
fn write_some(mut f: &File, pending: &mut Vec<u8>) -> io::Result<()> {
    while !pending.is_empty() {
        match f.write(pending) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends the command's process group: SIGHUP, then SIGKILL after [`KILL_GRACE`].
fn end_child(child: &mut Child) {
    let _ = pty::kill_group(child.id(), libc::SIGHUP);
    let deadline = Instant::now() + KILL_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = pty::kill_group(child.id(), libc::SIGKILL);
}

/// Ends the session because the recording failed with `e`: the user is told, the
/// command's process group ended. The [`End`] to report.
fn recording_failed(out: &mut impl Write, child: &mut Child, e: String) -> End {
    tell(
        out,
        &format!("recording failed ({e}); this session ends now."),
    );
    end_child(child);
    End::Failed(e)
}

/// Tells the user on the session's terminal (or stderr) why the session ends.
fn tell(out: &mut impl Write, msg: &str) {
    let _ = write!(out, "\r\nbreakglass: {msg}\r\n");
    let _ = out.flush();
}

/// The events a descriptor that is read from reports (data, or its other end gone).
const READABLE: i16 = libc::POLLIN | libc::POLLHUP | libc::POLLERR;

fn run_pty(
    rec: &mut Recording,
    signals: &OwnedFd,
    args: &Args,
    (cols, rows): (u16, u16),
) -> (Option<ExitStatus>, End) {
    let fail = |e: String| (None, End::Failed(e));
    // Before raw mode below: the session's terminal modes as the client set them.
    let (master, slave) = match pty::open_pty_like(io::stdin().as_fd()).or_else(|_| pty::open_pty())
    {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot open a pty: {e}")),
    };
    let _ = pty::set_window_size(master.as_fd(), cols, rows);
    let master = File::from(master);
    let _ = pty::set_nonblocking(master.as_fd());
    let mut out = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => return fail(format!("cannot use stdout: {e}")),
    };
    let stdin = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => return fail(format!("cannot use stdin: {e}")),
    };
    let raw = pty::RawMode::enter(stdin.as_fd()).ok();
    let mut cmd = command(args);
    let streams =
        (|| -> io::Result<_> { Ok((slave.try_clone()?, slave.try_clone()?, slave.try_clone()?)) })(
        );
    let mut child = match streams.and_then(|(i, o, e)| {
        cmd.stdin(Stdio::from(i))
            .stdout(Stdio::from(o))
            .stderr(Stdio::from(e));
        pty::spawn(&mut cmd, true)
    }) {
        Ok(c) => c,
        Err(e) => {
            drop(raw);
            return fail(format!("cannot start the session's command: {e}"));
        }
    };
    // The command holds the slave now: with the copies in `cmd` gone too, the master
    // reports the end (EIO) once the command and its children have closed it.
    drop(cmd);
    drop(slave);
    let mut buf = vec![0u8; READ_BYTES];
    // Keystrokes read but not yet taken by the pty: while there are some, stdin is not
    // read (it waits in the session's terminal), and the command's output still flows,
    // so a command that writes without reading its input cannot stall the session.
    let mut typed: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut exited: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    let mut end = End::Exited;
    loop {
        rec.tick();
        if let Err(e) = rec.check() {
            end = recording_failed(&mut out, &mut child, e);
            break;
        }
        if let Some(t) = drain_until
            && Instant::now() >= t
        {
            break;
        }
        let master_events = if typed.is_empty() {
            libc::POLLIN
        } else {
            libc::POLLIN | libc::POLLOUT
        };
        let mut fds = vec![
            (master.as_fd(), master_events),
            (signals.as_fd(), libc::POLLIN),
        ];
        let reading_stdin = stdin_open && typed.is_empty();
        if reading_stdin {
            fds.push((stdin.as_fd(), libc::POLLIN));
        }
        let ready = match pty::poll(&fds, 50) {
            Ok(r) => r,
            Err(e) => {
                end = End::Failed(format!("poll: {e}"));
                end_child(&mut child);
                break;
            }
        };
        if ready[0] & READABLE != 0 {
            // One read per wake-up, shown at once (as `script` does): the next read waits in
            // `poll`, not in a read that finds the pty empty (such a read first waits for the
            // pty's pending work), and the session's terminal gets each piece as it comes
            // instead of after a batch. The recording joins the pieces into events.
            match read_some(&master, &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = out.write_all(&buf[..n]);
                    rec.output(&buf[..n]);
                    if drain_until.is_some() {
                        drain_until = Some(Instant::now() + Duration::from_millis(100));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EIO: every slave fd is closed; the session is over.
                _ => break,
            }
        }
        if ready[0] & libc::POLLOUT != 0 && write_some(&master, &mut typed).is_err() {
            break;
        }
        if ready[1] != 0 {
            while let Ok(Some(sig)) = pty::read_signal(signals.as_fd()) {
                match sig {
                    libc::SIGWINCH => {
                        if let Ok((c, r)) = pty::window_size(stdin.as_fd()) {
                            let _ = pty::set_window_size(master.as_fd(), c, r);
                            rec.resize(c, r);
                        }
                    }
                    libc::SIGCHLD => {
                        if let Ok(Some(s)) = child.try_wait() {
                            exited = Some(s);
                            // What the command wrote last is still in the pty: read it,
                            // then stop even if a background process keeps the pty open.
                            drain_until.get_or_insert(Instant::now() + Duration::from_millis(100));
                        }
                    }
                    s => {
                        end = End::Signalled(s);
                        end_child(&mut child);
                        drain_until.get_or_insert(Instant::now() + Duration::from_millis(100));
                    }
                }
            }
        }
        if reading_stdin && ready.get(2).is_some_and(|r| *r != 0) {
            match read_some(&stdin, &mut buf) {
                Ok(n) if n > 0 => {
                    // What the user saw before typing is on disk before the keys act
                    // (a `kill -9` of the recorder loses nothing already shown).
                    if let Err(e) = rec.flush_now() {
                        end = recording_failed(&mut out, &mut child, e);
                        break;
                    }
                    if args.input {
                        rec.event("i", 1, buf[..n].to_vec());
                    }
                    typed.extend_from_slice(&buf[..n]);
                    if write_some(&master, &mut typed).is_err() {
                        break;
                    }
                }
                _ => stdin_open = false,
            }
        }
    }
    drop(raw);
    let status = exited.or_else(|| child.wait().ok());
    (status, end)
}

fn run_pipes(rec: &mut Recording, signals: &OwnedFd, args: &Args) -> (Option<ExitStatus>, End) {
    let mut cmd = command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match pty::spawn(&mut cmd, false) {
        Ok(c) => c,
        Err(e) => {
            return (
                None,
                End::Failed(format!("cannot start the session's command: {e}")),
            );
        }
    };
    let (Some(child_in), Some(out), Some(err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        end_child(&mut child);
        return (None, End::Failed("the command's pipes are missing".into()));
    };
    // The command's stdin is written without blocking: what it has not taken yet waits
    // here (and stdin is not read meanwhile), so a command that writes much and reads
    // nothing cannot deadlock against the recorder.
    let mut child_in = Some(File::from(OwnedFd::from(child_in)));
    if let Some(c) = &child_in {
        let _ = pty::set_nonblocking(c.as_fd());
    }
    let (mut out, mut err) = (
        Some(File::from(OwnedFd::from(out))),
        Some(File::from(OwnedFd::from(err))),
    );
    let stdin = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => {
            end_child(&mut child);
            return (None, End::Failed(format!("cannot use stdin: {e}")));
        }
    };
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let mut buf = vec![0u8; READ_BYTES];
    let mut typed: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut end = End::Exited;
    while out.is_some() || err.is_some() {
        rec.tick();
        if let Err(e) = rec.check() {
            end = recording_failed(&mut stderr, &mut child, e);
            break;
        }
        // The command's stdin ends once the client's has and all of it was taken.
        if !stdin_open && typed.is_empty() {
            child_in = None;
        }
        let mut fds = vec![(signals.as_fd(), libc::POLLIN)];
        let mut which = vec![0u8];
        if let Some(o) = &out {
            fds.push((o.as_fd(), libc::POLLIN));
            which.push(1);
        }
        if let Some(e) = &err {
            fds.push((e.as_fd(), libc::POLLIN));
            which.push(2);
        }
        if let Some(c) = child_in.as_ref().filter(|_| !typed.is_empty()) {
            fds.push((c.as_fd(), libc::POLLOUT));
            which.push(4);
        } else if stdin_open && child_in.is_some() {
            fds.push((stdin.as_fd(), libc::POLLIN));
            which.push(3);
        }
        let ready = match pty::poll(&fds, 50) {
            Ok(r) => r,
            Err(e) => {
                end = End::Failed(format!("poll: {e}"));
                end_child(&mut child);
                break;
            }
        };
        for (i, r) in ready.iter().enumerate() {
            if *r == 0 {
                continue;
            }
            match which[i] {
                0 => {
                    while let Ok(Some(sig)) = pty::read_signal(signals.as_fd()) {
                        if sig == libc::SIGHUP || sig == libc::SIGTERM {
                            end = End::Signalled(sig);
                            end_child(&mut child);
                        }
                    }
                }
                1 | 2 => {
                    let pipe = if which[i] == 1 { &mut out } else { &mut err };
                    let n = pipe.as_mut().map_or(Ok(0), |p| p.read(&mut buf));
                    match n {
                        Ok(n) if n > 0 => {
                            let w: &mut dyn Write = if which[i] == 1 {
                                &mut stdout
                            } else {
                                &mut stderr
                            };
                            let _ = w.write_all(&buf[..n]).and_then(|()| w.flush());
                            rec.output(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        _ => *pipe = None,
                    }
                }
                3 => match read_some(&stdin, &mut buf) {
                    Ok(n) if n > 0 => {
                        if args.input {
                            rec.event("i", 1, buf[..n].to_vec());
                        }
                        typed.extend_from_slice(&buf[..n]);
                    }
                    _ => stdin_open = false,
                },
                _ => {}
            }
        }
        // The command stopped reading for good (its stdin closed): what was typed for it
        // is dropped, and so is the rest of the client's input.
        if let Some(c) = &child_in
            && write_some(c, &mut typed).is_err()
        {
            child_in = None;
            typed.clear();
            stdin_open = false;
        }
    }
    drop(child_in);
    let status = child.wait().ok();
    (status, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_the_force_commands_words() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            a(&["--grant", "g-00000000000000ff", "--input", "--", "ls | wc"]),
            Ok(Args {
                grant: "g-00000000000000ff".into(),
                input: true,
                command: Some("ls | wc".into())
            })
        );
        assert!(a(&["--grant", "g-00000000000000ff", "--", "ls", "x"]).is_err());
        assert!(a(&["--grant", "nope"]).is_err());
        assert!(a(&["--input"]).is_err());
        assert!(a(&["--grant", "g-00000000000000ff", "-x"]).is_err());
    }
}
