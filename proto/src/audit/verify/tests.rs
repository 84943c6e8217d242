//! Scans of damaged, torn and valid log directories.

use super::*;
use crate::audit::event::{Actor, EventKind, Heartbeat, Timestamp};
use crate::audit::merkle::Frontier;
use crate::audit::note::NoteSigner;
use crate::audit::segment::{SEGMENTS_DIR, encode_record, header_payload, segment_file_name};
use ed25519_dalek::SigningKey;

const ORIGIN: &str = "test.example/audit/v1";

fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[5; 32])).unwrap()
}

fn leaf(i: u64) -> Vec<u8> {
    Event::new(
        Timestamp(i),
        Actor::Daemon,
        EventKind::Heartbeat(Heartbeat {}),
    )
    .encode()
    .unwrap()
}

/// Writes a log of `segments` × `batches` × `per_batch` events the way the engine does.
/// Returns the signed note after each batch.
fn write_log(dir: &Path, segments: u64, batches: u64, per_batch: u64) -> Vec<String> {
    let s = signer();
    std::fs::create_dir_all(dir.join(SEGMENTS_DIR)).unwrap();
    let mut f = Frontier::new();
    let mut notes = Vec::new();
    for _ in 0..segments {
        let mut buf = Vec::new();
        encode_record(RecordKind::Header, &header_payload(f.size()), &mut buf);
        let name = segment_file_name(f.size());
        for _ in 0..batches {
            for _ in 0..per_batch {
                let l = leaf(f.size());
                f.push(leaf_hash(&l));
                encode_record(RecordKind::Event, &l, &mut buf);
            }
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size: f.size(),
                root: f.root(),
                extensions: vec![],
            };
            let note = s.sign_checkpoint(&cp).unwrap();
            encode_record(RecordKind::Checkpoint, note.as_bytes(), &mut buf);
            notes.push(note);
        }
        std::fs::write(dir.join(SEGMENTS_DIR).join(name), buf).unwrap();
    }
    notes
}

fn seg(dir: &Path, first: u64) -> PathBuf {
    dir.join(SEGMENTS_DIR).join(segment_file_name(first))
}

#[test]
fn a_good_log_verifies_and_extends_its_earlier_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    let notes = write_log(d.path(), 3, 4, 5);
    let v = signer().verifier();
    let r = verify_dir(d.path(), &v, Some(&notes[3])).unwrap();
    assert_eq!(r.summary.size, 60);
    assert_eq!(r.summary.checkpoints, 12);
    assert_eq!(r.summary.segments.len(), 3);
    assert!(r.summary.torn_tail.is_none());
    assert_eq!(
        r.events_by_code,
        vec![(crate::audit::EventCode::Heartbeat, 60)]
    );
    assert_eq!(r.extends.unwrap().size, 20);
    let mut seen = 0;
    let fast = scan_log(d.path(), &v, &ScanOptions::default(), |e| {
        assert_eq!(e.index, seen);
        assert_eq!(e.leaf, leaf(seen).as_slice());
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 60);
    assert_eq!(fast.last_checkpoint.unwrap().note, notes[11]);
}

#[test]
fn a_flipped_bit_in_the_middle_is_damage_at_that_record() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 1, 6, 10);
    let p = seg(d.path(), 0);
    let mut data = std::fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x10;
    std::fs::write(&p, &data).unwrap();
    let err = verify_dir(d.path(), &signer().verifier(), None).unwrap_err();
    let LogError::Damaged {
        segment,
        offset,
        reason,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(segment, &p);
    assert!(
        *offset as usize <= mid && mid < *offset as usize + 300,
        "{err}"
    );
    assert!(reason.contains("CRC") || reason.contains("damage"), "{err}");
    assert!(
        err.to_string().contains("00000000000000000000.seg: byte "),
        "{err}"
    );
}

#[test]
fn a_flipped_bit_in_an_earlier_segment_is_damage_even_at_its_end() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 2, 2, 3);
    let p = seg(d.path(), 0);
    let mut data = std::fs::read(&p).unwrap();
    let n = data.len();
    data[n - 3] ^= 1;
    std::fs::write(&p, &data).unwrap();
    let err = verify_dir(d.path(), &signer().verifier(), None).unwrap_err();
    assert!(
        matches!(err, LogError::Damaged { ref segment, .. } if segment == &p),
        "{err}"
    );
}

#[test]
fn a_truncated_last_batch_is_a_torn_tail_not_an_error() {
    let d = tempfile::tempdir().unwrap();
    let notes = write_log(d.path(), 1, 3, 4);
    let p = seg(d.path(), 0);
    let data = std::fs::read(&p).unwrap();
    let v = signer().verifier();
    // Cut at every byte of the last batch (after the second checkpoint).
    let full = scan_log(d.path(), &v, &ScanOptions::default(), |_| Ok(())).unwrap();
    let second_end = {
        let mut s = 0;
        let mut pos = 0;
        while s < 2 {
            let Parsed::Record { kind, len, .. } = parse_record(&data[pos..]) else {
                panic!()
            };
            if kind == RecordKind::Checkpoint {
                s += 1;
            }
            pos += len;
        }
        pos
    };
    assert_eq!(full.size, 12);
    for cut in second_end..data.len() {
        std::fs::write(&p, &data[..cut]).unwrap();
        let r = verify_dir(d.path(), &v, Some(&notes[1])).unwrap();
        assert_eq!(r.summary.size, 8, "cut at {cut}");
        if cut == second_end {
            assert!(r.summary.torn_tail.is_none());
            continue;
        }
        let t = r.summary.torn_tail.as_ref().unwrap();
        assert_eq!(t.offset as usize, second_end);
        assert_eq!(t.len as usize, cut - second_end);
        assert_eq!(r.warnings.len(), 1);
    }
    // Garbage appended after a complete log is also only a tail.
    let mut g = data.clone();
    g.extend_from_slice(b"\x07garbage");
    std::fs::write(&p, &g).unwrap();
    assert_eq!(verify_dir(d.path(), &v, None).unwrap().summary.size, 12);
}

#[test]
fn rollback_and_deleted_segments_are_caught_with_the_saved_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let notes = write_log(d.path(), 3, 2, 2);
    let v = signer().verifier();
    let latest = notes.last().unwrap();
    verify_dir(d.path(), &v, Some(latest)).unwrap();
    // Delete the last segment: the rest still verifies on its own, but not against `latest`.
    std::fs::remove_file(seg(d.path(), 8)).unwrap();
    assert_eq!(verify_dir(d.path(), &v, None).unwrap().summary.size, 8);
    let err = verify_dir(d.path(), &v, Some(latest)).unwrap_err();
    assert!(
        matches!(err, LogError::NotExtending(ref m) if m.contains("only 8")),
        "{err}"
    );
    // Delete a middle segment: the gap is damage.
    write_log(d.path(), 3, 2, 2);
    std::fs::remove_file(seg(d.path(), 4)).unwrap();
    let err = verify_dir(d.path(), &v, None).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_forked_log_is_caught_with_the_saved_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let notes = write_log(d.path(), 1, 2, 3);
    // Rewrite history: different events, correctly signed (the key holder forks the log).
    let d2 = tempfile::tempdir().unwrap();
    let s = signer();
    std::fs::create_dir_all(d2.path().join(SEGMENTS_DIR)).unwrap();
    let mut buf = Vec::new();
    encode_record(RecordKind::Header, &header_payload(0), &mut buf);
    let mut f = Frontier::new();
    for i in 0..6 {
        let l = leaf(100 + i);
        f.push(leaf_hash(&l));
        encode_record(RecordKind::Event, &l, &mut buf);
    }
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: 6,
        root: f.root(),
        extensions: vec![],
    };
    encode_record(
        RecordKind::Checkpoint,
        s.sign_checkpoint(&cp).unwrap().as_bytes(),
        &mut buf,
    );
    std::fs::write(seg(d2.path(), 0), buf).unwrap();
    let v = s.verifier();
    verify_dir(d2.path(), &v, None).unwrap();
    let err = verify_dir(d2.path(), &v, Some(&notes[0])).unwrap_err();
    assert!(err.to_string().contains("fork"), "{err}");
    verify_dir(d.path(), &v, Some(&notes[0])).unwrap();
}

#[test]
fn a_checkpoint_by_another_key_or_with_a_wrong_root_is_damage() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 1, 2, 2);
    let other = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[6; 32])).unwrap();
    let err = verify_dir(d.path(), &other.verifier(), None).unwrap_err();
    assert!(matches!(err, LogError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("no signature by"), "{err}");
    // The fast scan also refuses: the segment's last checkpoint is always verified.
    assert!(
        scan_log(
            d.path(),
            &other.verifier(),
            &ScanOptions::default(),
            |_| Ok(())
        )
        .is_err()
    );
}

#[test]
fn the_checkpoint_file_must_agree_with_the_segments() {
    let d = tempfile::tempdir().unwrap();
    let notes = write_log(d.path(), 2, 2, 2);
    let v = signer().verifier();
    std::fs::write(d.path().join(CHECKPOINT_FILE), &notes[2]).unwrap();
    let r = verify_dir(d.path(), &v, None).unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    std::fs::write(d.path().join(CHECKPOINT_FILE), notes.last().unwrap()).unwrap();
    assert!(verify_dir(d.path(), &v, None).unwrap().warnings.is_empty());
    std::fs::remove_file(seg(d.path(), 4)).unwrap();
    let err = verify_dir(d.path(), &v, None).unwrap_err();
    assert!(matches!(err, LogError::NotExtending(_)), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn scanning_a_garbled_segment_never_panics(
        cut in 0usize..2000, flips in proptest::collection::vec((0usize..4000, 0u8..8), 0..4),
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 1, 3, 3);
        let p = seg(d.path(), 0);
        let mut data = std::fs::read(&p).unwrap();
        for (pos, bit) in flips {
            let i = pos % data.len();
            data[i] ^= 1 << bit;
        }
        data.truncate(data.len().saturating_sub(cut));
        data.extend_from_slice(&junk);
        std::fs::write(&p, &data).unwrap();
        let v = signer().verifier();
        if let Ok(r) = verify_dir(d.path(), &v, None) {
            // Whatever survives is a prefix of the original events.
            proptest::prop_assert!(r.summary.size <= 9);
        }
        let _ = scan_log(d.path(), &v, &ScanOptions::default(), |_| Ok(()));
    }
}

#[test]
fn an_empty_directory_is_an_empty_log_and_a_missing_one_an_io_error() {
    let d = tempfile::tempdir().unwrap();
    let v = signer().verifier();
    assert!(matches!(
        verify_dir(d.path(), &v, None),
        Err(LogError::Io { .. })
    ));
    std::fs::create_dir(d.path().join(SEGMENTS_DIR)).unwrap();
    let r = verify_dir(d.path(), &v, None).unwrap();
    assert_eq!(r.summary.size, 0);
}

#[test]
fn a_scan_resumed_after_any_event_sees_what_the_full_scan_sees_after_it() {
    let d = tempfile::tempdir().unwrap();
    write_log(d.path(), 3, 4, 5);
    let v = signer().verifier();
    let mut all = Vec::new();
    let full = scan_log(d.path(), &v, &ScanOptions::default(), |e| {
        all.push((e.index, e.segment.to_owned(), e.offset, e.leaf_hash));
        Ok(())
    })
    .unwrap();
    for k in 1..all.len() {
        let (_, path, offset, _) = &all[k - 1];
        let len = match parse_record(&std::fs::read(path).unwrap()[*offset as usize..]) {
            Parsed::Record { len, .. } => len as u64,
            other => panic!("{other:?}"),
        };
        let mut frontier = Frontier::new();
        for (.., h) in &all[..k] {
            frontier.push(*h);
        }
        let from = ScanFrom {
            segment_first: (k as u64 - 1) / 20 * 20,
            offset: offset + len,
            frontier,
        };
        let mut seen = Vec::new();
        let s = scan_log_from(d.path(), &v, &ScanOptions::default(), Some(&from), |e| {
            seen.push((e.index, e.segment.to_owned(), e.offset, e.leaf_hash));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, all[k..], "resumed after event {}", k - 1);
        assert_eq!(s.size, full.size);
        assert_eq!(s.frontier, full.frontier);
        assert_eq!(s.last_checkpoint, full.last_checkpoint);
        assert!(s.torn_tail.is_none());
    }
    // A resume point that is not a record boundary (the index was wrong): damage, never
    // silently accepted.
    let from = ScanFrom {
        segment_first: 0,
        offset: all[4].2 + 1,
        frontier: Frontier::new(),
    };
    assert!(
        scan_log_from(d.path(), &v, &ScanOptions::default(), Some(&from), |_| Ok(
            ()
        ))
        .is_err()
    );
}
