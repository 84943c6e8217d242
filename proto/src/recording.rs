//! Session recordings: the hash chain over a recording file, and the digest the session's
//! close record carries into the audit log.
//!
//! A recording is an asciicast v2 file written by `breakglass-record` on the host
//! (`<spool>/recordings/<session>.cast`). Its bytes are cut into consecutive chunks of
//! [`CHUNK_BYTES`] (the last may be shorter; an empty file has none) and chained:
//!
//! ```text
//! h_0 = SHA-256("breakglass-recording-v1\n")
//! h_i = SHA-256(h_{i-1} || chunk_i)
//! ```
//!
//! The recording's hash is `h_n`. The PAM module (or the session guard) computes it from
//! the file when the session ends, the session's `close` / `forced_end` record carries it
//! with the size and duration ([`RecordingDigest`]) into the signed log, and whoever holds
//! the file later recomputes it with [`chain_of`]:
//! one changed byte anywhere changes `h_n`. Chunks let a verifier that holds the chunk
//! hashes of a partly uploaded file resume where it stopped; the chain (rather than one
//! SHA-256 over the file) makes each chunk's position part of its hash.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Size of a chain chunk, in bytes.
pub const CHUNK_BYTES: usize = 65_536;

/// What `h_0` is the SHA-256 of: names the format, so that another chain never collides.
pub const CHAIN_DOMAIN: &[u8] = b"breakglass-recording-v1\n";

/// Prefix of a recording hash's text form.
pub const HASH_PREFIX: &str = "sha256:";

/// Name of the folder of recordings inside the host spool directory.
pub const RECORDINGS_DIR: &str = "recordings";

/// Ending of a recording's file name.
pub const CAST_SUFFIX: &str = ".cast";

/// Ending of the recorder's status file beside a recording (`<session>.end`): created
/// with the recording, overwritten in place with how the recorder ended; still
/// [`END_RUNNING`] after the session means the recorder was killed or crashed.
pub const END_SUFFIX: &str = ".end";

/// What the status file says while the recorder runs.
pub const END_RUNNING: &str = "running";

/// What precedes, in the final status, the number of bytes the recorder wrote to the
/// recording (`ended: command exited (exit status: 0) bytes=1234`).
pub const END_BYTES: &str = "bytes=";

/// The number of bytes a final status (see [`END_BYTES`]) says the recorder wrote.
#[must_use]
pub fn end_bytes(status: &str) -> Option<u64> {
    let (_, n) = status.trim_end().rsplit_once(&format!(" {END_BYTES}"))?;
    n.parse().ok()
}

/// Size of the status file: written whole at the start, so that the final status needs
/// no new space on a full file system.
pub const END_FILE_BYTES: usize = 512;

/// The variable of the session's environment (set by `pam_breakglass` through the PAM
/// environment, which sshd hands to the session) naming the recording file the recorder
/// creates.
pub const RECORDING_ENV: &str = "BREAKGLASS_RECORDING";

/// The variable that moves zsh's start-up files: zsh reads `$ZDOTDIR/.zshenv` for every
/// shell, `sh -c` ones included, so `pam_breakglass` sets it to [`NO_ZDOTDIR`] for a recorded
/// session and the recorder removes it again for the session's own shell.
pub const ZDOTDIR: &str = "ZDOTDIR";

/// Where [`ZDOTDIR`] points for the shell that starts the recorder: a directory that does
/// not exist (only root could create it).
pub const NO_ZDOTDIR: &str = "/nonexistent/breakglass";

/// bash started by sshd reads `~/.bashrc` (and `/etc/bash.bashrc`) even for `-c`, but only
/// as a top-level shell: with `SHLVL=1` in its environment it is not one. `pam_breakglass`
/// sets it for a recorded session; the recorder removes it for the session's own shell.
pub const SHELL_LEVEL: (&str, &str) = ("SHLVL", "1");

/// Login shells (file names) that read no file the user can write when sshd runs them
/// with `-c` and the environment above: the only shells a recorded session may have.
/// csh, tcsh and fish read the user's start-up files for every shell and cannot be told
/// not to.
pub const RECORDABLE_SHELLS: &[&str] = &[
    "sh", "dash", "bash", "rbash", "zsh", "ksh", "ksh93", "mksh", "lksh", "posh",
];

/// The status file of the recording `cast` (`<session>.end` beside `<session>.cast`).
#[must_use]
pub fn end_path(cast: &std::path::Path) -> std::path::PathBuf {
    cast.with_extension(&END_SUFFIX[1..])
}

/// The name of the recording file of `session` (a spool session id, already file-safe):
/// `<session>.cast`, inside [`RECORDINGS_DIR`].
#[must_use]
pub fn file_name(session: &str) -> String {
    format!("{session}{CAST_SUFFIX}")
}

/// Where packages install the recorder (`breakglass-record`); the CA's tier key
/// `recorder` and the module's option `recorder=` default to it.
pub const DEFAULT_RECORDER: &str = "/usr/libexec/breakglass/breakglass-record";

/// What a recording tier's certificate makes sshd run: the recorder, for one grant, with
/// the approved command (or none: the user's login shell, or what the client asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderCommand {
    /// Absolute path of the recorder.
    pub recorder: String,
    /// The grant id (`g-` + 16 hex digits).
    pub grant: String,
    /// Record the user's keystrokes too (`i` events; the tier's `record_input`).
    pub input: bool,
    /// The approved command, run by the user's shell under the recorder.
    pub command: Option<String>,
}

impl RecorderCommand {
    /// The certificate's `force-command`: `<recorder> --grant G [--input] [-- '<command>']`.
    /// sshd runs it with the user's shell (`$SHELL -c`), so the command is one
    /// single-quoted word: the shell hands it whole to the recorder, which runs it with
    /// the shell in turn (pipes and redirections stay inside the recording).
    #[must_use]
    pub fn to_force_command(&self) -> String {
        let mut s = format!("{} --grant {}", self.recorder, self.grant);
        if self.input {
            s.push_str(" --input");
        }
        if let Some(c) = &self.command {
            s.push_str(" -- ");
            s.push_str(&shell_quote(c));
        }
        s
    }

    /// Reads a force-command back; `None` unless it is exactly what
    /// [`to_force_command`](Self::to_force_command) writes for `recorder`.
    #[must_use]
    pub fn parse(force_command: &str, recorder: &str) -> Option<Self> {
        let rest = force_command
            .strip_prefix(recorder)?
            .strip_prefix(" --grant ")?;
        let (grant, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let input = rest == "--input" || rest.starts_with("--input ");
        if input {
            rest = rest["--input".len()..].trim_start_matches(' ');
        }
        let command = match rest.strip_prefix("-- ") {
            Some(q) => Some(shell_unquote(q)?),
            None if rest.is_empty() => None,
            None => return None,
        };
        let parsed = Self {
            recorder: recorder.to_owned(),
            grant: grant.to_owned(),
            input,
            command,
        };
        // One text per command: anything else (extra spaces, odd quoting) is refused.
        (parsed.to_force_command() == force_command).then_some(parsed)
    }
}

/// `s` as one POSIX shell word: single-quoted, each `'` written `'\''`.
#[must_use]
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The word [`shell_quote`] made, or `None` when `q` is not such a word.
fn shell_unquote(q: &str) -> Option<String> {
    let inner = q.strip_prefix('\'')?.strip_suffix('\'')?;
    let s = inner.replace("'\\''", "'");
    (shell_quote(&s) == q).then_some(s)
}

/// The chain of [the module docs](self), fed with a recording's bytes as they come (cut into
/// chunks here, whatever the sizes of the pieces fed).
#[derive(Clone, Debug)]
pub struct ChainHasher {
    /// `h_{i-1}`: the hash of everything before the current chunk.
    last: [u8; 32],
    /// `h_{i-1}` followed by what of chunk `i` has been fed.
    chunk: Sha256,
    /// Bytes of the current chunk fed so far (`< CHUNK_BYTES`).
    in_chunk: usize,
    /// Bytes fed in all.
    bytes: u64,
}

impl Default for ChainHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainHasher {
    /// A chain over no bytes yet (`h_0`).
    #[must_use]
    pub fn new() -> Self {
        let h0: [u8; 32] = Sha256::digest(CHAIN_DOMAIN).into();
        Self {
            last: h0,
            chunk: Self::next_chunk(&h0),
            in_chunk: 0,
            bytes: 0,
        }
    }

    fn next_chunk(prev: &[u8; 32]) -> Sha256 {
        let mut h = Sha256::new();
        h.update(prev);
        h
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = data.len().min(CHUNK_BYTES - self.in_chunk);
            self.chunk.update(&data[..take]);
            self.in_chunk += take;
            self.bytes += take as u64;
            data = &data[take..];
            if self.in_chunk == CHUNK_BYTES {
                self.last = std::mem::take(&mut self.chunk).finalize().into();
                self.chunk = Self::next_chunk(&self.last);
                self.in_chunk = 0;
            }
        }
    }

    /// Bytes fed so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The recording's hash `h_n` over everything fed.
    #[must_use]
    pub fn finish(self) -> [u8; 32] {
        if self.in_chunk > 0 {
            return self.chunk.finalize().into();
        }
        // No chunk open: the last completed chunk's hash (h_0 for an empty file).
        self.last
    }
}

/// The chain hash and size of everything `r` yields.
pub fn chain_of(mut r: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut h = ChainHasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let bytes = h.bytes();
    Ok((h.finish(), bytes))
}

/// Why a recording digest's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseDigestError(String);

/// The text form of a recording hash: `sha256:<64 lowercase hex digits>`.
#[must_use]
pub fn format_sha256(hash: &[u8; 32]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(HASH_PREFIX.len() + 64);
    s.push_str(HASH_PREFIX);
    for b in hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Reads the text form of [`format_sha256`] (lowercase only, so each hash has one text).
pub fn parse_sha256(text: &str) -> Result<[u8; 32], ParseDigestError> {
    let bad = || {
        ParseDigestError(format!(
            "recording hash {text:?} is not {HASH_PREFIX}<64 lowercase hex digits>"
        ))
    };
    let hex = text.strip_prefix(HASH_PREFIX).ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// What the audit log commits to about a session's recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordingDigest {
    /// The chain hash `h_n` of the file ([`chain_of`]).
    pub sha256: [u8; 32],
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Length of the recorded session in milliseconds (first to last moment recorded).
    pub duration_ms: u64,
}

impl RecordingDigest {
    /// The hash part in text form ([`format_sha256`]).
    #[must_use]
    pub fn sha256_text(&self) -> String {
        format_sha256(&self.sha256)
    }

    /// The digest from the three fields of a spool record or host record (the hash in text
    /// form); `None` when the record carries no recording (no hash), an error when the hash
    /// is there but malformed.
    pub fn from_fields(
        sha256: Option<&str>,
        bytes: Option<u64>,
        duration_ms: Option<u64>,
    ) -> Result<Option<Self>, ParseDigestError> {
        let Some(text) = sha256 else {
            return Ok(None);
        };
        Ok(Some(Self {
            sha256: parse_sha256(text)?,
            bytes: bytes.unwrap_or(0),
            duration_ms: duration_ms.unwrap_or(0),
        }))
    }
}

/// `sha256:<hex> <bytes> bytes <duration_ms> ms`.
impl fmt::Display for RecordingDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} bytes {} ms",
            self.sha256_text(),
            self.bytes,
            self.duration_ms
        )
    }
}

/// Reads the [`Display`](fmt::Display) form back.
impl FromStr for RecordingDigest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ParseDigestError(format!(
                "recording digest {s:?} is not `{HASH_PREFIX}<hex> <N> bytes <M> ms`"
            ))
        };
        let parts: Vec<&str> = s.split(' ').collect();
        let [hash, bytes, "bytes", ms, "ms"] = parts.as_slice() else {
            return Err(bad());
        };
        let number = |t: &str| {
            if t.is_empty()
                || !t.bytes().all(|c| c.is_ascii_digit())
                || (t.len() > 1 && t.starts_with('0'))
            {
                return Err(bad());
            }
            t.parse::<u64>().map_err(|_| bad())
        };
        Ok(Self {
            sha256: parse_sha256(hash)?,
            bytes: number(bytes)?,
            duration_ms: number(ms)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ from chunk to chunk (a repeated byte would hide a mis-cut chunk).
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
    }

    fn hex(h: &[u8; 32]) -> String {
        format_sha256(h)[HASH_PREFIX.len()..].to_owned()
    }

    // The vectors were computed apart from this code (Python's hashlib, the chain as the
    // module docs state it).
    const VECTORS: [(usize, &str); 4] = [
        (
            0,
            "0f9caa1e4bdd123b176aa233494ed1e4577c4db8ee95db05086150e47378b594",
        ),
        (
            65_536,
            "cd9670731a3d1e191635ae4e33a6502e51fb390a1771c76276ef80c34519e6ca",
        ),
        (
            65_537,
            "f2e8062b175e99de962447fde529d6918cacf9b42d416ae18c4e00bc31778825",
        ),
        (
            3,
            "95ad34676cb72d4a24b677f63e01fc412530fff9c28ba0df4f3d1a0b7a747906",
        ),
    ];

    fn data(n: usize) -> Vec<u8> {
        if n == 3 { b"abc".to_vec() } else { pattern(n) }
    }

    #[test]
    fn the_bytes_written_are_read_back_from_a_final_status() {
        let status = format!("ended: command exited (exit status: 0) {END_BYTES}1234\0\0");
        assert_eq!(end_bytes(status.trim_end_matches('\0')), Some(1234));
        assert_eq!(
            end_bytes("failed: disk full; session ended bytes=7\n"),
            Some(7)
        );
        for bad in [
            END_RUNNING,
            "ended: bytes=",
            "ended: bytes=-1",
            "ended:bytes=5",
            "",
        ] {
            assert_eq!(end_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_chain_matches_fixed_vectors_empty_short_one_chunk_and_one_more_byte() {
        for (n, want) in VECTORS {
            let (h, bytes) = chain_of(data(n).as_slice()).unwrap();
            assert_eq!((hex(&h).as_str(), bytes), (want, n as u64), "{n} bytes");
        }
    }

    #[test]
    fn how_the_bytes_are_fed_does_not_change_the_chain() {
        let all = pattern(3 * CHUNK_BYTES + 17);
        let (want, _) = chain_of(all.as_slice()).unwrap();
        for piece in [1, 4095, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1] {
            let mut h = ChainHasher::new();
            for p in all.chunks(piece) {
                h.update(p);
            }
            assert_eq!(h.bytes(), all.len() as u64);
            assert_eq!(h.finish(), want, "pieces of {piece}");
        }
    }

    #[test]
    fn one_changed_byte_changes_the_hash() {
        let mut all = pattern(2 * CHUNK_BYTES);
        let (a, _) = chain_of(all.as_slice()).unwrap();
        all[CHUNK_BYTES + 5] ^= 1;
        let (b, _) = chain_of(all.as_slice()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_recorder_command_round_trips_and_refuses_anything_else() {
        let c = RecorderCommand {
            recorder: DEFAULT_RECORDER.into(),
            grant: "g-00000000000000ff".into(),
            input: true,
            command: Some("psql -c 'select 1' | tee /tmp/x".into()),
        };
        let fc = c.to_force_command();
        assert_eq!(
            fc,
            "/usr/libexec/breakglass/breakglass-record --grant g-00000000000000ff --input -- 'psql -c '\\''select 1'\\'' | tee /tmp/x'"
        );
        assert_eq!(
            RecorderCommand::parse(&fc, DEFAULT_RECORDER),
            Some(c.clone())
        );
        let bare = RecorderCommand {
            input: false,
            command: None,
            ..c.clone()
        };
        assert_eq!(
            RecorderCommand::parse(&bare.to_force_command(), DEFAULT_RECORDER),
            Some(bare.clone())
        );
        for bad in [
            "/usr/bin/psql".to_owned(),
            format!("{} ; sh", bare.to_force_command()),
            format!("{} -- 'a' b", bare.to_force_command()),
            format!("{} -- 'a'b'", bare.to_force_command()),
            format!("{}  --input", bare.to_force_command()),
            format!("/tmp/x{}", bare.to_force_command()),
        ] {
            assert_eq!(
                RecorderCommand::parse(&bad, DEFAULT_RECORDER),
                None,
                "{bad}"
            );
        }
        assert_eq!(RecorderCommand::parse(&fc, "/usr/local/bin/rec"), None);
    }

    #[test]
    fn the_text_forms_round_trip_and_refuse_what_is_not_canonical() {
        let d = RecordingDigest {
            sha256: chain_of(&b"abc"[..]).unwrap().0,
            bytes: 3,
            duration_ms: 1500,
        };
        let text = d.to_string();
        assert_eq!(text, format!("sha256:{} 3 bytes 1500 ms", VECTORS[3].1));
        assert_eq!(text.parse::<RecordingDigest>(), Ok(d));
        assert_eq!(parse_sha256(&d.sha256_text()), Ok(d.sha256));
        for bad in [
            "",
            "sha256:",
            &format!("SHA256:{}", VECTORS[3].1),
            &format!("sha256:{}", VECTORS[3].1.to_uppercase()),
            &format!("sha256:{}0", VECTORS[3].1),
            &format!("sha256:{}", &VECTORS[3].1[1..]),
        ] {
            let e = parse_sha256(bad).unwrap_err();
            assert!(e.to_string().contains("64 lowercase hex"), "{bad}: {e}");
        }
        for bad in [
            "x 3 bytes 1 ms",
            &format!("{} 03 bytes 1 ms", d.sha256_text()),
            &format!("{} 3 bytes", d.sha256_text()),
        ] {
            assert!(bad.parse::<RecordingDigest>().is_err(), "{bad}");
        }
        assert_eq!(RecordingDigest::from_fields(None, Some(3), None), Ok(None));
        assert_eq!(
            RecordingDigest::from_fields(Some(&d.sha256_text()), Some(3), Some(1500)),
            Ok(Some(d))
        );
        assert!(RecordingDigest::from_fields(Some("sha256:zz"), None, None).is_err());
    }
}
