//! `fanout-bench`: how fast one revocation reaches thousands of hosts. The daemon is a
//! `breakglass-ca serve` child process (its RSS and descriptors are its own), set up by
//! its own `init --dev` and told about N hosts (`host://fanout-NNNNN`, group `hosts`),
//! each with its own mTLS client certificate from the dev TLS CA. This process plays the
//! N hosts: each holds one `WatchRevocations` stream on its own connection, as `breakglass
//! host watch-revocations` does, from one of several loopback addresses, resuming from
//! the last sequence number it saw when the stream breaks. By default each host also does
//! what the packaged `watch-revocations --krl` does at each connect and each revocation:
//! fetch the KRL and witness the log from its last checkpoint, on the stream's connection
//! ([`OnNotice`]). Beside them a fraction of the hosts run `host sync-krl` (`GetRevocationList`) and `host ship`
//! (`AppendHostRecords`), each call on a new connection as those commands make.
//!
//! Then, for each round, the sample SRE gets a certificate and revokes it: the fan-out
//! latency of a host is from the moment the `Revoke` call was made to the moment that
//! host's stream delivered the notice (the daemon sends the notices as soon as the
//! revocation is durable, before it publishes the KRL and answers, so most arrive before
//! the answer; the report says how many). The report gives p50/p99/max over all N, how many saw it within the wait, and the
//! daemon's RSS and descriptors with the streams open.
//!
//! Both sides run on this machine: the hosts' TLS work (this process) competes with the
//! daemon's for the same cores, so the figures are an upper bound of the daemon's share.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_ca::init::{self, CertAndKey, ClientSan};
use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::spool::{self, SessionEvent};
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_proto::v1::witness_client::WitnessClient;
use breakglass_proto::v1::{
    AppendHostRecordsRequest, GetRevocationListRequest, HostRecord, RequestCertificateRequest,
    RevokeRequest, WatchRevocationsRequest, WitnessCheckpointRequest,
};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::child::{self, Daemon, free_port, log_fields, open_fds, rss_bytes};
use crate::idle::loopback_sources;
use crate::percentile;

/// A stream that broke is opened again after this pause (as the watcher's first backoff).
const RECONNECT: Duration = Duration::from_secs(1);
/// Longest wait for the daemon to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `breakglass-ca` binary to run.
    pub daemon: PathBuf,
    /// Simulated hosts, one revocation stream each.
    pub hosts: usize,
    /// Revocations, one after the other.
    pub rounds: usize,
    /// Loopback addresses the hosts connect from (127.0.0.2 onwards).
    pub sources: u8,
    /// Streams being opened at once.
    pub connect_concurrency: usize,
    /// The daemon's `RLIMIT_NOFILE` (soft and hard), or None to inherit this process's.
    pub fd_limit: Option<u64>,
    /// `GetRevocationList` calls per second (each a new connection of a random host).
    pub krl_rate: f64,
    /// `AppendHostRecords` calls per second (each a new connection of a random host).
    pub ship_rate: f64,
    /// Records per `AppendHostRecords` call.
    pub ship_records: usize,
    /// Longest wait for every stream to deliver one revocation.
    pub wait: Duration,
    /// Pause before each revocation (the side calls go on meanwhile).
    pub pause: Duration,
    /// What each host does when a revocation reaches it (and at each connect of its
    /// stream), beside ending sessions.
    pub on_notice: OnNotice,
}

/// What a host does on a revocation notice, beside ending sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnNotice {
    /// Nothing (`watch-revocations` without `--krl`).
    Nothing,
    /// Fetch the KRL and witness the log, each on a new connection (`watch-revocations
    /// --krl` before it shared the stream's connection).
    NewConnections,
    /// Fetch the KRL and witness the log on the stream's own connection, as the packaged
    /// `watch-revocations --krl` does; also at each (re)connect of the stream.
    StreamConnection,
}

/// What a simulated host remembers between its witness checks, as the real one keeps in
/// its witness state file: the daemon then proves that its log extends that checkpoint.
#[derive(Debug, Default)]
struct Witnessed {
    checkpoint: String,
    krl_version: u64,
}

/// One simulated host: its identity and its TLS client settings.
#[derive(Debug)]
struct Host {
    name: String,
    from: IpAddr,
    tls: ClientTlsConfig,
}

/// What the hosts saw, shared by their tasks.
#[derive(Debug)]
struct Seen {
    base: Instant,
    /// Grant id -> round, registered before the grant is revoked.
    rounds: RwLock<HashMap<String, usize>>,
    /// Per round and host: nanoseconds since `base` + 1 when its stream delivered the
    /// round's notice (0: not yet).
    at: Vec<Vec<AtomicU64>>,
    /// Streams open now (answered by the daemon, not ended).
    open: AtomicUsize,
    /// Streams that ended or failed, and connection attempts that failed.
    broken: AtomicU64,
    /// Most recent failure, for the report.
    last_failure: Mutex<Option<String>>,
    /// The KRL fetches and log witnessing done on notices ([`OnNotice`]).
    on_notice: Calls,
}

impl Seen {
    fn record(&self, round: usize, host: usize) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        if let Some(slot) = self.at.get(round).and_then(|r| r.get(host)) {
            let _ = slot.compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn count(&self, round: usize) -> usize {
        self.at[round]
            .iter()
            .filter(|a| a.load(Ordering::Relaxed) != 0)
            .count()
    }

    fn failed(&self, what: String) {
        self.broken.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }
}

/// Latency figures of one kind of side call.
#[derive(Debug, Default)]
struct Calls {
    latencies: Mutex<Vec<Duration>>,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Calls {
    fn done(&self, t: Instant, r: Result<(), String>) {
        match r {
            Ok(()) => self
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t.elapsed()),
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
    }

    fn line(&self, what: &str) -> String {
        let mut l = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        l.sort();
        let failed = self.failed.load(Ordering::Relaxed);
        let mut s = format!(
            "{what}: {} ok, {failed} failed; p50 {}, p99 {}, max {}\n",
            l.len(),
            ms(percentile(&l, 0.5)),
            ms(percentile(&l, 0.99)),
            ms(percentile(&l, 1.0)),
        );
        if let Some(f) = &*self.first_failure.lock().unwrap_or_else(|e| e.into_inner()) {
            s.push_str(&format!("  first failure: {f}\n"));
        }
        s
    }
}

/// One revocation's fan-out.
#[derive(Debug)]
struct Round {
    revoke_call: Duration,
    /// From the `Revoke` call to each delivery, sorted.
    latencies: Vec<Duration>,
    /// Deliveries before the `Revoke` call returned.
    before_answer: usize,
    open_streams: usize,
    rss: Option<u64>,
    fds: Option<usize>,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn host_name(i: usize) -> String {
    format!("fanout-{i:05}")
}

/// Runs the benchmark and returns a printable report.
pub async fn run(o: &Options) -> Result<String, String> {
    if o.hosts == 0 || o.rounds == 0 {
        return Err("--hosts and --rounds must be at least 1".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let setup = dir.path().join("ca");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let config = child::init_dev(&o.daemon, &setup, addr)?;
    let made = Instant::now();
    let hosts = add_hosts(&setup, &config, o)?;
    let made = made.elapsed();
    let log_path = dir.path().join("daemon.log");
    let mut daemon = Daemon::spawn(&o.daemon, o.fd_limit, &config, &log_path)?;
    daemon
        .wait_for_log(&log_path, "breakglass-ca serving", START_TIMEOUT)
        .await?;
    let pid = daemon.pid();
    let (rss_idle, fds_idle) = (rss_bytes(pid), open_fds(pid));

    let url = format!("https://{addr}");
    let sre = Target::Tls {
        url: url.clone(),
        fallbacks: Vec::new(),
        ca_cert: setup.join("tls/ca.pem"),
        cert: setup.join("clients/sre.pem"),
        key: setup.join("clients/sre-key.pem"),
        server_name: Some("localhost".into()),
    };
    let seen = Arc::new(Seen {
        base: Instant::now(),
        rounds: RwLock::new(HashMap::new()),
        at: (0..o.rounds)
            .map(|_| (0..o.hosts).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        open: AtomicUsize::new(0),
        broken: AtomicU64::new(0),
        last_failure: Mutex::new(None),
        on_notice: Calls::default(),
    });
    let hosts = Arc::new(hosts);
    let (stop, stopped) = watch::channel(false);

    // Open the N streams, `connect_concurrency` at a time.
    let connecting = Instant::now();
    let gate = Arc::new(Semaphore::new(o.connect_concurrency.max(1)));
    let mut tasks: Vec<JoinHandle<()>> = (0..o.hosts)
        .map(|i| {
            let (hosts, seen, gate, stopped) = (
                Arc::clone(&hosts),
                Arc::clone(&seen),
                Arc::clone(&gate),
                stopped.clone(),
            );
            let (url, on_notice) = (url.clone(), o.on_notice);
            tokio::spawn(async move {
                follow(i, &hosts, &url, on_notice, seen, gate, stopped).await;
            })
        })
        .collect();
    let deadline = Instant::now() + o.wait.max(Duration::from_secs(60)) * 4;
    while seen.open.load(Ordering::Relaxed) < o.hosts && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_time = connecting.elapsed();
    let connected = seen.open.load(Ordering::Relaxed);
    // Let the first heartbeats and buffers settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_streams, fds_streams) = (rss_bytes(pid), open_fds(pid));

    // The side calls, until the rounds are done.
    let krl = Arc::new(Calls::default());
    let ship = Arc::new(Calls::default());
    tasks.push(tokio::spawn(side_calls(
        o.krl_rate,
        Arc::clone(&hosts),
        url.clone(),
        stopped.clone(),
        Arc::clone(&krl),
        |ch, _name, _n| async move {
            RevocationsClient::new(ch)
                .get_revocation_list(GetRevocationListRequest {})
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        },
    )));
    let records = o.ship_records;
    tasks.push(tokio::spawn(side_calls(
        o.ship_rate,
        Arc::clone(&hosts),
        url.clone(),
        stopped.clone(),
        Arc::clone(&ship),
        move |ch: Channel, name: String, n: u64| async move { ship_once(ch, &name, n, records).await },
    )));

    let mut rounds = Vec::new();
    for r in 0..o.rounds {
        tokio::time::sleep(o.pause).await;
        rounds.push(revoke_round(r, &sre, &seen, o, pid).await?);
    }
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let bench_rss = rss_bytes(std::process::id());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    daemon.stop();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut out = format!(
        "daemon: {} with RLIMIT_NOFILE {}\n",
        o.daemon.display(),
        o.fd_limit
            .map_or_else(|| "inherited".to_owned(), |n| n.to_string())
    );
    if let Some(f) = log_fields(&log, "TCP limits") {
        out.push_str(&format!("daemon's TCP limits: {f}\n"));
    }
    out.push_str(&format!(
        "{} hosts (host identities and mTLS client certificates made in {}), each one \
         WatchRevocations stream on its own connection from {} loopback addresses, \
         {} connecting at a time\n",
        o.hosts,
        ms(made),
        o.sources,
        o.connect_concurrency
    ));
    out.push_str(&format!(
        "side calls on new connections: sync-krl (GetRevocationList) {}/s, ship \
         (AppendHostRecords, {} records) {}/s\n\n",
        o.krl_rate, o.ship_records, o.ship_rate
    ));
    out.push_str(&format!(
        "connect: {connected} of {} streams open in {}\n",
        o.hosts,
        ms(connect_time)
    ));
    let per = |after: Option<u64>| match (after, rss_idle) {
        (Some(a), Some(b)) if connected > 0 => format!(
            "{} (+{} = {:.1} KiB per stream)",
            mib(a),
            mib(a.saturating_sub(b)),
            a.saturating_sub(b) as f64 / 1024.0 / connected as f64
        ),
        (Some(a), _) => mib(a),
        _ => "?".into(),
    };
    let fds = |f: Option<usize>| f.map_or_else(|| "?".to_owned(), |n| n.to_string());
    out.push_str(&format!(
        "daemon RSS: {} idle, {} with the streams open\n",
        rss_idle.map_or_else(|| "?".to_owned(), mib),
        per(rss_streams)
    ));
    out.push_str(&format!(
        "daemon fds: {} idle, {} with the streams open\n\n",
        fds(fds_idle),
        fds(fds_streams)
    ));
    out.push_str(&format!(
        "{:>5} {:>10} {:>13} {:>9} {:>10} {:>10} {:>10} {:>13} {:>7}\n",
        "round", "revoke", "saw it", "before", "p50", "p99", "max", "daemon RSS", "fds"
    ));
    for (i, r) in rounds.iter().enumerate() {
        out.push_str(&format!(
            "{:>5} {:>10} {:>13} {:>9} {:>10} {:>10} {:>10} {:>13} {:>7}\n",
            i + 1,
            ms(r.revoke_call),
            format!("{}/{}", r.latencies.len(), r.open_streams),
            r.before_answer,
            ms(percentile(&r.latencies, 0.5)),
            ms(percentile(&r.latencies, 0.99)),
            ms(percentile(&r.latencies, 1.0)),
            r.rss.map_or_else(|| "?".to_owned(), mib),
            fds(r.fds),
        ));
    }
    out.push_str(
        "(revoke: the Revoke call, which answers once the KRL is published too; saw it: \
         streams that delivered the notice within the wait / streams open; before: of them, \
         before the Revoke call returned; p50/p99/max: from the Revoke call to the \
         notice on each stream)\n\n",
    );
    if o.on_notice != OnNotice::Nothing {
        out.push_str(&seen.on_notice.line(&format!(
            "at each stream connect and notice, KRL fetch + witness ({:?})",
            o.on_notice
        )));
    }
    out.push_str(&krl.line("sync-krl"));
    out.push_str(&ship.line("ship"));
    out.push_str(&format!(
        "streams broken or refused (each reopened from its last sequence number): {}\n",
        seen.broken.load(Ordering::Relaxed)
    ));
    if let Some(f) = &*seen.last_failure.lock().unwrap_or_else(|e| e.into_inner()) {
        out.push_str(&format!("  last: {f}\n"));
    }
    out.push_str(&format!(
        "this process (the {} hosts): RSS {}\n",
        o.hosts,
        bench_rss.map_or_else(|| "?".to_owned(), mib)
    ));
    out.push_str(&format!(
        "machine load (1, 5, 15 min) at the end: {}\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();
    out.push_str(&format!(
        "daemon log: {warnings} warnings, {} lines in all\n",
        log.lines().count()
    ));
    if let Some(f) = log_fields(&log, "totals since start-up") {
        out.push_str(&format!("daemon TCP totals: {f}\n"));
    }
    Ok(out)
}

/// Lists the hosts in the daemon's config and makes their client certificates.
fn add_hosts(setup: &Path, config: &Path, o: &Options) -> Result<Vec<Host>, String> {
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = CertAndKey {
        cert_pem: read(setup.join("tls/ca.pem"))?,
        key_pem: read(setup.join("tls/ca-key.pem"))?,
    };
    let mut text = read(config.to_owned())?;
    // `init --dev` puts the metrics listener on the next port, which may be taken.
    text = text
        .lines()
        .map(|l| {
            if l.starts_with("metrics_listen = ") {
                "metrics_listen = \"127.0.0.1:0\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    let now = time::OffsetDateTime::now_utc();
    let sources = loopback_sources(2, o.sources);
    let mut hosts = Vec::with_capacity(o.hosts);
    for i in 0..o.hosts {
        let name = host_name(i);
        text.push_str(&format!(
            "\n[[identities]]\nid = \"host://{name}\"\ngroups = [\"hosts\"]\n"
        ));
        // The SAN must be 'static; the bench's host names live as long as the process.
        let uri: &'static str = Box::leak(format!("host://{name}").into_boxed_str());
        let leaf = init::tls_leaf(
            &ca,
            &[],
            Some(ClientSan::Uri(uri)),
            now - Duration::from_secs(3600),
            now + Duration::from_secs(86400),
        )
        .map_err(|e| format!("client certificate of {name}: {e}"))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.cert_pem))
            .identity(Identity::from_pem(leaf.cert_pem, leaf.key_pem))
            .domain_name("localhost");
        hosts.push(Host {
            name,
            from: IpAddr::V4(sources[i % sources.len()]),
            tls,
        });
    }
    std::fs::write(config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(hosts)
}

/// A connection of `host` to the daemon at `url`.
async fn connect(host: &Host, url: &str) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .tls_config(host.tls.clone())
        .map_err(|e| e.to_string())?
        .local_address(Some(host.from))
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| format!("connecting as {}: {e:?}", host.name))
}

/// Host `i`'s revocation stream: opened (under `gate`) from sequence 0, reopened from
/// the last sequence number seen when it breaks, until `stop`.
async fn follow(
    i: usize,
    hosts: &Arc<Vec<Host>>,
    url: &str,
    on_notice: OnNotice,
    seen: Arc<Seen>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let host = &hosts[i];
    let mut last = 0u64;
    let mut witnessed = Witnessed::default();
    loop {
        let opened = {
            let _turn = tokio::select! {
                p = gate.acquire() => p,
                _ = stop.changed() => return,
            };
            let open = async {
                let ch = connect(host, url).await?;
                RevocationsClient::new(ch.clone())
                    .watch_revocations(WatchRevocationsRequest { from_version: last })
                    .await
                    .map(|r| (r, ch))
                    .map_err(|s| format!("{}: {:?}: {}", host.name, s.code(), s.message()))
            };
            tokio::select! {
                r = open => r,
                _ = stop.changed() => return,
            }
        };
        match opened {
            Ok((resp, ch)) => {
                seen.open.fetch_add(1, Ordering::Relaxed);
                let mut stream = resp.into_inner();
                if on_notice != OnNotice::Nothing {
                    // As the watcher at each (re)connect: witness the log, install the KRL
                    // (revocations made while the stream was down).
                    let via = (on_notice == OnNotice::StreamConnection).then(|| ch.clone());
                    let t = Instant::now();
                    let r = krl_and_witness(host, url, via, &mut witnessed).await;
                    seen.on_notice.done(t, r);
                }
                let end = loop {
                    let m = tokio::select! {
                        m = stream.message() => m,
                        _ = stop.changed() => {
                            seen.open.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    match m {
                        Ok(Some(n)) => {
                            last = last.max(n.version);
                            if n.heartbeat {
                                continue;
                            }
                            let round = seen
                                .rounds
                                .read()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&n.grant_id)
                                .copied();
                            if let Some(r) = round {
                                seen.record(r, i);
                            }
                            let via = match on_notice {
                                OnNotice::Nothing => continue,
                                OnNotice::NewConnections => None,
                                OnNotice::StreamConnection => Some(ch.clone()),
                            };
                            // In the stream's loop, as the watcher does: the next notice
                            // waits (the daemon keeps it; the stream's window holds it).
                            let t = Instant::now();
                            let r = krl_and_witness(host, url, via, &mut witnessed).await;
                            seen.on_notice.done(t, r);
                        }
                        Ok(None) => break format!("{}: stream ended", host.name),
                        Err(s) => {
                            break format!("{}: {:?}: {}", host.name, s.code(), s.message());
                        }
                    }
                };
                seen.open.fetch_sub(1, Ordering::Relaxed);
                seen.failed(end);
            }
            Err(e) => seen.failed(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Calls `call` on a new connection of a random host `rate` times a second until `stop`.
async fn side_calls<F, Fut>(
    rate: f64,
    hosts: Arc<Vec<Host>>,
    url: String,
    mut stop: watch::Receiver<bool>,
    calls: Arc<Calls>,
    call: F,
) where
    F: Fn(Channel, String, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    if rate <= 0.0 || hosts.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        n += 1;
        // A spread of hosts without a random number generator: a large odd stride.
        let i = (n.wrapping_mul(7919) % hosts.len() as u64) as usize;
        let (hosts, url, calls, call) = (
            Arc::clone(&hosts),
            url.clone(),
            Arc::clone(&calls),
            call.clone(),
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let host = &hosts[i];
            let r = match connect(host, &url).await {
                Ok(ch) => call(ch, host.name.clone(), n).await,
                Err(e) => Err(e),
            };
            calls.done(t, r);
        });
    }
}

/// What `watch-revocations --krl` asks on a notice: the KRL, then the log's checkpoint
/// from the one this host saw last (witnessing before the install); each on a new
/// connection unless `via` is given. The host's own checks of the answers (signatures,
/// consistency proof) are left out: real hosts spend their own CPU on them, not the
/// daemon's machine's.
async fn krl_and_witness(
    host: &Host,
    url: &str,
    via: Option<Channel>,
    witnessed: &mut Witnessed,
) -> Result<(), String> {
    let status = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let ch = match &via {
        Some(ch) => ch.clone(),
        None => connect(host, url).await?,
    };
    let krl = RevocationsClient::new(ch)
        .get_revocation_list(GetRevocationListRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let ch = match via {
        Some(ch) => ch,
        None => connect(host, url).await?,
    };
    let answer = WitnessClient::new(ch)
        .witness_checkpoint(WitnessCheckpointRequest {
            checkpoint: witnessed.checkpoint.clone(),
            krl_version: krl.version.max(witnessed.krl_version),
            failure: String::new(),
        })
        .await
        .map_err(status)?
        .into_inner();
    *witnessed = Witnessed {
        checkpoint: answer.checkpoint,
        krl_version: krl.version.max(witnessed.krl_version),
    };
    Ok(())
}

/// One `host ship` delivery of `records` denied-session records of host `name`.
async fn ship_once(ch: Channel, name: &str, n: u64, records: usize) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let records = (0..records)
        .map(|k| {
            let pid = u32::try_from(n % 4_000_000).unwrap_or(1) + 1;
            let session = spool::session_id(name, None, pid, now * 1000 + k as u64);
            HostRecord {
                record_id: spool::record_id(&session, SessionEvent::Deny),
                session,
                event: SessionEvent::Deny.name().into(),
                time: now,
                host: name.into(),
                user: "postgres".into(),
                rhost: "192.0.2.1".into(),
                pid,
                start: now,
                reason: "bad_signature".into(),
                detail: "fanout-bench".into(),
                ..HostRecord::default()
            }
        })
        .collect();
    let r = HostAgentClient::new(ch)
        .append_host_records(AppendHostRecordsRequest { records })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    match r.into_inner().results.iter().find(|x| !x.error.is_empty()) {
        Some(bad) => Err(format!("record {} rejected: {}", bad.record_id, bad.error)),
        None => Ok(()),
    }
}

/// One round: a grant issued to the sample SRE, revoked, and the wait for every open
/// stream to deliver the notice.
async fn revoke_round(
    r: usize,
    sre: &Target,
    seen: &Seen,
    o: &Options,
    pid: u32,
) -> Result<Round, String> {
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?;
    let public_key = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    let grant = connect::client(sre)
        .map_err(|e| e.to_string())?
        .request_certificate(RequestCertificateRequest {
            public_key,
            principals: vec!["bgbench".into()],
            hosts: vec!["localhost".into()],
            ttl_seconds: 600,
            reason: format!("fan-out benchmark round {}", r + 1),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("issuing the round's grant: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .grant_id;
    seen.rounds
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(grant.clone(), r);
    let mut revocations = RevocationsClient::new(connect::channel(sre).map_err(|e| e.to_string())?);
    let open_streams = seen.open.load(Ordering::Relaxed);
    let t = Instant::now();
    revocations
        .revoke(RevokeRequest {
            target: Some(Selector::GrantId(grant)),
            reason: format!("fan-out benchmark round {}", r + 1),
        })
        .await
        .map_err(|s| format!("revoking: {:?}: {}", s.code(), s.message()))?;
    let returned = t.elapsed();
    let sent_at = t.duration_since(seen.base);
    let deadline = Instant::now() + o.wait;
    while seen.count(r) < open_streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latencies: Vec<Duration> = seen.at[r]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|&ns| ns != 0)
        .map(|ns| Duration::from_nanos(ns - 1).saturating_sub(sent_at))
        .collect();
    latencies.sort();
    let before_answer = latencies.iter().filter(|&&l| l <= returned).count();
    Ok(Round {
        revoke_call: returned,
        latencies,
        before_answer,
        open_streams,
        rss: rss_bytes(pid),
        fds: open_fds(pid),
    })
}
