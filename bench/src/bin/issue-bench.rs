//! `issue-bench`: certificate issuance over loopback mTLS gRPC at several concurrencies
//! (an in-process daemon on an `init --dev` setup) next to `ssh-keygen -s` signing the
//! same keys with the same CA key in the same run.
//!
//! Build with `--release`; needs `ssh-keygen` (openssh-client).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use breakglass_bench::issuance::run;
use clap::Parser;

/// Measure certificate issuance over loopback mTLS against ssh-keygen -s.
#[derive(Parser, Debug)]
#[command(name = "issue-bench", version)]
struct Args {
    /// Certificates per series
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Concurrent callers, comma-separated
    #[arg(long, default_value = "1,64", value_delimiter = ',')]
    concurrency: Vec<usize>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    // The in-process daemon would log every certificate it issues.
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
            eprintln!("issue-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(a.count, &a.concurrency)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("issue-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
