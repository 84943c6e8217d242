//! Session records: what is kept between open and close, and what goes to the spool.
//!
//! Each spool file holds one JSON object (a [`SessionRecord`]) named
//! `<record_id>.json`. The record id is `<session>-<event>`, and the session id
//! `<host>-<grant>-<sshd pid>-<session start in ms>` is unique per host and shared by
//! every record of one session, so a shipper can deliver each record exactly once,
//! delete it afterwards, and the receiver can join a session's records.
#![forbid(unsafe_code)]

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files;

/// Version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The module opened a session.
    Open,
    /// The module denied a session.
    Deny,
    /// The guard warned the session's terminal of the coming expiry.
    Warn,
    /// The session closed (close_session ran).
    Close,
    /// The guard ended the session (certificate expired or session denied).
    ForcedEnd,
}

impl Event {
    /// The name used in record ids and syslog (`event=session_<name>`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Event::Open => "open",
            Event::Deny => "deny",
            Event::Warn => "warn",
            Event::Close => "close",
            Event::ForcedEnd => "forced_end",
        }
    }
}

/// One spool record. Fields that do not apply to an event are `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// Unique id; also the file name without `.json`.
    pub record_id: String,
    /// Id shared by every record of the session: `<host>-<grant>-<pid>-<start ms>`.
    pub session: String,
    /// What happened.
    pub event: Event,
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
}

impl SessionRecord {
    /// Copy of this record for another event at `time`, with a fresh record id.
    #[must_use]
    pub fn for_event(&self, event: Event, time: u64) -> Self {
        let mut r = self.clone();
        r.event = event;
        r.time = time;
        r.reason = None;
        r.detail = None;
        r.duration = None;
        r.killed = None;
        r.record_id = record_id(&r.session, event);
        r
    }

    /// Writes this record durably into `spool` (created with mode 0700 if missing).
    pub fn write_to(&self, spool: &Path) -> Result<(), String> {
        files::ensure_private_dir(spool, "spool directory")?;
        let mut json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        json.push(b'\n');
        files::write_durable(spool, &format!("{}.json", self.record_id), &json)
    }
}

/// Builds a session id; characters outside `[A-Za-z0-9._-]` become `_`.
#[must_use]
pub fn session_id(host: &str, grant: Option<&str>, pid: u32, start_ms: u64) -> String {
    format!("{host}-{}-{pid}-{start_ms}", grant.unwrap_or("none"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The id of the `event` record of `session`.
#[must_use]
pub fn record_id(session: &str, event: Event) -> String {
    format!("{session}-{}", event.name())
}

/// What the module keeps with `pam_set_data` from open to close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    /// The open record (ids and facts of the session).
    pub record: SessionRecord,
    /// Spool directory to write the close record to.
    pub spool: std::path::PathBuf,
    /// Syslog socket.
    pub syslog: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_file_name_safe_and_unique_per_event() {
        let s = session_id("db-7", Some("g-00000000000000ff"), 42, 1700000000123);
        assert_eq!(s, "db-7-g-00000000000000ff-42-1700000000123");
        assert_eq!(
            record_id(&s, Event::Open),
            "db-7-g-00000000000000ff-42-1700000000123-open"
        );
        let b = session_id("db/7", None, 42, 1);
        assert_eq!(record_id(&b, Event::ForcedEnd), "db_7-none-42-1-forced_end");
    }
}
