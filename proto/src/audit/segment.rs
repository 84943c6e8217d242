//! Segment files and their record framing.
//!
//! A log directory holds `segments/<first leaf index, 20 digits>.seg`. Each segment is a
//! sequence of records:
//!
//! ```text
//! record = len:u32 LE | crc32c(kind ‖ payload):u32 LE | kind:u8 | payload (len bytes)
//! ```
//!
//! The first record of every segment is a [`RecordKind::Header`] naming the format and the
//! segment's first leaf index; then come batches of [`RecordKind::Event`] records (payload =
//! canonical event bytes = Merkle leaf), each batch closed by one [`RecordKind::Checkpoint`]
//! record (payload = signed checkpoint note covering every event so far). A segment that
//! was rolled ends with a checkpoint.

use std::path::Path;

/// Bytes before a record's payload: length, CRC and kind.
pub const RECORD_HEADER_LEN: usize = 9;
/// Largest payload accepted in a record.
pub const MAX_PAYLOAD_LEN: u32 = 2 * 1024 * 1024;
/// Magic at the start of a segment header payload.
pub const SEGMENT_MAGIC: &[u8; 8] = b"BGAUDIT\x01";
/// Length of a segment header payload: magic + first leaf index (u64 LE).
pub const SEGMENT_HEADER_PAYLOAD_LEN: usize = 16;
/// Directory of the segments inside a log directory.
pub const SEGMENTS_DIR: &str = "segments";
/// Name of the latest signed checkpoint inside a log directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Name of the verifier key text inside a log directory.
pub const PUBLIC_KEY_FILE: &str = "log.pub";

/// Type of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// One audit event: the payload is the Merkle leaf.
    Event = 1,
    /// A signed checkpoint note covering every event before it.
    Checkpoint = 2,
    /// First record of a segment: [`SEGMENT_MAGIC`] and the first leaf index.
    Header = 3,
}

impl RecordKind {
    /// The kind for a byte, if it is one.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Event),
            2 => Some(Self::Checkpoint),
            3 => Some(Self::Header),
            _ => None,
        }
    }
}

/// CRC-32C over the kind byte and the payload.
#[must_use]
pub fn record_crc(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// Appends one framed record to `out`.
///
/// # Panics
/// Never for payloads up to [`MAX_PAYLOAD_LEN`]; callers bound their payloads.
pub fn encode_record(kind: RecordKind, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(kind as u8, payload).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

/// Payload of the header record of a segment starting at leaf `first_index`.
#[must_use]
pub fn header_payload(first_index: u64) -> [u8; SEGMENT_HEADER_PAYLOAD_LEN] {
    let mut p = [0u8; SEGMENT_HEADER_PAYLOAD_LEN];
    p[..8].copy_from_slice(SEGMENT_MAGIC);
    p[8..].copy_from_slice(&first_index.to_le_bytes());
    p
}

/// Reads the first leaf index out of a header payload.
pub fn parse_header_payload(p: &[u8]) -> Result<u64, String> {
    if p.len() != SEGMENT_HEADER_PAYLOAD_LEN {
        return Err(format!(
            "segment header is {} bytes, not {SEGMENT_HEADER_PAYLOAD_LEN}",
            p.len()
        ));
    }
    if &p[..8] != SEGMENT_MAGIC {
        return Err("segment header magic is not BGAUDIT\\x01 (unknown format)".into());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&p[8..]);
    Ok(u64::from_le_bytes(n))
}

/// File name of the segment whose first leaf is `first_index`.
#[must_use]
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

/// First leaf index from a segment file name, if the name is one.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lists the segments of a log directory, sorted by first index.
///
/// Files in `segments/` that end in `.seg` but are not named `<20 digits>.seg` are an error;
/// other files are ignored.
pub fn list_segments(log_dir: &Path) -> std::io::Result<Vec<(u64, std::path::PathBuf)>> {
    let dir = log_dir.join(SEGMENTS_DIR);
    let mut v = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = parse_segment_file_name(name) {
            v.push((first, entry.path()));
        } else if name.ends_with(".seg") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: segment file name is not <20 digits>.seg",
                    entry.path().display()
                ),
            ));
        }
    }
    v.sort();
    Ok(v)
}

/// Result of reading one record at some offset of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete record with a correct CRC.
    Record {
        /// Its kind.
        kind: RecordKind,
        /// Its payload.
        payload: &'a [u8],
        /// Total bytes it takes (header + payload).
        len: usize,
    },
    /// The buffer ends inside the record (`need` bytes in total would be required).
    Truncated {
        /// Bytes the record would need.
        need: usize,
    },
    /// The bytes are not a valid record.
    Invalid(String),
}

/// Parses the record at the start of `buf`. Never panics.
#[must_use]
pub fn parse_record(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return Parsed::Truncated {
            need: RECORD_HEADER_LEN,
        };
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > MAX_PAYLOAD_LEN {
        return Parsed::Invalid(format!(
            "record length {len} exceeds the {MAX_PAYLOAD_LEN}-byte limit"
        ));
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let kind_b = buf[8];
    let total = RECORD_HEADER_LEN + len as usize;
    if buf.len() < total {
        return Parsed::Truncated { need: total };
    }
    let payload = &buf[RECORD_HEADER_LEN..total];
    let actual = record_crc(kind_b, payload);
    if actual != crc {
        return Parsed::Invalid(format!(
            "CRC mismatch (stored {crc:08x}, computed {actual:08x}) over a {len}-byte record"
        ));
    }
    match RecordKind::from_u8(kind_b) {
        Some(kind) => Parsed::Record {
            kind,
            payload,
            len: total,
        },
        None => Parsed::Invalid(format!("unknown record kind {kind_b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_round_trips_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_record(RecordKind::Event, b"hello", &mut buf);
        assert_eq!(buf.len(), RECORD_HEADER_LEN + 5);
        assert_eq!(
            parse_record(&buf),
            Parsed::Record {
                kind: RecordKind::Event,
                payload: b"hello",
                len: 14
            }
        );
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(
                    parse_record(&b),
                    Parsed::Record {
                        payload: b"hello",
                        kind: RecordKind::Event,
                        ..
                    }
                ),
                "bit {bit}"
            );
        }
        for n in 0..buf.len() {
            assert!(matches!(parse_record(&buf[..n]), Parsed::Truncated { .. }));
        }
    }

    #[test]
    fn crc32c_is_the_castagnoli_polynomial() {
        // RFC 3720 test vector: 32 bytes of zeros.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_header_payload(&header_payload(7)), Ok(7));
        assert!(parse_header_payload(&[0; 16]).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_record(&b);
        }
    }
}
