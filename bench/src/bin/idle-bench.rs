//! `idle-bench`: a real client's certificate issuance latency (p50/p99/max of N
//! issuances, each on a new mTLS connection) against a `breakglass-ca` child process
//! with a given file descriptor limit, with 0 and with K idle TCP connections held
//! open from other loopback addresses.
//!
//! Build with `cargo build --release -p breakglass-ca -p breakglass-bench` (the daemon and
//! this binary, side by side); needs `prlimit` (util-linux) unless `--fd-limit 0`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_bench::idle::{Options, run};
use clap::Parser;

/// Measure a real client's issuance latency while idle connections are held open.
#[derive(Parser, Debug)]
#[command(name = "idle-bench", version)]
struct Args {
    /// The breakglass-ca binary to measure [default: breakglass-ca beside this binary]
    #[arg(long, value_name = "FILE")]
    daemon: Option<PathBuf>,
    /// Issuances per series.
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Idle connections held open during each series (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 1100])]
    idle: Vec<usize>,
    /// Loopback addresses the idle connections come from (127.0.0.2 onwards).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=250))]
    sources: u8,
    /// The daemon's RLIMIT_NOFILE, soft and hard (0: inherit this process's).
    #[arg(long, default_value_t = 1024)]
    fd_limit: u64,
    /// Reopen each idle connection the daemon closes after this pause (e.g. 10ms).
    #[arg(long, value_name = "DURATION")]
    reopen: Option<humantime::Duration>,
    /// Longest one issuance may take before it counts as failed.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    timeout: humantime::Duration,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let daemon = match breakglass_bench::daemon_path(a.daemon, "idle-bench") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // This process holds the idle connections: take all the descriptors allowed.
    if let Err(e) = breakglass_ca::accept::raise_fd_limit() {
        eprintln!("idle-bench: {e}");
    }
    let opts = Options {
        daemon,
        count: a.count,
        idle: a.idle,
        sources: a.sources,
        fd_limit: (a.fd_limit > 0).then_some(a.fd_limit),
        reopen: a.reopen.map(Into::into),
        timeout: a.timeout.into(),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("idle-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&opts)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("idle-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
