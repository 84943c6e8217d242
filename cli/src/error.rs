//! The CLI's errors, the one table of exit statuses ([`EXIT_STATUSES`]), and the single
//! mapping of errors to them ([`CliError::exit_status`]). The README's table and the man
//! pages' EXIT STATUS section are generated from [`EXIT_STATUSES`] (`xtask`), and checked
//! against it by its tests.
#![forbid(unsafe_code)]

use tonic::Code;

/// One exit status of `breakglass`: its number, its name, and what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The process exit code.
    pub code: i32,
    /// Its name (sysexits.h's, without `EX_`, where it has one).
    pub name: &'static str,
    /// What happened, and what to do.
    pub meaning: &'static str,
}

impl ExitStatus {
    /// Success.
    pub const OK: Self = Self {
        code: 0,
        name: "OK",
        meaning: "success",
    };
    /// A check answered no: a drill failed, or `ssh-check` found no covering certificate.
    pub const CHECK_FAILED: Self = Self {
        code: 1,
        name: "CHECK_FAILED",
        meaning: "a check answered no: `breakglass drill` failed (the failed step and what to \
                  check were printed; the failure is in the audit log and was alerted), or \
                  `ssh-check` found no certificate that covers the login",
    };
    /// The command line is wrong.
    pub const USAGE: Self = Self {
        code: 64,
        name: "USAGE",
        meaning: "the command line is wrong: an unknown, missing or conflicting flag or \
                  argument, a value that does not parse, a file a flag names that cannot be \
                  read, no server given; nothing was sent",
    };
    /// The input is malformed.
    pub const DATA: Self = Self {
        code: 65,
        name: "DATAERR",
        meaning: "the input is malformed: a file that is not what its flag wants (a private \
                  key given as --public-key: nothing was sent), a request field the daemon \
                  found invalid, a request that can no longer change, an audit log, checkpoint \
                  or KRL that does not verify",
    };
    /// No such request or grant.
    pub const NOT_FOUND: Self = Self {
        code: 66,
        name: "NOINPUT",
        meaning: "no such request or grant, or no grant the revocation selects",
    };
    /// The daemon cannot be reached or cannot serve now.
    pub const UNAVAILABLE: Self = Self {
        code: 69,
        name: "UNAVAILABLE",
        meaning: "breakglass-ca cannot be reached (connection refused, timed out, cut) or \
                  cannot serve the call now (its audit log cannot be written): nothing was \
                  issued; the message says where it tried; try again when it is back",
    };
    /// An internal error.
    pub const SOFTWARE: Self = Self {
        code: 70,
        name: "SOFTWARE",
        meaning: "an internal error of breakglass-ca or of the CLI (a bug, or damage the \
                  daemon found in its own files): report it with the message",
    };
    /// A local file could not be read or written.
    pub const IO: Self = Self {
        code: 74,
        name: "IOERR",
        meaning: "a local file could not be read or written (a certificate, the KRL, the \
                  spool, an output file)",
    };
    /// The request ended without a certificate; ask again.
    pub const TEMP_FAIL: Self = Self {
        code: 75,
        name: "TEMPFAIL",
        meaning: "the request ended without a certificate: it expired waiting for approval, \
                  or was cancelled; ask again",
    };
    /// This identity may not do that.
    pub const NO_PERM: Self = Self {
        code: 77,
        name: "NOPERM",
        meaning: "this identity may not do that: not listed in the daemon's config, not in \
                  the groups the call needs (approver, reviewer, auditor, host, admin), not \
                  the requester, or its own request; or the daemon refused the client \
                  certificate (expired, or not from the CA it trusts)",
    };
    /// The settings are wrong.
    pub const CONFIG: Self = Self {
        code: 78,
        name: "CONFIG",
        meaning: "the client settings do not fit (a --ca-cert that did not sign the daemon's \
                  certificate, a --server-name the certificate does not carry, a --cert and \
                  --key that do not match, a client config file that does not parse), or \
                  `host doctor` found problems in this host's set-up",
    };
    /// The request was refused by the policy or by an approver.
    ///
    /// 79 is the first code after the sysexits.h range (64 to 78), so it bends no sysexits
    /// meaning, and stays clear of the shell's 126 and up: distinct from 77 because the
    /// fix is another request (or the approvers' mind), not another identity.
    pub const REFUSED: Self = Self {
        code: 79,
        name: "REFUSED",
        meaning: "the request was refused by the policy (a deny rule, no rule, a TTL over the \
                  limit, the reason or ticket its tier wants, an emergency the tier does not \
                  allow, a revoked key) or denied by an approver: the same request gets the \
                  same answer; change it, or talk to the approvers",
    };
}

/// What the exit-status table does not cover: `breakglass ssh` becomes ssh.
pub const EXIT_STATUS_NOTE: &str = "The same codes for every command, and the message on \
     standard error says what happened and what to do; except that `breakglass ssh`, once it \
     has a certificate, becomes ssh: its exit status is then ssh's (the remote command's, or \
     255 when ssh fails).";

/// Every exit status of `breakglass`, by code: the one table.
pub const EXIT_STATUSES: [ExitStatus; 12] = [
    ExitStatus::OK,
    ExitStatus::CHECK_FAILED,
    ExitStatus::USAGE,
    ExitStatus::DATA,
    ExitStatus::NOT_FOUND,
    ExitStatus::UNAVAILABLE,
    ExitStatus::SOFTWARE,
    ExitStatus::IO,
    ExitStatus::TEMP_FAIL,
    ExitStatus::NO_PERM,
    ExitStatus::CONFIG,
    ExitStatus::REFUSED,
];

/// The exit status of a command-line parse failure (clap's): 0 for `--help` and
/// `--version`, which clap reports as errors, else [`ExitStatus::USAGE`].
#[must_use]
pub fn clap_exit(e: &clap::Error) -> ExitStatus {
    if e.use_stderr() {
        ExitStatus::USAGE
    } else {
        ExitStatus::OK
    }
}

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
    /// A request was denied by an approver (exit 79).
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
    /// Local input is malformed, found before anything was sent (exit 65).
    #[error("{0}")]
    Data(String),
    /// The client settings do not fit the daemon: CA certificate, server name, a
    /// certificate and key that do not match, a client config that does not parse (exit 78).
    #[error("{0}")]
    Config(String),
    /// The daemon refused the client certificate (exit 77).
    #[error("{0}")]
    Permission(String),
    /// The daemon refused the request by policy (exit 79).
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// The exit status of the error, from [`EXIT_STATUSES`]: the one mapping.
    #[must_use]
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            CliError::Usage(_) => ExitStatus::USAGE,
            CliError::Io(_) => ExitStatus::IO,
            CliError::Unavailable(_) => ExitStatus::UNAVAILABLE,
            CliError::Verification(_) | CliError::Data(_) => ExitStatus::DATA,
            CliError::Denied(_) | CliError::Refused(_) => ExitStatus::REFUSED,
            CliError::NotIssued(_) => ExitStatus::TEMP_FAIL,
            CliError::Misconfigured(_) | CliError::Config(_) => ExitStatus::CONFIG,
            CliError::DrillFailed(_) => ExitStatus::CHECK_FAILED,
            CliError::Permission(_) => ExitStatus::NO_PERM,
            CliError::Rpc { code, .. } => match code {
                Code::NotFound => ExitStatus::NOT_FOUND,
                // The daemon's "request expired" and "cancelled".
                Code::Aborted | Code::DeadlineExceeded => ExitStatus::TEMP_FAIL,
                Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                    ExitStatus::DATA
                }
                Code::PermissionDenied | Code::Unauthenticated => ExitStatus::NO_PERM,
                Code::Unavailable => ExitStatus::UNAVAILABLE,
                _ => ExitStatus::SOFTWARE,
            },
        }
    }

    /// The process exit code ([`CliError::exit_status`]).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        self.exit_status().code
    }

    /// Whether `s` is the transport's failure rather than the daemon's answer: the
    /// connection could not be made, or died (a refused client certificate shows up as a
    /// bare "transport error" at the first call).
    #[must_use]
    pub fn is_transport(s: &tonic::Status) -> bool {
        let msg = s.message();
        // A status that came over the wire has no source; one made from a failed
        // connection carries the failure.
        if std::error::Error::source(s).is_some() {
            return true;
        }
        match s.code() {
            // The CLI never cancels its own calls: Cancelled means the connection died,
            // typically a refused client certificate (TLS 1.3 reports it only at the
            // first call).
            Code::Cancelled => true,
            // Unavailable from the daemon itself (e.g. the audit log cannot be written)
            // carries its own explanation; transport failures do not.
            Code::Unavailable | Code::Unknown => {
                msg.is_empty()
                    || ["transport error", "connect", "connection", "dns error"]
                        .iter()
                        .any(|n| msg.contains(n))
            }
            _ => false,
        }
    }

    /// Translates a gRPC status, explaining transport failures in general terms
    /// (`connect::failure` explains them from the connection's settings).
    pub fn from_status(s: tonic::Status, server: &str) -> Self {
        // The daemon quotes what it received escaped; a raw hazard is escaped here.
        let msg = breakglass_proto::text::escape_hazards(s.message()).into_owned();
        let refused = s
            .metadata()
            .get(breakglass_proto::status::REFUSED_KEY)
            .is_some();
        match s.code() {
            _ if Self::is_transport(&s) => CliError::Unavailable(format!(
                "cannot talk to breakglass-ca at {server}: {}\n\
                     Check that the daemon is running there, that --ca-cert is the CA that signed its \
                     certificate, and that your client certificate (--cert/--key) is signed by the CA \
                     the daemon trusts and has not expired.",
                root_cause(&s).unwrap_or(msg)
            )),
            _ if refused => CliError::Refused(format!("refused: {msg}")),
            Code::InvalidArgument => CliError::Rpc {
                code: s.code(),
                message: format!("invalid request: {msg}"),
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
pub fn root_cause(s: &tonic::Status) -> Option<String> {
    use std::error::Error;
    let mut cur: &(dyn Error + 'static) = s.source()?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    Some(cur.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_table_is_by_code_without_duplicates() {
        for w in EXIT_STATUSES.windows(2) {
            assert!(w[0].code < w[1].code, "{w:?}");
            assert_ne!(w[0].name, w[1].name);
        }
    }

    #[test]
    fn every_error_exits_with_a_status_of_the_table() {
        let s = String::new;
        let errors = [
            CliError::Usage(s()),
            CliError::Io(s()),
            CliError::Unavailable(s()),
            CliError::Verification(s()),
            CliError::Denied(s()),
            CliError::NotIssued(s()),
            CliError::Misconfigured(s()),
            CliError::DrillFailed(s()),
            CliError::Data(s()),
            CliError::Config(s()),
            CliError::Permission(s()),
            CliError::Refused(s()),
        ];
        let codes = [
            Code::NotFound,
            Code::Aborted,
            Code::DeadlineExceeded,
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unavailable,
            Code::Internal,
            Code::Unimplemented,
        ]
        .map(|code| CliError::Rpc { code, message: s() });
        for e in errors.iter().chain(&codes) {
            assert!(EXIT_STATUSES.contains(&e.exit_status()), "{e:?}");
        }
    }

    #[test]
    fn a_status_marked_refused_exits_79_and_an_unmarked_denial_77() {
        let mut marked = tonic::Status::permission_denied("deny rule `no-root`");
        marked.metadata_mut().insert(
            breakglass_proto::status::REFUSED_KEY,
            tonic::metadata::MetadataValue::from_static(
                breakglass_proto::status::REFUSED_BY_POLICY,
            ),
        );
        assert_eq!(CliError::from_status(marked, "x").exit_code(), 79);
        let authz = tonic::Status::permission_denied("not an approver");
        assert_eq!(CliError::from_status(authz, "x").exit_code(), 77);
    }
}
