//! Idle TCP connections cannot lock anyone out of the CA. The daemon is the real
//! `breakglass-ca serve` process, started with a file descriptor limit of 256 (soft and
//! hard, so raising it at start-up cannot help):
//! - 400 idle connections from ten loopback addresses, more than its whole descriptor
//!   limit, are held open, and more keep arriving from two other addresses, while the
//!   real `breakglass` CLI gets a certificate over mTLS and the admin socket answers
//!   `whoami`; the daemon logs the shedding and no accept error;
//! - with its descriptors used up (by admin-socket connections, which TCP's budget does
//!   not cover), TCP accept errors back off instead of spinning, and clients are served
//!   again once descriptors are free.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakglass_bench::idle::{IdleLoad, loopback_sources};
use breakglass_ca::accept::Limits;
use breakglass_ca::config::Config;
use breakglass_test_support::ca::CaProcess;
use breakglass_test_support::{free_port, wait};
use breakglass_tests::{breakglass_bin, breakglass_ca_bin, can_run, have, ssh_keygen};

/// The daemon's descriptor limit in these tests.
const FD_LIMIT: u64 = 256;

/// A `breakglass-ca serve` child process under `prlimit --nofile=N:N`, on a fresh
/// `init --dev` setup; SIGKILLed on drop.
struct Ca {
    dir: tempfile::TempDir,
    daemon: CaProcess,
    addr: SocketAddr,
}

impl Ca {
    fn start(fd_limit: u64, edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let setup = breakglass_ca::init::init_dev(dir.path(), addr).expect("init --dev");
        breakglass_test_support::ca::set_metrics_listen(&setup.config, "127.0.0.1:0");
        let text = std::fs::read_to_string(&setup.config).unwrap();
        std::fs::write(&setup.config, edit(text)).unwrap();
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={fd_limit}:{fd_limit}"))
            .arg("--")
            .arg(breakglass_ca_bin())
            .args(["serve", "--config"])
            .arg(&setup.config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        let daemon = CaProcess::start(&mut cmd, Duration::from_secs(60), |log| {
            log.contains("breakglass-ca serving")
        });
        Self { dir, daemon, addr }
    }

    /// Everything the daemon logged so far.
    fn log(&self) -> String {
        self.daemon.log()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> Config {
        Config::load(&self.path().join(breakglass_ca::init::CONFIG_FILE)).expect("config")
    }

    /// SIGTERM, wait for the exit, and return everything the daemon logged.
    fn stop(self) -> String {
        self.daemon.stop()
    }

    /// The real `breakglass` CLI as the sample SRE (or with `--server` given in `args`).
    async fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut c = tokio::process::Command::new(breakglass_bin());
        c.arg("--config")
            .arg(self.path().join("clients/sre.toml"))
            .args(args)
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_SERVER")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // Bounded: a locked-out client would otherwise wait for its own timeouts.
        tokio::time::timeout(Duration::from_secs(90), c.output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "breakglass {args:?} did not finish within 90 s; daemon log:\n{}",
                    self.log()
                )
            })
            .expect("breakglass runs")
    }

    /// `breakglass request` for a fresh key; returns the certificate file.
    async fn request(&self, name: &str) -> PathBuf {
        let public = ssh_keygen(self.path(), name, &["-t", "ed25519"]);
        let out = self
            .cli(&[
                "request",
                "--host",
                "localhost",
                "--as",
                "bgidle",
                "--ttl",
                "10m",
                "--reason",
                "idle connection flood test",
                "--public-key",
                public.to_str().unwrap(),
            ])
            .await;
        assert!(
            out.status.success(),
            "breakglass request failed: {}{}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let cert = self.path().join(format!("{name}-cert.pub"));
        let text = std::fs::read_to_string(&cert).expect("the certificate was written");
        assert!(
            text.starts_with("ssh-ed25519-cert-v01@openssh.com "),
            "{text}"
        );
        cert
    }

    /// `breakglass whoami` on the admin socket.
    async fn admin_whoami(&self) -> String {
        let server = format!("unix://{}", self.path().join("admin.sock").display());
        let out = self.cli(&["--server", &server, "whoami"]).await;
        assert!(
            out.status.success(),
            "whoami on the admin socket failed: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The value of `key=` in the daemon's "totals since start-up" line.
fn total(log: &str, key: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("totals since start-up"))
        .unwrap_or_else(|| panic!("no totals line in the daemon log:\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

async fn wait_until(what: &str, timeout: Duration, ca: &Ca, done: impl FnMut() -> bool) {
    assert!(
        wait::until_async(timeout, Duration::from_millis(50), done).await,
        "{what} did not happen within {timeout:?}; daemon log:\n{}",
        ca.log()
    );
}

fn ready() -> bool {
    if !can_run("prlimit (util-linux)", have("prlimit")) {
        return false;
    }
    // This process holds the idle connections.
    let l = breakglass_ca::accept::raise_fd_limit().expect("descriptor limit");
    assert!(
        l.soft >= 2048,
        "the tests need 2048 descriptors, the hard limit is {}",
        l.hard
    );
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn more_idle_connections_than_descriptors_lock_out_neither_a_real_client_nor_the_admin_socket()
 {
    const IDLE: usize = 400;
    if !ready() {
        return;
    }
    tokio::task::spawn_blocking(|| (breakglass_ca_bin(), breakglass_bin()))
        .await
        .unwrap();
    // A handshake timeout longer than the test: only shedding can make room.
    let ca = Ca::start(FD_LIMIT, |c| {
        c.replace("handshake_timeout = \"5s\"", "handshake_timeout = \"5m\"")
    });
    let (limits, _) = Limits::resolve(&ca.config().server, FD_LIMIT);
    assert!(
        ca.log().contains(&format!(
            "fd_limit={FD_LIMIT} max_connections={} max_handshakes={}",
            limits.max_connections, limits.max_handshakes
        )),
        "the daemon runs under the test's descriptor limit:\n{}",
        ca.log()
    );
    assert!((IDLE as u64) > FD_LIMIT);

    let load = IdleLoad::start(ca.addr, IDLE, &loopback_sources(2, 10), None);
    // Every one was opened, and all beyond the handshake cap were shed. A connection
    // the kernel dropped from an overflowing listen queue never reaches the daemon
    // (the client is not told): the load's keepalive probes find it reset.
    let beyond_cap = (IDLE - limits.max_handshakes) as u64;
    let settled = wait::until_async(Duration::from_secs(60), Duration::from_millis(50), || {
        load.attempted() == IDLE as u64 && load.closed_by_peer() + load.reset() >= beyond_cap
    })
    .await;
    assert!(
        settled,
        "the idle connections beyond the handshake cap were not shed within 60 s: {} \
         attempted, {} opened, {} closed by the daemon, {} reset, {} failed; daemon log:\n{}",
        load.attempted(),
        load.opened(),
        load.closed_by_peer(),
        load.reset(),
        load.failed(),
        ca.log()
    );
    let lost = load.reset();
    let shed_at_least = beyond_cap - lost;
    assert_eq!(load.failed(), 0, "every idle connection was opened");
    assert_eq!(load.opened(), IDLE as u64);
    // More keep coming from two other addresses, reopened as soon as they are shed.
    let churn = IdleLoad::start(
        ca.addr,
        40,
        &loopback_sources(20, 2),
        Some(Duration::from_millis(20)),
    );
    wait_until("the second wave", Duration::from_secs(60), &ca, || {
        churn.attempted() == 40
    })
    .await;

    let cert = ca.request("flood").await;
    let who = ca.admin_whoami().await;
    assert!(who.contains("via unix"), "{who}");
    let keygen = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&keygen.stdout).contains("bgidle"),
        "the certificate names the requested principal"
    );

    churn.stop().await;
    load.stop().await;
    let log = ca.stop();
    assert!(
        log.contains("shed an unauthenticated TLS handshake"),
        "the daemon logs the shedding:\n{log}"
    );
    assert!(
        total(&log, "shed") >= shed_at_least,
        "{lost} connections lost before the daemon saw them:\n{log}"
    );
    assert!(total(&log, "handshakes_completed") >= 1, "{log}");
    assert_eq!(total(&log, "accept_errors"), 0, "{log}");
    assert!(
        !log.contains("accept failed"),
        "no accept error at all:\n{log}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("shed an unauthenticated"))
            .count()
            <= 40,
        "single shed lines are rate-limited:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_descriptors_the_daemon_backs_off_instead_of_spinning_and_recovers() {
    if !ready() {
        return;
    }
    tokio::task::spawn_blocking(|| (breakglass_ca_bin(), breakglass_bin()))
        .await
        .unwrap();
    let ca = Ca::start(FD_LIMIT, |c| c);
    // Local connections to the admin socket are not capped: use the descriptors up.
    let mut admin = Vec::new();
    for _ in 0..FD_LIMIT {
        match tokio::net::UnixStream::connect(ca.path().join("admin.sock")).await {
            Ok(s) => admin.push(s),
            Err(_) => break, // the backlog is full too
        }
    }
    wait_until(
        "the admin socket running out of descriptors",
        Duration::from_secs(60),
        &ca,
        || ca.log().contains("admin socket: accept failed"),
    )
    .await;
    // A TCP client now makes the listener readable while accept cannot succeed.
    let knock = IdleLoad::start(ca.addr, 1, &loopback_sources(2, 1), None);
    wait_until("a TCP accept error", Duration::from_secs(60), &ca, || {
        ca.log()
            .lines()
            .any(|l| l.contains("accept failed") && !l.contains("admin socket"))
    })
    .await;
    let exhausted = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(admin);
    let exhausted_for = exhausted.elapsed().as_secs();

    // Descriptors are free again: the client gets its certificate, the admin answers.
    ca.request("after").await;
    let who = ca.admin_whoami().await;
    assert!(who.contains("via unix"), "{who}");
    knock.stop().await;
    let log = ca.stop();
    // Backing off 5 ms doubling to 1 s: about 8 failures in the first 1.3 s, then one a
    // second. Retrying every 50 ms (the old loop) would be 20 a second; at once, millions.
    let errors = total(&log, "accept_errors");
    assert!(errors >= 1, "{log}");
    assert!(
        errors <= 12 + 2 * exhausted_for,
        "{errors} accept errors in about {exhausted_for} s: the loop does not back off\n{log}"
    );
}
