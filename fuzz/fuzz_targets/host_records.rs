//! What hosts hand to the CA, and what the host side reads from its own run directories:
//! spool records (JSON files the PAM module and guard write, the shipper reads, both with
//! `breakglass_proto::spool`), session records on the wire (`HostRecord` protobuf) turned
//! into audit events by the daemon (`hosts::to_event`), and the session registry's
//! `key=value` files (registrations, revocation markers), and the slots of the spool's slot
//! file (`spool::slots`). Byte 0 picks which; the rest is the file or message.
//!
//! Properties: a spool record round-trips through its file form; an accepted host record
//! becomes an event that round-trips through the log's canonical encoding; registry files
//! round-trip (up to the control characters their writer blanks out); a slot that decodes
//! as a record is the encoding of that record.
#![no_main]

use breakglass_ca::hosts::to_event;
use breakglass_proto::audit::Event;
use breakglass_proto::sessions::{Registration, RevocationMarker};
use breakglass_proto::spool::SessionRecord;
use breakglass_proto::spool::slots::{self, Slot};
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

fuzz_target!(|data: &[u8]| {
    let [which, body @ ..] = data else {
        return;
    };
    match which % 6 {
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
