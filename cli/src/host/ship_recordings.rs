//! The recordings part of `breakglass host ship`: after the session records are delivered,
//! each finished recording of the spool (`<spool>/recordings/<session>.cast`) is uploaded
//! to the daemon, resumably and exactly once, then removed.
//!
//! - A recording is uploaded only once the daemon expects it: the log holds its session's
//!   close or forced_end record carrying its digest (the daemon answers NOT_EXPECTED
//!   before, e.g. while the session runs; the file is left for a later run).
//! - Resumable: the daemon says how many bytes it holds; the upload continues from there.
//!   The file is read in 64 KiB pieces, a few in flight at most (bounded memory).
//! - Exactly once: a recording the daemon holds (STORED, or DELETED by retention) is not
//!   sent again; the local file is removed once the daemon said STORED.
//! - A recording the daemon refuses (it does not match its session record: changed or
//!   damaged on this host) is moved to `<spool>/rejected/` with the reason beside it; the
//!   refusal is in the audit log.
#![forbid(unsafe_code)]

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use breakglass_proto::recording::{CAST_SUFFIX, CHUNK_BYTES, RECORDINGS_DIR};
use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::recording_status_response::State;
use breakglass_proto::v1::{RecordingChunk, RecordingStatusRequest};
// tonic's own copy of tokio-stream (the stream type its client-streaming calls take).
use crate::connect::Channel;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// Where rejected records and recordings are kept, in the spool.
pub const REJECTED_DIR: &str = "rejected";

/// The spool's `rejected/` directory, created if missing.
pub(crate) fn rejected_dir(spool: &Path) -> Result<PathBuf, CliError> {
    let dir = spool.join(REJECTED_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(&dir)
        .map_err(|e| CliError::Io(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Upload messages read ahead of the network.
const IN_FLIGHT: usize = 4;

/// What shipping the recordings did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordingsShipped {
    /// Uploaded and stored by this run (or found stored already); local files removed.
    pub stored: u64,
    /// Left for a later run: the daemon does not expect them yet (session running, or its
    /// records not in the log), or an upload stopped short.
    pub waiting: u64,
    /// Refused by the daemon, moved to `rejected/`.
    pub refused: u64,
}

/// The spool's recordings, by session id.
fn list(spool: &Path) -> Result<Vec<(String, PathBuf)>, CliError> {
    let dir = spool.join(RECORDINGS_DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::Io(format!("{}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| CliError::Io(format!("{}: {e}", dir.display())))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(session) = name.strip_suffix(CAST_SUFFIX) else {
            continue;
        };
        if session.is_empty() || session.starts_with('.') {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            out.push((session.to_owned(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Sends `path` from byte `from` as the upload of `session`, reading it in pieces of
/// [`CHUNK_BYTES`] on a blocking thread, [`IN_FLIGHT`] pieces ahead at most.
fn chunks(session: String, path: PathBuf, from: u64) -> ReceiverStream<RecordingChunk> {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let Ok(mut f) = std::fs::File::open(&path) else {
            return;
        };
        if f.seek(SeekFrom::Start(from)).is_err() {
            return;
        }
        let mut offset = from;
        let mut first = true;
        loop {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // The daemon then holds less than the record says and reports it.
                    Err(_) => return,
                }
            }
            buf.truncate(n);
            if n == 0 && !first {
                return;
            }
            let msg = RecordingChunk {
                session: session.clone(),
                offset,
                data: buf,
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
            first = false;
            offset += n as u64;
            if n < CHUNK_BYTES {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Moves a refused recording to `rejected/` with the reason beside it.
fn set_aside(spool: &Path, path: &Path, why: &str) -> Result<(), CliError> {
    let dir = rejected_dir(spool)?;
    let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", dir.display()));
    let name = path.file_name().unwrap_or_default();
    std::fs::rename(path, dir.join(name)).map_err(io)?;
    std::fs::write(
        dir.join(format!("{}.why", name.to_string_lossy())),
        format!("{why}\n"),
    )
    .map_err(io)?;
    eprintln!(
        "breakglass: recording {} refused by the daemon, moved to {}: {}",
        esc(&name.to_string_lossy()),
        dir.display(),
        breakglass_proto::text::escape_hazards(why)
    );
    Ok(())
}

fn remove(path: &Path) -> Result<(), CliError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::Io(format!(
            "{} was stored by the daemon but cannot be removed: {e}",
            path.display()
        ))),
    }
}

/// Uploads the spool's finished recordings (see the module docs).
pub async fn ship_recordings(
    client: &mut HostAgentClient<Channel>,
    target: &Target,
    spool: &Path,
) -> Result<RecordingsShipped, CliError> {
    let mut done = RecordingsShipped::default();
    for (session, path) in list(spool)? {
        let status = client
            .get_recording_status(RecordingStatusRequest {
                session: session.clone(),
            })
            .await
            .answer(target)?;
        let from = match status.state() {
            State::Stored | State::Deleted => {
                remove(&path)?;
                done.stored += 1;
                continue;
            }
            State::Incomplete => status.held_bytes,
            State::NotExpected | State::Unspecified => {
                done.waiting += 1;
                continue;
            }
        };
        let answer = client
            .upload_recording(chunks(session.clone(), path.clone(), from))
            .await;
        match answer {
            Ok(r) if r.get_ref().state() == State::Stored => {
                remove(&path)?;
                done.stored += 1;
            }
            Ok(_) => done.waiting += 1,
            Err(s)
                if s.code() == tonic::Code::InvalidArgument
                    && s.message().contains("was refused") =>
            {
                set_aside(spool, &path, s.message())?;
                done.refused += 1;
            }
            Err(s) => return Err(connect::failure(target, s)),
        }
    }
    if (done.stored > 0 || done.refused > 0)
        && let Ok(d) = std::fs::File::open(spool.join(RECORDINGS_DIR))
    {
        let _ = d.sync_all();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cast_files_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join(RECORDINGS_DIR);
        std::fs::create_dir(&rec).unwrap();
        std::fs::write(rec.join("db-7-g-00000000000000ff-42-1.cast"), "x").unwrap();
        std::fs::write(rec.join(".tmp.cast"), "x").unwrap();
        std::fs::write(rec.join("notes.txt"), "x").unwrap();
        let l = list(dir.path()).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].0, "db-7-g-00000000000000ff-42-1");
        assert!(list(&dir.path().join("none")).unwrap().is_empty());
    }
}
