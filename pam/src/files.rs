//! Reading security-relevant files and writing durable ones.
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::system;

/// Reads a root-controlled file: opened without following symlinks, must be a regular
/// file owned by root (or by the running user), not writable by group or others, and at
/// most `max_len` bytes.
pub fn read_trusted_file(path: &Path, what: &str, max_len: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open {what} {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {what} {shown}: {e}"))?;
    check_owner_mode(&meta, what, path)?;
    if !meta.is_file() {
        return Err(format!("{what} {shown} is not a regular file"));
    }
    if meta.len() > max_len {
        return Err(format!(
            "{what} {shown} is {} bytes; the limit is {max_len}",
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_len + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {what} {shown}: {e}"))?;
    if buf.len() as u64 > max_len {
        return Err(format!(
            "{what} {shown} grew past {max_len} bytes while being read"
        ));
    }
    Ok(buf)
}

pub(crate) fn check_owner_mode(meta: &fs::Metadata, what: &str, path: &Path) -> Result<(), String> {
    let euid = system::geteuid();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "{what} {} is owned by uid {}; it must be owned by root: chown root {}",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{what} {} is writable by group or others (mode {:o}): chmod go-w {}",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

/// Checks that the executable at `path`, which the module runs as root, is a regular
/// file owned by root (or the running user) and not writable by group or others.
pub fn check_executable(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path)
        .map_err(|e| format!("cannot stat session guard {}: {e}", path.display()))?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(format!(
            "session guard {} is not an executable file",
            path.display()
        ));
    }
    check_owner_mode(&meta, "session guard", path)
}

/// Creates `dir` (mode 0700, its parent must exist) if missing and checks it is a real directory owned by root
/// (or the running user) and not writable by group or others.
pub fn ensure_private_dir(dir: &Path, what: &str) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Only the last component: the parent (e.g. /var/spool) must exist, so a
            // late writer never re-creates a removed tree.
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {what} {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(format!("cannot stat {what} {}: {e}", dir.display())),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot stat {what} {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{what} {} is not a directory (symlinks are refused)",
            dir.display()
        ));
    }
    check_owner_mode(&meta, what, dir)
}

/// Writes `name` in `dir` durably and atomically: a temporary file is written and
/// fsynced, renamed into place, then the directory is fsynced.
pub fn write_durable(dir: &Path, name: &str, data: &[u8]) -> Result<(), String> {
    write_durable_with(dir, name, data, |_| Ok(())).map(drop)
}

/// [`write_durable`], holding an exclusive `flock` on the file from before it appears
/// under `name` until the returned handle is dropped (or the process dies).
pub fn write_durable_locked(dir: &Path, name: &str, data: &[u8]) -> Result<File, String> {
    use std::os::fd::AsFd;
    write_durable_with(dir, name, data, |f| {
        system::flock(f.as_fd(), libc::LOCK_EX | libc::LOCK_NB)
    })
}

/// Writes the new file `name` in `dir` durably and atomically with one fsync: the data
/// goes into an unnamed file (`O_TMPFILE`), which appears under `name` complete (a reader
/// never sees part of it) and is then fsynced. The fsync of a file also makes durable the
/// name it was just linked under on ext4, xfs and btrfs (the link is logged with the
/// inode), so the directory needs no fsync of its own: one disk flush where
/// [`write_durable`] takes two. Where the file system has no `O_TMPFILE`, or `name`
/// exists already, this is [`write_durable`]. If the fsync fails, the name is removed
/// again: nothing is left that claims to be durable.
pub fn write_new_durable(dir: &Path, name: &str, data: &[u8]) -> Result<(), String> {
    use std::os::fd::AsFd;
    let dest = dir.join(name);
    let Ok(mut f) = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir)
    else {
        return write_durable(dir, name, data);
    };
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    if system::link_unnamed(f.as_fd(), &dest).is_err() {
        // The unnamed file vanishes with its descriptor.
        return write_durable(dir, name, data);
    }
    f.sync_all().map_err(|e| {
        let _ = fs::remove_file(&dest);
        format!("cannot write {}: {e}", dest.display())
    })
}

fn write_durable_with(
    dir: &Path,
    name: &str,
    data: &[u8],
    before_rename: impl FnOnce(&File) -> std::io::Result<()>,
) -> Result<File, String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let _ = fs::remove_file(&tmp); // a leftover from a crash between write and rename
    let result = (|| -> std::io::Result<File> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        before_rename(&f)?;
        fs::rename(&tmp, &dest)?;
        File::open(dir)?.sync_all()?;
        Ok(f)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write {}: {e}", dest.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn trusted_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pub");
        fs::write(&p, b"hello").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_trusted_file(&p, "x", 10).unwrap(), b"hello");
        assert!(
            read_trusted_file(&p, "x", 3)
                .unwrap_err()
                .contains("limit is 3")
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(
            read_trusted_file(&p, "x", 10)
                .unwrap_err()
                .contains("chmod go-w")
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(read_trusted_file(&link, "x", 10).is_err());
        assert!(
            read_trusted_file(dir.path(), "x", 10)
                .unwrap_err()
                .contains("regular")
        );
        assert!(
            read_trusted_file(&dir.path().join("nope"), "CA keys file", 10)
                .unwrap_err()
                .contains("cannot open CA keys file")
        );
    }

    #[test]
    fn new_durable_files_appear_whole_private_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        ensure_private_dir(&spool, "spool").unwrap();
        write_new_durable(&spool, "a.json", b"first").unwrap();
        assert_eq!(fs::read(spool.join("a.json")).unwrap(), b"first");
        let mode = fs::metadata(spool.join("a.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // An existing name is replaced (the two-fsync path), never doubled.
        write_new_durable(&spool, "a.json", b"second").unwrap();
        assert_eq!(fs::read(spool.join("a.json")).unwrap(), b"second");
        write_new_durable(&spool, "b.json", b"").unwrap();
        let mut names = breakglass_test_support::fs::file_names(&spool);
        names.sort();
        assert_eq!(names, ["a.json", "b.json"], "no temporary file is left");
        // A directory that does not exist is an error that names the file.
        let e = write_new_durable(&dir.path().join("gone"), "c.json", b"x").unwrap_err();
        assert!(e.contains("gone/c.json"), "{e}");
    }

    #[test]
    fn durable_write_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        ensure_private_dir(&spool, "spool").unwrap();
        let mode = fs::metadata(&spool).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        write_durable(&spool, "a.json", b"1").unwrap();
        write_durable(&spool, "a.json", b"2").unwrap();
        assert_eq!(fs::read(spool.join("a.json")).unwrap(), b"2");
        assert_eq!(fs::read_dir(&spool).unwrap().count(), 1);
        fs::set_permissions(&spool, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_private_dir(&spool, "spool").is_err());
    }
}
