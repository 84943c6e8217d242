//! `issue-bench`: certificate issuance by a `breakglass-ca` child process over loopback
//! mTLS gRPC with its durable audit log, against the limits of the same machine measured
//! in the same run:
//! - the raw build+sign limit: the daemon's own signing code
//!   ([`CertificateAuthority::issue`], ssh-key's builder with the ready key) on two threads
//!   in this process; and the same certificate built and signed by ssh-key alone
//!   (`Builder::sign` with the CA's `PrivateKey`, which derives the Ed25519 key for every
//!   signature): the "build+sign limit (ssh-key, 2 threads)" issue 13's goals were set
//!   against, measured in the same run;
//! - `ssh-keygen -s` signing the same keys in batches of 500 per process, and with one
//!   process per certificate;
//! - issuance at each concurrency (c=1, c=64 by default): rate, p50/p99 and the daemon's
//!   CPU per certificate (its `/proc/<pid>/stat`; the load runs in this process, so the
//!   figure is the daemon's alone), this process's own CPU per certificate (the load
//!   generator, with the syslog socket it reads: on a small machine both share the CPUs),
//!   and the rate as a percentage of each limit. Every answer is checked (an OpenSSH
//!   certificate for the principal asked, with a validity window and a request id);
//! - `Fetch` of the certificates the last series issued, one at a time: the daemon keeps
//!   no certificate text, so this is the cost of signing one again from its grant.
//!
//! [`soak`] holds a steady open-loop rate instead and prints, every interval, the rate
//! achieved, p50/p99 and the daemon's resident memory and CPU.
//!
//! The daemon gets a syslog socket of its own, read by this process (one line per audit
//! event, as on a host with a syslog daemon).

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use breakglass_ca::certificate::{CertSpec, CertificateAuthority};
use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::profile::GrantId;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::{RequestCertificateRequest, RequestRef, WhoAmIRequest};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey, PublicKey};
use tempfile::TempDir;

use crate::child::{self, Daemon, cpu_time, free_port, http_get, idle_time, rss_bytes};
use crate::percentile;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `breakglass-ca` binary to run.
    pub daemon: PathBuf,
    /// Certificates per series.
    pub count: usize,
    /// Concurrent callers, one series each.
    pub concurrency: Vec<usize>,
    /// How long the raw build+sign limit is measured.
    pub limit_for: Duration,
    /// Certificates signed by the one-process-per-certificate `ssh-keygen` baseline.
    pub per_process: usize,
    /// Client connections (HTTP/2 over mTLS) the callers of a series share, round robin.
    pub connections: usize,
}

/// A steady open-loop load: `rate` requests per second for `duration`, certificates of
/// `ttl`, a report line every `every`.
#[derive(Debug, Clone)]
pub struct Soak {
    /// The `breakglass-ca` binary to run.
    pub daemon: PathBuf,
    /// How long the load runs.
    pub duration: Duration,
    /// Requests per second, sent on schedule whether or not earlier ones were answered.
    pub rate: f64,
    /// Lifetime of each certificate.
    pub ttl: Duration,
    /// Interval between report lines.
    pub every: Duration,
    /// Most requests in flight; a request due while that many wait is not sent (counted).
    pub max_in_flight: usize,
    /// The daemon's `[audit] snapshot_every_seconds` (`None`: its default).
    pub snapshot_every: Option<Duration>,
}

/// One measured series.
#[derive(Debug, Clone)]
struct Series {
    label: String,
    count: usize,
    elapsed: Duration,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// The daemon's CPU time over the series.
    daemon_cpu: Option<Duration>,
    /// This process's CPU time over the series (the load generator).
    bench_cpu: Option<Duration>,
    /// Whether the series' rate is shown as a share of the limits: the issuing series, and
    /// the transport's floor at the highest concurrency, which bounds them.
    shared: bool,
    /// The daemon's audit log commits over the series (from its metrics).
    audit: Option<AuditWork>,
    /// The machine's idle CPU time over the series (all CPUs).
    idle: Option<Duration>,
}

/// The audit log's work over an interval, from the daemon's `/metrics` (differences of
/// its histograms' sums and counts): how the group commit served the callers.
#[derive(Debug, Clone, Copy, Default)]
struct AuditWork {
    commits: f64,
    events: f64,
    /// Seconds in commits (write, fdatasync, signed checkpoint), summed.
    commit_seconds: f64,
    /// Appends (one per caller) and the seconds callers waited for them, summed.
    appends: f64,
    append_seconds: f64,
}

impl AuditWork {
    /// The daemon's figures now; `None` when its metrics cannot be read.
    fn scrape(metrics: SocketAddr) -> Option<Self> {
        let body = http_get(metrics, "/metrics", Duration::from_secs(5))?;
        let value = |name: &str| {
            body.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        Some(Self {
            commits: value("breakglass_audit_commit_duration_seconds_count")?,
            events: value("breakglass_audit_batch_events_sum")?,
            commit_seconds: value("breakglass_audit_commit_duration_seconds_sum")?,
            appends: value("breakglass_audit_append_duration_seconds_count")?,
            append_seconds: value("breakglass_audit_append_duration_seconds_sum")?,
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            commits: self.commits - before.commits,
            events: self.events - before.events,
            commit_seconds: self.commit_seconds - before.commit_seconds,
            appends: self.appends - before.appends,
            append_seconds: self.append_seconds - before.append_seconds,
        }
    }
}

impl Series {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// The raw limits: certificates per second.
#[derive(Debug, Clone, Copy)]
struct Limit {
    /// The daemon's signing code (the ready key).
    sign: f64,
    /// The same, with the OpenSSH text of each certificate.
    sign_and_text: f64,
    /// ssh-key's `Builder::sign` with the `PrivateKey`: issue 13's reference.
    ssh_key: f64,
}

/// A running daemon with its `init --dev` setup and a client for it.
struct Bench {
    dir: TempDir,
    daemon: Daemon,
    target: Target,
    log: PathBuf,
    syslog: SyslogSink,
    /// The daemon's metrics listener (the dev setup's).
    metrics: SocketAddr,
}

impl Bench {
    async fn start(daemon: &Path, snapshot_every: Option<Duration>) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let setup = dir.path().join("ca");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = child::init_dev(daemon, &setup, addr)?;
        if let Some(every) = snapshot_every {
            set_snapshot_every(&config, every)?;
        }
        let syslog = SyslogSink::bind(&dir.path().join("syslog.sock"))?;
        point_syslog_at(&config, &syslog.path)?;
        let log = dir.path().join("daemon.log");
        let mut child = Daemon::spawn(daemon, None, &config, &log)?;
        child
            .wait_for_log(&log, "breakglass-ca serving", Duration::from_secs(60))
            .await?;
        let target = Target::Tls {
            url: format!("https://{addr}"),
            fallbacks: Vec::new(),
            ca_cert: setup.join("tls/ca.pem"),
            cert: setup.join("clients/sre.pem"),
            key: setup.join("clients/sre-key.pem"),
            server_name: Some("localhost".into()),
        };
        Ok(Self {
            dir,
            daemon: child,
            target,
            log,
            syslog,
            metrics: breakglass_ca::init::dev_metrics_listen(addr),
        })
    }

    fn setup(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The lines of the daemon's log that hold `marker`.
    fn log_lines(&self, marker: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(marker))
            .map(str::to_owned)
            .collect()
    }

    /// Stops the daemon; returns its log's line count, the syslog lines received and the
    /// directory of its setup (removed when dropped).
    fn stop(mut self) -> (usize, u64, TempDir) {
        self.daemon.stop();
        let lines = std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        (lines, self.syslog.stop(), self.dir)
    }
}

/// The daemon's `[audit] snapshot_every_seconds` set to `every` in its config file.
fn set_snapshot_every(config: &Path, every: Duration) -> Result<(), String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    if !text.contains("[audit]\n") || text.contains("snapshot_every_seconds") {
        return Err(format!(
            "{}: no `[audit]` section to add `snapshot_every_seconds` to, or it is set already",
            config.display()
        ));
    }
    let line = format!(
        "[audit]\nsnapshot_every_seconds = {}\n",
        every.as_secs().max(1)
    );
    std::fs::write(config, text.replacen("[audit]\n", &line, 1))
        .map_err(|e| format!("{}: {e}", config.display()))
}

/// The daemon's `[audit] syslog_socket` set to `socket` in its config file.
pub(crate) fn point_syslog_at(config: &Path, socket: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let from = "syslog_socket = \"/dev/log\"";
    if !text.contains(from) {
        return Err(format!(
            "{}: no `{from}` line to point at the benchmark's syslog socket",
            config.display()
        ));
    }
    let to = format!("syslog_socket = \"{}\"", socket.display());
    std::fs::write(config, text.replacen(from, &to, 1))
        .map_err(|e| format!("{}: {e}", config.display()))
}

/// A syslog socket that reads and counts the daemon's lines on its own thread.
pub(crate) struct SyslogSink {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    lines: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyslogSink {
    pub(crate) fn bind(path: &Path) -> Result<Self, String> {
        let sock = UnixDatagram::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(AtomicU64::new(0));
        let (s, l) = (Arc::clone(&stop), Arc::clone(&lines));
        let thread = std::thread::Builder::new()
            .name("bench-syslog".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    if sock.recv(&mut buf).is_ok() {
                        l.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| format!("syslog reader thread: {e}"))?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            lines,
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lines.load(Ordering::Relaxed)
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` fresh Ed25519 user keys, in OpenSSH text.
pub(crate) fn user_keys(n: usize) -> Result<Vec<String>, String> {
    (0..n)
        .map(|_| {
            PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                .and_then(|k| k.public_key().to_openssh())
                .map_err(|e| e.to_string())
        })
        .collect()
}

pub(crate) fn request(key: &str, ttl: Duration) -> RequestCertificateRequest {
    RequestCertificateRequest {
        public_key: key.to_owned(),
        principals: vec!["bgbench".into()],
        hosts: vec!["localhost".into()],
        ttl_seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        reason: "benchmark".into(),
        ..Default::default()
    }
}

/// Runs the benchmark and returns a printable report.
pub async fn run(o: &Options) -> Result<String, String> {
    let bench = Bench::start(&o.daemon, None).await?;
    let clients = (0..o.connections.max(1))
        .map(|_| connect::client(&bench.target).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let client = clients[0].clone();
    let count = o.count.max(1);
    let keys = Arc::new(user_keys(count)?);
    let ttl = Duration::from_secs(600);

    // Warm up the connections and the code paths.
    for (i, key) in keys.iter().take(50.max(clients.len())).enumerate() {
        clients[i % clients.len()]
            .clone()
            .request_certificate(request(key, ttl))
            .await
            .map_err(|s| format!("warm-up request failed: {s}"))?;
    }

    let mut series = vec![who_am_i_floor(&clients, bench.pid(), count, 1).await?];
    let most = o.concurrency.iter().copied().max().unwrap_or(1);
    if most > 1 {
        series.push(who_am_i_floor(&clients, bench.pid(), count, most).await?);
    }
    // Requests issued by the last series: fetched again below.
    let mut issued_ids: Vec<String> = Vec::new();
    for &c in &o.concurrency {
        let next = Arc::new(AtomicUsize::new(0));
        let audit_before = AuditWork::scrape(bench.metrics);
        let idle_before = idle_time();
        let cpu_before = cpu_time(bench.pid());
        let own_before = cpu_time(std::process::id());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for caller in 0..c.max(1) {
            let mut client = clients[caller % clients.len()].clone();
            let (keys, next) = (keys.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut ids) = (Vec::new(), Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else {
                        return Ok::<_, String>((lat, ids));
                    };
                    let t = Instant::now();
                    let r = client
                        .request_certificate(request(key, ttl))
                        .await
                        .map_err(|s| format!("request failed: {s}"))?;
                    lat.push(t.elapsed());
                    ids.push(checked(r.into_inner())?);
                }
            }));
        }
        let mut lat = Vec::with_capacity(count);
        issued_ids.clear();
        for t in tasks {
            let (l, ids) = t.await.map_err(|e| e.to_string())??;
            lat.extend(l);
            issued_ids.extend(ids);
        }
        let elapsed = start.elapsed();
        let daemon_cpu = cpu_before
            .zip(cpu_time(bench.pid()))
            .map(|(a, b)| b.saturating_sub(a));
        let bench_cpu = cpu_since(own_before);
        let audit = audit_before
            .zip(AuditWork::scrape(bench.metrics))
            .map(|(before, after)| after.since(before));
        let idle = idle_before
            .zip(idle_time())
            .map(|(a, b)| b.saturating_sub(a));
        lat.sort();
        series.push(Series {
            label: if clients.len() > 1 {
                format!("gRPC mTLS + durable audit, c={c}/{}", clients.len())
            } else {
                format!("gRPC mTLS + durable audit, c={c}")
            },
            count,
            elapsed,
            p50: Some(percentile(&lat, 0.50)),
            p99: Some(percentile(&lat, 0.99)),
            daemon_cpu,
            bench_cpu,
            shared: true,
            audit,
            idle,
        });
    }
    // `Fetch` of live certificates, one at a time: the daemon keeps no certificate text,
    // so each is signed again from its recorded grant.
    {
        let mut client = client.clone();
        let cpu_before = cpu_time(bench.pid());
        let own_before = cpu_time(std::process::id());
        let start = Instant::now();
        let mut lat = Vec::with_capacity(issued_ids.len());
        for id in &issued_ids {
            let t = Instant::now();
            client
                .fetch(RequestRef {
                    request_id: id.clone(),
                })
                .await
                .map_err(|s| format!("fetch failed: {s}"))?;
            lat.push(t.elapsed());
        }
        let elapsed = start.elapsed();
        let daemon_cpu = cpu_before
            .zip(cpu_time(bench.pid()))
            .map(|(a, b)| b.saturating_sub(a));
        lat.sort();
        series.push(Series {
            label: "Fetch of a live certificate, c=1".into(),
            count: lat.len().max(1),
            elapsed,
            p50: Some(percentile(&lat, 0.50)),
            p99: Some(percentile(&lat, 0.99)),
            daemon_cpu,
            bench_cpu: cpu_since(own_before),
            shared: true,
            audit: None,
            idle: None,
        });
    }
    let setup = bench.setup();
    let daemon_pid = bench.pid();
    let (log_lines, syslog_lines, _dir) = bench.stop();

    // The baselines run with the daemon stopped: they have the machine to themselves.
    let limit = limit(&setup, o.limit_for)?;
    let key_files = write_key_files(&setup, &keys)?;
    series.push(ssh_keygen_batch(&setup, &key_files)?);
    series.push(ssh_keygen_per_process(
        &setup,
        &key_files[..o.per_process.clamp(1, key_files.len())],
    )?);
    let mut out = machine();
    out.push_str(&format!(
        "daemon: {} (child process {daemon_pid}); {log_lines} lines in its log, \
         {syslog_lines} syslog lines received\n",
        o.daemon.display()
    ));
    out.push_str(&format!(
        "limit: build+sign in-process, 2 threads, the daemon's signing code: {:.0} certs/s \
         ({:.0} certs/s with the OpenSSH text)\n\
         reference: the same certificate built and signed by ssh-key alone (Builder::sign with \
         the CA's PrivateKey, the key derived per signature; issue 13's \"build+sign limit \
         (ssh-key, 2 threads)\"): {:.0} certs/s\n\n",
        limit.sign, limit.sign_and_text, limit.ssh_key
    ));
    out.push_str(&report(&series, limit));
    Ok(out)
}

/// The CPU count and model of this machine.
/// The CPUs of this machine (as `/proc/stat` counts them: all online ones).
fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

pub(crate) fn machine() -> String {
    let cpus = cpus();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("machine: {cpus} CPUs, {model}\n")
}

/// Certificates per second that two threads build and sign with the daemon's own
/// signing code (the CA key of `setup`), for `run_for`.
fn limit(setup: &Path, run_for: Duration) -> Result<Limit, String> {
    let ca = Arc::new(
        CertificateAuthority::load(&setup.join("ssh_ca"), &[], Duration::from_secs(120))
            .map_err(|e| e.to_string())?,
    );
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .map_err(|e| e.to_string())?
        .public_key()
        .clone();
    let sign = signing_rate(&ca, &key, run_for, false)?;
    let sign_and_text = signing_rate(&ca, &key, run_for, true)?;
    let ssh_key = ssh_key_rate(setup, &ca, &key, run_for)?;
    Ok(Limit {
        sign,
        sign_and_text,
        ssh_key,
    })
}

/// Certificates per second that two threads build and sign with ssh-key alone: the
/// certificate [`CertificateAuthority::issue`] makes, rebuilt field by field with ssh-key's
/// `Builder` and signed with the CA's `PrivateKey` (what the daemon did before it kept its
/// key ready), for `run_for`.
fn ssh_key_rate(
    setup: &Path,
    ca: &CertificateAuthority,
    key: &PublicKey,
    run_for: Duration,
) -> Result<f64, String> {
    let private = PrivateKey::read_openssh_file(&setup.join("ssh_ca"))
        .map_err(|e| format!("reading the CA key: {e}"))?;
    let model = ca
        .issue(&BenchCert::new().spec(1, key), SystemTime::now())
        .map_err(|e| e.to_string())?
        .certificate;
    rate_on_two_threads(run_for, move |_| {
        rebuild_with_ssh_key(&model, &private)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// `model` built again with ssh-key's `Builder` and signed with `private`.
fn rebuild_with_ssh_key(
    model: &ssh_key::Certificate,
    private: &PrivateKey,
) -> Result<ssh_key::Certificate, ssh_key::Error> {
    let mut b = ssh_key::certificate::Builder::new(
        model.nonce().to_vec(),
        model.public_key().clone(),
        model.valid_after(),
        model.valid_before(),
    )?;
    b.serial(model.serial())?;
    b.key_id(model.key_id())?;
    b.cert_type(model.cert_type())?;
    for p in model.valid_principals() {
        b.valid_principal(p.clone())?;
    }
    for (name, value) in model.critical_options().iter() {
        b.critical_option(name.clone(), value.clone())?;
    }
    for (name, value) in model.extensions().iter() {
        b.extension(name.clone(), value.clone())?;
    }
    b.comment(model.comment())?;
    b.sign(private)
}

fn signing_rate(
    ca: &Arc<CertificateAuthority>,
    key: &PublicKey,
    run_for: Duration,
    text: bool,
) -> Result<f64, String> {
    let (ca, key, cert) = (Arc::clone(ca), key.clone(), BenchCert::new());
    rate_on_two_threads(run_for, move |n| {
        let issued = ca
            .issue(&cert.spec(n + 1, &key), SystemTime::now())
            .map_err(|e| e.to_string())?;
        if text {
            issued.certificate.to_openssh().map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// What the limits' certificates hold besides their grant id and key.
struct BenchCert {
    principals: [String; 1],
    hosts: [String; 1],
    extensions: [String; 1],
}

impl BenchCert {
    fn new() -> Self {
        Self {
            principals: ["bgbench".to_owned()],
            hosts: ["localhost".to_owned()],
            extensions: ["permit-pty".to_owned()],
        }
    }

    fn spec<'a>(&'a self, grant: u64, key: &'a PublicKey) -> CertSpec<'a> {
        CertSpec {
            grant_id: GrantId(grant),
            requester: "sre@example.com",
            subject: key,
            principals: &self.principals,
            hosts: &self.hosts,
            tier: "low",
            ttl: Duration::from_secs(600),
            force_command: None,
            source_addresses: &[],
            extensions: &self.extensions,
        }
    }
}

/// Calls per second of `work` (given a per-thread call count) on two threads, for `run_for`.
fn rate_on_two_threads(
    run_for: Duration,
    work: impl Fn(u64) -> Result<(), String> + Send + Sync + 'static,
) -> Result<f64, String> {
    let work = Arc::new(work);
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let work = Arc::clone(&work);
            std::thread::spawn(move || -> Result<u64, String> {
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    work(n)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| "a signing thread panicked")??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// The transport's floor: `WhoAmI` by `c` callers over the series' clients (round robin),
/// through the daemon's mTLS listener, access layer and interceptor, without policy,
/// signing or log. At c=1 it is the floor of a c=1 issuance; at the highest concurrency it
/// is the most any call can reach at that concurrency on this machine, and its CPU per call
/// is what HTTP/2, TLS and the two runtimes take of each certificate.
async fn who_am_i_floor(
    clients: &[BreakGlassClient<connect::Channel>],
    pid: u32,
    count: usize,
    c: usize,
) -> Result<Series, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_time(pid);
    let own_before = cpu_time(std::process::id());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..c.max(1) {
        let mut client = clients[caller % clients.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                client
                    .who_am_i(WhoAmIRequest {})
                    .await
                    .map_err(|s| format!("WhoAmI failed: {s}"))?;
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(count);
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed();
    let daemon_cpu = cpu_before
        .zip(cpu_time(pid))
        .map(|(a, b)| b.saturating_sub(a));
    lat.sort();
    Ok(Series {
        label: format!("WhoAmI round trip (no log), c={}", c.max(1)),
        count,
        elapsed,
        p50: Some(percentile(&lat, 0.50)),
        p99: Some(percentile(&lat, 0.99)),
        daemon_cpu,
        bench_cpu: cpu_since(own_before),
        shared: c > 1,
        audit: None,
        idle: None,
    })
}

/// This process's CPU time since `before`.
fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    before
        .zip(cpu_time(std::process::id()))
        .map(|(a, b)| b.saturating_sub(a))
}

/// The request id of an issuance's answer, once the answer is checked to be what was
/// asked for (an OpenSSH certificate for the benchmark's principal, with a validity window).
fn checked(r: breakglass_proto::v1::RequestCertificateResponse) -> Result<String, String> {
    let fine = r
        .certificate
        .starts_with("ssh-ed25519-cert-v01@openssh.com ")
        && r.principals == ["bgbench"]
        && r.valid_before > r.valid_after
        && !r.request_id.is_empty();
    if fine {
        Ok(r.request_id)
    } else {
        Err(format!("unexpected answer to an issuance: {r:?}"))
    }
}

/// The keys as `.pub` files for ssh-keygen.
fn write_key_files(dir: &Path, keys: &[String]) -> Result<Vec<PathBuf>, String> {
    let keys_dir = dir.join("bench-keys");
    std::fs::create_dir_all(&keys_dir).map_err(|e| format!("{}: {e}", keys_dir.display()))?;
    keys.iter()
        .enumerate()
        .map(|(i, line)| {
            let p = keys_dir.join(format!("k{i}.pub"));
            std::fs::write(&p, format!("{line}\n"))
                .map(|()| p.clone())
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

fn ssh_keygen(ca: &Path, keys: &[PathBuf]) -> Result<(), String> {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(ca)
        .args(["-I", "bench", "-n", "bgbench", "-V", "+10m"])
        .args(keys)
        .output()
        .map_err(|e| format!("running ssh-keygen: {e} (install openssh-client)"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen -s failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// `ssh-keygen -s` signing all keys, 500 per process, with the daemon's CA key.
fn ssh_keygen_batch(setup: &Path, keys: &[PathBuf]) -> Result<Series, String> {
    let ca = setup.join("ssh_ca");
    let start = Instant::now();
    for chunk in keys.chunks(500) {
        ssh_keygen(&ca, chunk)?;
    }
    Ok(baseline(
        "ssh-keygen -s, 500 keys per process",
        keys.len(),
        start,
    ))
}

/// `ssh-keygen -s` once per key: what a CA that forks a signer per request costs.
fn ssh_keygen_per_process(setup: &Path, keys: &[PathBuf]) -> Result<Series, String> {
    let ca = setup.join("ssh_ca");
    let start = Instant::now();
    for k in keys {
        ssh_keygen(&ca, std::slice::from_ref(k))?;
    }
    Ok(baseline(
        "ssh-keygen -s, one process per cert",
        keys.len(),
        start,
    ))
}

fn baseline(label: &str, count: usize, start: Instant) -> Series {
    Series {
        label: label.into(),
        count,
        elapsed: start.elapsed(),
        p50: None,
        p99: None,
        daemon_cpu: None,
        bench_cpu: None,
        shared: true,
        audit: None,
        idle: None,
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(series: &[Series], limit: Limit) -> String {
    let mut out = format!(
        "{:<38} {:>7} {:>9} {:>9} {:>9} {:>13} {:>13} {:>10} {:>10}\n",
        "series",
        "certs",
        "certs/s",
        "p50",
        "p99",
        "daemon CPU",
        "bench CPU",
        "of limit",
        "of ssh-key"
    );
    let dash = || "-".to_owned();
    for s in series {
        let per_cert = |cpu: Option<Duration>| {
            cpu.map_or_else(dash, |c| {
                format!("{:.0} µs/cert", c.as_secs_f64() * 1e6 / s.count as f64)
            })
        };
        let share = |of: f64| {
            if s.shared {
                format!("{:.1}%", 100.0 * s.rate() / of)
            } else {
                dash()
            }
        };
        out.push_str(&format!(
            "{:<38} {:>7} {:>9.0} {:>9} {:>9} {:>13} {:>13} {:>10} {:>10}\n",
            s.label,
            s.count,
            s.rate(),
            s.p50.map_or_else(dash, ms),
            s.p99.map_or_else(dash, ms),
            per_cert(s.daemon_cpu),
            per_cert(s.bench_cpu),
            share(limit.sign),
            share(limit.ssh_key),
        ));
    }
    let audited: Vec<_> = series
        .iter()
        .filter_map(|s| Some((s, s.audit.filter(|a| a.commits > 0.0 && a.appends > 0.0)?)))
        .collect();
    if !audited.is_empty() {
        out.push_str(&format!(
            "\nwhere the time went: the audit log's commits (the daemon's metrics), events per \
             commit, mean commit (write, fdatasync, signed checkpoint), the share of the series \
             spent in commits, a caller's mean wait for durability (queue and commit), and the \
             machine's CPUs idle\n{:<38} {:>7} {:>7} {:>9} {:>10} {:>9} {:>10}\n",
            "series", "commits", "events", "commit", "in commits", "wait", "CPUs idle"
        ));
        for (s, a) in audited {
            out.push_str(&format!(
                "{:<38} {:>7.0} {:>7.1} {:>9} {:>9.0}% {:>9} {:>10}\n",
                s.label,
                a.commits,
                a.events / a.commits,
                ms(Duration::from_secs_f64(a.commit_seconds / a.commits)),
                100.0 * a.commit_seconds / s.elapsed.as_secs_f64(),
                ms(Duration::from_secs_f64(a.append_seconds / a.appends)),
                s.idle.map_or_else(
                    || "-".to_owned(),
                    |i| format!(
                        "{:.0}%",
                        100.0 * i.as_secs_f64() / (s.elapsed.as_secs_f64() * cpus())
                    )
                ),
            ));
        }
    }
    out
}

/// What one soak interval saw.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    failed: u64,
    first_failure: Option<String>,
}

/// Runs a soak: `emit` gets the header, one line per interval and the totals.
pub async fn soak(s: &Soak, emit: &mut dyn FnMut(&str)) -> Result<(), String> {
    if !s.rate.is_finite() || s.rate <= 0.0 {
        return Err("--rate must be above 0".into());
    }
    let bench = Bench::start(&s.daemon, s.snapshot_every).await?;
    let client = connect::client(&bench.target).map_err(|e| e.to_string())?;
    let keys = Arc::new(user_keys(1000)?);
    for key in keys.iter().take(20) {
        client
            .clone()
            .request_certificate(request(key, s.ttl))
            .await
            .map_err(|st| format!("warm-up request failed: {st}"))?;
    }
    let pid = bench.pid();
    emit(&machine());
    emit(&format!(
        "soak: {:.0} requests/s for {:?}, certificates of {:?}, open loop (latency from each \
         request's scheduled time), at most {} in flight; daemon pid {pid}\n",
        s.rate, s.duration, s.ttl, s.max_in_flight
    ));
    emit(&format!(
        "{:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11}\n",
        "time", "sent", "ok", "failed", "ok/s", "p50", "p99", "max", "RSS", "CPU", "CPU/cert"
    ));
    let window = Arc::new(Mutex::new(Window::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / s.rate);
    let mut sent_total = 0u64;
    let mut skipped = 0u64;
    let mut ok_total = 0u64;
    let mut failed_total = 0u64;
    let mut all: Vec<Duration> = Vec::new();
    let mut sent_in_window = 0u64;
    let mut window_start = start;
    let mut cpu_mark = cpu_time(pid);
    let mut next_report = start + s.every;
    let mut i: u64 = 0;
    loop {
        let due = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due >= start + s.duration || now >= start + s.duration {
            break;
        }
        if now >= next_report {
            let w = std::mem::take(&mut *window.lock().unwrap_or_else(|p| p.into_inner()));
            let line = soak_line(
                start,
                window_start,
                sent_in_window,
                w,
                pid,
                &mut cpu_mark,
                &mut all,
                (&mut ok_total, &mut failed_total),
            );
            emit(&line);
            sent_in_window = 0;
            window_start = now;
            next_report += s.every;
        }
        if due > now {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        i += 1;
        if in_flight.load(Ordering::Relaxed) >= s.max_in_flight {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        sent_total += 1;
        sent_in_window += 1;
        let mut client = client.clone();
        let req = request(&keys[(i as usize) % keys.len()], s.ttl);
        let (window, in_flight) = (Arc::clone(&window), Arc::clone(&in_flight));
        tokio::spawn(async move {
            let r = client.request_certificate(req).await;
            let took = due.elapsed();
            {
                let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
                match r {
                    Ok(_) => w.latencies.push(took),
                    Err(st) => {
                        w.failed += 1;
                        w.first_failure
                            .get_or_insert_with(|| format!("{:?}: {}", st.code(), st.message()));
                    }
                }
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Let what is in flight finish (bounded), then the last interval.
    let drain = Instant::now() + Duration::from_secs(30);
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let w = std::mem::take(&mut *window.lock().unwrap_or_else(|p| p.into_inner()));
    let line = soak_line(
        start,
        window_start,
        sent_in_window,
        w,
        pid,
        &mut cpu_mark,
        &mut all,
        (&mut ok_total, &mut failed_total),
    );
    emit(&line);
    all.sort();
    let elapsed = start.elapsed();
    emit(&format!(
        "total: {sent_total} sent, {ok_total} ok ({:.0}/s), {failed_total} failed, {skipped} \
         not sent (in-flight cap), {} still in flight; p50 {}, p99 {}, max {}\n",
        ok_total as f64 / elapsed.as_secs_f64(),
        in_flight.load(Ordering::Relaxed),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.99)),
        ms(all.last().copied().unwrap_or_default()),
    ));
    let snapshots = bench.log_lines("state snapshot written");
    emit(&format!(
        "state snapshots written during the run ({}; locked_us: how long the state lock \
         was held to copy the state, elapsed_ms: encoding and writing outside it):\n",
        snapshots.len()
    ));
    for l in &snapshots {
        emit(&format!("  {l}\n"));
    }
    let (log_lines, syslog_lines, _) = bench.stop();
    emit(&format!(
        "daemon: {log_lines} lines in its log, {syslog_lines} syslog lines received\n"
    ));
    Ok(())
}

/// One soak report line (and the window's figures added to the totals).
#[allow(clippy::too_many_arguments)]
fn soak_line(
    start: Instant,
    window_start: Instant,
    sent: u64,
    mut w: Window,
    pid: u32,
    cpu_mark: &mut Option<Duration>,
    all: &mut Vec<Duration>,
    (ok_total, failed_total): (&mut u64, &mut u64),
) -> String {
    let span = window_start.elapsed().as_secs_f64().max(1e-9);
    let cpu_now = cpu_time(pid);
    let cpu = cpu_mark.zip(cpu_now).map(|(a, b)| b.saturating_sub(a));
    *cpu_mark = cpu_now;
    w.latencies.sort();
    let ok = w.latencies.len() as u64;
    *ok_total += ok;
    *failed_total += w.failed;
    all.extend_from_slice(&w.latencies);
    let dash = || "-".to_owned();
    let mut line = format!(
        "{:>7.0}s {:>8} {:>8} {:>7} {:>8.0} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11}\n",
        start.elapsed().as_secs_f64(),
        sent,
        ok,
        w.failed,
        ok as f64 / span,
        ms(percentile(&w.latencies, 0.50)),
        ms(percentile(&w.latencies, 0.99)),
        ms(w.latencies.last().copied().unwrap_or_default()),
        rss_bytes(pid).map_or_else(dash, |b| format!("{:.1} MB", b as f64 / 1e6)),
        cpu.map_or_else(dash, |c| format!("{:.0}%", 100.0 * c.as_secs_f64() / span)),
        cpu.filter(|_| ok > 0).map_or_else(dash, |c| format!(
            "{:.0} µs",
            c.as_secs_f64() * 1e6 / ok as f64
        )),
    );
    if let Some(f) = w.first_failure {
        line.push_str(&format!("  first failure: {f}\n"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::v1::RequestCertificateResponse;

    fn answer() -> RequestCertificateResponse {
        RequestCertificateResponse {
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA comment".into(),
            principals: vec!["bgbench".into()],
            valid_after: 10,
            valid_before: 610,
            request_id: "r-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_issuance_answer_is_taken_only_when_it_is_what_was_asked_for() {
        assert_eq!(checked(answer()).unwrap(), "r-1");
        let wrong = [
            RequestCertificateResponse {
                certificate: String::new(),
                ..answer()
            },
            RequestCertificateResponse {
                principals: vec!["root".into()],
                ..answer()
            },
            RequestCertificateResponse {
                valid_before: 10,
                ..answer()
            },
            RequestCertificateResponse {
                request_id: String::new(),
                ..answer()
            },
        ];
        for w in wrong {
            assert!(checked(w).is_err());
        }
    }
}
