//! Harness for the end-to-end tests: an in-process `breakglass-ca` serving
//! over real sockets (mTLS on loopback TCP, the admin Unix socket), real
//! keys made by `ssh-keygen`, and the rules for tests that need root.

pub mod audit;
pub mod ca_process;
pub mod crash_loop;
pub mod daemon;
pub mod faults;
pub mod process;
pub mod revocation;
pub mod sshd;
pub mod watcher;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Refuses to let a test pass silently where it cannot run: returns `false`
/// (after a loud message) when `why` prevents it, but panics under CI.
pub fn can_run(requirement: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test needs {requirement}, and CI must run it");
    }
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a skip must show.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED (needs {requirement}): run the tests as root with the packages from scripts/install-deps ***\n"
    );
    false
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when `program` is on PATH.
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes an SSH key pair with `ssh-keygen` (`kind`: ed25519, ecdsa, rsa, dsa…) and
/// returns the public key path.
pub fn ssh_keygen(dir: &std::path::Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-f"])
        .arg(&path)
        .args(args)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.with_extension("pub")
}

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
/// directory all end-to-end tests share (the running `cargo test` holds the lock of the
/// main one; sharing one side directory compiles the dependencies once), and returns
/// the directory holding the artifacts (`<target>/e2e/debug`). Each package is built
/// with the whole set of [`SIDE_BUILDS`] it belongs to.
pub fn side_build(packages: &[&str]) -> PathBuf {
    static BUILT: [OnceLock<()>; SIDE_BUILDS.len()] =
        [const { OnceLock::new() }; SIDE_BUILDS.len()];
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target
    let target = exe.ancestors().nth(3).expect("target dir").join("e2e");
    for p in packages {
        assert!(
            SIDE_BUILDS.iter().any(|set| set.contains(p)),
            "side_build: package {p} is in no set of SIDE_BUILDS (tests/src/lib.rs): add it there"
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
