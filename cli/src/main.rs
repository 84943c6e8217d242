//! `breakglass` binary: parse, run, map the error to an exit code.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = breakglass_cli::cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("breakglass: cannot start: {e}");
            std::process::exit(71);
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
