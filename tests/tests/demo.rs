//! `scripts/demo` end to end, as root: the real script with freshly built binaries
//! (`BREAKGLASS_DEMO_BIN`), a real daemon, sshd, PAM module, user and ssh sessions.
//! - run to the end: exit 0, every step narrated;
//! - interrupted with SIGINT (to its process group, as Ctrl-C) after the login step, and
//!   with SIGTERM (to the script alone) while a session is held open: exit 130 / 143
//!   naming the step;
//!
//! and after each run nothing is left: no process mentioning the demo's directory or its
//! sshd copy, no user `bgdemo`, no group `breakglass-rec` unless it was there before, no
//! demo directory, no pam_wrapper copy of its PAM service, and /etc/pam.d and /etc/ssh
//! byte for byte as before.
//!
//! The demo starts with SIGINT and SIGTERM at their default action, whatever the test
//! runner inherited (`default_signals`): the interrupt tests pass when `cargo test` runs
//! in the background or under `trap "" INT`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use breakglass_test_support::pam_wrapper::pam_wrapper_dirs;
use breakglass_test_support::process::{Running, cmdline, processes_where};
use breakglass_test_support::{can_run, have, require_root, side_build, wait, workspace};
use nix::sys::signal::Signal;

/// The demo uses one fixed user name: its runs must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

const DEMO_USER: &str = "bgdemo";
const SSHD_NAME: &str = "sshd-bgdemo";
const REC_GROUP: &str = "breakglass-rec";

/// Titles the demo prints, one per step, in order.
const STEP_TITLES: [&str; 10] = [
    "== Step 1: The host is ready: breakglass host doctor ==",
    "== Step 2: A low-risk request, issued at once ==",
    "== Step 3: A high-risk request, approved by the sample approver ==",
    "== Step 4: An emergency: issued at once, alert sent, review required ==",
    "== Step 5: A login with the certificate ==",
    "== Step 6: A session cut at certificate expiry ==",
    "== Step 7: A revocation ends a live session within seconds ==",
    "== Step 8: A break-glass drill through the whole chain ==",
    "== Step 9: A recorded session, replayed from the audit log ==",
    "== Step 10: The audit log verifies ==",
];

/// Builds breakglass-ca, breakglass, the guard and the module once per test process
/// (`side_build`: the module alone, free of the daemon's features, as the demo does).
/// `BREAKGLASS_DEMO_BIN=<dir>` uses a directory holding them instead.
fn demo_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("BREAKGLASS_DEMO_BIN") {
        Some(d) => PathBuf::from(d),
        None => side_build(&["breakglass-ca", "breakglass-cli", "pam-breakglass"]),
    })
}

fn ready(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !require_root(test) {
        return None;
    }
    let wrapper = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|d| Path::new(d).join("libpam_wrapper.so").exists());
    if !can_run(
        "sshd, ssh, python3 and pam_wrapper",
        Path::new("/usr/sbin/sshd").exists() && have("ssh") && have("python3") && wrapper,
    ) {
        return None;
    }
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        !user_exists(),
        "a user {DEMO_USER} exists before the demo runs; remove it (userdel -r {DEMO_USER})"
    );
    demo_bin();
    Some(guard)
}

// ---------------------------------------------------------------------------------------
// The system's state the demo must leave as it found it.

/// Path → (mode, uid, gid, content or link target) of every entry under `dir`.
fn tree(dir: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let content = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .map(|l| l.into_os_string().into_encoded_bytes())
                    .unwrap_or_default()
            } else if m.is_dir() {
                todo.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap_or_default()
            };
            out.insert(p, (m.mode(), m.uid(), m.gid(), content));
        }
    }
    out
}

#[derive(Debug, PartialEq)]
struct SystemState {
    pam_d: Tree,
    etc_ssh: Tree,
    run_sshd: bool,
    /// Whether the recorder's group exists (the demo creates it when missing).
    rec_group: bool,
}

fn system_state() -> SystemState {
    // PAM services of the sshd test harness (tests/src/sshd.rs): other end-to-end tests,
    // possibly running at the same time, add and remove them; the demo never does.
    let mut pam_d = tree(Path::new("/etc/pam.d"));
    pam_d.retain(|p, _| {
        !p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("sshd-bgtest-"))
    });
    SystemState {
        pam_d,
        etc_ssh: tree(Path::new("/etc/ssh")),
        run_sshd: Path::new("/run/sshd").exists(),
        rec_group: group_exists(REC_GROUP),
    }
}

type Tree = BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)>;

/// Paths added, removed or changed between two snapshots.
fn changed(before: &Tree, after: &Tree) -> Vec<PathBuf> {
    before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn user_exists() -> bool {
    Command::new("getent")
        .args(["passwd", DEMO_USER])
        .output()
        .expect("getent runs")
        .status
        .success()
}

fn group_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["group", name])
        .output()
        .expect("getent runs")
        .status
        .success()
}

/// pam_wrapper copies of the demo's PAM service (`/tmp/pam.<c>/sshd-bgdemo`).
fn pam_wrapper_leftovers() -> Vec<PathBuf> {
    pam_wrapper_dirs()
        .into_iter()
        .filter(|p| p.join(SSHD_NAME).exists())
        .collect()
}

/// Processes whose command line names the demo's directory or its sshd copy.
fn leftover_processes(demo_dir: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    processes_where(|pid| {
        pid != me && {
            let c = cmdline(pid);
            c.contains(demo_dir) || c.contains(SSHD_NAME)
        }
    })
    .into_iter()
    .map(|p| (p, cmdline(p)))
    .collect()
}

/// Asserts that the demo left nothing behind (waiting a little for exiting processes).
fn assert_clean(demo_dir: &str, before: &SystemState, output: &str) {
    wait::until(Duration::from_secs(5), Duration::from_millis(100), || {
        leftover_processes(demo_dir).is_empty()
    });
    let procs = leftover_processes(demo_dir);
    assert!(
        procs.is_empty(),
        "processes left behind: {procs:#?}\n{output}"
    );
    assert!(!user_exists(), "user {DEMO_USER} left behind\n{output}");
    assert!(
        !Path::new(demo_dir).exists(),
        "{demo_dir} left behind\n{output}"
    );
    assert!(
        !Path::new("/home").join(DEMO_USER).exists(),
        "/home/{DEMO_USER} left behind"
    );
    let copies = pam_wrapper_leftovers();
    assert!(
        copies.is_empty(),
        "pam_wrapper copies left behind: {copies:?}"
    );
    let after = system_state();
    assert!(
        before.pam_d == after.pam_d,
        "/etc/pam.d changed during the demo: {:?}",
        changed(&before.pam_d, &after.pam_d)
    );
    assert!(
        before.etc_ssh == after.etc_ssh,
        "/etc/ssh changed during the demo: {:?}",
        changed(&before.etc_ssh, &after.etc_ssh)
    );
    assert_eq!(
        before.run_sshd, after.run_sshd,
        "/run/sshd created or removed"
    );
    assert_eq!(
        before.rec_group, after.rec_group,
        "group {REC_GROUP} created or removed"
    );
}

// ---------------------------------------------------------------------------------------
// Running the demo.

/// `scripts/demo` running with its stdout and stderr collected in the background.
struct Demo {
    process: Running,
    started: Instant,
}

impl Demo {
    fn start() -> Self {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace().join("scripts/demo"))
            // Its own process group, as a job in a terminal: Ctrl-C signals the group.
            .process_group(0)
            .env("BREAKGLASS_DEMO_BIN", demo_bin())
            .stdin(Stdio::null());
        default_signals(&mut cmd);
        let process = Running::spawn(&mut cmd);
        Self {
            process,
            started: Instant::now(),
        }
    }

    fn output(&self) -> String {
        self.process.output()
    }

    /// The demo's temporary directory, from its first line.
    fn dir(&self) -> Option<String> {
        let out = self.output();
        let line = out.lines().find(|l| l.contains("on loopback in /"))?;
        Some(line.rsplit(' ').next()?.trim().to_owned())
    }

    fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        self.process
            .wait_output(needle, timeout, Duration::from_millis(50))
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let (st, _) = self.process.wait_exit(timeout, Duration::from_millis(50))?;
        Some(st)
    }

    /// Sends `sig` to the demo's process (`group`: to its process group, as Ctrl-C in a
    /// terminal does; bash runs its INT trap only once the foreground command is gone,
    /// and may drop a SIGINT sent to it alone while a command that survives it runs).
    fn signal(&self, sig: Signal, group: bool) {
        self.process.signal(sig, group);
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed assertion: TERM lets the demo clean up; KILL only if it hangs.
        if self.process.exit_status().is_none() {
            self.process.terminate(Duration::from_secs(30));
        }
    }
}

/// Resets SIGINT and SIGTERM to their default action in the child, as a shell in a
/// terminal has them. A test runner started in the background (`cmd &`, nohup, some CI
/// agents) inherits SIGINT ignored; a shell started with a signal ignored cannot trap
/// it (POSIX), so the demo's INT trap would never run and Ctrl-C would not stop it.
#[allow(unsafe_code)]
fn default_signals(cmd: &mut Command) {
    use nix::sys::signal::{SigHandler, signal};
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it calls sigaction(2) (through `signal`), which
    // is, allocates nothing and takes no lock. Setting SIG_DFL installs no handler, so
    // `signal`'s own safety condition (a handler that is async-signal-safe) holds.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [Signal::SIGINT, Signal::SIGTERM] {
                signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Starts the demo, waits for `marker`, sends `sig`, and checks the exit and the clean-up.
fn interrupted_demo_cleans_up(sig: Signal, group: bool, marker: &str, expected_code: i32) {
    let before = system_state();
    let mut demo = Demo::start();
    assert!(
        demo.wait_output(marker, Duration::from_secs(180)),
        "the demo did not reach {marker:?}:\n{}",
        demo.output()
    );
    let dir = demo.dir().expect("the demo printed its directory");
    assert!(Path::new(&dir).exists(), "{dir} exists while the demo runs");
    demo.signal(sig, group);
    let st = demo.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "the demo did not exit within 60s of {sig}:\n{}",
            demo.output()
        )
    });
    let out = demo.output();
    assert_eq!(
        st.code(),
        Some(expected_code),
        "exit after {sig} (signal {:?}):\n{out}",
        st.signal()
    );
    assert!(
        out.contains(&format!(
            "demo: interrupted (exit {expected_code}) in step "
        )) && out.contains("Cleaning up"),
        "the demo did not say it stopped and cleaned up:\n{out}"
    );
    assert!(
        !out.contains("Demo complete"),
        "the demo ran to the end despite {sig}:\n{out}"
    );
    assert_clean(&dir, &before, &out);
}

#[test]
fn demo_runs_to_the_end_and_leaves_nothing_behind() {
    let Some(_serial) = ready("scripts/demo: a user, sshd, PAM and a daemon") else {
        return;
    };
    let before = system_state();
    let mut demo = Demo::start();
    let st = demo.wait_exit(Duration::from_secs(300));
    let out = demo.output();
    let st = st.unwrap_or_else(|| panic!("the demo did not finish within 5 minutes:\n{out}"));
    assert!(st.success(), "scripts/demo failed ({st}):\n{out}");
    let mut at = 0;
    for title in STEP_TITLES {
        let found = out[at..]
            .find(title)
            .unwrap_or_else(|| panic!("step {title:?} missing or out of order:\n{out}"));
        at += found + title.len();
    }
    for needle in [
        // the exact operator commands are printed before they run
        "$ breakglass --config ca/clients/sre.toml request --host localhost --as bgdemo",
        "$ breakglass --config ca/clients/approver.toml approve r-",
        "\"event\":\"emergency\"",
        "$ breakglass --config ca/clients/auditor.toml review list",
        "uid=",
        "expires at",
        "reason=expired",
        "reason=revoked",
        "revoked by file",
        "$ breakglass --config ca/clients/auditor.toml audit verify --remote",
        "OK: audit log",
        "Demo complete in",
        "10 steps passed",
        // the recorded session: the recorder in its process tree, exported and played
        "breakglass-record --grant g-",
        "wrote the recording of session",
        "asciinema cat session.cast",
        "recordings: 1 stored recording(s) match their session records",
        "host doctor: 14 ok, 0 WARN, 0 FAIL",
        "PASS: break-glass drill on localhost as bgdemo: request to shell",
        "logout to audit record",
        "Clean-up done.",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    eprintln!("demo finished in {:?}", demo.started.elapsed());
    let dir = demo.dir().expect("the demo printed its directory");
    assert_clean(&dir, &before, &out);
}

#[test]
fn demo_interrupted_after_the_login_step_cleans_up() {
    let Some(_serial) = ready("scripts/demo interrupted with SIGINT") else {
        return;
    };
    interrupted_demo_cleans_up(
        Signal::SIGINT,
        true,
        "-- step 5: A login with the certificate done",
        130,
    );
}

#[test]
fn demo_terminated_while_a_session_is_open_cleans_up() {
    let Some(_serial) = ready("scripts/demo terminated with SIGTERM") else {
        return;
    };
    interrupted_demo_cleans_up(
        Signal::SIGTERM,
        false,
        "waiting for the warning and the cut",
        143,
    );
}
