//! The host side of session recording that runs as root: at session open, the checks
//! that a recording tier's session can be recorded (the certificate forces the recorder,
//! the recorder and the recordings directory are there, the file system has room) and
//! the recording's path; at close or forced end, the digest of the recording as it is on
//! disk ([`breakglass_proto::recording`]) and what the recorder's status file says.
//! The recorder itself is [`crate::recorder`].
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use breakglass_proto::recording::{
    self, END_FILE_BYTES, END_RUNNING, RECORDABLE_SHELLS, RECORDINGS_DIR, RecorderCommand,
    RecordingDigest,
};
use breakglass_proto::spool::SessionRecord;
use breakglass_proto::text;

use crate::config::Config;
use crate::error::Error;
use crate::system::pty;
use crate::verify::VerifiedCertificate;

/// Least free space on the recordings file system for a recorded session to start.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// The recordings directory of a spool directory.
#[must_use]
pub fn dir(spool: &Path) -> PathBuf {
    spool.join(RECORDINGS_DIR)
}

/// For a certificate of a recording tier: checks that the session will run under the
/// recorder, that nothing of the user's can run before it (no `~/.ssh/rc`, a login shell
/// whose start-up files can be skipped: `login_shell`, `None` for a user without one) and
/// that it can be recorded, and returns the path its recording gets. `None` for other
/// certificates (nothing changes for them).
pub fn prepare(
    cfg: &Config,
    cert: &VerifiedCertificate,
    session: &str,
    login_shell: Option<&str>,
) -> Result<Option<PathBuf>, Error> {
    if !cert.recording() {
        return Ok(None);
    }
    let recorder = cfg.recorder.to_string_lossy();
    let grant = cert.profile().grant_id.to_string();
    let forced = cert
        .force_command()
        .and_then(|fc| RecorderCommand::parse(fc, &recorder));
    match forced {
        Some(c) if c.grant == grant => {}
        _ => {
            return Err(Error::RecordingNotForced(format!(
                "grant {grant} must be recorded, but its certificate's force-command is {:?}, not the recorder {recorder} for this grant (a CA with another `recorder` path? set the module's recorder= to the tier's)",
                cert.force_command().unwrap_or("(none)")
            )));
        }
    }
    if cert.permits_user_rc() {
        return Err(Error::RecordingNotForced(format!(
            "grant {grant} must be recorded, but its certificate has permit-user-rc: sshd would run the user's ~/.ssh/rc before the recorder (the CA never issues that for a recording tier; was it signed elsewhere?)"
        )));
    }
    let unavailable = |why: String| {
        Err(Error::RecordingUnavailable(format!(
            "this session must be recorded (grant {grant}) and cannot be: {why}"
        )))
    };
    let shell_name = login_shell.map(|s| {
        Path::new(s)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(s)
    });
    match shell_name {
        Some(name) if RECORDABLE_SHELLS.contains(&name) => {}
        Some(_) => {
            return unavailable(format!(
                "the account's login shell {} reads the user's start-up files before any command, so they would run unrecorded; give the account one of: {}",
                login_shell.unwrap_or_default(),
                RECORDABLE_SHELLS.join(", ")
            ));
        }
        None => {
            return unavailable("the account has no login shell in the password database".into());
        }
    }
    match fs::metadata(&cfg.recorder) {
        Ok(m) if m.is_file() && m.mode() & 0o111 != 0 => {}
        Ok(_) => return unavailable(format!("the recorder {recorder} is not an executable file")),
        Err(e) => {
            return unavailable(format!(
                "the recorder {recorder} is missing ({e}); install breakglass-record"
            ));
        }
    }
    let dir = dir(&cfg.spool);
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && m.mode() & 0o002 == 0 => {}
        Ok(m) if m.is_dir() => {
            return unavailable(format!(
                "the recordings directory {} is writable by everyone; make it root:breakglass-rec mode 2770",
                dir.display()
            ));
        }
        Ok(_) => {
            return unavailable(format!("{} is not a directory", dir.display()));
        }
        Err(e) => {
            return unavailable(format!(
                "the recordings directory {} is missing ({e}); create it root:breakglass-rec mode 2770",
                dir.display()
            ));
        }
    }
    let free = File::open(&dir)
        .and_then(|d| pty::free_bytes(d.as_fd()))
        .map_err(|e| {
            Error::RecordingUnavailable(format!("cannot check the space in {}: {e}", dir.display()))
        })?;
    if free < MIN_FREE_BYTES {
        return unavailable(format!(
            "the recordings directory {} is full ({free} bytes free, {MIN_FREE_BYTES} needed)",
            dir.display()
        ));
    }
    Ok(Some(dir.join(recording::file_name(session))))
}

/// Adds the recording at `path` to a close or forced-end `record`: its digest as it is on
/// disk now (the session lasted `duration_ms`), and in `detail` what the recorder's
/// status file says (a recorder that was killed left it at `running`).
pub fn seal(path: &Path, duration_ms: u64, record: &mut SessionRecord) {
    let (status, wrote) = recorder_status(path);
    let digest = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(recording::chain_of);
    let note = match digest {
        Ok((sha256, bytes)) => {
            let d = RecordingDigest {
                sha256,
                bytes,
                duration_ms,
            };
            record.recording_sha256 = Some(d.sha256_text());
            record.recording_bytes = Some(d.bytes);
            record.recording_duration_ms = Some(d.duration_ms);
            match wrote {
                Some(n) if n != bytes => format!(
                    "recording {}: {status}; but it has {bytes} bytes: changed after the recorder wrote it",
                    path.display()
                ),
                _ => format!("recording {}: {status}", path.display()),
            }
        }
        Err(e) => format!("recording {} unreadable ({e}): {status}", path.display()),
    };
    let detail = match record.detail.take() {
        Some(d) => format!("{d}; {note}"),
        None => note,
    };
    record.detail = Some(text::fit_free_text(&detail, text::MAX_DETAIL_BYTES));
}

/// What the recorder's status file says, in words, and the bytes it says were written.
fn recorder_status(cast: &Path) -> (String, Option<u64>) {
    let path = recording::end_path(cast);
    let mut text = String::new();
    let read =
        File::open(&path).and_then(|f| f.take(END_FILE_BYTES as u64).read_to_string(&mut text));
    match read {
        Err(e) => (
            format!(
                "the recorder's status file {} is unreadable ({e})",
                path.display()
            ),
            None,
        ),
        Ok(_) if text.trim() == END_RUNNING => (
            "recorder did not finish: it was killed or crashed while the session ran".into(),
            None,
        ),
        Ok(_) => (
            format!("recorder {}", text.trim()),
            recording::end_bytes(&text),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::spool::RECORD_VERSION;

    fn sealed(cast: &[u8], status: &str) -> SessionRecord {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        fs::write(&path, cast).unwrap();
        fs::write(recording::end_path(&path), status).unwrap();
        let mut record = SessionRecord::from_json(
            format!(
                r#"{{"version":{RECORD_VERSION},"record_id":"r","session":"s","event":"close","time":1,"host":"h","user":"u","pid":1,"start":1}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        seal(&path, 5000, &mut record);
        record
    }

    #[test]
    fn the_seal_names_a_recording_whose_size_is_not_what_the_recorder_wrote() {
        let status = "ended: command exited (exit status: 0) bytes=3   \n";
        let same = sealed(b"abc", status);
        assert_eq!(same.recording_bytes, Some(3));
        let detail = same.detail.unwrap();
        assert!(
            detail.ends_with("recorder ended: command exited (exit status: 0) bytes=3"),
            "{detail}"
        );
        let longer = sealed(b"abcd", status);
        let (sha, _) = recording::chain_of(&b"abcd"[..]).unwrap();
        assert_eq!(
            longer.recording_sha256,
            Some(recording::format_sha256(&sha))
        );
        let detail = longer.detail.unwrap();
        assert!(
            detail.ends_with("bytes=3; but it has 4 bytes: changed after the recorder wrote it"),
            "{detail}"
        );
        // A recorder that was killed said nothing about its bytes: nothing to compare.
        let killed = sealed(b"abcd", "running\n").detail.unwrap();
        assert!(
            killed.ends_with(
                "recorder did not finish: it was killed or crashed while the session ran"
            ),
            "{killed}"
        );
    }
}
