//! A whole audit log directory, read both ways the project reads one: the auditor's
//! offline `verify_dir` (every signature, every event decoded, the `checkpoint` file, a
//! saved checkpoint to extend) and the daemon's start-up (`AuditLog::open`: scan, cut a
//! torn tail or refuse damage; then replay every event into `State::apply`). Files are
//! written to a scratch directory (`/dev/shm` when there is one).
//!
//! Input: byte 0 picks which checkpoint record (if any) becomes the `checkpoint` file,
//! byte 1 which one is the auditor's saved checkpoint; the rest is the segment files one
//! after the other (a new file starts at each segment header record and is named after
//! the first leaf index it declares).
//!
//! Properties: the two readers agree: a log the auditor verifies, the daemon opens with
//! the same size; a log the daemon opened (after cutting a torn tail) verifies offline
//! with no torn tail left and the same size, and replays exactly its events.
#![no_main]

use std::path::{Path, PathBuf};

use breakglass_ca::audit::{AuditConfig, AuditLog};
use breakglass_ca::state::State;
use breakglass_fuzz::{audit_verifier, new_audit_signer};
use breakglass_proto::audit::segment::{
    CHECKPOINT_FILE, Parsed, RECORD_HEADER_LEN, RecordKind, SEGMENT_MAGIC, SEGMENTS_DIR,
    parse_header_payload, parse_record, segment_file_name,
};
use breakglass_proto::audit::verify_dir;
use libfuzzer_sys::fuzz_target;

fn scratch() -> PathBuf {
    breakglass_fuzz::scratch_root().join(format!("breakglass-fuzz-scan-{}", std::process::id()))
}

/// Splits the input into segment files at every header record after the first byte.
fn segments(data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut starts = vec![0];
    starts.extend(
        data.windows(SEGMENT_MAGIC.len())
            .enumerate()
            .filter(|(p, w)| {
                *p > RECORD_HEADER_LEN
                    && *w == SEGMENT_MAGIC
                    && data[p - 1] == RecordKind::Header as u8
            })
            .map(|(p, _)| p - RECORD_HEADER_LEN),
    );
    starts.push(data.len());
    let mut out: Vec<(u64, &[u8])> = Vec::new();
    for w in starts.windows(2) {
        let seg = &data[w[0]..w[1]];
        let declared = match parse_record(seg) {
            Parsed::Record {
                kind: RecordKind::Header,
                payload,
                ..
            } => parse_header_payload(payload).ok(),
            _ => None,
        };
        let name = match (declared, out.last()) {
            (Some(d), Some((prev, _))) if d > *prev => d,
            (Some(d), None) => d,
            (_, Some((prev, _))) => prev.saturating_add(1),
            (None, None) => 0,
        };
        out.push((name, seg));
    }
    out
}

/// The checkpoint notes of the input, in order.
fn checkpoints<'a>(segs: &[(u64, &'a [u8])]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for (_, seg) in segs {
        let mut pos = 0;
        while let Parsed::Record { kind, payload, len } = parse_record(&seg[pos..]) {
            if kind == RecordKind::Checkpoint {
                out.push(payload);
            }
            pos += len;
        }
    }
    out
}

fn write_log(dir: &Path, segs: &[(u64, &[u8])], checkpoint: Option<&[u8]>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join(SEGMENTS_DIR)).expect("scratch directory");
    for (first, bytes) in segs {
        std::fs::write(
            dir.join(SEGMENTS_DIR).join(segment_file_name(*first)),
            bytes,
        )
        .expect("write segment");
    }
    if let Some(c) = checkpoint {
        std::fs::write(dir.join(CHECKPOINT_FILE), c).expect("write checkpoint");
    }
}

fuzz_target!(|data: &[u8]| {
    let [cp_choice, saved_choice, log @ ..] = data else {
        return;
    };
    let segs = segments(log);
    let cps = checkpoints(&segs);
    let choose = |c: u8| match usize::from(c) % (cps.len() + 1) {
        0 => None,
        n => Some(cps[n - 1]),
    };
    let saved = choose(*saved_choice).and_then(|c| std::str::from_utf8(c).ok());
    let dir = scratch();
    write_log(&dir, &segs, choose(*cp_choice));
    let verifier = audit_verifier();

    let offline = verify_dir(&dir, verifier, None);
    if let Some(s) = saved {
        let _ = verify_dir(&dir, verifier, Some(s));
    }
    let opened = AuditLog::open(AuditConfig::new(&dir), new_audit_signer());
    let Ok(log) = opened else {
        if let Ok(r) = &offline {
            panic!(
                "the auditor verified {} events, the daemon refused the log: {}",
                r.summary.size,
                opened.err().map(|e| e.to_string()).unwrap_or_default()
            );
        }
        return;
    };
    let size = log.size();
    let mut state = State::default();
    for item in log.replay() {
        let (index, event) = item.expect("the daemon replays what it opened");
        state.apply(index, &event);
    }
    log.shutdown_blocking();
    assert_eq!(state.events, size, "replayed events");
    if let Ok(r) = &offline {
        assert_eq!(
            r.summary.size, size,
            "auditor and daemon disagree on the size"
        );
    }
    let after = verify_dir(&dir, verifier, None)
        .unwrap_or_else(|e| panic!("the log the daemon recovered does not verify: {e}"));
    assert_eq!(after.summary.size, size);
    assert_eq!(after.summary.torn_tail, None, "the daemon left a torn tail");
});
