//! Careful reading and writing of security-relevant files (keys, config,
//! trust anchors): regular file, not a symlink, owned by us (or root for
//! public files), permissions that do not let others read secrets or change
//! what we trust, and a size cap.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What a file holds, which decides how strict the checks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrecy {
    /// Private keys: owned by the daemon's user, no access for group or others (0600 or 0400).
    Secret,
    /// Config, certificates, public keys: owned by the daemon's user or root,
    /// not writable by group or others.
    Public,
}

/// Why a security-relevant file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but is unsafe to use.
    #[error("{path}: {reason}")]
    Unsafe {
        /// The file.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Reads a file after checking its type, owner, mode and size.
pub fn read_checked(path: &Path, max_len: u64, secrecy: Secrecy) -> Result<Vec<u8>, FileError> {
    let shown = path.display().to_string();
    let io = |source| FileError::Io {
        path: shown.clone(),
        source,
    };
    let unsafe_ = |reason: String| FileError::Unsafe {
        path: shown.clone(),
        reason,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(40) {
                // ELOOP: the last component is a symlink.
                unsafe_("is a symbolic link; point the config at the real file".into())
            } else {
                io(e)
            }
        })?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(unsafe_("is not a regular file".into()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let mode = meta.permissions().mode() & 0o7777;
    match secrecy {
        Secrecy::Secret => {
            if meta.uid() != euid {
                return Err(unsafe_(format!(
                    "is owned by uid {} but breakglass-ca runs as uid {euid}; run `chown {euid} {shown}`",
                    meta.uid()
                )));
            }
            if mode & 0o077 != 0 {
                return Err(unsafe_(format!(
                    "has mode {mode:04o}: a private key must not be readable by group or others; run `chmod 600 {shown}`"
                )));
            }
        }
        Secrecy::Public => {
            if meta.uid() != euid && meta.uid() != 0 {
                return Err(unsafe_(format!(
                    "is owned by uid {}; it must be owned by root or by uid {euid}",
                    meta.uid()
                )));
            }
            if mode & 0o022 != 0 {
                return Err(unsafe_(format!(
                    "has mode {mode:04o}: group or others could change it; run `chmod go-w {shown}`"
                )));
            }
        }
    }
    if meta.len() > max_len {
        return Err(unsafe_(format!(
            "is {} bytes; the limit is {max_len}",
            meta.len()
        )));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut file)
        .take(max_len + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > max_len {
        return Err(unsafe_(format!(
            "grew beyond {max_len} bytes while being read"
        )));
    }
    Ok(buf)
}

/// Creates a new file with the given mode (fails if it exists), writes and fsyncs it.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc_o_nofollow())
        .open(path)?;
    // The umask may have removed bits; set exactly what was asked.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_with_group_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_new(&p, b"secret", 0o644).unwrap();
        let e = read_checked(&p, 100, Secrecy::Secret)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_checked(&p, 100, Secrecy::Secret).unwrap(), b"secret");
    }

    #[test]
    fn symlink_and_oversize_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg");
        write_new(&p, b"0123456789", 0o644).unwrap();
        let l = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        let e = read_checked(&l, 100, Secrecy::Public)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = read_checked(&p, 5, Secrecy::Public)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit is 5"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read_checked(&p, 100, Secrecy::Public)
            .unwrap_err()
            .to_string();
        assert!(e.contains("go-w"), "{e}");
    }
}
