//! The daemon's errors: what happened, with its facts (rustls's `Error` is the model), and
//! their one mapping to the wire. [`Error::code`] is the gRPC status code of each, its
//! `Display` the message the caller reads (what was wrong and what to do), and
//! `From<Error> for tonic::Status` puts the two together; nothing else builds a status
//! from a domain error.

use std::time::Duration;

use breakglass_proto::audit::{Actor, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use tonic::Code;

use self::detail::reason_text;
use crate::audit::AuditError;
use crate::fmt_duration;

mod detail;
mod enrollment;
mod recording;

pub(crate) use self::detail::groups_text;
pub use self::detail::{
    Closed, Denial, Halt, NothingToRevoke, ReasonProblem, RequesterAct, Unauthenticated,
};
pub use self::enrollment::EnrollmentError;
pub use self::recording::RecordingError;

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
         config, with its groups (hosts: id = \"host://NAME\", groups = [\"hosts\"], or \
         enroll the host with a join token: breakglass-ca token create, breakglass host enroll)"
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
         the audit log (with [audit] backend = \"postgres\", its database)"
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
    /// A session recording call failed ([`RecordingError`]).
    #[error("{0}")]
    Recording(RecordingError),
    /// An enrollment or identity call failed ([`EnrollmentError`]).
    #[error("{0}")]
    Enrollment(EnrollmentError),
    /// A login made with an SSH key asked for a tier that does not take it (its
    /// `ssh_key_login`).
    #[error(
        "this login was made with an SSH key (the break-glass login); tier `{tier}` {}: \
         run `breakglass login` to log in with SSO",
        if *.emergency_only { "takes it only for a declared emergency (--emergency)" } else { "needs an SSO login" }
    )]
    LoginMethod {
        /// The tier.
        tier: String,
        /// The tier takes SSH-key logins for declared emergencies.
        emergency_only: bool,
    },
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
            | Error::LoginMethod { .. }
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
            Error::Recording(e) => e.code(),
            Error::Enrollment(e) => e.code(),
        }
    }
}

impl From<EnrollmentError> for Error {
    fn from(e: EnrollmentError) -> Self {
        Error::Enrollment(e)
    }
}

impl From<Unauthenticated> for Error {
    fn from(e: Unauthenticated) -> Self {
        Error::Unauthenticated(e)
    }
}

impl Error {
    /// Who refused the request, when the error is a refusal of the request itself (by the
    /// policy or by an approver) rather than of the caller: the status carries it under
    /// [`REFUSED_KEY`](breakglass_proto::status::REFUSED_KEY), so that clients tell a
    /// refusal (exit 79) from a caller who may not call (exit 77).
    #[must_use]
    pub fn refused_by(&self) -> Option<&'static str> {
        use breakglass_proto::status::{REFUSED_BY_APPROVER, REFUSED_BY_POLICY};
        match self {
            Error::Policy(_)
            | Error::Reason { .. }
            | Error::TtlOverTier { .. }
            | Error::EmergencyNotAllowed { .. }
            | Error::EmergencyQuotaSpent { .. }
            | Error::LoginMethod { .. }
            | Error::KeyRevoked { .. } => Some(REFUSED_BY_POLICY),
            Error::RequestDenied { .. } => Some(REFUSED_BY_APPROVER),
            _ => None,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let mut s = tonic::Status::new(e.code(), e.to_string());
        if let Some(by) = e.refused_by() {
            s.metadata_mut().insert(
                breakglass_proto::status::REFUSED_KEY,
                tonic::metadata::MetadataValue::from_static(by),
            );
        }
        if matches!(e, Error::AuditUnavailable(_) | Error::ShuttingDown) {
            s.metadata_mut().insert(
                breakglass_proto::status::RETRY_PUSHBACK_KEY,
                tonic::metadata::MetadataValue::from_static(
                    breakglass_proto::status::RETRY_PUSHBACK_MS,
                ),
            );
        }
        s
    }
}

#[cfg(test)]
mod tests;
