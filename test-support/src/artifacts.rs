//! The executables and the module the tests run, built the way they ship.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the parent of this crate).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
}

/// The package sets built into the shared side target directory, one `cargo build` each.
/// Every build of a binary uses the same set, hence the same features: no build ever
/// rewrites an artifact with another feature set under a running test. The module is
/// built alone, free of the workspace's tokio/tonic feature unification (a linkage test
/// checks this).
const SIDE_BUILDS: [&[&str]; 2] = [&["breakglass-ca", "breakglass-cli"], &["pam-breakglass"]];

/// Builds `packages` (debug) once per test process into `<target>/e2e`, the side target
/// directory all tests share (the running `cargo test` holds the lock of the main one;
/// sharing one side directory compiles the dependencies once), and returns the directory
/// holding the artifacts (`<target>/e2e/debug`). Each package is built with the whole
/// set of [`SIDE_BUILDS`] it belongs to.
pub fn side_build(packages: &[&str]) -> PathBuf {
    static BUILT: [OnceLock<()>; SIDE_BUILDS.len()] =
        [const { OnceLock::new() }; SIDE_BUILDS.len()];
    let target = target_dir()
        .parent()
        .expect("target dir above the profile dir")
        .join("e2e");
    for p in packages {
        assert!(
            SIDE_BUILDS.iter().any(|set| set.contains(p)),
            "side_build: package {p} is in no set of SIDE_BUILDS (test-support/src/artifacts.rs): add it there"
        );
    }
    for (set, built) in SIDE_BUILDS.iter().zip(&BUILT) {
        if !set.iter().any(|p| packages.contains(p)) {
            continue;
        }
        built.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = Command::new(cargo)
                .arg("build")
                .args(set.iter().flat_map(|p| ["-p", p]))
                .arg("--target-dir")
                .arg(&target)
                .current_dir(workspace())
                .output()
                .expect("cargo runs");
            assert!(
                out.status.success(),
                "cargo build -p {} failed:\n{}",
                set.join(" -p "),
                String::from_utf8_lossy(&out.stderr)
            );
        });
    }
    target.join("debug")
}

/// The profile directory of the running test executable (`target/<profile>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.ancestors().nth(2).expect("target dir").to_path_buf()
}

/// The real `breakglass` executable: `BREAKGLASS_CLI_BIN`, or built by [`side_build`].
pub fn breakglass_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("BREAKGLASS_CLI_BIN") {
        Some(p) => PathBuf::from(p),
        None => side_build(&["breakglass-cli"]).join("breakglass"),
    })
}

/// The real `breakglass-ca` executable: `BREAKGLASS_CA_BIN`, or built by [`side_build`].
pub fn breakglass_ca_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("BREAKGLASS_CA_BIN") {
        Some(p) => PathBuf::from(p),
        None => side_build(&["breakglass-ca"]).join("breakglass-ca"),
    })
}

/// Paths of the built `pam_breakglass.so` and `breakglass-guard`.
#[derive(Debug)]
pub struct PamArtifacts {
    /// The PAM module.
    pub module: PathBuf,
    /// The session guard.
    pub guard: PathBuf,
    /// The session recorder (`breakglass-record`).
    pub recorder: PathBuf,
}

/// The module and the guard of `pam-breakglass`, built once per test process by
/// [`side_build`] (alone: the module stays free of the workspace's tokio/tonic feature
/// unification, as it ships). `BREAKGLASS_PAM_ARTIFACTS=<dir>` uses a directory holding
/// both files instead.
pub fn pam_artifacts() -> &'static PamArtifacts {
    static ARTIFACTS: OnceLock<PamArtifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = match std::env::var_os("BREAKGLASS_PAM_ARTIFACTS") {
            Some(d) => PathBuf::from(d),
            None => side_build(&["pam-breakglass"]),
        };
        let a = PamArtifacts {
            module: dir.join("libpam_breakglass.so"),
            guard: dir.join("breakglass-guard"),
            recorder: dir.join("breakglass-record"),
        };
        assert!(
            a.module.exists() && a.guard.exists(),
            "missing artifacts in {}",
            dir.display()
        );
        a
    })
}
