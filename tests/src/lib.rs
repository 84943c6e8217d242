//! Harness for the end-to-end tests: an in-process `breakglass-ca` serving
//! over real sockets (mTLS on loopback TCP, the admin Unix socket), real
//! keys made by `ssh-keygen`, and the rules for tests that need root.

pub mod daemon;
pub mod revocation;
pub mod sshd;

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
