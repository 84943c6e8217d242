//! The one test harness of the workspace: the real tools the tests drive (`ssh-keygen`,
//! `sshd` under its own PAM service, `ssh`, libpam under pam_wrapper, a syslog socket),
//! certificates following the breakglass profile, throw-away users, processes and file
//! systems, and the rule for tests that cannot run here.
//!
//! **Why it depends on nothing of ours but the contract crate.** Every crate's tests use
//! it, so it must sit below all of them. A crate may dev-depend on a crate that depends
//! on it, but its unit tests are then built against a second copy of it: two
//! `pam_breakglass::Config`s that do not unify. With only `breakglass-proto` (without
//! its wire types or tokio's runtime) and std-level crates beneath it, the daemon, the CLI
//! and the PAM module can use it from their unit and integration tests alike, and the
//! module's tests still build no gRPC stack. The contract crate's integration tests use
//! it too; its unit tests only use what takes none of its types (`oracle`): they link a
//! second copy of the contract crate through this one, whose types would not unify with
//! their own. Harness pieces that need the daemon or the CLI (an in-process daemon, hosts
//! following it) live one floor up, in `breakglass-tests` (`tests/src`), which
//! re-exports this crate.
//!
//! Test files are named `<area>[_<aspect>].rs` after the behaviour they cover (the word
//! the README uses: approvals, audit, revocation, pam…) and, where an area has several
//! files, the aspect or the real part they drive (`_api` over gRPC, `_sshd` with a real
//! sshd, `_faults` under damage); no `_e2e`/`_test` suffix: the directory says the layer
//! (`<crate>/tests/` drives that crate's public face, `tests/tests/` the whole system).

pub mod artifacts;
pub mod ca;
pub mod cert;
pub mod fs;
pub mod oracle;
pub mod pam_wrapper;
pub mod process;
pub mod sshd;
pub mod syslog;
pub mod users;
pub mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

pub use artifacts::{breakglass_bin, breakglass_ca_bin, pam_artifacts, side_build, workspace};
pub use cert::{ssh_keygen, ssh_keygen_revoked};

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

/// The text of `packaging/<path>` (units, snippets, the host setup guide).
pub fn packaging(path: &str) -> String {
    let path = packaging_dir().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `packaging/` directory of the workspace.
pub fn packaging_dir() -> PathBuf {
    workspace().join("packaging")
}

/// Runs `cmd` and asserts that it succeeded (showing what it printed otherwise);
/// returns its stdout.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's status, stdout and stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "status={:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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

/// Writes `lines`, one a line, to `path`.
pub fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
