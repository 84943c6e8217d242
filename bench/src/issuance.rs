//! `issue-bench`: certificate issuance over loopback mTLS gRPC at
//! several concurrencies, next to `ssh-keygen -s` signing the same number of
//! keys in the same run. The ratio is the figure that travels between machines.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::RequestCertificateRequest;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};

use breakglass_ca::config::Config;
use breakglass_ca::init;
use breakglass_ca::server::Daemon;

use crate::percentile;

/// One measured series.
#[derive(Debug, Clone)]
pub struct Series {
    /// What was measured.
    pub label: String,
    /// Certificates issued.
    pub count: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Median latency of one call (None for batch baselines).
    pub p50: Option<Duration>,
    /// 99th percentile latency.
    pub p99: Option<Duration>,
}

impl Series {
    /// Certificates per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs the benchmark and returns a printable report.
pub async fn run(count: usize, concurrencies: &[usize]) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let setup = init::init_dev(dir.path(), "127.0.0.1:0".parse().map_err(|_| "addr")?)
        .map_err(|e| e.to_string())?;
    let mut config = Config::load(&setup.config).map_err(|e| e.to_string())?;
    config.server.admin_socket = None;
    let daemon = Daemon::build(config).map_err(|e| e.to_string())?;
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
        ca_cert: dir.path().join("tls/ca.pem"),
        cert: dir.path().join("clients/sre.pem"),
        key: dir.path().join("clients/sre-key.pem"),
        server_name: Some("localhost".into()),
    };
    let client = connect::client(&target).map_err(|e| e.to_string())?;

    // The same user keys for every series and for ssh-keygen.
    let keys_dir = dir.path().join("keys");
    std::fs::create_dir(&keys_dir).map_err(|e| e.to_string())?;
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let k = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| e.to_string())?;
        let line = k.public_key().to_openssh().map_err(|e| e.to_string())?;
        std::fs::write(keys_dir.join(format!("k{i}.pub")), format!("{line}\n"))
            .map_err(|e| e.to_string())?;
        keys.push(line);
    }
    let keys = Arc::new(keys);
    let request = |key: String| RequestCertificateRequest {
        public_key: key,
        principals: vec!["bgbench".into()],
        hosts: vec!["localhost".into()],
        ttl_seconds: 600,
        reason: "benchmark".into(),
        ..Default::default()
    };

    // Warm up the connection and the code paths.
    for i in 0..count.min(50) {
        client
            .clone()
            .request_certificate(request(keys[i].clone()))
            .await
            .map_err(|s| format!("warm-up request failed: {s}"))?;
    }

    let mut series = Vec::new();
    for &c in concurrencies {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..c.max(1) {
            let (client, keys, next) = (client.clone(), keys.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut client = client;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= keys.len() {
                        return Ok::<_, String>(lat);
                    }
                    let t = Instant::now();
                    client
                        .request_certificate(RequestCertificateRequest {
                            public_key: keys[i].clone(),
                            principals: vec!["bgbench".into()],
                            hosts: vec!["localhost".into()],
                            ttl_seconds: 600,
                            reason: "benchmark".into(),
                            ..Default::default()
                        })
                        .await
                        .map_err(|s| format!("request failed: {s}"))?;
                    lat.push(t.elapsed());
                }
            }));
        }
        let mut lat = Vec::with_capacity(count);
        for t in tasks {
            lat.extend(t.await.map_err(|e| e.to_string())??);
        }
        let elapsed = start.elapsed();
        lat.sort();
        series.push(Series {
            label: format!("gRPC mTLS, concurrency {c}"),
            count,
            elapsed,
            p50: Some(percentile(&lat, 0.50)),
            p99: Some(percentile(&lat, 0.99)),
        });
    }
    let _ = stop_tx.send(());
    let _ = server.await;

    series.push(ssh_keygen_baseline(dir.path(), count)?);
    Ok(report(&series))
}

/// `ssh-keygen -s` signing all keys (one process per 500 keys), same CA key.
fn ssh_keygen_baseline(dir: &Path, count: usize) -> Result<Series, String> {
    let ca = dir.join("ssh_ca");
    let start = Instant::now();
    let mut i = 0;
    while i < count {
        let end = (i + 500).min(count);
        let out = std::process::Command::new("ssh-keygen")
            .arg("-q")
            .arg("-s")
            .arg(&ca)
            .args(["-I", "bench", "-n", "bgbench", "-V", "+10m"])
            .args((i..end).map(|k| dir.join(format!("keys/k{k}.pub"))))
            .output()
            .map_err(|e| format!("running ssh-keygen: {e} (install openssh-client)"))?;
        if !out.status.success() {
            return Err(format!(
                "ssh-keygen -s failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        i = end;
    }
    Ok(Series {
        label: "ssh-keygen -s (baseline)".into(),
        count,
        elapsed: start.elapsed(),
        p50: None,
        p99: None,
    })
}

fn report(series: &[Series]) -> String {
    let base = series.last().map(Series::rate).unwrap_or(1.0);
    let mut out = format!(
        "{:<34} {:>7} {:>10} {:>10} {:>10} {:>9}\n",
        "series", "certs", "certs/s", "p50", "p99", "x ssh-keygen"
    );
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    for s in series {
        out.push_str(&format!(
            "{:<34} {:>7} {:>10.0} {:>10} {:>10} {:>9.2}\n",
            s.label,
            s.count,
            s.rate(),
            ms(s.p50),
            ms(s.p99),
            s.rate() / base
        ));
    }
    out
}
