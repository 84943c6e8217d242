//! One audit segment, read in memory record by record as the log scan reads it: record
//! framing and CRC, the segment header, every event (`Event::decode`, and the named fields
//! that syslog lines and `audit show` print) and every checkpoint (signed-note
//! verification with the seeds' audit key, checkpoint body parsing).
//!
//! Properties: a framed record re-encodes to the same bytes; an event decodes only from
//! its canonical encoding (`encode(decode(b)) == b`); a checkpoint that verifies parses
//! back from its own body. (Whether a checkpoint's root matches the events before it is
//! the scan's business: see `audit_scan`.)
#![no_main]

use breakglass_fuzz::audit_verifier;
use breakglass_proto::audit::event::Event;
use breakglass_proto::audit::fields::event_fields;
use breakglass_proto::audit::note::Checkpoint;
use breakglass_proto::audit::segment::{
    Parsed, RecordKind, encode_record, parse_header_payload, parse_record,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verifier = audit_verifier();
    let mut pos = 0;
    while pos < data.len() {
        let Parsed::Record { kind, payload, len } = parse_record(&data[pos..]) else {
            break;
        };
        let mut again = Vec::with_capacity(len);
        encode_record(kind, payload, &mut again);
        assert_eq!(
            again,
            &data[pos..pos + len],
            "record at byte {pos} re-encodes differently"
        );
        match kind {
            RecordKind::Header => {
                let _ = parse_header_payload(payload);
            }
            RecordKind::Event => {
                if let Ok(ev) = Event::decode(payload) {
                    let back = ev.encode().expect("a decoded event encodes");
                    assert_eq!(back, payload, "event decoded from non-canonical bytes");
                    for (_, v) in event_fields(&ev) {
                        let _ = v.to_text();
                    }
                }
            }
            RecordKind::Checkpoint => {
                let Ok(note) = std::str::from_utf8(payload) else {
                    pos += len;
                    continue;
                };
                if let Some(i) = note.rfind("\n\n") {
                    let _ = Checkpoint::parse(&note[..=i]);
                }
                if let Ok(cp) = verifier.verify_checkpoint(note) {
                    assert_eq!(Checkpoint::parse(&cp.to_body()), Ok(cp.clone()));
                }
            }
        }
        pos += len;
    }
});
