//! Events of a request's life before a grant: created, approved, denied, expired,
//! cancelled.

use super::codec::fields;
use super::ids::{RequestId, Timestamp};

fields! {
    /// A request for access was received and matched a policy rule.
    ///
    /// Carries everything needed to issue the certificate later (after approvals), so pending
    /// requests survive a restart.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestCreated {
        /// Id of the request.
        pub request_id: RequestId,
        /// Identity of the requester (also the actor).
        pub requester: String,
        /// The requester's OpenSSH public key line.
        pub public_key: String,
        /// Unix accounts asked for.
        pub principals: Vec<String>,
        /// Hosts (or host patterns) asked for.
        pub hosts: Vec<String>,
        /// Requested lifetime in seconds.
        pub ttl_seconds: u64,
        /// Why access is needed.
        pub reason: String,
        /// Forced command, `None` for an interactive shell.
        pub command: Option<String>,
        /// CIDR blocks for the source-address option.
        pub source_addresses: Vec<String>,
        /// `permit-*` extensions asked for.
        pub extensions: Vec<String>,
        /// A declared emergency.
        pub emergency: bool,
        /// Name of the policy rule that matched.
        pub rule: String,
        /// Risk tier of that rule.
        pub tier: String,
        /// Distinct approvals the tier needs before issuance.
        pub approvals_required: u32,
        /// When the request times out if not approved.
        pub expires_at: Timestamp,
    }
}

fields! {
    /// An approver approved a pending request (the approver is the event's actor).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ApprovalAdded {
        /// The request approved.
        pub request_id: RequestId,
        /// Free-text comment of the approver.
        pub comment: String,
    }
}

fields! {
    /// A request was denied, by an approver (the actor) or by policy (actor
    /// [`Actor::Daemon`](crate::audit::event::Actor::Daemon)).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestDenied {
        /// The request denied.
        pub request_id: RequestId,
        /// Why.
        pub reason: String,
    }
}

fields! {
    /// A pending request timed out without enough approvals.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestExpired {
        /// The request that expired.
        pub request_id: RequestId,
    }
}

fields! {
    /// A pending request was withdrawn by its requester (the actor) before it was decided.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct RequestCancelled {
        /// The request cancelled.
        pub request_id: RequestId,
        /// Why (may be empty).
        pub reason: String,
    }
}
