//! The index on disk: start-up from it, and what a crash or damage can leave of it
//! (shorter, longer, ahead of the log, damaged, missing).

use std::path::{Path, PathBuf};

use breakglass_proto::audit::merkle::{leaf_hash, stored_hash_index};
use breakglass_proto::audit::segment::SEGMENTS_DIR;
use breakglass_proto::audit::verify::verify_dir;
use breakglass_proto::audit::{Hash, verify_consistency, verify_inclusion};

use super::tests::{big_event, config, heartbeat, overwrite, seg, segments, signer};
use super::{AuditError, AuditLog};

fn index(dir: &Path, name: &str) -> PathBuf {
    dir.join("index").join(name)
}

/// Writes `n` events (from `from`) in batches of one and shuts the log down.
fn fill(dir: &Path, seg_bytes: u64, from: u64, n: u64) {
    let log = AuditLog::open(config(dir, seg_bytes), signer()).unwrap();
    assert_eq!(log.size(), from);
    for s in from..from + n {
        assert_eq!(log.append_blocking(&big_event(s)).unwrap(), s);
    }
    log.shutdown_blocking();
}

/// Everything a reader can ask of the log, checked against its signed checkpoint with the
/// proto crate's verifiers (not the daemon's own checks).
fn assert_serves_the_log(log: &AuditLog, n: u64) {
    let cp = log.latest_checkpoint();
    assert_eq!(cp.checkpoint.size, n);
    assert_eq!(log.size(), n);
    let leaves = log.entries(0, n).unwrap();
    for (i, leaf) in (0..n).zip(&leaves) {
        assert_eq!(*leaf, big_event(i).encode().unwrap(), "entry {i}");
        let p = log.inclusion_proof(i, n).unwrap();
        verify_inclusion(&leaf_hash(leaf), i, n, &p, &cp.checkpoint.root).unwrap();
    }
    for old in [0, 1, n / 3, n / 2, n - 1, n] {
        let p = log.consistency_proof(old, n).unwrap();
        let old_root = log.root_at(old).unwrap();
        verify_consistency(old, n, &old_root, &cp.checkpoint.root, &p).unwrap();
    }
    let replayed: Vec<_> = log.replay().map(Result::unwrap).collect();
    assert_eq!(replayed.len() as u64, n);
    assert_eq!(replayed.last().unwrap().1, big_event(n - 1));
}

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

#[test]
fn start_up_does_not_read_the_indexed_history() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 8 * 1024, 0, 60);
    let segs = segments(d.path());
    assert!(segs.len() > 3, "{segs:?}");
    // Every byte of the first segment replaced: an open that read it would refuse the log.
    let first = &segs[0];
    overwrite(first, &vec![0x5a; len(first) as usize]);
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    assert_eq!(log.size(), 60);
    // Proofs come from the index, checked against the signed checkpoint.
    let cp = log.latest_checkpoint().checkpoint;
    let p = log.inclusion_proof(1, 60).unwrap();
    verify_inclusion(
        &leaf_hash(&big_event(1).encode().unwrap()),
        1,
        60,
        &p,
        &cp.root,
    )
    .unwrap();
    // Reading the replaced entries fails; later ones still read.
    assert!(matches!(log.entries(0, 1), Err(AuditError::Corrupt { .. })));
    let last_seg_first = segs.len() as u64; // any entry past the first segment
    assert!(log.entries(last_seg_first * 2, 60).is_ok());
    log.shutdown_blocking();
}

#[test]
fn an_index_shorter_than_the_log_is_extended_from_the_segments() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 8 * 1024, 0, 30);
    let old = tempfile::tempdir().unwrap();
    for name in ["offsets", "tree", "synced"] {
        std::fs::copy(index(d.path(), name), old.path().join(name)).unwrap();
    }
    fill(d.path(), 8 * 1024, 30, 30);
    // A crash before the index files reached the disk: they (and their watermark) are those
    // of 30 entries.
    for name in ["offsets", "tree", "synced"] {
        std::fs::copy(old.path().join(name), index(d.path(), name)).unwrap();
    }
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    assert_serves_the_log(&log, 60);
    assert_eq!(len(&index(d.path(), "offsets")), 60 * 8);
    log.append_blocking(&big_event(60)).unwrap();
    assert_serves_the_log(&log, 61);
    log.shutdown_blocking();

    // Files cut anywhere below their watermark (a power loss that lost a synced write is
    // not expected, but a damaged disk can do it): rebuilt from the segments.
    let tree_len = len(&index(d.path(), "tree"));
    for cut in [0, 32, tree_len / 2, tree_len - 1] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(index(d.path(), "tree"))
            .unwrap();
        f.set_len(cut).unwrap();
        let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
        assert_serves_the_log(&log, 61);
        log.shutdown_blocking();
        assert_eq!(len(&index(d.path(), "tree")), tree_len, "cut at {cut}");
    }
}

#[test]
fn index_files_longer_than_the_log_are_cut() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 1 << 20, 0, 40);
    let (offsets, tree) = (
        len(&index(d.path(), "offsets")),
        len(&index(d.path(), "tree")),
    );
    // A batch indexed but never written to its segment (killed in between), or garbage after
    // the watermark (power loss).
    for name in ["offsets", "tree"] {
        let mut data = std::fs::read(index(d.path(), name)).unwrap();
        data.extend(std::iter::repeat_n(0xa5, 1000));
        std::fs::write(index(d.path(), name), data).unwrap();
    }
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert_eq!(len(&index(d.path(), "offsets")), offsets);
    assert_eq!(len(&index(d.path(), "tree")), tree);
    assert_serves_the_log(&log, 40);
    // The next batch lands where the garbage was.
    log.append_blocking(&big_event(40)).unwrap();
    assert_serves_the_log(&log, 41);
    log.shutdown_blocking();
}

#[test]
fn an_index_ahead_of_the_log_is_rebuilt_and_a_torn_tail_still_cut() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 1 << 20, 0, 20);
    let p = seg(d.path(), 0);
    let good = std::fs::read(&p).unwrap();
    let good_cp = std::fs::read(d.path().join("checkpoint")).unwrap();
    fill(d.path(), 1 << 20, 20, 5);
    // The segment lost its last batches (half of the 21st written), but the index and its
    // watermark say 25.
    let full = std::fs::read(&p).unwrap();
    let cut = good.len() + (full.len() - good.len()) / 10;
    overwrite(&p, &full[..cut]);
    std::fs::write(d.path().join("checkpoint"), &good_cp).unwrap();
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert_eq!(len(&p), good.len() as u64);
    assert_serves_the_log(&log, 20);
    assert_eq!(len(&index(d.path(), "offsets")), 20 * 8);
    log.shutdown_blocking();
    verify_dir(d.path(), &signer().verifier(), None).unwrap();
}

#[test]
fn a_damaged_index_never_serves_a_proof_and_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 1 << 20, 0, 64);
    let tree = index(d.path(), "tree");
    let flip = |level: u32, i: u64| {
        let mut data = std::fs::read(&tree).unwrap();
        data[(stored_hash_index(level, i) * 32) as usize] ^= 1;
        std::fs::write(&tree, data).unwrap();
    };

    // A node of the frontier (the whole tree of 64): the open's root check catches it.
    flip(6, 0);
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert_serves_the_log(&log, 64);
    log.shutdown_blocking();
    drop(log);

    // A node no start-up reads (the hash of leaf 3): caught by the first proof that needs
    // it, which is refused, and the next start rebuilds the index.
    flip(0, 3);
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    let err = log.inclusion_proof(3, 64).unwrap_err();
    assert!(matches!(&err, AuditError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("restart the daemon to rebuild"),
        "{err}"
    );
    assert!(
        log.inclusion_proof(2, 64).is_err(),
        "its sibling's proof uses it"
    );
    assert!(log.root_at(3).is_err(), "its consistency proof uses it");
    assert!(log.root_at(10).is_ok(), "made of other nodes");
    assert!(
        log.inclusion_proof(40, 64).is_ok(),
        "the other half does not use it"
    );
    // Entries are hashed into the signed root, not compared with the index: still served.
    assert_eq!(log.entries(0, 64).unwrap().len(), 64);
    assert!(!index(d.path(), "synced").exists());
    log.shutdown_blocking();
    assert!(
        !index(d.path(), "synced").exists(),
        "shutdown kept it unsynced"
    );
    drop(log);
    let log = AuditLog::open(config(d.path(), 1 << 20), signer()).unwrap();
    assert_serves_the_log(&log, 64);
    log.shutdown_blocking();
    assert!(index(d.path(), "synced").exists());
}

#[test]
fn a_missing_or_foreign_index_is_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 8 * 1024, 0, 30);
    std::fs::remove_dir_all(d.path().join("index")).unwrap();
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    assert_serves_the_log(&log, 30);
    log.shutdown_blocking();
    drop(log);
    // Another log's index (same sizes, other events) in its place.
    let other = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(other.path(), 8 * 1024), signer()).unwrap();
    for s in 0..30 {
        log.append_blocking(&heartbeat(7, s)).unwrap();
    }
    log.shutdown_blocking();
    for name in ["offsets", "tree", "synced"] {
        std::fs::copy(index(other.path(), name), index(d.path(), name)).unwrap();
    }
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    assert_serves_the_log(&log, 30);
    log.shutdown_blocking();
}

#[test]
fn replay_from_an_entry_matches_the_full_replay() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 8 * 1024, 0, 50);
    let log = AuditLog::open(config(d.path(), 8 * 1024), signer()).unwrap();
    let all: Vec<_> = log.replay().map(Result::unwrap).collect();
    assert!(segments(d.path()).len() > 3);
    for start in 0..=50u64 {
        let from: Vec<_> = log
            .replay_from(start)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(from, all[start as usize..], "from {start}");
    }
    assert!(log.replay_from(51).is_err());
    log.shutdown_blocking();
}

/// The stored layout on disk is what the proto crate's tree computes.
#[test]
fn the_tree_file_holds_the_stored_hashes() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 1 << 20, 0, 9);
    let data = std::fs::read(index(d.path(), "tree")).unwrap();
    let mut f = breakglass_proto::audit::Frontier::new();
    let mut want: Vec<Hash> = Vec::new();
    for s in 0..9 {
        f.push_stored(leaf_hash(&big_event(s).encode().unwrap()), |h| want.push(h));
    }
    assert_eq!(data, want.concat());
    assert!(d.path().join(SEGMENTS_DIR).is_dir());
}
