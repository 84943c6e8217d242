//! `breakglass` binary: parse, run, map the error to an exit code (the one table,
//! `breakglass_cli::error::EXIT_STATUSES`; clap's own errors are usage errors too).
#![forbid(unsafe_code)]

use breakglass_cli::error::{ExitStatus, clap_exit};
use clap::Parser;

fn main() {
    let cli = match breakglass_cli::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` arrive here too, to stdout, exiting 0.
            let _ = e.print();
            std::process::exit(clap_exit(&e).code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("breakglass: cannot start: {e}");
            std::process::exit(ExitStatus::SOFTWARE.code);
        }
    };
    let result = if cli.output.is_json() {
        rt.block_on(breakglass_cli::output::run::run(cli))
    } else {
        rt.block_on(breakglass_cli::cli::run(cli))
    };
    if let Err(e) = result {
        eprintln!("breakglass: {e}");
        std::process::exit(e.exit_code());
    }
}
