//! Session recordings for auditors: `audit recording SESSION --out FILE.cast` (export),
//! `audit play SESSION` (replay in the terminal) and the recording part of `audit verify`.
//!
//! Nothing the daemon says is trusted unchecked: the log is read and checked against its
//! signed checkpoint first ([`CheckedLog`]), and a recording's bytes are hashed as they
//! arrive and compared with the digest the session's close record put in that log (size
//! and chain hash, `breakglass_proto::recording`). A file that does not match is not kept.
//!
//! `play` writes the recorded terminal output as it was (escape sequences included): that
//! is its job, and the only printer of this CLI that does not escape untrusted text.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{BufRead as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::connect::Channel;
use breakglass_proto::audit::fields::rfc3339;
use breakglass_proto::audit::recordings::{
    RECORDINGS_DIR, RecordingIndex, STORED_DIR, SessionRecording, check_recording, stored_name,
};
use breakglass_proto::recording::ChainHasher;
use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::GetRecordingRequest;
use breakglass_proto::v1::audit_client::AuditClient;
use clap::Args;

use crate::connect::Answer;
use crate::error::CliError;
use crate::settings::Target;

use super::fetch::{CheckedLog, audit_client};

/// `breakglass audit recording`.
#[derive(Debug, Args)]
#[command(after_help = "\
The recording is fetched from the daemon and checked against the session's close record \
in the audit log (its size and chain hash), which is itself checked against the log's \
signed checkpoint; a recording that does not match is not written. The file is the \
asciicast v2 the host recorded, unchanged: `asciinema play FILE.cast` and `asciinema cat \
FILE.cast` play it.")]
pub struct RecordingArgs {
    /// The session id (as `review list` and `audit show` print it)
    #[arg(value_name = "SESSION")]
    pub session: String,
    /// Where to write the recording (an asciicast v2 .cast file; replaced if it exists)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `breakglass audit play`.
#[derive(Debug, Args)]
#[command(after_help = "\
play writes the recorded terminal output to your terminal as it was recorded, escape \
sequences included (that is its job): it is the only breakglass command that prints \
untrusted text raw; every other one escapes it. Watch a recording you do not trust \
through `audit recording --out` and `asciinema cat`, or in a terminal you can reset.

The recording is checked against the session's close record in the audit log before \
anything is played.")]
pub struct PlayArgs {
    /// The session id (as `review list` and `audit show` print it)
    #[arg(value_name = "SESSION")]
    pub session: String,
    /// Play this many times faster (0.1 to 100)
    #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// Cut pauses longer than this many seconds to this long (default: the recording's
    /// idle_time_limit, else none)
    #[arg(long, value_name = "S", value_parser = parse_idle)]
    pub idle_limit: Option<f64>,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a speed from 0.1 to 100")),
    }
}

fn parse_idle(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds above 0")),
    }
}

/// The log's recorded sessions, read from the daemon and checked against its checkpoint.
async fn checked_index(
    client: &mut AuditClient<Channel>,
    target: &Target,
) -> Result<RecordingIndex, CliError> {
    let (_, events) = CheckedLog::open(client, target).await?;
    Ok(RecordingIndex::of(events.iter().map(|(i, e)| (*i, e))))
}

/// The recorded session `session` of `index`, or why there is nothing to fetch.
fn stored<'a>(index: &'a RecordingIndex, session: &str) -> Result<&'a SessionRecording, CliError> {
    let r = index.get(session).ok_or_else(|| {
        CliError::Usage(format!(
            "the audit log holds no recorded session {}: check the id with `breakglass review list` or `audit show`",
            esc(session)
        ))
    })?;
    if let Some((at, why)) = &r.deleted {
        return Err(CliError::Usage(format!(
            "the recording of session {} was deleted on {} ({})",
            esc(session),
            rfc3339(at.unix_seconds()),
            esc(why)
        )));
    }
    if r.stored.is_none() {
        return Err(CliError::Usage(format!(
            "the recording of session {} is not on the daemon yet: its host uploads it with `breakglass host ship`",
            esc(session)
        )));
    }
    Ok(r)
}

/// Downloads the recording of `r` into `sink`, hashing it as it arrives; fails (naming the
/// session) unless it is exactly what the log commits to.
pub(super) async fn download(
    client: &mut AuditClient<Channel>,
    target: &Target,
    r: &SessionRecording,
    sink: &mut impl Write,
) -> Result<(), CliError> {
    let mut stream = client
        .get_recording(GetRecordingRequest {
            session: r.session_id.clone(),
        })
        .await
        .answer(target)?;
    let mismatch = |why: String| {
        CliError::Verification(format!(
            "the recording of session {} does NOT match its audit record (event {}): {why}",
            esc(&r.session_id),
            r.committed_at
        ))
    };
    let mut hasher = ChainHasher::new();
    let mut first = true;
    while let Some(m) = stream
        .message()
        .await
        .map_err(|s| crate::connect::failure(target, s))?
    {
        if first && m.sha256 != r.digest.sha256_text() {
            return Err(mismatch(format!(
                "the daemon serves {} for it",
                esc(&m.sha256)
            )));
        }
        first = false;
        if hasher.bytes() + m.data.len() as u64 > r.digest.bytes {
            return Err(mismatch(format!(
                "the daemon sent more than the {} bytes the record says",
                r.digest.bytes
            )));
        }
        hasher.update(&m.data);
        sink.write_all(&m.data)
            .map_err(|e| CliError::Io(format!("writing the recording: {e}")))?;
    }
    let bytes = hasher.bytes();
    let hash = hasher.finish();
    if bytes != r.digest.bytes {
        return Err(mismatch(format!(
            "it is {bytes} bytes, but the record says {}",
            r.digest.bytes
        )));
    }
    if hash != r.digest.sha256 {
        return Err(mismatch(format!(
            "its chain hash is sha256:{}, but the record says {}",
            stored_name(&hash),
            r.digest.sha256_text()
        )));
    }
    Ok(())
}

/// Fetches the recording of `session` into `out` (through a temporary file beside it, so
/// that a file that does not verify is never left there). Returns the report to print.
pub async fn export(target: &Target, session: &str, out: &Path) -> Result<String, CliError> {
    let mut client = audit_client(target)?;
    let index = checked_index(&mut client, target).await?;
    let r = stored(&index, session)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", out.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        download(&mut client, target, r, &mut w).await?;
        w.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(out).map_err(|e| io(e.error))?;
    Ok(format!(
        "wrote the recording of session {} ({} bytes, {}) to {}: it matches the session's audit record (event {})\n",
        esc(session),
        r.digest.bytes,
        humantime::format_duration(Duration::from_millis(r.digest.duration_ms)),
        out.display(),
        r.committed_at
    ))
}

/// Fetches, checks and replays the recording of `args.session` on stdout.
pub async fn play(target: &Target, args: &PlayArgs) -> Result<(), CliError> {
    let mut client = audit_client(target)?;
    let index = checked_index(&mut client, target).await?;
    let r = stored(&index, &args.session)?;
    let io = |e: std::io::Error| CliError::Io(format!("temporary file: {e}"));
    let mut tmp = tempfile::tempfile().map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(&mut tmp);
        download(&mut client, target, r, &mut w).await?;
        w.flush().map_err(io)?;
    }
    use std::io::Seek as _;
    tmp.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    let speed = args.speed;
    let idle = args.idle_limit;
    tokio::task::spawn_blocking(move || {
        replay(
            std::io::BufReader::new(tmp),
            &mut std::io::stdout().lock(),
            speed,
            idle,
            std::thread::sleep,
        )
    })
    .await
    .map_err(|e| CliError::Io(format!("replay: {e}")))?
}

/// Longest line of a recording read (a header or one event).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Writes the output events of an asciicast v2 recording to `out`, waiting between them
/// (`sleep`) as recorded, `speed` times faster, pauses cut to `idle_limit` seconds (or the
/// header's `idle_time_limit`).
pub fn replay(
    mut input: impl std::io::BufRead,
    out: &mut impl Write,
    speed: f64,
    idle_limit: Option<f64>,
    mut sleep: impl FnMut(Duration),
) -> Result<(), CliError> {
    let bad = |line: usize, why: String| {
        CliError::Data(format!(
            "the recording is not asciicast v2: line {line}: {why}"
        ))
    };
    let mut line = String::new();
    let mut n = 0usize;
    let mut read = |line: &mut String| -> Result<bool, CliError> {
        line.clear();
        let got = std::io::Read::take(&mut input, MAX_LINE as u64)
            .read_line(line)
            .map_err(|e| CliError::Io(format!("reading the recording: {e}")))?;
        Ok(got > 0)
    };
    if !read(&mut line)? {
        return Err(bad(1, "it is empty".into()));
    }
    n += 1;
    let header: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| bad(n, format!("header: {e}")))?;
    if header.get("version").and_then(serde_json::Value::as_u64) != Some(2) {
        return Err(bad(n, "the header's version is not 2".into()));
    }
    let idle = idle_limit.or_else(|| {
        header
            .get("idle_time_limit")
            .and_then(serde_json::Value::as_f64)
    });
    let mut last = 0.0f64;
    let io = |e: std::io::Error| CliError::Io(format!("writing to the terminal: {e}"));
    while read(&mut line)? {
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let ev: (f64, String, String) =
            serde_json::from_str(&line).map_err(|e| bad(n, format!("event: {e}")))?;
        let (t, kind, data) = ev;
        if kind != "o" {
            continue;
        }
        let mut pause = (t - last).max(0.0);
        if let Some(limit) = idle {
            pause = pause.min(limit);
        }
        last = t;
        if pause > 0.0 {
            // A time far beyond any session (up to 1.8e308 s parses) is no pause a clock
            // can count: refused, not a panic of the player.
            let wait = Duration::try_from_secs_f64(pause / speed).map_err(|_| {
                bad(
                    n,
                    format!(
                        "event time {t} s: a pause of {pause} s is longer than a player can wait"
                    ),
                )
            })?;
            out.flush().map_err(io)?;
            sleep(wait);
        }
        out.write_all(data.as_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// What checking the recordings of a log found.
#[derive(Debug, Default)]
pub struct RecordingsChecked {
    /// Recordings that match their record.
    pub ok: usize,
    /// Lines to print (deleted, not uploaded yet, not checked).
    pub notes: Vec<String>,
    /// Recordings that do not match, or are missing (each names its session).
    pub failures: Vec<String>,
}

impl RecordingsChecked {
    /// The report lines, and an error naming every failed session.
    pub fn finish(self, out: &mut String) -> Result<(), CliError> {
        let _ = writeln!(
            out,
            "  recordings: {} stored recording(s) match their session records",
            self.ok
        );
        for n in &self.notes {
            let _ = writeln!(out, "  {n}");
        }
        if self.failures.is_empty() {
            return Ok(());
        }
        let mut msg = format!(
            "{} recording(s) do NOT verify against the audit log:",
            self.failures.len()
        );
        for f in &self.failures {
            msg.push_str("\n  ");
            msg.push_str(f);
        }
        Err(CliError::Verification(msg))
    }

    /// Notes a recording that is not stored (deleted, or not uploaded yet).
    fn unstored(&mut self, r: &SessionRecording) -> bool {
        if let Some((at, why)) = &r.deleted {
            let by = if why.starts_with("retention") {
                "by retention".to_owned()
            } else {
                format!("({})", esc(why))
            };
            self.notes.push(format!(
                "recording of session {} deleted on {} {by}",
                esc(&r.session_id),
                rfc3339(at.unix_seconds())
            ));
            return true;
        }
        if r.stored.is_none() {
            self.notes.push(format!(
                "recording of session {} not uploaded yet (its record, event {}, commits to {})",
                esc(&r.session_id),
                r.committed_at,
                r.digest
            ));
            return true;
        }
        false
    }
}

/// Checks every stored recording of `index` against the files of `dir` (a copy of the
/// daemon's `<audit dir>/recordings`).
#[must_use]
pub fn check_dir(index: &RecordingIndex, dir: &Path) -> RecordingsChecked {
    let mut c = RecordingsChecked::default();
    for r in index.sessions.values() {
        if c.unstored(r) {
            continue;
        }
        let path = dir.join(STORED_DIR).join(stored_name(&r.digest.sha256));
        let checked = std::fs::File::open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|f| check_recording(std::io::BufReader::new(f), &r.digest));
        match checked {
            Ok(()) => c.ok += 1,
            Err(why) => c.failures.push(format!(
                "session {} (host {}, grant {}): the stored recording does not match its audit record (event {}): {why}",
                esc(&r.session_id),
                esc(&r.host),
                r.grant_id,
                r.committed_at
            )),
        }
    }
    c
}

/// The recordings directory of an offline check: `--recordings DIR`, else
/// `<log dir>/recordings` when there is one.
#[must_use]
pub fn recordings_dir(log_dir: &Path, given: Option<&Path>) -> Option<PathBuf> {
    given
        .map(Path::to_owned)
        .or_else(|| Some(log_dir.join(RECORDINGS_DIR)).filter(|p| p.is_dir()))
}

/// Checks every stored recording of `index` by fetching it from the daemon.
pub async fn check_remote(
    client: &mut AuditClient<Channel>,
    target: &Target,
    index: &RecordingIndex,
) -> Result<RecordingsChecked, CliError> {
    let mut c = RecordingsChecked::default();
    for r in index.sessions.values() {
        if c.unstored(r) {
            continue;
        }
        match download(client, target, r, &mut std::io::sink()).await {
            Ok(()) => c.ok += 1,
            Err(CliError::Verification(why)) => c.failures.push(why),
            Err(CliError::Rpc { code: tonic::Code::NotFound, message }) => c.failures.push(format!(
                "session {}: the daemon has no stored recording although the log says it stored one (event {}): {}",
                esc(&r.session_id),
                r.stored.map_or(0, |(_, i)| i),
                esc(&message)
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(c)
}

/// Not checked: the log has stored recordings but no directory of them was given.
#[must_use]
pub fn not_checked(index: &RecordingIndex) -> RecordingsChecked {
    let stored = index
        .sessions
        .values()
        .filter(|r| r.stored.is_some() && r.deleted.is_none())
        .count();
    let mut c = RecordingsChecked::default();
    if stored > 0 {
        c.notes.push(format!(
            "{stored} stored recording(s) NOT checked: no recordings/ directory beside the log; give --recordings DIR"
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAST: &str = "{\"version\": 2, \"width\": 80, \"height\": 24, \"idle_time_limit\": 1.5}\n\
        [0.5, \"o\", \"$ \"]\n\
        [0.7, \"i\", \"ls\\r\"]\n\
        [10.7, \"o\", \"ls\\r\\n\\u001b[1mfile\\u001b[0m\\r\\n\"]\n\
        [10.8, \"r\", \"100x30\"]\n";

    fn played(speed: f64, idle: Option<f64>) -> (Vec<u8>, Vec<Duration>) {
        let mut out = Vec::new();
        let mut waits = Vec::new();
        replay(CAST.as_bytes(), &mut out, speed, idle, |d| waits.push(d)).unwrap();
        (out, waits)
    }

    #[test]
    fn output_events_are_written_raw_with_their_pauses() {
        let (out, waits) = played(1.0, None);
        // Raw: the escape sequences of the session reach the terminal as recorded.
        assert_eq!(out, b"$ ls\r\n\x1b[1mfile\x1b[0m\r\n");
        // The header's idle_time_limit cuts the 10 s pause to 1.5 s; input and resize are
        // not played.
        assert_eq!(
            waits,
            [Duration::from_millis(500), Duration::from_millis(1500)]
        );
    }

    #[test]
    fn speed_and_idle_limit_shorten_the_pauses() {
        let (_, waits) = played(2.0, Some(4.0));
        assert_eq!(
            waits,
            [Duration::from_millis(250), Duration::from_millis(2000)]
        );
    }

    #[test]
    fn what_is_not_asciicast_v2_is_refused_naming_the_line() {
        let mut out = Vec::new();
        let e = replay(&b"{\"version\": 1}\n"[..], &mut out, 1.0, None, |_| {}).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = replay(
            &b"{\"version\": 2}\n[1.0, \"o\"]\n"[..],
            &mut out,
            1.0,
            None,
            |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(replay(&b""[..], &mut out, 1.0, None, |_| {}).is_err());
    }

    /// Seen while writing the `asciicast` fuzz target: an event time too large for a `Duration`
    /// (here 1e300 s, after 0.5 s) made the player panic in `Duration::from_secs_f64`.
    #[test]
    fn a_pause_longer_than_a_clock_counts_is_refused_not_a_panic() {
        for (cast, idle) in [
            (
                "{\"version\": 2}\n[0.5, \"o\", \"a\"]\n[1e300, \"o\", \"b\"]\n",
                None,
            ),
            (
                "{\"version\": 2}\n[-1.7e308, \"o\", \"a\"]\n[1.7e308, \"o\", \"b\"]\n",
                None,
            ),
            (
                "{\"version\": 2, \"idle_time_limit\": 1e300}\n[1e300, \"o\", \"b\"]\n",
                None,
            ),
        ] {
            let mut out = Vec::new();
            let mut waits = Vec::new();
            let e = replay(cast.as_bytes(), &mut out, 0.1, idle, |d| waits.push(d)).unwrap_err();
            assert!(
                e.to_string().contains("line 3") || e.to_string().contains("line 2"),
                "{e}"
            );
            assert!(
                e.to_string().contains("longer than a player can wait"),
                "{e}"
            );
        }
        // The same times under an idle limit play, each pause cut to it.
        let mut out = Vec::new();
        let mut waits = Vec::new();
        let cast = "{\"version\": 2}\n[0.5, \"o\", \"a\"]\n[1e300, \"o\", \"b\"]\n";
        replay(cast.as_bytes(), &mut out, 1.0, Some(2.0), |d| waits.push(d)).unwrap();
        assert_eq!(out, b"ab");
        assert_eq!(waits, [Duration::from_millis(500), Duration::from_secs(2)]);
    }
}
