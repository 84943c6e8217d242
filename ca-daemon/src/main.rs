//! `breakglass-ca`: parse the command line, load and check the config, serve.

use std::process::ExitCode;

use breakglass_ca::cli::{Cli, Command};
use breakglass_ca::config::{Config, LogFormat};
use breakglass_ca::init::{self, CONFIG_FILE};
use breakglass_ca::logging;
use breakglass_ca::server::{self, Daemon};
use clap::Parser;

/// sysexits.h codes.
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_CANTCREAT: u8 = 73;
const EX_IOERR: u8 = 74;

/// An admin command's text on stdout, or its error.
fn printed(r: Result<String, breakglass_ca::admin::AdminError>) -> ExitCode {
    match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("breakglass-ca: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads the log format from its configuration too: it starts logging once
    // that is loaded.
    if !matches!(cli.command, Command::Serve { .. }) {
        logging::init(LogFormat::Text);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(EX_SOFTWARE, format!("cannot start the runtime: {e}")),
    };
    match cli.command {
        Command::Init { dev, listen } => match init::init_dev(&dev, listen) {
            Ok(setup) => {
                print!("{}", init_instructions(&setup));
                ExitCode::SUCCESS
            }
            Err(e) => fail(EX_CANTCREAT, e),
        },
        Command::Token(breakglass_ca::admin::TokenCmd::Create(args)) => {
            match rt.block_on(breakglass_ca::admin::token_create(&args)) {
                Ok(p) => {
                    print!("{}", p.out);
                    eprint!("{}", p.err);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.exit_code(), e),
            }
        }
        Command::Identity(breakglass_ca::admin::IdentityCmd::Disable(args)) => {
            match rt.block_on(breakglass_ca::admin::identity_disable(&args)) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.exit_code(), e),
            }
        }
        Command::Identity(breakglass_ca::admin::IdentityCmd::AddKey(args)) => {
            printed(rt.block_on(breakglass_ca::admin::identity_key(&args, true)))
        }
        Command::Identity(breakglass_ca::admin::IdentityCmd::RemoveKey(args)) => {
            printed(rt.block_on(breakglass_ca::admin::identity_key(&args, false)))
        }
        Command::Audit(cmd) => {
            use breakglass_ca::audit_transfer::{self, AuditCmd};
            let done = match cmd {
                AuditCmd::Import(args) => rt.block_on(audit_transfer::import(&args)),
                AuditCmd::Export(args) => rt.block_on(audit_transfer::export(&args)),
                AuditCmd::Migrate(args) => rt.block_on(audit_transfer::migrate(&args)),
            };
            match done {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.exit_code(), e),
            }
        }
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => match Daemon::check(&c) {
                Ok(()) => {
                    println!(
                        "{}: OK ({} identities, {} rules)",
                        config.display(),
                        c.identities.len(),
                        c.policy.rules().len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_USAGE, e),
            },
            Err(e) => fail(EX_USAGE, e),
        },
        Command::Serve {
            config,
            dev,
            listen,
            log_format,
        } => {
            // Handlers first: a SIGTERM during start-up (e.g. a long log replay)
            // then shuts down cleanly instead of killing the process mid-way.
            // SIGHUP likewise: its default action would kill the daemon; it reloads the
            // configuration once serving starts (breakglass_ca::reload).
            let (shutdown, hangup) = {
                let _in_runtime = rt.enter();
                let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
                match (server::shutdown_signal(), hangup) {
                    (Ok(s), Ok(h)) => (s, h),
                    (Err(e), _) | (_, Err(e)) => {
                        return fail(EX_SOFTWARE, format!("cannot handle signals: {e}"));
                    }
                }
            };
            let path = match (config, dev) {
                (Some(c), _) => c,
                (None, Some(dir)) => {
                    let path = dir.join(CONFIG_FILE);
                    if !path.exists() {
                        let default = breakglass_ca::cli::DEV_LISTEN.parse();
                        match init::init_dev(
                            &dir,
                            listen.unwrap_or_else(|| default.unwrap_or_else(|_| unreachable!())),
                        ) {
                            Ok(setup) => eprint!("{}", init_instructions(&setup)),
                            Err(e) => return fail(EX_CANTCREAT, e),
                        }
                    }
                    path
                }
                (None, None) => return fail(EX_USAGE, "give --config FILE or --dev DIR"),
            };
            // Everything is loaded and checked before anything is bound.
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => return fail(EX_USAGE, e),
            };
            logging::init(log_format.unwrap_or(config.log.format));
            // Idle connections must not run the daemon out of descriptors: take all
            // the system allows (the TCP limits are derived from it).
            match breakglass_ca::accept::raise_fd_limit() {
                Ok(l) if l.before < l.soft => tracing::info!(
                    from = l.before,
                    to = l.soft,
                    "raised the file descriptor limit to the hard limit"
                ),
                Ok(l) => tracing::info!(limit = l.soft, "file descriptor limit"),
                Err(e) => tracing::warn!("{e}; TCP limits follow the current limit"),
            }
            if let Some(l) = listen.filter(|l| *l != config.server.listen) {
                return fail(
                    EX_USAGE,
                    format!(
                        "--listen {l}: the dev setup {} listens on {} (server.listen, and the \
                         clients' server); use a new --dev DIR for another address, or edit both",
                        path.display(),
                        config.server.listen
                    ),
                );
            }
            let daemon = match Daemon::build(config) {
                Ok(d) => d.reload_on(hangup),
                // Tampering or media damage: the data is bad, not the configuration.
                Err(
                    e @ server::StartupError::Audit(breakglass_ca::audit::AuditError::Corrupt {
                        ..
                    }),
                ) => return fail(EX_DATAERR, e),
                // The audit disk failed (read-only, I/O error): not the configuration's
                // fault, and worth retrying (the unit restarts on it, not on 64 or 65).
                Err(e) if is_audit_disk_failure(&e) => return fail(EX_IOERR, e),
                // The audit database cannot be reached ([audit] backend = "postgres"):
                // worth retrying, like a failing disk.
                Err(
                    e @ server::StartupError::Audit(breakglass_ca::audit::AuditError::Unavailable(
                        _,
                    )),
                ) => return fail(EX_UNAVAILABLE, e),
                Err(e) => return fail(EX_USAGE, e),
            };
            rt.block_on(async move {
                let (tcp, admin) = match daemon.bind().await {
                    Ok(l) => l,
                    Err(e) => return fail(EX_UNAVAILABLE, e),
                };
                match daemon.run(tcp, admin, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    // The metrics listener is bound as `run` starts.
                    Err(e @ server::StartupError::Bind { .. }) => fail(EX_UNAVAILABLE, e),
                    Err(e) => fail(EX_SOFTWARE, e),
                }
            })
        }
    }
}

/// True for an audit log I/O error of a failing or read-only disk, as opposed to those a
/// wrong path or owner causes (a human fixes the set-up: no retry).
fn is_audit_disk_failure(e: &server::StartupError) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound, PermissionDenied};
    matches!(
        e,
        server::StartupError::Audit(breakglass_ca::audit::AuditError::Io { source, .. })
            if !matches!(source.kind(), PermissionDenied | NotFound | NotADirectory | IsADirectory)
    )
}

/// The account `init`'s hint requests: the user's own, but never root, which the dev
/// policy refuses (the walkthrough's `bgdemo` instead).
fn hint_account(user: Option<&str>) -> &str {
    match user {
        Some(u) if !u.is_empty() && u != "root" => u,
        _ => "bgdemo",
    }
}

fn init_instructions(setup: &init::DevSetup) -> String {
    let d = setup.dir.display();
    format!(
        "Created a breakglass dev setup in {d}\n\
         \n\
         Start the daemon:\n\
         \x20 breakglass-ca serve --config {d}/{CONFIG_FILE}\n\
         \n\
         Request a first certificate (as the sample SRE, for a local account; the dev policy\n\
         refuses root):\n\
         \x20 ssh-keygen -t ed25519 -N '' -f ~/.ssh/breakglass_demo   # if you have no key yet\n\
         \x20 breakglass --config {d}/clients/sre.toml request --host localhost --as {account} --ttl 10m \\\n\
         \x20     --reason \"trying breakglass\" --public-key ~/.ssh/breakglass_demo.pub\n\
         \n\
         Trust the CA on a host (sshd_config: TrustedUserCAKeys):\n\
         \x20 breakglass --config {d}/clients/host.toml ca-keys --out /etc/ssh/breakglass_user_ca.pub\n",
        account = hint_account(std::env::var("USER").ok().as_deref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_ca::audit::AuditError;

    fn audit_io(e: std::io::Error) -> server::StartupError {
        server::StartupError::Audit(AuditError::Io {
            path: "/var/lib/breakglass-ca/audit/segments".into(),
            source: e,
        })
    }

    #[test]
    fn the_init_hint_never_requests_root() {
        assert_eq!(hint_account(Some("alice")), "alice");
        assert_eq!(hint_account(Some("root")), "bgdemo");
        assert_eq!(hint_account(None), "bgdemo");
        let text = init_instructions(&init::DevSetup {
            dir: "/tmp/dev".into(),
            config: "/tmp/dev/breakglass-ca.toml".into(),
            ca_public_key: String::new(),
        });
        assert!(!text.contains("$USER"), "{text}");
        assert!(
            text.contains("--out /etc/ssh/breakglass_user_ca.pub"),
            "{text}"
        );
    }

    #[test]
    fn a_failing_or_read_only_audit_disk_is_retried_a_wrong_path_or_owner_is_not() {
        assert!(is_audit_disk_failure(&audit_io(
            std::io::Error::from_raw_os_error(30)
        )));
        assert!(is_audit_disk_failure(&audit_io(
            std::io::Error::from_raw_os_error(5)
        )));
        assert!(!is_audit_disk_failure(&audit_io(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied
        ))));
        assert!(!is_audit_disk_failure(&audit_io(std::io::Error::from(
            std::io::ErrorKind::NotFound
        ))));
        assert!(!is_audit_disk_failure(&server::StartupError::Audit(
            AuditError::Key("bad".into())
        )));
    }
}
