//! `idle-bench`: a real client's issuance latency while idle TCP connections are held
//! open against the daemon. The daemon is a `breakglass-ca serve` child process with
//! its own descriptor limit (`prlimit`), set up by its own `init --dev` (so older
//! builds can be measured too; [`crate::child`]); each issuance is a new mTLS connection plus one
//! `RequestCertificate`, as one `breakglass request` costs. The idle connections come
//! from other loopback addresses (127.0.0.2 onwards) and never send a byte.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::RequestCertificateRequest;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::child::{self, Daemon, free_port, log_fields, open_fds};
use crate::percentile;

/// How long [`IdleLoad`] waits between batches of 64 new connections.
const PACE: Duration = Duration::from_millis(10);

/// Idle TCP connections to one address, held open until [`IdleLoad::stop`].
#[derive(Debug)]
pub struct IdleLoad {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counts: Arc<LoadCounts>,
}

#[derive(Debug, Default)]
struct LoadCounts {
    first_attempts: AtomicU64,
    opened: AtomicU64,
    closed_by_peer: AtomicU64,
    reset: AtomicU64,
    failed: AtomicU64,
}

impl IdleLoad {
    /// Opens `count` connections to `addr` that send nothing, from the `sources`
    /// addresses in turn (see [`loopback_sources`]). With `reopen`, a connection the
    /// peer closes is opened again after that pause, until stopped.
    pub fn start(
        addr: SocketAddr,
        count: usize,
        sources: &[Ipv4Addr],
        reopen: Option<Duration>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(LoadCounts::default());
        let tasks = (0..count)
            .map(|i| {
                let from = sources.get(i % sources.len().max(1)).copied();
                let (counts, stopped) = (Arc::clone(&counts), stopped.clone());
                // 64 new connections every 10 ms: a burst of thousands would overflow the
                // listen backlog (1024), and the kernel would hold the rest back for seconds.
                let after = PACE * (i / 64) as u32;
                tokio::spawn(hold(addr, from, after, reopen, counts, stopped))
            })
            .collect();
        Self {
            stop,
            tasks,
            counts,
        }
    }

    /// Connections whose first attempt to connect has ended (opened or failed).
    pub fn attempted(&self) -> u64 {
        self.counts.first_attempts.load(Ordering::Relaxed)
    }

    /// Connections opened (reopened ones included).
    pub fn opened(&self) -> u64 {
        self.counts.opened.load(Ordering::Relaxed)
    }

    /// Connections the peer closed (shed, timed out).
    pub fn closed_by_peer(&self) -> u64 {
        self.counts.closed_by_peer.load(Ordering::Relaxed)
    }

    /// Connections found dead by a keepalive probe (reset, not closed): the kernel
    /// completed them for the client but never handed them to the daemon (a listen
    /// queue that overflowed drops them without a word), so the daemon never saw them.
    pub fn reset(&self) -> u64 {
        self.counts.reset.load(Ordering::Relaxed)
    }

    /// Attempts to connect that failed.
    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Relaxed)
    }

    /// Closes every connection and waits for the tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// `n` loopback addresses from 127.0.0.`first` on (at most up to 127.0.0.254).
pub fn loopback_sources(first: u8, n: u8) -> Vec<Ipv4Addr> {
    (first..=254)
        .take(usize::from(n))
        .map(|last| Ipv4Addr::new(127, 0, 0, last))
        .collect()
}

/// One idle connection: open, wait for the peer to close it, and maybe reopen.
async fn hold(
    addr: SocketAddr,
    from: Option<Ipv4Addr>,
    after: Duration,
    reopen: Option<Duration>,
    counts: Arc<LoadCounts>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(after) => {}
        _ = stop.changed() => return,
    }
    let mut first = true;
    loop {
        let connect = async {
            let s = TcpSocket::new_v4()?;
            if let Some(from) = from {
                s.bind(SocketAddr::from((from, 0)))?;
            }
            s.connect(addr).await
        };
        let attempt = tokio::select! {
            r = connect => r,
            _ = stop.changed() => return,
        };
        if std::mem::take(&mut first) {
            counts.first_attempts.fetch_add(1, Ordering::Relaxed);
        }
        match attempt {
            Ok(mut s) => {
                counts.opened.fetch_add(1, Ordering::Relaxed);
                probe_every_second(&s);
                let mut buf = [0u8; 512];
                tokio::select! {
                    // The daemon never sends first: any return is the end.
                    r = s.read(&mut buf) => match r {
                        Ok(_) => counts.closed_by_peer.fetch_add(1, Ordering::Relaxed),
                        Err(_) => counts.reset.fetch_add(1, Ordering::Relaxed),
                    },
                    _ = stop.changed() => return,
                };
            }
            Err(_) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(pause) = reopen else {
            // Wait for the end like the still-open ones, holding nothing.
            let _ = stop.changed().await;
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// TCP keepalive probes after 1 s idle, every second, 3 unanswered ones fatal. A probe
/// carries no data, so the daemon still sees an idle connection; one the daemon's kernel
/// does not know is answered with a reset, and the read that waits on it fails.
fn probe_every_second(s: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(s, sockopt::KeepAlive, &true);
    let _ = setsockopt(s, sockopt::TcpKeepIdle, &1);
    let _ = setsockopt(s, sockopt::TcpKeepInterval, &1);
    let _ = setsockopt(s, sockopt::TcpKeepCount, &3);
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `breakglass-ca` binary to run.
    pub daemon: PathBuf,
    /// Issuances per series.
    pub count: usize,
    /// Idle connections held open, one series each.
    pub idle: Vec<usize>,
    /// Loopback addresses the idle connections come from.
    pub sources: u8,
    /// The daemon's `RLIMIT_NOFILE` (soft and hard), or None to inherit this process's.
    pub fd_limit: Option<u64>,
    /// Reopen an idle connection the daemon closed after this pause.
    pub reopen: Option<Duration>,
    /// Longest one issuance may take before it counts as failed.
    pub timeout: Duration,
}

/// One series: the real client's latencies under `idle` idle connections.
#[derive(Debug)]
struct Series {
    idle: usize,
    latencies: Vec<Duration>,
    failures: usize,
    first_failure: Option<String>,
    closed_by_daemon: u64,
    /// Idle connections the kernel lost before the daemon saw them ([`IdleLoad::reset`]).
    lost: u64,
    reopened: u64,
    /// Descriptors the daemon held when the client started (None: /proc unreadable).
    daemon_fds: Option<usize>,
}

/// Runs the benchmark and returns a printable report.
pub async fn run(o: &Options) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let setup = dir.path().join("ca");
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = child::init_dev(&o.daemon, &setup, addr)?;
    let log_path = dir.path().join("daemon.log");
    let mut daemon = Daemon::spawn(&o.daemon, o.fd_limit, &config, &log_path)?;
    daemon
        .wait_for_log(&log_path, "breakglass-ca serving", Duration::from_secs(60))
        .await?;

    let target = Target::Tls {
        url: format!("https://{addr}"),
        fallbacks: Vec::new(),
        ca_cert: setup.join("tls/ca.pem"),
        cert: setup.join("clients/sre.pem"),
        key: setup.join("clients/sre-key.pem"),
        server_name: Some("localhost".into()),
    };
    let mut keys = Vec::with_capacity(o.count.max(1));
    for _ in 0..o.count.max(1) {
        let k = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?;
        keys.push(k.public_key().to_openssh().map_err(|e| e.to_string())?);
    }
    // Warm up (and fail early on a broken setup).
    for key in keys.iter().take(3) {
        issue(&target, key, o.timeout).await?;
    }

    let mut series = Vec::new();
    for &idle in &o.idle {
        series.push(measure(o, daemon.pid(), addr, &target, &keys, idle).await?);
    }
    daemon.stop();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Ok(report(o, &series, &log))
}

/// One series: hold `idle` connections, then issue `keys.len()` certificates one by one.
async fn measure(
    o: &Options,
    pid: u32,
    addr: SocketAddr,
    target: &Target,
    keys: &[String],
    idle: usize,
) -> Result<Series, String> {
    let load = IdleLoad::start(addr, idle, &loopback_sources(2, o.sources), o.reopen);
    let deadline = Instant::now() + Duration::from_secs(120);
    while load.attempted() < idle as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {idle} idle connections were attempted within 2 minutes",
                load.attempted()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the daemon accept them all and shed what it sheds: until neither what it
    // closed nor the descriptors it holds changed for 2 s.
    let mut last = None;
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        let now = Some((load.closed_by_peer(), open_fds(pid)));
        if now == last || Instant::now() > settle {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let opened_before = load.opened();
    let mut s = Series {
        idle,
        latencies: Vec::with_capacity(keys.len()),
        failures: 0,
        first_failure: None,
        closed_by_daemon: 0,
        lost: 0,
        reopened: 0,
        daemon_fds: open_fds(pid),
    };
    for key in keys {
        let t = Instant::now();
        match issue(target, key, o.timeout).await {
            Ok(()) => s.latencies.push(t.elapsed()),
            Err(e) => {
                s.failures += 1;
                s.first_failure
                    .get_or_insert(format!("after {:?}: {e}", t.elapsed()));
            }
        }
    }
    s.closed_by_daemon = load.closed_by_peer();
    s.lost = load.reset();
    s.reopened = load.opened() - opened_before;
    load.stop().await;
    s.latencies.sort();
    Ok(s)
}

/// One issuance on a new connection, as one CLI invocation.
pub(crate) async fn issue(target: &Target, key: &str, timeout: Duration) -> Result<(), String> {
    let mut client = connect::client(target).map_err(|e| e.to_string())?;
    let call = client.request_certificate(RequestCertificateRequest {
        public_key: key.to_owned(),
        principals: vec!["bgbench".into()],
        hosts: vec!["localhost".into()],
        ttl_seconds: 600,
        reason: "idle-connection benchmark".into(),
        ..Default::default()
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

fn report(o: &Options, series: &[Series], log: &str) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "daemon: {} with RLIMIT_NOFILE {}\n",
        o.daemon.display(),
        o.fd_limit
            .map_or_else(|| "inherited".to_owned(), |n| n.to_string())
    );
    out.push_str(&match log_fields(log, "TCP limits") {
        Some(f) => format!("daemon's TCP limits: {f}\n"),
        None => "daemon's TCP limits: none logged (a build without them)\n".to_owned(),
    });
    out.push_str(&format!(
        "real client: {} issuances per series, each a new mTLS connection + RequestCertificate \
         (timeout {:?}); idle connections from {} loopback addresses{}\n",
        o.count,
        o.timeout,
        o.sources,
        match o.reopen {
            Some(p) => format!(", reopened {p:?} after the daemon closes them"),
            None => ", never reopened".to_owned(),
        }
    ));
    out.push_str(
        "CA fds: descriptors the daemon held when the client started; closed by CA: idle \
         connections the daemon closed (shed or timed out); lost: idle connections the \
         kernel dropped from a full listen queue, never seen by the daemon\n\n",
    );
    out.push_str(&format!(
        "{:>6} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>14} {:>6} {:>9}\n",
        "idle", "CA fds", "ok", "failed", "p50", "p99", "max", "closed by CA", "lost", "reopened"
    ));
    for s in series {
        let lat = |p| {
            if s.latencies.is_empty() {
                "-".to_owned()
            } else {
                ms(percentile(&s.latencies, p))
            }
        };
        out.push_str(&format!(
            "{:>6} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>14} {:>6} {:>9}\n",
            s.idle,
            s.daemon_fds
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            s.latencies.len(),
            s.failures,
            lat(0.50),
            lat(0.99),
            lat(1.0),
            s.closed_by_daemon,
            s.lost,
            s.reopened
        ));
    }
    for s in series {
        if let Some(f) = &s.first_failure {
            out.push_str(&format!("first failure with {} idle: {f}\n", s.idle));
        }
    }
    let accept_failed = log.lines().filter(|l| l.contains("accept failed")).count();
    out.push_str(&format!(
        "\ndaemon log: {accept_failed} \"accept failed\" lines, {} lines in all\n",
        log.lines().count()
    ));
    if let Some(f) = log_fields(log, "totals since start-up") {
        out.push_str(&format!("daemon totals: {f}\n"));
    }
    out
}
