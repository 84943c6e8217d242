//! `fanout-bench`: N simulated hosts each hold a `WatchRevocations` stream over mTLS
//! against a `breakglass-ca` child process, fetching the KRL and witnessing the log on it
//! at each revocation as `watch-revocations --krl` does (plus `sync-krl` and `ship` calls
//! from a few of them); a grant is revoked a few times and the fan-out latency to all N is printed
//! (p50/p99/max), with the daemon's RSS and descriptors per stream and the connect time.
//!
//! Build with `cargo build --release -p breakglass-ca -p breakglass-bench` (the daemon and
//! this binary, side by side); needs `prlimit` (util-linux) unless `--fd-limit 0`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_bench::fanout::{OnNotice, Options, run};
use clap::Parser;

/// Measure how fast a revocation reaches N hosts that watch the revocation stream.
#[derive(Parser, Debug)]
#[command(name = "fanout-bench", version)]
struct Args {
    /// The breakglass-ca binary to measure [default: breakglass-ca beside this binary]
    #[arg(long, value_name = "FILE")]
    daemon: Option<PathBuf>,
    /// Simulated hosts, each holding one revocation stream on its own mTLS connection.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// Revocations to time, one after the other.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Loopback addresses the hosts connect from (127.0.0.2 onwards).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(1..=250))]
    sources: u8,
    /// Streams being opened at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// The daemon's RLIMIT_NOFILE, soft and hard (0: inherit this process's).
    #[arg(long, default_value_t = 65536)]
    fd_limit: u64,
    /// `host sync-krl` calls (GetRevocationList on a new connection) per second.
    #[arg(long, default_value_t = 20.0)]
    krl_rate: f64,
    /// `host ship` calls (AppendHostRecords on a new connection) per second.
    #[arg(long, default_value_t = 10.0)]
    ship_rate: f64,
    /// Records per ship call.
    #[arg(long, default_value_t = 3)]
    ship_records: usize,
    /// Longest wait for every stream to deliver one revocation.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    wait: humantime::Duration,
    /// Pause before each revocation (the side calls go on meanwhile).
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pause: humantime::Duration,
    /// What each host does at each connect of its stream and each revocation notice,
    /// beside ending sessions: fetch the KRL and witness the log on the stream's own
    /// connection (the packaged `watch-revocations --krl`), the same on new connections
    /// (the watcher before it shared its connection), or nothing (without `--krl`).
    #[arg(long, value_enum, default_value_t = OnNotice::StreamConnection)]
    on_notice: OnNotice,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let daemon = match breakglass_bench::daemon_path(a.daemon, "fanout-bench") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // This process holds a connection per host and more: take all the descriptors allowed.
    match breakglass_ca::accept::raise_fd_limit() {
        Ok(l) if (l.soft as usize) < a.hosts + 1024 => eprintln!(
            "fanout-bench: the descriptor limit {} is too low for {} hosts; raise it (ulimit -Hn)",
            l.soft, a.hosts
        ),
        Ok(_) => {}
        Err(e) => eprintln!("fanout-bench: {e}"),
    }
    let opts = Options {
        daemon,
        hosts: a.hosts,
        rounds: a.rounds,
        sources: a.sources,
        connect_concurrency: a.connect_concurrency,
        fd_limit: (a.fd_limit > 0).then_some(a.fd_limit),
        krl_rate: a.krl_rate,
        ship_rate: a.ship_rate,
        ship_records: a.ship_records,
        wait: a.wait.into(),
        pause: a.pause.into(),
        on_notice: a.on_notice,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fanout-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&opts)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fanout-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
