//! The facts some errors carry: why a caller is not authenticated, what a reason lacks,
//! what only a requester may do, how a request ended, why issuance is stopped, why the
//! policy refused; and the pieces of text messages share.

use breakglass_proto::audit::event::RefusalKind;
use breakglass_proto::audit::{Actor, RequestId};
use breakglass_proto::profile::GrantId;

/// Groups as messages list them (`none` for no group).
pub(crate) fn groups_text(groups: &[String]) -> String {
    if groups.is_empty() {
        "none".to_owned()
    } else {
        groups.join(", ")
    }
}

/// Why a caller could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    /// An mTLS connection without a client certificate, for a call that needs one.
    #[error(
        "this call needs a client certificate and none was presented: a host gets one with \
         `breakglass host enroll` (a join token from `breakglass-ca token create`), a person \
         with `breakglass login`; then pass it with --cert/--key or the client config file"
    )]
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
pub(super) fn reason_text(tier: &str, problem: &ReasonProblem) -> String {
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
