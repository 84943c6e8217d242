//! `pg-bench`: issuance on the PostgreSQL audit backend (issue 14) beside the embedded one,
//! in one run, against real `breakglass-ca serve` child processes over loopback mTLS:
//! - issuance at concurrency `c` (64 by default) by one daemon on the embedded log, one
//!   daemon on PostgreSQL and three daemons on the same database (the requesters spread
//!   over them): rate and p50/p99, and PostgreSQL's rate as a percentage of the embedded
//!   one's (goal ≥ 50 %);
//! - a requester waiting on daemon A (`WatchRequest`) for an approval given on daemon B:
//!   the time from the approve call on B (and from its answer) until A delivers the
//!   certificate, p50/p99 over `approvals` requests (goal < 1 s).
//!
//! Per issuance series it also prints where the time goes: the batches committed to the
//! database (rows of `audit_checkpoints`: their rate and mean size) and the CPU time per
//! certificate of each daemon, of PostgreSQL (every process of the cluster) and of this
//! load generator, from `/proc/<pid>/stat`.
//!
//! The database is a throw-away cluster (`breakglass_test_support::postgres::PgCluster`:
//! `initdb` in a temporary directory as the `postgres` user, its own loopback port), run
//! with PostgreSQL's defaults (`fsync = on`, `synchronous_commit = on`); the settings that
//! decide the commit cost are printed with the figures. Needs root and the PostgreSQL
//! server packages (scripts/install-deps).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use breakglass_cli::connect::{self, Channel};
use breakglass_cli::settings::Target;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::{ApproveRequest, RequestCertificateRequest, RequestRef};
use breakglass_test_support::postgres::PgCluster;
use tempfile::TempDir;

use crate::child::{self, Daemon, free_port};
use crate::issuance::{SyslogSink, machine, ms, point_syslog_at, request, user_keys};
use crate::percentile;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `breakglass-ca` binary to run.
    pub daemon: PathBuf,
    /// Certificates per issuance series.
    pub count: usize,
    /// Concurrent requesters of each issuance series.
    pub concurrency: usize,
    /// Requests approved on daemon B while their requester waits on daemon A.
    pub approvals: usize,
}

/// The PostgreSQL server settings that decide what a commit costs, as the cluster runs.
const SETTINGS: [&str; 5] = [
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
];

/// Goal of issue 14: the PostgreSQL backend's rate at least this share of the embedded one.
const RATE_GOAL: f64 = 0.5;
/// Goal of issue 14: an approval on B visible to a requester waiting on A within this.
const VISIBLE_GOAL: Duration = Duration::from_secs(1);

/// One running daemon with its `init --dev` directory.
struct Node {
    dir: PathBuf,
    daemon: Daemon,
    addr: SocketAddr,
    log: PathBuf,
    syslog: SyslogSink,
}

impl Node {
    /// `init --dev` in `root/name`, its config passed through `edit`, then `serve`; waits
    /// until it serves.
    async fn start(
        bin: &Path,
        root: &Path,
        name: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Result<Self, String> {
        let dir = root.join(name);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = child::init_dev(bin, &dir, addr)?;
        let sock = root.join(format!("{name}-syslog.sock"));
        let syslog = SyslogSink::bind(&sock)?;
        point_syslog_at(&config, &sock)?;
        let text =
            std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        std::fs::write(&config, edit(text)).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = root.join(format!("{name}.log"));
        let mut daemon = Daemon::spawn(bin, None, &config, &log)?;
        daemon
            .wait_for_log(&log, "breakglass-ca serving", Duration::from_secs(120))
            .await?;
        Ok(Self {
            dir,
            daemon,
            addr,
            log,
            syslog,
        })
    }

    /// How the sample client `name` (sre, approver) of this daemon's set-up connects.
    fn target(&self, name: &str) -> Target {
        Target::Tls {
            url: format!("https://{}", self.addr),
            fallbacks: Vec::new(),
            ca_cert: self.dir.join("tls/ca.pem"),
            cert: self.dir.join(format!("clients/{name}.pem")),
            key: self.dir.join(format!("clients/{name}-key.pem")),
            server_name: Some("localhost".into()),
        }
    }

    fn client(&self, name: &str) -> Result<BreakGlassClient<Channel>, String> {
        connect::client(&self.target(name)).map_err(|e| e.to_string())
    }

    /// Stops the daemon; fails with its log if it had exited on its own.
    fn stop(mut self) -> Result<(), String> {
        let exited = self.daemon.exited();
        self.daemon.stop();
        self.syslog.stop();
        match exited {
            Some(status) => Err(format!(
                "the daemon in {} exited during the run ({status}):\n{}",
                self.dir.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )),
            None => Ok(()),
        }
    }
}

/// The dev config on PostgreSQL at `url` (`[audit] backend = "postgres"`, `[postgres]`);
/// with `keys_of`, the CA and audit keys of that set-up (every daemon of one log has the
/// same keys).
fn on_postgres(config: String, url: &str, keys_of: Option<&Path>) -> String {
    let mut c = config.replacen("[audit]\n", "[audit]\nbackend = \"postgres\"\n", 1);
    if let Some(dir) = keys_of {
        c = c
            .replacen(
                "signing_key = \"ssh_ca\"",
                &format!("signing_key = \"{}\"", dir.join("ssh_ca").display()),
                1,
            )
            .replacen(
                "key = \"audit_key.pem\"",
                &format!("key = \"{}\"", dir.join("audit_key.pem").display()),
                1,
            );
    }
    format!("{c}\n[postgres]\nurl = \"{url}\"\ntls = \"disable\"\n")
}

/// One issuance series.
struct Series {
    label: String,
    count: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// Batches the series committed (rows of `audit_checkpoints`; PostgreSQL only).
    batches: Option<u64>,
    /// CPU time (user + system) during the series of each process measured, by name.
    cpu: Vec<(String, Duration)>,
}

/// What is measured beside the rate during a series: the CPU time of the daemons, of
/// PostgreSQL and of this load generator, and the batches committed to the database.
struct Probe<'a> {
    /// The daemons, by name, with their process ids.
    daemons: Vec<(String, u32)>,
    /// The cluster, whose processes' CPU time is summed and whose checkpoints are counted.
    cluster: Option<&'a PgCluster>,
}

impl Probe<'_> {
    /// CPU time so far of each measured process (group), by name.
    fn cpu(&self) -> Vec<(String, Duration)> {
        let mut out: Vec<(String, Duration)> = self
            .daemons
            .iter()
            .map(|(name, pid)| (name.clone(), child::cpu_time(*pid).unwrap_or_default()))
            .collect();
        if let Some(c) = self.cluster {
            out.push(("PostgreSQL".into(), postgres_cpu(&c.primary.data)));
        }
        out.push((
            "pg-bench (load)".into(),
            child::cpu_time(std::process::id()).unwrap_or_default(),
        ));
        out
    }

    /// Batches committed so far (rows of `audit_checkpoints`).
    fn batches(&self) -> Option<u64> {
        self.cluster.and_then(|c| {
            c.psql("SELECT count(*) FROM audit_checkpoints")
                .parse()
                .ok()
        })
    }
}

/// CPU time of a PostgreSQL server: its postmaster (pid from `postmaster.pid` in `data`)
/// and every child of it (backends, WAL writer, checkpointer, …) alive now.
fn postgres_cpu(data: &Path) -> Duration {
    let Some(postmaster) = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
    else {
        return Duration::ZERO;
    };
    let mut total = child::cpu_time(postmaster).unwrap_or_default();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // Field 4 (ppid), counted after the command name's closing `)`.
                let rest = stat.get(stat.rfind(')')? + 2..)?;
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        if parent == Some(postmaster) {
            total += child::cpu_time(pid).unwrap_or_default();
        }
    }
    total
}

impl Series {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// `keys.len()` certificates requested by `concurrency` callers, spread round-robin over
/// `clients` (each its own connection to its daemon), after a warm-up of each.
async fn issuance(
    label: &str,
    clients: &[BreakGlassClient<Channel>],
    keys: &Arc<Vec<String>>,
    concurrency: usize,
    probe: &Probe<'_>,
) -> Result<Series, String> {
    let ttl = Duration::from_secs(600);
    for client in clients {
        for key in keys.iter().take(20) {
            client
                .clone()
                .request_certificate(request(key, ttl))
                .await
                .map_err(|s| format!("{label}: warm-up request failed: {s}"))?;
        }
    }
    let (batches_before, cpu_before) = (probe.batches(), probe.cpu());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..concurrency.max(1) {
        let (mut client, keys, next) = (
            clients[n % clients.len()].clone(),
            keys.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else {
                    return Ok::<_, String>(lat);
                };
                let t = Instant::now();
                client
                    .request_certificate(request(key, ttl))
                    .await
                    .map_err(|s| format!("request failed: {s}"))?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::with_capacity(keys.len());
    for t in tasks {
        lat.extend(
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{label}: {e}"))?,
        );
    }
    let elapsed = start.elapsed();
    let cpu = probe
        .cpu()
        .into_iter()
        .zip(cpu_before)
        .map(|((name, after), (_, before))| (name, after.saturating_sub(before)))
        .collect();
    let batches = probe
        .batches()
        .zip(batches_before)
        .map(|(after, before)| after.saturating_sub(before));
    lat.sort();
    Ok(Series {
        label: label.to_owned(),
        count: lat.len(),
        elapsed,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        batches,
        cpu,
    })
}

/// What the cross-daemon approvals measured, sorted.
struct Approvals {
    /// From the approve call on B to the certificate on A's watch.
    from_call: Vec<Duration>,
    /// From the approve call's answer on B to the certificate on A's watch (zero when A
    /// delivered first).
    from_answer: Vec<Duration>,
    /// The approve call on B itself.
    approve_call: Vec<Duration>,
}

/// `n` times: a request for a host of the `elevated` tier (one approval) created on `a`,
/// watched there, approved on `b`; the times until `a` delivers its certificate.
async fn cross_daemon_approvals(a: &Node, b: &Node, n: usize) -> Result<Approvals, String> {
    let mut requester = a.client("sre")?;
    let mut approver = b.client("approver")?;
    let keys = user_keys(n)?;
    let mut out = Approvals {
        from_call: Vec::with_capacity(n),
        from_answer: Vec::with_capacity(n),
        approve_call: Vec::with_capacity(n),
    };
    for (i, key) in keys.iter().enumerate() {
        let created = requester
            .create_request(RequestCertificateRequest {
                hosts: vec!["web-1.staging.example".into()],
                reason: format!("pg-bench approval {i}"),
                ..request(key, Duration::from_secs(600))
            })
            .await
            .map_err(|s| format!("approval {i}: create_request on A failed: {s}"))?
            .into_inner();
        if created.certificate.is_some() {
            return Err(format!(
                "approval {i}: the request for web-1.staging.example was issued at once; the \
                 dev config's `elevated` tier should need one approval"
            ));
        }
        let id = created
            .request
            .ok_or_else(|| format!("approval {i}: A answered without the request"))?
            .request_id;
        let mut watch = requester
            .watch_request(RequestRef {
                request_id: id.clone(),
            })
            .await
            .map_err(|s| format!("approval {i}: watch_request on A failed: {s}"))?
            .into_inner();
        // B learns of the request through the database: retry a NOT_FOUND (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let (called, answered) = loop {
            let called = Instant::now();
            match approver
                .approve(ApproveRequest {
                    request_id: id.clone(),
                    comment: "pg-bench".into(),
                })
                .await
            {
                Ok(_) => break (called, Instant::now()),
                Err(s) if s.code() == tonic::Code::NotFound && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(s) => return Err(format!("approval {i}: approve on B failed: {s}")),
            }
        };
        let seen = loop {
            let update = tokio::time::timeout(Duration::from_secs(30), watch.message())
                .await
                .map_err(|_| format!("approval {i}: A sent nothing for 30 s after the approval"))?
                .map_err(|s| format!("approval {i}: the watch on A failed: {s}"))?
                .ok_or_else(|| format!("approval {i}: A ended the watch without a certificate"))?;
            if update.certificate.is_some() {
                break Instant::now();
            }
        };
        out.from_call.push(seen - called);
        out.from_answer
            .push(seen.saturating_duration_since(answered));
        out.approve_call.push(answered - called);
    }
    out.from_call.sort();
    out.from_answer.sort();
    out.approve_call.sort();
    Ok(out)
}

/// Runs the benchmark and returns a printable report.
pub async fn run(o: &Options) -> Result<String, String> {
    let root = TempDir::new().map_err(|e| format!("temporary directory: {e}"))?;
    let keys = Arc::new(user_keys(o.count.max(1))?);
    let c = o.concurrency.max(1);
    let mut series = Vec::new();

    // The embedded backend first, alone on the machine.
    let local = Node::start(&o.daemon, root.path(), "local", |t| t).await?;
    let probe = Probe {
        daemons: vec![("daemon".into(), local.daemon.pid())],
        cluster: None,
    };
    series.push(
        issuance(
            &format!("embedded log, 1 daemon, c={c}"),
            &[local.client("sre")?],
            &keys,
            c,
            &probe,
        )
        .await?,
    );
    local.stop()?;

    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .map_err(|e| format!("starting the PostgreSQL cluster: {e}"))?;
    let settings: Vec<String> = SETTINGS
        .iter()
        .map(|s| format!("{s}={}", cluster.psql(&format!("SHOW {s}"))))
        .collect();
    let version = cluster.psql("SHOW server_version");
    let url = cluster.url();

    let a = Node::start(&o.daemon, root.path(), "pg-a", |t| {
        on_postgres(t, &url, None)
    })
    .await?;
    let probe = Probe {
        daemons: vec![("daemon A".into(), a.daemon.pid())],
        cluster: Some(&cluster),
    };
    series.push(
        issuance(
            &format!("PostgreSQL, 1 daemon, c={c}"),
            &[a.client("sre")?],
            &keys,
            c,
            &probe,
        )
        .await?,
    );
    let b = Node::start(&o.daemon, root.path(), "pg-b", |t| {
        on_postgres(t, &url, Some(&a.dir))
    })
    .await?;
    let cc = Node::start(&o.daemon, root.path(), "pg-c", |t| {
        on_postgres(t, &url, Some(&a.dir))
    })
    .await?;
    let probe = Probe {
        daemons: vec![
            ("daemon A".into(), a.daemon.pid()),
            ("daemon B".into(), b.daemon.pid()),
            ("daemon C".into(), cc.daemon.pid()),
        ],
        cluster: Some(&cluster),
    };
    series.push(
        issuance(
            &format!("PostgreSQL, 3 daemons, c={c}"),
            &[a.client("sre")?, b.client("sre")?, cc.client("sre")?],
            &keys,
            c,
            &probe,
        )
        .await?,
    );
    let approvals = cross_daemon_approvals(&a, &b, o.approvals.max(1)).await?;
    let size = cluster.psql("SELECT size FROM audit_head");
    let dense = cluster.psql("SELECT count(*) = coalesce(max(idx) + 1, 0) FROM audit_entries");
    for node in [a, b, cc] {
        node.stop()?;
    }
    drop(cluster);

    let mut out = machine();
    out.push_str(&format!(
        "daemon: {}; PostgreSQL {version} (throw-away cluster on loopback TCP: {})\n\
         log in the database at the end: {size} entries, indices dense: {dense}\n\n",
        o.daemon.display(),
        settings.join(", ")
    ));
    out.push_str(&report(&series, &approvals));
    Ok(out)
}

fn report(series: &[Series], a: &Approvals) -> String {
    let embedded = series.first().map_or(0.0, Series::rate);
    let mut out = format!(
        "{:<34} {:>7} {:>9} {:>9} {:>9}  {}\n",
        "issuance", "certs", "certs/s", "p50", "p99", "of embedded (goal >= 50 %)"
    );
    for (i, s) in series.iter().enumerate() {
        let share = s.rate() / embedded;
        let goal = if i == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.1} % {}",
                100.0 * share,
                if share >= RATE_GOAL { "met" } else { "NOT met" }
            )
        };
        out.push_str(&format!(
            "{:<34} {:>7} {:>9.0} {:>9} {:>9}  {goal}\n",
            s.label,
            s.count,
            s.rate(),
            ms(s.p50),
            ms(s.p99),
        ));
    }
    out.push_str(
        "\nper series: batches committed to the database (mean entries per batch), and CPU \
         time per certificate of each process\n",
    );
    for s in series {
        let batches = s.batches.map_or_else(
            || "batches -".to_owned(),
            |b| {
                format!(
                    "{b} batches ({:.0}/s, mean {:.1} entries)",
                    b as f64 / s.elapsed.as_secs_f64(),
                    s.count as f64 / b.max(1) as f64
                )
            },
        );
        let cpu: Vec<String> = s
            .cpu
            .iter()
            .map(|(name, t)| {
                format!(
                    "{name} {:.0} µs",
                    t.as_secs_f64() * 1e6 / s.count.max(1) as f64
                )
            })
            .collect();
        let total: Duration = s.cpu.iter().map(|(_, t)| *t).sum();
        out.push_str(&format!(
            "  {}: {batches}; CPU per certificate: {}, all {:.0} µs ({:.2} CPUs busy)\n",
            s.label,
            cpu.join(", "),
            total.as_secs_f64() * 1e6 / s.count.max(1) as f64,
            total.as_secs_f64() / s.elapsed.as_secs_f64(),
        ));
    }
    let goal = |d: Duration| if d < VISIBLE_GOAL { "met" } else { "NOT met" };
    let (p50, p99) = (
        percentile(&a.from_call, 0.5),
        percentile(&a.from_call, 0.99),
    );
    out.push_str(&format!(
        "\ncross-daemon approval, {} requests (requester waiting on A, approver on B):\n\
         \x20 approve call on B -> certificate on A: p50 {}, p99 {}, max {}  (goal < 1 s: {})\n\
         \x20 approve answered on B -> certificate on A: p50 {}, p99 {}\n\
         \x20 the approve call on B itself: p50 {}, p99 {}\n",
        a.from_call.len(),
        ms(p50),
        ms(p99),
        ms(a.from_call.last().copied().unwrap_or_default()),
        goal(p99),
        ms(percentile(&a.from_answer, 0.5)),
        ms(percentile(&a.from_answer, 0.99)),
        ms(percentile(&a.approve_call, 0.5)),
        ms(percentile(&a.approve_call, 0.99)),
    ));
    out
}
