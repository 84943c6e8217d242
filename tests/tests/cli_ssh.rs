//! `breakglass ssh` and `breakglass config ssh` end to end, with the real pieces: the real
//! `breakglass` binary as the sample SRE against an in-process daemon over mTLS (the dev
//! config's tiers: `low` issues at once, `elevated` needs one approval or a declared
//! emergency), a real `sshd` on loopback trusting the daemon's CA with `pam_breakglass.so`
//! in its session stack, and the system `ssh` that `breakglass ssh` becomes.
//!
//! Host keys are checked for real (`StrictHostKeyChecking yes` with a known_hosts file
//! holding the test sshd's key) through the ssh config the tests pass with `-F`: the
//! product never weakens host-key checking, and ssh never prompts.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use breakglass_proto::audit::EventKind;
use breakglass_tests::audit::all_events;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::sshd::{Sshd, TestUser, require_root};
use breakglass_tests::{breakglass_bin_built, can_run, have, ssh_keygen};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The elevated tier's test host (rule `sre-staging`: one approval, or an emergency).
const STAGING: &str = "web-1.staging.example";
/// Longest wait for a `breakglass ssh` run or a line of it.
const WAIT: Duration = Duration::from_secs(60);

/// A daemon, an sshd whose module calls itself `host`, a login user, and a scratch
/// directory with a key pair and an ssh config reaching the sshd with host-key checks.
struct Setup {
    d: TestDaemon,
    sshd: Sshd,
    user: TestUser,
    dir: tempfile::TempDir,
    /// The SRE's public key (`id_ed25519.pub` in `dir`).
    public: PathBuf,
    /// ssh config for `-F`: every host is the test sshd, its key pinned.
    ssh_config: PathBuf,
}

async fn setup(host: &str) -> Option<Setup> {
    if !require_root("a real sshd, a test user and /etc/pam.d") {
        return None;
    }
    if !can_run("ssh and ssh-keygen", have("ssh") && have("ssh-keygen")) {
        return None;
    }
    breakglass_bin_built().await;
    let d = TestDaemon::start().await;
    let sshd = d.start_sshd(Some(host)).await;
    let user = tokio::task::spawn_blocking(TestUser::create).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519"]);
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(&ssh_config, user_ssh_config(&sshd, dir.path(), None)).unwrap();
    Some(Setup {
        d,
        sshd,
        user,
        dir,
        public,
        ssh_config,
    })
}

/// What a user's own ssh config says for the test hosts: where the sshd listens, its
/// pinned host key (known_hosts in `dir`), no prompts; `user` as `User` if given.
fn user_ssh_config(sshd: &Sshd, dir: &Path, user: Option<&str>) -> String {
    let host_key = std::fs::read_to_string(sshd.dir.path().join("host_ed25519.pub")).unwrap();
    let mut parts = host_key.split_whitespace();
    let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
    let known_hosts = dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{p},[localhost]:{p},[{STAGING}]:{p} {kind} {key}\n",
            p = sshd.port
        ),
    )
    .unwrap();
    format!(
        "Host *\n    HostName 127.0.0.1\n    Port {port}\n{user}    StrictHostKeyChecking yes\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n    BatchMode yes\n    ConnectTimeout 10\n",
        port = sshd.port,
        user = user.map(|u| format!("    User {u}\n")).unwrap_or_default(),
        kh = known_hosts.display(),
    )
}

impl Setup {
    /// `breakglass ssh` as the sample SRE with the key and ssh config of the setup,
    /// then `args`.
    fn bg_ssh(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = self.d.cli("sre");
        c.arg("ssh")
            .arg("--public-key")
            .arg(&self.public)
            .arg("-F")
            .arg(&self.ssh_config)
            .args(args)
            .env("HOME", self.dir.path());
        c
    }

    /// The serial of the certificate next to the key.
    fn serial(&self) -> u64 {
        let text = std::fs::read_to_string(self.dir.path().join("id_ed25519-cert.pub")).unwrap();
        ssh_key::Certificate::from_openssh(text.trim())
            .unwrap()
            .serial()
    }

    /// (grants issued, events) in the audit log so far.
    async fn log(&self) -> (usize, usize) {
        let events = all_events(&self.d).await;
        let grants = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::GrantIssued(_)))
            .count();
        (grants, events.len())
    }
}

async fn run(mut c: tokio::process::Command) -> (Output, String, String) {
    let out = tokio::time::timeout(WAIT, c.output())
        .await
        .expect("breakglass ssh finishes")
        .expect("breakglass runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- exit {}\n{stdout}{stderr}", out.status);
    (out, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn first_ssh_requests_and_logs_in_the_second_reuses_the_certificate() {
    let Some(s) = setup("localhost").await else {
        return;
    };
    let dest = format!("{}@localhost", s.user.name);
    let uid_line = format!("({})", s.user.name);

    // 1. No certificate yet: requested (tier low: issued at once), then ssh runs the
    // command on the host with it.
    let (out, stdout, stderr) = run(s.bg_ssh(&[
        "--ttl",
        "5m",
        "--reason",
        "INC-1 disk full",
        &dest,
        "--",
        "/usr/bin/id",
    ]))
    .await;
    assert!(out.status.success(), "{stderr}\nsshd:\n{}", s.sshd.log());
    assert!(stdout.contains(&uid_line), "{stdout}");
    assert!(stderr.contains("requesting a certificate"), "{stderr}");
    assert!(stderr.contains("certificate written to"), "{stderr}");
    let serial = s.serial();
    let (grants, events) = s.log().await;
    assert_eq!(grants, 1, "one grant issued");
    assert!(
        s.sshd.log().contains(&format!("(serial {serial}) CA")),
        "sshd accepted the certificate:\n{}",
        s.sshd.log()
    );

    // 2. Again, without --ttl and --reason: the certificate covers the login and is
    // reused; the daemon sees nothing (no event at all, the same serial).
    let (out, stdout, stderr) = run(s.bg_ssh(&[&dest, "--", "/usr/bin/id"])).await;
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&uid_line), "{stdout}");
    assert!(stderr.contains("no request made"), "{stderr}");
    assert_eq!(s.serial(), serial);
    assert_eq!(
        s.log().await,
        (grants, events),
        "no request reached the daemon"
    );

    // 3. Another command: the certificate's force-command does not cover it. Without
    // --ttl/--reason the CLI says what to add; with them a new certificate is issued.
    let (out, _, stderr) = run(s.bg_ssh(&[&dest, "--", "/usr/bin/uptime"])).await;
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("it only runs the command \"/usr/bin/id\"")
            && stderr.contains("add --ttl DURATION and --reason TEXT"),
        "{stderr}"
    );
    let (out, stdout, stderr) = run(s.bg_ssh(&[
        "--ttl",
        "5m",
        "--reason",
        "INC-1 disk full",
        &dest,
        "--",
        "/usr/bin/uptime",
    ]))
    .await;
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("load average"), "{stdout}");
    assert_ne!(s.serial(), serial);
    assert_eq!(s.log().await.0, grants + 1);

    // 4. A user the certificate does not name: ssh would be refused, so a request is
    // needed (and said so), never a doomed login.
    let (out, _, stderr) = run(s.bg_ssh(&["root@localhost", "--", "/usr/bin/uptime"])).await;
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("not root"), "{stderr}");
    s.d.stop().await;
}

/// Reads `breakglass ssh`'s stderr lines until one contains `needle`; returns it.
async fn line_with(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: &mut String,
    needle: &str,
) -> String {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return line;
            }
        }
        panic!("breakglass ssh ended without {needle:?}:\n{seen}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} line in time:\n{seen}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_waits_for_approval_showing_the_state_then_logs_in() {
    let Some(s) = setup(STAGING).await else {
        return;
    };
    // The login user comes from the ssh config's User, as ssh would take it.
    std::fs::write(
        &s.ssh_config,
        user_ssh_config(&s.sshd, s.dir.path(), Some(&s.user.name)),
    )
    .unwrap();
    let mut child = s
        .bg_ssh(&[
            "--ttl",
            "10m",
            "--reason",
            "INC-2 checkout errors on web-1",
            STAGING,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("breakglass ssh starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let pending = line_with(&mut lines, &mut seen, " pending: ").await;
    assert!(
        pending.contains("tier elevated needs 1 approval(s) from approvers")
            && pending.contains("(0/1)")
            && pending.ends_with(" left"),
        "{pending}"
    );
    let id = pending.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("r-"), "{pending}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "breakglass ssh waits for the approval"
    );

    // Another identity approves; the waiting command sees it, gets the certificate and
    // logs in (an interactive shell, fed from stdin).
    s.d.cli_ok("approver", &["approve", &id, "--comment", "go"])
        .await;
    let approved = line_with(&mut lines, &mut seen, "certificate written to").await;
    assert!(approved.contains("tier elevated"), "{approved}");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo logged-in-as-$(id -un)-$((6*7))\nexit\n")
        .await
        .unwrap();
    drop(stdin);
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            rest.push_str(&l);
            rest.push('\n');
        }
        rest
    });
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("ssh ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rest = rest.await.unwrap();
    assert!(
        out.status.success(),
        "{seen}{rest}\nsshd:\n{}",
        s.sshd.log()
    );
    assert!(
        stdout.contains(&format!("logged-in-as-{}-42", s.user.name)),
        "{stdout}\n{seen}{rest}"
    );
    let events = all_events(&s.d).await;
    let grant = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::GrantIssued(g) => Some(g),
            _ => None,
        })
        .expect("the grant is in the log");
    assert_eq!(grant.approvers, ["approver@example.com"], "{grant:?}");
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_emergency_goes_straight_in() {
    let Some(s) = setup(STAGING).await else {
        return;
    };
    let dest = format!("{}@{STAGING}", s.user.name);
    let mut c = s.bg_ssh(&[
        "--emergency",
        "--ttl",
        "10m",
        "--reason",
        "INC-3 site down, nobody answers",
        &dest,
    ]);
    c.stdin(Stdio::piped());
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo in-$((6*7))\nexit 7\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("ssh ends")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // breakglass became ssh: the shell's exit status is the command's.
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stderr}\nsshd:\n{}",
        s.sshd.log()
    );
    assert!(stdout.contains("in-42"), "{stdout}");
    assert!(stderr.contains("EMERGENCY grant"), "{stderr}");
    assert!(
        !stderr.contains(" pending: "),
        "no approval wait:\n{stderr}"
    );
    let events = all_events(&s.d).await;
    let grant = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::GrantIssued(g) => Some(g),
            _ => None,
        })
        .expect("the grant is in the log");
    assert!(grant.emergency && grant.approvers.is_empty(), "{grant:?}");
    s.d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_ssh_install_makes_plain_ssh_log_in_with_the_certificate() {
    let Some(s) = setup("localhost").await else {
        return;
    };
    // HOME is the scratch directory: the key is ~/.ssh/id_ed25519, the user's own ssh
    // config ~/.ssh/config.
    let home = s.dir.path();
    let dot_ssh = home.join(".ssh");
    std::fs::create_dir(&dot_ssh).unwrap();
    let public = ssh_keygen(&dot_ssh, "id_ed25519", &["-t", "ed25519"]);
    let config = dot_ssh.join("config");
    let own = user_ssh_config(&s.sshd, home, None);
    std::fs::write(&config, &own).unwrap();
    // ssh takes ~ from the password database, not $HOME: name the file.
    let plain_ssh = |host: &str, command: &str| -> Output {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .arg(format!("{}@{host}", s.user.name))
            .arg(command)
            .env("HOME", home)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    };
    let bg = |args: &[&str]| {
        let mut c = s.d.cli("sre");
        c.args(args).env("HOME", home);
        c
    };
    let (out, _, stderr) = run(bg(&[
        "request",
        "--host",
        "localhost",
        "--as",
        &s.user.name,
        "--ttl",
        "5m",
        "--reason",
        "INC-4 deploy stuck",
    ]))
    .await;
    assert!(out.status.success(), "{stderr}");
    assert!(dot_ssh.join("id_ed25519-cert.pub").exists());

    // Before: plain ssh does not know the certificate.
    let before = tokio::task::block_in_place(|| plain_ssh("localhost", "true"));
    assert!(!before.status.success(), "no login without the certificate");

    // The printed block names the key, the certificate and the check.
    let (out, stdout, stderr) = run(bg(&["config", "ssh"])).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("ssh-check --public-key")
            && stdout.contains(&format!("'{}'", public.display()))
            && stdout.contains("CertificateFile"),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(bg(&["config", "ssh", "--install"])).await;
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Included it at the top of"), "{stdout}");
    let installed = std::fs::read_to_string(&config).unwrap();
    assert!(
        installed.ends_with(&own),
        "the user's config is kept:\n{installed}"
    );
    let backups: Vec<_> = std::fs::read_dir(&dot_ssh)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("config.before-breakglass."))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), own);
    for f in [&config, &dot_ssh.join("breakglass.conf"), &backups[0]] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    // Twice: nothing changes.
    let (out, stdout, _) = run(bg(&["config", "ssh", "--install"])).await;
    assert!(out.status.success());
    assert!(
        stdout.contains("already includes") && !stdout.contains("Wrote"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), installed);

    // After: plain ssh logs in with the certificate.
    let after = tokio::task::block_in_place(|| plain_ssh("localhost", "echo plain-$((6*7))"));
    let stdout = String::from_utf8_lossy(&after.stdout);
    assert!(
        after.status.success() && stdout.contains("plain-42"),
        "{stdout}{}\nsshd:\n{}",
        String::from_utf8_lossy(&after.stderr),
        s.sshd.log()
    );
    let serial = ssh_key::Certificate::from_openssh(
        std::fs::read_to_string(dot_ssh.join("id_ed25519-cert.pub"))
            .unwrap()
            .trim(),
    )
    .unwrap()
    .serial();
    assert!(
        s.sshd.log().contains("ED25519-CERT")
            && s.sshd.log().contains(&format!("(serial {serial}) CA")),
        "{}",
        s.sshd.log()
    );
    // A host the certificate does not cover: the block stays out of the way.
    let other = tokio::task::block_in_place(|| plain_ssh(STAGING, "true"));
    assert!(!other.status.success());
    // ssh-check says why, when asked.
    let (out, _, stderr) = run(bg(&[
        "ssh-check",
        "--verbose",
        "--public-key",
        &public.display().to_string(),
        &s.user.name,
        STAGING,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("does not cover web-1.staging.example"),
        "{stderr}"
    );
    s.d.stop().await;
}
