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
//! The recorder feeds every byte it writes to a [`ChainHasher`]; the module and the guard
//! recompute the chain from the file when they write the close or forced-end record,
//! which carries it into the signed log ([`breakglass_proto::recording`]).
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_proto::recording::{
    self, CAST_SUFFIX, ChainHasher, END_FILE_BYTES, END_RUNNING, RECORDING_ENV,
};

use crate::recording::MIN_FREE_BYTES;
use crate::system::pty;

/// Most time between a write to the recording and its flush to the file: a failing
/// file system is noticed within this.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Buffered recording bytes that trigger a flush at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
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
    let mut cast = match Cast::create(&path, &args, size) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("breakglass: session not started: {e}");
            return EXIT_RECORDING_FAILED;
        }
    };
    let (status, why) = if tty {
        run_pty(&mut cast, &args, size)
    } else {
        run_pipes(&mut cast, &args)
    };
    cast.finish(&why)
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

/// How the recorded session ended.
#[derive(Debug)]
enum End {
    /// The command exited.
    Exited,
    /// The recorder was told to stop (SIGHUP, SIGTERM).
    Signalled(i32),
    /// The recording failed: the session was ended.
    Failed(String),
}

impl End {
    fn text(&self, status: Option<ExitStatus>) -> String {
        match self {
            End::Exited => format!(
                "ended: command exited ({})",
                status.map_or("status unknown".into(), |s| s.to_string())
            ),
            End::Signalled(s) => format!("ended: recorder got signal {s}, session ended"),
            End::Failed(e) => format!("failed: {e}; session ended"),
        }
    }
}

/// The recording file being written.
struct Cast {
    file: File,
    end: File,
    path: PathBuf,
    buf: Vec<u8>,
    hasher: ChainHasher,
    start: Instant,
    last_flush: Instant,
    /// Set once a write failed: nothing more is written.
    failed: Option<String>,
    /// Trailing bytes of an incomplete UTF-8 sequence, per stream (output, input).
    carry: [Vec<u8>; 2],
    status: Option<ExitStatus>,
}

impl Cast {
    /// Creates the recording (new, never an existing file) and its status file, checks
    /// the space left, and writes the header.
    fn create(path: &Path, args: &Args, (cols, rows): (u16, u16)) -> Result<Self, String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !path.is_absolute() || !name.ends_with(CAST_SUFFIX) {
            return Err(format!(
                "${RECORDING_ENV} {} is not an absolute path of a {CAST_SUFFIX} file",
                path.display()
            ));
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let dir_file = File::open(dir).map_err(|e| {
            format!(
                "the recording spool {} cannot be opened ({e}); ask an administrator to create it (root:breakglass-rec, mode 2770)",
                dir.display()
            )
        })?;
        let free = pty::free_bytes(dir_file.as_fd())
            .map_err(|e| format!("cannot check the space in {}: {e}", dir.display()))?;
        if free < MIN_FREE_BYTES {
            return Err(format!(
                "the recording spool {} is full ({free} bytes free, {MIN_FREE_BYTES} needed)",
                dir.display()
            ));
        }
        let open_new = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
                .map_err(|e| format!("cannot create the recording {}: {e}", p.display()))
        };
        let end_path = recording::end_path(path);
        let end = open_new(&end_path)?;
        end.write_all_at(&padded(END_RUNNING), 0)
            .and_then(|()| end.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", end_path.display()))?;
        let file = open_new(path)?;
        let mut cast = Self {
            file,
            end,
            path: path.to_owned(),
            buf: Vec::with_capacity(FLUSH_BYTES * 2),
            hasher: ChainHasher::new(),
            start: Instant::now(),
            last_flush: Instant::now(),
            failed: None,
            carry: [Vec::new(), Vec::new()],
            status: None,
        };
        let env_var = |k: &str| std::env::var(k).unwrap_or_default();
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "title": format!("breakglass grant {}", args.grant),
            "env": { "SHELL": env_var("SHELL"), "TERM": env_var("TERM") },
        });
        cast.buf.extend_from_slice(header.to_string().as_bytes());
        cast.buf.push(b'\n');
        cast.flush()
            .map_err(|e| format!("cannot write the recording {}: {e}", path.display()))?;
        Ok(cast)
    }

    /// Appends one event (`o`, `i`) of the bytes `data` of a stream.
    fn event(&mut self, code: &str, stream: usize, data: &[u8]) {
        // The common case, whole UTF-8 and nothing carried: no copy.
        if self.carry[stream].is_empty()
            && let Ok(text) = std::str::from_utf8(data)
        {
            return self.line(code, text);
        }
        let text = take_utf8(&mut self.carry[stream], data);
        if text.is_empty() {
            return;
        }
        self.line(code, &text);
    }

    fn line(&mut self, code: &str, text: &str) {
        if self.failed.is_some() || text.is_empty() {
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        let _ = write!(self.buf, "[{t:.6}, \"{code}\", ");
        let _ = serde_json::to_writer(&mut self.buf, text);
        self.buf.extend_from_slice(b"]\n");
    }

    /// A resize event (`r`, `COLSxROWS`).
    fn resize(&mut self, cols: u16, rows: u16) {
        self.line("r", &format!("{cols}x{rows}"));
    }

    /// Writes what is buffered when it is due; an error means the recording failed.
    fn tick(&mut self) -> Result<(), String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.len() >= FLUSH_BYTES
            || (!self.buf.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY)
        {
            self.flush().map_err(|e| {
                let msg = format!(
                    "the recording {} cannot be written: {e}",
                    self.path.display()
                );
                self.failed = Some(msg.clone());
                msg
            })?;
        }
        Ok(())
    }

    /// Writes what is buffered now; an error means the recording failed.
    fn flush_now(&mut self) -> Result<(), String> {
        if self.buf.is_empty() && self.failed.is_none() {
            return Ok(());
        }
        self.last_flush = Instant::now() - FLUSH_EVERY;
        self.tick()
    }

    /// Writes the buffer; the chain gets exactly the bytes that reached the file.
    fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match self.file.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.hasher.update(&self.buf[..done]);
        self.buf.drain(..done);
        result
    }

    /// Flushes, syncs, and writes the final status over the status file.
    fn finish(mut self, why: &End) -> Result<(), ()> {
        let flushed = if self.failed.is_none() {
            self.flush().and_then(|()| self.file.sync_data())
        } else {
            Ok(())
        };
        let why = match (flushed, why) {
            (Err(e), _) => End::Failed(format!(
                "the recording {} cannot be written: {e}",
                self.path.display()
            )),
            (Ok(()), End::Failed(e)) => End::Failed(e.clone()),
            (Ok(()), End::Exited) => End::Exited,
            (Ok(()), End::Signalled(s)) => End::Signalled(*s),
        };
        let text = format!(
            "{} {} bytes={}",
            why.text(self.status),
            recording::format_sha256(&self.hasher.clone().finish()),
            self.hasher.bytes()
        );
        let _ = self
            .end
            .write_all_at(&padded(&text), 0)
            .and_then(|()| self.end.sync_data());
        match why {
            End::Failed(_) => Err(()),
            _ => Ok(()),
        }
    }
}

/// `text` cut to fit and padded with spaces to [`END_FILE_BYTES`] (ending in a newline).
fn padded(text: &str) -> Vec<u8> {
    let mut v: Vec<u8> = text.bytes().take(END_FILE_BYTES - 1).collect();
    v.resize(END_FILE_BYTES - 1, b' ');
    v.push(b'\n');
    v
}

/// The text of `carry` + `data` up to an incomplete UTF-8 sequence at the end (kept in
/// `carry` for the next piece); invalid bytes become U+FFFD.
fn take_utf8(carry: &mut Vec<u8>, data: &[u8]) -> String {
    carry.extend_from_slice(data);
    let mut out = String::with_capacity(carry.len());
    let mut rest: &[u8] = carry;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *carry = keep;
    out
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

/// Writes all of `data` to the non-blocking `f`, waiting while it is full.
fn write_all_waiting(mut f: &File, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match f.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = pty::poll(&[(f.as_fd(), libc::POLLOUT)], 100);
            }
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

/// Tells the user on the session's terminal (or stderr) why the session ends.
fn tell(out: &mut impl Write, msg: &str) {
    let _ = write!(out, "\r\nbreakglass: {msg}\r\n");
    let _ = out.flush();
}

fn run_pty(cast: &mut Cast, args: &Args, (cols, rows): (u16, u16)) -> (Option<ExitStatus>, End) {
    let fail = |cast: &mut Cast, e: String| {
        cast.failed.get_or_insert(e.clone());
        (None, End::Failed(e))
    };
    let signals = match pty::signal_fd(&SIGNALS) {
        Ok(s) => s,
        Err(e) => return fail(cast, format!("cannot watch signals: {e}")),
    };
    let (master, slave) = match pty::open_pty() {
        Ok(p) => p,
        Err(e) => return fail(cast, format!("cannot open a pty: {e}")),
    };
    let _ = pty::set_window_size(master.as_fd(), cols, rows);
    let master = File::from(master);
    let _ = pty::set_nonblocking(master.as_fd());
    let mut out = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => return fail(cast, format!("cannot use stdout: {e}")),
    };
    let stdin = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => return fail(cast, format!("cannot use stdin: {e}")),
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
            return fail(cast, format!("cannot start the session's command: {e}"));
        }
    };
    drop(slave);
    let mut buf = vec![0u8; READ_BYTES];
    let mut shown: Vec<u8> = Vec::with_capacity(4 * READ_BYTES);
    let mut stdin_open = true;
    let mut exited: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    let mut end = End::Exited;
    loop {
        if let Err(e) = cast.tick() {
            tell(
                &mut out,
                &format!("recording failed ({e}); this session ends now."),
            );
            end_child(&mut child);
            end = End::Failed(e);
            break;
        }
        if let Some(t) = drain_until
            && Instant::now() >= t
        {
            break;
        }
        let mut fds = vec![
            (master.as_fd(), libc::POLLIN),
            (signals.as_fd(), libc::POLLIN),
        ];
        if stdin_open {
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
        if ready[0] != 0 {
            // Everything the pty holds now (a few reads at most), shown at once and
            // recorded as one event.
            let mut over = false;
            for _ in 0..16 {
                match read_some(&master, &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = out.write_all(&buf[..n]);
                        shown.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // EIO: every slave fd is closed; the session is over.
                    _ => {
                        over = true;
                        break;
                    }
                }
            }
            if !shown.is_empty() {
                cast.event("o", 0, &shown);
                shown.clear();
                if drain_until.is_some() {
                    drain_until = Some(Instant::now() + Duration::from_millis(100));
                }
            }
            if over {
                break;
            }
        }
        if ready[1] != 0 {
            while let Ok(Some(sig)) = pty::read_signal(signals.as_fd()) {
                match sig {
                    libc::SIGWINCH => {
                        if let Ok((c, r)) = pty::window_size(stdin.as_fd()) {
                            let _ = pty::set_window_size(master.as_fd(), c, r);
                            cast.resize(c, r);
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
        if stdin_open && ready.get(2).is_some_and(|r| *r != 0) {
            match read_some(&stdin, &mut buf) {
                Ok(n) if n > 0 => {
                    // What the user saw before typing is on disk before the keys act
                    // (a `kill -9` of the recorder loses nothing already shown).
                    if let Err(e) = cast.flush_now() {
                        tell(
                            &mut out,
                            &format!("recording failed ({e}); this session ends now."),
                        );
                        end_child(&mut child);
                        end = End::Failed(e);
                        break;
                    }
                    if args.input {
                        cast.event("i", 1, &buf[..n]);
                    }
                    if write_all_waiting(&master, &buf[..n]).is_err() {
                        break;
                    }
                }
                _ => stdin_open = false,
            }
        }
    }
    drop(raw);
    let status = exited.or_else(|| child.wait().ok());
    cast.status = status;
    (status, end)
}

fn run_pipes(cast: &mut Cast, args: &Args) -> (Option<ExitStatus>, End) {
    let signals = match pty::signal_fd(&SIGNALS) {
        Ok(s) => s,
        Err(e) => return (None, End::Failed(format!("cannot watch signals: {e}"))),
    };
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
    let mut child_in = child.stdin.take();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        end_child(&mut child);
        return (None, End::Failed("the command's pipes are missing".into()));
    };
    let (mut out, mut err) = (
        Some(File::from(std::os::fd::OwnedFd::from(out))),
        Some(File::from(std::os::fd::OwnedFd::from(err))),
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
    let mut stdin_open = true;
    let mut end = End::Exited;
    while out.is_some() || err.is_some() {
        if let Err(e) = cast.tick() {
            tell(
                &mut stderr,
                &format!("recording failed ({e}); this session ends now."),
            );
            end_child(&mut child);
            end = End::Failed(e);
            break;
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
        if stdin_open && child_in.is_some() {
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
                            cast.event("o", 0, &buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        _ => *pipe = None,
                    }
                }
                _ => match read_some(&stdin, &mut buf) {
                    Ok(n) if n > 0 => {
                        if args.input {
                            cast.event("i", 1, &buf[..n]);
                        }
                        if child_in
                            .as_mut()
                            .is_some_and(|c| c.write_all(&buf[..n]).is_err())
                        {
                            child_in = None;
                        }
                    }
                    _ => {
                        stdin_open = false;
                        child_in = None;
                    }
                },
            }
        }
    }
    drop(child_in);
    let status = child.wait().ok();
    cast.status = status;
    (status, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_reads_is_joined_and_invalid_bytes_are_replaced() {
        let mut carry = Vec::new();
        let euro = "€".as_bytes();
        assert_eq!(take_utf8(&mut carry, &[b'a', euro[0]]), "a");
        assert_eq!(take_utf8(&mut carry, &euro[1..]), "€");
        assert!(carry.is_empty());
        assert_eq!(take_utf8(&mut carry, &[b'x', 0xff, b'y']), "x\u{FFFD}y");
    }

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

    #[test]
    fn the_status_file_is_always_the_same_size() {
        assert_eq!(padded("x").len(), END_FILE_BYTES);
        assert_eq!(
            padded(&"y".repeat(2 * END_FILE_BYTES)).len(),
            END_FILE_BYTES
        );
    }
}
