//! `--output json` (`--json`): one serializable type per command, printed once at the
//! end on standard output (progress goes to standard error). Their shapes are documented
//! in [`schema`] (and so in the man pages); a test checks each command's JSON against it.
//!
//! [`run::run`] runs a command line in JSON mode (the binary calls it instead of
//! [`crate::cli::run`] when JSON is asked for). The fields of each type are documented in
//! [`schema`].
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::v1::{
    CaPublicKey, GrantInfo, RequestInfo, ReviewItem, RevokeResponse, SessionInfo, WhoAmIResponse,
};
use serde::Serialize;

use crate::commands::{self, RequestOutcome};
use crate::error::CliError;
use crate::host::doctor::{Level, Report};

pub mod run;
pub mod schema;

/// Prints `value` as one JSON object and a newline.
pub fn print<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Io(format!("encoding the JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A Unix time as the JSON shows it: RFC 3339, UTC, whole seconds.
#[must_use]
pub fn time(unix_seconds: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds.max(0) as u64))
        .to_string()
}

/// A time that is 0 when unknown.
fn opt_time(unix_seconds: i64) -> Option<String> {
    (unix_seconds > 0).then(|| time(unix_seconds))
}

/// A string that is empty when absent.
fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Seconds from now until `unix_seconds` (negative once past).
#[must_use]
pub fn seconds_until(unix_seconds: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    unix_seconds.saturating_sub(now)
}

/// A certificate written next to the key (`request`, `fetch`).
#[derive(Debug, Serialize)]
pub struct CertificateOut {
    pub certificate_file: String,
    pub private_key_file: String,
    pub request_id: String,
    pub grant_id: String,
    pub serial: u64,
    pub key_id: String,
    pub tier: String,
    pub rule: String,
    pub principals: Vec<String>,
    pub extensions: Vec<String>,
    pub approvers: Vec<String>,
    pub emergency: bool,
    pub valid_after: String,
    pub valid_before: String,
    pub expires_in_seconds: i64,
    pub ssh_command: String,
    pub added_to_agent: bool,
}

impl CertificateOut {
    /// The certificate of `outcome`; `host` goes into the ssh command line.
    #[must_use]
    pub fn new(outcome: &RequestOutcome, host: &str, added_to_agent: bool) -> Self {
        let r = &outcome.response;
        Self {
            certificate_file: outcome.paths.certificate.display().to_string(),
            private_key_file: outcome.paths.private.display().to_string(),
            request_id: r.request_id.clone(),
            grant_id: r.grant_id.clone(),
            serial: r.serial,
            key_id: r.key_id.clone(),
            tier: r.tier.clone(),
            rule: r.rule.clone(),
            principals: r.principals.clone(),
            extensions: r.extensions.clone(),
            approvers: r.approvers.clone(),
            emergency: r.emergency,
            valid_after: time(r.valid_after),
            valid_before: time(r.valid_before),
            expires_in_seconds: seconds_until(r.valid_before),
            ssh_command: commands::ssh_command(outcome, host),
            added_to_agent,
        }
    }
}

/// `request`.
#[derive(Debug, Serialize)]
pub struct RequestCmdOut {
    pub state: &'static str,
    pub request_id: String,
    pub certificate: Option<CertificateOut>,
    pub request: Option<RequestOut>,
}

/// One approval.
#[derive(Debug, Serialize)]
pub struct ApprovalOut {
    pub approver: String,
    pub comment: String,
    pub at: String,
}

/// A request (`show`, `approve`, `deny`, `cancel`, `pending`, `status`).
#[derive(Debug, Serialize)]
pub struct RequestOut {
    pub request_id: String,
    pub state: &'static str,
    pub requester: String,
    pub principals: Vec<String>,
    pub hosts: Vec<String>,
    pub command: Option<String>,
    pub reason: String,
    pub tier: String,
    pub rule: String,
    pub emergency: bool,
    pub ttl_seconds: i64,
    pub approvals_required: u32,
    pub approver_groups: Vec<String>,
    pub approvals: Vec<ApprovalOut>,
    pub created_at: String,
    pub expires_at: String,
    pub seconds_left: i64,
    pub grant_id: Option<String>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub approve_command: String,
    pub can_approve: bool,
}

impl From<&RequestInfo> for RequestOut {
    fn from(i: &RequestInfo) -> Self {
        Self {
            request_id: i.request_id.clone(),
            state: crate::approvals::state_name(i),
            requester: i.requester.clone(),
            principals: i.principals.clone(),
            hosts: i.hosts.clone(),
            command: opt(&i.command),
            reason: i.reason.clone(),
            tier: i.tier.clone(),
            rule: i.rule.clone(),
            emergency: i.emergency,
            ttl_seconds: i.ttl_seconds,
            approvals_required: i.approvals_required,
            approver_groups: i.approver_groups.clone(),
            approvals: i
                .approvals
                .iter()
                .map(|a| ApprovalOut {
                    approver: a.approver.clone(),
                    comment: a.comment.clone(),
                    at: time(a.at),
                })
                .collect(),
            created_at: time(i.created_at),
            expires_at: time(i.expires_at),
            seconds_left: i.seconds_left,
            grant_id: opt(&i.grant_id),
            decided_by: opt(&i.decided_by),
            decision_reason: opt(&i.decision_reason),
            approve_command: i.approve_command.clone(),
            can_approve: i.can_approve,
        }
    }
}

/// `pending`.
#[derive(Debug, Serialize)]
pub struct PendingOut {
    pub requests: Vec<RequestOut>,
}

/// `whoami`.
#[derive(Debug, Serialize)]
pub struct WhoamiOut {
    pub identity: String,
    pub groups: Vec<String>,
    pub transport: String,
    pub server_time: Option<String>,
}

impl From<&WhoAmIResponse> for WhoamiOut {
    fn from(r: &WhoAmIResponse) -> Self {
        Self {
            identity: r.identity.clone(),
            groups: r.groups.clone(),
            transport: r.transport.clone(),
            server_time: opt_time(r.server_time_unix),
        }
    }
}

/// A live grant (`status`).
#[derive(Debug, Serialize)]
pub struct GrantOut {
    pub grant_id: String,
    pub request_id: String,
    pub requester: String,
    pub hosts: Vec<String>,
    pub principals: Vec<String>,
    pub command: Option<String>,
    pub tier: String,
    pub rule: String,
    pub serial: u64,
    pub emergency: bool,
    pub valid_after: String,
    pub valid_before: String,
    pub expires_in_seconds: i64,
    pub source_addresses: Vec<String>,
    pub extensions: Vec<String>,
}

impl From<&GrantInfo> for GrantOut {
    fn from(g: &GrantInfo) -> Self {
        Self {
            grant_id: g.grant_id.clone(),
            request_id: g.request_id.clone(),
            requester: g.requester.clone(),
            hosts: g.hosts.clone(),
            principals: g.principals.clone(),
            command: opt(&g.command),
            tier: g.tier.clone(),
            rule: g.rule.clone(),
            serial: g.serial,
            emergency: g.emergency,
            valid_after: time(g.valid_after),
            valid_before: time(g.valid_before),
            expires_in_seconds: seconds_until(g.valid_before),
            source_addresses: g.source_addresses.clone(),
            extensions: g.extensions.clone(),
        }
    }
}

/// The client certificate's expiry (`status`).
#[derive(Debug, Serialize)]
pub struct CredentialOut {
    pub certificate_file: String,
    pub expires_at: String,
    pub expires_in_seconds: i64,
    pub ssh_key_login: bool,
}

/// `status`.
#[derive(Debug, Serialize)]
pub struct StatusOut {
    pub identity: String,
    pub groups: Vec<String>,
    pub transport: String,
    pub credential: Option<CredentialOut>,
    pub grants: Vec<GrantOut>,
    pub pending: Vec<RequestOut>,
    pub awaiting_my_approval: Vec<RequestOut>,
}

/// A host session (`review`).
#[derive(Debug, Serialize)]
pub struct SessionOut {
    pub host: String,
    pub principal: String,
    pub session_id: String,
    pub remote_addr: Option<String>,
    pub opened_at: Option<String>,
    pub closed_at: Option<String>,
    pub ended: Option<String>,
    pub recording: Option<String>,
    pub recording_hash: Option<String>,
    pub recording_bytes: Option<u64>,
    pub recording_duration_ms: Option<u64>,
}

impl From<&SessionInfo> for SessionOut {
    fn from(x: &SessionInfo) -> Self {
        Self {
            host: x.host.clone(),
            principal: x.principal.clone(),
            session_id: x.session_id.clone(),
            remote_addr: opt(&x.remote_addr),
            opened_at: opt_time(x.opened_at),
            closed_at: opt_time(x.closed_at),
            ended: opt(&x.ended),
            recording: opt(&x.recording),
            recording_hash: opt(&x.recording_sha256),
            recording_bytes: (!x.recording.is_empty()).then_some(x.recording_bytes),
            recording_duration_ms: (!x.recording.is_empty()).then_some(x.recording_duration_ms),
        }
    }
}

/// A review verdict.
#[derive(Debug, Serialize)]
pub struct VerdictOut {
    pub verdict: String,
    pub reviewer: String,
    pub note: String,
    pub reviewed_at: String,
}

/// An emergency grant under review (`review`, `review list`).
#[derive(Debug, Serialize)]
pub struct ReviewOut {
    pub grant_id: String,
    pub request_id: String,
    pub requester: String,
    pub principals: Vec<String>,
    pub hosts: Vec<String>,
    pub command: Option<String>,
    pub reason: String,
    pub tier: String,
    pub serial: u64,
    pub valid_after: String,
    pub valid_before: String,
    pub emergency: bool,
    pub sessions: Vec<SessionOut>,
    pub review: Option<VerdictOut>,
}

impl From<&ReviewItem> for ReviewOut {
    fn from(g: &ReviewItem) -> Self {
        Self {
            grant_id: g.grant_id.clone(),
            request_id: g.request_id.clone(),
            requester: g.requester.clone(),
            principals: g.principals.clone(),
            hosts: g.hosts.clone(),
            command: opt(&g.command),
            reason: g.reason.clone(),
            tier: g.tier.clone(),
            serial: g.serial,
            valid_after: time(g.valid_after),
            valid_before: time(g.valid_before),
            emergency: g.emergency,
            sessions: g.sessions.iter().map(SessionOut::from).collect(),
            review: (!g.verdict.is_empty()).then(|| VerdictOut {
                verdict: g.verdict.clone(),
                reviewer: g.reviewer.clone(),
                note: g.note.clone(),
                reviewed_at: time(g.reviewed_at),
            }),
        }
    }
}

/// `review list`.
#[derive(Debug, Serialize)]
pub struct ReviewListOut {
    pub grants: Vec<ReviewOut>,
}

/// A revoked grant.
#[derive(Debug, Serialize)]
pub struct RevokedOut {
    pub grant_id: String,
    pub serial: u64,
    pub requester: String,
    pub audit_index: u64,
}

/// `revoke`.
#[derive(Debug, Serialize)]
pub struct RevokeOut {
    pub revoked: Vec<RevokedOut>,
    pub already_revoked: Vec<String>,
    pub krl_published: bool,
    pub krl_version: u64,
    pub served_krl_version: u64,
    pub krl_not_published_reason: Option<String>,
    pub revoked_key_fingerprint: Option<String>,
}

impl RevokeOut {
    /// The answer `r`; `key` is the fingerprint of a key revoked for good.
    #[must_use]
    pub fn new(r: &RevokeResponse, key: Option<String>) -> Self {
        Self {
            revoked: r
                .revoked
                .iter()
                .map(|g| RevokedOut {
                    grant_id: g.grant_id.clone(),
                    serial: g.serial,
                    requester: g.requester.clone(),
                    audit_index: g.audit_index,
                })
                .collect(),
            already_revoked: r.already_revoked.clone(),
            krl_published: crate::revoke::krl_published(r),
            krl_version: r.krl_version,
            served_krl_version: r.served_krl_version,
            krl_not_published_reason: opt(&r.krl_not_published_reason),
            revoked_key_fingerprint: key,
        }
    }
}

/// A CA key.
#[derive(Debug, Serialize)]
pub struct CaKeyOut {
    pub public_key: String,
    pub fingerprint: String,
    pub signing: bool,
}

/// `ca-keys`.
#[derive(Debug, Serialize)]
pub struct CaKeysOut {
    pub keys: Vec<CaKeyOut>,
    pub written_to: Option<String>,
}

impl CaKeysOut {
    /// The keys, and where they were written.
    #[must_use]
    pub fn new(keys: &[CaPublicKey], written_to: Option<String>) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| CaKeyOut {
                    public_key: k.public_key.clone(),
                    fingerprint: k.fingerprint.clone(),
                    signing: k.signing,
                })
                .collect(),
            written_to,
        }
    }
}

/// A finding of `host doctor`.
#[derive(Debug, Serialize)]
pub struct FindingOut {
    pub level: &'static str,
    pub area: &'static str,
    pub message: String,
    pub fix: Option<String>,
}

/// `host doctor`.
#[derive(Debug, Serialize)]
pub struct DoctorOut {
    pub passed: bool,
    pub failures: usize,
    pub warnings: usize,
    pub findings: Vec<FindingOut>,
}

impl From<&Report> for DoctorOut {
    fn from(r: &Report) -> Self {
        Self {
            passed: r.count(Level::Fail) == 0,
            failures: r.count(Level::Fail),
            warnings: r.count(Level::Warn),
            findings: r
                .findings
                .iter()
                .map(|f| FindingOut {
                    level: match f.level {
                        Level::Ok => "ok",
                        Level::Warn => "warn",
                        Level::Fail => "fail",
                    },
                    area: f.area,
                    message: f.message.clone(),
                    fix: f.fix.clone(),
                })
                .collect(),
        }
    }
}
