//! The file checks every part of `host doctor` shares: reading a small file, and the
//! ownership the module demands of its files.
#![forbid(unsafe_code)]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Largest config, key or KRL file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Reads a small file, refusing symlinks' surprises by capping the size.
pub(super) fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Root-owned and not writable by group or others (what the module demands of its files).
pub(super) fn ownership_problem(meta: &std::fs::Metadata) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        Some(format!("is owned by uid {}, not root", meta.uid()))
    } else if mode & 0o022 != 0 {
        Some(format!("is writable by group or others (mode {mode:04o})"))
    } else {
        None
    }
}

pub(super) fn ownership_fix(path: &Path) -> String {
    format!("chown root:root {p} && chmod go-w {p}", p = path.display())
}
