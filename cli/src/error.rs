//! The CLI's errors and their single mapping to exit codes and messages.
#![forbid(unsafe_code)]

use tonic::Code;

/// What went wrong in a `breakglass` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags, settings or local files are wrong (exit 64).
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written (exit 74).
    #[error("{0}")]
    Io(String),
    /// The daemon could not be reached or refused the connection (exit 69).
    #[error("{0}")]
    Unavailable(String),
    /// The audit log (a copy, or the daemon's) does not verify (exit 65).
    #[error("{0}")]
    Verification(String),
    /// A request was denied by an approver (exit 77).
    #[error("{0}")]
    Denied(String),
    /// A request ended without a certificate: expired or cancelled (exit 75).
    #[error("{0}")]
    NotIssued(String),
    /// `host doctor` found problems in this host's set-up (exit 78, EX_CONFIG).
    #[error("{0}")]
    Misconfigured(String),
    /// A break-glass drill failed; what to check was printed (exit 1).
    #[error("{0}")]
    DrillFailed(String),
    /// The daemon answered with an error.
    #[error("{message}")]
    Rpc {
        /// gRPC status code.
        code: Code,
        /// Explanation for the user.
        message: String,
    },
}

impl CliError {
    /// Exit code (sysexits.h): 1 a drill failed, 64 usage, 65 bad request data, 66 no such
    /// request or grant, 69 unavailable, 74 I/O, 75 request expired or
    /// cancelled (try again), 77 permission denied or request denied,
    /// 78 host set-up problems (`host doctor`), 70 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 64,
            CliError::Io(_) => 74,
            CliError::Unavailable(_) => 69,
            CliError::Verification(_) => 65,
            CliError::Denied(_) => 77,
            CliError::NotIssued(_) => 75,
            CliError::Misconfigured(_) => 78,
            CliError::DrillFailed(_) => 1,
            CliError::Rpc { code, .. } => match code {
                Code::NotFound => 66,
                Code::Aborted => 75,
                Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 65,
                Code::PermissionDenied | Code::Unauthenticated => 77,
                Code::Unavailable | Code::DeadlineExceeded => 69,
                _ => 70,
            },
        }
    }

    /// Translates a gRPC status, explaining transport failures (a refused
    /// client certificate shows up as a bare "transport error" at the first call).
    pub fn from_status(s: tonic::Status, server: &str) -> Self {
        // The daemon quotes what it received escaped; a raw hazard is escaped here.
        let msg = breakglass_proto::text::escape_hazards(s.message()).into_owned();
        let transport = match s.code() {
            // The CLI never cancels its own calls: Cancelled means the
            // connection died, typically a refused client certificate (TLS 1.3
            // reports it only at the first call).
            Code::Cancelled => true,
            // Unavailable from the daemon itself (e.g. the audit log cannot be
            // written) carries its own explanation; transport failures do not.
            Code::Unavailable | Code::Unknown => {
                msg.is_empty()
                    || ["transport error", "connect", "connection", "dns error"]
                        .iter()
                        .any(|n| msg.contains(n))
            }
            _ => false,
        };
        match s.code() {
            _ if transport => CliError::Unavailable(format!(
                "cannot talk to breakglass-ca at {server}: {}\n\
                     Check that the daemon is running there, that --ca-cert is the CA that signed its \
                     certificate, and that your client certificate (--cert/--key) is signed by the CA \
                     the daemon trusts and has not expired.",
                root_cause(&s).unwrap_or(msg)
            )),
            Code::InvalidArgument => CliError::Rpc {
                code: s.code(),
                message: format!("request refused: {msg}"),
            },
            Code::PermissionDenied => CliError::Rpc {
                code: s.code(),
                message: format!("not allowed: {msg}"),
            },
            code => CliError::Rpc {
                code,
                message: format!("breakglass-ca: {msg} ({code:?})"),
            },
        }
    }
}

/// The innermost error behind a status (e.g. "Connection refused (os error 111)").
fn root_cause(s: &tonic::Status) -> Option<String> {
    use std::error::Error;
    let mut cur: &(dyn Error + 'static) = s.source()?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    Some(cur.to_string())
}
