//! The `breakglass-ca` command line: one clap definition for the binary's `--help`
//! and the man pages (`cargo run -p xtask -- man`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// breakglass certificate authority daemon.
#[derive(Debug, Parser)]
#[command(name = "breakglass-ca", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `breakglass-ca` does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a complete single-machine setup (CA keys, TLS certificates, config) in DIR
    Init {
        /// Directory to create the setup in (must not already hold one)
        #[arg(long, value_name = "DIR")]
        dev: PathBuf,
        /// Address the daemon will listen on
        #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Run the daemon
    Serve {
        /// Configuration file
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "dev",
            required_unless_present = "dev"
        )]
        config: Option<PathBuf>,
        /// Use (and, when absent, first create) the dev setup in DIR
        #[arg(long, value_name = "DIR")]
        dev: Option<PathBuf>,
        /// Format of the log lines on stderr, one event per line: text, or one JSON
        /// object per line (overrides [log] format in the configuration; default text).
        /// Colours only when stderr is a terminal and NO_COLOR is unset.
        #[arg(long, value_enum, value_name = "FORMAT")]
        log_format: Option<crate::config::LogFormat>,
    },
    /// Check a configuration file and the files it names, then exit
    ///
    /// Rule principals and hosts are names or patterns: '*' stands for any run of
    /// characters (dots included), '?' for exactly one, every other character for itself
    /// (there are no [...] classes; they are refused). Host names compare
    /// case-insensitively, principals exactly; this is the matcher pam_breakglass(8)
    /// applies to the host's name. A request may name a host pattern: an allow rule
    /// grants it only if every host name it matches is matched by the rule's hosts
    /// (language containment, decided exactly: a rule's pattern repeated, in any case,
    /// or a narrower one), and a deny rule refuses it if any host name it matches is one
    /// the deny rule names (overlap). A deny rule naming commands also refuses an
    /// interactive shell, which could run them.
    CheckConfig {
        /// Configuration file
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}
