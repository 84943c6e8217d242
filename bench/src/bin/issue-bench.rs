//! `issue-bench`: certificate issuance by a `breakglass-ca` child process over loopback
//! mTLS gRPC with its durable audit log, next to the raw build+sign limit (the daemon's
//! signing code on two threads in this process) and `ssh-keygen -s` baselines, in one
//! run: rate, p50/p99, the daemon's CPU per certificate and the percentage of the limit.
//! With `--soak DURATION`, a steady open-loop rate instead, reported every `--every`.
//!
//! Build with `cargo build --release -p breakglass-ca -p breakglass-bench` (the daemon and
//! this binary, side by side); needs `ssh-keygen` (openssh-client).
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_bench::issuance::{Options, Soak, run, soak};
use clap::Parser;

/// Measure certificate issuance over loopback mTLS against the machine's signing limit.
#[derive(Parser, Debug)]
#[command(name = "issue-bench", version)]
struct Args {
    /// The breakglass-ca binary to measure [default: breakglass-ca beside this binary]
    #[arg(long, value_name = "FILE")]
    daemon: Option<PathBuf>,
    /// Certificates per series
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Concurrent callers, comma-separated
    #[arg(long, default_value = "1,64", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// How long the raw build+sign limit is measured
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    limit_for: humantime::Duration,
    /// Certificates signed by the one-process-per-certificate ssh-keygen baseline
    #[arg(long, default_value_t = 300)]
    per_process: usize,
    /// Client connections the concurrent callers share (round robin); a series on more than
    /// one is labelled c=CALLERS/CONNECTIONS
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Run a soak of this length instead: a steady open-loop --rate, one report line per
    /// --every (achieved rate, p50/p99, the daemon's RSS and CPU)
    #[arg(long, value_name = "DURATION")]
    soak: Option<humantime::Duration>,
    /// Soak: requests per second
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Soak: lifetime of each certificate
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    ttl: humantime::Duration,
    /// Soak: interval between report lines
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    every: humantime::Duration,
    /// Soak: most requests in flight (a request due beyond it is not sent, and counted)
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Soak: the daemon's `[audit] snapshot_every_seconds` (default: the daemon's, 300 s);
    /// the state snapshots it wrote are listed after the run
    #[arg(long, value_name = "DURATION")]
    snapshot_every: Option<humantime::Duration>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let daemon = match breakglass_bench::daemon_path(a.daemon, "issue-bench") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("issue-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match a.soak {
        Some(duration) => {
            let s = Soak {
                daemon,
                duration: duration.into(),
                rate: a.rate,
                ttl: a.ttl.into(),
                every: a.every.into(),
                max_in_flight: a.max_in_flight.max(1),
                snapshot_every: a.snapshot_every.map(Into::into),
            };
            let mut out = std::io::stdout();
            rt.block_on(soak(&s, &mut |line| {
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            }))
        }
        None => {
            let o = Options {
                daemon,
                count: a.count,
                concurrency: a.concurrency,
                limit_for: a.limit_for.into(),
                per_process: a.per_process,
                connections: a.connections,
            };
            rt.block_on(run(&o)).map(|report| print!("{report}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("issue-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
