//! What the log says about session recordings: for each recorded session, the digest its
//! close (or forced-end) record commits to, whether the daemon stored the file, and whether
//! retention deleted it. Built by applying events in log order; the daemon keeps one in its
//! state (to accept, serve and expire uploads), and `breakglass audit verify`, `audit play`
//! and `audit recording` build one from the log they checked (to check the files against).

use std::collections::BTreeMap;

use super::event::{Event, EventKind, Timestamp};
use crate::profile::GrantId;
use crate::recording::RecordingDigest;

/// Where a recording is kept beside the log: `<audit dir>/recordings/`.
pub const RECORDINGS_DIR: &str = "recordings";
/// The stored files, named by their chain hash: `recordings/sha256/<64 hex digits>`.
pub const STORED_DIR: &str = "sha256";

/// The storage name of a recording: the lowercase hex of its chain hash.
#[must_use]
pub fn stored_name(sha256: &[u8; 32]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

/// One recorded session, as the log tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecording {
    /// Host of the session (the one host that may upload it).
    pub host: String,
    /// Host-local session id.
    pub session_id: String,
    /// Grant of the session.
    pub grant_id: GrantId,
    /// What the session's close or forced-end record commits to.
    pub digest: RecordingDigest,
    /// Leaf index of that record.
    pub committed_at: u64,
    /// When the daemon stored the verified file, and the leaf index of `recording_stored`.
    pub stored: Option<(Timestamp, u64)>,
    /// When the stored file was deleted, and why (`recording_deleted`).
    pub deleted: Option<(Timestamp, String)>,
    /// Uploads refused on arrival (`recording_refused`).
    pub refused: u32,
}

impl SessionRecording {
    /// What state the recording is in, as one word: `expected` (committed to, not stored
    /// yet), `stored` or `deleted`.
    #[must_use]
    pub fn state(&self) -> &'static str {
        match (&self.stored, &self.deleted) {
            (_, Some(_)) => "deleted",
            (Some(_), None) => "stored",
            (None, None) => "expected",
        }
    }
}

/// Every recorded session of a log, by session id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingIndex {
    /// Recorded sessions, by session id (unique across hosts: it starts with the host).
    pub sessions: BTreeMap<String, SessionRecording>,
}

impl RecordingIndex {
    /// An index of `events` (in log order, with their leaf indexes).
    #[must_use]
    pub fn of<'a>(events: impl IntoIterator<Item = (u64, &'a Event)>) -> Self {
        let mut index = Self::default();
        for (i, e) in events {
            index.apply(i, e);
        }
        index
    }

    /// Applies one event (others change nothing). The first record committing a session's
    /// recording wins; a stored or deleted event about a session the index does not hold
    /// changes nothing.
    pub fn apply(&mut self, index: u64, event: &Event) {
        let at = event.time;
        match &event.kind {
            EventKind::SessionClosed(s) => {
                if let Some(d) = &s.recording {
                    self.commit(&s.session, d, index);
                }
            }
            EventKind::SessionEnded(s) => {
                if let Some(d) = &s.recording {
                    self.commit(&s.session, d, index);
                }
            }
            EventKind::RecordingStored(r) => {
                if let Some(s) = self.owned(&r.session_id, &r.host) {
                    s.stored = Some((at, index));
                    s.deleted = None;
                }
            }
            EventKind::RecordingRefused(r) => {
                if let Some(s) = self.owned(&r.session_id, &r.host) {
                    s.refused = s.refused.saturating_add(1);
                }
            }
            EventKind::RecordingDeleted(r) => {
                if let Some(s) = self.owned(&r.session_id, &r.host) {
                    s.deleted = Some((at, r.reason.clone()));
                }
            }
            _ => {}
        }
    }

    /// The recorded session `session_id`, if any.
    #[must_use]
    pub fn get(&self, session_id: &str) -> Option<&SessionRecording> {
        self.sessions.get(session_id)
    }

    fn commit(&mut self, s: &super::event::SessionRef, digest: &RecordingDigest, index: u64) {
        self.sessions
            .entry(s.session_id.clone())
            .or_insert_with(|| SessionRecording {
                host: s.host.clone(),
                session_id: s.session_id.clone(),
                grant_id: s.grant_id,
                digest: *digest,
                committed_at: index,
                stored: None,
                deleted: None,
                refused: 0,
            });
    }

    fn owned(&mut self, session_id: &str, host: &str) -> Option<&mut SessionRecording> {
        self.sessions.get_mut(session_id).filter(|s| s.host == host)
    }
}

/// Checks a recording's bytes (read from `file`) against what the log commits to: its size
/// and its chain hash. `Err` says what differs.
pub fn check_recording(file: impl std::io::Read, digest: &RecordingDigest) -> Result<(), String> {
    let (hash, bytes) =
        crate::recording::chain_of(file).map_err(|e| format!("cannot be read: {e}"))?;
    if bytes != digest.bytes {
        return Err(format!(
            "it is {bytes} bytes, but its session record says {}",
            digest.bytes
        ));
    }
    if hash != digest.sha256 {
        return Err(format!(
            "its chain hash is sha256:{}, but its session record says {}",
            stored_name(&hash),
            digest.sha256_text()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{
        Actor, RecordingDeleted, RecordingStored, SessionClosed, SessionRef,
    };

    fn session(host: &str, id: &str) -> SessionRef {
        SessionRef {
            record_id: format!("{id}-close"),
            host: host.into(),
            grant_id: GrantId(7),
            serial: 1,
            principal: "u".into(),
            session_id: id.into(),
        }
    }

    fn at(ms: u64, kind: EventKind) -> Event {
        Event::new(Timestamp(ms), Actor::Daemon, kind)
    }

    #[test]
    fn committed_then_stored_then_deleted_and_only_by_its_host() {
        let digest = RecordingDigest {
            sha256: [1; 32],
            bytes: 10,
            duration_ms: 5,
        };
        let stored = |host: &str| {
            EventKind::RecordingStored(RecordingStored {
                host: host.into(),
                session_id: "db-7-s".into(),
                grant_id: GrantId(7),
                sha256: [1; 32],
                bytes: 10,
            })
        };
        let events = [
            at(
                1,
                EventKind::SessionClosed(SessionClosed {
                    session: session("db-7", "db-7-s"),
                    recording: Some(digest),
                }),
            ),
            // Another host's word changes nothing.
            at(2, stored("web-1")),
        ];
        let mut index = RecordingIndex::of(events.iter().enumerate().map(|(i, e)| (i as u64, e)));
        let r = index.get("db-7-s").unwrap();
        assert_eq!(
            (r.state(), r.committed_at, r.digest),
            ("expected", 0, digest)
        );
        index.apply(5, &at(3, stored("db-7")));
        assert_eq!(index.get("db-7-s").unwrap().state(), "stored");
        assert_eq!(index.get("db-7-s").unwrap().stored, Some((Timestamp(3), 5)));
        index.apply(
            6,
            &at(
                4,
                EventKind::RecordingDeleted(RecordingDeleted {
                    host: "db-7".into(),
                    session_id: "db-7-s".into(),
                    grant_id: GrantId(7),
                    sha256: [1; 32],
                    reason: "retention".into(),
                }),
            ),
        );
        assert_eq!(index.get("db-7-s").unwrap().state(), "deleted");
        // A session closed without a recording is not a recorded session.
        index.apply(
            7,
            &at(
                5,
                EventKind::SessionClosed(SessionClosed {
                    session: session("db-7", "db-7-t"),
                    recording: None,
                }),
            ),
        );
        assert!(index.get("db-7-t").is_none());
    }

    #[test]
    fn a_file_is_checked_against_its_size_and_chain() {
        let bytes = b"{\"version\": 2}\n[0.1, \"o\", \"x\"]\n".to_vec();
        let (sha256, n) = crate::recording::chain_of(&bytes[..]).unwrap();
        let digest = RecordingDigest {
            sha256,
            bytes: n,
            duration_ms: 100,
        };
        check_recording(&bytes[..], &digest).unwrap();
        let mut changed = bytes.clone();
        changed[3] ^= 1;
        assert!(
            check_recording(&changed[..], &digest)
                .unwrap_err()
                .contains("chain hash")
        );
        assert!(
            check_recording(&bytes[1..], &digest)
                .unwrap_err()
                .contains("bytes")
        );
    }
}
