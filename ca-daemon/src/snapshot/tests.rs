//! Snapshots: state from snapshot + tail == state from the whole log (property test, on
//! arbitrary event sequences and snapshot points); a damaged, truncated, foreign, forged or
//! older-format snapshot is ignored and the log replayed to the same state; expiry
//! eviction bounds memory.

use std::collections::BTreeMap;
use std::path::Path;

use breakglass_proto::audit::ed25519_dalek::SigningKey;
use breakglass_proto::audit::event::{
    ActionRefused, ApprovalAdded, ClientCertificateIssued, DrillReported, EndReason, GrantIssued,
    GrantReviewed, GrantRevoked, Heartbeat, IdentityDisabled, JoinTokenCreated, KrlPublished,
    LogConsistencyFailed, LogForkAcknowledged, RefusalKind, RefusalsLimited, RequestCancelled,
    RequestCreated, RequestDenied, RequestExpired, ReviewVerdict, SessionClosed, SessionEnded,
    SessionOpened, SessionRef, SshKeyAdded, SshKeyRemoved,
};
use breakglass_proto::audit::{Actor, Event, EventKind, NoteSigner, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use proptest::prelude::*;

use super::{FORMAT_VERSION, decode, encode, encode_to, load_state, path, write};
use crate::audit::{AuditConfig, AuditLog};
use crate::state::{Request, RequestStatus, State};

/// Start of the test clock: 2026-12-01 (Unix ms).
const T0: u64 = 1_796_083_200_000;

fn user(n: u8) -> Actor {
    Actor::User(format!("user{}@example.com", n % 4))
}

fn created(id: u64, at: u64, emergency: bool) -> RequestCreated {
    RequestCreated {
        request_id: RequestId(id),
        requester: format!("user{}@example.com", id % 3),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBreakglassTestKey a".into(),
        principals: vec!["root".into()],
        hosts: vec!["db-1".into()],
        ttl_seconds: 300,
        reason: "incident".into(),
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        emergency,
        rule: "db".into(),
        tier: "high".into(),
        approvals_required: 1,
        expires_at: Timestamp(at + 600_000),
    }
}

fn issued(id: u64, at: u64, ttl_s: u64, emergency: bool) -> GrantIssued {
    GrantIssued {
        request_id: RequestId(id),
        grant_id: GrantId(id),
        serial: 1000 + id,
        key_id: format!("g-{id}"),
        ca_fingerprint: "SHA256:ca".into(),
        key_fingerprint: format!("SHA256:key{}", id % 3),
        principals: vec!["root".into()],
        hosts: vec!["db-1".into()],
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        valid_after: at / 1000,
        valid_before: at / 1000 + ttl_s,
        requester: format!("user{}@example.com", id % 3),
        approvers: vec![],
        rule: "db".into(),
        tier: "high".into(),
        emergency,
    }
}

fn session(id: u64, s: u8, record: String) -> SessionRef {
    SessionRef {
        record_id: record,
        host: format!("db-{}", s % 2),
        grant_id: GrantId(id),
        serial: 1000 + id,
        principal: "root".into(),
        session_id: format!("s{}", s % 3),
    }
}

/// One event of a generated log: `op` picks the kind, `a` the request/grant, `b` a
/// detail, at time `at` (Unix ms); `n` makes record ids unique.
fn event(op: u8, a: u8, b: u8, at: u64, n: usize) -> Event {
    let id = u64::from(a % 12);
    let record = if b.is_multiple_of(4) {
        format!("rec-{b}")
    } else {
        format!("rec-{n}")
    };
    let kind = match op % 22 {
        0 => EventKind::RequestCreated(created(id, at, b.is_multiple_of(5))),
        1 => EventKind::ApprovalAdded(ApprovalAdded {
            request_id: RequestId(id),
            comment: format!("ok {b}"),
        }),
        2 => EventKind::RequestDenied(RequestDenied {
            request_id: RequestId(id),
            reason: "no".into(),
        }),
        3 => EventKind::RequestExpired(RequestExpired {
            request_id: RequestId(id),
        }),
        4 => EventKind::RequestCancelled(RequestCancelled {
            request_id: RequestId(id),
            reason: String::new(),
        }),
        5 => {
            let mut g = issued(id, at, 60 + u64::from(b) * 5, b.is_multiple_of(5));
            // Some grants say other extensions than asked (the request is still held with
            // the grant), some other hosts (the request is held apart).
            if b % 3 == 1 {
                g.extensions = vec!["permit-pty".into()];
            }
            if b % 7 == 2 {
                g.hosts = vec!["db-2".into()];
            }
            EventKind::GrantIssued(Box::new(g))
        }
        6 => EventKind::GrantRevoked(GrantRevoked {
            grant_id: GrantId(id),
            serial: 1000 + id,
            reason: "done".into(),
            revoked_key: b.is_multiple_of(3).then(|| format!("SHA256:key{}", id % 3)),
        }),
        7 => EventKind::GrantReviewed(GrantReviewed {
            grant_id: GrantId(id),
            verdict: if b.is_multiple_of(2) {
                ReviewVerdict::Accepted
            } else {
                ReviewVerdict::Rejected
            },
            comment: "checked".into(),
        }),
        8 => EventKind::SessionOpened(SessionOpened {
            session: session(id, b, record),
            remote_addr: "192.0.2.1".into(),
        }),
        // Half of them recorded: the recording index is part of the state too.
        9 => EventKind::SessionClosed(SessionClosed {
            session: session(id, b, record),
            recording: b.is_multiple_of(2).then_some(
                breakglass_proto::recording::RecordingDigest {
                    sha256: [b; 32],
                    bytes: u64::from(b) * 100,
                    duration_ms: u64::from(b) * 1000,
                },
            ),
        }),
        10 => EventKind::SessionEnded(SessionEnded {
            session: session(id, b, record),
            reason: EndReason::Expired,
            detail: "expired".into(),
            recording: None,
        }),
        11 => EventKind::ActionRefused(ActionRefused {
            kind: RefusalKind::NotRequester,
            identity: format!("user{}@example.com", b % 3),
            action: "show".into(),
            target: RequestId(id).to_string(),
            reason: "not yours".into(),
        }),
        12 => EventKind::RefusalsLimited(RefusalsLimited {
            identity: format!("user{}@example.com", b % 3),
            window_start: crate::state::refusal_window_start(Timestamp(at)),
            window_end: Timestamp(crate::state::refusal_window_start(Timestamp(at)).0 + 3_600_000),
            limit: 3,
        }),
        13 => EventKind::KrlPublished(KrlPublished {
            sha256: [b; 32],
            version: u64::from(b),
            revoked_serials: 1,
        }),
        14 => EventKind::DrillReported(DrillReported {
            grant_id: GrantId(id),
            passed: b.is_multiple_of(2),
            failed_step: String::new(),
            detail: String::new(),
            request_to_shell_ms: 5,
            logout_to_audit_ms: 7,
        }),
        15 => {
            if b.is_multiple_of(2) {
                EventKind::LogConsistencyFailed(Box::new(LogConsistencyFailed {
                    host: format!("db-{b}"),
                    checkpoint: String::new(),
                    size: u64::from(b),
                    root: [b; 32],
                    log_size: 3,
                    log_root: [0; 32],
                }))
            } else {
                EventKind::LogForkAcknowledged(LogForkAcknowledged {
                    reason: "restored".into(),
                    reports: 1,
                })
            }
        }
        17 => EventKind::JoinTokenCreated(JoinTokenCreated {
            token_sha256: [a % 6; 32],
            host: format!("db-{}", a % 6),
            expires_at: Timestamp(at + u64::from(b) * 60_000),
        }),
        18 => EventKind::ClientCertificateIssued(ClientCertificateIssued {
            identity: format!("host://db-{}", a % 6),
            groups: vec!["hosts".into()],
            serial: format!("{n:x}"),
            public_key_sha256: [b; 32],
            not_after: Timestamp(at + 86_400_000),
            method: if b.is_multiple_of(2) {
                "enroll"
            } else {
                "renew"
            }
            .into(),
            join_token_sha256: b.is_multiple_of(2).then_some([a % 6; 32]),
        }),
        19 => EventKind::IdentityDisabled(IdentityDisabled {
            identity: format!("host://db-{}", a % 6),
            reason: format!("reason {b}"),
        }),
        20 => EventKind::SshKeyAdded(SshKeyAdded {
            identity: format!("sre{}@example.com", a % 3),
            public_key: format!("ssh-ed25519 KEY{}", b % 4),
        }),
        21 => EventKind::SshKeyRemoved(SshKeyRemoved {
            identity: format!("sre{}@example.com", a % 3),
            public_key: format!("ssh-ed25519 KEY{}", b % 4),
        }),
        _ => EventKind::Heartbeat(Heartbeat {}),
    };
    Event::new(Timestamp(at), user(b), kind)
}

/// A log of `ops`: each step advances the clock by `dt` seconds (sometimes by none, or
/// backwards a little: times in a log are not strictly ordered).
fn log_of(ops: &[(u8, u8, u8, u16)]) -> Vec<Event> {
    let mut at = T0;
    ops.iter()
        .enumerate()
        .map(|(n, &(op, a, b, dt))| {
            at = if dt % 50 == 7 {
                at.saturating_sub(1500)
            } else {
                at + u64::from(dt) * 1000
            };
            event(op, a, b, at, n)
        })
        .collect()
}

/// Request `id` of `m` while it is pending.
fn pending(m: &mut BTreeMap<RequestId, Request>, id: RequestId) -> Option<&mut Request> {
    m.get_mut(&id)
        .filter(|r| r.status == RequestStatus::Pending)
}

fn replayed(events: &[Event]) -> State {
    let mut st = State::default();
    for (i, e) in events.iter().enumerate() {
        st.apply(i as u64, e);
    }
    st
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The state from a snapshot at any point plus the events after it is the state from
    /// the whole log; a snapshot's bytes decode to the state they were made of.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        ops in prop::collection::vec((0u8..22, 0u8..24, 0u8..40, 0u16..400), 0..160),
        cut in 0usize..160,
    ) {
        let events = log_of(&ops);
        let cut = cut.min(events.len());
        let full = replayed(&events);
        let head = replayed(&events[..cut]);
        let root = [cut as u8; 32];
        let bytes = encode(&head, cut as u64, &root, &signer()).unwrap();
        let snap = decode(&bytes, &signer().verifier()).unwrap();
        prop_assert_eq!(snap.size, cut as u64);
        prop_assert_eq!(snap.root, root);
        prop_assert_eq!(&snap.state, &head);
        let mut st = snap.state;
        for (i, e) in events.iter().enumerate().skip(cut) {
            st.apply(i as u64, e);
        }
        prop_assert_eq!(st, full);
    }

    /// A copy of the state (what [`super::take`] encodes outside the lock) stays the state
    /// at its cut while the events after it are applied to the original: the copy-on-write
    /// maps share nothing a change can reach. Its snapshot plus the tail is the whole log.
    #[test]
    fn a_copy_taken_at_a_cut_stays_the_state_at_that_cut(
        ops in prop::collection::vec((0u8..22, 0u8..24, 0u8..40, 0u16..400), 0..160),
        cut in 0usize..160,
    ) {
        let events = log_of(&ops);
        let cut = cut.min(events.len());
        let mut st = replayed(&events[..cut]);
        let copy = st.clone();
        for (i, e) in events.iter().enumerate().skip(cut) {
            st.apply(i as u64, e);
        }
        let head = replayed(&events[..cut]);
        prop_assert_eq!(&copy, &head);
        let bytes = encode(&copy, cut as u64, &[0; 32], &signer()).unwrap();
        let mut again = decode(&bytes, &signer().verifier()).unwrap().state;
        prop_assert_eq!(&again, &head);
        for (i, e) in events.iter().enumerate().skip(cut) {
            again.apply(i as u64, e);
        }
        prop_assert_eq!(again, st);
    }

    /// An issued request held with its grant reads back exactly as the request its events
    /// make: every request (held apart or with its grant) equals the one a plain model of
    /// the request events builds, nothing evicted.
    #[test]
    fn a_request_held_with_its_grant_reads_back_as_its_events_made_it(
        ops in prop::collection::vec((0u8..20, 0u8..24, 0u8..40, 0u16..400), 0..160),
    ) {
        let events = log_of(&ops);
        let mut st = State {
            keep_history: true,
            ..State::default()
        };
        let mut model: BTreeMap<RequestId, Request> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            st.apply(i as u64, e);
            match &e.kind {
                EventKind::RequestCreated(c) => {
                    model.insert(c.request_id, Request {
                        created: Box::new(c.clone()),
                        created_at: e.time,
                        approvals: Vec::new(),
                        status: RequestStatus::Pending,
                    });
                }
                EventKind::ApprovalAdded(a) => {
                    if let Some(r) = model.get_mut(&a.request_id) {
                        r.approvals.push((e.actor.clone(), a.comment.clone(), e.time));
                    }
                }
                EventKind::RequestDenied(d) => {
                    if let Some(r) = pending(&mut model, d.request_id) {
                        r.status = RequestStatus::Denied { by: e.actor.clone(), reason: d.reason.clone() };
                    }
                }
                EventKind::RequestExpired(x) => {
                    if let Some(r) = pending(&mut model, x.request_id) {
                        r.status = RequestStatus::Expired;
                    }
                }
                EventKind::RequestCancelled(c) => {
                    if let Some(r) = pending(&mut model, c.request_id) {
                        r.status = RequestStatus::Cancelled { by: e.actor.clone(), reason: c.reason.clone() };
                    }
                }
                EventKind::GrantIssued(g) => {
                    if let Some(r) = model.get_mut(&g.request_id) {
                        r.status = RequestStatus::Issued(g.grant_id);
                    }
                }
                _ => {}
            }
        }
        prop_assert_eq!(st.requests_held(), model.len());
        for (id, want) in &model {
            let got = st.request(*id);
            prop_assert_eq!(got.as_deref(), Some(want));
        }
        let mut all: Vec<Request> = st.requests().map(|r| r.into_owned()).collect();
        all.sort_by_key(|r| r.created.request_id);
        prop_assert_eq!(all, model.into_values().collect::<Vec<_>>());
    }

    /// Any change of one byte, and any truncation, is refused.
    #[test]
    fn a_damaged_snapshot_does_not_decode(
        ops in prop::collection::vec((0u8..22, 0u8..24, 0u8..40, 0u16..400), 1..60),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let events = log_of(&ops);
        let st = replayed(&events);
        let bytes = encode(&st, events.len() as u64, &[1; 32], &signer()).unwrap();
        let mut damaged = bytes.clone();
        damaged[at.index(bytes.len())] ^= flip;
        prop_assert!(decode(&damaged, &signer().verifier()).is_err());
        prop_assert!(decode(&bytes[..cut.index(bytes.len())], &signer().verifier()).is_err());
    }
}

#[test]
fn an_expired_grant_leaves_memory_and_its_request_and_serial_with_it() {
    let mut events = vec![
        event(0, 1, 1, T0, 0),
        event(5, 1, 1, T0 + 1000, 1), // 65 s certificate
        event(0, 2, 5, T0 + 2000, 2), // an emergency request
        event(5, 2, 5, T0 + 3000, 3), // its emergency grant, 85 s
        event(6, 1, 1, T0 + 4000, 4), // grant 1 revoked
        event(0, 3, 1, T0 + 5000, 5), // a request left pending
    ];
    let st = replayed(&events);
    assert_eq!(st.grants.len(), 2);
    assert!(st.revocations.values().any(|g| *g == GrantId(1)));
    // Ten minutes later, the log moves on: grant 1 is gone with its request, serial and
    // revocation; the unreviewed emergency grant stays; the pending request stays.
    events.push(event(16, 0, 1, T0 + 600_000, 6));
    let st = replayed(&events);
    assert!(!st.grants.contains_key(&GrantId(1)));
    assert!(st.request(RequestId(1)).is_none());
    assert!(!st.serials.contains_key(&1001));
    assert!(st.revocations.is_empty());
    assert!(
        st.grants.contains_key(&GrantId(2)),
        "unreviewed emergency grant kept"
    );
    assert!(st.pending.contains(&RequestId(3)));
    // Reviewed, it stays for the daily emergency count, then leaves.
    events.push(event(7, 2, 2, T0 + 700_000, 7));
    events.push(event(16, 0, 1, T0 + 700_000 + 23 * 3_600_000, 8));
    let st = replayed(&events);
    assert!(
        st.grants.contains_key(&GrantId(2)),
        "kept for the day's count"
    );
    events.push(event(16, 0, 1, T0 + 25 * 3_600_000, 9));
    let st = replayed(&events);
    assert!(st.grants.is_empty());
    assert_eq!(st.requests_held(), 1, "only the pending request is left");
    assert_eq!(st.expiry.len(), 0, "nothing else is held");
}

#[test]
fn a_host_record_stamped_by_a_clock_days_ahead_evicts_nothing() {
    let mut events = vec![
        Event::new(
            Timestamp(T0),
            user(0),
            EventKind::RequestCreated(created(1, T0, false)),
        ),
        Event::new(
            Timestamp(T0),
            user(0),
            EventKind::GrantIssued(Box::new(issued(1, T0, 600, false))),
        ),
    ];
    // A session record from a host whose clock runs three days ahead: a host's record
    // carries the host's time, which does not move the log's clock.
    let mut opened = event(8, 1, 1, T0 + 3 * 86_400_000, 2);
    opened.actor = Actor::Host("host://db-1".into());
    events.push(opened);
    let st = replayed(&events);
    assert!(st.grants.contains_key(&GrantId(1)), "the live grant stays");
    assert_eq!(st.clock, T0);
    // The daemon's own events still move it: once the certificate has expired (and the
    // two minutes after), the grant leaves.
    events.push(event(16, 0, 1, T0 + 600_000 + 180_000, 3));
    assert!(!replayed(&events).grants.contains_key(&GrantId(1)));
}

#[test]
fn memory_holds_live_grants_only_however_long_the_history() {
    // 5,000 grants of 60 s, one per second: at most the last ~60 s (+ the 2 minutes kept
    // after expiry) are in memory at any time.
    let mut st = State::default();
    let mut most = 0;
    for i in 0..5000u64 {
        let at = T0 + i * 1000;
        let mut g = issued(i, at, 60, false);
        g.request_id = RequestId(i);
        st.apply(
            2 * i,
            &Event::new(
                Timestamp(at),
                user(0),
                EventKind::RequestCreated(created(i, at, false)),
            ),
        );
        st.apply(
            2 * i + 1,
            &Event::new(Timestamp(at), user(0), EventKind::GrantIssued(Box::new(g))),
        );
        most = most.max(st.grants.len());
    }
    assert!(most <= 60 + 120 + 2, "{most} grants held");
    assert!(st.requests_held() <= 60 + 120 + 2);
    assert!(st.serials.len() <= 60 + 120 + 2);
    assert_eq!(st.events, 10_000);
}

/// A sink that keeps what it is given and the largest single write.
#[derive(Default)]
struct Pieces {
    bytes: Vec<u8>,
    largest: usize,
}

impl std::io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.largest = self.largest.max(buf.len());
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_big_snapshot_is_streamed_in_bounded_pieces_and_reads_back() {
    // 20,000 live grants: several MB of snapshot, handed over 64 KiB at a time.
    let mut st = State::default();
    for i in 0..20_000u64 {
        let at = T0 + i;
        st.apply(
            2 * i,
            &Event::new(
                Timestamp(at),
                user(0),
                EventKind::RequestCreated(created(i, at, false)),
            ),
        );
        st.apply(
            2 * i + 1,
            &Event::new(
                Timestamp(at),
                user(0),
                EventKind::GrantIssued(Box::new(issued(i, at, 3600, false))),
            ),
        );
    }
    assert_eq!(st.grants.len(), 20_000);
    let mut sink = Pieces::default();
    let n = encode_to(&st, 40_000, &[4; 32], &signer(), &mut sink).unwrap();
    assert_eq!(n, sink.bytes.len() as u64);
    assert!(n > 4 << 20, "{n} bytes");
    assert!(
        sink.largest <= 72 << 10,
        "a write of {} bytes",
        sink.largest
    );
    assert_eq!(
        sink.bytes,
        encode(&st, 40_000, &[4; 32], &signer()).unwrap()
    );
    let back = decode(&sink.bytes, &signer().verifier()).unwrap();
    assert_eq!(back.state, st);
    // The file is the same bytes.
    let tmp = tempfile::tempdir().unwrap();
    let written = write(tmp.path(), &st, 40_000, &[4; 32], &signer()).unwrap();
    assert_eq!(written, n);
    assert_eq!(std::fs::read(path(tmp.path())).unwrap(), sink.bytes);
}

fn signer() -> NoteSigner {
    NoteSigner::new("ca.test/audit/v1", SigningKey::from_bytes(&[3; 32])).unwrap()
}

fn open_log(dir: &Path, key: u8) -> AuditLog {
    let signer = NoteSigner::new("ca.test/audit/v1", SigningKey::from_bytes(&[key; 32])).unwrap();
    AuditLog::open(AuditConfig::new(dir), signer).unwrap()
}

fn fill(log: &AuditLog, events: &[Event]) {
    for e in events {
        log.append_blocking(e).unwrap();
    }
}

#[test]
fn start_up_loads_a_fitting_snapshot_and_replays_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let ops: Vec<_> = (0..300u16)
        .map(|i| ((i * 7 % 17) as u8, (i % 13) as u8, (i % 37) as u8, i % 90))
        .collect();
    let events = log_of(&ops);
    let log = open_log(tmp.path(), 3);
    let _ = signer();
    fill(&log, &events[..200]);
    let head = replayed(&events[..200]);
    write(tmp.path(), &head, 200, &log.root_at(200).unwrap(), &log).unwrap();
    fill(&log, &events[200..]);
    let (st, how) = load_state(&log, tmp.path()).unwrap();
    assert_eq!(how.snapshot, Some(200));
    assert_eq!(how.replayed, 100);
    assert_eq!(st, replayed(&events));
    let mode = std::fs::metadata(path(tmp.path())).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    log.shutdown_blocking();
}

#[test]
fn a_damaged_truncated_foreign_or_old_snapshot_is_ignored_and_the_log_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let ops: Vec<_> = (0..120u16)
        .map(|i| ((i * 5 % 17) as u8, (i % 11) as u8, (i % 29) as u8, i % 70))
        .collect();
    let events = log_of(&ops);
    let log = open_log(tmp.path(), 3);
    fill(&log, &events);
    let full = replayed(&events);
    let good = {
        let head = replayed(&events[..80]);
        encode(&head, 80, &log.root_at(80).unwrap(), &log).unwrap()
    };
    // A foreign snapshot: of another log (other events; the same events would be the
    // same state, whatever the key).
    let foreign_log = open_log(other.path(), 4);
    fill(&foreign_log, &events[1..81]);
    let foreign = encode(
        &replayed(&events[1..81]),
        80,
        &foreign_log.root_at(80).unwrap(),
        &log,
    )
    .unwrap();
    // A forged one: this log's size and root, a state of someone's making (here the state
    // of the first 80 events with the pending requests dropped), signed with another key.
    let forged = {
        let mut head = replayed(&events[..80]);
        head.pending.clear();
        encode(&head, 80, &log.root_at(80).unwrap(), &foreign_log).unwrap()
    };
    foreign_log.shutdown_blocking();
    // Ahead of the log: taken at a size this log does not have.
    let ahead = encode(&full, 500, &[0; 32], &log).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let truncated = good[..good.len() - 10].to_vec();
    let mut old = good.clone();
    old[8..12].copy_from_slice(&(FORMAT_VERSION - 1).to_be_bytes());
    for (what, bytes) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("foreign", foreign),
        ("signed with another key", forged),
        ("ahead", ahead),
        ("old format", old),
        ("garbage", b"not a snapshot at all".to_vec()),
    ] {
        std::fs::write(path(tmp.path()), &bytes).unwrap();
        let (st, how) = load_state(&log, tmp.path()).unwrap();
        assert_eq!(how.snapshot, None, "{what} snapshot used");
        let why = how.ignored.expect("a reason is given");
        if what == "signed with another key" {
            assert!(why.contains("signature does not verify"), "{what}: {why}");
        }
        assert_eq!(how.replayed, events.len() as u64, "{what}");
        assert_eq!(st, full, "{what}: state differs from a full replay");
    }
    // The good one is used.
    std::fs::write(path(tmp.path()), &good).unwrap();
    let (st, how) = load_state(&log, tmp.path()).unwrap();
    assert_eq!(how.snapshot, Some(80));
    assert_eq!(st, full);
    log.shutdown_blocking();
}

/// Seen while writing the `state_snapshot` fuzz target: every log's root at size 0 is the empty
/// tree's, so a snapshot that says "size 0" but holds a state (here a pending request and
/// a revoked key) passed the root check and was loaded as the start of any log.
#[test]
fn a_snapshot_at_size_zero_holding_anything_is_refused() {
    let empty = encode(&State::default(), 0, &[0; 32], &signer()).unwrap();
    assert_eq!(
        decode(&empty, &signer().verifier()).unwrap().state,
        State::default()
    );
    let mut st = replayed(&[event(0, 1, 1, T0, 0), event(6, 1, 3, T0, 1)]);
    assert!(!st.pending.is_empty() && !st.revoked_keys.is_empty());
    st.events = 0;
    st.top = 0;
    let e = decode(
        &encode(&st, 0, &[0; 32], &signer()).unwrap(),
        &signer().verifier(),
    )
    .unwrap_err();
    assert!(e.contains("size 0 but not the empty state"), "{e}");
}

/// A state naming a leaf at or past the size it claims (here its grant issued at leaf 7 in
/// a snapshot of 2 events) is not of the log's first events: refused, naming the leaf.
#[test]
fn a_snapshot_naming_a_leaf_past_its_size_is_refused() {
    let events = [event(0, 1, 1, T0, 0), event(5, 1, 1, T0 + 1000, 1)];
    let st = replayed(&events);
    assert_eq!(
        decode(
            &encode(&st, 2, &[2; 32], &signer()).unwrap(),
            &signer().verifier()
        )
        .unwrap()
        .state,
        st
    );
    let mut bad = st.clone();
    let ids: Vec<GrantId> = bad.grants.keys().copied().collect();
    for id in ids {
        bad.grants.get_mut(&id).expect("held").index = 7;
    }
    let e = decode(
        &encode(&bad, 2, &[2; 32], &signer()).unwrap(),
        &signer().verifier(),
    )
    .unwrap_err();
    assert!(
        e.contains("names leaf 7 but was taken at log size 2"),
        "{e}"
    );
}
