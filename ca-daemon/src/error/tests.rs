//! Tests of the errors: codes and messages.

use super::*;

fn wire(e: Error) -> (Code, String) {
    let s = tonic::Status::from(e);
    (s.code(), s.message().to_owned())
}

#[test]
fn each_error_maps_to_its_code_and_says_what_happened() {
    let r = RequestId(0x0123_4567_89ab_cdef);
    let g = GrantId(0xfedc_ba98_7654_3210);
    assert_eq!(
        wire(Error::invalid_field(
            "hosts",
            "give at least one host (--host NAME)"
        )),
        (
            Code::InvalidArgument,
            "hosts: give at least one host (--host NAME)".into()
        )
    );
    assert_eq!(
        wire(Error::Reason {
            tier: "high".into(),
            problem: ReasonProblem::Missing
        }),
        (
            Code::InvalidArgument,
            "reason: say why you need access (--reason \"INC-4411 primary down\"); tier \
             `high` requires a reason"
                .into()
        )
    );
    assert_eq!(
        wire(Error::SelfApproval {
            request: r,
            requester: "alice".into(),
            approver_groups: vec![],
        }),
        (
            Code::PermissionDenied,
            format!(
                "you cannot approve your own request {r} (requested by alice); it needs \
                 approval from someone else in none"
            )
        )
    );
    assert_eq!(
        wire(Error::OnlyRequester {
            requester: "alice".into(),
            act: RequesterAct::Grant {
                what: "list the sessions of",
                grant: g
            },
        }),
        (
            Code::PermissionDenied,
            format!("only the requester (alice) may list the sessions of grant {g}")
        )
    );
    assert_eq!(
        wire(Error::TtlOverTier {
            ttl: Duration::from_secs(7200),
            max: Duration::from_secs(1800),
            tier: "high".into(),
        }),
        (
            Code::PermissionDenied,
            "TTL 2h exceeds the 30m maximum of tier `high`".into()
        )
    );
    assert_eq!(
        wire(Error::Closed {
            request: r,
            how: Closed::Cancelled(Actor::User("bob".into()))
        })
        .0,
        Code::FailedPrecondition
    );
    assert_eq!(wire(Error::NoGrant(g)).0, Code::NotFound);
    assert_eq!(
        wire(Error::RequestExpired(r.to_string())).0,
        Code::DeadlineExceeded
    );
    assert_eq!(
        wire(Error::RequestCancelled {
            request: r.to_string(),
            by: "bob".into()
        })
        .0,
        Code::Aborted
    );
    assert_eq!(
        wire(Error::Unauthenticated(Unauthenticated::NoSan)),
        (
            Code::Unauthenticated,
            "client certificate has no URI or e-mail SAN to identify you by".into()
        )
    );
    assert_eq!(wire(Error::ShuttingDown).0, Code::Unavailable);
    assert_eq!(
        wire(Error::Internal("x".into())),
        (Code::Internal, "internal error: x".into())
    );
}

#[test]
fn an_audit_read_error_keeps_its_own_code() {
    assert_eq!(
        wire(Error::AuditRead(AuditError::OutOfRange(
            "index 9 of 3".into()
        ))),
        (Code::InvalidArgument, "index 9 of 3".into())
    );
    let (code, message) = wire(Error::AuditRead(AuditError::Unavailable("full".into())));
    assert_eq!(code, Code::Unavailable);
    assert!(!message.starts_with("internal error"), "{message}");
}

#[test]
fn a_halt_names_the_first_report_and_counts_the_others() {
    let halt = |others| Halt {
        host: "db-1".into(),
        size: 10,
        log_size: 7,
        index: 42,
        others,
    };
    let one = halt(0).to_string();
    assert!(
        one.starts_with(
            "issuance is stopped: host db-1 showed a checkpoint of this CA's audit log (10 \
             events, signed with the log's key) that the log does not extend (it held 7 \
             events then): the log was rolled back or forked (audit event 42 \
             log_consistency_failed). Revocations"
        ),
        "{one}"
    );
    assert!(
        halt(2)
            .to_string()
            .contains("log_consistency_failed, and 2 more report(s))."),
        "{}",
        halt(2)
    );
    assert_eq!(
        wire(Error::Halted(halt(0))),
        (Code::FailedPrecondition, one)
    );
}

#[test]
fn refusals_of_the_request_are_marked_and_refusals_of_the_caller_are_not() {
    use breakglass_proto::audit::event::RefusalKind;
    use breakglass_proto::status::{REFUSED_BY_APPROVER, REFUSED_BY_POLICY, REFUSED_KEY};
    let marked = |e: Error| {
        tonic::Status::from(e)
            .metadata()
            .get(REFUSED_KEY)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let policy = Error::Policy(Denial {
        kind: RefusalKind::DenyRule,
        rule: Some("no-root".into()),
        message: "deny rule `no-root`".into(),
    });
    assert_eq!(marked(policy).as_deref(), Some(REFUSED_BY_POLICY));
    let reason = Error::Reason {
        tier: "critical".into(),
        problem: ReasonProblem::Missing,
    };
    assert_eq!(marked(reason).as_deref(), Some(REFUSED_BY_POLICY));
    let denied = Error::RequestDenied {
        request: "r-1".into(),
        by: "approver".into(),
        reason: "not now".into(),
    };
    assert_eq!(marked(denied).as_deref(), Some(REFUSED_BY_APPROVER));
    let not_approver = Error::NotApprover {
        identity: "bob".into(),
        verb: "approve",
        tier: "critical".into(),
        approver_groups: vec![],
        groups: vec![],
    };
    assert_eq!(marked(not_approver), None);
    assert_eq!(marked(Error::NoRequest(RequestId(1))), None);
}

#[test]
fn a_daemon_that_did_nothing_asks_to_be_tried_again_in_a_second() {
    use breakglass_proto::status::{RETRY_PUSHBACK_KEY, RETRY_PUSHBACK_MS};
    let pushback = |e: Error| {
        tonic::Status::from(e)
            .metadata()
            .get(RETRY_PUSHBACK_KEY)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        pushback(Error::ShuttingDown).as_deref(),
        Some(RETRY_PUSHBACK_MS)
    );
    assert_eq!(
        pushback(Error::AuditUnavailable(crate::audit::AuditError::Closed)).as_deref(),
        Some(RETRY_PUSHBACK_MS)
    );
    assert_eq!(pushback(Error::NoRequest(RequestId(1))), None);
}
