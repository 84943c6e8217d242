//! The daemon's request errors and their single mapping to gRPC statuses.

/// Why a call failed. Every message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed or out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The policy does not allow the request.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller could not be identified from its transport.
    #[error("{0}")]
    Unauthenticated(String),
    /// The daemon cannot serve the call right now (e.g. cannot record it).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure inside the daemon.
    #[error("internal error: {0}")]
    Internal(String),
    /// The request or grant named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is not in a state that allows the call (e.g. already decided).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request expired before it was approved.
    #[error("{0}")]
    Expired(String),
    /// The request was cancelled.
    #[error("{0}")]
    Cancelled(String),
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
}

impl Error {
    /// The request field `field` breaks its rule (`why`): `INVALID_ARGUMENT` whose message
    /// starts with the field's name, as every refused field is reported.
    pub fn invalid_field(field: &str, why: impl std::fmt::Display) -> Self {
        Error::InvalidArgument(format!("{field}: {why}"))
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::PermissionDenied(_) => tonic::Status::permission_denied(msg),
            Error::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            Error::Unavailable(_) => tonic::Status::unavailable(msg),
            Error::Internal(_) => tonic::Status::internal(msg),
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::Expired(_) => tonic::Status::deadline_exceeded(msg),
            Error::Cancelled(_) => tonic::Status::aborted(msg),
            Error::UnknownIdentity { .. } => tonic::Status::permission_denied(msg),
        }
    }
}
