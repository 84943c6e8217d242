//! `cargo run --locked --release -p xtask -- man OUTDIR`: write the man pages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// breakglass developer tasks.
#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
enum Task {
    /// Write the man pages (uncompressed roff, *.1 and *.8) into OUTDIR
    Man {
        /// Directory to write into (created if missing; stale breakglass pages in it are
        /// removed)
        #[arg(value_name = "OUTDIR")]
        outdir: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().task {
        Task::Man { outdir } => match xtask::man::write_all(&outdir) {
            Ok(paths) => {
                for p in paths {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "xtask: cannot write the man pages into {}: {e}",
                    outdir.display()
                );
                ExitCode::FAILURE
            }
        },
    }
}
