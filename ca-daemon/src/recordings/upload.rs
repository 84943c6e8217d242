//! The decisions of one upload call, apart from its file and network work: where the upload
//! must start, which message is appended, which breaks the call, when the recording is
//! refused for being longer than its record, and whether the file is complete (then its
//! chain decides). [`super::Recordings::upload`] does the I/O around it; the `recording_upload`
//! fuzz target drives it with arbitrary message sequences.

use crate::error::{Error, RecordingError};

/// Largest `data` of one upload message.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// One upload call of one session's recording, message by message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadCheck {
    session: String,
    /// Size of the recording its session record commits to.
    expected: u64,
    /// Bytes of the upload the daemon holds (its file), counting what was appended.
    held: u64,
}

/// What to do with a message that does not break the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Append its bytes (none for an empty message) and read the next message.
    Append,
    /// Refuse the recording (drop what is held, record `recording_refused`), for this reason.
    Refuse(String),
}

fn bad(why: String) -> Error {
    Error::Recording(RecordingError::BadUpload(why))
}

impl UploadCheck {
    /// The call whose first message starts at `first_offset`, for `session`, whose record
    /// says `expected` bytes, when the daemon holds `held` bytes of it: refused unless the
    /// message starts where the daemon's copy ends.
    pub fn start(
        session: &str,
        expected: u64,
        held: u64,
        first_offset: u64,
    ) -> Result<Self, Error> {
        if first_offset != held {
            return Err(Error::Recording(RecordingError::Offset {
                session: session.to_owned(),
                given: first_offset,
                held,
            }));
        }
        Ok(Self {
            session: session.to_owned(),
            expected,
            held,
        })
    }

    /// The next message (the first one too): of `session`, at `offset`, with `len` bytes.
    /// `Err` breaks the call (what was appended before stays, for a resumed upload);
    /// [`Step::Append`] counts the bytes as held.
    pub fn piece(&mut self, session: &str, offset: u64, len: usize) -> Result<Step, Error> {
        if session != self.session {
            return Err(bad(format!(
                "a message for session {session:?} in the upload of {:?}: one session per call",
                self.session
            )));
        }
        if offset != self.held {
            return Err(bad(format!(
                "a message at byte {offset} after {} bytes: send the file in order",
                self.held
            )));
        }
        if len > MAX_CHUNK_BYTES {
            return Err(bad(format!(
                "a message of {len} bytes; at most {MAX_CHUNK_BYTES}"
            )));
        }
        let after = self.held.saturating_add(len as u64);
        if after > self.expected {
            return Ok(Step::Refuse(format!(
                "it is longer than the {} bytes its session record says",
                self.expected
            )));
        }
        self.held = after;
        Ok(Step::Append)
    }

    /// Bytes held, counting every message appended.
    #[must_use]
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Whether the daemon holds as many bytes as the record says: the chain decides now.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.held >= self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_starts_where_the_copy_ends_and_runs_in_order() {
        let e = UploadCheck::start("s", 10, 4, 0).unwrap_err();
        assert!(
            e.to_string()
                .contains("starts at byte 0 but the daemon holds 4"),
            "{e}"
        );
        let mut c = UploadCheck::start("s", 10, 4, 4).unwrap();
        assert_eq!(c.piece("s", 4, 3).unwrap(), Step::Append);
        assert_eq!(c.held(), 7);
        assert!(!c.complete());
        let e = c.piece("s", 4, 3).unwrap_err();
        assert!(e.to_string().contains("at byte 4 after 7 bytes"), "{e}");
        let e = c.piece("t", 7, 3).unwrap_err();
        assert!(e.to_string().contains("one session per call"), "{e}");
        let e = c.piece("s", 7, MAX_CHUNK_BYTES + 1).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        assert_eq!(
            c.held(),
            7,
            "nothing counted from a message that broke the call"
        );
        assert!(matches!(c.piece("s", 7, 4).unwrap(), Step::Refuse(_)));
        assert_eq!(c.piece("s", 7, 0).unwrap(), Step::Append);
        assert_eq!(c.piece("s", 7, 3).unwrap(), Step::Append);
        assert!(c.complete());
    }

    #[test]
    fn a_held_copy_longer_than_the_record_is_refused_not_wrapped() {
        // A copy already past the record (or near u64::MAX) refuses the next message
        // instead of overflowing the count.
        let mut c = UploadCheck::start("s", 10, u64::MAX, u64::MAX).unwrap();
        assert!(matches!(
            c.piece("s", u64::MAX, 1).unwrap(),
            Step::Refuse(_)
        ));
        let mut c = UploadCheck::start("s", 10, 11, 11).unwrap();
        assert!(matches!(c.piece("s", 11, 0).unwrap(), Step::Refuse(_)));
    }
}
