//! The crash loop (`scripts/crash-loop`, the `crash-loop` binary): the real
//! `breakglass-ca` under concurrent issuance from mTLS clients is killed with SIGKILL at a
//! random moment and started again, cycle after cycle. After each kill, every
//! certificate a client received must have its grant in the log, and the log must verify
//! (and extend what was verified after the kill before: nothing lost, nothing rewritten).
//!
//! SIGKILL loses the process, not the page cache: this shows that nothing is acknowledged
//! before it is written and that recovery keeps every acknowledged event, not what a power
//! cut does to the disk (RELIABILITY.md).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::verify::{ScanOptions, scan_log, verify_dir};
use breakglass_proto::audit::{Event, EventKind, NoteVerifier};
use breakglass_proto::profile::{GrantId, Profile};
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::{GetCheckpointRequest, RequestCertificateRequest};
use ssh_key::rand_core::{OsRng, RngCore};

use crate::ca_process::CaProcess;

/// Longest one certificate request may take before the client counts it as failed.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the clients may take to notice the kill and stop.
const CLIENTS_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the daemon logs while the loop runs: start-up figures and recovery, not every
/// certificate it issues.
const DAEMON_LOG_FILTER: &str = "warn,breakglass_ca::server=info,breakglass_ca::audit=info";

/// How a crash loop runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `breakglass-ca` binary.
    pub daemon: PathBuf,
    /// Kill-and-restart cycles.
    pub cycles: u32,
    /// Concurrent mTLS clients requesting certificates.
    pub clients: usize,
    /// Shortest time the load runs before the kill.
    pub min_run: Duration,
    /// Longest time the load runs before the kill.
    pub max_run: Duration,
    /// Where the temporary setup directory goes (default: the system's temp dir).
    pub tmp: Option<PathBuf>,
    /// Keep the setup directory (log, keys, daemon output) instead of removing it.
    pub keep: bool,
}

/// What a whole run found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Cycles completed.
    pub cycles: u32,
    /// Certificates clients received, over all cycles.
    pub acknowledged: u64,
    /// Received certificates whose grant is not in the log: must be 0.
    pub missing: u64,
    /// Why the log did not verify, if it did not.
    pub verify_failure: Option<String>,
    /// Start-up times after a kill, with the events in the log at that start.
    pub restarts: Vec<(Duration, u64)>,
}

impl Outcome {
    /// True when nothing was lost and the log verified after every cycle.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.verify_failure.is_none()
    }
}

/// What the log on disk holds after a kill, compared with what clients received.
#[derive(Clone, Debug)]
pub struct LogCheck {
    /// Events in the log (covered by its last valid checkpoint).
    pub size: u64,
    /// The last valid signed checkpoint (for the next check's `since`).
    pub note: Option<String>,
    /// Received certificates (serial, grant) with no matching grant among the new events.
    pub missing: Vec<(u64, GrantId)>,
    /// Grants logged among the new events that no client received (in flight at the kill).
    pub unreceived: usize,
    /// A torn tail found after the last checkpoint (cut by the daemon at its next start).
    pub torn_tail: Option<String>,
}

/// Verifies the log directory `dir` offline with `verifier` (every record, checkpoint and
/// signature; that it extends `since`, the checkpoint verified last time), then checks that
/// every certificate in `received` (serial → grant) has its `GrantIssued` among the events
/// from index `from` on. `Err` when the log does not verify.
pub fn check_log(
    dir: &Path,
    verifier: &NoteVerifier,
    since: Option<&str>,
    from: u64,
    received: &HashMap<u64, GrantId>,
) -> Result<LogCheck, String> {
    let report = verify_dir(dir, verifier, since)
        .map_err(|e| format!("the audit log {} does NOT verify: {e}", dir.display()))?;
    let mut logged: HashMap<u64, GrantId> = HashMap::new();
    scan_log(dir, verifier, &ScanOptions::default(), |e| {
        if e.index >= from {
            let event = Event::decode(e.leaf).map_err(|d| d.to_string())?;
            if let EventKind::GrantIssued(g) = event.kind {
                logged.insert(g.serial, g.grant_id);
            }
        }
        Ok(())
    })
    .map_err(|e| format!("the audit log {} does NOT verify: {e}", dir.display()))?;
    let mut missing: Vec<(u64, GrantId)> = received
        .iter()
        .filter(|(serial, grant)| logged.get(serial) != Some(grant))
        .map(|(s, g)| (*s, *g))
        .collect();
    missing.sort_unstable();
    let unreceived = logged.keys().filter(|s| !received.contains_key(s)).count();
    let s = report.summary;
    Ok(LogCheck {
        size: s.size,
        note: s.last_checkpoint.map(|c| c.note),
        missing,
        unreceived,
        torn_tail: s.torn_tail.map(|t| {
            format!(
                "{}: {} bytes after byte {} ({})",
                t.segment.display(),
                t.len,
                t.offset,
                t.reason
            )
        }),
    })
}

/// What the clients of one cycle saw.
#[derive(Debug, Default)]
struct Tally {
    /// Certificates received: serial → grant, read from the certificate itself.
    received: HashMap<u64, GrantId>,
    /// Failed requests while the daemon was alive (retried).
    errors: u64,
    last_error: Option<String>,
    /// Responses that are not a well-formed breakglass certificate.
    malformed: Vec<String>,
}

/// One client: requests certificates one after another until the daemon is killed.
async fn client(target: Target, public_key: String, killed: Arc<AtomicBool>) -> Tally {
    let mut t = Tally::default();
    let channel = match connect::channel(&target) {
        Ok(c) => c,
        Err(e) => {
            t.errors += 1;
            t.last_error = Some(e.to_string());
            return t;
        }
    };
    let mut c = BreakGlassClient::new(channel);
    let request = RequestCertificateRequest {
        public_key,
        principals: vec!["bgcrash".into()],
        hosts: vec!["localhost".into()],
        ttl_seconds: 300,
        reason: "crash loop".into(),
        ..Default::default()
    };
    while !killed.load(Ordering::SeqCst) {
        match tokio::time::timeout(RPC_TIMEOUT, c.request_certificate(request.clone())).await {
            Ok(Ok(resp)) => {
                let resp = resp.into_inner();
                match received_grant(&resp.certificate, resp.serial) {
                    Ok((serial, grant)) => {
                        t.received.insert(serial, grant);
                    }
                    Err(e) => t.malformed.push(e),
                }
            }
            Ok(Err(status)) if !killed.load(Ordering::SeqCst) => {
                t.errors += 1;
                t.last_error = Some(format!("{:?}: {}", status.code(), status.message()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) if !killed.load(Ordering::SeqCst) => {
                t.errors += 1;
                t.last_error = Some(format!("no answer within {RPC_TIMEOUT:?}"));
            }
            _ => break,
        }
    }
    t
}

/// The serial and grant of a received certificate, read from the certificate itself.
fn received_grant(certificate: &str, serial: u64) -> Result<(u64, GrantId), String> {
    let cert = ssh_key::Certificate::from_openssh(certificate)
        .map_err(|e| format!("unparsable certificate ({e}): {certificate:.80}"))?;
    let profile =
        Profile::from_certificate(&cert).map_err(|e| format!("certificate profile: {e}"))?;
    if cert.serial() != serial {
        return Err(format!(
            "the response says serial {serial} but the certificate has {}",
            cert.serial()
        ));
    }
    Ok((cert.serial(), profile.grant_id))
}

/// A uniformly random duration in `[min, max]`.
fn random_between(min: Duration, max: Duration) -> Duration {
    let span = max.saturating_sub(min).as_micros() as u64;
    if span == 0 {
        return min;
    }
    min + Duration::from_micros(OsRng.next_u64() % (span + 1))
}

/// The `p` quantile (0 to 1) of sorted values.
fn quantile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The number after `key=` on the last line of `text` that contains `line`.
fn logged_figure(text: &str, line: &str, key: &str) -> Option<u64> {
    let l = text.lines().rev().find(|l| l.contains(line))?;
    let at = l.find(key)? + key.len();
    l[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Events in the log as the running daemon reports it (Audit API, as the sample auditor).
async fn daemon_log_size(target: &Target) -> Result<u64, String> {
    let ch = connect::channel(target).map_err(|e| e.to_string())?;
    let mut a = AuditClient::new(ch);
    tokio::time::timeout(RPC_TIMEOUT, a.get_checkpoint(GetCheckpointRequest {}))
        .await
        .map_err(|_| "GetCheckpoint: no answer".to_string())?
        .map(|r| r.into_inner().size)
        .map_err(|s| format!("GetCheckpoint: {}", s.message()))
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Runs the loop, printing one line per cycle and a summary to `out`. `Err` when the loop
/// could not run (set-up, a start that failed); a lost grant or a log that does not verify
/// is an [`Outcome`] that did not pass (the loop stops at the first such cycle).
pub async fn run(opts: &Options, out: &mut dyn Write) -> Result<Outcome, String> {
    if opts.cycles == 0 || opts.clients == 0 || opts.min_run > opts.max_run {
        return Err(
            "--cycles and --clients must be at least 1, and --min-run at most --max-run".into(),
        );
    }
    let mut tmp = match &opts.tmp {
        Some(d) => tempfile::Builder::new().prefix("crash-loop.").tempdir_in(d),
        None => tempfile::Builder::new().prefix("crash-loop.").tempdir(),
    }
    .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    if opts.keep {
        tmp.disable_cleanup(true);
    }
    let setup = tmp.path().join("ca");
    let mut ca = CaProcess::init(&opts.daemon, &setup)?;
    // A million syslog lines would flood the machine's log; the socket is not needed here.
    ca.edit_config(
        "syslog_socket = \"/dev/log\"",
        "syslog_socket = \"no-syslog.sock\"",
    )?;
    // The clients stand for hosts and people on many addresses, but all come from
    // 127.0.0.1: let all of them shake hands at once instead of shedding the surplus.
    ca.edit_config(
        "max_handshakes = 256",
        &format!("max_handshakes = {}", opts.clients.max(256)),
    )?;
    ca.edit_config(
        "max_handshakes_per_source = 32",
        &format!("max_handshakes_per_source = {}", opts.clients.max(32)),
    )?;
    ca.set_env("RUST_LOG", DAEMON_LOG_FILTER);
    let audit_dir = ca.audit_dir()?;
    let public_key = {
        let path = crate::ssh_keygen(tmp.path(), "id_crash", &["-t", "ed25519"]);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let sre = ca.target("sre");
    let auditor = ca.target("auditor");
    let w = |out: &mut dyn Write, s: String| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    w(
        out,
        format!(
            "crash loop: {} cycles; {} mTLS clients requesting certificates; SIGKILL after {}..{} of load\n  daemon: {}\n  setup:  {}{}",
            opts.cycles,
            opts.clients,
            secs(opts.min_run),
            secs(opts.max_run),
            opts.daemon.display(),
            setup.display(),
            if opts.keep {
                " (kept)"
            } else {
                " (removed at the end)"
            }
        ),
    );

    let mut outcome = Outcome::default();
    let mut since: Option<String> = None;
    let mut size = 0u64;
    let mut verify_times = Vec::new();
    let mut in_flight = 0usize;
    let mut client_errors = 0u64;
    let mut torn_tails = 0usize;
    let mut cuts_logged = 0usize;
    for cycle in 1..=opts.cycles + 1 {
        // Start (for cycle > 1: restart after the kill) on the log as the kill left it.
        let log_from = ca.log_text().len();
        let restart = match ca.start().await {
            Ok(d) => d,
            // Not starting again after a kill is what the loop is there to find.
            Err(e) if cycle > 1 => {
                let e = format!("breakglass-ca did not start again after the kill: {e}");
                w(out, format!("cycle {cycle}: FAIL: {e}"));
                outcome.verify_failure = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        let started_log = ca.log_text();
        let fresh = started_log.get(log_from..).unwrap_or_default();
        let open_ms = logged_figure(fresh, "audit log opened", "elapsed_ms=");
        let replay_ms = logged_figure(
            fresh,
            "state loaded: snapshot and the audit log after it",
            "elapsed_ms=",
        );
        cuts_logged += fresh.matches("cutting the torn tail").count();
        let recovered = daemon_log_size(&auditor).await?;
        if recovered < size {
            outcome.verify_failure = Some(format!(
                "the daemon restarted with {recovered} events, but the log verified after the kill holds {size}"
            ));
            break;
        }
        if cycle > 1 {
            outcome.restarts.push((restart, size));
        }
        if cycle > opts.cycles {
            // The last start: recovery after the last kill, then a clean stop.
            w(
                out,
                format!(
                    "final start: serving after {} at {size} events (scan {} ms, replay {} ms)",
                    secs(restart),
                    open_ms.map_or("?".into(), |v| v.to_string()),
                    replay_ms.map_or("?".into(), |v| v.to_string()),
                ),
            );
            break;
        }

        let killed = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..opts.clients)
            .map(|_| tokio::spawn(client(sre.clone(), public_key.clone(), killed.clone())))
            .collect();
        let ran = random_between(opts.min_run, opts.max_run);
        tokio::time::sleep(ran).await;
        killed.store(true, Ordering::SeqCst);
        ca.kill9();

        let mut tally = Tally::default();
        let joined = tokio::time::timeout(CLIENTS_STOP_TIMEOUT, async {
            let mut all = Vec::new();
            for c in clients {
                all.push(c.await);
            }
            all
        })
        .await
        .map_err(|_| {
            format!("the clients did not stop within {CLIENTS_STOP_TIMEOUT:?} of the kill")
        })?;
        for t in joined {
            let t = t.map_err(|e| format!("a client task failed: {e}"))?;
            tally.received.extend(t.received);
            tally.errors += t.errors;
            if t.last_error.is_some() {
                tally.last_error = t.last_error;
            }
            tally.malformed.extend(t.malformed);
        }
        if let Some(m) = tally.malformed.first() {
            return Err(format!(
                "cycle {cycle}: {} responses were not well-formed certificates, e.g. {m}",
                tally.malformed.len()
            ));
        }
        client_errors += tally.errors;

        let verify_started = Instant::now();
        let checked = check_log(
            &audit_dir,
            &ca_verifier(&ca)?,
            since.as_deref(),
            size,
            &tally.received,
        );
        let verify_time = verify_started.elapsed();
        verify_times.push(verify_time);
        outcome.cycles = cycle;
        outcome.acknowledged += tally.received.len() as u64;
        let c = match checked {
            Ok(c) => c,
            Err(e) => {
                w(out, format!("cycle {cycle}: FAIL: {e}"));
                outcome.verify_failure = Some(e);
                break;
            }
        };
        outcome.missing += c.missing.len() as u64;
        in_flight += c.unreceived;
        if c.torn_tail.is_some() {
            torn_tails += 1;
        }
        w(
            out,
            format!(
                "cycle {cycle:>3}/{}: start {} at {size} events (scan {} ms, replay {} ms); load {} -> SIGKILL; received {:>6}, missing {}, in flight {}, client errors {}; log {} events verified in {}{}",
                opts.cycles,
                secs(restart),
                open_ms.map_or("?".into(), |v| v.to_string()),
                replay_ms.map_or("?".into(), |v| v.to_string()),
                secs(ran),
                tally.received.len(),
                c.missing.len(),
                c.unreceived,
                tally.errors,
                c.size,
                secs(verify_time),
                c.torn_tail
                    .as_ref()
                    .map_or(String::new(), |t| format!("; torn tail {t}")),
            ),
        );
        if let Some(e) = tally.last_error.filter(|_| tally.errors > 0) {
            w(out, format!("  last client error before the kill: {e}"));
        }
        if !c.missing.is_empty() {
            w(
                out,
                format!(
                    "cycle {cycle}: FAIL: {} received certificates have no grant in the log, e.g. {}",
                    c.missing.len(),
                    c.missing
                        .iter()
                        .take(5)
                        .map(|(s, g)| format!("serial {s} ({g})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            break;
        }
        size = c.size;
        since = c.note;
    }

    // A clean stop after the final start, and one more verification.
    if outcome.passed() && outcome.cycles == opts.cycles {
        let status = ca.stop()?;
        if !status.success() {
            return Err(format!(
                "breakglass-ca did not stop cleanly on SIGTERM ({status}); last lines:\n{}",
                ca.log_tail(30)
            ));
        }
        if let Err(e) = check_log(
            &audit_dir,
            &ca_verifier(&ca)?,
            since.as_deref(),
            size,
            &HashMap::new(),
        ) {
            outcome.verify_failure = Some(e);
        }
    } else {
        ca.kill9();
        w(
            out,
            format!("daemon output, last lines:\n{}", ca.log_tail(20)),
        );
    }

    let mut restarts: Vec<Duration> = outcome.restarts.iter().map(|(d, _)| *d).collect();
    restarts.sort_unstable();
    verify_times.sort_unstable();
    let slowest = outcome
        .restarts
        .iter()
        .max_by_key(|(d, _)| *d)
        .copied()
        .unwrap_or_default();
    let biggest = outcome
        .restarts
        .iter()
        .max_by_key(|(_, n)| *n)
        .copied()
        .unwrap_or_default();
    w(
        out,
        format!(
            "\ncrash loop: {}\n  cycles:        {} of {} (SIGKILL under {} clients)\n  acknowledged:  {} certificates received by clients\n  missing:       {} (received, but no grant in the log)\n  in flight:     {} grants logged that no client received (answer lost in the kill)\n  client errors: {} while the daemon was alive (retried)\n  torn tails:    {} found after a kill, {} cut at a start\n  log:           {} events, verified after every kill (verify p50 {}, max {})\n  restart:       SIGKILL -> serving: min {}, p50 {}, max {} ({} events); at the largest history ({} events) {}",
            if outcome.passed() { "PASS" } else { "FAIL" },
            outcome.cycles,
            opts.cycles,
            opts.clients,
            outcome.acknowledged,
            outcome.missing,
            in_flight,
            client_errors,
            torn_tails,
            cuts_logged,
            size,
            secs(quantile(&verify_times, 0.5)),
            secs(quantile(&verify_times, 1.0)),
            secs(quantile(&restarts, 0.0)),
            secs(quantile(&restarts, 0.5)),
            secs(slowest.0),
            slowest.1,
            biggest.1,
            secs(biggest.0),
        ),
    );
    if let Some(e) = &outcome.verify_failure {
        w(out, format!("  verification: {e}"));
    }
    Ok(outcome)
}

/// The log's verifier key, from the setup's `log.pub`.
fn ca_verifier(ca: &CaProcess) -> Result<NoteVerifier, String> {
    breakglass_cli::audit::read_verifier(&ca.log_pub()).map_err(|e| e.to_string())
}
