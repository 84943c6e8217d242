//! Replacing a client key and its certificate so that a crash never leaves a key with a
//! certificate that is not its own.
//!
//! Two files cannot be renamed at once. A renewal (`breakglass host renew`) therefore first
//! writes both under `.next` names, each durable (the key first), and only then renames them
//! over the current ones, the key first. A crash before the renames leaves the old pair;
//! between them, a new key with the old certificate and `<cert>.next` beside it. [`finish`]
//! puts such a pair back together: the next renewal, and every command that connects with
//! the certificate ([`crate::connect::channel`]), call it first, so a host is never locked
//! out until it enrols again.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// `<path>.next`: where a renewal writes the new file before it is put in place.
#[must_use]
pub fn next_of(path: &Path) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push(".next");
    PathBuf::from(p)
}

/// Finishes a renewal of `key` and `cert` that a crash interrupted; returns whether there was
/// one to finish.
/// - `<cert>.next` present: the new pair was whole (its key was written before it): the new
///   key (if still at `<key>.next`) and then the certificate are renamed into place.
/// - only `<key>.next`: the renewal never got its certificate; the key is removed and the
///   current pair, untouched, goes on working.
pub fn finish(cert: &Path, key: &Path) -> Result<bool, CliError> {
    let (cert_next, key_next) = (next_of(cert), next_of(key));
    let io = |what: &Path, e: std::io::Error| {
        CliError::Io(format!(
            "finishing an interrupted renewal of {}: {}: {e}",
            cert.display(),
            what.display()
        ))
    };
    if !cert_next.exists() {
        if key_next.exists() {
            std::fs::remove_file(&key_next).map_err(|e| io(&key_next, e))?;
        }
        return Ok(false);
    }
    if key_next.exists() {
        std::fs::rename(&key_next, key).map_err(|e| io(&key_next, e))?;
        sync_dir(key);
    }
    std::fs::rename(&cert_next, cert).map_err(|e| io(&cert_next, e))?;
    sync_dir(cert);
    Ok(true)
}

/// Makes a rename in `path`'s directory durable (best effort: the rename itself happened).
fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("host.crt"), dir.join("host.key"))
    }

    fn put(p: &Path, s: &str) {
        std::fs::write(p, s).unwrap();
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn a_crash_between_the_two_renames_is_finished_into_the_new_pair() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = files(d.path());
        put(&key, "new key");
        put(&cert, "old cert");
        put(&next_of(&cert), "new cert");
        assert!(finish(&cert, &key).unwrap());
        assert_eq!(
            (read(&key).as_str(), read(&cert).as_str()),
            ("new key", "new cert")
        );
        assert!(!next_of(&cert).exists());
        assert!(!finish(&cert, &key).unwrap(), "nothing left to finish");
    }

    #[test]
    fn a_crash_before_the_renames_installs_the_whole_new_pair() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = files(d.path());
        put(&key, "old key");
        put(&cert, "old cert");
        put(&next_of(&key), "new key");
        put(&next_of(&cert), "new cert");
        assert!(finish(&cert, &key).unwrap());
        assert_eq!(
            (read(&key).as_str(), read(&cert).as_str()),
            ("new key", "new cert")
        );
    }

    #[test]
    fn a_new_key_without_its_certificate_is_dropped_and_the_old_pair_kept() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = files(d.path());
        put(&key, "old key");
        put(&cert, "old cert");
        put(&next_of(&key), "new key");
        assert!(!finish(&cert, &key).unwrap());
        assert_eq!(
            (read(&key).as_str(), read(&cert).as_str()),
            ("old key", "old cert")
        );
        assert!(!next_of(&key).exists());
    }
}
