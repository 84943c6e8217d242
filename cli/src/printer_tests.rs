//! Every human-readable printer of the CLI, fed the nasty strings of
//! [`text::NASTY_SAMPLES`] in every text field it shows: the output holds no hazard, has
//! exactly the lines it has for ordinary text (nothing forged), and shows the text escaped.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use breakglass_proto::audit::event::{
    ApprovalAdded, DrillReported, EndReason, GrantIssued, GrantReviewed, GrantRevoked,
    RequestCreated, RequestDenied, ReviewVerdict, SessionEnded, SessionOpened, SessionRef,
};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::text::{self, NASTY_SAMPLES};
use breakglass_proto::v1::{
    Approval, RequestCertificateResponse, RequestInfo, RequestState, ReviewItem, RevokeResponse,
    RevokedGrant, SessionInfo,
};

use crate::{approvals, audit, commands, revoke};

fn request(v: &str) -> RequestInfo {
    RequestInfo {
        request_id: format!("r-1{v}"),
        state: RequestState::Denied as i32,
        requester: format!("sre{v}"),
        principals: vec![format!("postgres{v}")],
        hosts: vec![format!("db-7{v}")],
        command: format!("/bin/true {v}"),
        reason: v.to_owned(),
        tier: format!("low{v}"),
        rule: format!("r{v}"),
        ttl_seconds: 600,
        approvals_required: 1,
        approver_groups: vec![format!("oncall{v}")],
        approvals: vec![Approval {
            approver: format!("bob{v}"),
            comment: v.to_owned(),
            at: 1,
        }],
        grant_id: format!("g-1{v}"),
        decided_by: format!("user:carol{v}"),
        decision_reason: v.to_owned(),
        approve_command: format!("breakglass approve r-1{v}"),
        can_approve: true,
        ..RequestInfo::default()
    }
}

fn review(v: &str) -> ReviewItem {
    ReviewItem {
        grant_id: format!("g-1{v}"),
        request_id: format!("r-1{v}"),
        requester: format!("sre{v}"),
        principals: vec![format!("postgres{v}")],
        hosts: vec![format!("db-7{v}")],
        command: v.to_owned(),
        reason: v.to_owned(),
        tier: format!("low{v}"),
        emergency: true,
        sessions: vec![SessionInfo {
            host: format!("db-7{v}"),
            principal: format!("postgres{v}"),
            session_id: format!("s{v}"),
            remote_addr: format!("10.0.0.1{v}"),
            opened_at: 1,
            closed_at: 2,
            ended: format!("revoked{v}"),
            recording: format!("stored{v}"),
            recording_sha256: format!("sha256:{v}"),
            recording_bytes: 3,
            recording_duration_ms: 4,
        }],
        verdict: format!("ok{v}"),
        reviewer: format!("dave{v}"),
        note: v.to_owned(),
        ..ReviewItem::default()
    }
}

fn session(v: &str) -> SessionRef {
    SessionRef {
        record_id: format!("rec{v}"),
        host: format!("db-7{v}"),
        grant_id: GrantId(1),
        serial: 1,
        principal: format!("postgres{v}"),
        session_id: format!("s{v}"),
    }
}

/// One event of each kind that carries text, with `v` in every text field.
fn events(v: &str) -> Vec<Event> {
    let actor = Actor::User(format!("sre{v}"));
    let kinds = vec![
        EventKind::RequestCreated(RequestCreated {
            request_id: RequestId(1),
            requester: format!("sre{v}"),
            public_key: format!("ssh-ed25519 AAAA {v}"),
            principals: vec![format!("postgres{v}")],
            hosts: vec![format!("db-7{v}")],
            ttl_seconds: 600,
            reason: v.to_owned(),
            command: Some(v.to_owned()),
            source_addresses: vec![format!("10.0.0.0/8{v}")],
            extensions: vec![format!("permit-pty{v}")],
            emergency: true,
            rule: format!("r{v}"),
            tier: format!("low{v}"),
            approvals_required: 0,
            expires_at: Timestamp(1),
        }),
        EventKind::ApprovalAdded(ApprovalAdded {
            request_id: RequestId(1),
            comment: v.to_owned(),
        }),
        EventKind::RequestDenied(RequestDenied {
            request_id: RequestId(1),
            reason: v.to_owned(),
        }),
        EventKind::GrantIssued(Box::new(GrantIssued {
            request_id: RequestId(1),
            grant_id: GrantId(1),
            serial: 1,
            key_id: format!("breakglass/g-1/sre{v}"),
            ca_fingerprint: format!("SHA256:x{v}"),
            key_fingerprint: format!("SHA256:y{v}"),
            principals: vec![format!("postgres{v}")],
            hosts: vec![format!("db-7{v}")],
            command: Some(v.to_owned()),
            source_addresses: vec![],
            extensions: vec![],
            valid_after: 1,
            valid_before: 2,
            requester: format!("sre{v}"),
            approvers: vec![format!("bob{v}")],
            rule: format!("r{v}"),
            tier: format!("low{v}"),
            emergency: true,
        })),
        EventKind::GrantRevoked(GrantRevoked {
            grant_id: GrantId(1),
            serial: 1,
            reason: v.to_owned(),
            revoked_key: Some(format!("SHA256:{v}")),
        }),
        EventKind::GrantReviewed(GrantReviewed {
            grant_id: GrantId(1),
            verdict: ReviewVerdict::Rejected,
            comment: v.to_owned(),
        }),
        EventKind::SessionOpened(SessionOpened {
            session: session(v),
            remote_addr: format!("10.0.0.1{v}"),
        }),
        EventKind::SessionEnded(SessionEnded {
            session: session(v),
            reason: EndReason::Denied,
            detail: v.to_owned(),
            recording: None,
        }),
        EventKind::DrillReported(DrillReported {
            grant_id: GrantId(1),
            passed: false,
            failed_step: format!("login{v}"),
            detail: v.to_owned(),
            request_to_shell_ms: 0,
            logout_to_audit_ms: 0,
        }),
    ];
    kinds
        .into_iter()
        .map(|k| Event::new(Timestamp(1000), actor.clone(), k))
        .collect()
}

/// What each printer shows for the text `v` (one string per printed output).
fn printed(v: &str) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "describe_request".into(),
            approvals::describe_request(&request(v)),
        ),
        (
            "describe_pending".into(),
            approvals::describe_pending(&[request(v)]),
        ),
        (
            "describe_reviews".into(),
            approvals::describe_reviews(&[review(v)]),
        ),
        ("progress_line".into(), {
            let mut r = request(v);
            r.state = RequestState::Pending as i32;
            approvals::progress_line(&r)
        }),
        (
            "revoke::describe".into(),
            revoke::describe(&RevokeResponse {
                revoked: vec![RevokedGrant {
                    grant_id: format!("g-1{v}"),
                    requester: format!("sre{v}"),
                    ..RevokedGrant::default()
                }],
                already_revoked: vec![format!("g-2{v}")],
                krl_version: 3,
                ..RevokeResponse::default()
            }),
        ),
        (
            "revoke::describe, KRL not published".into(),
            revoke::describe(&RevokeResponse {
                revoked: vec![RevokedGrant {
                    grant_id: format!("g-1{v}"),
                    requester: format!("sre{v}"),
                    ..RevokedGrant::default()
                }],
                krl_not_published_reason: format!("disk{v}"),
                served_krl_version: 2,
                ..RevokeResponse::default()
            }),
        ),
        (
            "commands::describe".into(),
            commands::describe(
                &commands::RequestOutcome {
                    response: RequestCertificateResponse {
                        grant_id: format!("g-1{v}"),
                        tier: format!("low{v}"),
                        rule: format!("r{v}"),
                        principals: vec![format!("postgres{v}")],
                        extensions: vec![format!("permit-pty{v}")],
                        ..RequestCertificateResponse::default()
                    },
                    paths: commands::KeyPaths {
                        public: PathBuf::from("/k.pub"),
                        private: PathBuf::from("/k"),
                        certificate: PathBuf::from("/k-cert.pub"),
                    },
                },
                "db-7",
            ),
        ),
    ];
    for (i, e) in events(v).iter().enumerate() {
        out.push((
            format!("audit show {}", e.code().name()),
            audit::format_event(i as u64, e, false),
        ));
        out.push((
            format!("audit show --json {}", e.code().name()),
            audit::format_event(i as u64, e, true),
        ));
    }
    out
}

#[test]
fn every_printer_shows_nasty_strings_escaped_on_their_own_lines() {
    let plain = printed("x");
    for nasty in NASTY_SAMPLES {
        let shown = text::escape(nasty);
        for ((name, out), (_, reference)) in printed(nasty).iter().zip(&plain) {
            // Printers end their own lines with '\n'; nothing else may be a hazard.
            assert!(
                !out.split('\n').any(|l| l.chars().any(text::is_hazard)),
                "{name} printed a hazard of {nasty:?}: {out:?}"
            );
            assert_eq!(
                out.split('\n').count(),
                reference.split('\n').count(),
                "{name} printed another number of lines for {nasty:?}: {out}"
            );
            // JSON writes hazards as \uXXXX instead (see the next test).
            if !name.contains("--json") {
                assert!(out.contains(shown.as_ref()), "{name} for {nasty:?}: {out}");
            }
        }
    }
}

#[test]
fn json_output_gives_the_exact_text_back() {
    for nasty in NASTY_SAMPLES {
        for e in events(nasty) {
            let line = audit::format_event(0, &e, true);
            let back: serde_json::Value = serde_json::from_str(&line).unwrap();
            let found = back
                .as_object()
                .unwrap()
                .values()
                .any(|v| v.as_str().is_some_and(|s| s.ends_with(nasty)));
            assert!(found, "{line}");
        }
    }
}

#[test]
fn daemon_messages_are_shown_without_hazards_and_without_doubled_escapes() {
    use crate::error::CliError;
    let quoted = "reason: contains a control character (\\x1b) at byte 9";
    let e = CliError::from_status(tonic::Status::invalid_argument(quoted), "x").to_string();
    assert_eq!(e, format!("invalid request: {quoted}"));
    for nasty in NASTY_SAMPLES {
        let e = CliError::from_status(tonic::Status::permission_denied(nasty), "x").to_string();
        assert!(!e.chars().any(text::is_hazard), "{e:?}");
        assert!(e.ends_with(text::escape(nasty).as_ref()), "{e}");
    }
}
