//! `breakglass drill --host H --as USER`: a real break-glass drill against a canary host.
//!
//! Build it before you need it, test it often: the drill walks the whole emergency path
//! and times it. It makes a throw-away Ed25519 key, asks the CA for a drill grant (a tier
//! with `drill = true`: no approval, a few minutes, only the forced command
//! [`DRILL_COMMAND`]), logs in with the system `ssh`, waits for the command's output,
//! and then polls the daemon until the session's open and close records (shipped by
//! `pam_breakglass` on the host) are in the audit log. It prints the time from request
//! to shell and from logout to audit record, and reports the outcome to the daemon,
//! which records it in the audit log and alerts a failure like an emergency.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use breakglass_proto::text;
use breakglass_proto::v1::{
    GrantRef, ReportDrillRequest, RequestCertificateRequest, RequestCertificateResponse,
};
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

pub use breakglass_proto::profile::DRILL_COMMAND;
/// The line [`DRILL_COMMAND`] prints: seeing it means the shell was reached.
pub const MARKER: &str = "breakglass-drill";
/// How often the daemon is asked whether the session's records have arrived.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// `breakglass drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillCmd {
    /// Canary host to log in to (the name the CA's drill rule and the host's
    /// pam_breakglass `host=` use)
    #[arg(long, value_name = "HOST")]
    pub host: String,
    /// Unix account to log in as (a dedicated drill account is best)
    #[arg(long = "as", value_name = "USER")]
    pub user: String,
    /// Lifetime of the drill certificate, e.g. 5m (within the drill tier's max_ttl)
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::flags::parse_positive_duration)]
    pub ttl: Duration,
    /// Longest wait for each step: the request, the login with its command, and the
    /// session's open and close records reaching the audit log after logout (the default
    /// outlasts breakglass-ship.timer's minute, for hosts whose module has no ship= option)
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = crate::flags::parse_positive_duration)]
    pub timeout: Duration,
    /// sshd port on the host
    #[arg(long, value_name = "PORT", default_value_t = 22)]
    pub port: u16,
    /// Extra ssh option, passed as `-o OPTION` (repeat), e.g. HostName=10.0.0.7
    #[arg(long = "ssh-option", value_name = "OPTION")]
    pub ssh_options: Vec<String>,
    /// known_hosts file holding the host's key [default: ssh's own known_hosts files]
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Reason recorded with the drill grant
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "scheduled break-glass drill"
    )]
    pub reason: String,
}

/// The steps of a drill, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Preparing the throw-away key.
    Setup,
    /// Asking the CA for the drill grant.
    Request,
    /// Logging in with ssh.
    Login,
    /// The drill command's output.
    Command,
    /// The session's open record reaching the audit log.
    SessionOpen,
    /// The session's close record reaching the audit log.
    SessionClose,
    /// Recording the outcome with the daemon.
    Report,
}

impl Step {
    /// The name printed and recorded (`failed_step`).
    pub fn name(self) -> &'static str {
        match self {
            Step::Setup => "setup",
            Step::Request => "request",
            Step::Login => "login",
            Step::Command => "command",
            Step::SessionOpen => "session-open",
            Step::SessionClose => "session-close",
            Step::Report => "report",
        }
    }
}

/// Why a drill failed: the step, what happened, and what to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The step that failed.
    pub step: Step,
    /// What happened. Safe to print: what ssh and the daemon said is escaped where it
    /// enters ([`text::escape`]).
    pub detail: String,
    /// What to check.
    pub hint: String,
}

/// What a drill found.
#[derive(Clone, Debug)]
pub struct DrillOutcome {
    /// The drill grant, once issued.
    pub grant: Option<RequestCertificateResponse>,
    /// From the start of the request to the drill command's output.
    pub request_to_shell: Option<Duration>,
    /// From the end of the ssh session to both its records being in the audit log.
    pub logout_to_audit: Option<Duration>,
    /// The first failure, if any.
    pub failure: Option<Failure>,
}

fn fail(step: Step, detail: impl Into<String>, hint: impl Into<String>) -> Failure {
    Failure {
        step,
        detail: detail.into(),
        hint: hint.into(),
    }
}

fn failed(out: &mut DrillOutcome, f: Failure, progress: &mut dyn FnMut(&str)) {
    progress(&format!("FAIL  {:<13} {}", f.step.name(), f.detail));
    out.failure = Some(f);
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

/// Runs `breakglass drill` and prints what it finds; `Err` when the drill failed.
pub async fn run(cmd: DrillCmd, target: &Target) -> Result<(), CliError> {
    println!(
        "breakglass drill: {}@{} port {} (timeout {} per step)",
        cmd.user,
        cmd.host,
        cmd.port,
        humantime::format_duration(cmd.timeout)
    );
    let outcome = drill(target, &cmd, |line| println!("  {line}")).await;
    println!(
        "request to shell:       {}",
        outcome.request_to_shell.map_or("not reached".into(), secs)
    );
    println!(
        "logout to audit record: {}",
        outcome.logout_to_audit.map_or("not reached".into(), secs)
    );
    let report = match &outcome.grant {
        Some(g) => Some(report(target, &g.grant_id, &outcome).await),
        None => None,
    };
    let what = format!("break-glass drill on {} as {}", cmd.host, cmd.user);
    match (&outcome.failure, report) {
        (None, Some(Ok(index))) => {
            println!(
                "PASS: {what}: request to shell {}, logout to audit record {} (grant {}, audit event {index})",
                outcome.request_to_shell.map_or("-".into(), secs),
                outcome.logout_to_audit.map_or("-".into(), secs),
                outcome.grant.as_ref().map_or("-", |g| g.grant_id.as_str()),
            );
            Ok(())
        }
        (None, report) => {
            let why = match report {
                Some(Err(e)) => e.to_string(),
                _ => "no drill grant".into(),
            };
            println!(
                "FAIL: {what} failed at step report: every step passed, but the outcome could not be recorded: {why}"
            );
            println!(
                "  check: that breakglass-ca is reachable and its audit log writable, then run the drill again"
            );
            Err(CliError::DrillFailed(format!(
                "drill failed at step report: {why}"
            )))
        }
        (Some(f), report) => {
            println!(
                "FAIL: {what} failed at step {}: {}",
                f.step.name(),
                f.detail
            );
            println!("  check: {}", f.hint);
            match report {
                Some(Ok(index)) => println!(
                    "  reported to breakglass-ca (audit event {index}): the failure is alerted like an emergency"
                ),
                Some(Err(e)) => println!("  NOT reported to breakglass-ca: {e}"),
                None => println!(
                    "  NOT reported to breakglass-ca: there is no drill grant to report on (this exit status is the alert)"
                ),
            }
            Err(CliError::DrillFailed(format!(
                "drill failed at step {}: {}",
                f.step.name(),
                f.detail
            )))
        }
    }
}

/// Records the outcome with the daemon; returns the audit event's index.
async fn report(target: &Target, grant: &str, o: &DrillOutcome) -> Result<u64, CliError> {
    let mut client = connect::client(target)?;
    let r = client
        .report_drill(ReportDrillRequest {
            grant_id: grant.to_owned(),
            passed: o.failure.is_none(),
            failed_step: o
                .failure
                .as_ref()
                .map_or(String::new(), |f| f.step.name().to_owned()),
            detail: o.failure.as_ref().map_or(String::new(), |f| {
                // Free text the daemon accepts (the detail holds no hazard; cut to length).
                text::fit_free_text(
                    &format!("{} (check: {})", f.detail, f.hint),
                    text::MAX_TEXT_BYTES,
                )
            }),
            request_to_shell_ms: ms(o.request_to_shell),
            logout_to_audit_ms: ms(o.logout_to_audit),
        })
        .await
        .answer(target)?;
    Ok(r.audit_index)
}

/// Runs the drill's steps (without reporting), calling `progress` with one line per step.
pub async fn drill(
    target: &Target,
    cmd: &DrillCmd,
    mut progress: impl FnMut(&str),
) -> DrillOutcome {
    let mut out = DrillOutcome {
        grant: None,
        request_to_shell: None,
        logout_to_audit: None,
        failure: None,
    };

    // A private directory (0700) for a key that lives only as long as the drill.
    let dir = match tempfile::Builder::new()
        .prefix("breakglass-drill-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            let f = fail(
                Step::Setup,
                format!("cannot create a temporary directory: {e}"),
                "that TMPDIR (or /tmp) exists and is writable",
            );
            failed(&mut out, f, &mut progress);
            return out;
        }
    };
    let (key, public_key) = match make_key(dir.path()).await {
        Ok(k) => k,
        Err(detail) => {
            let f = fail(
                Step::Setup,
                detail,
                "that ssh-keygen (openssh-client) is installed",
            );
            failed(&mut out, f, &mut progress);
            return out;
        }
    };

    // Request → shell.
    let start = Instant::now();
    let grant = match request(target, cmd, public_key).await {
        Ok(g) => g,
        Err(detail) => {
            let f = fail(
                Step::Request,
                detail,
                format!(
                    "that breakglass-ca is reachable with this client identity and that a rule of a drill tier (drill = true) allows it {}@{} with the command \"{DRILL_COMMAND}\"",
                    cmd.user, cmd.host
                ),
            );
            failed(&mut out, f, &mut progress);
            return out;
        }
    };
    progress(&format!(
        "ok    {:<13} grant {} (tier {}, rule {}, serial {}) in {}",
        Step::Request.name(),
        text::escaped(&grant.grant_id),
        text::escaped(&grant.tier),
        text::escaped(&grant.rule),
        grant.serial,
        secs(start.elapsed())
    ));
    let grant_id = grant.grant_id.clone();
    out.grant = Some(grant.clone());
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    if let Err(e) = std::fs::write(&cert, format!("{}\n", grant.certificate.trim_end())) {
        let f = fail(
            Step::Setup,
            format!("cannot write the certificate {}: {e}", cert.display()),
            "that the temporary directory is writable",
        );
        failed(&mut out, f, &mut progress);
        return out;
    }

    let login = login(cmd, &key, &cert, start).await;
    let logout = Instant::now();
    match login {
        Ok(shell) => {
            out.request_to_shell = Some(shell);
            progress(&format!(
                "ok    {:<13} `{DRILL_COMMAND}` ran on {} as {} ({} from request to shell)",
                Step::Command.name(),
                cmd.host,
                cmd.user,
                secs(shell)
            ));
        }
        Err(f) => {
            failed(&mut out, f, &mut progress);
            return out;
        }
    }

    // Logout → audit record.
    match wait_for_records(target, cmd, &grant_id, logout, &mut progress).await {
        Ok(d) => out.logout_to_audit = Some(d),
        Err(f) => failed(&mut out, f, &mut progress),
    }
    drop(dir);
    out
}

/// Makes the throw-away Ed25519 key (mode 0600) in `dir`; returns its path and public line.
async fn make_key(dir: &Path) -> Result<(PathBuf, String), String> {
    let key = dir.join("id_ed25519");
    let out = tokio::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "breakglass-drill",
            "-f",
        ])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .map_err(|e| format!("reading the new public key: {e}"))?;
    Ok((key, public))
}

/// Asks for the drill grant.
async fn request(
    target: &Target,
    cmd: &DrillCmd,
    public_key: String,
) -> Result<RequestCertificateResponse, String> {
    let mut client = connect::client(target).map_err(|e| e.to_string())?;
    let wire = RequestCertificateRequest {
        public_key,
        principals: vec![cmd.user.clone()],
        hosts: vec![cmd.host.clone()],
        ttl_seconds: i64::try_from(cmd.ttl.as_secs()).unwrap_or(i64::MAX),
        reason: cmd.reason.clone(),
        force_command: DRILL_COMMAND.to_owned(),
        drill: true,
        ..Default::default()
    };
    match tokio::time::timeout(cmd.timeout, client.request_certificate(wire)).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(connect::failure(target, s).to_string()),
        Err(_) => Err(format!(
            "no drill grant within {} (drill tiers need no approval: is the daemon overloaded?)",
            humantime::format_duration(cmd.timeout)
        )),
    }
}

/// The `ssh` command of the drill.
pub fn ssh_command(cmd: &DrillCmd, key: &Path, cert: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("ssh");
    let connect_timeout = cmd.timeout.as_secs().clamp(1, 30);
    c.arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "KbdInteractiveAuthentication=no",
            "-o",
        ])
        .arg(format!("ConnectTimeout={connect_timeout}"))
        .arg("-p")
        .arg(cmd.port.to_string());
    if let Some(k) = &cmd.known_hosts {
        c.arg("-o")
            .arg(format!("UserKnownHostsFile={}", k.display()));
    }
    for o in &cmd.ssh_options {
        c.arg("-o").arg(o);
    }
    c.arg("-l")
        .arg(&cmd.user)
        .arg("--")
        .arg(&cmd.host)
        .arg(DRILL_COMMAND)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Logs in and waits for the marker and for ssh to exit; returns the time from `start`
/// to the marker.
async fn login(
    cmd: &DrillCmd,
    key: &Path,
    cert: &Path,
    start: Instant,
) -> Result<Duration, Failure> {
    let host = &cmd.host;
    let mut child = ssh_command(cmd, key, cert).spawn().map_err(|e| {
        fail(
            Step::Login,
            format!("cannot run ssh: {e}"),
            "that the OpenSSH client (ssh) is installed and on PATH",
        )
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text).await;
        }
        text
    });
    let run = async {
        let mut shell = None;
        if let Some(s) = stdout {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if shell.is_none() && line.trim() == MARKER {
                    shell = Some(start.elapsed());
                }
            }
        }
        (shell, child.wait().await)
    };
    let (shell, status) = match tokio::time::timeout(cmd.timeout, run).await {
        Ok(r) => r,
        Err(_) => {
            return Err(fail(
                Step::Login,
                format!(
                    "ssh to {host} did not finish within {}",
                    humantime::format_duration(cmd.timeout)
                ),
                format!(
                    "that sshd on {host} port {} answers, and that nothing waits for input there",
                    cmd.port
                ),
            ));
        }
    };
    let stderr = errors.await.unwrap_or_default();
    // What the remote side printed is shown to people and reported: escaped here, once.
    let last = text::escape(
        stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or(""),
    )
    .into_owned();
    let status = status.map_err(|e| {
        fail(
            Step::Login,
            format!("waiting for ssh: {e}"),
            "the system's process limits",
        )
    })?;
    let code = status.code();
    match (shell, code) {
        (Some(d), Some(0)) => Ok(d),
        (Some(_), _) => Err(fail(
            Step::Command,
            format!("`{DRILL_COMMAND}` printed its line but ssh ended with {status}: {last}"),
            format!("sshd's log on {host}"),
        )),
        (None, Some(255)) => Err(login_failure(cmd, &last)),
        (None, Some(254)) => Err(fail(
            Step::Command,
            format!(
                "sshd accepted the certificate but did not open the session (exit 254): {last}"
            ),
            format!(
                "the PAM session stack of sshd on {host}: pam_breakglass denies sessions it cannot verify; see its authpriv syslog lines and run `breakglass host doctor` on {host}"
            ),
        )),
        (None, _) => Err(fail(
            Step::Command,
            format!(
                "`{DRILL_COMMAND}` did not print \"{MARKER}\" (ssh ended with {status}){}",
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            ),
            format!(
                "that sshd on {host} runs the certificate's forced command, and that {}'s login shell works",
                cmd.user
            ),
        )),
    }
}

/// Explains an ssh failure (exit 255) from its last stderr line.
fn login_failure(cmd: &DrillCmd, last: &str) -> Failure {
    let host = &cmd.host;
    let hint = if last.contains("Permission denied") {
        format!(
            "that sshd on {host} trusts the CA (the `breakglass ca-keys` lines in TrustedUserCAKeys), that its RevokedKeys KRL is valid, and that the account {} exists; run `breakglass host doctor` on {host}",
            cmd.user
        )
    } else if last.contains("Host key verification failed") || last.contains("HOST IDENTIFICATION")
    {
        format!("the host key of {host}: pass a known_hosts file with --known-hosts FILE")
    } else if last.contains("Connection refused")
        || last.contains("timed out")
        || last.contains("Could not resolve")
        || last.contains("No route")
    {
        format!(
            "that sshd runs on {host} port {} and is reachable from here (--port, --ssh-option HostName=ADDRESS)",
            cmd.port
        )
    } else {
        format!("sshd's log on {host}, and run `breakglass host doctor` there")
    };
    fail(
        Step::Login,
        format!(
            "ssh {}@{host} failed: {}",
            cmd.user,
            if last.is_empty() { "no message" } else { last }
        ),
        hint,
    )
}

/// Polls the daemon until the grant's session has an open and a close record; returns the
/// time from `logout` until both were seen.
async fn wait_for_records(
    target: &Target,
    cmd: &DrillCmd,
    grant: &str,
    logout: Instant,
    progress: &mut dyn FnMut(&str),
) -> Result<Duration, Failure> {
    let host = &cmd.host;
    let deadline = logout + cmd.timeout;
    let mut last_error: Option<String> = None;
    let mut opened_seen = false;
    let mut client = match connect::client(target) {
        Ok(c) => Some(c),
        Err(e) => {
            last_error = Some(e.to_string());
            None
        }
    };
    loop {
        if let Some(c) = client.as_mut() {
            match c
                .get_grant_sessions(GrantRef {
                    grant_id: grant.to_owned(),
                })
                .await
            {
                Ok(r) => {
                    last_error = None;
                    let sessions = r.into_inner().sessions;
                    let opened = sessions.iter().any(|s| s.opened_at > 0);
                    let closed = sessions
                        .iter()
                        .any(|s| s.opened_at > 0 && (s.closed_at > 0 || !s.ended.is_empty()));
                    if opened && !opened_seen {
                        opened_seen = true;
                        progress(&format!(
                            "ok    {:<13} in the audit log {} after logout",
                            Step::SessionOpen.name(),
                            secs(logout.elapsed())
                        ));
                    }
                    if closed {
                        let d = logout.elapsed();
                        progress(&format!(
                            "ok    {:<13} in the audit log {} after logout",
                            Step::SessionClose.name(),
                            secs(d)
                        ));
                        return Ok(d);
                    }
                }
                Err(s) => last_error = Some(connect::failure(target, s).to_string()),
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
    let within = humantime::format_duration(cmd.timeout);
    let asking = last_error
        .map(|e| format!(" (asking the daemon failed: {e})"))
        .unwrap_or_default();
    if opened_seen {
        Err(fail(
            Step::SessionClose,
            format!(
                "the session-open record of grant {grant} is in the audit log, but no session-close record arrived within {within} of logout{asking}"
            ),
            format!(
                "the session records waiting in the spool on {host}: does `breakglass host ship` (the module's ship= option or breakglass-ship.timer) deliver them with {host}'s host identity?"
            ),
        ))
    } else {
        Err(fail(
            Step::SessionOpen,
            format!(
                "no session-open record of grant {grant} reached the audit log within {within} of logout{asking}"
            ),
            format!(
                "is pam_breakglass in sshd's PAM stack on {host}? run `breakglass host doctor` on {host}; if it is, check that the module ships its records (ship=/ship_config= or breakglass-ship.timer) with {host}'s host identity"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        d: DrillCmd,
    }

    #[test]
    fn defaults_are_a_five_minute_grant_and_a_minute_per_step() {
        let t = T::try_parse_from(["x", "--host", "canary-1", "--as", "drill"]).unwrap();
        assert_eq!(t.d.ttl, Duration::from_secs(300));
        assert_eq!(t.d.timeout, Duration::from_secs(90));
        assert_eq!(t.d.port, 22);
        assert!(T::try_parse_from(["x", "--host", "h", "--as", "u", "--timeout", "0s"]).is_err());
    }

    #[test]
    fn the_ssh_command_uses_only_the_drill_key_in_batch_mode() {
        let t = T::try_parse_from([
            "x",
            "--host",
            "canary-1",
            "--as",
            "drill",
            "--port",
            "2222",
            "--ssh-option",
            "HostName=127.0.0.1",
            "--known-hosts",
            "/etc/kh",
        ])
        .unwrap();
        let c = ssh_command(&t.d, Path::new("/tmp/k"), Path::new("/tmp/k-cert.pub"));
        let args: Vec<String> = c
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        for part in [
            "-i /tmp/k",
            "CertificateFile=/tmp/k-cert.pub",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "BatchMode=yes",
            "-p 2222",
            "UserKnownHostsFile=/etc/kh",
            "-o HostName=127.0.0.1",
            "-l drill -- canary-1 echo breakglass-drill",
        ] {
            assert!(line.contains(part), "{part:?} missing in {line}");
        }
    }

    #[test]
    fn ssh_failures_say_what_to_check() {
        let t = T::try_parse_from(["x", "--host", "canary-1", "--as", "drill"]).unwrap();
        let f = login_failure(&t.d, "drill@canary-1: Permission denied (publickey).");
        assert_eq!(f.step, Step::Login);
        assert!(f.hint.contains("TrustedUserCAKeys"), "{}", f.hint);
        let f = login_failure(&t.d, "Host key verification failed.");
        assert!(f.hint.contains("--known-hosts"), "{}", f.hint);
        let f = login_failure(
            &t.d,
            "ssh: connect to host canary-1 port 22: Connection refused",
        );
        assert!(f.hint.contains("port 22"), "{}", f.hint);
    }
}
