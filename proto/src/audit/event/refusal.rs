//! Refusals by policy: of a certificate request, of an action on a request or grant,
//! and the marker that an identity's refusals are no longer recorded one by one.

use std::fmt;

use super::codec::{Codec, DecodeError, EncodeError, Reader, Writer, fields};
use super::ids::{RequestId, Timestamp};

/// Why policy refused a call: a stable code for each kind, so tooling can filter refusals
/// without parsing messages (never reused, never renumbered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RefusalKind {
    /// A deny rule matched the request.
    DenyRule = 1,
    /// No allow rule covers the request (the closest rule, if any, is named).
    NoRule = 2,
    /// The TTL asked for exceeds the rule's or the tier's maximum.
    Ttl = 3,
    /// The tier's reason requirements (given, long enough) are not met.
    Reason = 4,
    /// The tier requires a ticket reference in the reason and there is none.
    Ticket = 5,
    /// A declared emergency on a tier that allows none.
    EmergencyNotAllowed = 6,
    /// The requester's emergency allowance (`emergency_per_day`) is spent: the emergency
    /// is refused and the request waits for the tier's normal approvals instead.
    EmergencyQuota = 7,
    /// The caller is not a configured identity.
    UnknownIdentity = 8,
    /// Approving, denying or reviewing one's own request or grant (also through another
    /// identity of the same owner).
    SelfApproval = 9,
    /// Approving or denying without being in the tier's approver groups.
    NotApprover = 10,
    /// Reviewing without being in the tier's reviewer groups.
    NotReviewer = 11,
    /// Acting on another person's request or grant without a role that allows it (cancel,
    /// fetch, watch, show, sessions, drill report, revoke).
    NotRequester = 12,
    /// A login made with an SSH key (the break-glass login) asked for a tier that takes
    /// such logins only for a declared emergency, or not at all (`ssh_key_login`).
    LoginMethod = 13,
}

impl RefusalKind {
    /// Every kind, in numeric order.
    pub const ALL: [RefusalKind; 13] = [
        RefusalKind::DenyRule,
        RefusalKind::NoRule,
        RefusalKind::Ttl,
        RefusalKind::Reason,
        RefusalKind::Ticket,
        RefusalKind::EmergencyNotAllowed,
        RefusalKind::EmergencyQuota,
        RefusalKind::UnknownIdentity,
        RefusalKind::SelfApproval,
        RefusalKind::NotApprover,
        RefusalKind::NotReviewer,
        RefusalKind::NotRequester,
        RefusalKind::LoginMethod,
    ];

    /// The kind for a number, if it is one.
    #[must_use]
    pub fn from_u8(n: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u8 == n)
    }

    /// Stable snake_case name, for syslog, `audit show` and webhooks.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::DenyRule => "deny_rule",
            RefusalKind::NoRule => "no_rule",
            RefusalKind::Ttl => "ttl",
            RefusalKind::Reason => "reason",
            RefusalKind::Ticket => "ticket",
            RefusalKind::EmergencyNotAllowed => "emergency_not_allowed",
            RefusalKind::EmergencyQuota => "emergency_quota",
            RefusalKind::UnknownIdentity => "unknown_identity",
            RefusalKind::SelfApproval => "self_approval",
            RefusalKind::NotApprover => "not_approver",
            RefusalKind::NotReviewer => "not_reviewer",
            RefusalKind::NotRequester => "not_requester",
            RefusalKind::LoginMethod => "login_method",
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One byte, the kind's stable number.
impl Codec for RefusalKind {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.u8(*self as u8);
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u8()?;
        RefusalKind::from_u8(v).ok_or_else(|| DecodeError {
            offset: r.pos - 1,
            reason: format!("unknown refusal kind {v}"),
        })
    }
}

fields! {
    /// A certificate request was refused by policy (the caller is the actor). Nothing was
    /// created, except for [`RefusalKind::EmergencyQuota`]: then only the emergency was refused
    /// and `request_id` names the request that waits for normal approval.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestRefused {
        /// Why, as a stable kind.
        pub kind: RefusalKind,
        /// Identity of the caller.
        pub identity: String,
        /// Unix accounts asked for.
        pub principals: Vec<String>,
        /// Hosts (or host patterns) asked for.
        pub hosts: Vec<String>,
        /// Forced command asked for, `None` for an interactive shell.
        pub command: Option<String>,
        /// Lifetime asked for, in seconds.
        pub ttl_seconds: u64,
        /// Asked as a declared emergency.
        pub emergency: bool,
        /// Asked as a break-glass drill.
        pub drill: bool,
        /// The requester's reason for access.
        pub request_reason: String,
        /// The policy rule that refused (deny rule), or the closest allow rule; empty if none.
        pub rule: String,
        /// The tier of that rule; empty if none.
        pub tier: String,
        /// The refusal as the caller was told it.
        pub reason: String,
        /// The request created instead (emergency quota spent), if any.
        pub request_id: Option<RequestId>,
    }
}

fields! {
    /// A call on an existing request or grant (approve, deny, cancel, review, revoke, fetch,
    /// watch, show, sessions, drill report) was refused by policy (the caller is the actor).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ActionRefused {
        /// Why, as a stable kind.
        pub kind: RefusalKind,
        /// Identity of the caller.
        pub identity: String,
        /// The call refused, as a stable name (`approve`, `deny`, `cancel`, `review`, `revoke`,
        /// `fetch`, `watch`, `show`, `sessions`, `report_drill`).
        pub action: String,
        /// What it named: a request id (`r-…`), a grant id (`g-…`), or a revocation selector.
        pub target: String,
        /// The refusal as the caller was told it.
        pub reason: String,
    }
}

fields! {
    /// An identity reached the per-identity limit of recorded refusals in a window: further
    /// refusals of it in the window are still refused but not recorded one by one (recorded
    /// once per identity and window; the daemon is the actor).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RefusalsLimited {
        /// The identity whose refusals are no longer recorded one by one.
        pub identity: String,
        /// Start of the window.
        pub window_start: Timestamp,
        /// End of the window (exclusive): recording resumes then.
        pub window_end: Timestamp,
        /// Refusals recorded per identity and window (`[refusals] per_identity_per_hour`).
        pub limit: u32,
    }
}
