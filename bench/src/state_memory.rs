//! `state-bench`: the daemon's memory while it issues many certificates (an in-process
//! daemon on an `init --dev` setup, over loopback mTLS): RSS, and the requests, grants and
//! serials its state holds, every so many certificates. With a TTL shorter than the run,
//! what expired leaves memory (the state holds the live grants, not the history); with a
//! TTL longer than the run, everything is still live: the two runs side by side show what
//! eviction saves.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use breakglass_ca::config::Config;
use breakglass_ca::init;
use breakglass_ca::server::Daemon;
use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::RequestCertificateRequest;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Certificates to issue.
    pub count: usize,
    /// Their lifetime.
    pub ttl: Duration,
    /// Concurrent callers.
    pub concurrency: usize,
    /// A line every this many certificates.
    pub every: usize,
}

/// Resident set size of this process, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the benchmark; prints a line every `every` certificates; returns the summary.
pub async fn run(o: &Options) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let setup = init::init_dev(dir.path(), "127.0.0.1:0".parse().map_err(|_| "addr")?)
        .map_err(|e| e.to_string())?;
    let mut config = Config::load(&setup.config).map_err(|e| e.to_string())?;
    config.server.admin_socket = None;
    let daemon = Daemon::build(config).map_err(|e| e.to_string())?;
    let svc = daemon.service().clone();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon.run(tcp, None, async move {
        let _ = stop_rx.await;
    }));
    let target = Target::Tls {
        url: format!("https://127.0.0.1:{port}"),
        fallbacks: Vec::new(),
        ca_cert: dir.path().join("tls/ca.pem"),
        cert: dir.path().join("clients/sre.pem"),
        key: dir.path().join("clients/sre-key.pem"),
        server_name: Some("localhost".into()),
    };
    let client = connect::client(&target).map_err(|e| e.to_string())?;
    // A pool of user keys, reused: the daemon keeps nothing per key.
    let keys: Arc<Vec<String>> = Arc::new(
        (0..1000)
            .map(|_| {
                PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                    .and_then(|k| k.public_key().to_openssh())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?,
    );
    let ttl = i64::try_from(o.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
    let issued = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..o.concurrency.max(1) {
        let (mut client, keys, next, issued) =
            (client.clone(), keys.clone(), next.clone(), issued.clone());
        let count = o.count;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(());
                }
                client
                    .request_certificate(RequestCertificateRequest {
                        public_key: keys[i % keys.len()].clone(),
                        principals: vec!["bgbench".into()],
                        hosts: vec!["localhost".into()],
                        ttl_seconds: ttl,
                        reason: "benchmark".into(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| format!("request failed: {s}"))?;
                issued.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let rss0 = rss_kib();
    let mut out = format!(
        "state-bench: {} certificates of {}s, concurrency {}\n{:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}\n",
        o.count,
        ttl,
        o.concurrency,
        "issued",
        "secs",
        "certs/s",
        "RSS MiB",
        "grants",
        "requests",
        "serials"
    );
    print!("{out}");
    let mut mark = 0;
    let mut last = (Instant::now(), 0usize);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = issued.load(Ordering::Relaxed);
        let done = n >= o.count;
        if n >= mark + o.every.max(1) || done {
            mark = n - n % o.every.max(1);
            let (grants, requests, serials) = {
                let st = svc.state();
                (st.grants.len(), st.requests_held(), st.serials.len())
            };
            let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), n);
            let line = format!(
                "{n:>9} {:>8.0} {rate:>8.0} {:>9.1} {grants:>9} {requests:>9} {serials:>9}\n",
                start.elapsed().as_secs_f64(),
                rss_kib() as f64 / 1024.0,
            );
            print!("{line}");
            out.push_str(&line);
        }
        if done {
            break;
        }
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let _ = writeln!(
        out,
        "RSS {:.1} MiB at start, {:.1} MiB at the end ({:+.2} KiB per certificate)",
        rss0 as f64 / 1024.0,
        rss_kib() as f64 / 1024.0,
        (rss_kib() as f64 - rss0 as f64) / o.count.max(1) as f64
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(out)
}
