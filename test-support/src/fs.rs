//! Files for tests: a size-limited tmpfs and filling it, copying trees, listing and
//! writing files, the packaging files of the workspace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::workspace;

/// A size-limited tmpfs (root directory mode 0700) mounted for one test (needs root),
/// unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`512k`, `2m`, ...) at `path` (created first).
    pub fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("create the mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("breakglass-test")
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount tmpfs on {} failed", path.display());
        Self(path.to_owned())
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fills it with one file of zeros, `filler` (see [`fill`]); returns its path.
    pub fn fill(&self) -> PathBuf {
        fill(&self.0)
    }

    /// Remounts it with the new `size`.
    pub fn resize(&self, size: &str) {
        self.remount(&format!("size={size}"));
    }

    /// Remounts it with `opts` (e.g. `ro`, `rw`, `size=4m`).
    pub fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(
            st.success(),
            "remount {} with {opts} failed",
            self.0.display()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file of zeros, `dir/filler`, until it is
/// full; returns its path. Panics when 4 GiB did not fill it.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f =
        std::fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let block = vec![0u8; 4096];
    for _ in 0..1_000_000 {
        if f.write_all(&block).and_then(|()| f.sync_data()).is_err() {
            return path;
        }
    }
    panic!("{} never filled up", path.display());
}

/// Copies the tree `from` to `to` with `cp -a` (modes and times kept).
pub fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// The names of the entries of `dir`, sorted; none when it does not exist.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes `lines`, one a line, to `path`.
pub fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The text of `packaging/<path>` (units, snippets, the host setup guide).
pub fn packaging(path: &str) -> String {
    let path = packaging_dir().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `packaging/` directory of the workspace.
pub fn packaging_dir() -> PathBuf {
    workspace().join("packaging")
}
