//! The engine on real files: durability, recovery, tampering, disk full, kill -9.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use breakglass_proto::audit::ed25519_dalek::SigningKey;
use breakglass_proto::audit::event::{Heartbeat, RequestCreated, RequestId};
use breakglass_proto::audit::merkle::leaf_hash;
use breakglass_proto::audit::segment::{SEGMENTS_DIR, segment_file_name};
use breakglass_proto::audit::verify::verify_dir;
use breakglass_proto::audit::{
    Actor, Event, EventKind, LogError, NoteSigner, Timestamp, verify_consistency, verify_inclusion,
};

use breakglass_test_support::fs::Tmpfs;
use breakglass_test_support::require_root;

use super::{AuditConfig, AuditError, AuditLog};

const ORIGIN: &str = "ca.test/audit/v1";

pub(super) fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap()
}

pub(super) fn config(dir: &Path, segment_max_bytes: u64) -> AuditConfig {
    AuditConfig {
        segment_max_bytes,
        ..AuditConfig::new(dir)
    }
}

pub(super) fn heartbeat(writer: u64, seq: u64) -> Event {
    Event::new(
        Timestamp(seq),
        Actor::User(format!("writer-{writer}")),
        EventKind::Heartbeat(Heartbeat {}),
    )
}

pub(super) fn big_event(seq: u64) -> Event {
    Event::new(
        Timestamp(seq),
        Actor::User("alice@example.com".into()),
        EventKind::RequestCreated(RequestCreated {
            request_id: RequestId(seq),
            requester: "alice@example.com".into(),
            public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBreakglassTestKey alice".into(),
            principals: vec!["postgres".into()],
            hosts: vec!["db-7".into()],
            ttl_seconds: 900,
            reason: "x".repeat(1000),
            command: None,
            source_addresses: vec![],
            extensions: vec![],
            emergency: false,
            rule: "db".into(),
            tier: "high".into(),
            approvals_required: 1,
            expires_at: Timestamp(seq + 1),
        }),
    )
}

pub(super) fn seg(dir: &Path, first: u64) -> PathBuf {
    dir.join(SEGMENTS_DIR).join(segment_file_name(first))
}

pub(super) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

pub(super) fn overwrite(path: &Path, data: &[u8]) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_acked_durable_replayed_and_provable() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 64 * 1024), signer()).unwrap();
    assert_eq!(log.size(), 0);
    assert_eq!(log.latest_checkpoint().checkpoint.size, 0);
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for s in 0..50u64 {
                acked.push((log.append(&heartbeat(w, s)).await.unwrap(), w, s));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort();
    // Every index 0..1600 handed out exactly once.
    assert!(acked.iter().enumerate().all(|(i, a)| a.0 == i as u64));
    assert!(log.batches() < 1600, "no group commit happened");
    let cp = log.latest_checkpoint();
    assert_eq!(cp.checkpoint.size, 1600);
    let v = log.verifier();
    assert_eq!(v.verify_checkpoint(&cp.note).unwrap(), cp.checkpoint);

    // Reads: entries, inclusion and consistency proofs against signed checkpoints.
    let leaves = log.entries(100, 110).unwrap();
    for (i, leaf) in (100u64..).zip(&leaves) {
        let p = log.inclusion_proof(i, 1600).unwrap();
        verify_inclusion(&leaf_hash(leaf), i, 1600, &p, &cp.checkpoint.root).unwrap();
        let (_, w, s) = acked[i as usize];
        assert_eq!(Event::decode(leaf).unwrap(), heartbeat(w, s));
    }
    let old_root = log.root_at(700).unwrap();
    let c = log.consistency_proof(700, 1600).unwrap();
    verify_consistency(700, 1600, &old_root, &cp.checkpoint.root, &c).unwrap();
    assert!(matches!(
        log.entries(1599, 1601),
        Err(AuditError::OutOfRange(_))
    ));
    assert!(matches!(
        log.inclusion_proof(5, 1601),
        Err(AuditError::OutOfRange(_))
    ));
    assert!(log.events(0, 20_000).is_err());
    log.shutdown().await;
    assert!(matches!(
        log.append(&heartbeat(0, 0)).await,
        Err(AuditError::Closed)
    ));
    drop(log);

    // Reopen: everything is there, in order, and the log verifies offline.
    let log = AuditLog::open(config(d.path(), 64 * 1024), signer()).unwrap();
    assert_eq!(log.latest_checkpoint(), cp);
    let replayed: Vec<_> = log.replay().map(Result::unwrap).collect();
    assert_eq!(replayed.len(), 1600);
    for ((i, e), (ai, w, s)) in replayed.iter().zip(&acked) {
        assert_eq!(i, ai);
        assert_eq!(e, &heartbeat(*w, *s));
    }
    let r = verify_dir(d.path(), &v, None).unwrap();
    assert_eq!(r.summary.size, 1600);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // Appending continues at the next index.
    assert_eq!(log.append(&heartbeat(99, 0)).await.unwrap(), 1600);
    log.shutdown().await;
}

#[test]
fn segments_roll_and_closed_segments_are_read_only() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    for s in 0..40 {
        assert_eq!(log.append_blocking(&big_event(s)).unwrap(), s);
    }
    let segs = segments(d.path());
    assert!(segs.len() >= 4, "{segs:?}");
    for (i, p) in segs.iter().enumerate() {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        if i + 1 < segs.len() {
            assert_eq!(mode, 0o444, "{}", p.display());
        } else {
            assert_eq!(mode, 0o644, "{}", p.display());
        }
    }
    // Reads span segments.
    let all = log.events(0, 40).unwrap();
    assert_eq!(all.len(), 40);
    assert_eq!(all[39].1, big_event(39));
    log.shutdown_blocking();
    drop(log);
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    assert_eq!(log.replay().count(), 40);
    log.append_blocking(&big_event(40)).unwrap();
    log.shutdown_blocking();
    let r = verify_dir(d.path(), &signer().verifier(), None).unwrap();
    assert_eq!(r.summary.size, 41);
    assert_eq!(r.summary.segments.len(), segments(d.path()).len());
}

/// Start-up does not read the indexed history again: a bit flipped in it is caught by
/// `audit verify`, by replay, and by the start-up that rebuilds the index.
#[test]
fn a_flipped_bit_in_the_middle_of_a_segment_fails_verify_replay_and_a_rebuild() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    for s in 0..100 {
        log.append_blocking(&heartbeat(1, s)).unwrap();
    }
    log.shutdown_blocking();
    drop(log);
    let p = seg(d.path(), 0);
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x04;
    overwrite(&p, &data);

    let err = verify_dir(d.path(), &signer().verifier(), None).unwrap_err();
    let LogError::Damaged {
        segment, offset, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(segment, &p);
    assert!(
        (*offset as usize) <= mid && mid - (*offset as usize) < 400,
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("00000000000000000000.seg: byte"), "{msg}");

    // The index covers all 100 entries: the open reads none of them.
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert_eq!(log.size(), 100);
    let err = log.replay().find_map(Result::err).unwrap();
    assert!(
        matches!(&err, AuditError::Corrupt { segment, .. } if segment == &p),
        "{err}"
    );
    log.shutdown_blocking();
    drop(log);

    // Without the index, the open scans everything and refuses the log.
    std::fs::remove_dir_all(d.path().join("index")).unwrap();
    let err = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap_err();
    let AuditError::Corrupt {
        segment,
        offset: o2,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(segment, &p);
    assert_eq!(*o2, *offset);
    assert!(err.to_string().contains("refusing"), "{err}");
}

#[test]
fn a_bit_flipped_after_open_is_caught_by_reads() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    for s in 0..10 {
        log.append_blocking(&heartbeat(1, s)).unwrap();
    }
    let p = seg(d.path(), 0);
    let mut data = std::fs::read(&p).unwrap();
    let leaf = heartbeat(1, 5).encode().unwrap();
    let at = data.windows(leaf.len()).position(|w| w == leaf).unwrap();
    data[at + leaf.len() - 1] ^= 1;
    overwrite(&p, &data);
    let err = log.entries(0, 10).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("entry 5"), "{err}");
    assert!(log.entries(0, 5).is_ok());
    assert!(log.replay().any(|r| r.is_err()));
    log.shutdown_blocking();
}

#[test]
fn a_torn_last_batch_is_cut_at_open_and_every_earlier_event_remains() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    let p = seg(d.path(), 0);
    for s in 0..50 {
        log.append_blocking(&heartbeat(1, s)).unwrap();
    }
    let good_len = std::fs::metadata(&p).unwrap().len();
    let good_cp = log.latest_checkpoint();
    log.append_blocking(&heartbeat(1, 50)).unwrap();
    let full_len = std::fs::metadata(&p).unwrap().len();
    log.shutdown_blocking();
    drop(log);
    // The process "died" in the middle of writing the last batch.
    let data = std::fs::read(&p).unwrap();
    let cut = (good_len + full_len) / 2;
    std::fs::write(&p, &data[..cut as usize]).unwrap();
    // The checkpoint file may have been refreshed before the crash: put back the one that
    // matched the durable state (it is never ahead of the segments).
    std::fs::write(d.path().join("checkpoint"), &good_cp.note).unwrap();

    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert_eq!(log.size(), 50);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), good_len);
    assert_eq!(log.latest_checkpoint(), good_cp);
    let events: Vec<_> = log.replay().map(Result::unwrap).collect();
    assert_eq!(events.len(), 50);
    assert_eq!(events[49].1, heartbeat(1, 49));
    assert_eq!(log.append_blocking(&heartbeat(2, 0)).unwrap(), 50);
    log.shutdown_blocking();
    let r = verify_dir(d.path(), &signer().verifier(), Some(&good_cp.note)).unwrap();
    assert_eq!(r.summary.size, 51);
    assert!(r.summary.torn_tail.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_together_survive_any_crash_both_or_neither() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    let p = seg(d.path(), 0);
    for s in 0..10 {
        log.append(&heartbeat(1, s)).await.unwrap();
    }
    let good_len = std::fs::metadata(&p).unwrap().len();
    let good_cp = log.latest_checkpoint();
    let batches = log.batches();
    let pair = [big_event(100), heartbeat(2, 101)];
    assert_eq!(log.append_all(&pair).await.unwrap(), 10);
    assert_eq!(log.batches(), batches + 1, "one write, one checkpoint");
    let full_len = std::fs::metadata(&p).unwrap().len();
    log.shutdown().await;
    drop(log);
    assert!(matches!(
        AuditLog::open(config(d.path(), 1 << 20), signer())
            .unwrap()
            .append_all(&[])
            .await,
        Err(AuditError::OutOfRange(_))
    ));
    let data = std::fs::read(&p).unwrap();
    // A crash (kill -9, power loss) can stop the write after any byte of it: a spread
    // of those bytes (every one takes 90 s), the last one, and the whole write.
    let cuts = (good_len..full_len)
        .step_by(11)
        .chain([full_len - 1, full_len]);
    for cut in cuts {
        let c = tempfile::tempdir().unwrap();
        copy_dir(d.path(), c.path());
        std::fs::write(seg(c.path(), 0), &data[..cut as usize]).unwrap();
        std::fs::write(c.path().join("checkpoint"), &good_cp.note).unwrap();
        let log = AuditLog::open(config(c.path(), 1 << 20), signer()).unwrap();
        let events: Vec<_> = log.replay().map(Result::unwrap).map(|(_, e)| e).collect();
        if cut == full_len {
            assert_eq!(events.len(), 12);
            assert_eq!(events[10..], pair[..]);
        } else {
            assert_eq!(
                events.len(),
                10,
                "cut at byte {cut} of {full_len} kept part of the pair"
            );
        }
        log.shutdown().await;
    }
}

#[test]
fn a_new_segment_torn_before_its_first_checkpoint_is_removed() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 4 * 1024), signer()).unwrap();
    for s in 0..6 {
        log.append_blocking(&big_event(s)).unwrap();
    }
    let n = log.size();
    log.shutdown_blocking();
    drop(log);
    // Crash right after a roll: the old segment was closed, the new one holds only part of
    // its header (its first batch was never written, so never acknowledged).
    let prev = segments(d.path()).pop().unwrap();
    std::fs::set_permissions(&prev, std::fs::Permissions::from_mode(0o444)).unwrap();
    let torn = seg(d.path(), n);
    std::fs::write(&torn, [0x10, 0, 0, 0, 0x55]).unwrap();
    let log = AuditLog::open(config(d.path(), 4 * 1024), signer()).unwrap();
    assert!(!torn.exists());
    assert_eq!(log.size(), n);
    assert_eq!(log.replay().count() as u64, n);
    // The next batch starts the segment again.
    assert_eq!(log.append_blocking(&big_event(99)).unwrap(), n);
    assert!(torn.exists());
    log.shutdown_blocking();
    verify_dir(d.path(), &signer().verifier(), None).unwrap();
}

#[test]
fn a_deleted_last_segment_or_a_rollback_fails_verify_since_the_saved_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("audit");
    let log = AuditLog::open(config(&dir, 4 * 1024), signer()).unwrap();
    for s in 0..10 {
        log.append_blocking(&big_event(s)).unwrap();
    }
    log.shutdown_blocking();
    drop(log);
    // An older copy of the whole directory.
    let old = d.path().join("old");
    copy_dir(&dir, &old);
    let log = AuditLog::open(config(&dir, 4 * 1024), signer()).unwrap();
    for s in 10..20 {
        log.append_blocking(&big_event(s)).unwrap();
    }
    let saved = log.latest_checkpoint().note;
    log.shutdown_blocking();
    drop(log);
    let v = signer().verifier();
    verify_dir(&dir, &v, Some(&saved)).unwrap();

    // Rolled back to the older copy: consistent in itself, but not with what the auditor saw.
    verify_dir(&old, &v, None).unwrap();
    let err = verify_dir(&old, &v, Some(&saved)).unwrap_err();
    assert!(matches!(err, LogError::NotExtending(_)), "{err}");
    assert!(err.to_string().contains("rollback"), "{err}");

    // Last segment deleted: verify --since fails, and so does the daemon's open (the
    // checkpoint file is ahead of the segments).
    let last = segments(&dir).pop().unwrap();
    std::fs::remove_file(&last).unwrap();
    let err = verify_dir(&dir, &v, Some(&saved)).unwrap_err();
    assert!(matches!(err, LogError::NotExtending(_)), "{err}");
    let err = AuditLog::open(config(&dir, 4 * 1024), signer()).unwrap_err();
    assert!(err.to_string().contains("deleted or rolled back"), "{err}");
    // Even with the checkpoint file removed too, the saved checkpoint still catches it.
    std::fs::remove_file(dir.join("checkpoint")).unwrap();
    assert!(verify_dir(&dir, &v, Some(&saved)).is_err());
}

pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join(SEGMENTS_DIR)).unwrap();
    for name in ["checkpoint", "log.pub"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
    for p in segments(from) {
        std::fs::copy(&p, to.join(SEGMENTS_DIR).join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_log_signed_by_another_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    log.append_blocking(&heartbeat(0, 0)).unwrap();
    log.shutdown_blocking();
    drop(log);
    let other = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[10; 32])).unwrap();
    let err = AuditLog::open(config(d.path(), 1 << 20), other).unwrap_err();
    assert!(matches!(err, AuditError::Key(_)), "{err}");
    // Without log.pub, the checkpoints themselves refuse the other key.
    std::fs::remove_file(d.path().join("log.pub")).unwrap();
    let other = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[10; 32])).unwrap();
    let err = AuditLog::open(config(d.path(), 1 << 20), other).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
}

#[test]
fn an_oversized_event_is_refused_before_it_is_queued() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    let mut e = big_event(0);
    if let EventKind::RequestCreated(r) = &mut e.kind {
        r.reason = "x".repeat(100_000);
    }
    assert!(matches!(
        log.append_blocking(&e),
        Err(AuditError::Encode(_))
    ));
    assert_eq!(log.append_blocking(&heartbeat(0, 0)).unwrap(), 0);
    log.shutdown_blocking();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_disk_is_full_appends_fail_clearly_reads_work_and_appends_resume() {
    if !require_root("mounting a size-limited tmpfs") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&d.path().join("small"), "512k");
    let dir = fs.path().join("audit");
    let log = AuditLog::open(config(&dir, 128 * 1024), signer()).unwrap();
    let mut acked = Vec::new();
    let err = loop {
        match log.append(&big_event(acked.len() as u64)).await {
            Ok(i) => acked.push(i),
            Err(e) => break e,
        }
        assert!(acked.len() < 10_000, "the tmpfs never filled up");
    };
    assert!(matches!(err, AuditError::Unavailable(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(msg.contains("nothing was recorded"), "{msg}");
    assert!(log.write_error().is_some());
    let n = acked.len() as u64;
    assert!(n > 50);
    assert_eq!(acked, (0..n).collect::<Vec<_>>());

    // Still full: the same batch is refused again (the failed one was cut back, so nothing
    // half-written remains or is acknowledged).
    assert!(log.append(&big_event(n)).await.is_err());
    // Reads keep working.
    assert_eq!(log.size(), n);
    assert_eq!(log.latest_checkpoint().checkpoint.size, n);
    assert_eq!(log.events(n - 3, n).unwrap().len(), 3);
    assert_eq!(log.replay().filter(Result::is_ok).count() as u64, n);
    log.inclusion_proof(n - 1, n).unwrap();

    // Space comes back: appends resume at the next index.
    fs.resize("4m");
    assert_eq!(log.append(&heartbeat(7, 7)).await.unwrap(), n);
    assert!(log.write_error().is_none());
    assert_eq!(log.append(&heartbeat(9, 9)).await.unwrap(), n + 1);
    log.shutdown().await;
    drop(log);
    let log = AuditLog::open(config(&dir, 128 * 1024), signer()).unwrap();
    assert_eq!(log.size(), n + 2);
    let events: Vec<_> = log.replay().map(Result::unwrap).collect();
    for (i, e) in events.iter().take(n as usize) {
        assert_eq!(e, &big_event(*i));
    }
    assert_eq!(events[n as usize].1, heartbeat(7, 7));
    assert_eq!(events[n as usize + 1].1, heartbeat(9, 9));
    log.shutdown().await;
    let r = verify_dir(&dir, &signer().verifier(), None).unwrap();
    assert_eq!(r.summary.size, n + 2);
}

const CRASH_ENV: &str = "BG_AUDIT_CRASH_CHILD_DIR";

/// The child side of the kill -9 test: 64 writers append forever and print what was acked.
#[test]
#[ignore = "helper: run as a child process by kill_9_during_64_concurrent_writers_loses_no_acked_event"]
fn crash_child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CRASH_ENV) else {
        eprintln!("{CRASH_ENV} not set: nothing to do outside the kill -9 test");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = AuditLog::open(config(Path::new(&dir), 64 * 1024), signer()).unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for w in 0..64u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for s in 0.. {
                    let i = log.append(&heartbeat(w, s)).await.unwrap();
                    println!("ACK {i} {w} {s}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn kill_9_during_64_concurrent_writers_loses_no_acked_event() {
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "audit::tests::crash_child_appends_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                if tx.send((v[0], v[1], v[2])).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 20_000 && Instant::now() < deadline {
        if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(a);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(
        acked.len() >= 20_000,
        "child acknowledged only {} events",
        acked.len()
    );

    let log = AuditLog::open(config(d.path(), 64 * 1024), signer()).unwrap();
    let size = log.size();
    let events: Vec<_> = log.replay().map(Result::unwrap).collect();
    assert_eq!(events.len() as u64, size);
    for (i, w, s) in &acked {
        assert!(*i < size, "acked event {i} missing: log has {size}");
        assert_eq!(events[*i as usize].1, heartbeat(*w, *s), "event {i}");
    }
    log.shutdown_blocking();
    let r = verify_dir(d.path(), &signer().verifier(), None).unwrap();
    assert_eq!(r.summary.size, size);
    assert!(
        segments(d.path()).len() > 1,
        "the crash test should span segment rolls"
    );
}

#[test]
fn the_checkpoint_file_follows_the_log_while_running_and_is_exact_after_shutdown() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert!(!d.path().join("checkpoint").exists());
    for s in 0..5 {
        log.append_blocking(&heartbeat(0, s)).unwrap();
    }
    let latest = log.latest_checkpoint().note;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(d.path().join("checkpoint"))
        .ok()
        .as_deref()
        != Some(&latest)
    {
        assert!(
            Instant::now() < deadline,
            "checkpoint file not refreshed while idle"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in 5..10 {
        log.append_blocking(&heartbeat(0, s)).unwrap();
    }
    log.shutdown_blocking();
    let text = std::fs::read_to_string(d.path().join("checkpoint")).unwrap();
    assert_eq!(text, log.latest_checkpoint().note);
    assert_eq!(
        signer().verifier().verify_checkpoint(&text).unwrap().size,
        10
    );
}

/// The followers (syslog, the history index) read through `follow`: every durable event
/// exactly once, in order, as `events` reads it from the segments, whether the batch is
/// still in the writer's feed, older than it, or the log was reopened (nothing in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_see_every_event_once_from_memory_or_from_the_segments() {
    let d = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(d.path(), 256 * 1024), signer()).unwrap();
    let total = super::feed::FEED_ENTRIES + 700;
    let mut seq = 0;
    while seq < total {
        let batch: Vec<Event> = (seq..(seq + 100).min(total))
            .map(|s| heartbeat(s % 3, s))
            .collect();
        assert_eq!(log.append_all(&batch).await.unwrap(), seq);
        seq += batch.len() as u64;
    }
    let followed = |log: &AuditLog, step: u64| {
        let (mut seen, mut next) = (Vec::new(), 0);
        while next < log.size() {
            let n = log
                .follow(next, next + step, |i, e| seen.push((i, e.clone())))
                .unwrap();
            assert!(n > 0);
            next += n;
        }
        seen
    };
    let mut expected = Vec::new();
    for from in (0..total).step_by(1000) {
        expected.extend(log.events(from, (from + 1000).min(total)).unwrap());
    }
    assert_eq!(expected.len() as u64, total);
    // Steps that start in the segments and end in the feed, and steps inside one batch.
    assert_eq!(followed(&log, 1000), expected);
    assert_eq!(followed(&log, 37), expected);
    log.shutdown().await;
    drop(log);
    let log = AuditLog::open(config(d.path(), 256 * 1024), signer()).unwrap();
    assert_eq!(
        followed(&log, 1000),
        expected,
        "after a reopen, from the segments"
    );
    log.shutdown().await;
}
