//! The recordings' files beside the log: `<audit dir>/recordings/sha256/<chain hash hex>`
//! (stored, verified, content-addressed) and `<audit dir>/recordings/incoming/<session>.part`
//! (an upload in progress: what the daemon holds, where a resumed upload continues).
//! Blocking file calls: run them off the async workers.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use breakglass_proto::audit::recordings::{RECORDINGS_DIR, STORED_DIR, stored_name};

use crate::error::{Error, RecordingError};

/// Uploads in progress, inside the recordings directory.
const INCOMING_DIR: &str = "incoming";

/// The recordings directory of one daemon.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A storage failure on `path`.
pub(super) fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Recording(RecordingError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    })
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, &e))
}

fn make_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, &e))
}

impl Store {
    /// The recordings beside the log in `audit_dir`.
    #[must_use]
    pub fn new(audit_dir: &Path) -> Self {
        Self {
            root: audit_dir.join(RECORDINGS_DIR),
        }
    }

    /// Where the recording with chain hash `sha256` is stored.
    #[must_use]
    pub fn stored_path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.root.join(STORED_DIR).join(stored_name(sha256))
    }

    /// Where the upload of `session` is received (`session` is a session id the log holds:
    /// host name, grant, digits and dashes, never a path).
    fn incoming_path(&self, session: &str) -> PathBuf {
        self.root.join(INCOMING_DIR).join(format!("{session}.part"))
    }

    /// Bytes held of the upload of `session` (0 when none started).
    pub fn held(&self, session: &str) -> Result<u64, Error> {
        let p = self.incoming_path(session);
        match std::fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error(&p, &e)),
        }
    }

    /// Opens the upload of `session` for appending, positioned at its end; returns the file
    /// and the bytes it holds.
    pub fn open_incoming(&self, session: &str) -> Result<(File, u64), Error> {
        let p = self.incoming_path(session);
        make_dir(p.parent().unwrap_or(&self.root))?;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&p)
            .map_err(|e| io_error(&p, &e))?;
        let held = f.seek(SeekFrom::End(0)).map_err(|e| io_error(&p, &e))?;
        Ok((f, held))
    }

    /// Appends `data` to an upload.
    pub fn append(&self, session: &str, f: &mut File, data: &[u8]) -> Result<(), Error> {
        f.write_all(data)
            .map_err(|e| io_error(&self.incoming_path(session), &e))
    }

    /// Makes what an upload holds durable (what its status reports survives a crash).
    pub fn sync(&self, session: &str, f: &File) -> Result<(), Error> {
        f.sync_data()
            .map_err(|e| io_error(&self.incoming_path(session), &e))
    }

    /// Opens the complete upload of `session` for reading (to check its chain).
    pub fn read_incoming(&self, session: &str) -> Result<File, Error> {
        let p = self.incoming_path(session);
        File::open(&p).map_err(|e| io_error(&p, &e))
    }

    /// Drops the upload of `session` (refused): nothing of it is kept.
    pub fn discard(&self, session: &str) -> Result<(), Error> {
        let p = self.incoming_path(session);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&p, &e)),
        }
    }

    /// Moves the verified upload of `session` to its stored name, durably (the file and
    /// both directories synced), before its `recording_stored` event is written.
    pub fn keep(&self, session: &str, sha256: &[u8; 32]) -> Result<PathBuf, Error> {
        let from = self.incoming_path(session);
        let to = self.stored_path(sha256);
        let dir = self.root.join(STORED_DIR);
        make_dir(&dir)?;
        File::open(&from)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(&from, &e))?;
        std::fs::rename(&from, &to).map_err(|e| io_error(&to, &e))?;
        sync_dir(&dir)?;
        sync_dir(from.parent().unwrap_or(&self.root))?;
        Ok(to)
    }

    /// Opens a stored recording.
    pub fn open_stored(&self, sha256: &[u8; 32]) -> Result<File, Error> {
        let p = self.stored_path(sha256);
        File::open(&p).map_err(|e| io_error(&p, &e))
    }

    /// Deletes a stored recording (retention); a file already gone is fine.
    pub fn delete(&self, sha256: &[u8; 32]) -> Result<bool, Error> {
        let p = self.stored_path(sha256);
        match std::fs::remove_file(&p) {
            Ok(()) => {
                sync_dir(&self.root.join(STORED_DIR))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&p, &e)),
        }
    }
}
