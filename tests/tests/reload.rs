//! Reload in place and systemd notifications (README "Reloading the configuration",
//! "systemd"): the real `breakglass-ca serve` child process, the real `breakglass` CLI.
//! - SIGHUP with a valid change: a new rule takes effect for the next request, a request
//!   waiting for approval before the reload is still answered after `approve`, and the
//!   `config_reloaded` event (with the file's SHA-256) is in `audit show` and the log
//!   verifies.
//! - SIGHUP with an invalid change: the old policy stays in force, the error names the
//!   field, the daemon keeps serving and exits 0 at SIGTERM.
//! - SIGHUP with a change to a setting that needs a restart: refused, named, nothing of
//!   the file applied.
//! - `NOTIFY_SOCKET`: a datagram socket the test binds hears READY=1, WATCHDOG=1 (with
//!   `WATCHDOG_USEC`), RELOADING=1 with MONOTONIC_USEC= then READY=1 around a SIGHUP, and
//!   STOPPING=1 at SIGTERM; a stalled fdatasync (strace) stops the watchdog pings.
//! - `systemd-analyze verify` of every unit in packaging/.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakglass_tests::ca_process::CaProcess;
use breakglass_tests::{
    breakglass_bin, breakglass_ca_bin, can_run, have, is_root, ssh_keygen, workspace,
};
use nix::sys::signal::{Signal, kill};
use tokio::io::AsyncBufReadExt;

/// Longest wait for something the daemon does in the background.
const WAIT: Duration = Duration::from_secs(60);

/// A rule the dev setup does not have: SREs on `*.reload.example`, tier low (no approval).
const NEW_RULE: &str = r#"
[[rules]]
name = "sre-reload"
tier = "low"
groups = ["sre"]
principals = ["*"]
hosts = ["*.reload.example"]
interactive = true
max_ttl = "30m"
extensions = ["permit-pty"]
"#;

/// A daemon on a fresh `init --dev` setup, and an SSH key to request with.
struct Setup {
    ca: CaProcess,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Sets up; `env` goes to the daemon; nothing started yet.
    async fn new(env: &[(&str, &str)]) -> Self {
        let (bin, _) = tokio::task::spawn_blocking(|| (breakglass_ca_bin(), breakglass_bin()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CaProcess::init(bin, &dir.path().join("ca")).unwrap();
        ca.edit_config(
            "syslog_socket = \"/dev/log\"",
            "syslog_socket = \"no-syslog.sock\"",
        )
        .unwrap();
        for (k, v) in env {
            ca.set_env(k, v);
        }
        let key = ssh_keygen(dir.path(), "id_reload", &["-t", "ed25519"]);
        Self { ca, key, _dir: dir }
    }

    async fn start(env: &[(&str, &str)]) -> Self {
        let mut s = Self::new(env).await;
        s.ca.start().await.unwrap();
        s
    }

    /// `breakglass --config clients/NAME.toml`.
    fn cli(&self, name: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(breakglass_bin());
        c.arg("--config")
            .arg(self.ca.path().join(format!("clients/{name}.toml")))
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_SERVER")
            .stdin(Stdio::null());
        c
    }

    /// `breakglass request` as the sample SRE for `host`.
    fn request(&self, host: &str, reason: &str) -> tokio::process::Command {
        let mut c = self.cli("sre");
        c.args([
            "request",
            "--host",
            host,
            "--as",
            "bgreload",
            "--ttl",
            "5m",
            "--reason",
            reason,
            "--public-key",
        ])
        .arg(&self.key);
        c
    }

    /// Runs `request` for `host` to its end: its exit status success and what it printed.
    async fn request_now(&self, host: &str) -> (bool, String) {
        let out = self
            .request(host, "INC-7 reload test")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `breakglass NAME ARGS`, which must succeed; its stdout.
    async fn cli_ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.cli(name).args(args).output().await.unwrap();
        assert!(
            out.status.success(),
            "breakglass {args:?} as {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn append_to_config(&self, text: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.ca.config())
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn signal(&self, sig: Signal) {
        kill(self.ca.pid().expect("the daemon runs"), sig).unwrap();
    }

    /// Waits until the daemon's log holds `needle` `n` times; returns the log.
    async fn log_holds(&self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.ca.log_text();
            if log.matches(needle).count() >= n {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never logged {needle:?} ({n} times):\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGHUP, then waits for the outcome line `needle` (the `n`th of its kind).
    async fn hup(&self, needle: &str, n: usize) -> String {
        self.signal(Signal::SIGHUP);
        self.log_holds(needle, n).await
    }

    /// The metrics listener of the dev set-up (read before the file is edited).
    fn metrics_addr(&self) -> std::net::SocketAddr {
        breakglass_ca::config::Config::load(&self.ca.config())
            .unwrap()
            .server
            .metrics_listen
            .expect("the dev set-up has a metrics listener")
    }

    /// `breakglass_config_reloads_total{result="RESULT"}` from `/metrics` (0 when absent).
    fn reloads_counted(addr: std::net::SocketAddr, result: &str) -> u64 {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        write!(c, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        let name = format!("breakglass_config_reloads_total{{result=\"{result}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&name))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// `breakglass audit show` as the sample auditor.
    async fn audit_show(&self) -> String {
        self.cli_ok("auditor", &["audit", "show"]).await
    }
}

fn sha256_hex(path: &Path) -> String {
    use ssh_key::sha2::{Digest, Sha256};
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_valid_change_takes_effect_for_the_next_request_and_a_waiting_one_is_answered()
 {
    let s = Setup::start(&[]).await;
    let (ok, err) = s.request_now("db-1.reload.example").await;
    assert!(!ok, "no rule covers *.reload.example yet: {err}");

    // A request that waits for one approval (tier elevated), from before the reload.
    let mut waiting = s
        .request("web-1.staging.example", "INC-7 staging checkout errors")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(waiting.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let id = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the waiting request says it is pending")
            .unwrap()
            .unwrap_or_else(|| panic!("request ended before it was pending:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(" pending: ") {
            break line.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(id.starts_with("r-"), "{seen}");

    s.append_to_config(NEW_RULE);
    let log = s.hup("configuration reloaded", 1).await;
    let sha = sha256_hex(&s.ca.config());
    assert!(
        log.contains(&sha),
        "the reload logs the file's SHA-256 {sha}:\n{log}"
    );

    // The new rule is in force for the next request.
    let (ok, err) = s.request_now("db-1.reload.example").await;
    assert!(ok, "the reloaded rule sre-reload allows it: {err}");
    assert!(err.contains("rule sre-reload"), "{err}");

    // The request waiting since before the reload is approved and answered.
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "still waiting:\n{seen}"
    );
    s.cli_ok("approver", &["approve", &id, "--comment", "go"])
        .await;
    let rest = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            seen.push_str(&l);
            seen.push('\n');
        }
        seen
    });
    let out = tokio::time::timeout(WAIT, waiting.wait_with_output())
        .await
        .expect("the waiting request ends after the approval")
        .unwrap();
    let seen = rest.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{seen}{stdout}");
    assert!(
        stdout.contains("Certificate written to") && stdout.contains("tier elevated"),
        "{seen}{stdout}"
    );

    // On the record, with the hash of the file as read.
    let shown = s.audit_show().await;
    let line = shown
        .lines()
        .find(|l| l.contains("config_reloaded"))
        .unwrap_or_else(|| panic!("no config_reloaded in audit show:\n{shown}"));
    assert!(line.contains(&sha), "{line}");

    let mut s = s;
    let status = s.ca.stop().unwrap();
    assert!(status.success(), "{status}:\n{}", s.ca.log_tail(30));
    let audit_dir = s.ca.audit_dir().unwrap();
    let out = Command::new(breakglass_bin())
        .args(["audit", "verify"])
        .arg(&audit_dir)
        .arg("--key")
        .arg(s.ca.log_pub())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_an_invalid_change_keeps_the_running_policy_and_names_the_field() {
    let mut s = Setup::start(&[]).await;
    let metrics = s.metrics_addr();
    // The new rule, and a tier whose TTL exceeds [ca] max_ttl (8h): the whole file is
    // refused, the rule included.
    s.append_to_config(NEW_RULE);
    s.ca.edit_config("max_ttl = \"30m\"", "max_ttl = \"9h\"")
        .unwrap();
    let log = s.hup("configuration not reloaded", 1).await;
    let refused = log
        .lines()
        .find(|l| l.contains("configuration not reloaded"))
        .unwrap();
    assert!(
        refused.contains("tiers[0].max_ttl"),
        "names the field: {refused}"
    );

    let (ok, err) = s.request_now("db-1.reload.example").await;
    assert!(!ok, "the running policy has no sre-reload rule: {err}");
    let (ok, err) = s.request_now("localhost").await;
    assert!(ok, "the daemon still serves with the running policy: {err}");
    assert!(!s.audit_show().await.contains("config_reloaded"));
    assert_eq!(Setup::reloads_counted(metrics, "invalid"), 1);
    assert_eq!(Setup::reloads_counted(metrics, "reloaded"), 0);

    let status = s.ca.stop().unwrap();
    assert!(
        status.success(),
        "exit 0 at SIGTERM after a refused reload: {status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_change_to_a_fixed_setting_is_refused_and_names_it() {
    let mut s = Setup::start(&[]).await;
    let metrics = s.metrics_addr();
    s.append_to_config(NEW_RULE);
    s.ca.edit_config("shutdown_grace = \"10s\"", "shutdown_grace = \"11s\"")
        .unwrap();
    s.ca.edit_config("segment_max_mib = 64", "segment_max_mib = 32")
        .unwrap();
    let log = s.hup("configuration not reloaded", 1).await;
    let refused = log
        .lines()
        .find(|l| l.contains("configuration not reloaded"))
        .unwrap();
    assert!(
        refused.contains("server.shutdown_grace")
            && refused.contains("audit.segment_max_mib")
            && refused.contains("restart"),
        "{refused}"
    );
    // All or nothing: the new rule in the same file is not in force either.
    let (ok, err) = s.request_now("db-1.reload.example").await;
    assert!(!ok, "{err}");
    assert!(!s.audit_show().await.contains("config_reloaded"));

    // Put the fixed settings back: the next SIGHUP applies the rule.
    s.ca.edit_config("shutdown_grace = \"11s\"", "shutdown_grace = \"10s\"")
        .unwrap();
    s.ca.edit_config("segment_max_mib = 32", "segment_max_mib = 64")
        .unwrap();
    s.hup("configuration reloaded", 1).await;
    let (ok, err) = s.request_now("db-1.reload.example").await;
    assert!(ok, "{err}");
    assert_eq!(Setup::reloads_counted(metrics, "needs_restart"), 1);
    assert_eq!(Setup::reloads_counted(metrics, "reloaded"), 1);
    assert!(s.ca.stop().unwrap().success());
}

/// The test's end of `NOTIFY_SOCKET`.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            sock,
            seen: Vec::new(),
        }
    }

    /// Reads what arrived (waiting up to 100 ms for the first datagram), for at most
    /// 300 ms: watchdog pings every 100 ms would otherwise keep it reading forever.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until
            && let Ok(n) = self.sock.recv(&mut buf)
        {
            self.seen.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }

    /// Waits until a message after the first `from` ones satisfies `want`; returns its
    /// position.
    fn wait_for(&mut self, from: usize, what: &str, want: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.seen.iter().skip(from).position(|(_, m)| want(m)) {
                return from + i;
            }
            assert!(
                Instant::now() < deadline,
                "systemd never heard {what}; it heard: {:?}",
                self.seen.iter().map(|(_, m)| m).collect::<Vec<_>>()
            );
            self.drain();
        }
    }
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let mut heard = Notifications::bind(&path);
    let sock = path.display().to_string();
    let mut s = Setup::new(&[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "200000")]).await;
    s.ca.start().await.unwrap();

    let ready = heard.wait_for(0, "READY=1", |m| has(m, "READY=1"));
    heard.wait_for(ready, "WATCHDOG=1", |m| has(m, "WATCHDOG=1"));

    s.signal(Signal::SIGHUP);
    let reloading = heard.wait_for(0, "RELOADING=1", |m| has(m, "RELOADING=1"));
    let msg = heard.seen[reloading].1.clone();
    assert!(
        msg.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 comes with MONOTONIC_USEC=: {msg:?}"
    );
    heard.wait_for(reloading + 1, "READY=1 after the reload", |m| {
        has(m, "READY=1")
    });
    s.log_holds("configuration reloaded", 1).await;

    let status = s.ca.stop().unwrap();
    assert!(status.success(), "{status}");
    heard.wait_for(reloading, "STOPPING=1", |m| has(m, "STOPPING=1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_fdatasync_stops_the_watchdog_pings() {
    if !can_run("root, to ptrace the daemon", is_root()) || !can_run("strace", have("strace")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let mut heard = Notifications::bind(&path);
    let sock = path.display().to_string();
    let mut s = Setup::new(&[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "200000")]).await;
    s.ca.start().await.unwrap();
    let ready = heard.wait_for(0, "READY=1", |m| has(m, "READY=1"));
    heard.wait_for(ready, "WATCHDOG=1", |m| has(m, "WATCHDOG=1"));

    // Every fdatasync of the daemon now takes 3 s (entered, then stalled), as on a disk
    // that hangs: the writer thread is stuck in it and answers no keep-alive meanwhile.
    const STALL: Duration = Duration::from_secs(3);
    let trace = tmp.path().join("strace.out");
    let pid = s.ca.pid().unwrap();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=fdatasync",
            "-e",
            &format!("inject=fdatasync:delay_enter={}", STALL.as_micros()),
            "-p",
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // strace attached: every thread of the daemon has a tracer.
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .all(|t| {
            std::fs::read_to_string(t.path().join("status")).is_ok_and(|st| {
                st.lines()
                    .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
            })
        })
    {
        assert!(Instant::now() < deadline, "strace did not attach");
        std::thread::sleep(Duration::from_millis(10));
    }
    heard.drain();
    let before = heard.seen.len();
    // One issuance: one commit, one stalled fdatasync.
    let (ok, err) = s.request_now("localhost").await;
    assert!(ok, "{err}");
    let _ = kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        Signal::SIGINT,
    );
    let _ = strace.wait();
    heard.drain();
    heard.wait_for(before, "WATCHDOG=1 after the stall", |m| {
        has(m, "WATCHDOG=1")
    });
    // Pings arrive every 100 ms while the writer is free; during the stall none did: the
    // longest gap between two pings spans (nearly) the whole stall.
    let pings: Vec<Instant> = heard.seen[ready..]
        .iter()
        .filter(|(_, m)| has(m, "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    let longest = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "watchdog pings: {}, longest gap {longest:?} (stall {STALL:?})",
        pings.len()
    );
    assert!(
        longest >= STALL - Duration::from_millis(500),
        "the pings went on while fdatasync was stalled (longest gap {longest:?})"
    );
    assert!(s.ca.stop().unwrap().success());
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    let units: Vec<PathBuf> = ["packaging/ca", "packaging/hosts", "packaging/drill"]
        .iter()
        .flat_map(|d| std::fs::read_dir(workspace().join(d)).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "service" || x == "timer" || x == "socket")
        })
        .collect();
    assert!(units.len() >= 8, "{units:?}");
    if !can_run(
        "systemd-analyze (scripts/install-deps installs the systemd package)",
        have("systemd-analyze"),
    ) {
        return;
    }
    // The units name /usr/bin/breakglass{,-ca}, which verify requires to exist: a copy of
    // each with the built executables there instead, nothing else changed.
    let (ca, cli) = (breakglass_ca_bin(), breakglass_bin());
    let tmp = tempfile::tempdir().unwrap();
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        let text = text
            .replace("/usr/bin/breakglass-ca ", &format!("{} ", ca.display()))
            .replace("/usr/bin/breakglass ", &format!("{} ", cli.display()));
        let copy = tmp.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        // --man=no: the man pages are not installed here (the package test has them).
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // verify exits 0 on unknown keys and unparsable values ("ignoring"): any output
        // at all is a finding.
        assert!(
            out.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {}: {}\n{said}",
            unit.display(),
            out.status
        );
    }
}
