//! The audit log benchmark: group-commit throughput and latency at several concurrency
//! levels next to the raw `write + fdatasync` rate of the same disk, and the time to recover,
//! replay and verify a large log. Run by the `audit-bench` binary.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use breakglass_proto::audit::ed25519_dalek::SigningKey;
use breakglass_proto::audit::event::{SessionOpened, SessionRef};
use breakglass_proto::audit::verify::verify_dir;
use breakglass_proto::audit::{Actor, Event, EventKind, NoteSigner, Timestamp};
use breakglass_proto::profile::GrantId;
use ssh_key::rand_core::{OsRng, RngCore};

use breakglass_ca::audit::{AuditConfig, AuditError, AuditLog};

use crate::percentile;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Scratch directory on the disk to measure (subdirectories are created and removed).
    pub dir: PathBuf,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Concurrent writers to measure at.
    pub writers: Vec<usize>,
    /// Size of the log to recover, replay and verify (0 to skip).
    pub replay_events: u64,
    /// Tokio worker threads for the writers.
    pub worker_threads: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            dir: std::env::temp_dir(),
            seconds: 3.0,
            writers: vec![1, 64, 256],
            replay_events: 1_000_000,
            worker_threads: 2,
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |e| AuditError::io(path, e)
}

/// A realistic event: a host session opened (about 200 bytes encoded).
fn sample_event(writer: usize, seq: u64) -> Event {
    Event::new(
        Timestamp(1_764_000_000_000 + seq),
        Actor::Host(format!("db-{writer}.prod.example.com")),
        EventKind::SessionOpened(SessionOpened {
            session: SessionRef {
                record_id: format!("db-{writer}/{seq:016x}"),
                host: format!("db-{writer}.prod.example.com"),
                grant_id: GrantId(seq ^ 0x5a5a_5a5a),
                serial: seq,
                principal: "postgres".into(),
                session_id: format!("sshd:{}", 10_000 + seq % 50_000),
            },
            remote_addr: "10.20.30.40:51234".into(),
        }),
    )
}

fn random_seed() -> Result<[u8; 32], AuditError> {
    let mut seed = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| AuditError::Key(e.to_string()))?;
    Ok(seed)
}

fn signer_from(seed: &[u8; 32]) -> Result<NoteSigner, AuditError> {
    NoteSigner::new("bench.local/audit/v1", SigningKey::from_bytes(seed))
        .map_err(|e| AuditError::Key(e.to_string()))
}

fn bench_signer() -> Result<NoteSigner, AuditError> {
    signer_from(&random_seed()?)
}

/// One line of raw-disk results.
struct Raw {
    commits: u64,
    secs: f64,
    p50: u32,
    p99: u32,
}

fn raw_fdatasync(dir: &Path, seconds: f64) -> Result<Raw, AuditError> {
    let path = dir.join("raw-fdatasync.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let record = [0xa5u8; 256];
    let mut lat = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        let t = Instant::now();
        f.write_all(&record).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    lat.sort_unstable();
    Ok(Raw {
        commits: lat.len() as u64,
        secs,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    })
}

/// Result of one concurrency level.
struct Level {
    writers: usize,
    events: u64,
    secs: f64,
    batches: u64,
    p50: u32,
    p99: u32,
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, AuditError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| AuditError::io("tokio runtime", e))
}

/// Appends from `writers` tasks until `deadline` or until `limit` events in total.
fn drive(
    rt: &tokio::runtime::Runtime,
    log: &AuditLog,
    writers: usize,
    run_for: Duration,
    limit: u64,
) -> Result<(u64, f64, Vec<u32>), AuditError> {
    rt.block_on(async {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let deadline = start + run_for;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let log = log.clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let seq = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seq >= limit || Instant::now() >= deadline {
                        break;
                    }
                    let ev = sample_event(w, seq);
                    let t = Instant::now();
                    log.append(&ev).await?;
                    lat.push(t.elapsed().as_micros() as u32);
                }
                Ok::<_, AuditError>(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let lat = t
                .await
                .map_err(|e| AuditError::Unavailable(format!("writer task failed: {e}")))??;
            all.extend(lat);
        }
        let secs = start.elapsed().as_secs_f64();
        all.sort_unstable();
        Ok((all.len() as u64, secs, all))
    })
}

fn level(opts: &BenchOptions, writers: usize) -> Result<Level, AuditError> {
    let dir = opts.dir.join(format!("audit-bench-{writers}"));
    let _ = std::fs::remove_dir_all(&dir);
    let log = AuditLog::open(AuditConfig::new(&dir), bench_signer()?)?;
    let rt = runtime(opts.worker_threads)?;
    let (events, secs, lat) = drive(
        &rt,
        &log,
        writers,
        Duration::from_secs_f64(opts.seconds),
        u64::MAX,
    )?;
    let batches = log.batches();
    log.shutdown_blocking();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Level {
        writers,
        events,
        secs,
        batches,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    })
}

/// Runs the benchmark and returns the printable report.
pub fn run(opts: &BenchOptions) -> Result<String, AuditError> {
    std::fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "audit log benchmark in {} ({} s per line, {} tokio workers, {} CPUs)",
        opts.dir.display(),
        opts.seconds,
        opts.worker_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let raw = raw_fdatasync(&opts.dir, opts.seconds)?;
    let _ = writeln!(
        out,
        "raw write(256 B) + fdatasync:  {:>9.0} commits/s   p50 {:>6} us   p99 {:>6} us",
        raw.commits as f64 / raw.secs,
        raw.p50,
        raw.p99
    );
    for &w in &opts.writers {
        let l = level(opts, w)?;
        let _ = writeln!(
            out,
            "group commit, {:>4} writers:   {:>9.0} events/s    p50 {:>6} us   p99 {:>6} us   \
             ({:.0} fdatasync/s, {:.1} events per batch)",
            l.writers,
            l.events as f64 / l.secs,
            l.p50,
            l.p99,
            l.batches as f64 / l.secs,
            l.events as f64 / l.batches.max(1) as f64
        );
    }
    if opts.replay_events > 0 {
        replay_bench(opts, &mut out)?;
    }
    Ok(out)
}

fn replay_bench(opts: &BenchOptions, out: &mut String) -> Result<(), AuditError> {
    let n = opts.replay_events;
    let dir = opts.dir.join("audit-bench-replay");
    let _ = std::fs::remove_dir_all(&dir);
    let seed = random_seed()?;
    let signer = signer_from(&seed)?;
    let verifier = signer.verifier();
    let log = AuditLog::open(AuditConfig::new(&dir), signer)?;
    let rt = runtime(opts.worker_threads)?;
    let (events, fill_secs, _) = drive(&rt, &log, 256, Duration::from_secs(3600), n)?;
    let batches = log.batches();
    log.shutdown_blocking();
    drop(log);
    drop(rt);
    let bytes: u64 = std::fs::read_dir(dir.join("segments"))
        .map_err(io(&dir))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let _ = writeln!(
        out,
        "log of {events} events written in {fill_secs:.2} s ({batches} checkpoints, {:.0} MB)",
        bytes as f64 / 1e6
    );

    // Daemon start-up: open (scan, CRC, recompute every checkpoint root, verify each segment's
    // last signature, rebuild the tree) and replay every event decoded.
    let t = Instant::now();
    let log = AuditLog::open(AuditConfig::new(&dir), signer_from(&seed)?)?;
    let opened = t.elapsed().as_secs_f64();
    let mut replayed = 0u64;
    for r in log.replay() {
        let (_, ev) = r?;
        std::hint::black_box(&ev);
        replayed += 1;
    }
    let total = t.elapsed().as_secs_f64();
    log.shutdown_blocking();
    drop(log);
    let _ = writeln!(
        out,
        "start-up recover + replay of {replayed} events: {total:.2} s (open {opened:.2} s, replay {:.2} s)",
        total - opened
    );

    // Auditor: offline verification with every checkpoint signature and every event decoded.
    let t = Instant::now();
    let report = verify_dir(&dir, &verifier, None)?;
    let _ = writeln!(
        out,
        "offline verify (every signature, every event decoded) of {} events: {:.2} s",
        report.summary.size,
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
