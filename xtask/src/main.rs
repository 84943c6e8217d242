//! `cargo run --locked --release -p xtask -- man OUTDIR`: write the man pages.
//! `cargo run --locked -p xtask -- fuzz-seeds OUTDIR --ca-key … --audit-key …`: seed
//! corpora for the fuzz targets (run by `fuzz/make-seeds`).

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
    /// Write seed corpora for the fuzz targets into OUTDIR/<target>/, made by a dev daemon
    /// driven in-process through every RPC (run by fuzz/make-seeds)
    FuzzSeeds {
        /// Directory to write into (one subdirectory per fuzz target)
        #[arg(value_name = "OUTDIR")]
        outdir: PathBuf,
        /// The fuzz-only SSH CA private key (fuzz/fixtures/fuzz-ca)
        #[arg(long, value_name = "FILE")]
        ca_key: PathBuf,
        /// The fuzz-only audit log key (fuzz/fixtures/audit-key.pem)
        #[arg(long, value_name = "FILE")]
        audit_key: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().task {
        Task::FuzzSeeds {
            outdir,
            ca_key,
            audit_key,
        } => match xtask::seeds::write(&outdir, &xtask::seeds::SeedKeys { ca_key, audit_key }) {
            Ok(counts) => {
                for (target, n) in counts {
                    println!("{target}: {n} seeds");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "xtask: cannot write the fuzz seeds into {}: {e}",
                    outdir.display()
                );
                ExitCode::FAILURE
            }
        },
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
