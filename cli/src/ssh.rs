//! `breakglass ssh [USER@]HOST [-- COMMAND...]`: log in with a breakglass certificate in
//! one step.
//!
//! The certificate next to the key (`<key>-cert.pub`, where `request` writes it) is
//! reused when it covers the login ([`check_certificate`]): our key, the user among its
//! principals, the host within its scope, the command (no force-command, or the same
//! one), and valid for at least [`MIN_VALID`] more. Otherwise a certificate is requested
//! through the request path of `breakglass request` ([`approvals::request_live`], with its
//! live approval wait), and the system `ssh` is `exec`ed with the key and the
//! certificate, so the user's `~/.ssh/config` (ProxyJump, ports, known_hosts) stays in
//! force: host keys are checked as ssh always checks them.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::names;
use breakglass_proto::profile::{CRITICAL_FORCE_COMMAND, Profile};
use breakglass_proto::text::escaped as esc;
use clap::Args;
use ssh_key::{Certificate, PublicKey};

use crate::approvals::{self, RequestMode, RequestResult};
use crate::commands::{self, KeyPaths, RequestArgs};
use crate::error::CliError;
use crate::settings::Overrides;

/// A certificate is reused only if it stays valid at least this much longer: enough to
/// connect and authenticate.
pub const MIN_VALID: Duration = Duration::from_secs(60);

/// `breakglass ssh`.
#[derive(Debug, Args)]
pub struct SshCmd {
    /// Where to log in: HOST, or USER@HOST [default USER: as ssh, `-l`, the ssh config's
    /// User, else your local user name]. HOST is the name the CA's rules and the host's
    /// pam_breakglass `host=` use; ssh resolves it through your ssh config as usual
    #[arg(value_name = "[USER@]HOST")]
    pub destination: String,
    /// Command to run instead of a shell (after `--`); a new certificate is then asked
    /// for with this command as its force-command
    #[arg(value_name = "COMMAND", last = true)]
    pub command: Vec<String>,
    /// Login user (as `ssh -l`)
    #[arg(short = 'l', value_name = "USER")]
    pub login: Option<String>,
    /// Port to connect to (passed to ssh as `-p`)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,
    /// ssh option (passed as `-o OPTION`; repeat), e.g. -o ProxyJump=bastion
    #[arg(short = 'o', value_name = "OPTION")]
    pub ssh_options: Vec<String>,
    /// Jump host (passed to ssh as `-J`)
    #[arg(short = 'J', value_name = "DESTINATION")]
    pub jump: Option<String>,
    /// ssh config file (passed to ssh as `-F`) [default: ssh's own, ~/.ssh/config]
    #[arg(short = 'F', value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Any other ssh argument, passed as is (repeat), e.g. --ssh-arg=-t --ssh-arg=-v
    #[arg(long = "ssh-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub ssh_args: Vec<String>,
    /// Ask for a new certificate even if the one next to the key covers this login
    #[arg(long)]
    pub new: bool,
    /// Lifetime of a new certificate, e.g. 10m, 1h (needed only when one is requested)
    #[arg(long, value_name = "DURATION", value_parser = crate::flags::parse_positive_duration)]
    pub ttl: Option<Duration>,
    /// Why you need access (incident or ticket reference; needed only when a
    /// certificate is requested)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Declare an emergency when requesting: issued at once with the tier's emergency
    /// TTL cap, alerts go out and the grant must be reviewed afterwards
    #[arg(long)]
    pub emergency: bool,
    /// Restrict a new certificate to this source CIDR (repeat for several)
    #[arg(long = "source-address", value_name = "CIDR")]
    pub source_addresses: Vec<String>,
    /// Your SSH public key; the private key is the file without .pub, the certificate
    /// <key>-cert.pub [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub]
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Ask for a permit-* extension (repeat); a certificate is reused only if it has
    /// them all; default: permit-pty for interactive access
    #[arg(long, value_name = "EXTENSION")]
    pub permit: Vec<String>,
}

/// What a certificate must cover to be reused for a login.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The key the certificate must certify.
    pub key: &'a PublicKey,
    /// The Unix account.
    pub user: &'a str,
    /// Names of the host: covering any of them is enough.
    pub hosts: &'a [&'a str],
    /// The command to run, `None` for a shell.
    pub command: Option<&'a str>,
    /// `permit-*` extensions it must carry.
    pub permits: &'a [String],
}

/// The certificate `text` (an OpenSSH certificate line) if it covers `want` from `now`
/// (Unix seconds) until at least `margin` later; otherwise why not. Local and offline:
/// the CA signature is left to sshd (the login fails if the CA is not trusted).
pub fn check_certificate(
    text: &str,
    want: &Want<'_>,
    now: u64,
    margin: Duration,
) -> Result<(Certificate, Profile), String> {
    let cert = Certificate::from_openssh(text.trim())
        .map_err(|e| format!("it is not an OpenSSH certificate ({e})"))?;
    let profile =
        Profile::from_certificate(&cert).map_err(|e| format!("it is {}", esc(&e.to_string())))?;
    if !cert.cert_type().is_user() {
        return Err("it is not a user certificate".into());
    }
    if cert.public_key() != want.key.key_data() {
        return Err("it certifies another key".into());
    }
    if cert.valid_after() > now {
        return Err("it is not valid yet".into());
    }
    let left = cert.valid_before().saturating_sub(now);
    if left < margin.as_secs() {
        return Err(if left == 0 {
            "it has expired".into()
        } else {
            format!("it expires in {left}s")
        });
    }
    if !cert.valid_principals().iter().any(|p| p == want.user) {
        return Err(format!(
            "it is for {}, not {}",
            esc(&cert.valid_principals().join(",")),
            esc(want.user)
        ));
    }
    if !want.hosts.iter().any(|h| profile.allows_host(h)) {
        return Err(format!(
            "its host scope {} does not cover {}",
            esc(&profile.hosts.join(",")),
            esc(&want.hosts.join(" or "))
        ));
    }
    match (
        cert.critical_options().get(CRITICAL_FORCE_COMMAND),
        want.command,
    ) {
        (None, _) => {}
        (Some(forced), Some(cmd)) if forced == cmd => {}
        (Some(forced), _) => {
            return Err(format!("it only runs the command \"{}\"", esc(forced)));
        }
    }
    if let Some(p) = want
        .permits
        .iter()
        .find(|p| !cert.extensions().contains_key(p.as_str()))
    {
        return Err(format!("it lacks the extension {}", esc(p)));
    }
    Ok((cert, profile))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Splits `[USER@]HOST` (the user is what comes before the last `@`, as ssh splits it).
pub fn split_destination(destination: &str) -> Result<(Option<&str>, &str), CliError> {
    let (user, host) = match destination.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, destination),
    };
    if host.is_empty() || host.starts_with('-') || names::check_host_pattern(host).is_err() {
        return Err(CliError::Usage(format!(
            "\"{}\" is not [USER@]HOST: give a host name, e.g. db-7.prod.example or postgres@db-7.prod.example",
            esc(destination)
        )));
    }
    if breakglass_proto::patterns::is_pattern(host) {
        return Err(CliError::Usage(format!(
            "\"{}\" is a host pattern; `breakglass ssh` logs in to one host: name it",
            esc(host)
        )));
    }
    Ok((user, host))
}

/// A path for an ssh option or config line: `%` doubled (ssh expands `%` tokens in
/// file names), refused when ssh could not take it literally.
pub fn ssh_path(path: &Path) -> Result<String, CliError> {
    let s = path
        .to_str()
        .ok_or_else(|| CliError::Usage(format!("{}: ssh needs a UTF-8 path", path.display())))?;
    if s.contains(['"', '\n', '\r']) || s.contains("${") {
        return Err(CliError::Usage(format!(
            "{}: ssh cannot take a path with quotes, line breaks or `${{`; move the key elsewhere",
            esc(s)
        )));
    }
    Ok(s.replace('%', "%%"))
}

impl SshCmd {
    /// The arguments passed through to ssh (also to `ssh -G`), in the order given by kind.
    pub fn passthrough(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        if let Some(f) = &self.ssh_config {
            out.extend(["-F".into(), f.into()]);
        }
        if let Some(p) = self.port {
            out.extend(["-p".into(), p.to_string().into()]);
        }
        if let Some(j) = &self.jump {
            out.extend(["-J".into(), j.into()]);
        }
        for o in &self.ssh_options {
            out.extend(["-o".into(), o.into()]);
        }
        out.extend(self.ssh_args.iter().map(OsString::from));
        out
    }
}

/// The arguments of the final `ssh`: our key and certificate first (ssh keeps the first
/// value of an option), then the user's arguments, the user, `--`, the host, the command.
pub fn ssh_argv(
    paths: &KeyPaths,
    passthrough: &[OsString],
    user: &str,
    host: &str,
    command: &[String],
) -> Result<Vec<OsString>, CliError> {
    let cert = ssh_path(&paths.certificate)?;
    let mut argv: Vec<OsString> = vec![
        "-i".into(),
        ssh_path(&paths.private)?.into(),
        "-o".into(),
        format!("CertificateFile=\"{cert}\"").into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
    ];
    argv.extend(passthrough.iter().cloned());
    argv.extend(["-l".into(), user.into(), "--".into(), host.into()]);
    argv.extend(command.iter().map(OsString::from));
    Ok(argv)
}

/// The user ssh would log in as (`ssh -G`: `-l`, the config's `User`, the local user).
fn ssh_user(passthrough: &[OsString], host: &str) -> Result<String, CliError> {
    let out = Command::new("ssh")
        .arg("-G")
        .args(passthrough)
        .args(["--", host])
        .output()
        .map_err(|e| {
            CliError::Io(format!(
                "running ssh -G: {e}; is OpenSSH's client installed?"
            ))
        })?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "ssh -G {host} (to find the user to log in as) failed: {}",
            esc(String::from_utf8_lossy(&out.stderr).trim())
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("user ").map(str::to_owned))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "ssh -G {host} named no user; give one: breakglass ssh USER@{host}"
            ))
        })
}

/// Runs `breakglass ssh`: finds or requests the certificate, then becomes `ssh`.
pub async fn run(cmd: SshCmd, conn: &Overrides) -> Result<(), CliError> {
    let (given_user, host) = split_destination(&cmd.destination)?;
    let passthrough = cmd.passthrough();
    let user = match given_user.or(cmd.login.as_deref()) {
        Some(u) => u.to_owned(),
        None => ssh_user(&passthrough, host)?,
    };
    names::check_principal(&user)
        .map_err(|e| CliError::Usage(format!("user \"{}\": {e}", esc(&user))))?;
    let command = (!cmd.command.is_empty()).then(|| cmd.command.join(" "));
    let (paths, public_text) = commands::read_public_key(cmd.public_key.as_deref())?;
    let key = PublicKey::from_openssh(public_text.trim()).map_err(|e| {
        CliError::Usage(format!(
            "{}: not an OpenSSH public key ({e}); pass the .pub file with --public-key",
            paths.public.display()
        ))
    })?;
    if !paths.private.exists() {
        return Err(CliError::Usage(format!(
            "private key {} not found next to {}: ssh needs it to log in",
            paths.private.display(),
            paths.public.display()
        )));
    }
    // Before any request: a path ssh cannot take must not cost a grant.
    let argv = ssh_argv(&paths, &passthrough, &user, host, &cmd.command)?;
    let want = Want {
        key: &key,
        user: &user,
        hosts: &[host],
        command: command.as_deref(),
        permits: &cmd.permit,
    };
    let reuse = match std::fs::read_to_string(&paths.certificate) {
        _ if cmd.new => Err("--new was given".to_owned()),
        Ok(text) => check_certificate(&text, &want, unix_now(), MIN_VALID),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("not found".to_owned()),
        Err(e) => Err(format!("it cannot be read ({e})")),
    };
    let cert_shown = esc(&paths.certificate.display().to_string()).to_string();
    match reuse {
        Ok((cert, profile)) => eprintln!(
            "breakglass: reusing {cert_shown} (grant {}, serial {}, {} left); no request made",
            profile.grant_id,
            cert.serial(),
            humantime::format_duration(Duration::from_secs(
                cert.valid_before().saturating_sub(unix_now())
            ))
        ),
        Err(why) => {
            let (Some(ttl), Some(reason)) = (cmd.ttl, cmd.reason.clone()) else {
                return Err(CliError::Usage(format!(
                    "no certificate to reuse for {user}@{host}: {cert_shown}: {why}.\nTo ask for one, add --ttl DURATION and --reason TEXT (and --emergency in an emergency)",
                    user = esc(&user),
                    host = esc(host),
                )));
            };
            eprintln!("breakglass: {cert_shown}: {why}; requesting a certificate");
            let target = conn.resolve()?;
            let args = RequestArgs {
                hosts: vec![host.to_owned()],
                principals: vec![user.clone()],
                ttl,
                reason,
                command: command.clone(),
                source_addresses: cmd.source_addresses.clone(),
                public_key: Some(paths.public.clone()),
                permit: cmd.permit.clone(),
                add_to_agent: None,
            };
            let mode = RequestMode {
                emergency: cmd.emergency,
                no_wait: false,
            };
            // The approval wait's one status line, as for `request`.
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
            match result? {
                RequestResult::Issued(o) => {
                    let r = &o.response;
                    if r.emergency {
                        eprintln!(
                            "EMERGENCY grant: alerts were sent and the grant must be reviewed."
                        );
                    }
                    eprintln!(
                        "breakglass: certificate written to {cert_shown} (grant {}, serial {}, tier {}, {} left)",
                        esc(&r.grant_id),
                        r.serial,
                        esc(&r.tier),
                        humantime::format_duration(Duration::from_secs(commands::remaining(
                            r.valid_before
                        )))
                    );
                }
                RequestResult::Pending(info) => {
                    return Err(CliError::NotIssued(format!(
                        "request {} is still pending",
                        esc(&info.request_id)
                    )));
                }
            }
        }
    }
    // Only returns when ssh could not be started.
    let err = Command::new("ssh").args(&argv).exec();
    Err(CliError::Io(format!(
        "running ssh: {err}; is OpenSSH's client installed and on PATH?"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_test_support::cert::{CertSpec, TestCa, new_key, sign_cert};

    struct Case {
        ca: TestCa,
        key: ssh_key::PrivateKey,
    }

    impl Case {
        fn new() -> Self {
            Self {
                ca: TestCa::new(),
                key: new_key(),
            }
        }
        fn cert(&self, spec: &CertSpec) -> String {
            sign_cert(&self.ca, &self.key, spec).to_openssh().unwrap()
        }
        fn check(
            &self,
            spec: &CertSpec,
            user: &str,
            host: &str,
            cmd: Option<&str>,
        ) -> Result<u64, String> {
            let key = self.key.public_key().clone();
            let want = Want {
                key: &key,
                user,
                hosts: &[host],
                command: cmd,
                permits: &[],
            };
            check_certificate(&self.cert(spec), &want, unix_now(), MIN_VALID)
                .map(|(c, _)| c.serial())
        }
    }

    #[test]
    fn a_live_certificate_for_the_user_and_host_is_reused() {
        let c = Case::new();
        let spec = CertSpec::new(1, "alice", 600).with_hosts("db-*");
        assert_eq!(c.check(&spec, "alice", "db-7", None), Ok(10_001));
        // Any command runs under a certificate without force-command.
        assert_eq!(c.check(&spec, "alice", "db-7", Some("uptime")), Ok(10_001));
    }

    #[test]
    fn a_certificate_that_misses_any_part_of_the_login_is_not_reused() {
        let c = Case::new();
        let live = CertSpec::new(1, "alice", 600).with_hosts("db-*");
        let why = |r: Result<u64, String>| r.unwrap_err();
        assert!(why(c.check(&live, "bob", "db-7", None)).contains("not bob"));
        assert!(why(c.check(&live, "alice", "web-1", None)).contains("does not cover web-1"));
        let soon = CertSpec::new(1, "alice", 30).with_hosts("db-*");
        assert!(why(c.check(&soon, "alice", "db-7", None)).contains("expires in"));
        let mut gone = CertSpec::new(1, "alice", 0).with_hosts("db-*");
        gone.valid_before -= 10;
        assert!(why(c.check(&gone, "alice", "db-7", None)).contains("expired"));
        let forced = live.clone().with_force_command("/usr/bin/id");
        assert_eq!(
            c.check(&forced, "alice", "db-7", Some("/usr/bin/id")),
            Ok(10_001)
        );
        assert!(why(c.check(&forced, "alice", "db-7", None)).contains("only runs"));
        assert!(why(c.check(&forced, "alice", "db-7", Some("id"))).contains("only runs"));
        // Another key's certificate.
        let other = Case {
            ca: TestCa::new(),
            key: new_key(),
        };
        let key = c.key.public_key().clone();
        let want = Want {
            key: &key,
            user: "alice",
            hosts: &["db-7"],
            command: None,
            permits: &[],
        };
        assert!(
            check_certificate(&other.cert(&live), &want, unix_now(), MIN_VALID)
                .unwrap_err()
                .contains("another key")
        );
        // Extensions asked for with --permit.
        let permits = ["permit-X11-forwarding".to_owned()];
        let want = Want {
            permits: &permits,
            ..want
        };
        assert!(
            check_certificate(&c.cert(&live), &want, unix_now(), MIN_VALID)
                .unwrap_err()
                .contains("lacks the extension permit-X11-forwarding")
        );
        // Not ours at all.
        let mut foreign = live.clone();
        foreign.key_id = Some("alice@laptop".into());
        assert!(
            why(c.check(&foreign, "alice", "db-7", None)).contains("not a breakglass certificate")
        );
        assert!(check_certificate("ssh-ed25519 AAAA", &want, unix_now(), MIN_VALID).is_err());
    }

    #[test]
    fn destinations_split_like_ssh_and_refuse_patterns_and_options() {
        assert_eq!(split_destination("db-7").unwrap(), (None, "db-7"));
        assert_eq!(
            split_destination("postgres@db-7.prod.example").unwrap(),
            (Some("postgres"), "db-7.prod.example")
        );
        for bad in ["", "alice@", "-oProxyCommand=x", "db-*", "a b"] {
            assert!(split_destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_gets_key_and_certificate_first_then_the_users_arguments() {
        let paths = KeyPaths::from_public(Path::new("/home/a/.ssh/id_ed25519.pub"));
        let cmd = SshCmd {
            destination: "db-7".into(),
            command: vec![],
            login: None,
            port: Some(2222),
            ssh_options: vec!["ProxyJump=bastion".into()],
            jump: None,
            ssh_config: None,
            ssh_args: vec!["-t".into()],
            new: false,
            ttl: None,
            reason: None,
            emergency: false,
            source_addresses: vec![],
            public_key: None,
            permit: vec![],
        };
        let argv = ssh_argv(&paths, &cmd.passthrough(), "alice", "db-7", &["id".into()]).unwrap();
        let argv: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "-i",
                "/home/a/.ssh/id_ed25519",
                "-o",
                "CertificateFile=\"/home/a/.ssh/id_ed25519-cert.pub\"",
                "-o",
                "IdentitiesOnly=yes",
                "-p",
                "2222",
                "-o",
                "ProxyJump=bastion",
                "-t",
                "-l",
                "alice",
                "--",
                "db-7",
                "id"
            ]
        );
        assert_eq!(ssh_path(Path::new("/k/50%")).unwrap(), "/k/50%%");
        assert!(ssh_path(Path::new("/k/\"x")).is_err());
    }
}
