//! `startup-bench`: the daemon's time to serving and its memory with a generated audit log
//! of 10 million events (and 289,000 for comparison): the store's open alone, and the real
//! `breakglass-ca serve` child up to `/readyz` and its first certificate.
//!
//! Build with `cargo build --release -p breakglass-ca -p breakglass-bench` (the daemon and
//! this binary, side by side). Needs about 350 bytes of disk per event under `--dir`
//! (3.5 GB for 10 million), removed at the end; `prlimit` (util-linux) for `--memory-cap`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_bench::startup::{Options, open_only_child, run};
use clap::Parser;

/// Measure the daemon's start-up (time to serving, RSS) with a long audit log history.
#[derive(Parser, Debug)]
#[command(name = "startup-bench", version)]
struct Args {
    /// The breakglass-ca binary to measure [default: breakglass-ca beside this binary]
    #[arg(long, value_name = "FILE")]
    daemon: Option<PathBuf>,
    /// Log sizes in events, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000_000u64, 289_000])]
    events: Vec<u64>,
    /// Scratch directory on the disk to measure (a temporary directory is made and removed
    /// in it).
    #[arg(long, default_value = "/var/tmp/breakglass-startup-bench")]
    dir: PathBuf,
    /// Also open the log with its index removed (every segment read again: the slow path).
    #[arg(long)]
    rebuild: bool,
    /// The daemon's address-space limit in MiB (prlimit --as; 0: none), so that a daemon
    /// that needs too much memory fails alone.
    #[arg(long, default_value_t = 8192, value_name = "MIB")]
    memory_cap: u64,
    /// Longest the daemon may take to serve.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    timeout: humantime::Duration,
    /// Internal: open the log in DIR alone and print the time and memory it took.
    #[arg(long, hide = true, value_name = "DIR", requires_all = ["key", "origin", "segment_bytes"])]
    open_only: Option<PathBuf>,
    #[arg(long, hide = true)]
    key: Option<PathBuf>,
    #[arg(long, hide = true)]
    origin: Option<String>,
    #[arg(long, hide = true)]
    segment_bytes: Option<u64>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let (Some(dir), Some(key), Some(origin), Some(bytes)) =
        (&a.open_only, &a.key, &a.origin, a.segment_bytes)
    {
        return match open_only_child(dir, key, origin, bytes) {
            Ok(line) => {
                print!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("startup-bench --open-only: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("startup-bench: cannot find this binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        daemon: a
            .daemon
            .unwrap_or_else(|| me.with_file_name("breakglass-ca")),
        me,
        events: a.events,
        dir: a.dir,
        rebuild: a.rebuild,
        memory_cap: (a.memory_cap > 0).then_some(a.memory_cap << 20),
        timeout: a.timeout.into(),
    };
    match run(&opts) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("startup-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
