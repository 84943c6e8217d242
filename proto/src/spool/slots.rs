//! The spool's slot file: session records written into fixed-size slots of one file whose
//! blocks were allocated and written when it was created, so that a record is made durable
//! by one `fdatasync` of blocks the file system already maps (no new inode, no directory
//! entry, no extent to convert) instead of a new file per record.
//!
//! The file is [`FILE_NAME`] in the spool directory: [`SLOT_SIZE`] bytes per slot, a whole
//! number of slots, created full of zeros (written, not `fallocate`d) by the module when
//! its `spool_slots=` option asks for one. A slot is:
//!
//! | bytes | |
//! |---|---|
//! | 0..8 | [`MAGIC`]; all zero: the slot is free |
//! | 8..16 | sequence: the writer's clock in nanoseconds (little endian), an ordering hint |
//! | 16..20 | length of the record (little endian), at most [`MAX_RECORD`] |
//! | 20..52 | SHA-256 of bytes 0..20 followed by the record |
//! | 52..64 | zero |
//! | 64.. | the record: the same JSON a `<record_id>.json` file holds, then zeros |
//!
//! Writers (`pam_breakglass` and its guard) take an open-file-description lock
//! (`F_OFD_SETLK`, write lock) on a slot's byte range, use the slot only if it is free,
//! write it whole with one `pwrite`, `fdatasync`, and only then report the record durable;
//! a slot is theirs until the shipper frees it. `breakglass host ship` (one at a time)
//! takes the same lock to read a slot, delivers the record, and frees the slot by zeroing
//! its header under the lock once the CA acknowledged it. A slot whose header does not
//! check out (a write cut short by a crash or power loss, or junk) is [`Slot::Damaged`]:
//! never shipped as a record, set aside by the shipper with the reason. When no slot is
//! free, or a record does not fit, the writer falls back to a `<record_id>.json` file.

/// Name of the slot file inside the spool directory.
pub const FILE_NAME: &str = "records.slots";
/// Bytes per slot (one page: the write of a slot touches one block).
pub const SLOT_SIZE: usize = 4096;
/// Bytes of a slot's header.
pub const HEADER_LEN: usize = 64;
/// Largest record a slot holds.
pub const MAX_RECORD: usize = SLOT_SIZE - HEADER_LEN;
/// Most slots a slot file may have (`spool_slots=`).
pub const MAX_SLOTS: u32 = 4096;
/// First bytes of a used slot.
pub const MAGIC: [u8; 8] = *b"BGSLOT1\n";

const SEQ: std::ops::Range<usize> = 8..16;
const LEN: std::ops::Range<usize> = 16..20;
const SUM: std::ops::Range<usize> = 20..52;

/// What one slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot<'a> {
    /// Nothing: a writer may use it.
    Free,
    /// A complete record.
    Record {
        /// The writer's clock in nanoseconds when it wrote the slot.
        sequence: u64,
        /// The record's JSON.
        record: &'a [u8],
        /// The checksum that identifies this write of the slot.
        sum: [u8; 32],
    },
    /// Neither free nor a complete record, and why.
    Damaged(String),
}

/// The bytes of a slot holding `record` (at most [`MAX_RECORD`] bytes), written at
/// `sequence`; `None` when the record does not fit.
#[must_use]
pub fn encode(sequence: u64, record: &[u8]) -> Option<Vec<u8>> {
    if record.len() > MAX_RECORD {
        return None;
    }
    let len = u32::try_from(record.len()).ok()?;
    let mut slot = vec![0u8; SLOT_SIZE];
    slot[..8].copy_from_slice(&MAGIC);
    slot[SEQ].copy_from_slice(&sequence.to_le_bytes());
    slot[LEN].copy_from_slice(&len.to_le_bytes());
    slot[HEADER_LEN..HEADER_LEN + record.len()].copy_from_slice(record);
    let sum = checksum(&slot[..LEN.end], record);
    slot[SUM].copy_from_slice(&sum);
    Some(slot)
}

/// True when a slot whose first bytes are `head` is free (its magic is all zero).
#[must_use]
pub fn is_free(head: &[u8]) -> bool {
    head.iter().take(MAGIC.len()).all(|b| *b == 0)
}

/// Reads one slot (`slot`: its [`SLOT_SIZE`] bytes; fewer is a slot cut short).
#[must_use]
pub fn decode(slot: &[u8]) -> Slot<'_> {
    if is_free(slot) {
        return Slot::Free;
    }
    if slot.len() < HEADER_LEN {
        return Slot::Damaged(format!(
            "the slot is cut short after {} bytes, in its header",
            slot.len()
        ));
    }
    if slot[..8] != MAGIC {
        return Slot::Damaged(
            "the slot does not start with a slot header (junk, or a write cut short)".into(),
        );
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&slot[LEN]);
    let len = u32::from_le_bytes(n) as usize;
    if len > MAX_RECORD {
        return Slot::Damaged(format!(
            "the slot header gives a record of {len} bytes; a slot holds at most {MAX_RECORD}"
        ));
    }
    let Some(record) = slot.get(HEADER_LEN..HEADER_LEN + len) else {
        return Slot::Damaged(format!(
            "the slot is cut short after {} bytes, in a record of {len} bytes",
            slot.len()
        ));
    };
    let sum = checksum(&slot[..LEN.end], record);
    if slot[SUM] != sum {
        return Slot::Damaged(
            "the slot's checksum does not match its record: a write cut short (a crash or \
             power loss while it was written), or damage"
                .into(),
        );
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&slot[SEQ]);
    Slot::Record {
        sequence: u64::from_le_bytes(s),
        record,
        sum,
    }
}

fn checksum(head: &[u8], record: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(head);
    h.update(record);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_round_trips_and_a_zero_slot_is_free() {
        let slot = encode(7, b"{\"a\":1}\n").unwrap();
        assert_eq!(slot.len(), SLOT_SIZE);
        match decode(&slot) {
            Slot::Record {
                sequence, record, ..
            } => assert_eq!((sequence, record), (7, &b"{\"a\":1}\n"[..])),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(&[0u8; SLOT_SIZE]), Slot::Free);
        assert!(encode(1, &[b'x'; MAX_RECORD]).is_some());
        assert!(encode(1, &[b'x'; MAX_RECORD + 1]).is_none());
    }

    #[test]
    fn torn_and_junk_slots_are_damaged_never_records() {
        let slot = encode(7, &[b'r'; 1200]).unwrap();
        // Cut short: only the first sector reached the disk, the rest is old zeros.
        let mut torn = slot.clone();
        torn[512..].fill(0);
        assert!(matches!(decode(&torn), Slot::Damaged(w) if w.contains("cut short")));
        assert!(matches!(decode(&slot[..40]), Slot::Damaged(w) if w.contains("header")));
        assert!(matches!(decode(&slot[..600]), Slot::Damaged(w) if w.contains("cut short")));
        let mut junk = vec![0xa5u8; SLOT_SIZE];
        assert!(matches!(decode(&junk), Slot::Damaged(w) if w.contains("junk")));
        junk[..8].copy_from_slice(&MAGIC);
        junk[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&junk), Slot::Damaged(w) if w.contains("at most")));
    }

    proptest! {
        /// Any change of any byte of a slot's header or record is noticed.
        #[test]
        fn a_changed_byte_is_never_read_as_a_record(
            record in proptest::collection::vec(any::<u8>(), 0..300),
            at in 0usize..(HEADER_LEN + 300),
            flip in 1u8..=255,
        ) {
            let slot = encode(42, &record).unwrap();
            let at = at % (HEADER_LEN + record.len());
            prop_assume!(!(52..64).contains(&at));
            let mut bad = slot.clone();
            bad[at] ^= flip;
            match decode(&bad) {
                Slot::Record { record: r, .. } => prop_assert!(false, "read as a record: {} bytes", r.len()),
                Slot::Free | Slot::Damaged(_) => {}
            }
        }
    }
}
