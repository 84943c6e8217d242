//! The daemon's state snapshot (`<audit dir>/state.snapshot`) as start-up reads it:
//! `snapshot::decode` and `snapshot::load_state` against a real audit log (a fixture log of
//! a few dozen events of every kind the state follows, written once per process by the log
//! engine with the fuzz-only audit key into a scratch directory).
//!
//! Input: byte 0 picks the mode.
//! - even: the rest is the whole snapshot file (damaged, truncated, foreign, hand-made);
//! - odd: byte 1 picks a size `k` of the fixture log and the rest is a snapshot *body*,
//!   framed by the target as a snapshot of the fixture log at `k` (its real root, signed
//!   with the fixture log's key), so that damage reaches the body decoder and the replay of
//!   the tail instead of stopping at the signature.
//!
//! Properties: nothing panics; `load_state` always succeeds on the intact log (a snapshot
//! that does not fit is ignored with a reason, never an error) and leaves a state of exactly
//! the log's events; a snapshot that decodes re-encodes to bytes that decode to the same
//! snapshot; a snapshot holding the true state at `k` loads to the state of a full replay.
//!
//! `BREAKGLASS_FUZZ_WRITE_SEEDS=DIR` makes the target write, at start, the true snapshot of
//! the fixture log at every size into `DIR` as odd-mode inputs (how
//! `fuzz/seeds/state_snapshot/` was made).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use breakglass_ca::audit::{AuditConfig, AuditLog};
use breakglass_ca::snapshot::{FORMAT_VERSION, SIGNATURE_DOMAIN, decode, encode, load_state, path};
use breakglass_ca::state::State;
use breakglass_fuzz::{audit_signer, audit_verifier, new_audit_signer};
use breakglass_proto::audit::event::{
    ActionRefused, ApprovalAdded, DrillReported, EndReason, GrantIssued, GrantReviewed,
    GrantRevoked, Heartbeat, KrlPublished, LogConsistencyFailed, LogForkAcknowledged,
    RecordingStored, RefusalKind, RefusalsLimited, RequestCancelled, RequestCreated, RequestDenied,
    ReviewVerdict, SessionClosed, SessionEnded, SessionOpened, SessionRef,
};
use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::{Actor, Event, EventKind, Hash, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::recording::RecordingDigest;
use libfuzzer_sys::fuzz_target;

/// 2026-12-01 (Unix ms).
const T0: u64 = 1_796_083_200_000;

struct Fixture {
    log: AuditLog,
    /// Where the target writes the snapshot under test.
    dir: PathBuf,
    /// The state after the first `k` events, for every `k` up to the log's size.
    states: Vec<State>,
    /// The log's root at every size.
    roots: Vec<Hash>,
}

fn scratch() -> PathBuf {
    let root = std::env::var_os("BREAKGLASS_FUZZ_TMP").map_or_else(
        || {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        },
        PathBuf::from,
    );
    root.join(format!("breakglass-fuzz-snapshot-{}", std::process::id()))
}

fn created(id: u64, at: u64, emergency: bool) -> RequestCreated {
    RequestCreated {
        request_id: RequestId(id),
        requester: format!("user{}@example.com", id % 3),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBreakglassFuzzKey a".into(),
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
        key_fingerprint: format!("SHA256:key{id}"),
        principals: vec!["root".into()],
        hosts: vec!["db-1".into()],
        command: None,
        source_addresses: vec![],
        extensions: vec![],
        valid_after: at / 1000,
        valid_before: at / 1000 + ttl_s,
        requester: format!("user{}@example.com", id % 3),
        approvers: vec!["approver@example.com".into()],
        rule: "db".into(),
        tier: "high".into(),
        emergency,
    }
}

fn session(grant: u64, s: u64, event: &str) -> SessionRef {
    SessionRef {
        record_id: format!("db-1-s{s}-{event}"),
        host: "db-1".into(),
        grant_id: GrantId(grant),
        serial: 1000 + grant,
        principal: "root".into(),
        session_id: format!("db-1-s{s}"),
    }
}

/// The fixture log: requests of every fate, grants revoked, reviewed, expired and evicted,
/// sessions (one recorded, its recording stored), refusals, a KRL, a fork acknowledged.
fn fixture_events() -> Vec<Event> {
    let digest = RecordingDigest {
        sha256: [7; 32],
        bytes: 1234,
        duration_ms: 5000,
    };
    let sre = Actor::User("sre@example.com".into());
    let kinds: Vec<(u64, Actor, EventKind)> = vec![
        (
            0,
            sre.clone(),
            EventKind::RequestCreated(created(1, T0, false)),
        ),
        (
            1,
            Actor::User("approver@example.com".into()),
            EventKind::ApprovalAdded(ApprovalAdded {
                request_id: RequestId(1),
                comment: "ok".into(),
            }),
        ),
        (
            2,
            Actor::Daemon,
            EventKind::GrantIssued(Box::new(issued(1, T0 + 2000, 60, false))),
        ),
        (
            3,
            Actor::Host("host://db-1".into()),
            EventKind::SessionOpened(SessionOpened {
                session: session(1, 1, "open"),
                remote_addr: "192.0.2.1".into(),
            }),
        ),
        (
            4,
            Actor::Host("host://db-1".into()),
            EventKind::SessionClosed(SessionClosed {
                session: session(1, 1, "close"),
                recording: Some(digest),
            }),
        ),
        (
            5,
            Actor::Host("host://db-1".into()),
            EventKind::RecordingStored(RecordingStored {
                host: "db-1".into(),
                session_id: "db-1-s1".into(),
                grant_id: GrantId(1),
                sha256: digest.sha256,
                bytes: digest.bytes,
            }),
        ),
        (
            6,
            sre.clone(),
            EventKind::RequestCreated(created(2, T0 + 6000, true)),
        ),
        (
            7,
            Actor::Daemon,
            EventKind::GrantIssued(Box::new(issued(2, T0 + 7000, 120, true))),
        ),
        (
            8,
            sre.clone(),
            EventKind::GrantRevoked(GrantRevoked {
                grant_id: GrantId(2),
                serial: 1002,
                reason: "done".into(),
                revoked_key: Some("SHA256:key2".into()),
            }),
        ),
        (
            9,
            Actor::Daemon,
            EventKind::KrlPublished(KrlPublished {
                sha256: [9; 32],
                version: 3,
                revoked_serials: 1,
            }),
        ),
        (
            10,
            sre.clone(),
            EventKind::RequestCreated(created(3, T0 + 10_000, false)),
        ),
        (
            11,
            Actor::User("approver@example.com".into()),
            EventKind::RequestDenied(RequestDenied {
                request_id: RequestId(3),
                reason: "no".into(),
            }),
        ),
        (
            12,
            sre.clone(),
            EventKind::RequestCreated(created(4, T0 + 12_000, false)),
        ),
        (
            13,
            sre.clone(),
            EventKind::RequestCancelled(RequestCancelled {
                request_id: RequestId(4),
                reason: "not needed".into(),
            }),
        ),
        (
            14,
            Actor::Daemon,
            EventKind::ActionRefused(ActionRefused {
                kind: RefusalKind::NotRequester,
                identity: "mallory@example.com".into(),
                action: "cancel".into(),
                target: RequestId(5).to_string(),
                reason: "not yours".into(),
            }),
        ),
        (
            15,
            Actor::Daemon,
            EventKind::RefusalsLimited(RefusalsLimited {
                identity: "mallory@example.com".into(),
                window_start: breakglass_ca::state::refusal_window_start(Timestamp(T0 + 15_000)),
                window_end: Timestamp(
                    breakglass_ca::state::refusal_window_start(Timestamp(T0 + 15_000)).0
                        + 3_600_000,
                ),
                limit: 1,
            }),
        ),
        (
            16,
            Actor::Host("host://db-2".into()),
            EventKind::LogConsistencyFailed(Box::new(LogConsistencyFailed {
                host: "db-2".into(),
                checkpoint: String::new(),
                size: 3,
                root: [3; 32],
                log_size: 16,
                log_root: [0; 32],
            })),
        ),
        (
            17,
            sre.clone(),
            EventKind::LogForkAcknowledged(LogForkAcknowledged {
                reason: "restored".into(),
                reports: 1,
            }),
        ),
        (
            18,
            Actor::Host("host://db-1".into()),
            EventKind::SessionEnded(SessionEnded {
                session: session(9, 2, "forced_end"),
                reason: EndReason::Expired,
                detail: "expired".into(),
                recording: None,
            }),
        ),
        (
            19,
            sre.clone(),
            EventKind::GrantReviewed(GrantReviewed {
                grant_id: GrantId(2),
                verdict: ReviewVerdict::Accepted,
                comment: "fine".into(),
            }),
        ),
        (
            20,
            sre.clone(),
            EventKind::DrillReported(DrillReported {
                grant_id: GrantId(2),
                passed: true,
                failed_step: String::new(),
                detail: String::new(),
                request_to_shell_ms: 5,
                logout_to_audit_ms: 7,
            }),
        ),
        (
            21,
            sre.clone(),
            EventKind::RequestCreated(created(6, T0 + 21_000, false)),
        ),
        // Ten minutes later: grant 1 and its request leave memory.
        (600, Actor::Daemon, EventKind::Heartbeat(Heartbeat {})),
        (
            601,
            sre,
            EventKind::RequestCreated(created(7, T0 + 601_000, false)),
        ),
    ];
    kinds
        .into_iter()
        .map(|(s, actor, kind)| Event::new(Timestamp(T0 + s * 1000), actor, kind))
        .collect()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = scratch();
        let _ = std::fs::remove_dir_all(&root);
        let log_dir = root.join("log");
        let dir = root.join("snapshot");
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let log = AuditLog::open(AuditConfig::new(&log_dir), new_audit_signer())
            .expect("fixture log opens");
        let events = fixture_events();
        let mut states = vec![State::default()];
        let mut roots = vec![log.root_at(0).expect("empty root")];
        let mut st = State::default();
        for e in &events {
            let i = log.append_blocking(e).expect("fixture event appended");
            st.apply(i, e);
            states.push(st.clone());
            roots.push(log.root_at(i + 1).expect("root"));
        }
        if let Some(out) = std::env::var_os("BREAKGLASS_FUZZ_WRITE_SEEDS") {
            let out = PathBuf::from(out);
            std::fs::create_dir_all(&out).expect("seed directory");
            for (k, (s, r)) in states.iter().zip(&roots).enumerate() {
                let file = encode(s, k as u64, r, audit_signer()).expect("encodes");
                let body = body_of(&file);
                let mut seed = vec![1u8, k as u8];
                seed.extend_from_slice(body);
                std::fs::write(out.join(format!("fixture-at-{k:02}")), seed).expect("seed");
            }
        }
        Fixture {
            log,
            dir,
            states,
            roots,
        }
    })
}

/// Length of the header before the body: magic, version, size, root.
const HEADER: usize = 8 + 4 + 8 + 32;

/// The body of a snapshot file made by `encode` (before its length and the signature).
fn body_of(file: &[u8]) -> &[u8] {
    &file[HEADER..file.len() - 8 - 64]
}

/// `body` framed as a snapshot at `size` with `root`, signed with the fixture log's key: the
/// format of `snapshot.rs`.
fn frame(body: &[u8], size: u64, root: &Hash) -> Vec<u8> {
    let mut b = b"BGSTATE\n".to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(root);
    b.extend_from_slice(body);
    b.extend_from_slice(&(body.len() as u64).to_be_bytes());
    let signature = audit_signer().sign_digest(SIGNATURE_DOMAIN, &leaf_hash(&b));
    b.extend_from_slice(&signature);
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let n = f.states.len() - 1;
    let (file, k) = if mode % 2 == 0 {
        (rest.to_vec(), None)
    } else {
        let Some((&pick, body)) = rest.split_first() else {
            return;
        };
        let k = usize::from(pick) % (n + 1);
        (frame(body, k as u64, &f.roots[k]), Some(k))
    };

    let decoded = decode(&file, audit_verifier());
    if let Ok(snap) = &decoded {
        let again = encode(&snap.state, snap.size, &snap.root, audit_signer())
            .expect("a decoded state encodes");
        let back = decode(&again, audit_verifier()).expect("what encode writes decodes");
        assert_eq!(&back, snap, "decode(encode(decode(b))) == decode(b)");
    }

    std::fs::write(path(&f.dir), &file).expect("write the snapshot");
    let (state, loaded) = load_state(&f.log, &f.dir).expect("the intact log always loads");
    assert_eq!(
        state.events, n as u64,
        "every event of the log is in the state"
    );
    assert!(state.is_prefix());
    assert_eq!(loaded.snapshot.is_some(), loaded.ignored.is_none());
    if let Some(at) = loaded.snapshot {
        let snap = decoded.as_ref().expect("a snapshot used decodes");
        assert_eq!(snap.size, at);
        assert_eq!(snap.root, f.roots[at as usize], "used with the log's root");
        assert_eq!(loaded.replayed, n as u64 - at);
        if snap.state == f.states[at as usize] {
            assert_eq!(state, f.states[n], "true snapshot + tail == full replay");
        }
    } else {
        assert_eq!(loaded.replayed, n as u64);
        assert_eq!(state, f.states[n], "a snapshot not used: the full replay");
        if let (Some(k), Ok(snap)) = (k, &decoded) {
            panic!(
                "a framed snapshot at {k} that decodes (size {}) was not used: {:?}",
                snap.size, loaded.ignored
            );
        }
    }
});
