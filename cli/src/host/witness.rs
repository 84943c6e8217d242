//! Hosts witness the CA's audit log: a rolled-back or forked log is noticed.
//!
//! The C2SP witness idea (`tlog-witness`: a witness keeps the latest checkpoint it saw of a
//! log and accepts a newer one only with a consistency proof from it) applied to hosts,
//! which talk to the daemon every minute anyway. Each host keeps, in its witness state file
//! (default `/var/lib/breakglass/witness`), the latest signed checkpoint of the audit log it
//! verified, the log's public key (pinned: `audit_key` in host.toml, or the key the daemon
//! sent at first contact) and the KRL version it accepted with it. Before `host sync-krl`
//! installs a KRL, before `host ship` delivers records, and at every (re)connect of
//! `host watch-revocations`, [`check`] sends that checkpoint to the daemon and gets the
//! daemon's current checkpoint with the consistency proof from it, and checks signature and
//! proof with the contract crate's [`check_extends`] (the function `audit verify --remote`
//! and the daemon use too). The daemon, shown the host's checkpoint, checks it as well and
//! stops issuing when its log does not extend it (`ca-daemon/src/witness.rs`).
//!
//! On failure the host refuses what the daemon serves (the installed KRL stays, records stay
//! in the spool), records the failure in the state file with the daemon's checkpoint as
//! evidence, writes `event=log_consistency_failed` to syslog (critical), reports it to the
//! daemon (which alerts), and exits 65; `host doctor` FAILs with the fix until a check
//! succeeds again (e.g. the CA's operators restored the lost events) or the host is
//! re-pinned with `host witness --reset` after they acknowledged the fork.
//!
//! One check at a time per state file (an `flock` on `<state>.lock`), so that `sync-krl`,
//! `ship` and the watcher, which may run together, never move the saved checkpoint back.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connect::Channel;
use bg_syslog::{Severity, Syslog};
use breakglass_proto::audit::{Checkpoint, Hash, NoteVerifier, check_extends};
use breakglass_proto::v1::witness_client::WitnessClient;
use breakglass_proto::v1::{WitnessCheckpointRequest, WitnessCheckpointResponse};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::commands::write_atomic;
use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::{Overrides, Target};

/// Default witness state file.
pub const DEFAULT_STATE: &str = "/var/lib/breakglass/witness";
/// Syslog ident of the host's witness lines.
pub const SYSLOG_IDENT: &str = "breakglass";
/// Format version of the state file.
const STATE_VERSION: u32 = 1;
/// Largest state file read.
const MAX_STATE_FILE: u64 = 256 * 1024;
/// Longest wait for another check of the same state file.
const LOCK_WAIT: Duration = Duration::from_secs(90);
/// Longest wait for the syslog lines to leave before a command returns.
const SYSLOG_FLUSH: Duration = Duration::from_millis(500);

/// What to do when a host's check fails, for messages and `host doctor`.
pub const FIX: &str = "the CA's audit log was rolled back or forked (events removed or \
    rewritten), or the daemon uses another log key. Tell the CA's operators: the daemon stops \
    issuing once a host shows it such a checkpoint; they investigate (and restore the audit \
    directory from a backup if events were lost) and acknowledge with `breakglass audit \
    acknowledge-fork --reason TEXT`. This host keeps refusing the log until a check succeeds \
    again; once the operators trust the log again, re-pin it with `breakglass host witness \
    --reset --reason TEXT`";

/// Where the host keeps what it witnessed, and how it checks. Flags win over the client
/// config (`witness_state`, `audit_key` in host.toml).
#[derive(Debug, Args, Clone, Default)]
pub struct WitnessArgs {
    /// Witness state: the latest checkpoint of the CA's audit log this host verified
    /// [default: witness_state of the client config, else /var/lib/breakglass/witness]
    #[arg(long, value_name = "FILE")]
    pub witness_state: Option<PathBuf>,
    /// The CA's audit log public key (log.pub) to pin [default: audit_key of the client
    /// config, else the key the daemon sends at first contact, pinned in the state file]
    #[arg(long, value_name = "FILE")]
    pub audit_key: Option<PathBuf>,
    /// Syslog socket for the witness lines (event=log_consistency_failed) [default: /dev/log]
    #[arg(long, value_name = "PATH")]
    pub syslog_socket: Option<PathBuf>,
}

impl WitnessArgs {
    /// Fills what the flags leave open from the client config file.
    pub fn with_config(mut self, overrides: &Overrides) -> Result<Self, CliError> {
        if self.witness_state.is_none() || self.audit_key.is_none() {
            let file = overrides.client_file()?;
            self.witness_state = self.witness_state.or(file.witness_state);
            self.audit_key = self.audit_key.or(file.audit_key);
        }
        Ok(self)
    }

    /// The state file.
    #[must_use]
    pub fn state_path(&self) -> PathBuf {
        self.witness_state
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE))
    }

    fn syslog(&self) -> Syslog {
        Syslog::new(
            SYSLOG_IDENT,
            self.syslog_socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(bg_syslog::DEFAULT_SOCKET)),
        )
    }

    fn pinned_key(&self) -> Result<Option<NoteVerifier>, CliError> {
        self.audit_key
            .as_deref()
            .map(crate::audit::read_verifier)
            .transpose()
    }
}

/// The witness state file (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessState {
    /// Format version (1).
    pub version: u32,
    /// The log's verifier key text (log.pub), pinned; empty before the first contact.
    pub log_key: String,
    /// The latest checkpoint of the log this host verified (signed note); empty before the
    /// first successful check.
    pub checkpoint: String,
    /// The KRL version this host accepted last (0: none yet).
    pub krl_version: u64,
    /// When a check last succeeded, Unix seconds.
    pub checked_at: u64,
    /// The last check's failure, until a check succeeds again or the state is reset.
    pub failure: Option<Failure>,
}

/// A failed check, kept with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// When, Unix seconds.
    pub at: u64,
    /// The daemon's address.
    pub server: String,
    /// What was found.
    pub message: String,
    /// The daemon's checkpoint that did not extend this host's (signed note): with the
    /// saved one, the evidence of the rollback or fork.
    pub daemon_checkpoint: String,
}

impl WitnessState {
    /// Size of the saved checkpoint, if there is one.
    #[must_use]
    pub fn size(&self) -> Option<u64> {
        note_size(&self.checkpoint)
    }
}

/// The size line of a signed checkpoint note, without verifying it (for messages).
fn note_size(note: &str) -> Option<u64> {
    note.lines().nth(1).and_then(|l| l.parse().ok())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the state file; `None` when there is none yet.
pub fn read_state(path: &Path) -> Result<Option<WitnessState>, CliError> {
    use std::io::Read as _;
    let mut text = String::new();
    match File::open(path).and_then(|f| f.take(MAX_STATE_FILE).read_to_string(&mut text)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Io(format!(
                "witness state {}: {e}",
                path.display()
            )));
        }
    }
    let state: WitnessState = serde_json::from_str(&text).map_err(|e| {
        CliError::Io(format!(
            "witness state {} does not parse ({e}). It holds the checkpoint of the CA's audit \
             log this host verified, so it is never replaced silently: move it aside only to \
             re-pin the log (breakglass host witness --reset --reason TEXT)",
            path.display()
        ))
    })?;
    if state.version != STATE_VERSION {
        return Err(CliError::Io(format!(
            "witness state {} is of format version {}, this breakglass reads version \
             {STATE_VERSION}",
            path.display(),
            state.version
        )));
    }
    Ok(Some(state))
}

fn write_state(path: &Path, state: &WitnessState) -> Result<(), CliError> {
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| CliError::Io(format!("witness state: {e}")))?;
    write_atomic(path, &json, 0o644)
}

/// Takes the state file's lock (`<state>.lock`), waiting at most [`LOCK_WAIT`].
async fn lock(state: &Path) -> Result<nix::fcntl::Flock<File>, CliError> {
    let path = PathBuf::from(format!("{}.lock", state.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Io(format!("witness state directory {}: {e}", dir.display())))?;
    }
    let held = |why: String| {
        CliError::Io(format!(
            "witness lock {}: {why} (another breakglass host command keeps checking the \
             CA's audit log)",
            path.display()
        ))
    };
    match super::lock::exclusive(&path, LOCK_WAIT).await {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(held(format!("still held after {}s", LOCK_WAIT.as_secs()))),
        Err(e) => Err(held(e.to_string())),
    }
}

/// What the daemon's answer establishes, once checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The log's key (the pinned one).
    pub verifier: NoteVerifier,
    /// The daemon's checkpoint.
    pub checkpoint: Checkpoint,
    /// Its signed note.
    pub note: String,
    /// True when no key was pinned before: this answer pins it.
    pub first_contact: bool,
}

/// Checks the daemon's answer against what this host knows: its key is the pinned one
/// (`audit_key`, and the state's), its checkpoint is signed with it, and it extends the
/// saved checkpoint with the proof sent. The error says what is wrong.
pub fn verify_answer(
    audit_key: Option<&NoteVerifier>,
    state: Option<&WitnessState>,
    resp: &WitnessCheckpointResponse,
) -> Result<Verified, String> {
    let key_text = resp.verifier_key.trim();
    let verifier = NoteVerifier::parse(key_text)
        .map_err(|e| format!("the daemon's audit key {key_text:?} does not parse: {e}"))?;
    if let Some(k) = audit_key
        && k.to_string() != verifier.to_string()
    {
        return Err(format!(
            "the daemon's audit key {verifier} is not the pinned key {k} (audit_key): another log"
        ));
    }
    let pinned = state.map(|s| s.log_key.trim()).filter(|k| !k.is_empty());
    if let Some(k) = pinned
        && k != verifier.to_string()
    {
        return Err(format!(
            "the daemon's audit key {verifier} is not the key this host pinned ({k}): another log"
        ));
    }
    let checkpoint = verifier
        .verify_checkpoint(&resp.checkpoint)
        .map_err(|e| format!("the daemon's checkpoint does not verify with key {verifier}: {e}"))?;
    if checkpoint.size != resp.size {
        return Err(format!(
            "the daemon announced {} events but its signed checkpoint says {}",
            resp.size, checkpoint.size
        ));
    }
    if let Some(saved) = state
        .map(|s| s.checkpoint.as_str())
        .filter(|c| !c.is_empty())
    {
        let old = verifier.verify_checkpoint(saved).map_err(|e| {
            format!(
                "the saved checkpoint does not verify with the pinned key ({e}): the state \
                 file was altered"
            )
        })?;
        let proof = resp
            .consistency_proof
            .iter()
            .map(|h| {
                Hash::try_from(h.as_slice()).map_err(|_| {
                    "the consistency proof holds a hash that is not 32 bytes".to_owned()
                })
            })
            .collect::<Result<Vec<Hash>, String>>()?;
        check_extends(&old, &checkpoint, &proof).map_err(|e| e.to_string())?;
    }
    Ok(Verified {
        verifier,
        checkpoint,
        note: resp.checkpoint.clone(),
        first_contact: pinned.is_none(),
    })
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// Size of the checkpoint saved before (`None` at first contact).
    pub previous: Option<u64>,
    /// Size of the daemon's checkpoint, now saved.
    pub size: u64,
    /// The log's key, as pinned.
    pub key: String,
    /// Set when the daemon says issuance is stopped (another host found a fork).
    pub halted: Option<String>,
}

impl Witnessed {
    /// One line for the operator.
    #[must_use]
    pub fn summary(&self, server: &str) -> String {
        match self.previous {
            None => format!(
                "pinned the CA's audit log at {server}: {} events, key {}",
                self.size, self.key
            ),
            Some(p) => format!(
                "the CA's audit log at {server} extends the checkpoint this host saw ({p} events): \
                 now {} events",
                self.size
            ),
        }
    }
}

/// The daemon's answer to this host's checkpoint (nothing saved).
async fn ask(
    target: &Target,
    channel: &Channel,
    state: Option<&WitnessState>,
    krl_version: u64,
    failure: String,
) -> Result<WitnessCheckpointResponse, CliError> {
    WitnessClient::new(channel.clone())
        .witness_checkpoint(WitnessCheckpointRequest {
            checkpoint: state.map(|s| s.checkpoint.clone()).unwrap_or_default(),
            krl_version,
            failure,
        })
        .await
        .answer(target)
}

/// Checks, before the host acts on anything the daemon serves, that the daemon's audit log
/// extends the checkpoint this host saw last, and saves the daemon's checkpoint (with
/// `krl_version`, the KRL version about to be accepted, if any). On failure: records it,
/// writes `event=log_consistency_failed` to syslog, reports it to the daemon, and fails with
/// a message that says what was refused (`refused`) and what to do. The calls go over
/// `channel`, the connection the caller uses for what it is about to accept (a host makes
/// one TLS handshake for both).
pub async fn check(
    target: &Target,
    channel: &Channel,
    args: &WitnessArgs,
    krl_version: Option<u64>,
    refused: &str,
) -> Result<Witnessed, CliError> {
    let path = args.state_path();
    let _lock = lock(&path).await?;
    let state = read_state(&path)?;
    let audit_key = args.pinned_key()?;
    let krl = krl_version
        .or(state.as_ref().map(|s| s.krl_version))
        .unwrap_or(0);
    let resp = ask(target, channel, state.as_ref(), krl, String::new()).await?;
    let server = target.shown();
    let syslog = args.syslog();
    match verify_answer(audit_key.as_ref(), state.as_ref(), &resp) {
        Ok(v) => {
            let previous = state.as_ref().and_then(WitnessState::size);
            let recovered = state.as_ref().and_then(|s| s.failure.clone());
            let next = WitnessState {
                version: STATE_VERSION,
                log_key: v.verifier.to_string(),
                checkpoint: v.note.clone(),
                krl_version: krl,
                checked_at: unix_now(),
                failure: None,
            };
            write_state(&path, &next)?;
            let size = v.checkpoint.size.to_string();
            if v.first_contact {
                let key = v.verifier.to_string();
                if audit_key.is_none() {
                    eprintln!(
                        "breakglass: pinned the CA's audit log key {key} at first contact ({} \
                         events); set audit_key in the client config to pin it from a copy of \
                         log.pub instead",
                        v.checkpoint.size
                    );
                }
                syslog.send(
                    Severity::Notice,
                    &[
                        ("event", "log_witness_pinned"),
                        ("server", &server),
                        ("key", &key),
                        ("size", &size),
                        ("state", &path.display().to_string()),
                    ],
                );
            }
            if let Some(f) = recovered {
                syslog.send(
                    Severity::Warning,
                    &[
                        ("event", "log_consistency_restored"),
                        ("server", &server),
                        ("size", &size),
                        ("failed_at", &f.at.to_string()),
                    ],
                );
            }
            syslog.flush(SYSLOG_FLUSH);
            Ok(Witnessed {
                previous,
                size: v.checkpoint.size,
                key: v.verifier.to_string(),
                halted: resp.halted.then(|| resp.halt_reason.clone()),
            })
        }
        Err(why) => {
            let saved = state.as_ref().and_then(WitnessState::size);
            let message = format!(
                "the CA's audit log at {server} does not extend the checkpoint this host saw \
                 ({} in {}): {why}",
                saved.map_or_else(|| "none yet".to_owned(), |n| format!("{n} events")),
                path.display()
            );
            let mut next = state.clone().unwrap_or(WitnessState {
                version: STATE_VERSION,
                ..WitnessState::default()
            });
            next.failure = Some(Failure {
                at: unix_now(),
                server: server.clone(),
                message: message.clone(),
                daemon_checkpoint: resp.checkpoint.clone(),
            });
            let written = write_state(&path, &next);
            syslog.send(
                Severity::Critical,
                &[
                    ("event", "log_consistency_failed"),
                    ("server", &server),
                    ("host_size", &saved.map_or("-".into(), |n| n.to_string())),
                    ("daemon_size", &resp.size.to_string()),
                    ("reason", &why),
                    ("state", &path.display().to_string()),
                ],
            );
            // The daemon may be the rolled-back one: it alerts if it can, the syslog line
            // above does not depend on it.
            let _ = ask(target, channel, state.as_ref(), krl, why.clone()).await;
            syslog.flush(SYSLOG_FLUSH);
            written?;
            Err(CliError::Verification(format!(
                "log_consistency_failed: {message}.\n{refused}{}Fix: {FIX}",
                if refused.is_empty() { "" } else { "\n" }
            )))
        }
    }
}

/// The state as `host doctor` judges it, and the daemon's answer checked without saving.
#[derive(Debug)]
pub enum Judgement {
    /// No state file yet: nothing witnessed.
    NotYet,
    /// The last check failed (the saved failure).
    Failed(Failure),
    /// The daemon's log does not extend the saved checkpoint now.
    NotExtending(String),
    /// Fine: saved size, daemon's size, and the daemon's halt reason if any.
    Extends {
        /// Saved size.
        saved: u64,
        /// The daemon's size.
        now: u64,
        /// Issuance stopped (by another host's report).
        halted: Option<String>,
    },
}

/// What `host doctor` checks: the saved state, then the daemon's answer to it (the daemon
/// sees this host's checkpoint, as at every contact; nothing is saved here).
pub async fn judge(target: &Target, args: &WitnessArgs) -> Result<Judgement, CliError> {
    let path = args.state_path();
    let Some(state) = read_state(&path)? else {
        return Ok(Judgement::NotYet);
    };
    if let Some(f) = &state.failure {
        return Ok(Judgement::Failed(f.clone()));
    }
    let audit_key = args.pinned_key()?;
    let channel = connect::channel(target)?;
    let resp = ask(
        target,
        &channel,
        Some(&state),
        state.krl_version,
        String::new(),
    )
    .await?;
    Ok(
        match verify_answer(audit_key.as_ref(), Some(&state), &resp) {
            Ok(v) => Judgement::Extends {
                saved: state.size().unwrap_or(0),
                now: v.checkpoint.size,
                halted: resp.halted.then(|| resp.halt_reason.clone()),
            },
            Err(why) => Judgement::NotExtending(why),
        },
    )
}

/// `breakglass host witness`.
#[derive(Debug, Args, Clone)]
#[command(after_help = "\
Every host command that acts on what the daemon serves (sync-krl, ship, watch-revocations) \
runs this check first. Without --reset it only checks now and prints what it found.

--reset is for after a log_consistency_failed: only once the CA's operators have \
investigated and acknowledged the fork (breakglass audit acknowledge-fork). The old state \
is kept beside the new one as <state>.reset-<unix time> (the evidence), the reset is written \
to syslog (event=log_witness_reset), and the daemon's current checkpoint is pinned.

Exit status: 0 when the log extends what this host saw, 65 when it does not \
(log_consistency_failed), 69 when the daemon cannot be reached.")]
pub struct WitnessCmd {
    #[command(flatten)]
    pub witness: WitnessArgs,
    /// Forget the saved checkpoint, its failure and the pinned key (audit_key still pins),
    /// then pin the daemon's current checkpoint
    #[arg(long, requires = "reason")]
    pub reset: bool,
    /// Why the log is trusted again (with --reset; written to syslog)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `breakglass host witness [--reset --reason TEXT]`: returns the line to print.
pub async fn run(target: &Target, cmd: &WitnessCmd) -> Result<String, CliError> {
    let mut out = String::new();
    if cmd.reset {
        let reason = cmd
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| CliError::Usage("--reset needs --reason TEXT".into()))?;
        out.push_str(&reset(&cmd.witness, reason, &target.shown()).await?);
    }
    let w = check(target, &connect::channel(target)?, &cmd.witness, None, "").await?;
    out.push_str(&w.summary(&target.shown()));
    if let Some(h) = &w.halted {
        out.push_str(&format!("\nnote: the daemon says {h}"));
    }
    Ok(out)
}

/// Moves the state aside (kept as evidence) and writes the reset to syslog.
async fn reset(args: &WitnessArgs, reason: &str, server: &str) -> Result<String, CliError> {
    let path = args.state_path();
    let _lock = lock(&path).await?;
    if !path.exists() {
        return Ok(format!(
            "nothing to reset: {} does not exist\n",
            path.display()
        ));
    }
    // An unreadable state is moved aside as it is, like a readable one.
    let old = read_state(&path).ok().flatten().unwrap_or_default();
    let aside = PathBuf::from(format!("{}.reset-{}", path.display(), unix_now()));
    std::fs::rename(&path, &aside)
        .map_err(|e| CliError::Io(format!("moving {} aside: {e}", path.display())))?;
    let old_size = old.size().map_or("-".into(), |n| n.to_string());
    let syslog = args.syslog();
    syslog.send(
        Severity::Warning,
        &[
            ("event", "log_witness_reset"),
            ("server", server),
            ("reason", reason),
            ("old_size", &old_size),
            ("old_key", &old.log_key),
            ("kept", &aside.display().to_string()),
        ],
    );
    syslog.flush(SYSLOG_FLUSH);
    Ok(format!(
        "reset: the old witness state ({old_size} events) is kept in {}\n",
        aside.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::NoteSigner;
    use breakglass_proto::audit::ed25519_dalek::SigningKey;
    use breakglass_proto::audit::merkle::{MerkleTree, leaf_hash};

    const ORIGIN: &str = "ca.test/audit/v1";

    fn signer(seed: u8) -> NoteSigner {
        NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn tree(leaves: impl IntoIterator<Item = u64>) -> MerkleTree {
        let mut t = MerkleTree::new();
        for i in leaves {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        t
    }

    fn note(s: &NoteSigner, t: &MerkleTree, size: u64) -> String {
        s.sign_checkpoint(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: t.root_at(size).unwrap(),
            extensions: vec![],
        })
        .unwrap()
    }

    /// The daemon's answer for a host that saw `old` (size), from log `t` at `new`.
    fn answer(
        s: &NoteSigner,
        t: &MerkleTree,
        old: Option<u64>,
        new: u64,
    ) -> WitnessCheckpointResponse {
        WitnessCheckpointResponse {
            checkpoint: note(s, t, new),
            verifier_key: s.verifier().to_string(),
            size: new,
            consistency_proof: old
                .filter(|o| *o <= new)
                .map(|o| t.consistency_proof(o, new).unwrap())
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.to_vec())
                .collect(),
            halted: false,
            halt_reason: String::new(),
        }
    }

    fn saw(s: &NoteSigner, t: &MerkleTree, size: u64) -> WitnessState {
        WitnessState {
            version: STATE_VERSION,
            log_key: s.verifier().to_string(),
            checkpoint: note(s, t, size),
            ..WitnessState::default()
        }
    }

    #[test]
    fn first_contact_pins_and_a_grown_log_extends() {
        let s = signer(1);
        let t = tree(0..30);
        let v = verify_answer(None, None, &answer(&s, &t, None, 10)).unwrap();
        assert!(v.first_contact);
        assert_eq!(v.checkpoint.size, 10);
        let v = verify_answer(None, Some(&saw(&s, &t, 10)), &answer(&s, &t, Some(10), 30)).unwrap();
        assert!(!v.first_contact);
        assert_eq!(v.checkpoint.size, 30);
        // The same checkpoint again is fine too.
        verify_answer(None, Some(&saw(&s, &t, 30)), &answer(&s, &t, Some(30), 30)).unwrap();
    }

    #[test]
    fn a_rolled_back_or_forked_log_is_refused_whatever_the_daemon_sends() {
        let s = signer(1);
        let t = tree(0..30);
        let host = saw(&s, &t, 20);
        let e = verify_answer(None, Some(&host), &answer(&s, &t, None, 12)).unwrap_err();
        assert!(e.contains("events were removed"), "{e}");
        // Same key, different events after 12: a fork, at the same size and beyond.
        let forked = tree((0..12).chain(500..530));
        let e = verify_answer(None, Some(&host), &answer(&s, &forked, Some(20), 20)).unwrap_err();
        assert!(e.contains("fork"), "{e}");
        let e = verify_answer(None, Some(&host), &answer(&s, &forked, Some(20), 30)).unwrap_err();
        assert!(e.contains("fork"), "{e}");
        // A proof with a hash cut short.
        let mut bad = answer(&s, &t, Some(20), 30);
        bad.consistency_proof[0].pop();
        assert!(
            verify_answer(None, Some(&host), &bad)
                .unwrap_err()
                .contains("32 bytes")
        );
    }

    #[test]
    fn another_key_is_refused_against_the_pin_and_the_config() {
        let s = signer(1);
        let other = signer(2);
        let t = tree(0..5);
        let e = verify_answer(None, Some(&saw(&s, &t, 3)), &answer(&other, &t, Some(3), 5))
            .unwrap_err();
        assert!(e.contains("not the key this host pinned"), "{e}");
        let e = verify_answer(Some(&s.verifier()), None, &answer(&other, &t, None, 5)).unwrap_err();
        assert!(e.contains("(audit_key)"), "{e}");
        // A checkpoint signed by another key than the one announced.
        let mut lying = answer(&s, &t, None, 5);
        lying.checkpoint = note(&other, &t, 5);
        assert!(
            verify_answer(None, None, &lying)
                .unwrap_err()
                .contains("does not verify")
        );
        // A size field that disagrees with the signed note.
        let mut lying = answer(&s, &t, None, 5);
        lying.size = 9;
        assert!(
            verify_answer(None, None, &lying)
                .unwrap_err()
                .contains("announced 9")
        );
    }

    #[test]
    fn the_state_file_round_trips_and_junk_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("witness");
        assert_eq!(read_state(&p).unwrap(), None);
        let s = signer(1);
        let mut st = saw(&s, &tree(0..4), 4);
        st.failure = Some(Failure {
            at: 1,
            server: "https://ca:7443".into(),
            message: "m".into(),
            daemon_checkpoint: "n".into(),
        });
        write_state(&p, &st).unwrap();
        assert_eq!(read_state(&p).unwrap(), Some(st.clone()));
        assert_eq!(st.size(), Some(4));
        std::fs::write(&p, "{").unwrap();
        let e = read_state(&p).unwrap_err();
        assert!(e.to_string().contains("never replaced silently"), "{e}");
    }

    #[tokio::test]
    async fn one_check_at_a_time_per_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/witness");
        let held = lock(&p).await.unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{}.lock", p.display()))
            .unwrap();
        assert!(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err());
        drop(held);
        lock(&p).await.unwrap();
    }
}
