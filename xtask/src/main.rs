//! `cargo run --locked --release -p xtask -- man OUTDIR`: write the man pages.
//! `cargo run --locked -p xtask -- fuzz-seeds OUTDIR --ca-key … --audit-key …`: seed
//! corpora for the fuzz targets (run by `fuzz/make-seeds`).
//! `cargo run --locked -p xtask -- check-cycles [TARGET...]`: no import cycles between the
//! modules of the workspace's crates (run by `scripts/test`).
//! `cargo run --locked -p xtask -- readme`: rewrite README.md's generated parts.
//! `cargo run --locked -p xtask -- deb-copyright PACKAGE OUT`: a Debian package's
//! DEP-5 copyright file, from the crates compiled in (run by `scripts/build-debs`).

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
    /// Check that no crate of the workspace has an import cycle between its modules; print
    /// each cycle with the paths that make it, and exit 1 if there is one
    CheckCycles {
        /// Check only these targets (`PACKAGE (TARGET)` as printed, a package name, or the
        /// path of a crate's root file); all library and binary targets when none is given
        #[arg(value_name = "TARGET")]
        only: Vec<String>,
        /// Leave out this package (its cycles are known and being removed); repeatable
        #[arg(long, value_name = "PACKAGE")]
        except: Vec<String>,
    },
    /// Rewrite the parts of README.md generated from the code (the exit-status table)
    Readme {
        /// The README to rewrite
        #[arg(value_name = "FILE", default_value = "README.md")]
        path: PathBuf,
    },
    /// Write the DEP-5 copyright file of a Debian package: one Files stanza per crate
    /// compiled into the cargo package PACKAGE (cargo tree -e normal), licence texts from
    /// packaging/deb/licenses
    DebCopyright {
        /// The cargo package the .deb is built from
        #[arg(value_name = "PACKAGE")]
        package: String,
        /// The file to write
        #[arg(value_name = "OUT")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().task {
        Task::CheckCycles { only, except } => check_cycles(&only, &except),
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
        Task::Readme { path } => match xtask::readme::write(&path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask: cannot rewrite the README: {e}");
                ExitCode::FAILURE
            }
        },
        Task::DebCopyright { package, out } => deb_copyright(&package, &out),
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

/// `xtask deb-copyright`.
fn deb_copyright(package: &str, out: &std::path::Path) -> ExitCode {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // How scripts/build-debs linked the session guard (`musl`, or `glibc-static` where the
    // musl target is missing): the copyright file lists that C library.
    let guard_link = std::env::var("BREAKGLASS_GUARD_LINK").unwrap_or_else(|_| "musl".into());
    match xtask::deb_copyright::write(&workspace, package, &guard_link, out) {
        Ok((deb_name, n)) => {
            eprintln!(
                "xtask: {} lists {n} crates compiled into {deb_name}",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: cannot write the copyright file of {package}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `xtask check-cycles`.
fn check_cycles(only: &[String], except: &[String]) -> ExitCode {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let targets = match xtask::cycles::workspace_targets(&workspace) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xtask: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut chosen: Vec<(String, PathBuf)> = targets
        .iter()
        .filter(|(name, _)| {
            let package = name.split(' ').next().unwrap_or_default();
            (only.is_empty() || only.iter().any(|o| o == name || o == package))
                && !except.iter().any(|e| e == package)
        })
        .cloned()
        .collect();
    // A root file given by path (a crate outside the workspace, an old checkout).
    chosen.extend(
        only.iter()
            .filter(|o| o.ends_with(".rs") && std::path::Path::new(o).is_file())
            .map(|o| (o.clone(), PathBuf::from(o))),
    );
    if chosen.is_empty() {
        eprintln!("xtask: no target matches {only:?}; the targets are:");
        for (name, _) in &targets {
            eprintln!("  {name}");
        }
        return ExitCode::FAILURE;
    }
    let base = workspace.canonicalize().unwrap_or(workspace);
    for e in except {
        println!("{e}: not checked (--except)");
    }
    let mut failed = false;
    for (name, root) in chosen {
        match xtask::cycles::read_crate(&root) {
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
            }
            Ok(graph) => {
                let found = xtask::cycles::cycles(&graph);
                if found.is_empty() {
                    println!(
                        "{name}: no import cycle ({} modules, {} uses)",
                        graph.modules.len(),
                        graph.edges.len()
                    );
                } else {
                    failed = true;
                    println!("{name}: {} import cycle(s)", found.len());
                    for mut c in found {
                        for e in &mut c.edges {
                            if let Ok(rel) = e.file.strip_prefix(&base) {
                                e.file = rel.to_owned();
                            }
                        }
                        print!("{c}");
                    }
                }
            }
        }
    }
    if failed {
        eprintln!(
            "xtask: import cycles between modules: move what both sides need into a module \
             below them (ARCHITECTURE.md, \"Floors and fences\")"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
