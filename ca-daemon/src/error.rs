//! The daemon's errors: what happened, with its facts (rustls's `Error` is the model), and
//! their one mapping to the wire. [`Error::code`] is the gRPC status code of each, its
//! `Display` the message the caller reads (what was wrong and what to do), and
//! `From<Error> for tonic::Status` puts the two together; nothing else builds a status
//! from a domain error.

use std::time::Duration;

use breakglass_proto::audit::{Actor, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use tonic::Code;

use breakglass_proto::audit::event::RefusalKind;

use crate::audit::AuditError;
use crate::fmt_duration;

/// Groups as messages list them (`none` for no group).
pub(crate) fn groups_text(groups: &[String]) -> String {
    if groups.is_empty() {
        "none".to_owned()
    } else {
        groups.join(", ")
    }
}

/// Why a call failed. Every message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ----- The call is malformed (INVALID_ARGUMENT).
    /// A request field breaks its rule: the message starts with the field's name.
    #[error("{field}: {why}")]
    InvalidField {
        /// The field (`principals`, `reason`, …).
        field: &'static str,
        /// Which rule it breaks, and what to do.
        why: String,
    },
    /// A request asks for a drill and declares an emergency.
    #[error("a drill is not an emergency: ask with drill or with emergency, not both")]
    DrillAndEmergency,
    /// A revocation names no grants.
    #[error("say which grants: a grant id, a serial, a requester or a public key")]
    NoRevocationTarget,
    /// A revocation's grant id does not parse.
    #[error("grant_id {given:?}: {why}; it looks like g-0123456789abcdef")]
    BadGrantId {
        /// The grant id as given.
        given: String,
        /// Why it does not parse.
        why: String,
    },
    /// A host delivered more records in one call than allowed.
    #[error("{given} records in one call; at most {max}")]
    TooManyRecords {
        /// Records in the call.
        given: usize,
        /// Most records per call.
        max: usize,
    },
    /// A host's witness call carries more text than a checkpoint can be.
    #[error("checkpoint or failure too long: a checkpoint is a signed note of a few hundred bytes")]
    WitnessTooLong,
    /// An audit range ends before it starts.
    #[error("start {start} is after end {end}")]
    RangeReversed {
        /// First entry asked.
        start: u64,
        /// End asked.
        end: u64,
    },
    /// An audit read reaches beyond the log.
    #[error("{what} {size} is beyond the log's {have} entries (get the latest checkpoint first)")]
    BeyondLog {
        /// The argument (`end`, `tree_size`, …).
        what: &'static str,
        /// Its value.
        size: u64,
        /// The log's size.
        have: u64,
    },

    // ----- Who is calling (UNAUTHENTICATED, PERMISSION_DENIED).
    /// The caller could not be identified from its transport.
    #[error("{0}")]
    Unauthenticated(Unauthenticated),
    /// The caller is not listed in the configuration: it may call nothing but `WhoAmI`.
    #[error(
        "{identity} is not a known identity of this breakglass-ca, so it may not call {rpc} \
         (only WhoAmI); ask the CA's operators to list it under [[identities]] in the daemon \
         config, with its groups (hosts: id = \"host://NAME\", groups = [\"hosts\"])"
    )]
    UnknownIdentity {
        /// The caller's identity (its certificate SAN).
        identity: String,
        /// The refused call (`/package.Service/Method`).
        rpc: String,
    },
    /// A revocation list or stream call from someone neither a host nor an admin.
    #[error(
        "{identity} may not call {rpc}: the revocation list and stream are for hosts \
         (host://NAME in the group hosts, e.g. `breakglass host sync-krl` with the host's \
         certificate) and admins (the admin socket, or the groups {} of [revocation] \
         admin_groups); your groups: {}",
        .admin_groups.join(", "),
        groups_text(.groups)
    )]
    NotHostOrAdmin {
        /// The caller.
        identity: String,
        /// The refused call.
        rpc: String,
        /// `[revocation] admin_groups`.
        admin_groups: Vec<String>,
        /// The caller's groups.
        groups: Vec<String>,
    },
    /// An audit read by someone outside `[audit] reader_groups`.
    #[error(
        "{identity} may not read the audit log: readers must be in one of the groups {} \
         ([audit] reader_groups of the daemon config)",
        .reader_groups.join(", ")
    )]
    NotAuditReader {
        /// The caller.
        identity: String,
        /// `[audit] reader_groups`.
        reader_groups: Vec<String>,
    },
    /// A host call from a caller that is not a configured host.
    #[error("{identity} may not deliver host records: {why}")]
    NotAHost {
        /// The caller.
        identity: String,
        /// What it lacks to be a host ([`crate::hosts::host_name`]).
        why: String,
    },
    /// A witness call from a caller that is not a configured host.
    #[error("only hosts witness the audit log: {0}")]
    NotAWitness(Box<Error>),
    /// A fork acknowledgement by someone who is not an administrator.
    #[error(
        "{identity} may not acknowledge a log fork: administrators are the members of {} \
         ([revocation] admin_groups of the daemon config), e.g. root on the admin socket",
        .admin_groups.join(", ")
    )]
    NotAdmin {
        /// The caller.
        identity: String,
        /// `[revocation] admin_groups`.
        admin_groups: Vec<String>,
    },

    // ----- Refused by policy (PERMISSION_DENIED, or INVALID_ARGUMENT for a reason).
    /// The rules refused the request: a deny rule, no rule, or a rule's limit.
    #[error("{0}")]
    Policy(Denial),
    /// The request's reason does not satisfy its tier.
    #[error("reason: {}", reason_text(.tier, .problem))]
    Reason {
        /// The tier.
        tier: String,
        /// What is missing.
        problem: ReasonProblem,
    },
    /// The TTL asked is longer than the tier allows.
    #[error(
        "TTL {} exceeds the {} maximum of tier `{tier}`",
        fmt_duration(*.ttl),
        fmt_duration(*.max)
    )]
    TtlOverTier {
        /// The TTL asked.
        ttl: Duration,
        /// The tier's longest.
        max: Duration,
        /// The tier.
        tier: String,
    },
    /// An emergency was declared on a tier without emergency self-service.
    #[error(
        "emergency access is not allowed for tier `{tier}` ({}@{}, rule `{rule}`); ask without \
         --emergency{}",
        .principals.join(","),
        .hosts.join(","),
        approvals_from(*.approvals, .approver_groups)
    )]
    EmergencyNotAllowed {
        /// The tier.
        tier: String,
        /// The rule that allowed the request.
        rule: String,
        /// Principals asked.
        principals: Vec<String>,
        /// Hosts asked.
        hosts: Vec<String>,
        /// Approvals the tier needs.
        approvals: u32,
        /// Who may give them.
        approver_groups: Vec<String>,
    },
    /// An emergency was declared but the requester's allowance is spent (the request
    /// waits for approval; this is the refusal's record, not an answer).
    #[error(
        "emergency self-service refused: {used} of {per_day} emergency grant(s) in 24 hours \
         used; request {request} waits for {approvals} approval(s) from {}",
        groups_text(.approver_groups)
    )]
    EmergencyQuotaSpent {
        /// Emergency grants in the last 24 hours.
        used: usize,
        /// Allowed per day.
        per_day: u32,
        /// The request that waits.
        request: RequestId,
        /// Approvals it needs.
        approvals: u32,
        /// Who may give them.
        approver_groups: Vec<String>,
    },
    /// The key asked for was revoked for good.
    #[error(
        "public key {fingerprint} was revoked by {by} at {} ({reason}); no certificate is \
         issued for it again: make a new key (ssh-keygen -t ed25519) and request with it",
        breakglass_proto::audit::fields::rfc3339(.at.unix_seconds())
    )]
    KeyRevoked {
        /// `SHA256:` fingerprint of the key.
        fingerprint: String,
        /// Who revoked it.
        by: Actor,
        /// When.
        at: Timestamp,
        /// Why.
        reason: String,
    },
    /// A requester tried to approve their own request.
    #[error(
        "you cannot approve your own request {request} (requested by {requester}); it needs \
         approval from someone else in {}",
        groups_text(.approver_groups)
    )]
    SelfApproval {
        /// The request.
        request: RequestId,
        /// Its requester.
        requester: String,
        /// Who may approve it.
        approver_groups: Vec<String>,
    },
    /// A requester tried to deny their own request.
    #[error("{0} is your own request: withdraw it with `breakglass cancel {0}`")]
    SelfDenial(RequestId),
    /// A requester tried to review their own grant.
    #[error("you cannot review your own grant {0}; someone else must")]
    SelfReview(GrantId),
    /// Someone outside a tier's approver groups tried to approve or deny.
    #[error(
        "{identity} may not {verb} requests of tier `{tier}`: approvers must be in {} (your \
         groups: {})",
        groups_text(.approver_groups),
        groups_text(.groups)
    )]
    NotApprover {
        /// The caller.
        identity: String,
        /// `approve` or `deny`.
        verb: &'static str,
        /// The tier.
        tier: String,
        /// Who may.
        approver_groups: Vec<String>,
        /// The caller's groups.
        groups: Vec<String>,
    },
    /// Someone outside a tier's reviewer groups tried to review.
    #[error(
        "{identity} may not review grants of tier `{tier}`: reviewers must be in {} (your \
         groups: {})",
        groups_text(.reviewer_groups),
        groups_text(.groups)
    )]
    NotReviewer {
        /// The caller.
        identity: String,
        /// The tier.
        tier: String,
        /// Who may.
        reviewer_groups: Vec<String>,
        /// The caller's groups.
        groups: Vec<String>,
    },
    /// Someone other than the requester tried what only the requester may.
    #[error("only the requester ({requester}) may {act}")]
    OnlyRequester {
        /// The requester.
        requester: String,
        /// What was tried.
        act: RequesterAct,
    },
    /// Someone who is neither the requester nor an approver or reviewer asked to see a
    /// request.
    #[error(
        "{identity} is neither the requester of {request} nor an approver or reviewer of its \
         tier"
    )]
    MayNotSee {
        /// The caller.
        identity: String,
        /// The request.
        request: RequestId,
    },
    /// Someone other than its requester or an admin tried to revoke a grant.
    #[error(
        "grant {grant} belongs to {owner}; only they and members of {} may revoke it",
        .admin_groups.join(", ")
    )]
    NotGrantOwner {
        /// The grant.
        grant: GrantId,
        /// Its requester.
        owner: String,
        /// `[revocation] admin_groups`.
        admin_groups: Vec<String>,
    },
    /// The request waited for was denied.
    #[error("request {request} was denied by {by}: {reason}")]
    RequestDenied {
        /// The request.
        request: String,
        /// Who denied it.
        by: String,
        /// Why.
        reason: String,
    },

    // ----- What the state allows (NOT_FOUND, FAILED_PRECONDITION, DEADLINE_EXCEEDED,
    // ABORTED).
    /// No request has this id.
    #[error("no request {0}")]
    NoRequest(RequestId),
    /// No grant has this id.
    #[error("no grant {0}")]
    NoGrant(GrantId),
    /// A revocation selects no grant.
    #[error("{0}")]
    NothingToRevoke(NothingToRevoke),
    /// A revocation names a grant that has expired.
    #[error("grant {grant} ({what}) already expired; there is nothing to revoke")]
    GrantExpired {
        /// The grant.
        grant: GrantId,
        /// How the call named it.
        what: String,
    },
    /// A request that ended cannot change any more.
    #[error("request {request} {how}")]
    Closed {
        /// The request.
        request: RequestId,
        /// How it ended.
        how: Closed,
    },
    /// A request to issue is no longer pending.
    #[error("request {0} is no longer pending")]
    NotPending(RequestId),
    /// A pending request's tier is gone from the configuration.
    #[error("request {request} is of tier `{tier}`, which the configuration no longer defines")]
    TierGone {
        /// The request.
        request: RequestId,
        /// Its tier.
        tier: String,
    },
    /// A request has all the approvals it needs.
    #[error("request {0} needs no further approval")]
    NoApprovalNeeded(RequestId),
    /// The approver approved this request before.
    #[error(
        "you already approved {request}; it needs {missing} more approval(s) from other people \
         in {}",
        groups_text(.approver_groups)
    )]
    AlreadyApproved {
        /// The request.
        request: RequestId,
        /// Approvals still missing.
        missing: usize,
        /// Who may give them.
        approver_groups: Vec<String>,
    },
    /// A drill was reported on a grant of a tier that is not a drill tier.
    #[error("grant {grant} is of tier `{tier}`, which is not a drill tier (drill = true)")]
    NotDrillTier {
        /// The grant.
        grant: GrantId,
        /// Its tier.
        tier: String,
    },
    /// A drill's outcome was reported before.
    #[error("the drill of grant {0} was already reported")]
    DrillReported(GrantId),
    /// A grant was reviewed before.
    #[error("grant {grant} was already reviewed by {by}")]
    AlreadyReviewed {
        /// The grant.
        grant: GrantId,
        /// Its reviewer.
        by: Actor,
    },
    /// An issued request's certificate was signed by a CA key that no longer signs.
    #[error(
        "{request} was issued (grant {grant}) by a CA key that no longer signs, so its \
         certificate cannot be produced again; ask again"
    )]
    CertificateGone {
        /// The request.
        request: String,
        /// Its grant.
        grant: String,
    },
    /// A request still waits for approvals.
    #[error("request {request} is still waiting for approval ({approvals} of {required} so far)")]
    StillWaiting {
        /// The request.
        request: String,
        /// Approvals so far.
        approvals: usize,
        /// Approvals needed.
        required: u32,
    },
    /// The request waited for expired without enough approvals.
    #[error("request {0} expired: nobody approved it in time")]
    RequestExpired(String),
    /// The request waited for was cancelled.
    #[error("request {request} was cancelled by {by}")]
    RequestCancelled {
        /// The request.
        request: String,
        /// Who cancelled it.
        by: String,
    },
    /// Issuance is stopped: a host showed that the log was rolled back or forked.
    #[error("{0}")]
    Halted(Halt),
    /// A fork acknowledgement when no fork is reported.
    #[error(
        "nothing to acknowledge: no host has shown a checkpoint this log does not extend since \
         the last acknowledgement, and issuance is not stopped"
    )]
    NothingToAcknowledge,

    // ----- The daemon (UNAVAILABLE, INTERNAL).
    /// The audit log could not record an event: nothing was done.
    #[error(
        "{0}; nothing was issued or changed. Try again shortly; operators: check the disk of \
         the audit log"
    )]
    AuditUnavailable(AuditError),
    /// No KRL can be served: none was published since start-up, and a new one cannot be.
    #[error(
        "no KRL can be served: none was published since breakglass-ca started, and a new one \
         cannot be published: {reason}. Hosts keep the KRL they have; breakglass-ca publishes \
         one by itself as soon as it can record it"
    )]
    NoKrl {
        /// Why none can be published.
        reason: String,
    },
    /// The audit log could not be read.
    #[error("{}", audit_read(.0))]
    AuditRead(AuditError),
    /// The daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// A bug or an unexpected failure inside the daemon.
    #[error("internal error: {0}")]
    Internal(String),
}

/// " and get N approval(s) from G" when a tier needs approvals.
fn approvals_from(approvals: u32, groups: &[String]) -> String {
    if approvals > 0 {
        format!(
            " and get {approvals} approval(s) from {}",
            groups_text(groups)
        )
    } else {
        String::new()
    }
}

/// An audit read error as the caller reads it (damage is the daemon's problem).
fn audit_read(e: &AuditError) -> String {
    match e {
        AuditError::Corrupt { .. } => format!("internal error: {e}"),
        other => other.to_string(),
    }
}

/// Why a caller could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    /// An mTLS connection without a client certificate.
    #[error("no client certificate was presented")]
    NoCertificate,
    /// A client certificate that does not parse.
    #[error("client certificate does not parse: {0}")]
    CertificateUnparsable(String),
    /// A client certificate whose SAN extension is malformed.
    #[error("client certificate SAN is malformed: {0}")]
    SanMalformed(String),
    /// A client certificate with no URI or e-mail SAN.
    #[error("client certificate has no URI or e-mail SAN to identify you by")]
    NoSan,
    /// A client certificate whose identity breaks the identity rules.
    #[error("{0}")]
    BadIdentity(String),
    /// A client certificate claiming the admin socket's namespace.
    #[error(
        "client certificate identity {identity:?} is refused: the {namespace} namespace is \
         reserved for local users of the admin socket (identified by SO_PEERCRED); issue the \
         certificate with your e-mail or another URI SAN"
    )]
    ReservedNamespace {
        /// The identity the certificate claims.
        identity: String,
        /// The namespace (`unix:`).
        namespace: &'static str,
    },
    /// An admin-socket connection whose peer credentials could not be read.
    #[error("the admin socket could not read the peer's credentials")]
    NoPeerCredentials,
    /// A connection that is neither mTLS nor the admin socket.
    #[error("connection is neither mTLS nor the local admin socket")]
    NoTransport,
}

/// What was wrong with a reason, for its tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReasonProblem {
    /// None was given.
    Missing,
    /// It is shorter than the tier's minimum.
    TooShort {
        /// Shortest accepted, in characters.
        min: usize,
        /// Characters given.
        got: usize,
    },
    /// It has no ticket reference.
    NoTicket {
        /// The pattern.
        pattern: String,
    },
}

impl ReasonProblem {
    /// The kind of refusal it is on the record.
    #[must_use]
    pub fn kind(&self) -> RefusalKind {
        match self {
            ReasonProblem::Missing | ReasonProblem::TooShort { .. } => RefusalKind::Reason,
            ReasonProblem::NoTicket { .. } => RefusalKind::Ticket,
        }
    }
}

/// A reason's problem as the requester reads it.
fn reason_text(tier: &str, problem: &ReasonProblem) -> String {
    match problem {
        ReasonProblem::Missing => format!(
            "say why you need access (--reason \"INC-4411 primary down\"); tier `{tier}` requires \
             a reason"
        ),
        ReasonProblem::TooShort { min, got } => {
            format!("tier `{tier}` requires a reason of at least {min} characters (got {got})")
        }
        ReasonProblem::NoTicket { pattern } => {
            format!("tier `{tier}` requires a ticket reference matching `{pattern}` in the reason")
        }
    }
}

/// Why the policy refused a request (its [`Decision`](crate::policy::Decision)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The kind of refusal, as recorded in the audit log.
    pub kind: RefusalKind,
    /// The deny rule that matched, or the allow rule that came closest; `None` when no rule
    /// concerns the caller.
    pub rule: Option<String>,
    /// The message for the requester: what was refused and why.
    pub message: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What only a request's or grant's requester may do.
#[derive(Clone, Debug)]
pub enum RequesterAct {
    /// Cancel the request.
    Cancel(RequestId),
    /// Fetch its certificate.
    Fetch(RequestId),
    /// Watch the request.
    Watch(RequestId),
    /// Act on the grant (`list the sessions of`, `report the drill of`).
    Grant {
        /// What (a verb phrase).
        what: &'static str,
        /// The grant.
        grant: GrantId,
    },
}

impl std::fmt::Display for RequesterAct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequesterAct::Cancel(id) => write!(
                f,
                "cancel {id}; approvers deny with `breakglass deny {id} --reason …`"
            ),
            RequesterAct::Fetch(id) => write!(f, "fetch the certificate of {id}"),
            RequesterAct::Watch(id) => write!(f, "watch {id}; use `breakglass show {id}`"),
            RequesterAct::Grant { what, grant } => write!(f, "{what} grant {grant}"),
        }
    }
}

/// Why a revocation selects no grant.
#[derive(Debug, thiserror::Error)]
pub enum NothingToRevoke {
    /// No grant is what the call named (`g-…`, `serial N`).
    #[error("no grant {0} is known")]
    NoGrant(String),
    /// No grant has the serial.
    #[error("no grant with serial {0} is known")]
    NoSerial(u64),
    /// No grant was issued for the key.
    #[error("no grant was ever issued for public key {0}; there is nothing of it to revoke")]
    NeverIssued(String),
    /// Nothing selected is live.
    #[error("no live grant matches; expired grants need no revocation")]
    NoLiveGrant,
}

/// How a request ended, as a refusal to change it says.
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    /// It expired while pending (before the sweep recorded it).
    #[error("has expired waiting for approval")]
    ExpiredWaiting,
    /// It was issued.
    #[error("was already issued (grant {0})")]
    Issued(GrantId),
    /// It was denied.
    #[error("was denied by {0}")]
    Denied(Actor),
    /// Its expiry is recorded.
    #[error("has expired")]
    Expired,
    /// It was cancelled.
    #[error("was cancelled by {0}")]
    Cancelled(Actor),
}

/// Why issuance is stopped: a host showed a checkpoint of this log, signed with its key,
/// that the log does not extend (rolled back or forked), and no administrator
/// acknowledged it yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "issuance is stopped: host {host} showed a checkpoint of this CA's audit log ({size} \
     events, signed with the log's key) that the log does not extend (it held {log_size} \
     events then): the log was rolled back or forked (audit event {index} \
     log_consistency_failed{}). Revocations, host records and reads keep working. \
     Administrators: investigate (restore the audit directory from a backup if events were \
     lost), then acknowledge with `breakglass audit acknowledge-fork --reason TEXT` as an \
     admin",
    more_reports(*.others)
)]
pub struct Halt {
    /// The host of the first report.
    pub host: String,
    /// The size of its checkpoint.
    pub size: u64,
    /// The log's size then.
    pub log_size: u64,
    /// The leaf index of the first report.
    pub index: u64,
    /// Further reports.
    pub others: usize,
}

/// ", and N more report(s)" when there are.
fn more_reports(others: usize) -> String {
    if others > 0 {
        format!(", and {others} more report(s)")
    } else {
        String::new()
    }
}

impl Error {
    /// The request field `field` breaks its rule (`why`): `INVALID_ARGUMENT` whose message
    /// starts with the field's name, as every refused field is reported.
    pub fn invalid_field(field: &'static str, why: impl std::fmt::Display) -> Self {
        Error::InvalidField {
            field,
            why: why.to_string(),
        }
    }

    /// The gRPC status code of the error: the one mapping of domain errors to the wire.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidField { .. }
            | Error::DrillAndEmergency
            | Error::NoRevocationTarget
            | Error::BadGrantId { .. }
            | Error::TooManyRecords { .. }
            | Error::WitnessTooLong
            | Error::RangeReversed { .. }
            | Error::BeyondLog { .. }
            | Error::Reason { .. } => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::UnknownIdentity { .. }
            | Error::NotHostOrAdmin { .. }
            | Error::NotAuditReader { .. }
            | Error::NotAHost { .. }
            | Error::NotAWitness(_)
            | Error::NotAdmin { .. }
            | Error::Policy(_)
            | Error::TtlOverTier { .. }
            | Error::EmergencyNotAllowed { .. }
            | Error::EmergencyQuotaSpent { .. }
            | Error::KeyRevoked { .. }
            | Error::SelfApproval { .. }
            | Error::SelfDenial(_)
            | Error::SelfReview(_)
            | Error::NotApprover { .. }
            | Error::NotReviewer { .. }
            | Error::OnlyRequester { .. }
            | Error::MayNotSee { .. }
            | Error::NotGrantOwner { .. }
            | Error::RequestDenied { .. } => Code::PermissionDenied,
            Error::NoRequest(_) | Error::NoGrant(_) | Error::NothingToRevoke(_) => Code::NotFound,
            Error::GrantExpired { .. }
            | Error::Closed { .. }
            | Error::NotPending(_)
            | Error::TierGone { .. }
            | Error::NoApprovalNeeded(_)
            | Error::AlreadyApproved { .. }
            | Error::NotDrillTier { .. }
            | Error::DrillReported(_)
            | Error::AlreadyReviewed { .. }
            | Error::CertificateGone { .. }
            | Error::StillWaiting { .. }
            | Error::Halted(_)
            | Error::NothingToAcknowledge => Code::FailedPrecondition,
            Error::RequestExpired(_) => Code::DeadlineExceeded,
            Error::RequestCancelled { .. } => Code::Aborted,
            Error::AuditUnavailable(_) | Error::NoKrl { .. } | Error::ShuttingDown => {
                Code::Unavailable
            }
            Error::AuditRead(e) => match e {
                AuditError::OutOfRange(_) => Code::InvalidArgument,
                AuditError::Corrupt { .. } => Code::Internal,
                _ => Code::Unavailable,
            },
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Unauthenticated> for Error {
    fn from(e: Unauthenticated) -> Self {
        Error::Unauthenticated(e)
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(e: Error) -> (Code, String) {
        let s = tonic::Status::from(e);
        (s.code(), s.message().to_owned())
    }

    #[test]
    fn each_error_maps_to_its_code_and_says_what_happened() {
        let r = RequestId(0x0123_4567_89ab_cdef);
        let g = GrantId(0xfedc_ba98_7654_3210);
        assert_eq!(
            wire(Error::invalid_field(
                "hosts",
                "give at least one host (--host NAME)"
            )),
            (
                Code::InvalidArgument,
                "hosts: give at least one host (--host NAME)".into()
            )
        );
        assert_eq!(
            wire(Error::Reason {
                tier: "high".into(),
                problem: ReasonProblem::Missing
            }),
            (
                Code::InvalidArgument,
                "reason: say why you need access (--reason \"INC-4411 primary down\"); tier \
                 `high` requires a reason"
                    .into()
            )
        );
        assert_eq!(
            wire(Error::SelfApproval {
                request: r,
                requester: "alice".into(),
                approver_groups: vec![],
            }),
            (
                Code::PermissionDenied,
                format!(
                    "you cannot approve your own request {r} (requested by alice); it needs \
                     approval from someone else in none"
                )
            )
        );
        assert_eq!(
            wire(Error::OnlyRequester {
                requester: "alice".into(),
                act: RequesterAct::Grant {
                    what: "list the sessions of",
                    grant: g
                },
            }),
            (
                Code::PermissionDenied,
                format!("only the requester (alice) may list the sessions of grant {g}")
            )
        );
        assert_eq!(
            wire(Error::TtlOverTier {
                ttl: Duration::from_secs(7200),
                max: Duration::from_secs(1800),
                tier: "high".into(),
            }),
            (
                Code::PermissionDenied,
                "TTL 2h exceeds the 30m maximum of tier `high`".into()
            )
        );
        assert_eq!(
            wire(Error::Closed {
                request: r,
                how: Closed::Cancelled(Actor::User("bob".into()))
            })
            .0,
            Code::FailedPrecondition
        );
        assert_eq!(wire(Error::NoGrant(g)).0, Code::NotFound);
        assert_eq!(
            wire(Error::RequestExpired(r.to_string())).0,
            Code::DeadlineExceeded
        );
        assert_eq!(
            wire(Error::RequestCancelled {
                request: r.to_string(),
                by: "bob".into()
            })
            .0,
            Code::Aborted
        );
        assert_eq!(
            wire(Error::Unauthenticated(Unauthenticated::NoSan)),
            (
                Code::Unauthenticated,
                "client certificate has no URI or e-mail SAN to identify you by".into()
            )
        );
        assert_eq!(wire(Error::ShuttingDown).0, Code::Unavailable);
        assert_eq!(
            wire(Error::Internal("x".into())),
            (Code::Internal, "internal error: x".into())
        );
    }

    #[test]
    fn an_audit_read_error_keeps_its_own_code() {
        assert_eq!(
            wire(Error::AuditRead(AuditError::OutOfRange(
                "index 9 of 3".into()
            ))),
            (Code::InvalidArgument, "index 9 of 3".into())
        );
        let (code, message) = wire(Error::AuditRead(AuditError::Unavailable("full".into())));
        assert_eq!(code, Code::Unavailable);
        assert!(!message.starts_with("internal error"), "{message}");
    }

    #[test]
    fn a_halt_names_the_first_report_and_counts_the_others() {
        let halt = |others| Halt {
            host: "db-1".into(),
            size: 10,
            log_size: 7,
            index: 42,
            others,
        };
        let one = halt(0).to_string();
        assert!(
            one.starts_with(
                "issuance is stopped: host db-1 showed a checkpoint of this CA's audit log (10 \
                 events, signed with the log's key) that the log does not extend (it held 7 \
                 events then): the log was rolled back or forked (audit event 42 \
                 log_consistency_failed). Revocations"
            ),
            "{one}"
        );
        assert!(
            halt(2)
                .to_string()
                .contains("log_consistency_failed, and 2 more report(s))."),
            "{}",
            halt(2)
        );
        assert_eq!(
            wire(Error::Halted(halt(0))),
            (Code::FailedPrecondition, one)
        );
    }
}
