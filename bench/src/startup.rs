//! `startup-bench`: how long the daemon takes to serve, and how much memory it holds, with a
//! long history in its audit log.
//!
//! For each size, a dev setup is made by the daemon's own `init --dev`, and a log of that
//! many events is generated into it by the log engine itself ([`AuditLog::append_all`],
//! large batches, no gRPC): accesses spread over a year, each a `request_created`,
//! `grant_issued`, `session_opened` and `session_closed`, with 15-minute to 2-hour
//! certificates, so that all but the last few grants are history. Then:
//! - **store open**: this binary opened again as a child (`--open-only`) opens the log alone,
//!   the way the daemon does, and prints its time and memory: the audit store's part;
//! - **rebuild** (with `--rebuild`): the same with the index removed, the slow path;
//! - **daemon, first start**: the real `breakglass-ca serve` as a child: time from spawn to
//!   `/readyz` answering 200 and to the first certificate over mTLS, its RSS then, and the
//!   time its own log gives to opening the log and to rebuilding its state from it (the
//!   generated log has no state snapshot: every event is replayed). Then it is stopped
//!   gracefully (SIGTERM), which writes a state snapshot;
//! - **daemon, second start**: the same again, on the snapshot: only the events after it
//!   (the first start's certificate) are replayed. This is the start-up of a daemon that
//!   was stopped or restarted as operators do; its time and memory do not grow with the
//!   history.
//!
//! Everything generated is in a temporary directory under `--dir`, removed at the end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use breakglass_cli::settings::Target;
use breakglass_proto::audit::event::{
    GrantIssued, RequestCreated, SessionClosed, SessionOpened, SessionRef,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};

use breakglass_ca::audit::{AuditConfig, AuditLog, load_audit_key};
use breakglass_ca::config::Config;

use crate::child::{free_port, http_get, log_fields};
use crate::idle::issue;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `breakglass-ca` binary to run.
    pub daemon: PathBuf,
    /// This binary (run again with `--open-only` to measure the store alone).
    pub me: PathBuf,
    /// Log sizes (events) to measure, one run each.
    pub events: Vec<u64>,
    /// Where the temporary setups go (the disk the daemon's data directory would use).
    pub dir: PathBuf,
    /// Also measure the open with the index removed (the slow path: every segment read).
    pub rebuild: bool,
    /// The daemon's address-space limit in bytes (`prlimit --as`), so that a daemon that
    /// needs too much memory fails alone instead of pushing the machine into the OOM killer.
    pub memory_cap: Option<u64>,
    /// Longest the daemon may take to serve.
    pub timeout: Duration,
}

/// Events per write while generating (each one `write` + one `fdatasync`).
const GENERATE_BATCH: u64 = 4096;
/// Events per access (request, grant, session opened, session closed).
const EVENTS_PER_ACCESS: u64 = 4;

/// One size's figures.
#[derive(Debug)]
struct Run {
    events: u64,
    generate: Duration,
    segment_bytes: u64,
    index_bytes: u64,
    open: Option<OpenFigures>,
    rebuild: Option<OpenFigures>,
    daemon: Result<DaemonFigures, String>,
    /// The start after the first one's graceful stop (from its snapshot).
    second: Option<Result<DaemonFigures, String>>,
}

/// What the `--open-only` child printed.
#[derive(Debug, Clone, Copy)]
struct OpenFigures {
    elapsed: Duration,
    rss_kib: u64,
    hwm_kib: u64,
}

#[derive(Debug, Default)]
struct DaemonFigures {
    ready: Duration,
    first_certificate: Duration,
    rss_ready_kib: u64,
    hwm_ready_kib: u64,
    rss_after_kib: u64,
    /// From the daemon's own log lines.
    log_open_ms: Option<u64>,
    state_ms: Option<u64>,
    /// Log size of the state snapshot it started from (None: it replayed every event).
    snapshot: Option<u64>,
    /// Events it replayed from the log.
    replayed: Option<u64>,
    /// From SIGTERM to its exit.
    stop: Duration,
    /// Log size of the snapshot it wrote at the stop (None: it wrote none).
    snapshot_written: Option<u64>,
}

impl Default for Run {
    fn default() -> Self {
        Self {
            events: 0,
            generate: Duration::ZERO,
            segment_bytes: 0,
            index_bytes: 0,
            open: None,
            rebuild: None,
            daemon: Err("not run".into()),
            second: None,
        }
    }
}

/// Runs the benchmark and returns a printable report.
pub fn run(o: &Options) -> Result<String, String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let mut runs = Vec::new();
    for &n in &o.events {
        eprintln!("startup-bench: {n} events ...");
        runs.push(measure(o, n)?);
    }
    Ok(report(o, &runs))
}

fn measure(o: &Options, n: u64) -> Result<Run, String> {
    let tmp = tempfile::Builder::new()
        .prefix("startup-bench-")
        .tempdir_in(&o.dir)
        .map_err(|e| format!("temporary directory in {}: {e}", o.dir.display()))?;
    let setup = tmp.path().join("ca");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let init = Command::new(&o.daemon)
        .args(["init", "--dev"])
        .arg(&setup)
        .arg("--listen")
        .arg(addr.to_string())
        .output()
        .map_err(|e| format!("running {} init: {e}", o.daemon.display()))?;
    if !init.status.success() {
        return Err(format!(
            "{} init --dev failed: {}",
            o.daemon.display(),
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let config_path = setup.join("breakglass-ca.toml");
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let audit = &config.audit;
    let mut run = Run {
        events: n,
        ..Run::default()
    };
    let started = Instant::now();
    generate(audit, n)?;
    run.generate = started.elapsed();
    run.segment_bytes = dir_bytes(&audit.dir.join("segments"));
    run.index_bytes = dir_bytes(&audit.dir.join("index"));
    eprintln!(
        "startup-bench: generated {n} events in {:.1} s",
        run.generate.as_secs_f64()
    );
    run.open = Some(open_only(o, audit)?);
    if o.rebuild {
        let index = audit.dir.join("index");
        std::fs::remove_dir_all(&index).map_err(|e| format!("{}: {e}", index.display()))?;
        run.rebuild = Some(open_only(o, audit)?);
    }
    let metrics = config
        .server
        .metrics_listen
        .ok_or("the dev setup has no metrics_listen")?;
    run.daemon = serve(o, &setup, &config_path, addr, metrics, "first");
    if run.daemon.is_ok() {
        run.second = Some(serve(o, &setup, &config_path, addr, metrics, "second"));
    }
    Ok(run)
}

/// Writes `n` events into the log of `audit` with the log engine, in large batches.
fn generate(audit: &breakglass_ca::config::AuditSettings, n: u64) -> Result<(), String> {
    let signer = load_audit_key(&audit.key, &audit.origin).map_err(|e| e.to_string())?;
    let mut cfg = AuditConfig::new(&audit.dir);
    cfg.segment_max_bytes = audit.segment_max_bytes;
    let log = AuditLog::open(cfg, signer).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    let history = History::new(n, now_ms);
    let mut i = 0;
    let mut batch = Vec::with_capacity(GENERATE_BATCH as usize);
    while i < n {
        batch.clear();
        let end = (i + GENERATE_BATCH).min(n);
        batch.extend((i..end).map(|k| history.event(k)));
        rt.block_on(log.append_all(&batch))
            .map_err(|e| format!("appending events {i}..{end}: {e}"))?;
        i = end;
    }
    log.shutdown_blocking();
    Ok(())
}

/// The generated history: access `a` starts at `start_ms(a)`, spread evenly over a year that
/// ends a few minutes ago.
struct History {
    first_ms: u64,
    step_ms: u64,
}

impl History {
    fn new(events: u64, now_ms: u64) -> Self {
        let accesses = events.div_ceil(EVENTS_PER_ACCESS).max(1);
        let year_ms = 365 * 86_400 * 1000;
        Self {
            first_ms: now_ms - year_ms - 5 * 60 * 1000,
            step_ms: (year_ms / accesses).max(1),
        }
    }

    /// Event `k` of the history.
    fn event(&self, k: u64) -> Event {
        let a = k / EVENTS_PER_ACCESS;
        let t = self.first_ms + a * self.step_ms;
        let who = format!("sre-{}@example.com", a % 400);
        let host = format!("db-{}.prod.example.com", a % 3000);
        // 15 minutes to 2 hours.
        let ttl = 900 + (a % 8) * 900;
        let grant = GrantId(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let session = SessionRef {
            record_id: format!("{host}/{:016x}", a),
            host: host.clone(),
            grant_id: grant,
            serial: a + 1,
            principal: "postgres".into(),
            session_id: format!("sshd:{}", 10_000 + a % 50_000),
        };
        let (at, actor, kind) = match k % EVENTS_PER_ACCESS {
            0 => (
                t,
                Actor::User(who.clone()),
                EventKind::RequestCreated(RequestCreated {
                    request_id: RequestId(a + 1),
                    requester: who,
                    public_key: format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{:043x} sre", a),
                    principals: vec!["postgres".into()],
                    hosts: vec![host],
                    ttl_seconds: ttl,
                    reason: format!("INC-{} replication lag on the primary", 40_000 + a % 9000),
                    command: None,
                    source_addresses: vec![],
                    extensions: vec!["permit-pty".into()],
                    emergency: false,
                    rule: "db-oncall".into(),
                    tier: "low".into(),
                    approvals_required: 0,
                    expires_at: Timestamp(t + 3_600_000),
                }),
            ),
            1 => (
                t,
                Actor::Daemon,
                EventKind::GrantIssued(Box::new(GrantIssued {
                    request_id: RequestId(a + 1),
                    grant_id: grant,
                    serial: a + 1,
                    key_id: format!("breakglass:{grant}:{who}"),
                    ca_fingerprint: "SHA256:q0Pl6YBkYi8mXbqcYTwmSN4jpbWHXY5W1cLsxSDaNCM".into(),
                    key_fingerprint: format!("SHA256:{:043x}", a),
                    principals: vec!["postgres".into()],
                    hosts: vec![host],
                    command: None,
                    source_addresses: vec![],
                    extensions: vec!["permit-pty".into()],
                    valid_after: t / 1000 - 120,
                    valid_before: t / 1000 + ttl,
                    requester: who,
                    approvers: vec![],
                    rule: "db-oncall".into(),
                    tier: "low".into(),
                    emergency: false,
                })),
            ),
            2 => (
                t + 20_000,
                Actor::Host(format!("host://{host}")),
                EventKind::SessionOpened(SessionOpened {
                    session,
                    remote_addr: format!("10.20.{}.{}:51234", a % 250, a % 200),
                }),
            ),
            _ => (
                t + 600_000,
                Actor::Host(format!("host://{host}")),
                EventKind::SessionClosed(SessionClosed {
                    session,
                    recording: None,
                }),
            ),
        };
        Event::new(Timestamp(at), actor, kind)
    }
}

/// Opens the log alone in a child process (this binary with `--open-only`).
fn open_only(
    o: &Options,
    audit: &breakglass_ca::config::AuditSettings,
) -> Result<OpenFigures, String> {
    let out = Command::new(&o.me)
        .arg("--open-only")
        .arg(&audit.dir)
        .arg("--key")
        .arg(&audit.key)
        .arg("--origin")
        .arg(&audit.origin)
        .arg("--segment-bytes")
        .arg(audit.segment_max_bytes.to_string())
        .output()
        .map_err(|e| format!("running {} --open-only: {e}", o.me.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the store open failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
            .ok_or_else(|| format!("--open-only printed no {name}: {text}"))
    };
    Ok(OpenFigures {
        elapsed: Duration::from_micros(field("elapsed_us")?),
        rss_kib: field("rss_kib")?,
        hwm_kib: field("hwm_kib")?,
    })
}

/// The `--open-only` child: opens the log as the daemon does and prints what it took.
pub fn open_only_child(
    dir: &Path,
    key: &Path,
    origin: &str,
    segment_bytes: u64,
) -> Result<String, String> {
    let signer = load_audit_key(key, origin).map_err(|e| e.to_string())?;
    let mut cfg = AuditConfig::new(dir);
    cfg.segment_max_bytes = segment_bytes;
    let started = Instant::now();
    let log = AuditLog::open(cfg, signer).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let (rss, hwm) = memory(std::process::id()).ok_or("cannot read /proc/self/status")?;
    let size = log.size();
    log.shutdown_blocking();
    Ok(format!(
        "events={size} elapsed_us={} rss_kib={rss} hwm_kib={hwm}\n",
        elapsed.as_micros()
    ))
}

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Starts the daemon, measures until its first certificate, and stops it gracefully;
/// `which` names the start (its log is `daemon-<which>.log`).
fn serve(
    o: &Options,
    setup: &Path,
    config: &Path,
    addr: SocketAddr,
    metrics: SocketAddr,
    which: &str,
) -> Result<DaemonFigures, String> {
    let log_path = setup.join(format!("daemon-{which}.log"));
    let out = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = match o.memory_cap {
        Some(cap) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={cap}")).arg("--").arg(&o.daemon);
            c
        }
        None => Command::new(&o.daemon),
    };
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", o.daemon.display()))?;
    let mut daemon = crate::child::Daemon::adopt(child);
    let pid = daemon.pid();
    let daemon_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    loop {
        if readyz(metrics) {
            break;
        }
        if let Some(status) = daemon.exited() {
            let log = daemon_log();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!(
                "the daemon exited ({status}) after {:.1} s before serving{}: {}",
                started.elapsed().as_secs_f64(),
                o.memory_cap
                    .map(|c| format!(" (address space capped at {} MiB)", c >> 20))
                    .unwrap_or_default(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        if started.elapsed() > o.timeout {
            return Err(format!("the daemon did not serve within {:?}", o.timeout));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready = started.elapsed();
    let (rss_ready_kib, hwm_ready_kib) = memory(pid).unwrap_or_default();
    let target = Target::Tls {
        url: format!("https://{addr}"),
        fallbacks: Vec::new(),
        ca_cert: setup.join("tls/ca.pem"),
        cert: setup.join("clients/sre.pem"),
        key: setup.join("clients/sre-key.pem"),
        server_name: Some("localhost".into()),
    };
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .and_then(|k| k.public_key().to_openssh())
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(issue(&target, &key, Duration::from_secs(30)))
        .map_err(|e| format!("the first certificate: {e}"))?;
    let first_certificate = started.elapsed();
    let (rss_after_kib, _) = memory(pid).unwrap_or_default();
    // Closes the client's connection: an idle connection that nobody answers for would hold
    // the daemon's graceful stop for its whole shutdown grace.
    drop(rt);
    let stopping = Instant::now();
    daemon.stop();
    let stop = stopping.elapsed();
    let log = daemon_log();
    let field = |marker: &str, name: &str| {
        log_fields(&log, marker)?
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let elapsed_ms = |marker: &str| field(marker, "elapsed_ms");
    let loaded = "state loaded: snapshot and the audit log after it";
    Ok(DaemonFigures {
        snapshot: field(loaded, "snapshot"),
        replayed: field(loaded, "replayed"),
        stop,
        snapshot_written: field("state snapshot written", "size"),
        ready,
        first_certificate,
        rss_ready_kib,
        hwm_ready_kib,
        rss_after_kib,
        log_open_ms: elapsed_ms("audit log opened"),
        state_ms: elapsed_ms("state loaded: snapshot and the audit log after it"),
    })
}

/// Whether `GET /readyz` answers 200.
fn readyz(metrics: SocketAddr) -> bool {
    http_get(metrics, "/readyz", Duration::from_secs(2)).is_some()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn report(o: &Options, runs: &[Run]) -> String {
    let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "daemon: {}{}\nlog: generated by the log engine (batches of {GENERATE_BATCH}); one access = \
         request_created + grant_issued + session_opened + session_closed, spread over a year, \
         15 min - 2 h certificates (all but the last few expired)\n\n",
        o.daemon.display(),
        o.memory_cap
            .map(|c| format!(" (address space capped at {} MiB)", c >> 20))
            .unwrap_or_default()
    );
    for r in runs {
        out.push_str(&format!(
            "{} events: generated in {:.1} s ({:.0} events/s); segments {:.0} MiB, index {:.0} MiB\n",
            r.events,
            r.generate.as_secs_f64(),
            r.events as f64 / r.generate.as_secs_f64().max(1e-9),
            r.segment_bytes as f64 / 1048576.0,
            r.index_bytes as f64 / 1048576.0,
        ));
        if let Some(f) = r.open {
            out.push_str(&format!(
                "  store open (audit log alone, index present): {}, RSS {} (peak {})\n",
                ms(f.elapsed),
                mib(f.rss_kib),
                mib(f.hwm_kib)
            ));
        }
        if let Some(f) = r.rebuild {
            out.push_str(&format!(
                "  store open, index removed (rebuilt from every segment): {}, RSS {} (peak {})\n",
                ms(f.elapsed),
                mib(f.rss_kib),
                mib(f.hwm_kib)
            ));
        }
        let starts = [
            ("first start", Some(&r.daemon)),
            ("second start", r.second.as_ref()),
        ];
        for (which, figures) in starts {
            match figures {
                Some(Ok(d)) => out.push_str(&daemon_lines(which, d)),
                Some(Err(e)) => out.push_str(&format!("  daemon, {which}: {e}\n")),
                None => {}
            }
        }
    }
    out
}

/// What one start of the daemon took, for the report.
fn daemon_lines(which: &str, d: &DaemonFigures) -> String {
    let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let part = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v} ms"));
    let from = match (d.snapshot, d.replayed) {
        (Some(s), Some(n)) => format!("from the snapshot at {s} events, {n} events replayed"),
        (None, Some(n)) => format!("no snapshot, all {n} events replayed"),
        _ => "state load not in its log".to_owned(),
    };
    format!(
        "  daemon, {which}: serving (/readyz 200) after {}, first certificate after {}; RSS at \
         serving {} (peak {}), after the first certificate {}\n    \
         daemon's own log: audit log opened in {}, state loaded in {} ({from})\n    \
         graceful stop (SIGTERM) took {}: {}\n",
        ms(d.ready),
        ms(d.first_certificate),
        mib(d.rss_ready_kib),
        mib(d.hwm_ready_kib),
        mib(d.rss_after_kib),
        part(d.log_open_ms),
        part(d.state_ms),
        ms(d.stop),
        d.snapshot_written.map_or_else(
            || "NO state snapshot written".to_owned(),
            |n| format!("state snapshot written at {n} events")
        ),
    )
}
