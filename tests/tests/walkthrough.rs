//! The README's "A 5-minute walkthrough", run as a new user would type it: its shell
//! blocks, taken from README.md, with only the places made private to this run (the dev
//! directory, the sshd directory, the key, the user, and the two ports, picked the way the
//! walkthrough tells a reader whose ports are taken: `init --listen`, the sshd's `Port`
//! and `ssh -p`). Root only (useradd, sshd); needs sshd, ssh and pam_wrapper.
//!
//! It shows that the daemon starts and answers, the request issues a certificate, the
//! first `ssh` logs in without a host-key prompt (BatchMode: a prompt would fail it),
//! the sshd runs the PAM module (the session is recorded in its spool), and the clean-up
//! block leaves no user, process, directory or pam_wrapper copy behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use breakglass_test_support::machine::free_port;
use breakglass_test_support::pam_wrapper::pam_wrapper_dirs;
use breakglass_test_support::process::{cmdline, processes_where, sigkill};
use breakglass_test_support::users::unique;
use breakglass_test_support::wait::until;
use breakglass_test_support::{can_run, have, require_root, side_build, workspace};

/// The walkthrough's shell blocks, in order.
fn walkthrough_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme
        .find("## A 5-minute walkthrough")
        .expect("walkthrough section");
    let end = start + readme[start..].find("\n## ").expect("next section");
    let mut blocks = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + 6..];
        let j = body.find("```").expect("closed block");
        blocks.push(body[..j].to_owned());
        rest = &body[j + 3..];
    }
    blocks
}

/// `text` with `from` replaced by `to`, which must be there (a README edit that drops it
/// must update this test, not silently skip it).
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the walkthrough no longer has {from:?}:\n{text}"
    );
    text.replace(from, to)
}

/// Everything this run made, undone on drop (also when an assertion failed).
struct Run {
    dir: tempfile::TempDir,
    user: String,
}

impl Run {
    fn sshd_dir(&self) -> PathBuf {
        self.dir.path().join("sshd")
    }

    fn ours(&self, pid: u32) -> bool {
        cmdline(pid).contains(&self.dir.path().display().to_string())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        for pid in processes_where(|p| self.ours(p)) {
            let _ = sigkill(pid);
        }
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.user])
            .output();
        let needle = self.sshd_dir().display().to_string();
        for d in pam_wrapper_dirs() {
            if std::fs::read_to_string(d.join("sshd")).is_ok_and(|s| s.contains(&needle)) {
                let _ = std::fs::remove_dir_all(&d);
            }
        }
    }
}

/// Runs `script` in bash (`set -eu`, as typed: each failing command stops it), bounded.
fn bash(script: &str, env: &[(&str, &Path)], dir: &Path) -> (bool, String) {
    let out_path = dir.join("bash.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("bash")
        .args(["-c", &format!("set -eu\n{script}")])
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut status = None;
    let ended = until(Duration::from_secs(120), Duration::from_millis(100), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    (status.is_some_and(|s| s.success()), text)
}

#[test]
fn the_readme_walkthrough_logs_in_through_the_pam_module_without_a_host_key_prompt() {
    if !require_root(
        "the_readme_walkthrough_logs_in_through_the_pam_module_without_a_host_key_prompt",
    ) {
        return;
    }
    let wrapper = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|d| Path::new(d).join("libpam_wrapper.so").exists());
    if !can_run(
        "sshd, ssh and pam_wrapper",
        Path::new("/usr/sbin/sshd").exists() && have("ssh") && wrapper,
    ) {
        return;
    }
    let bin = side_build(&["breakglass-ca", "breakglass-cli", "pam-breakglass"]);
    let run = Run {
        dir: tempfile::tempdir().unwrap(),
        user: unique("bgw"),
    };
    let tmp = run.dir.path().display().to_string();
    std::fs::create_dir(run.dir.path().join("keys")).unwrap();

    let blocks = walkthrough_blocks();
    assert_eq!(
        blocks.len(),
        8,
        "the walkthrough's blocks changed: {blocks:#?}"
    );
    assert!(blocks[0].contains("cargo build --release"), "{}", blocks[0]);
    // A line continued with `\` is one command.
    let mut script = blocks[1..7].join("\n").replace("\\\n", " ");
    let daemon_port = free_port();
    let ssh_port = free_port();
    script = swap(
        &script,
        "breakglass-ca init --dev ./dev\n",
        &format!("breakglass-ca init --dev ./dev --listen 127.0.0.1:{daemon_port}\n"),
    );
    // The daemon runs in the background; a reader's next command comes a moment later.
    script = swap(
        &script,
        "breakglass-ca.toml &\n",
        "breakglass-ca.toml & echo $! > daemon.pid\nfor i in $(seq 100); do breakglass --config ./dev/clients/sre.toml whoami >/dev/null 2>&1 && break; sleep 0.1; done\n",
    );
    // BatchMode: a host-key (or any) prompt fails the login instead of waiting.
    script = swap(&script, "ssh -p 2222 ", "ssh -o BatchMode=yes -p 2222 ");
    script = swap(&script, "bgdemo@localhost\n", "bgdemo@localhost id -un\n");
    script = swap(&script, "Port 2222", &format!("Port {ssh_port}"));
    script = swap(
        &script,
        "[localhost]:2222",
        &format!("[localhost]:{ssh_port}"),
    );
    script = swap(&script, "-p 2222", &format!("-p {ssh_port}"));
    script = swap(&script, "./dev", &format!("{tmp}/dev"));
    script = swap(&script, "/tmp/bg-sshd", &format!("{tmp}/sshd"));
    script = swap(
        &script,
        "~/.ssh/breakglass_demo",
        &format!("{tmp}/keys/breakglass_demo"),
    );
    script = swap(&script, "bgdemo", &run.user);
    let env = [("BG", bin.as_path())];
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("export PATH={path}\n{script}");

    let (ok, out) = bash(&script, &env, run.dir.path());
    assert!(
        ok,
        "the walkthrough failed:\n--- script\n{script}\n--- output\n{out}"
    );
    assert!(
        out.contains("sre@example.com (via mtls; groups: sre)"),
        "{out}"
    );
    assert!(out.contains("Certificate written to"), "{out}");
    assert!(
        out.lines().any(|l| l == run.user),
        "ssh did not run id -un as {}:\n{out}",
        run.user
    );
    // The session went through the PAM module: it recorded the session's open.
    let spool: Vec<String> = std::fs::read_dir(run.sshd_dir().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        spool.iter().any(|f| f.ends_with("-open.json")),
        "no session record in the spool: {spool:?}\n{out}"
    );

    // The clean-up block, as printed, leaves nothing of the walkthrough behind.
    let cleanup = swap(&blocks[7], "/tmp/bg-sshd", &format!("{tmp}/sshd"));
    let cleanup = swap(&cleanup, "bgdemo", &run.user);
    let daemon_pid = std::fs::read_to_string(run.dir.path().join("daemon.pid")).unwrap();
    let (ok, out) = bash(
        &format!("{cleanup}\nkill {daemon_pid}"),
        &env,
        run.dir.path(),
    );
    assert!(ok, "the clean-up failed:\n{cleanup}\n{out}");
    assert!(
        !run.sshd_dir().exists(),
        "the sshd directory is still there"
    );
    let user_left = Command::new("id")
        .arg(&run.user)
        .output()
        .unwrap()
        .status
        .success();
    assert!(!user_left, "user {} is still there", run.user);
    assert!(
        until(Duration::from_secs(10), Duration::from_millis(100), || {
            processes_where(|p| run.ours(p)).is_empty()
        }),
        "processes of the walkthrough are still running: {:?}",
        processes_where(|p| run.ours(p))
            .iter()
            .map(|p| cmdline(*p))
            .collect::<Vec<_>>()
    );
    let needle = run.sshd_dir().display().to_string();
    let copies: Vec<PathBuf> = pam_wrapper_dirs()
        .into_iter()
        .filter(|d| std::fs::read_to_string(d.join("sshd")).is_ok_and(|s| s.contains(&needle)))
        .collect();
    assert!(copies.is_empty(), "pam_wrapper copies left: {copies:?}");
}
