//! What a status from breakglass-ca carries besides its gRPC code and message: the mark
//! of a request refused by policy or by an approver. Both arrive as `PERMISSION_DENIED`
//! (a reason the tier wants as `INVALID_ARGUMENT`), like a caller who may not make the
//! call at all; the mark lets a client tell "the answer to this request is no" (exit 79)
//! from "this identity may not do that" (exit 77).
#![forbid(unsafe_code)]

/// Metadata key (an ASCII gRPC header) on a status that refuses a request; its value
/// says who refused: [`REFUSED_BY_POLICY`] or [`REFUSED_BY_APPROVER`].
pub const REFUSED_KEY: &str = "breakglass-refused";

/// The policy refused the request: a deny rule, no rule, a TTL over the limit, the
/// reason or ticket its tier wants, an emergency the tier does not allow, a revoked key.
pub const REFUSED_BY_POLICY: &str = "policy";

/// An approver denied the request.
pub const REFUSED_BY_APPROVER: &str = "approver";

/// Metadata key on an `UNAVAILABLE` status of a daemon that did nothing (its audit log or
/// database could not record, or it is stopping): how many milliseconds to wait before
/// trying again, as gRPC's retry policy reads it ("pushback"). A client that knows other
/// daemons of the same log tries the next one at once.
pub const RETRY_PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";

/// The wait [`RETRY_PUSHBACK_KEY`] asks for.
pub const RETRY_PUSHBACK_MS: &str = "1000";
