//! The host spool: session records as `pam_breakglass` and its session guard write them,
//! and as `breakglass host ship` reads them and hands them to the CA.
//!
//! Each spool file holds one JSON object (a [`SessionRecord`]) named
//! `<record_id>.json` ([`SessionRecord::file_name`]). The record id is
//! `<session>-<event>` ([`record_id`]), and the session id
//! `<host>-<grant or none>-<sshd pid>-<session start in ms>` ([`session_id`]) is unique per
//! host and shared by every record of one session, so a shipper can deliver each record
//! exactly once, delete it afterwards, and the receiver can join a session's records. The
//! CA checks a host's session ids against [`session_id_prefix`].
//!
//! With the module's `spool_slots=` option, records go into the slots of one pre-written
//! file instead ([`slots`]: same JSON, one `fdatasync` of blocks already on disk); a
//! record that finds no free slot is still a `<record_id>.json` file, and readers take
//! both.
//!
//! Readers ignore fields they do not know, so that the records of a newer module still
//! ship through an older `breakglass`; writers only write the fields below.

use serde::{Deserialize, Serialize};

pub mod slots;

/// Default spool directory (the module's default `spool=`, `host ship --spool`).
pub const DEFAULT_DIR: &str = "/var/spool/breakglass";
/// Version of the record format.
pub const RECORD_VERSION: u32 = 1;
/// Ending of a record's file name.
pub const FILE_SUFFIX: &str = ".json";
/// Largest spool file a reader takes in.
pub const MAX_FILE: u64 = 64 * 1024;

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    /// The module opened a session.
    Open,
    /// The module denied a session.
    Deny,
    /// The guard warned the session's terminal of the coming expiry.
    Warn,
    /// The session closed (close_session ran).
    Close,
    /// The guard ended the session (certificate expired, grant revoked or session denied).
    ForcedEnd,
}

impl SessionEvent {
    /// The name used in records, record ids, on the wire and in syslog
    /// (`event=session_<name>`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            SessionEvent::Open => "open",
            SessionEvent::Deny => "deny",
            SessionEvent::Warn => "warn",
            SessionEvent::Close => "close",
            SessionEvent::ForcedEnd => "forced_end",
        }
    }
}

/// One spool record. Fields that do not apply to an event are `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// Unique id; also the file name without `.json`.
    pub record_id: String,
    /// Id shared by every record of the session: `<host>-<grant>-<pid>-<start ms>`.
    pub session: String,
    /// What happened.
    pub event: SessionEvent,
    /// When it happened (Unix seconds).
    pub time: u64,
    /// This host's name (as matched against the host scope).
    pub host: String,
    /// The login user (certificate principal).
    pub user: String,
    /// Grant id, if a breakglass certificate was presented.
    pub grant: Option<String>,
    /// Certificate serial.
    pub serial: Option<u64>,
    /// Certificate key id.
    pub key_id: Option<String>,
    /// Who requested the grant.
    pub requester: Option<String>,
    /// Risk tier of the grant.
    pub tier: Option<String>,
    /// Client address (PAM_RHOST).
    pub rhost: Option<String>,
    /// PAM_TTY (`ssh` for sshd sessions).
    pub tty: Option<String>,
    /// PAM service name.
    pub service: Option<String>,
    /// Pid of the sshd session ([priv]) process.
    pub pid: u32,
    /// Kernel audit session id of the session.
    pub audit_session: Option<u32>,
    /// Session start (Unix seconds).
    pub start: u64,
    /// Certificate expiry = forced end of the session (Unix seconds).
    pub expires: Option<u64>,
    /// Why (deny and forced end), as a stable code.
    pub reason: Option<String>,
    /// Human-readable detail of the reason.
    pub detail: Option<String>,
    /// Session length in seconds (close and forced end).
    pub duration: Option<u64>,
    /// Processes killed by the sweep (forced end).
    pub killed: Option<u32>,
    /// The session's recording hash, `sha256:<hex>` (close and forced end of a recorded
    /// session; [`crate::recording`]). The recording is `recordings/<session>.cast` in the
    /// spool directory.
    pub recording_sha256: Option<String>,
    /// Size of the recording in bytes (with `recording_sha256`).
    pub recording_bytes: Option<u64>,
    /// Length of the recorded session in milliseconds (with `recording_sha256`).
    pub recording_duration_ms: Option<u64>,
}

impl SessionRecord {
    /// Copy of this record for another event at `time`, with a fresh record id.
    #[must_use]
    pub fn for_event(&self, event: SessionEvent, time: u64) -> Self {
        let mut r = self.clone();
        r.event = event;
        r.time = time;
        r.reason = None;
        r.detail = None;
        r.duration = None;
        r.killed = None;
        r.recording_sha256 = None;
        r.recording_bytes = None;
        r.recording_duration_ms = None;
        r.record_id = record_id(&r.session, event);
        r
    }

    /// The name of this record's spool file: `<record_id>.json`.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("{}{FILE_SUFFIX}", self.record_id)
    }

    /// The content of this record's spool file: one JSON object and a newline.
    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        let mut json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        json.push(b'\n');
        Ok(json)
    }

    /// Reads a spool file's content.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// The record as a host delivers it to the CA (`HostAgent.AppendHostRecords`); absent
    /// fields are empty or 0 there.
    #[cfg(feature = "wire")]
    #[must_use]
    pub fn to_wire(&self) -> crate::v1::HostRecord {
        crate::v1::HostRecord {
            record_id: self.record_id.clone(),
            session: self.session.clone(),
            event: self.event.name().to_owned(),
            time: self.time,
            host: self.host.clone(),
            user: self.user.clone(),
            grant: self.grant.clone().unwrap_or_default(),
            serial: self.serial.unwrap_or_default(),
            rhost: self.rhost.clone().unwrap_or_default(),
            pid: self.pid,
            start: self.start,
            expires: self.expires.unwrap_or_default(),
            reason: self.reason.clone().unwrap_or_default(),
            detail: self.detail.clone().unwrap_or_default(),
            key_id: self.key_id.clone().unwrap_or_default(),
            recording_sha256: self.recording_sha256.clone().unwrap_or_default(),
            recording_bytes: self.recording_bytes.unwrap_or_default(),
            recording_duration_ms: self.recording_duration_ms.unwrap_or_default(),
        }
    }

    /// The recording this record carries, if any; an error when its hash is malformed.
    pub fn recording(
        &self,
    ) -> Result<Option<crate::recording::RecordingDigest>, crate::recording::ParseDigestError> {
        crate::recording::RecordingDigest::from_fields(
            self.recording_sha256.as_deref(),
            self.recording_bytes,
            self.recording_duration_ms,
        )
    }
}

/// Characters outside `[A-Za-z0-9._-]` become `_`, so that an id is a safe file name.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What every session id of `host`, `grant` (`None`: no breakglass certificate) and sshd
/// `pid` starts with; the session start in milliseconds follows.
#[must_use]
pub fn session_id_prefix(host: &str, grant: Option<&str>, pid: u32) -> String {
    file_safe(&format!("{host}-{}-{pid}-", grant.unwrap_or("none")))
}

/// Builds a session id; characters outside `[A-Za-z0-9._-]` become `_`.
#[must_use]
pub fn session_id(host: &str, grant: Option<&str>, pid: u32, start_ms: u64) -> String {
    format!("{}{start_ms}", session_id_prefix(host, grant, pid))
}

/// The id of the `event` record of `session`.
#[must_use]
pub fn record_id(session: &str, event: SessionEvent) -> String {
    format!("{session}-{}", event.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        let session = session_id("db-7", Some("g-00000000000000ff"), 42, 1_700_000_000_123);
        SessionRecord {
            version: RECORD_VERSION,
            record_id: record_id(&session, SessionEvent::Open),
            session,
            event: SessionEvent::Open,
            time: 1_700_000_000,
            host: "db-7".into(),
            user: "postgres".into(),
            grant: Some("g-00000000000000ff".into()),
            serial: Some(255),
            key_id: None,
            requester: Some("sre@example.com".into()),
            tier: None,
            rhost: Some("192.0.2.1".into()),
            tty: Some("ssh".into()),
            service: Some("sshd".into()),
            pid: 42,
            audit_session: Some(3),
            start: 1_700_000_000,
            expires: Some(1_700_000_600),
            reason: None,
            detail: None,
            duration: None,
            killed: None,
            recording_sha256: None,
            recording_bytes: None,
            recording_duration_ms: None,
        }
    }

    #[test]
    fn ids_are_file_name_safe_and_unique_per_event() {
        let s = session_id("db-7", Some("g-00000000000000ff"), 42, 1700000000123);
        assert_eq!(s, "db-7-g-00000000000000ff-42-1700000000123");
        assert_eq!(
            record_id(&s, SessionEvent::Open),
            "db-7-g-00000000000000ff-42-1700000000123-open"
        );
        let b = session_id("db/7", None, 42, 1);
        assert_eq!(
            record_id(&b, SessionEvent::ForcedEnd),
            "db_7-none-42-1-forced_end"
        );
        assert!(b.starts_with(&session_id_prefix("db/7", None, 42)));
    }

    #[test]
    fn a_record_round_trips_through_its_file() {
        let r = record();
        let json = r.to_json().unwrap();
        assert_eq!(json.last(), Some(&b'\n'));
        assert_eq!(SessionRecord::from_json(&json), Ok(r.clone()));
        assert_eq!(
            r.file_name(),
            "db-7-g-00000000000000ff-42-1700000000123-open.json"
        );
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains(r#""event":"open""#), "{text}");
    }

    #[cfg(feature = "wire")]
    #[test]
    fn the_wire_form_keeps_the_facts_and_empties_what_is_absent() {
        let mut r = record();
        r.key_id = None;
        let w = r.to_wire();
        assert_eq!(
            (w.record_id.as_str(), w.session.as_str(), w.event.as_str()),
            (r.record_id.as_str(), r.session.as_str(), "open")
        );
        assert_eq!(
            (w.grant.as_str(), w.serial, w.pid),
            ("g-00000000000000ff", 255, 42)
        );
        assert_eq!((w.expires, w.key_id.as_str()), (1_700_000_600, ""));
    }

    #[test]
    fn readers_ignore_unknown_fields_and_missing_optional_ones() {
        let text = r#"{"version":1,"record_id":"h-none-1-2-deny","session":"h-none-1-2","event":"deny","time":3,"host":"h","user":"u","pid":1,"start":3,"reason":"untrusted_ca","from_a_newer_module":[1,2]}"#;
        let r = SessionRecord::from_json(text.as_bytes()).unwrap();
        assert_eq!(r.event, SessionEvent::Deny);
        assert_eq!(r.reason.as_deref(), Some("untrusted_ca"));
        assert_eq!((r.grant, r.serial, r.killed), (None, None, None));
        let e = SessionRecord::from_json(br#"{"version":1}"#).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn another_event_gets_its_own_id_and_loses_the_old_reason() {
        let mut r = record();
        r.reason = Some("x".into());
        let w = r.for_event(SessionEvent::Warn, 1_700_000_480);
        assert_eq!(w.record_id, format!("{}-warn", r.session));
        assert_eq!((w.time, w.reason), (1_700_000_480, None));
        assert_eq!(w.session, r.session);
    }
}
