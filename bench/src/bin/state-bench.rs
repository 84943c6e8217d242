//! `state-bench`: the daemon's RSS and the size of its state while it issues many
//! certificates (an in-process daemon on an `init --dev` setup, over loopback mTLS).
//!
//! `state-bench --count 200000 --ttl 60s` against `--ttl 30m`: short-lived certificates
//! leave memory after they expire; long-lived ones are all still live.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use breakglass_bench::state_memory::{Options, run};
use clap::Parser;

/// Measure the daemon's memory while it issues many certificates.
#[derive(Parser, Debug)]
#[command(name = "state-bench", version)]
struct Args {
    /// Certificates to issue
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    /// Their lifetime (at most the dev tier's 30m)
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Concurrent callers
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Print a line every this many certificates
    #[arg(long, default_value_t = 20_000)]
    every: usize,
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
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("state-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = Options {
        count: a.count,
        ttl: a.ttl,
        concurrency: a.concurrency,
        every: a.every,
    };
    match rt.block_on(run(&o)) {
        Ok(summary) => {
            print!(
                "{}",
                summary
                    .lines()
                    .last()
                    .map(|l| format!("{l}\n"))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("state-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
