//! The recording file and the thread that writes it. The relay (the loop that moves the
//! session's bytes between the terminal and the command) only hands each piece it showed to
//! [`Recording`] and goes on; the asciicast encoding and the file writes run on a thread
//! of their own, so the session's output does not wait for them. What waits is
//! bounded: at most [`QUEUE_PIECES`] pieces are in flight, and a keystroke waits until what
//! was shown before it is in the file ([`Recording::flush_now`]).
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_proto::recording::{
    self, CAST_SUFFIX, END_BYTES, END_FILE_BYTES, END_RUNNING, RECORDING_ENV,
};
use breakglass_proto::text;

use crate::recording::MIN_FREE_BYTES;
use crate::system::pty;

/// Most time between a write to the recording and its flush to the file: a failing
/// file system is noticed within this.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Buffered recording bytes that trigger a flush at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Bytes written to the file that start its writeback to disk (without waiting): the
/// final `fdatasync` then has at most this much left, however long the session was, and
/// the disk writes are spread over the session.
pub const WRITEBACK_BYTES: u64 = 4 << 20;
/// Pieces handed to the writing thread and not yet taken: the relay waits beyond this
/// (a recording that cannot keep up slows the session; it never loses output or grows).
pub const QUEUE_PIECES: usize = 64;
/// Output read within this time of the first unsent read joins its event (one event, one
/// wake-up of the writing thread, instead of one per read of the pty: a command that
/// writes fast is read 4 KiB at a time). Replay timing is exact to this.
pub const JOIN_WITHIN: Duration = Duration::from_millis(10);
/// Largest event made by joining reads.
pub const JOIN_BYTES: usize = 64 * 1024;

/// How the recorded session ended.
#[derive(Debug)]
pub enum End {
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

/// The first failure of the recording, seen by the relay and the writing thread.
type Failure = Arc<Mutex<Option<String>>>;

fn failure_of(f: &Failure) -> Option<String> {
    f.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn set_failure(f: &Failure, e: String) {
    f.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert(e);
}

/// The recording file being written (owned by the writing thread while the session runs).
pub struct Cast {
    file: File,
    end: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// Bytes that reached the file, and the first of them whose writeback is not started.
    written: u64,
    writeback_from: u64,
    start: Instant,
    last_flush: Instant,
    /// Set once a write failed: nothing more is written.
    failed: Failure,
    /// Trailing bytes of an incomplete UTF-8 sequence, per stream (output, input).
    carry: [Vec<u8>; 2],
}

impl Cast {
    /// Creates the recording (new, never an existing file) and its status file, checks
    /// the space left, and writes the header, for grant `grant` on a terminal of
    /// `cols`×`rows`.
    pub fn create(path: &Path, grant: &str, (cols, rows): (u16, u16)) -> Result<Self, String> {
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
            written: 0,
            writeback_from: 0,
            start: Instant::now(),
            last_flush: Instant::now(),
            failed: Arc::default(),
            carry: [Vec::new(), Vec::new()],
        };
        let env_var = |k: &str| std::env::var(k).unwrap_or_default();
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "title": format!("breakglass grant {grant}"),
            "env": { "SHELL": env_var("SHELL"), "TERM": env_var("TERM") },
        });
        cast.buf.extend_from_slice(header.to_string().as_bytes());
        cast.buf.push(b'\n');
        cast.flush()
            .map_err(|e| format!("cannot write the recording {}: {e}", path.display()))?;
        Ok(cast)
    }

    /// Appends one event (`o`, `i`) of the bytes `data` of a stream, at `t` seconds.
    fn event(&mut self, t: f64, code: &str, stream: usize, data: &[u8]) {
        // The common case, whole UTF-8 and nothing carried: no copy.
        if self.carry[stream].is_empty()
            && let Ok(text) = std::str::from_utf8(data)
        {
            return self.line(t, code, text);
        }
        let text = take_utf8(&mut self.carry[stream], data);
        if text.is_empty() {
            return;
        }
        self.line(t, code, &text);
    }

    fn line(&mut self, t: f64, code: &str, text: &str) {
        if text.is_empty() || failure_of(&self.failed).is_some() {
            return;
        }
        let _ = write!(self.buf, "[{t:.6}, \"{code}\", ");
        json_string(&mut self.buf, text);
        self.buf.extend_from_slice(b"]\n");
    }

    /// Writes what is buffered when it is due (or at once with `now`); a failure is kept
    /// for the relay to see.
    fn tick(&mut self, now: bool) {
        if failure_of(&self.failed).is_some() || self.buf.is_empty() {
            return;
        }
        let due = now || self.buf.len() >= FLUSH_BYTES || self.last_flush.elapsed() >= FLUSH_EVERY;
        if due && let Err(e) = self.flush() {
            set_failure(
                &self.failed,
                format!(
                    "the recording {} cannot be written: {e}",
                    self.path.display()
                ),
            );
        }
    }

    /// Writes the buffer, and starts the writeback of every [`WRITEBACK_BYTES`] written.
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
        self.buf.drain(..done);
        self.written += done as u64;
        if self.written - self.writeback_from >= WRITEBACK_BYTES {
            // Only a head start for the final `fdatasync`, which reports any failure.
            let _ = pty::start_writeback(
                self.file.as_fd(),
                self.writeback_from,
                self.written - self.writeback_from,
            );
            self.writeback_from = self.written;
        }
        result
    }

    /// Flushes, syncs, and writes the final status over the status file; `Err` when the
    /// recording failed.
    fn finish(mut self, why: &End, status: Option<ExitStatus>) -> Result<(), ()> {
        let flushed = match failure_of(&self.failed) {
            None => self.flush().and_then(|()| self.file.sync_data()),
            Some(_) => Ok(()),
        };
        let why = match (flushed, why, failure_of(&self.failed)) {
            (Err(e), _, _) => End::Failed(format!(
                "the recording {} cannot be written: {e}",
                self.path.display()
            )),
            (Ok(()), End::Failed(e), _) => End::Failed(e.clone()),
            (Ok(()), _, Some(e)) => End::Failed(e),
            (Ok(()), End::Exited, None) => End::Exited,
            (Ok(()), End::Signalled(s), None) => End::Signalled(*s),
        };
        // The count last, and never cut off by `padded`.
        let count = format!(" {END_BYTES}{}", self.written);
        let text =
            text::fit_free_text(&why.text(status), END_FILE_BYTES - 1 - count.len()) + &count;
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

/// What the relay hands to the writing thread.
enum Piece {
    /// An event: seconds since the start, code, stream (0 output, 1 input), bytes.
    Event(f64, &'static str, usize, Vec<u8>),
    /// Write everything before this now, then answer.
    Flush(SyncSender<()>),
}

/// The relay's handle on a recording being written by its own thread.
pub struct Recording {
    queue: Option<SyncSender<Piece>>,
    thread: Option<JoinHandle<Cast>>,
    failed: Failure,
    start: Instant,
    /// Pieces sent since the last [`Recording::flush_now`].
    unflushed: bool,
    /// The event being joined (not sent yet) and when its first read came.
    joining: Option<(Instant, Piece)>,
}

impl Recording {
    /// Starts the writing thread for `cast`. The thread inherits the caller's signal mask:
    /// start it after the signals the relay reads are blocked.
    pub fn start(cast: Cast) -> io::Result<Self> {
        let (queue, pieces) = mpsc::sync_channel::<Piece>(QUEUE_PIECES);
        let failed = Arc::clone(&cast.failed);
        let start = cast.start;
        let thread = std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || {
                let mut cast = cast;
                loop {
                    match pieces.recv_timeout(FLUSH_EVERY) {
                        Ok(Piece::Event(t, code, stream, data)) => {
                            cast.event(t, code, stream, &data);
                            cast.tick(false);
                        }
                        Ok(Piece::Flush(done)) => {
                            cast.tick(true);
                            let _ = done.send(());
                        }
                        Err(RecvTimeoutError::Timeout) => cast.tick(false),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                cast
            })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            failed,
            start,
            unflushed: false,
            joining: None,
        })
    }

    fn send(&mut self, piece: Piece) {
        let sent = self.queue.as_ref().is_some_and(|q| q.send(piece).is_ok());
        if !sent {
            self.fail("the recording's writer stopped".into());
        }
    }

    /// Records `data` (taken) as an event of `code` (`i`, `r`) on `stream`, timed now,
    /// after the output joined so far. Output goes through [`Recording::output`].
    pub fn event(&mut self, code: &'static str, stream: usize, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        self.unflushed = true;
        self.send_joined();
        let t = self.start.elapsed().as_secs_f64();
        self.send(Piece::Event(t, code, stream, data));
    }

    /// Records output `data` (copied) as an `o` event, timed now; output that follows
    /// within [`JOIN_WITHIN`] joins it ([`Recording::tick`] sends it after that).
    pub fn output(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.unflushed = true;
        if let Some((since, Piece::Event(_, "o", 0, held))) = &mut self.joining
            && since.elapsed() < JOIN_WITHIN
            && held.len() + data.len() <= JOIN_BYTES
        {
            held.extend_from_slice(data);
            return;
        }
        self.send_joined();
        // Room for the reads that may join it: no reallocation on the way.
        let mut held = Vec::with_capacity(JOIN_BYTES.max(data.len()));
        held.extend_from_slice(data);
        let now = Instant::now();
        let t = now.duration_since(self.start).as_secs_f64();
        self.joining = Some((now, Piece::Event(t, "o", 0, held)));
    }

    /// Sends the event being joined once [`JOIN_WITHIN`] has passed since its first read.
    /// The relay calls this on every turn of its loop (at least every poll timeout).
    pub fn tick(&mut self) {
        if self
            .joining
            .as_ref()
            .is_some_and(|(since, _)| since.elapsed() >= JOIN_WITHIN)
        {
            self.send_joined();
        }
    }

    fn send_joined(&mut self) {
        if let Some((_, piece)) = self.joining.take() {
            self.send(piece);
        }
    }

    /// A resize event (`r`, `COLSxROWS`).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.event("r", 0, format!("{cols}x{rows}").into_bytes());
    }

    /// The failure that ends the session, if the recording failed.
    pub fn check(&self) -> Result<(), String> {
        failure_of(&self.failed).map_or(Ok(()), Err)
    }

    /// Marks the recording failed (the session ends).
    pub fn fail(&self, e: String) {
        set_failure(&self.failed, e);
    }

    /// Waits until everything recorded so far is in the file; an error means the
    /// recording failed.
    pub fn flush_now(&mut self) -> Result<(), String> {
        self.send_joined();
        if self.unflushed {
            self.unflushed = false;
            let (done, wait) = mpsc::sync_channel(1);
            self.send(Piece::Flush(done));
            if wait.recv().is_err() {
                self.fail("the recording's writer stopped".into());
            }
        }
        self.check()
    }

    /// Stops the writing thread and finishes the file (flush, sync, final status);
    /// `Err` when the recording failed.
    pub fn finish(mut self, why: &End, status: Option<ExitStatus>) -> Result<(), ()> {
        self.send_joined();
        drop(self.queue.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(cast)) => cast.finish(why, status),
            _ => Err(()),
        }
    }
}

/// Bytes scanned at once for one that needs escaping (the compiler turns the test of a
/// block into a few vector instructions).
const CLEAN_BLOCK: usize = 32;

/// Whether the JSON string escape of `b` is not `b` itself.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `text` to `out` as a JSON string, byte for byte what `serde_json` writes (`\"`,
/// `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`, the rest as is).
/// Terminal output is mostly runs of bytes that need no escape: those are found a block at
/// a time and copied whole. (Public for the `asciicast` fuzz target, which checks it
/// against `serde_json` on arbitrary session output.)
pub fn json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(block) = bytes.get(i..i + CLEAN_BLOCK)
            && !block.iter().fold(false, |any, &b| any | needs_escape(b))
        {
            i += CLEAN_BLOCK;
            continue;
        }
        let b = bytes[i];
        if !needs_escape(b) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
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
    fn json_strings_are_written_as_serde_json_writes_them() {
        let mut texts: Vec<String> = (0u32..0x80)
            .map(|c| char::from_u32(c).unwrap().to_string())
            .collect();
        texts.push(String::new());
        // Runs longer than a block, with the byte that needs escaping at every offset of a
        // block, and multi-byte characters across block boundaries.
        for at in 0..2 * CLEAN_BLOCK + 3 {
            for special in ["\"", "\\", "\n", "\r\n", "\u{1b}[0m", "\u{7f}", "é€😀"] {
                let mut t = "x".repeat(at);
                t.push_str(special);
                t.push_str(&"€y".repeat(CLEAN_BLOCK));
                texts.push(t);
            }
        }
        let all: String = (0u32..0x800).filter_map(char::from_u32).collect();
        texts.push(all.repeat(3));
        for t in texts {
            let mut ours = Vec::new();
            json_string(&mut ours, &t);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn the_status_file_is_always_the_same_size() {
        assert_eq!(padded("x").len(), END_FILE_BYTES);
        assert_eq!(
            padded(&"y".repeat(2 * END_FILE_BYTES)).len(),
            END_FILE_BYTES
        );
    }

    #[test]
    fn the_status_keeps_its_byte_count_after_a_long_failure_past_the_writeback_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let cast = Cast::create(&path, "g-00000000000000ff", (80, 24)).unwrap();
        let mut rec = Recording::start(cast).unwrap();
        let chunk = "z".repeat(JOIN_BYTES);
        let pieces = (WRITEBACK_BYTES as usize) * 3 / 2 / JOIN_BYTES;
        for _ in 0..pieces {
            rec.output(chunk.as_bytes());
        }
        let why = End::Failed(format!("{}\nsecond line", "w".repeat(2 * END_FILE_BYTES)));
        assert!(rec.finish(&why, None).is_err());
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(bytes > WRITEBACK_BYTES, "{bytes}");
        let end = std::fs::read_to_string(recording::end_path(&path)).unwrap();
        assert_eq!(end.len(), END_FILE_BYTES);
        assert!(end.starts_with("failed: www"), "{end}");
        assert!(!end.trim_end().contains('\n'), "{end}");
        assert_eq!(recording::end_bytes(&end), Some(bytes), "{end}");
        let shown: usize = events(&path).iter().map(|e| e.2.len()).sum();
        assert_eq!(shown, pieces * JOIN_BYTES);
    }

    /// The events of the recording at `path` after its header: (time, code, data).
    fn events(path: &Path) -> Vec<(f64, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v[0].as_f64().unwrap(),
                    v[1].as_str().unwrap().to_owned(),
                    v[2].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_writing_thread_writes_every_piece_in_order_and_the_status_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let cast = Cast::create(&path, "g-00000000000000ff", (80, 24)).unwrap();
        let mut rec = Recording::start(cast).unwrap();
        let mut shown = String::new();
        for i in 0..10_000 {
            let line = format!("line {i}\r\n");
            shown.push_str(&line);
            rec.output(line.as_bytes());
        }
        rec.flush_now().unwrap();
        rec.event("i", 1, b"x".to_vec());
        rec.finish(&End::Exited, None).unwrap();
        let events = events(&path);
        // Reads that follow each other closely are joined into events of at most
        // JOIN_BYTES, in order; the input is an event of its own, last.
        let (last, outputs) = events.split_last().unwrap();
        assert_eq!((last.1.as_str(), last.2.as_str()), ("i", "x"));
        assert!(
            outputs
                .iter()
                .all(|(_, code, data)| code == "o" && data.len() <= JOIN_BYTES)
        );
        assert!(
            outputs.len() > 1 && outputs.len() < 1000,
            "{} events",
            outputs.len()
        );
        assert!(outputs.windows(2).all(|w| w[0].0 <= w[1].0));
        let joined: String = outputs.iter().map(|(_, _, d)| d.as_str()).collect();
        assert_eq!(joined, shown);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let end = std::fs::read_to_string(recording::end_path(&path)).unwrap();
        assert!(end.starts_with("ended: command exited"), "{end}");
        assert_eq!(recording::end_bytes(&end), Some(bytes), "{end}");
    }

    #[test]
    fn output_is_joined_only_within_join_within_and_never_across_a_resize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let cast = Cast::create(&path, "g-00000000000000ff", (80, 24)).unwrap();
        let mut rec = Recording::start(cast).unwrap();
        rec.output(b"a");
        rec.output(b"b");
        std::thread::sleep(JOIN_WITHIN + Duration::from_millis(5));
        rec.tick();
        rec.output(b"c");
        rec.resize(100, 30);
        rec.output(b"d");
        rec.finish(&End::Exited, None).unwrap();
        let got: Vec<(String, String)> = events(&path)
            .into_iter()
            .map(|(_, code, data)| (code, data))
            .collect();
        let want = [("o", "ab"), ("o", "c"), ("r", "100x30"), ("o", "d")];
        assert_eq!(
            got,
            want.map(|(c, d)| (c.to_owned(), d.to_owned())).to_vec()
        );
    }
}
