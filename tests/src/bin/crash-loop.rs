//! `crash-loop`: kills a real `breakglass-ca` under concurrent issuance with SIGKILL at
//! random moments and restarts it; after each kill every certificate a client received
//! must have its grant in the log, and the log must verify. Run it with
//! `scripts/crash-loop --cycles N`; see RELIABILITY.md.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use breakglass_tests::crash_loop::{Options, run};
use clap::Parser;

/// Kill breakglass-ca with SIGKILL under load, restart it, and check that nothing
/// acknowledged was lost.
///
/// Exit status: 0 when every received certificate had its grant in the log and the log
/// verified after every kill; 1 when not; 2 when the loop could not run.
#[derive(Parser, Debug)]
#[command(name = "crash-loop", version)]
struct Args {
    /// Kill-and-restart cycles
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cycles: u32,
    /// Concurrent mTLS clients requesting certificates
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1000))]
    clients: u64,
    /// Shortest time the load runs before the SIGKILL
    #[arg(long, default_value = "100ms", value_name = "DURATION")]
    min_run: humantime::Duration,
    /// Longest time the load runs before the SIGKILL (the moment is uniform in between)
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    max_run: humantime::Duration,
    /// The breakglass-ca binary [default: breakglass-ca beside this binary]
    #[arg(long, value_name = "FILE")]
    daemon: Option<PathBuf>,
    /// Directory for the temporary setup (the audit log grows by about 1 MB per 1,000
    /// certificates) [default: $TMPDIR or /tmp]
    #[arg(long, value_name = "DIR")]
    tmp: Option<PathBuf>,
    /// Keep the setup (audit log, keys, daemon.log) instead of removing it
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    let daemon = match a.daemon {
        Some(d) => d,
        None => match std::env::current_exe() {
            Ok(me) => me.with_file_name("breakglass-ca"),
            Err(e) => {
                eprintln!(
                    "crash-loop: cannot find breakglass-ca beside this binary ({e}); give --daemon"
                );
                return ExitCode::from(2);
            }
        },
    };
    if !daemon.is_file() {
        eprintln!(
            "crash-loop: {} does not exist: build it (cargo build --release -p breakglass-ca) or give --daemon",
            daemon.display()
        );
        return ExitCode::from(2);
    }
    let opts = Options {
        daemon,
        cycles: a.cycles,
        clients: a.clients as usize,
        min_run: a.min_run.into(),
        max_run: a.max_run.into(),
        tmp: a.tmp,
        keep: a.keep,
    };
    let mut stdout = std::io::stdout();
    // On SIGINT/SIGTERM the loop is dropped: that kills the daemon and removes the setup.
    let result = tokio::select! {
        r = run(&opts, &mut stdout) => r,
        s = interrupted() => {
            let setup = if opts.keep { "kept" } else { "removed" };
            eprintln!("crash-loop: {s}: stopped; the daemon was killed and its setup {setup}");
            return ExitCode::from(130);
        }
    };
    match result {
        Ok(o) if o.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("crash-loop: {e}");
            ExitCode::from(2)
        }
    }
}

/// Completes on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) applies; nothing to wait for here.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
