//! The gRPC faces: one file per service of the API, each an implementation of the
//! service's tonic trait that only translates between the wire and the domain: it takes
//! the caller the access layer identified ([`crate::identity::caller`]), turns wire fields
//! into domain values (ids, verdicts, a validated request), calls the domain, and turns
//! its answer, or its [`Error`], into the wire's.
//!
//! | service | face | domain |
//! |---|---|---|
//! | `BreakGlass` | [`breakglass::BreakGlassApi`] | [`crate::service`] |
//! | `Revocations` | [`revocation::RevocationsApi`] | [`crate::revocation`] |
//! | `HostAgent` | [`hosts::HostAgentApi`] | [`crate::hosts`] |
//! | `Audit` | [`audit::AuditApi`] | [`crate::audit`] |
//! | `Witness` | [`witness::WitnessApi`] | [`crate::witness`] |
//! | `Enrollment`, `Identities` | [`enrollment::EnrollmentApi`], [`enrollment::IdentitiesApi`] | [`crate::enrollment`] |

use breakglass_proto::audit::RequestId;
use breakglass_proto::profile::GrantId;

use crate::error::Error;

pub mod audit;
pub mod breakglass;
pub mod enrollment;
pub mod hosts;
pub mod revocation;
pub mod witness;

/// The request id of a call (`r-…`).
pub(crate) fn parse_request_id(s: &str) -> Result<RequestId, Error> {
    s.trim()
        .parse::<RequestId>()
        .map_err(|e| Error::invalid_field("request_id", e))
}

/// The grant id of a call (`g-…`).
pub(crate) fn parse_grant_id(s: &str) -> Result<GrantId, Error> {
    s.trim()
        .parse()
        .map_err(|e| Error::invalid_field("grant_id", e))
}
