//! Round trips, pinned encodings and malformations of the event codec.

use super::*;
use proptest::prelude::*;

fn s() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9@:/._-]{1,24}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}
fn strs() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(s(), 0..4)
}
fn session() -> impl Strategy<Value = SessionRef> {
    (s(), s(), any::<u64>(), any::<u64>(), s(), s()).prop_map(
        |(record_id, host, g, serial, principal, session_id)| SessionRef {
            record_id,
            host,
            grant_id: GrantId(g),
            serial,
            principal,
            session_id,
        },
    )
}
fn recording() -> impl Strategy<Value = Option<crate::recording::RecordingDigest>> {
    proptest::option::of((any::<[u8; 32]>(), any::<u64>(), any::<u64>()).prop_map(
        |(sha256, bytes, duration_ms)| crate::recording::RecordingDigest {
            sha256,
            bytes,
            duration_ms,
        },
    ))
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (
            (any::<u64>(), s(), s(), strs(), strs(), any::<u64>(), s()),
            (
                proptest::option::of(s()),
                strs(),
                strs(),
                any::<bool>(),
                s(),
                s(),
                any::<u32>(),
                any::<u64>()
            )
        )
            .prop_map(
                |((id, requester, public_key, principals, hosts, ttl, reason), rest)| {
                    let (command, source_addresses, extensions, emergency, rule, tier, ap, exp) =
                        rest;
                    EventKind::RequestCreated(RequestCreated {
                        request_id: RequestId(id),
                        requester,
                        public_key,
                        principals,
                        hosts,
                        ttl_seconds: ttl,
                        reason,
                        command,
                        source_addresses,
                        extensions,
                        emergency,
                        rule,
                        tier,
                        approvals_required: ap,
                        expires_at: Timestamp(exp),
                    })
                }
            ),
        (any::<u64>(), s()).prop_map(|(id, comment)| EventKind::ApprovalAdded(ApprovalAdded {
            request_id: RequestId(id),
            comment
        })),
        (any::<u64>(), s()).prop_map(|(id, reason)| EventKind::RequestDenied(RequestDenied {
            request_id: RequestId(id),
            reason
        })),
        any::<u64>().prop_map(|id| EventKind::RequestExpired(RequestExpired {
            request_id: RequestId(id)
        })),
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                s(),
                s(),
                s(),
                strs(),
                strs()
            ),
            (
                proptest::option::of(s()),
                strs(),
                strs(),
                any::<u64>(),
                any::<u64>(),
                s(),
                strs(),
                (s(), s(), any::<bool>())
            )
        )
            .prop_map(|(a, b)| {
                let (rid, gid, serial, key_id, ca_fingerprint, key_fingerprint, principals, hosts) =
                    a;
                let (command, source_addresses, extensions, va, vb, requester, approvers, c) = b;
                EventKind::GrantIssued(Box::new(GrantIssued {
                    request_id: RequestId(rid),
                    grant_id: GrantId(gid),
                    serial,
                    key_id,
                    ca_fingerprint,
                    key_fingerprint,
                    principals,
                    hosts,
                    command,
                    source_addresses,
                    extensions,
                    valid_after: va,
                    valid_before: vb,
                    requester,
                    approvers,
                    rule: c.0,
                    tier: c.1,
                    emergency: c.2,
                }))
            }),
        (any::<u64>(), any::<u64>(), s(), proptest::option::of(s())).prop_map(
            |(g, serial, reason, revoked_key)| {
                EventKind::GrantRevoked(GrantRevoked {
                    grant_id: GrantId(g),
                    serial,
                    reason,
                    revoked_key,
                })
            }
        ),
        (any::<u64>(), any::<bool>(), s()).prop_map(|(g, ok, comment)| {
            EventKind::GrantReviewed(GrantReviewed {
                grant_id: GrantId(g),
                verdict: if ok {
                    ReviewVerdict::Accepted
                } else {
                    ReviewVerdict::Rejected
                },
                comment,
            })
        }),
        (session(), s()).prop_map(|(session, remote_addr)| EventKind::SessionOpened(
            SessionOpened {
                session,
                remote_addr
            }
        )),
        (session(), any::<u64>()).prop_map(|(session, ends_at)| EventKind::SessionWarned(
            SessionWarned { session, ends_at }
        )),
        (session(), recording()).prop_map(|(session, recording)| EventKind::SessionClosed(
            SessionClosed { session, recording }
        )),
        (session(), 0u8..3, s(), recording()).prop_map(|(session, r, detail, recording)| {
            EventKind::SessionEnded(SessionEnded {
                session,
                reason: [EndReason::Expired, EndReason::Revoked, EndReason::Denied][r as usize],
                detail,
                recording,
            })
        }),
        (any::<[u8; 32]>(), any::<u64>(), any::<u64>()).prop_map(|(sha256, version, n)| {
            EventKind::KrlPublished(KrlPublished {
                sha256,
                version,
                revoked_serials: n,
            })
        }),
        (s(), s(), any::<bool>()).prop_map(|(public_key, fingerprint, signing)| {
            EventKind::CaKeyAdded(CaKeyAdded {
                public_key,
                fingerprint,
                signing,
            })
        }),
        Just(EventKind::Heartbeat(Heartbeat {})),
        (any::<u64>(), s()).prop_map(|(id, reason)| EventKind::RequestCancelled(
            RequestCancelled {
                request_id: RequestId(id),
                reason
            }
        )),
        (
            any::<u64>(),
            any::<bool>(),
            s(),
            s(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(g, passed, failed_step, detail, a, b)| {
                EventKind::DrillReported(DrillReported {
                    grant_id: GrantId(g),
                    passed,
                    failed_step,
                    detail,
                    request_to_shell_ms: a,
                    logout_to_audit_ms: b,
                })
            }),
        (
            (
                refusal_kind(),
                s(),
                strs(),
                strs(),
                proptest::option::of(s())
            ),
            (
                any::<u64>(),
                any::<bool>(),
                any::<bool>(),
                s(),
                s(),
                s(),
                s()
            ),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(a, b, request_id)| {
                let (kind, identity, principals, hosts, command) = a;
                let (ttl_seconds, emergency, drill, request_reason, rule, tier, reason) = b;
                EventKind::RequestRefused(Box::new(RequestRefused {
                    kind,
                    identity,
                    principals,
                    hosts,
                    command,
                    ttl_seconds,
                    emergency,
                    drill,
                    request_reason,
                    rule,
                    tier,
                    reason,
                    request_id: request_id.map(RequestId),
                }))
            }),
        (refusal_kind(), s(), s(), s(), s()).prop_map(
            |(kind, identity, action, target, reason)| {
                EventKind::ActionRefused(ActionRefused {
                    kind,
                    identity,
                    action,
                    target,
                    reason,
                })
            }
        ),
        (s(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
            |(identity, start, end, limit)| {
                EventKind::RefusalsLimited(RefusalsLimited {
                    identity,
                    window_start: Timestamp(start),
                    window_end: Timestamp(end),
                    limit,
                })
            }
        ),
        (
            (s(), s(), any::<u64>()),
            (any::<[u8; 32]>(), any::<u64>(), any::<[u8; 32]>())
        )
            .prop_map(|((host, checkpoint, size), (root, log_size, log_root))| {
                EventKind::LogConsistencyFailed(Box::new(LogConsistencyFailed {
                    host,
                    checkpoint,
                    size,
                    root,
                    log_size,
                    log_root,
                }))
            }),
        (s(), any::<u64>()).prop_map(|(reason, reports)| EventKind::LogForkAcknowledged(
            LogForkAcknowledged { reason, reports }
        )),
        (s(), any::<[u8; 32]>(), any::<u64>(), any::<u64>()).prop_map(
            |(path, sha256, rules, identities)| EventKind::ConfigReloaded(ConfigReloaded {
                path,
                sha256,
                rules,
                identities,
            })
        ),
        recording_kind(),
        identity_kind(),
    ]
}

fn identity_kind() -> impl Strategy<Value = EventKind> {
    (
        (any::<[u8; 32]>(), s(), any::<u64>(), strs()),
        (s(), proptest::option::of(any::<[u8; 32]>()), 0u8..5),
    )
        .prop_map(
            |((hash, text, t, groups), (more, token, which))| match which {
                0 => EventKind::JoinTokenCreated(JoinTokenCreated {
                    token_sha256: hash,
                    host: text,
                    expires_at: Timestamp(t),
                }),
                1 => EventKind::ClientCertificateIssued(ClientCertificateIssued {
                    identity: text,
                    groups,
                    serial: more.clone(),
                    public_key_sha256: hash,
                    not_after: Timestamp(t),
                    method: more,
                    join_token_sha256: token,
                }),
                2 => EventKind::IdentityDisabled(IdentityDisabled {
                    identity: text,
                    reason: more,
                }),
                3 => EventKind::SshKeyAdded(SshKeyAdded {
                    identity: text,
                    public_key: more,
                }),
                _ => EventKind::SshKeyRemoved(SshKeyRemoved {
                    identity: text,
                    public_key: more,
                }),
            },
        )
}

fn recording_kind() -> impl Strategy<Value = EventKind> {
    (
        (s(), s(), any::<u64>()),
        (any::<[u8; 32]>(), any::<u64>(), s(), 0u8..3),
    )
        .prop_map(|((host, session_id, g), (sha256, bytes, reason, which))| {
            let grant_id = GrantId(g);
            match which {
                0 => EventKind::RecordingStored(RecordingStored {
                    host,
                    session_id,
                    grant_id,
                    sha256,
                    bytes,
                }),
                1 => EventKind::RecordingRefused(RecordingRefused {
                    host,
                    session_id,
                    grant_id,
                    reason,
                }),
                _ => EventKind::RecordingDeleted(RecordingDeleted {
                    host,
                    session_id,
                    grant_id,
                    sha256,
                    reason,
                }),
            }
        })
}

fn refusal_kind() -> impl Strategy<Value = RefusalKind> {
    proptest::sample::select(RefusalKind::ALL.to_vec())
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        Just(Actor::Daemon),
        s().prop_map(Actor::User),
        s().prop_map(Actor::Host),
        any::<u32>().prop_map(Actor::LocalUid),
    ]
}

/// Any event, for property tests here and in other modules.
pub(crate) fn event() -> impl Strategy<Value = Event> {
    (any::<u64>(), actor(), kind()).prop_map(|(t, actor, kind)| Event {
        time: Timestamp(t),
        actor,
        kind,
    })
}

proptest! {
    #[test]
    fn decode_inverts_encode(e in event()) {
        let bytes = e.encode().unwrap();
        prop_assert_eq!(bytes[0], EVENT_VERSION);
        prop_assert_eq!(u16::from_be_bytes([bytes[1], bytes[2]]), e.code() as u16);
        let back = Event::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        prop_assert_eq!(back.encode().unwrap(), bytes);
    }

    #[test]
    fn every_prefix_and_any_extension_is_rejected(e in event(), extra in 1u8..=255) {
        let bytes = e.encode().unwrap();
        // The one valid prefix: the event without its trailing optional field
        // (`GrantRevoked::revoked_key`, a session's `recording`).
        let without_key = match &e.kind {
            EventKind::GrantRevoked(g) if g.revoked_key.is_some() => {
                let mut g = g.clone();
                g.revoked_key = None;
                Some(Event { kind: EventKind::GrantRevoked(g), ..e.clone() }.encode().unwrap().len())
            }
            EventKind::SessionClosed(c) if c.recording.is_some() => {
                let mut c = c.clone();
                c.recording = None;
                Some(Event { kind: EventKind::SessionClosed(c), ..e.clone() }.encode().unwrap().len())
            }
            EventKind::SessionEnded(c) if c.recording.is_some() => {
                let mut c = c.clone();
                c.recording = None;
                Some(Event { kind: EventKind::SessionEnded(c), ..e.clone() }.encode().unwrap().len())
            }
            _ => None,
        };
        for n in 0..bytes.len() {
            if Some(n) == without_key {
                continue;
            }
            prop_assert!(Event::decode(&bytes[..n]).is_err(), "prefix {} accepted", n);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(Event::decode(&longer).is_err());
    }

    #[test]
    fn garbage_never_panics_and_accepted_bytes_are_canonical(
        bytes in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        if let Ok(e) = Event::decode(&bytes) {
            prop_assert_eq!(e.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn mutated_events_never_panic_and_stay_canonical(e in event(), pos in any::<usize>(), bit in 0u8..8) {
        let mut bytes = e.encode().unwrap();
        let i = pos % bytes.len();
        bytes[i] ^= 1 << bit;
        if let Ok(d) = Event::decode(&bytes) {
            prop_assert_eq!(d.encode().unwrap(), bytes);
        }
    }
}

#[test]
fn encoding_is_pinned() {
    // A change to this vector is a change of the on-disk format: bump EVENT_VERSION.
    let e = Event::new(
        Timestamp(1_700_000_000_123),
        Actor::User("alice@example.com".into()),
        EventKind::GrantRevoked(GrantRevoked {
            grant_id: GrantId(0x0102_0304_0506_0708),
            serial: 42,
            reason: "done".into(),
            revoked_key: None,
        }),
    );
    let hex: String = e
        .encode()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        concat!(
            "01",               // version
            "0006",             // code grant_revoked
            "0000018bcfe5687b", // time ms
            "01",               // actor user
            "00000011",
            "616c696365406578616d706c652e636f6d",
            "0102030405060708", // grant id
            "000000000000002a", // serial
            "00000004",
            "646f6e65"
        )
    );
}

#[test]
fn grant_revoked_with_a_revoked_key_appends_it_and_old_events_still_decode() {
    let old = Event::new(
        Timestamp(1_700_000_000_123),
        Actor::User("alice@example.com".into()),
        EventKind::GrantRevoked(GrantRevoked {
            grant_id: GrantId(0x0102_0304_0506_0708),
            serial: 42,
            reason: "done".into(),
            revoked_key: None,
        }),
    );
    let old_bytes = old.encode().unwrap();
    let mut with_key = old.clone();
    if let EventKind::GrantRevoked(g) = &mut with_key.kind {
        g.revoked_key = Some("SHA256:abc".into());
    }
    let bytes = with_key.encode().unwrap();
    // The key follows the pinned encoding above as one more string.
    let mut expected = old_bytes.clone();
    expected.extend_from_slice(&[0, 0, 0, 10]);
    expected.extend_from_slice(b"SHA256:abc");
    assert_eq!(bytes, expected);
    assert_eq!(Event::decode(&bytes).unwrap(), with_key);
    assert_eq!(Event::decode(&old_bytes).unwrap(), old);
    // A torn trailing field is an error, not a silently dropped key.
    assert!(Event::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(Event::decode(&bytes[..old_bytes.len() + 2]).is_err());
}

#[test]
fn specific_malformations_are_named() {
    let e = Event::new(
        Timestamp(1),
        Actor::Daemon,
        EventKind::Heartbeat(Heartbeat {}),
    );
    let mut b = e.encode().unwrap();
    assert!(Event::decode(&b).is_ok());
    b[0] = 2;
    assert!(Event::decode(&b).unwrap_err().reason.contains("version 2"));
    b[0] = 1;
    b[2] = 99;
    assert!(
        Event::decode(&b)
            .unwrap_err()
            .reason
            .contains("unknown event code 99")
    );
    let huge_list = [
        &[1u8, 0, 1][..],
        &[0; 8],
        &[0],
        &[0; 8],
        &[0, 0, 0, 0],
        &[0, 0, 0, 0],
        &[0xff, 0xff, 0xff, 0xff],
    ]
    .concat();
    let err = Event::decode(&huge_list).unwrap_err();
    assert!(err.reason.contains("cannot fit"), "{err}");
}

#[test]
fn codes_are_stable_and_distinct() {
    // In numeric order, each once; a code is never reused or renumbered.
    for w in EventCode::ALL.windows(2) {
        assert!((w[0] as u16) < (w[1] as u16), "{:?} {:?}", w[0], w[1]);
    }
    for c in EventCode::ALL {
        assert_eq!(EventCode::from_u16(c as u16), Some(c));
    }
    assert_eq!(EventCode::DrillReported as u16, 16);
    assert_eq!(EventCode::LogConsistencyFailed as u16, 20);
    assert_eq!(EventCode::LogForkAcknowledged as u16, 21);
    assert_eq!(EventCode::from_u16(0), None);
    assert_eq!(EventCode::ConfigReloaded as u16, 22);
    assert_eq!(EventCode::RecordingStored as u16, 23);
    assert_eq!(EventCode::RecordingDeleted as u16, 25);
    assert_eq!(EventCode::JoinTokenCreated as u16, 26);
    assert_eq!(EventCode::IdentityDisabled as u16, 28);
    assert_eq!(EventCode::SshKeyAdded as u16, 29);
    assert_eq!(EventCode::SshKeyRemoved as u16, 30);
    assert_eq!(EventCode::from_u16(31), None);
    let refusals: Vec<u16> = EventCode::ALL
        .iter()
        .filter(|c| c.is_refusal())
        .map(|c| *c as u16)
        .collect();
    assert_eq!(refusals, [17, 18, 19]);
}

#[test]
fn refusal_kinds_are_stable_and_distinct() {
    for (i, k) in RefusalKind::ALL.iter().enumerate() {
        assert_eq!(*k as u8, i as u8 + 1);
        assert_eq!(RefusalKind::from_u8(*k as u8), Some(*k));
    }
    assert_eq!(RefusalKind::from_u8(0), None);
    assert_eq!(RefusalKind::LoginMethod as u8, 13);
    assert_eq!(RefusalKind::from_u8(14), None);
    let names: std::collections::BTreeSet<&str> =
        RefusalKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), RefusalKind::ALL.len());
}

#[test]
fn refusal_encodings_are_pinned_and_unknown_kinds_are_named() {
    // A change to these vectors is a change of the on-disk format: bump EVENT_VERSION.
    let hex = |e: &Event| -> String {
        e.encode()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let refused = Event::new(
        Timestamp(1),
        Actor::User("m@x".into()),
        EventKind::ActionRefused(ActionRefused {
            kind: RefusalKind::SelfApproval,
            identity: "m@x".into(),
            action: "approve".into(),
            target: "r-1".into(),
            reason: "own".into(),
        }),
    );
    assert_eq!(
        hex(&refused),
        concat!(
            "01",
            "0012",             // code action_refused (18)
            "0000000000000001", // time
            "01",
            "00000003",
            "6d4078", // actor user m@x
            "09",     // kind self_approval
            "00000003",
            "6d4078",
            "00000007",
            "617070726f7665",
            "00000003",
            "722d31",
            "00000003",
            "6f776e"
        )
    );
    let limited = Event::new(
        Timestamp(2),
        Actor::Daemon,
        EventKind::RefusalsLimited(RefusalsLimited {
            identity: "m@x".into(),
            window_start: Timestamp(3_600_000),
            window_end: Timestamp(7_200_000),
            limit: 60,
        }),
    );
    assert_eq!(
        hex(&limited),
        concat!(
            "01",
            "0013", // code refusals_limited (19)
            "0000000000000002",
            "00", // actor daemon
            "00000003",
            "6d4078",
            "000000000036ee80",
            "00000000006ddd00",
            "0000003c"
        )
    );
    let mut b = refused.encode().unwrap();
    let at = 1 + 2 + 8 + 1 + 4 + 3;
    b[at] = 99;
    let err = Event::decode(&b).unwrap_err();
    assert_eq!(err.offset, at);
    assert!(err.reason.contains("unknown refusal kind 99"), "{err}");
}

/// One event of every kind, with every optional field both set and unset where the
/// encoding differs: the samples of [`GOLDEN_V1`].
fn golden_samples() -> Vec<(&'static str, Event)> {
    let s = |x: &str| x.to_owned();
    let l = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let session = SessionRef {
        record_id: s("db-7-g-00000000000000ff-4242-1800000000000-open"),
        host: s("db-7"),
        grant_id: GrantId(0xff),
        serial: 4242,
        principal: s("postgres"),
        session_id: s("db-7-g-00000000000000ff-4242-1800000000000"),
    };
    let t = Timestamp(1_800_000_000_123);
    let user = Actor::User(s("sre@example.com"));
    let host = Actor::Host(s("db-7"));
    let created = RequestCreated {
        request_id: RequestId(0x0102_0304_0506_0708),
        requester: s("sre@example.com"),
        public_key: s("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA sre"),
        principals: l(&["postgres", "root"]),
        hosts: l(&["db-*", "web-1"]),
        ttl_seconds: 900,
        reason: s("INC-4411 primary down"),
        command: Some(s("/usr/bin/psql")),
        source_addresses: l(&["192.0.2.0/24"]),
        extensions: l(&["permit-pty"]),
        emergency: true,
        rule: s("db"),
        tier: s("high"),
        approvals_required: 2,
        expires_at: Timestamp(1_800_000_600_000),
    };
    let issued = GrantIssued {
        request_id: RequestId(7),
        grant_id: GrantId(0xff),
        serial: 4242,
        key_id: s("breakglass/g-00000000000000ff/sre@example.com"),
        ca_fingerprint: s("SHA256:ca"),
        key_fingerprint: s("SHA256:key"),
        principals: l(&["postgres"]),
        hosts: l(&["db-*"]),
        command: Some(s("/usr/bin/psql")),
        source_addresses: l(&["192.0.2.0/24", "198.51.100.7/32"]),
        extensions: l(&["permit-pty"]),
        valid_after: 1_799_999_940,
        valid_before: 1_800_000_900,
        requester: s("sre@example.com"),
        approvers: l(&["a@example.com", "b@example.com"]),
        rule: s("db"),
        tier: s("high"),
        emergency: false,
    };
    let refused = RequestRefused {
        kind: RefusalKind::EmergencyQuota,
        identity: s("sre@example.com"),
        principals: l(&["root"]),
        hosts: l(&["db-1"]),
        command: None,
        ttl_seconds: 3600,
        emergency: true,
        drill: false,
        request_reason: s("INC-1"),
        rule: s("db"),
        tier: s("high"),
        reason: s("emergency allowance spent"),
        request_id: Some(RequestId(9)),
    };
    let revoked = GrantRevoked {
        grant_id: GrantId(0xff),
        serial: 4242,
        reason: s("key exposed"),
        revoked_key: None,
    };
    let e = |name, actor: &Actor, kind| (name, Event::new(t, actor.clone(), kind));
    vec![
        e(
            "request_created",
            &user,
            EventKind::RequestCreated(created.clone()),
        ),
        e(
            "request_created_no_command",
            &user,
            EventKind::RequestCreated(RequestCreated {
                command: None,
                emergency: false,
                principals: vec![],
                ..created
            }),
        ),
        e(
            "approval_added",
            &Actor::User(s("a@example.com")),
            EventKind::ApprovalAdded(ApprovalAdded {
                request_id: RequestId(7),
                comment: s("ok"),
            }),
        ),
        e(
            "request_denied",
            &Actor::Daemon,
            EventKind::RequestDenied(RequestDenied {
                request_id: RequestId(7),
                reason: s("no"),
            }),
        ),
        e(
            "request_expired",
            &Actor::Daemon,
            EventKind::RequestExpired(RequestExpired {
                request_id: RequestId(7),
            }),
        ),
        e(
            "grant_issued",
            &Actor::Daemon,
            EventKind::GrantIssued(Box::new(issued.clone())),
        ),
        e(
            "grant_issued_no_command",
            &Actor::Daemon,
            EventKind::GrantIssued(Box::new(GrantIssued {
                command: None,
                emergency: true,
                approvers: vec![],
                ..issued
            })),
        ),
        e(
            "grant_revoked",
            &Actor::LocalUid(0),
            EventKind::GrantRevoked(revoked.clone()),
        ),
        e(
            "grant_revoked_key",
            &user,
            EventKind::GrantRevoked(GrantRevoked {
                revoked_key: Some(s("SHA256:key")),
                ..revoked
            }),
        ),
        e(
            "grant_reviewed_accepted",
            &Actor::User(s("r@example.com")),
            EventKind::GrantReviewed(GrantReviewed {
                grant_id: GrantId(0xff),
                verdict: ReviewVerdict::Accepted,
                comment: s("fine"),
            }),
        ),
        e(
            "grant_reviewed_rejected",
            &Actor::User(s("r@example.com")),
            EventKind::GrantReviewed(GrantReviewed {
                grant_id: GrantId(0xff),
                verdict: ReviewVerdict::Rejected,
                comment: s("follow up"),
            }),
        ),
        e(
            "session_opened",
            &host,
            EventKind::SessionOpened(SessionOpened {
                session: session.clone(),
                remote_addr: s("192.0.2.7"),
            }),
        ),
        e(
            "session_warned",
            &host,
            EventKind::SessionWarned(SessionWarned {
                session: session.clone(),
                ends_at: 1_800_000_900,
            }),
        ),
        e(
            "session_closed",
            &host,
            EventKind::SessionClosed(SessionClosed {
                session: session.clone(),
                recording: None,
            }),
        ),
        e(
            "session_ended_expired",
            &host,
            EventKind::SessionEnded(SessionEnded {
                session: session.clone(),
                reason: EndReason::Expired,
                detail: String::new(),
                recording: None,
            }),
        ),
        e(
            "session_ended_revoked",
            &host,
            EventKind::SessionEnded(SessionEnded {
                session: session.clone(),
                reason: EndReason::Revoked,
                detail: s("grant revoked"),
                recording: None,
            }),
        ),
        e(
            "session_ended_denied",
            &host,
            EventKind::SessionEnded(SessionEnded {
                session,
                reason: EndReason::Denied,
                detail: s("host_scope"),
                recording: None,
            }),
        ),
        e(
            "krl_published",
            &Actor::Daemon,
            EventKind::KrlPublished(KrlPublished {
                sha256: std::array::from_fn(|i| i as u8),
                version: 12,
                revoked_serials: 3,
            }),
        ),
        e(
            "ca_key_added",
            &Actor::Daemon,
            EventKind::CaKeyAdded(CaKeyAdded {
                public_key: s("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA ca"),
                fingerprint: s("SHA256:ca"),
                signing: true,
            }),
        ),
        e(
            "heartbeat",
            &Actor::Daemon,
            EventKind::Heartbeat(Heartbeat {}),
        ),
        e(
            "request_cancelled",
            &user,
            EventKind::RequestCancelled(RequestCancelled {
                request_id: RequestId(7),
                reason: String::new(),
            }),
        ),
        e(
            "drill_reported",
            &user,
            EventKind::DrillReported(DrillReported {
                grant_id: GrantId(0xff),
                passed: false,
                failed_step: s("login"),
                detail: s("refused"),
                request_to_shell_ms: 1234,
                logout_to_audit_ms: 0,
            }),
        ),
        e(
            "request_refused",
            &user,
            EventKind::RequestRefused(Box::new(refused.clone())),
        ),
        e(
            "request_refused_no_request",
            &user,
            EventKind::RequestRefused(Box::new(RequestRefused {
                kind: RefusalKind::DenyRule,
                command: Some(s("/bin/sh")),
                drill: true,
                request_id: None,
                ..refused
            })),
        ),
        e(
            "action_refused",
            &user,
            EventKind::ActionRefused(ActionRefused {
                kind: RefusalKind::NotApprover,
                identity: s("sre@example.com"),
                action: s("approve"),
                target: s("r-0000000000000007"),
                reason: s("not an approver"),
            }),
        ),
        e(
            "refusals_limited",
            &Actor::Daemon,
            EventKind::RefusalsLimited(RefusalsLimited {
                identity: s("sre@example.com"),
                window_start: Timestamp(3_600_000),
                window_end: Timestamp(7_200_000),
                limit: 60,
            }),
        ),
        e(
            "log_consistency_failed",
            &host,
            EventKind::LogConsistencyFailed(Box::new(LogConsistencyFailed {
                host: s("db-7"),
                checkpoint: s("example.com/log\n5\nroot\n"),
                size: 5,
                root: [0xaa; 32],
                log_size: 4,
                log_root: [0xbb; 32],
            })),
        ),
        e(
            "log_fork_acknowledged",
            &Actor::LocalUid(1000),
            EventKind::LogForkAcknowledged(LogForkAcknowledged {
                reason: s("restored from backup"),
                reports: 2,
            }),
        ),
        e(
            "config_reloaded",
            &Actor::Daemon,
            EventKind::ConfigReloaded(ConfigReloaded {
                path: s("/etc/breakglass-ca/breakglass-ca.toml"),
                sha256: [0xcc; 32],
                rules: 7,
                identities: 3,
            }),
        ),
        e(
            "recording_stored",
            &Actor::Host(s("host://db-7")),
            EventKind::RecordingStored(RecordingStored {
                host: s("db-7"),
                session_id: s("db-7-g-00000000000000ff-42-1700000000123"),
                grant_id: GrantId(0xff),
                sha256: [0xdd; 32],
                bytes: 4096,
            }),
        ),
        e(
            "recording_refused",
            &Actor::Host(s("host://db-7")),
            EventKind::RecordingRefused(RecordingRefused {
                host: s("db-7"),
                session_id: s("db-7-g-00000000000000ff-42-1700000000123"),
                grant_id: GrantId(0xff),
                reason: s("chain hash differs"),
            }),
        ),
        e(
            "recording_deleted",
            &Actor::Daemon,
            EventKind::RecordingDeleted(RecordingDeleted {
                host: s("db-7"),
                session_id: s("db-7-g-00000000000000ff-42-1700000000123"),
                grant_id: GrantId(0xff),
                sha256: [0xdd; 32],
                reason: s("retention"),
            }),
        ),
        e(
            "join_token_created",
            &Actor::LocalUid(0),
            EventKind::JoinTokenCreated(JoinTokenCreated {
                token_sha256: [0xee; 32],
                host: s("db-7"),
                expires_at: Timestamp(1_700_003_600_000),
            }),
        ),
        e(
            "client_certificate_issued",
            &Actor::Host(s("host://db-7")),
            EventKind::ClientCertificateIssued(ClientCertificateIssued {
                identity: s("host://db-7"),
                groups: vec![s("hosts")],
                serial: s("7f01"),
                public_key_sha256: [0x11; 32],
                not_after: Timestamp(1_702_592_000_000),
                method: s("enroll"),
                join_token_sha256: Some([0xee; 32]),
            }),
        ),
        e(
            "identity_disabled",
            &Actor::LocalUid(0),
            EventKind::IdentityDisabled(IdentityDisabled {
                identity: s("sre@example.com"),
                reason: s("left the company"),
            }),
        ),
        e(
            "ssh_key_added",
            &Actor::LocalUid(0),
            EventKind::SshKeyAdded(SshKeyAdded {
                identity: s("sre@example.com"),
                public_key: s(
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                ),
            }),
        ),
        e(
            "ssh_key_removed",
            &Actor::LocalUid(0),
            EventKind::SshKeyRemoved(SshKeyRemoved {
                identity: s("sre@example.com"),
                public_key: s(
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                ),
            }),
        ),
    ]
}

/// The encoding of [`golden_samples`] as this format was first released: one
/// `name hex` line each. The file never changes; a new version byte gets a new file.
const GOLDEN_V1: &str = include_str!("golden-v1.txt");

#[test]
fn every_kind_encodes_as_pinned_and_decodes_back() {
    let samples = golden_samples();
    let lines: Vec<String> = samples
        .iter()
        .map(|(name, e)| {
            let hex: String = e
                .encode()
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{name} {hex}")
        })
        .collect();
    let want: Vec<&str> = GOLDEN_V1.lines().collect();
    assert_eq!(
        lines.len(),
        want.len(),
        "samples and golden lines differ in number"
    );
    for (got, want) in lines.iter().zip(&want) {
        assert_eq!(got, want, "encoding changed: bump EVENT_VERSION instead");
    }
    // Every code is covered, and every pinned encoding decodes to its sample.
    for code in EventCode::ALL {
        assert!(
            samples.iter().any(|(_, e)| e.code() == code),
            "{code:?} has no sample"
        );
    }
    for ((name, e), line) in samples.iter().zip(&want) {
        let hex = line.split_once(' ').unwrap().1;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(&Event::decode(&bytes).unwrap(), e, "{name}");
    }
}

#[test]
fn request_id_round_trips() {
    let r = RequestId(0xabc);
    assert_eq!(r.to_string(), "r-0000000000000abc");
    assert_eq!("r-0000000000000abc".parse::<RequestId>(), Ok(r));
    assert!("r-abc".parse::<RequestId>().is_err());
    assert!("g-0000000000000abc".parse::<RequestId>().is_err());
}

#[test]
fn session_events_with_a_recording_append_it_and_old_events_still_decode() {
    let session = SessionRef {
        record_id: "h-g-0000000000000001-7-1-close".into(),
        host: "h".into(),
        grant_id: GrantId(1),
        serial: 2,
        principal: "u".into(),
        session_id: "h-g-0000000000000001-7-1".into(),
    };
    let digest = crate::recording::RecordingDigest {
        sha256: std::array::from_fn(|i| i as u8),
        bytes: 0x0102,
        duration_ms: 0x0304,
    };
    // The digest is 32 hash bytes, then bytes and duration as u64: 48 bytes after the rest.
    let tail: String = (0u8..32)
        .map(|b| format!("{b:02x}"))
        .chain(["0000000000000102".into(), "0000000000000304".into()])
        .collect();
    let kinds = |recording| {
        [
            EventKind::SessionClosed(SessionClosed {
                session: session.clone(),
                recording,
            }),
            EventKind::SessionEnded(SessionEnded {
                session: session.clone(),
                reason: EndReason::Denied,
                detail: "recording_failed".into(),
                recording,
            }),
        ]
    };
    for (old, new) in kinds(None).into_iter().zip(kinds(Some(digest))) {
        let old = Event::new(Timestamp(1), Actor::Host("host://h".into()), old);
        let new = Event::new(Timestamp(1), Actor::Host("host://h".into()), new);
        let old_bytes = old.encode().unwrap();
        let new_bytes = new.encode().unwrap();
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(&new_bytes), format!("{}{tail}", hex(&old_bytes)));
        assert_eq!(Event::decode(&old_bytes).unwrap(), old);
        assert_eq!(Event::decode(&new_bytes).unwrap(), new);
        // A digest cut short is refused, not read as no recording.
        assert!(Event::decode(&new_bytes[..new_bytes.len() - 1]).is_err());
    }
}
