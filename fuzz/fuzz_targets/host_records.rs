//! What hosts hand to the CA, and what the host side reads from its own run directories:
//! spool records (JSON files the PAM module and guard write, the shipper reads, both with
//! `breakglass_proto::spool`), session records on the wire (`HostRecord` protobuf) turned
//! into audit events by the daemon (`hosts::to_event`), and the session registry's
//! `key=value` files (registrations, revocation markers), the slots of the spool's slot
//! file (`spool::slots`), and a recording with its recorder's status file as the module
//! and the guard seal them into a close record (`pam_breakglass::recording::seal`; byte 1
//! is the status file's length in 4-byte units, the rest the recording). Byte 0 picks which; the rest is
//! the file or message.
//!
//! Properties: a spool record round-trips through its file form; an accepted host record
//! becomes an event that round-trips through the log's canonical encoding; registry files
//! round-trip (up to the control characters their writer blanks out); a slot that decodes
//! as a record is the encoding of that record; whatever the status file says, the sealed
//! close record carries the recording's true size and chain hash, its detail is free text
//! the daemon takes, and the daemon accepts the record.
#![no_main]

use breakglass_ca::hosts::to_event;
use breakglass_proto::audit::Event;
use breakglass_proto::recording;
use breakglass_proto::sessions::{Registration, RevocationMarker};
use breakglass_proto::spool::SessionRecord;
use breakglass_proto::spool::slots::{self, Slot};
use breakglass_proto::text;
use breakglass_proto::v1::HostRecord;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn blank_controls(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn check_event(host: &str, wire: &HostRecord) {
    let Ok(event) = to_event(host, wire) else {
        return;
    };
    let bytes = event
        .encode()
        .expect("to_event only returns encodable events");
    assert_eq!(Event::decode(&bytes), Ok(event));
}

/// The close record of a recorded session, before the seal.
const CLOSE: &str = r#"{"version":1,"record_id":"localhost-g-00000000000000aa-4242-1796633062000-close","session":"localhost-g-00000000000000aa-4242-1796633062000","event":"close","time":1796633562,"host":"localhost","user":"u","grant":"g-00000000000000aa","serial":42,"key_id":"breakglass/g-00000000000000aa/sre@example.com","requester":"sre@example.com","tier":"critical","pid":4242,"start":1796633062,"expires":1796633662}"#;

/// A directory of this process for the sealed files, made once.
fn seal_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = breakglass_fuzz::scratch_root()
            .join(format!("breakglass-fuzz-seal-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a temporary directory");
        d
    })
}

fn check_seal(body: &[u8]) {
    let [n, rest @ ..] = body else {
        return;
    };
    // Up to 1020 bytes: past the 512 the seal reads of a status file.
    let (status, cast) = rest.split_at((usize::from(*n) * 4).min(rest.len()));
    let path = seal_dir().join("s.cast");
    std::fs::write(&path, cast).expect("write the recording");
    std::fs::write(recording::end_path(&path), status).expect("write the status file");
    let mut r = SessionRecord::from_json(CLOSE.as_bytes()).expect("the close record reads");
    pam_breakglass::recording::seal(&path, 1000, &mut r);
    let (sha, bytes) = recording::chain_of(cast).expect("hashing bytes in memory");
    assert_eq!(r.recording_bytes, Some(bytes));
    assert_eq!(r.recording_sha256, Some(recording::format_sha256(&sha)));
    let detail = r.detail.as_deref().expect("the seal writes a detail");
    text::check_free_text(detail, text::MAX_DETAIL_BYTES).expect("the detail is free text");
    to_event(&r.host, &r.to_wire()).expect("the daemon accepts a sealed close record");
}

fuzz_target!(|data: &[u8]| {
    let [which, body @ ..] = data else {
        return;
    };
    match which % 7 {
        // The module's and the shipper's reading are one since both use the contract's type.
        0 | 1 => {
            let Ok(r) = SessionRecord::from_json(body) else {
                return;
            };
            let json = r.to_json().expect("a record serializes");
            assert_eq!(SessionRecord::from_json(&json).ok(), Some(r.clone()));
            check_event(&r.host, &r.to_wire());
        }
        2 => {
            if let Ok(r) = HostRecord::decode(body) {
                check_event(&r.host, &r);
            }
        }
        3 => {
            let Ok(text) = std::str::from_utf8(body) else {
                return;
            };
            if let Ok(r) = Registration::parse(text) {
                let back = Registration::parse(&r.to_text()).expect("a registration re-reads");
                assert_eq!(
                    back,
                    Registration {
                        session: blank_controls(&r.session),
                        grant: blank_controls(&r.grant),
                        key_id: blank_controls(&r.key_id),
                        guard: r
                            .guard
                            .as_ref()
                            .map(|g| blank_controls(&g.to_string_lossy()).into()),
                        ..r
                    }
                );
            }
        }
        5 => {
            if let Slot::Record {
                sequence, record, ..
            } = slots::decode(body)
            {
                let again = slots::encode(sequence, record).expect("a decoded record fits");
                assert_eq!(
                    slots::decode(&again),
                    slots::decode(&body[..body.len().min(slots::SLOT_SIZE)])
                );
            }
        }
        6 => check_seal(body),
        _ => {
            let Ok(text) = std::str::from_utf8(body) else {
                return;
            };
            if let Ok(m) = RevocationMarker::parse(text) {
                let back = RevocationMarker::parse(&m.to_text()).expect("a marker re-reads");
                assert_eq!(
                    back,
                    RevocationMarker {
                        grant: blank_controls(&m.grant),
                        revoked_by: blank_controls(&m.revoked_by),
                        reason: blank_controls(&m.reason),
                        ..m
                    }
                );
            }
        }
    }
});
