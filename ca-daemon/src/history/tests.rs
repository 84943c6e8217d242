//! The index on real files: lookups across sealed chunks and the in-memory tail, a
//! damaged or foreign index file rebuilt, and history read back for what the state
//! evicted.

use std::path::Path;

use breakglass_proto::audit::ed25519_dalek::SigningKey;
use breakglass_proto::audit::event::{
    GrantIssued, GrantRevoked, Heartbeat, RequestCreated, SessionClosed, SessionRef,
};
use breakglass_proto::audit::{Actor, Event, EventKind, NoteSigner, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;

use super::{History, Subject};
use crate::audit::{AuditConfig, AuditLog};
use crate::state::State;

const T0: u64 = 1_796_083_200_000;

fn open_log(dir: &Path, key: u8) -> AuditLog {
    let signer = NoteSigner::new("ca.test/audit/v1", SigningKey::from_bytes(&[key; 32])).unwrap();
    AuditLog::open(AuditConfig::new(dir), signer).unwrap()
}

fn ev(at: u64, kind: EventKind) -> Event {
    Event::new(Timestamp(at), Actor::User("alice@example.com".into()), kind)
}

/// Request `n` created and issued at `at` for 60 s, then a closed session record and a
/// heartbeat: four events.
fn story(n: u64, at: u64) -> Vec<Event> {
    let created = RequestCreated {
        request_id: RequestId(n),
        requester: "alice@example.com".into(),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBreakglassTestKey a".into(),
        principals: vec!["root".into()],
        hosts: vec!["db-1".into()],
        ttl_seconds: 60,
        reason: "incident".into(),
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        emergency: n.is_multiple_of(10),
        rule: "db".into(),
        tier: "high".into(),
        approvals_required: 0,
        expires_at: Timestamp(at + 60_000),
    };
    let issued = GrantIssued {
        request_id: RequestId(n),
        grant_id: GrantId(n),
        serial: 5000 + n,
        key_id: format!("k{n}"),
        ca_fingerprint: "SHA256:ca".into(),
        key_fingerprint: format!("SHA256:key{}", n % 4),
        principals: vec!["root".into()],
        hosts: vec!["db-1".into()],
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        valid_after: at / 1000,
        valid_before: at / 1000 + 60,
        requester: "alice@example.com".into(),
        approvers: vec![],
        rule: "db".into(),
        tier: "high".into(),
        emergency: n.is_multiple_of(10),
    };
    vec![
        ev(at, EventKind::RequestCreated(created)),
        ev(at, EventKind::GrantIssued(Box::new(issued))),
        ev(
            at + 30_000,
            EventKind::SessionClosed(SessionClosed {
                session: SessionRef {
                    record_id: format!("rec-{n}"),
                    host: "db-1".into(),
                    grant_id: GrantId(n),
                    serial: 5000 + n,
                    principal: "root".into(),
                    session_id: format!("s{n}"),
                },
                recording: None,
            }),
        ),
        ev(at + 30_000, EventKind::Heartbeat(Heartbeat {})),
    ]
}

/// 50 stories, one every 10 s: 200 events; grant 7 is revoked as event 200.
fn events() -> Vec<Event> {
    let mut v: Vec<Event> = (0..50).flat_map(|n| story(n, T0 + n * 10_000)).collect();
    v.push(ev(
        T0 + 500_000,
        EventKind::GrantRevoked(GrantRevoked {
            grant_id: GrantId(7),
            serial: 5007,
            reason: "late".into(),
            revoked_key: None,
        }),
    ));
    v
}

fn fill(log: &AuditLog, events: &[Event]) {
    for e in events {
        log.append_blocking(e).unwrap();
    }
}

fn index_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join(super::HISTORY_DIR))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn lookups_find_every_event_of_a_subject_across_files_and_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_log(tmp.path(), 1);
    let all = events();
    fill(&log, &all);
    let h = History::with_chunk(log.clone(), tmp.path(), 16);
    assert_eq!(h.catch_up().unwrap(), 201);
    assert_eq!(
        index_files(tmp.path()).len(),
        12,
        "201 leaves = 12 files of 16 + a tail"
    );
    for subject in [
        Subject::Grant(GrantId(7)),
        Subject::Request(RequestId(49)),
        Subject::Serial(5003),
        Subject::Key("SHA256:key1".into()),
        Subject::Record("rec-12".into()),
        Subject::Emergency,
    ] {
        let expected: Vec<u64> = all
            .iter()
            .enumerate()
            .filter(|(_, e)| subject.matches(e))
            .map(|(i, _)| i as u64)
            .collect();
        let found: Vec<u64> = h
            .events_of(&subject)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(found, expected, "{subject:?}");
    }
    // The story of grant 7: its request, issuance, session and the late revocation.
    let story: Vec<u64> = h
        .grant_story(GrantId(7))
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(story, vec![28, 29, 30, 200]);
    // Since a time: only the ranges that may hold later events are read.
    let since = Timestamp(T0 + 400_000);
    let ranges = h.ranges_since(since, 0, 201).unwrap();
    assert!(ranges.iter().all(|(a, _)| *a >= 144), "{ranges:?}");
    let covered: u64 = ranges.iter().map(|(a, b)| b - a).sum();
    assert!(covered < 201);
    for (i, e) in all.iter().enumerate() {
        if e.time >= since {
            assert!(
                ranges.iter().any(|(a, b)| (*a..*b).contains(&(i as u64))),
                "{i} missed"
            );
        }
    }
    log.shutdown_blocking();
}

#[test]
fn a_damaged_missing_or_foreign_index_file_is_rebuilt_and_answers_stay_right() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_log(tmp.path(), 1);
    let all = events();
    fill(&log, &all);
    let grant7 = |h: &History| -> Vec<u64> {
        h.events_of(&Subject::Grant(GrantId(7)))
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    };
    let good = grant7(&History::with_chunk(log.clone(), tmp.path(), 16));
    assert_eq!(good, vec![29, 30, 200]);
    let files = index_files(tmp.path());
    // Damaged: one byte flipped in the file holding leaves 16..32.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&files[1], &bytes).unwrap();
    assert_eq!(
        grant7(&History::with_chunk(log.clone(), tmp.path(), 16)),
        good
    );
    assert_eq!(
        std::fs::read(&files[1]).unwrap().len(),
        bytes.len(),
        "rewritten"
    );
    // Missing.
    std::fs::remove_file(&files[0]).unwrap();
    assert_eq!(
        grant7(&History::with_chunk(log.clone(), tmp.path(), 16)),
        good
    );
    // Foreign: the index of another log (other events) in its place.
    let other = tempfile::tempdir().unwrap();
    let olog = open_log(other.path(), 2);
    let mut shifted = all.clone();
    shifted.rotate_left(3);
    fill(&olog, &shifted);
    History::with_chunk(olog.clone(), other.path(), 16)
        .catch_up()
        .unwrap();
    for f in index_files(other.path()) {
        std::fs::copy(
            &f,
            tmp.path()
                .join(super::HISTORY_DIR)
                .join(f.file_name().unwrap()),
        )
        .unwrap();
    }
    assert_eq!(
        grant7(&History::with_chunk(log.clone(), tmp.path(), 16)),
        good
    );
    olog.shutdown_blocking();
    log.shutdown_blocking();
}

#[test]
fn an_evicted_grant_is_read_back_from_the_log_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_log(tmp.path(), 1);
    let all = events();
    fill(&log, &all);
    let mut st = State::default();
    let mut everything = State {
        keep_history: true,
        ..State::default()
    };
    for (i, e) in all.iter().enumerate() {
        st.apply(i as u64, e);
        everything.apply(i as u64, e);
    }
    // Grant 3 expired long before the log's last event: it left memory.
    assert!(!st.grants.contains_key(&GrantId(3)));
    assert!(st.request(RequestId(3)).is_none());
    let held: Vec<u64> = st.grants.keys().map(|g| g.0).collect();
    // Held: the unreviewed emergency grants, and those that expired less than two minutes
    // before the log's last event (at 520 s: grants issued from 340 s on).
    let expected: Vec<u64> = [0, 10, 20, 30].into_iter().chain(34..50).collect();
    assert_eq!(held, expected);
    let h = History::with_chunk(log.clone(), tmp.path(), 16);
    let (g, r) = h.grant(GrantId(3)).unwrap().unwrap();
    assert_eq!(&g, everything.grants.get(&GrantId(3)).unwrap());
    assert_eq!(r, everything.request(RequestId(3)).map(|r| r.into_owned()));
    assert_eq!(g.sessions.len(), 1, "its session, from the host record");
    let (r, g) = h.request(RequestId(7)).unwrap().unwrap();
    assert_eq!(r, everything.request(RequestId(7)).unwrap().into_owned());
    assert!(g.unwrap().revoked.is_some());
    assert!(h.has_record("rec-3").unwrap());
    assert!(!h.has_record("rec-none").unwrap());
    assert_eq!(
        h.newest_grant_of_key("SHA256:key1").unwrap(),
        Some(GrantId(49))
    );
    assert_eq!(h.emergency_grants().unwrap().len(), 5);
    assert!(h.grant(GrantId(77)).unwrap().is_none());
    log.shutdown_blocking();
}

#[test]
fn indexing_stops_between_batches_when_told_and_goes_on_from_the_sealed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_log(tmp.path(), 1);
    fill(&log, &events());
    let h = History::with_chunk(log.clone(), tmp.path(), 16);
    // Told to stop after three batches (one chunk each): the rest is left for later.
    let batches = std::sync::atomic::AtomicUsize::new(0);
    let reached = h
        .catch_up_while(|| batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3)
        .unwrap();
    assert_eq!(reached, 48, "three chunks of 16");
    assert_eq!(index_files(tmp.path()).len(), 3, "the three chunks sealed");
    // A new start (a new index over the same files) goes on from there to the end.
    let again = History::with_chunk(log, tmp.path(), 16);
    assert_eq!(again.catch_up().unwrap(), 201);
    assert_eq!(index_files(tmp.path()).len(), 12);
    assert!(
        !again
            .leaves(&Subject::Grant(GrantId(7)))
            .unwrap()
            .is_empty()
    );
}
