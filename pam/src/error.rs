//! Why the module denies a session.
#![forbid(unsafe_code)]

/// A reason to deny a session. Each variant maps to a stable `reason=` code in syslog
/// and the spool ([`Error::code`]); the text says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A module argument is unknown, repeated or malformed.
    #[error("bad module option: {0}")]
    Option(String),
    /// A file the module relies on is missing, unsafe or unreadable.
    #[error("{0}")]
    File(String),
    /// `SSH_AUTH_INFO_0` is not in the format sshd writes.
    #[error("malformed SSH_AUTH_INFO_0: {0}")]
    AuthInfo(String),
    /// The certificate is signed by a CA that is not in the module's trusted file.
    #[error("{0}")]
    UntrustedCa(String),
    /// The certificate fails a check (signature, type, principal, validity, options, profile).
    #[error("certificate rejected: {0}")]
    Certificate(String),
    /// The certificate's host scope does not include this host.
    #[error("{0}")]
    Scope(String),
    /// The certificate is listed in the revocation list.
    #[error("{0}")]
    Revoked(String),
    /// The login used no breakglass certificate and the module is configured with `require`.
    #[error("{0}")]
    Required(String),
    /// The audit session id is not set, so the session's processes could not be found at expiry.
    #[error(
        "no audit session id (/proc/self/sessionid unset): put `session required pam_loginuid.so` before pam_breakglass.so"
    )]
    NoAuditSession,
    /// The session record could not be written to the spool.
    #[error("cannot write the session record: {0}")]
    Spool(String),
    /// The session guard could not be started.
    #[error("cannot start the session guard: {0}")]
    Guard(String),
    /// A libpam call failed.
    #[error("PAM: {0}")]
    Pam(String),
    /// A bug: the module panicked.
    #[error("internal error (panic): {0}")]
    Internal(String),
    /// A recording tier's certificate does not force the recorder.
    #[error("{0}")]
    RecordingNotForced(String),
    /// A recording tier's session cannot be recorded (recorder or spool missing, disk full).
    #[error("{0}")]
    RecordingUnavailable(String),
}

impl Error {
    /// Stable short code for logs and records.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Error::Option(_) => "bad_option",
            Error::File(_) => "bad_file",
            Error::AuthInfo(_) => "bad_auth_info",
            Error::UntrustedCa(_) => "untrusted_ca",
            Error::Certificate(_) => "bad_certificate",
            Error::Scope(_) => "host_scope",
            Error::Revoked(_) => "revoked",
            Error::Required(_) => "certificate_required",
            Error::NoAuditSession => "no_audit_session",
            Error::Spool(_) => "spool_error",
            Error::Guard(_) => "guard_error",
            Error::Pam(_) => "pam_error",
            Error::Internal(_) => "internal_error",
            Error::RecordingNotForced(_) => "recording_not_forced",
            Error::RecordingUnavailable(_) => "recording_unavailable",
        }
    }
}
