//! Command-line definition and dispatch.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::approvals;
use crate::commands::{self, RequestArgs};
use crate::error::CliError;
use crate::settings::Overrides;

/// Emergency and ad-hoc SSH access with short-lived certificates.
#[derive(Debug, Parser)]
#[command(name = "breakglass", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub output: crate::flags::OutputArgs,
}

/// How to reach breakglass-ca. Flags win over environment variables, which
/// win over the client config file.
#[derive(Debug, Args)]
#[command(
    next_help_heading = "Connection (flags, else BREAKGLASS_* variables, else the client config)"
)]
pub struct ConnArgs {
    /// Client config file [default: ~/.config/breakglass/client.toml if present]
    #[arg(long, global = true, env = "BREAKGLASS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Daemon address: https://HOST:PORT (mTLS) or unix:///PATH (local admin socket). Repeat
    /// it (or separate with commas) for several daemons of one log: a call goes to the next
    /// when one cannot be reached or answers UNAVAILABLE
    #[arg(
        long,
        global = true,
        env = "BREAKGLASS_SERVER",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// CA certificate that signed the daemon's TLS certificate (PEM)
    #[arg(long, global = true, env = "BREAKGLASS_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Your client certificate (PEM)
    #[arg(long, global = true, env = "BREAKGLASS_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Your client private key (PEM)
    #[arg(long, global = true, env = "BREAKGLASS_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Name to verify in the daemon's certificate [default: the host of --server]
    #[arg(
        long,
        global = true,
        env = "BREAKGLASS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub server_name: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask for a certificate; it is written next to your key as <key>-cert.pub
    Request(RequestCmd),
    /// Print the CA public keys (the lines for sshd's TrustedUserCAKeys)
    CaKeys {
        /// Write them to FILE atomically instead of printing
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Log in with your organisation's identity provider (OpenID Connect), or with an
    /// enrolled SSH key when it is down (--ssh-key): a new key here, a short-lived client
    /// certificate for it from the daemon, and a client config that every other command
    /// then uses
    Login(crate::login::session::LoginArgs),
    /// Show the identity and groups the daemon sees for you (the one call open to an
    /// identity the daemon's config does not list: ask its operators to add it)
    Whoami,
    /// Revoke grants (by grant, serial, requester or public key): hosts that follow the
    /// revocation stream refuse new logins and end open sessions within seconds
    Revoke(crate::revoke::RevokeCmd),
    /// Verify and read the signed audit log
    #[command(subcommand)]
    Audit(crate::audit::AuditCmd),
    /// Commands hosts run (deliver session records to the daemon)
    #[command(subcommand)]
    Host(crate::host::HostCmd),
    /// Write the certificate of an issued request next to your key
    Fetch {
        /// Request id (r-…)
        #[arg(value_name = "ID")]
        id: String,
        /// The public key you requested with [default: as for `request`]
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// List pending requests you may approve, and your own
    Pending,
    /// Show one request
    Show {
        /// Request id (r-…)
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Approve a pending request (never your own)
    Approve {
        /// Request id (r-…)
        #[arg(value_name = "ID")]
        id: String,
        /// Note recorded with the approval
        #[arg(long, value_name = "TEXT", default_value = "")]
        comment: String,
    },
    /// Deny a pending request; this ends it
    Deny {
        /// Request id (r-…)
        #[arg(value_name = "ID")]
        id: String,
        /// Why (recorded, and shown to the requester)
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Withdraw your own pending request
    Cancel {
        /// Request id (r-…)
        #[arg(value_name = "ID")]
        id: String,
        /// Why (recorded)
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// Review emergency grants: `review list`, or `review ID --verdict ok|misuse --note TEXT`
    Review(ReviewCmd),
    /// Run a real break-glass drill against a canary host: get a drill grant (no
    /// approval), log in with ssh, run a harmless command, check that the session's
    /// open and close reach the audit log, and print the time from request to shell
    /// and from logout to audit record. Exits 1 when the drill fails. Once the drill
    /// grant is issued, the outcome is recorded in the audit log and a failure is
    /// alerted like an emergency (to the drill tier's webhooks)
    Drill(crate::drill::DrillCmd),
    /// Log in with ssh, asking for a certificate only when needed: reuses the certificate
    /// next to your key (<key>-cert.pub) while it covers the user, the host and the command
    /// (no force-command, or the same one) for at least another minute; otherwise requests
    /// one as `request` does (--ttl, --reason, --emergency, with the live approval wait).
    /// Then runs the system ssh with the key and the certificate: your ~/.ssh/config
    /// (ProxyJump, ports, known_hosts) stays in force, and ssh's exit status is the command's
    Ssh(crate::ssh::SshCmd),
    /// Set up other tools: `config ssh` makes plain ssh use breakglass certificates
    #[command(subcommand)]
    Config(crate::ssh_config::ConfigCmd),
    /// Exit 0 when the certificate next to your key is valid for at least another minute
    /// and covers USER on one of HOST...; 1 otherwise, quietly. For the `Match exec` line
    /// of `breakglass config ssh`; local files only, no network
    #[command(hide = true)]
    SshCheck(crate::ssh_config::SshCheckCmd),
    /// Show who you are, when your client certificate expires, your live grants (hosts,
    /// accounts, command, time left) and your pending requests
    Status,
    /// Print the completion script for SHELL (`source <(breakglass completions bash)`)
    Completions {
        /// bash, zsh or fish
        #[arg(value_name = "SHELL", value_enum)]
        shell: crate::completions::CompletionShell,
    },
}

impl RequestCmd {
    /// What the request path needs from these flags (the one place they are read).
    pub fn into_request(self) -> Result<(RequestArgs, approvals::RequestMode), CliError> {
        let add_to_agent = commands::agent_socket(self.add_to_agent)?;
        let mode = approvals::RequestMode {
            emergency: self.emergency,
            no_wait: self.no_wait,
        };
        let args = RequestArgs {
            hosts: self.hosts,
            principals: self.principals,
            ttl: self.ttl,
            reason: self.reason,
            command: self.command,
            source_addresses: self.source_addresses,
            public_key: self.public_key,
            permit: self.permit,
            add_to_agent,
        };
        Ok((args, mode))
    }
}

/// `breakglass review`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReviewCmd {
    #[command(subcommand)]
    pub list: Option<ReviewSub>,
    /// Grant id (g-…) to record a verdict on
    #[arg(value_name = "ID", required = false)]
    pub id: Option<String>,
    /// ok (appropriate use) or misuse
    #[arg(long, value_parser = ["ok", "misuse"])]
    pub verdict: Option<String>,
    /// What you checked or found (recorded)
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// `breakglass review list`.
#[derive(Debug, Subcommand)]
pub enum ReviewSub {
    /// Emergency grants awaiting review, with their host sessions
    List {
        /// Also show grants already reviewed
        #[arg(long)]
        all: bool,
    },
}

/// `breakglass request`.
#[derive(Debug, Args)]
pub struct RequestCmd {
    /// Host to access, or a host pattern (repeat for several)
    ///
    /// A pattern ('*' stands for any run of characters, dots included; '?' for exactly
    /// one) is granted only if one policy rule allows every host name it matches and no
    /// deny rule names any of them: repeat a rule's pattern, or ask for a narrower one
    /// ('db-1*' where the rule allows 'db-*'). Quote it for the shell. The certificate
    /// is valid on the hosts the pattern matches (case-insensitively), and no others.
    #[arg(long = "host", value_name = "HOST", required = true)]
    pub hosts: Vec<String>,
    /// Unix account to log in as (repeat for several)
    #[arg(long = "as", value_name = "USER", required = true)]
    pub principals: Vec<String>,
    /// How long the certificate is valid, e.g. 10m, 1h
    #[arg(long, value_name = "DURATION", value_parser = crate::flags::parse_positive_duration)]
    pub ttl: Duration,
    /// Why you need access (incident or ticket reference)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Run only this command on the host (force-command); default: interactive shell
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// Restrict use of the certificate to this source CIDR (repeat for several)
    #[arg(long = "source-address", value_name = "CIDR")]
    pub source_addresses: Vec<String>,
    /// Your SSH public key [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub]
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Ask for a permit-* extension (repeat); default: permit-pty for interactive access
    #[arg(long, value_name = "EXTENSION")]
    pub permit: Vec<String>,
    /// Add the key to the running ssh-agent until the certificate expires
    #[arg(long)]
    pub add_to_agent: bool,
    /// Declare an emergency: issued at once with the tier's emergency TTL cap,
    /// alerts go out and the grant must be reviewed afterwards
    #[arg(long)]
    pub emergency: bool,
    /// Do not wait for approval: print the request id (get the certificate
    /// later with `breakglass fetch ID`)
    #[arg(long)]
    pub no_wait: bool,
}

impl ConnArgs {
    /// The connection settings these flags give.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            server: self.server.first().cloned(),
            fallbacks: self.server.iter().skip(1).cloned().collect(),
            ca_cert: self.ca_cert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            server_name: self.server_name.clone(),
        }
    }
}

/// Runs a parsed command line, printing results as text (the binary runs
/// [`crate::output::run::run`] instead when JSON is asked for); returns the error to report.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    // These resolve the client settings themselves (offline verification needs none).
    match cli.command {
        Command::Audit(a) => return crate::audit::run(a, &cli.conn.overrides()).await,
        Command::Host(h) => return crate::host::run(h, &cli.conn.overrides()).await,
        Command::Ssh(s) => return crate::ssh::run(s, &cli.conn.overrides()).await,
        Command::Config(c) => return crate::ssh_config::run(c),
        Command::Login(l) => {
            print!(
                "{}",
                crate::login::session::run(&l, &cli.conn.overrides()).await?
            );
            return Ok(());
        }
        Command::SshCheck(c) => return crate::ssh_config::check(c),
        Command::Completions { shell } => {
            return crate::completions::run(shell, <Cli as clap::CommandFactory>::command());
        }
        _ => {}
    }
    let target = cli.conn.overrides().resolve()?;
    match cli.command {
        Command::Request(r) => {
            let first_host = r.hosts.first().cloned().unwrap_or_default();
            let (args, mode) = r.into_request()?;
            let wait = crate::wait_line::WaitLine::stderr();
            let result = approvals::request_live_noting(
                &target,
                &args,
                mode,
                |i| wait.update(i),
                |n| wait.note(n),
            )
            .await;
            drop(wait);
            let result = result?;
            match result {
                approvals::RequestResult::Issued(outcome) => {
                    if outcome.response.emergency {
                        println!(
                            "EMERGENCY grant: alerts were sent and the grant must be reviewed."
                        );
                    }
                    print!("{}", commands::describe(&outcome, &first_host));
                    if args.add_to_agent.is_some() {
                        println!(
                            "Key and certificate added to ssh-agent until the certificate expires."
                        );
                    }
                }
                approvals::RequestResult::Pending(info) => {
                    let id = breakglass_proto::text::escaped(&info.request_id);
                    println!("{id}");
                    eprintln!(
                        "Waiting for approval. Approvers run: {}\nGet the certificate later with: breakglass fetch {id}",
                        breakglass_proto::text::escaped(&info.approve_command)
                    );
                }
            }
        }
        Command::Fetch { id, public_key } => {
            let outcome = approvals::fetch(&target, &id, public_key.as_deref()).await?;
            // The response does not name hosts: show the command with a placeholder.
            print!("{}", commands::describe(&outcome, "HOST"));
        }
        Command::Pending => print!(
            "{}",
            approvals::describe_pending(&approvals::pending(&target).await?)
        ),
        Command::Show { id } => print!(
            "{}",
            approvals::describe_request(&approvals::show(&target, &id).await?)
        ),
        Command::Approve { id, comment } => {
            let info = approvals::approve(&target, &id, &comment).await?;
            print!("{}", approvals::describe_request(&info));
        }
        Command::Deny { id, reason } => {
            let info = approvals::deny(&target, &id, &reason).await?;
            print!("{}", approvals::describe_request(&info));
        }
        Command::Cancel { id, reason } => {
            let info = approvals::cancel(&target, &id, &reason).await?;
            print!("{}", approvals::describe_request(&info));
        }
        Command::Review(r) => match (r.list, r.id) {
            (Some(ReviewSub::List { all }), _) => {
                print!(
                    "{}",
                    approvals::describe_reviews(&approvals::review_list(&target, all).await?)
                );
            }
            (None, Some(id)) => {
                let (Some(verdict), Some(note)) = (r.verdict, r.note) else {
                    return Err(CliError::Usage(
                        "review ID needs --verdict ok|misuse and --note TEXT".into(),
                    ));
                };
                let item = approvals::review(&target, &id, &verdict, &note).await?;
                print!(
                    "{}",
                    approvals::describe_reviews(std::slice::from_ref(&item))
                );
            }
            (None, None) => {
                return Err(CliError::Usage(
                    "use `breakglass review list` or `breakglass review ID --verdict ok|misuse --note TEXT`".into(),
                ));
            }
        },
        Command::CaKeys { out } => {
            let keys = commands::ca_keys(&target).await?;
            let mut text = keys.join("\n");
            text.push('\n');
            match out {
                Some(p) => {
                    commands::write_atomic(&p, text.as_bytes(), 0o644)?;
                    eprintln!("wrote {} CA key(s) to {}", keys.len(), p.display());
                }
                None => print!("{text}"),
            }
        }
        Command::Whoami => println!("{}", commands::whoami(&target).await?),
        Command::Drill(d) => crate::drill::run(d, &target).await?,
        Command::Revoke(r) => print!("{}", crate::revoke::run(&target, &r).await?),
        Command::Status => print!(
            "{}",
            crate::status::describe(&crate::status::status(&target).await?)
        ),
        // Dispatched above, before the settings are resolved.
        Command::Audit(_) | Command::Host(_) => {}
        Command::Ssh(_) | Command::Config(_) | Command::SshCheck(_) | Command::Login(_) => {}
        Command::Completions { .. } => {}
    }
    Ok(())
}
