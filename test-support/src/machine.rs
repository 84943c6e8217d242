//! What this machine has and whether a test can run on it: root, programs, the clock,
//! free ports.

use std::io::Write;

/// Refuses to let a test pass silently where it cannot run: returns `false` (after a
/// loud message) when `ok` is false for want of `requirement`, and panics under CI.
pub fn can_run(requirement: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("this test needs {requirement}, and CI must run it");
    }
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED (needs {requirement}): run the tests as root with the packages from scripts/install-deps ***\n"
    );
    false
}

/// [`can_run`] for a test that needs root (users, `/etc/pam.d`, sshd, mounts); `test`
/// says which test or what for.
pub fn require_root(test: &str) -> bool {
    can_run(&format!("root: {test}"), is_root())
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

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}
