//! `pg-bench`: certificate issuance on the PostgreSQL audit backend (1 and 3 daemons on
//! one database) beside the embedded log in the same run, over loopback mTLS against
//! `breakglass-ca serve` child processes, and the time a requester waiting on daemon A
//! takes to see an approval given on daemon B. Prints the figures next to the goals of
//! issue 14 (PostgreSQL ≥ 50 % of the embedded rate; an approval visible across daemons
//! in < 1 s).
//!
//! Build with `cargo build --release -p breakglass-ca -p breakglass-bench`; run as root
//! with the PostgreSQL server packages installed (scripts/install-deps): it starts a
//! throw-away cluster with `initdb` as the `postgres` user and removes it at the end.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_bench::pg::{Options, run};
use breakglass_test_support::{machine, postgres};
use clap::Parser;

/// Measure issuance on PostgreSQL (1 and 3 daemons) beside the embedded audit log, and
/// the cross-daemon approval latency.
#[derive(Parser, Debug)]
#[command(name = "pg-bench", version)]
struct Args {
    /// The breakglass-ca binary to measure [default: breakglass-ca beside this binary]
    #[arg(long, value_name = "FILE")]
    daemon: Option<PathBuf>,
    /// Certificates per issuance series
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Concurrent requesters in each issuance series
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests approved on daemon B while their requester waits on daemon A
    #[arg(long, default_value_t = 50)]
    approvals: usize,
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
    if !machine::is_root() {
        eprintln!(
            "pg-bench: needs root (it runs a throw-away PostgreSQL cluster as the postgres user)"
        );
        return ExitCode::from(2);
    }
    if postgres::bin_dir().is_none()
        || !postgres::PgCluster::available("pg-bench: a throw-away PostgreSQL cluster")
    {
        eprintln!(
            "pg-bench: PostgreSQL is missing: no initdb under /usr/lib/postgresql/*/bin nor from \
             pg_config, or no postgres user; install the server packages (scripts/install-deps)"
        );
        return ExitCode::from(2);
    }
    let daemon = match breakglass_bench::daemon_path(a.daemon, "pg-bench") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pg-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = Options {
        daemon,
        count: a.count,
        concurrency: a.concurrency,
        approvals: a.approvals,
    };
    match rt.block_on(run(&o)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pg-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
