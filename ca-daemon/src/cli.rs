//! The `breakglass-ca` command line: one clap definition for the binary's `--help`
//! and the man pages (`cargo run -p xtask -- man`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The address a dev setup listens on unless told otherwise.
pub const DEV_LISTEN: &str = "127.0.0.1:7443";

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
        #[arg(long, default_value = DEV_LISTEN, value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Run the daemon
    ///
    /// SIGTERM or SIGINT: stop accepting, drain calls for [server] shutdown_grace, exit 0.
    /// SIGHUP (systemctl reload): read the configuration file again; if it is valid and
    /// changes nothing that needs a restart (listen addresses, TLS, CA and audit keys, the
    /// audit directory, ...), put the new rules, tiers, identities and notification
    /// settings in force at once and record a config_reloaded event in the audit log;
    /// otherwise keep the running configuration and log why, naming the field or the
    /// settings. Under systemd (NOTIFY_SOCKET) the daemon reports READY=1, RELOADING=1,
    /// STOPPING=1, and WATCHDOG=1 from its audit writer when WatchdogSec= is set.
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
        /// With --dev: the address a new dev setup listens on (an existing one keeps
        /// its server.listen) [default: 127.0.0.1:7443]
        #[arg(long, value_name = "ADDR", conflicts_with = "config")]
        listen: Option<SocketAddr>,
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
    /// One-time join tokens with which hosts enroll (through the admin socket)
    #[command(subcommand)]
    Token(crate::admin::TokenCmd),
    /// Administer identities: disable one at once (through the admin socket)
    #[command(subcommand)]
    Identity(crate::admin::IdentityCmd),
    /// Move the audit log between its directory and PostgreSQL, and create its tables: import, export, migrate
    #[command(subcommand)]
    Audit(crate::audit_transfer::AuditCmd),
}

/// Examples for `breakglass-ca(8)`: what each does, and its arguments after
/// `breakglass-ca` (each one parsed by this command line in the tests).
#[rustfmt::skip]
pub const EXAMPLES: &[(&str, &[&str])] = &[
    ("A complete single-machine setup in ./dev, listening on another port:", &["init", "--dev", "./dev", "--listen", "127.0.0.1:7444"]),
    ("Check a configuration and the files it names before a restart:", &["check-config", "--config", "/etc/breakglass-ca/breakglass-ca.toml"]),
    ("Run the daemon:", &["serve", "--config", "/etc/breakglass-ca/breakglass-ca.toml"]),
    ("Create the dev setup if needed and run it, on port 7444:", &["serve", "--dev", "./dev", "--listen", "127.0.0.1:7444"]),
    ("Two one-time join tokens for host db-7, usable for a day:", &["token", "create", "--host", "db-7", "--ttl", "1d", "--count", "2"]),
    ("Cut off a person who left, and revoke their live grants:", &["identity", "disable", "sre@example.com", "--reason", "left the company"]),
    ("Enroll a person's FIDO2 SSH key for the break-glass login (breakglass login --ssh-key):", &["identity", "add-key", "sre@example.com", "--key", "id_ed25519_sk.pub"]),
    ("Remove it again:", &["identity", "remove-key", "sre@example.com", "--key", "id_ed25519_sk.pub"]),
    ("Move the embedded audit log into the (empty) PostgreSQL database of [postgres]:", &["audit", "import", "--config", "/etc/breakglass-ca/breakglass-ca.toml"]),
    ("Write the database's log as segment files, for breakglass audit verify:", &["audit", "export", "--config", "/etc/breakglass-ca/breakglass-ca.toml", "--to", "./log-copy"]),
    ("Create the log's tables as their owner; the daemons' role may then only read and append:", &["audit", "migrate", "--config", "/etc/breakglass-ca/breakglass-ca.toml", "--url", "postgresql://breakglass_owner@db1:5432/breakglass", "--password-file", "/root/owner-password", "--grant-to", "breakglass"]),
];

/// Files of `breakglass-ca(8)`, and what they are.
pub const FILES: &[(&str, &str)] = &[
    (
        "/etc/breakglass-ca/breakglass-ca.toml",
        "The configuration (breakglass-ca.toml(5)), read by serve --config and check-config; the packaged unit starts only once it exists.",
    ),
    (
        "/var/lib/breakglass-ca",
        "State of the packaged daemon: the audit log (audit.dir) and the keys it names.",
    ),
    (
        "DIR/breakglass-ca.toml, DIR/clients/*.toml",
        "A dev setup made by init --dev DIR: the daemon's config and one client config per sample identity (sre, approver, host).",
    ),
];

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn every_example_is_accepted_by_the_command_line() {
        for (what, args) in EXAMPLES {
            let argv = std::iter::once("breakglass-ca").chain(args.iter().copied());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("example {what:?} ({args:?}) does not parse:\n{e}");
            }
        }
        // --listen belongs to --dev.
        assert!(
            Cli::try_parse_from([
                "breakglass-ca",
                "serve",
                "--config",
                "c",
                "--listen",
                "127.0.0.1:1"
            ])
            .is_err()
        );
    }
}
