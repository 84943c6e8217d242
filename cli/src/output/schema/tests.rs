use std::path::Path;

use breakglass_proto::v1::{
    Approval, CaPublicKey, GrantInfo, RequestCertificateResponse, RequestInfo, RequestState,
    ReviewItem, RevokeResponse, RevokedGrant, SessionInfo, WhoAmIResponse,
};
use serde_json::json;

use super::*;
use crate::commands::{KeyPaths, RequestOutcome};
use crate::host::doctor::{Finding, Level, Report};
use crate::output::{
    CaKeysOut, CertificateOut, DoctorOut, PendingOut, RequestCmdOut, RequestOut, ReviewListOut,
    ReviewOut, RevokeOut, StatusOut, WhoamiOut,
};

fn value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn ok(command: &str, v: &Value) {
    let s = schema(command).unwrap();
    if let Err(e) = s.check(v) {
        panic!("{command}: {e}\n{v:#}");
    }
}

fn request() -> RequestInfo {
    RequestInfo {
        request_id: "r-0000000000000001".into(),
        state: RequestState::Pending as i32,
        approvals: vec![Approval {
            approver: "a@x".into(),
            comment: String::new(),
            at: 1_700_000_000,
        }],
        created_at: 1_700_000_000,
        expires_at: 1_700_000_900,
        command: "/usr/bin/id".into(),
        ..Default::default()
    }
}

fn outcome() -> RequestOutcome {
    RequestOutcome {
        response: RequestCertificateResponse {
            valid_after: 1_700_000_000,
            valid_before: 1_700_000_600,
            principals: vec!["bgdemo".into()],
            ..Default::default()
        },
        paths: KeyPaths::from_public(Path::new("/k/id_ed25519.pub")),
    }
}

#[test]
fn every_output_type_matches_its_schema() {
    let cert = || CertificateOut::new(&outcome(), "db-7", false);
    ok("fetch", &value(&cert()));
    ok(
        "request",
        &value(&RequestCmdOut {
            state: "issued",
            request_id: "r-1".into(),
            certificate: Some(cert()),
            request: None,
        }),
    );
    ok(
        "request",
        &value(&RequestCmdOut {
            state: "pending",
            request_id: "r-1".into(),
            certificate: None,
            request: Some(RequestOut::from(&request())),
        }),
    );
    for c in ["show", "approve", "deny", "cancel"] {
        ok(c, &value(&RequestOut::from(&request())));
    }
    ok(
        "pending",
        &value(&PendingOut {
            requests: vec![RequestOut::from(&request())],
        }),
    );
    let who = WhoAmIResponse {
        identity: "a@x".into(),
        transport: "mtls".into(),
        ..Default::default()
    };
    ok("whoami", &value(&WhoamiOut::from(&who)));
    let status = crate::status::Status {
        whoami: who,
        credential: Some(crate::status::Credential {
            file: "/c.pem".into(),
            not_after: 1_700_000_000,
            ssh_key_login: false,
        }),
        grants: vec![GrantInfo::default()],
        pending: vec![request()],
        to_approve: vec![],
    };
    let v: StatusOut = status.json();
    ok("status", &value(&v));
    let review = ReviewItem {
        sessions: vec![SessionInfo {
            opened_at: 1_700_000_000,
            ended: "expired".into(),
            ..Default::default()
        }],
        verdict: "misuse".into(),
        ..Default::default()
    };
    ok("review", &value(&ReviewOut::from(&review)));
    ok(
        "review list",
        &value(&ReviewListOut {
            grants: vec![ReviewOut::from(&ReviewItem::default())],
        }),
    );
    let revoked = RevokeResponse {
        revoked: vec![RevokedGrant::default()],
        already_revoked: vec!["g-1".into()],
        ..Default::default()
    };
    ok(
        "revoke",
        &value(&RevokeOut::new(&revoked, Some("SHA256:x".into()))),
    );
    ok(
        "ca-keys",
        &value(&CaKeysOut::new(&[CaPublicKey::default()], None)),
    );
    let report = Report {
        findings: vec![Finding {
            level: Level::Fail,
            area: "pam",
            message: "m".into(),
            fix: Some("f".into()),
        }],
    };
    let d = value(&DoctorOut::from(&report));
    ok("host doctor", &d);
    assert_eq!(d["passed"], false);
    assert_eq!(d["findings"][0]["level"], "fail");
}

#[test]
fn the_check_refuses_missing_extra_and_mistyped_fields() {
    let s = schema("ca-keys").unwrap();
    let good = json!({"keys": [{"public_key": "k", "fingerprint": "f", "signing": true}], "written_to": null});
    s.check(&good).unwrap();
    let bad = [
        (json!({"keys": []}), "written_to: documented but missing"),
        (
            json!({"keys": [], "written_to": null, "extra": 1}),
            "field \"extra\" is not documented",
        ),
        (
            json!({"keys": [{"public_key": "k", "fingerprint": "f", "signing": "yes"}], "written_to": null}),
            "keys[0].signing: expected boolean",
        ),
        (
            json!({"keys": {}, "written_to": null}),
            "keys: expected array",
        ),
        (json!([]), "the output: expected object"),
    ];
    for (v, want) in bad {
        let e = s.check(&v).unwrap_err();
        assert!(e.contains(want), "{v}: {e}");
    }
    // Times: RFC 3339, UTC, whole seconds; one-of: only the names.
    let t = Type::Time;
    check(&json!("2026-12-06T12:00:00Z"), &t, "t").unwrap();
    for v in [
        json!("2026-12-06T12:00:00.5Z"),
        json!("2026-12-06"),
        json!(5),
    ] {
        assert!(check(&v, &t, "t").is_err(), "{v}");
    }
    let one = Type::OneOf(&["ok", "misuse"]);
    assert!(check(&json!("fine"), &one, "v").is_err());
    assert!(check(&Value::Null, &Type::Nullable(&Type::Integer), "n").is_ok());
    assert!(check(&json!(1.5), &Type::Integer, "n").is_err());
}

#[test]
fn every_schema_names_a_distinct_command_and_snake_case_fields() {
    let mut seen = std::collections::BTreeSet::new();
    for s in SCHEMAS {
        assert!(seen.insert(s.command), "{} twice", s.command);
        for (path, _, doc) in s.rows() {
            let name = path.rsplit('.').next().unwrap().trim_end_matches("[]");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}: {path}",
                s.command
            );
            assert!(!doc.is_empty(), "{}: {path} undocumented", s.command);
        }
    }
}
