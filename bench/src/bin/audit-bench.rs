//! `audit-bench`: measures the audit log (group-commit throughput and latency, raw
//! `write + fdatasync` of the same disk, recovery + replay + verification of a large log).
//!
//! Build with `--release`; `--dir` must be on the disk the daemon's data directory uses.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_bench::audit::{BenchOptions, run};
use clap::Parser;

/// Benchmark the breakglass audit log on this machine's disk.
#[derive(Parser, Debug)]
#[command(name = "audit-bench", version)]
struct Args {
    /// Scratch directory on the disk to measure (subdirectories are created and removed).
    #[arg(long, default_value = "/var/tmp/breakglass-audit-bench")]
    dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent writers to measure at (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64, 256])]
    writers: Vec<usize>,
    /// Events in the log to recover, replay and verify (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    replay_events: u64,
    /// Tokio worker threads driving the writers.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let opts = BenchOptions {
        dir: a.dir,
        seconds: a.seconds,
        writers: a.writers,
        replay_events: a.replay_events,
        worker_threads: a.worker_threads,
    };
    match run(&opts) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
