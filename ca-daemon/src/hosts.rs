//! Host session records into the audit log, each exactly once (the `breakglass.v1.HostAgent`
//! service; its face is [`crate::api::hosts`]).
//!
//! # Who is a host
//! A caller on the mTLS listener whose identity (the certificate's URI SAN) is
//! `host://<name>` and which the configuration lists with the group [`HOST_GROUP`]. Its host
//! name is `<name>` (a valid host name, no wildcards). Anything else — an unknown identity,
//! a person, the admin socket — is refused before the handler runs (by the access layer,
//! [`crate::access`], which calls [`host_name`]).
//!
//! # What a host may report
//! Only records whose `host` is its own name, whose session id starts with that name (the
//! session id format of `pam_breakglass`: `<host>-<grant or none>-<pid>-<start ms>`) and
//! whose record id is `<session>-<event>`. Since host names cannot contain the separator
//! patterns of another host's ids, record ids are unique across hosts.
//!
//! # Exactly once
//! Record ids already in the log are in [`State::host_records`](crate::state::State). One
//! lock per host serializes the check-then-append of its records, so two deliveries of the
//! same record (a retry racing its original) cannot both pass the check. The new records
//! of one call are appended as one unit (one fdatasync for the call, not one per record;
//! calls of different hosts share the log's group commit). A record is acknowledged only
//! after its event is durable.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use breakglass_proto::audit::event::{
    EndReason, SessionClosed, SessionEnded, SessionOpened, SessionRef, SessionWarned,
};
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp};
use breakglass_proto::names;
use breakglass_proto::profile::GrantId;
use breakglass_proto::recording::RecordingDigest;
use breakglass_proto::spool;
use breakglass_proto::text;
use breakglass_proto::v1::host_record_result::Status as RecordStatus;
use breakglass_proto::v1::{HostRecord, HostRecordResult};

use crate::error::Error;
use crate::policy::Caller;
use crate::service::Service;

/// Group a host identity must have.
pub const HOST_GROUP: &str = "hosts";
/// Prefix of a host identity (URI SAN of its client certificate).
pub const HOST_URI_PREFIX: &str = "host://";
/// Most records per call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Grant id recorded for sessions that presented no breakglass certificate (denials).
pub const NO_GRANT: GrantId = GrantId(0);

/// The host name of a caller, if it is a configured host.
pub fn host_name(caller: &Caller) -> Result<String, Error> {
    let refuse = |why: String| {
        Err(Error::NotAHost {
            identity: caller.identity.clone(),
            why,
        })
    };
    if caller.transport != "mtls" {
        return refuse("hosts connect over mTLS with their host certificate".into());
    }
    let Some(name) = caller.identity.strip_prefix(HOST_URI_PREFIX) else {
        return refuse(format!(
            "a host identity is the URI SAN {HOST_URI_PREFIX}<host name>"
        ));
    };
    if !caller.groups.iter().any(|g| g == HOST_GROUP) {
        return refuse(format!(
            "unknown host: enroll it with a join token (breakglass-ca token create --host NAME, \
             then breakglass host enroll) or list it in the daemon's identities with groups = \
             [\"{HOST_GROUP}\"]"
        ));
    }
    if let Err(e) = names::check_host_pattern(name) {
        return refuse(e);
    }
    if name.contains(['*', '?']) {
        return refuse("a host name cannot be a pattern".into());
    }
    Ok(name.to_owned())
}

/// The rules of a record's text fields ([`text`]); the error names the field.
fn check_strings(r: &HostRecord) -> Result<(), String> {
    let field = |name: &str, e: String| format!("{name}: {e}");
    text::check_user_name(&r.user).map_err(|e| field("user", e))?;
    if !r.rhost.is_empty() {
        text::check_remote_host(&r.rhost).map_err(|e| field("rhost", e))?;
    }
    if !r.reason.is_empty() {
        text::check_code(&r.reason).map_err(|e| field("reason", e))?;
    }
    text::check_free_text(&r.detail, text::MAX_DETAIL_BYTES).map_err(|e| field("detail", e))?;
    text::check_free_text(&r.key_id, text::MAX_TEXT_BYTES).map_err(|e| field("key_id", e))?;
    Ok(())
}

/// The recording a record carries (`recording_sha256` set), if any.
fn recording(r: &HostRecord) -> Result<Option<RecordingDigest>, String> {
    let sha = Some(r.recording_sha256.as_str()).filter(|s| !s.is_empty());
    if sha.is_none() && (r.recording_bytes != 0 || r.recording_duration_ms != 0) {
        return Err("recording_bytes or recording_duration_ms set without recording_sha256".into());
    }
    RecordingDigest::from_fields(sha, Some(r.recording_bytes), Some(r.recording_duration_ms))
        .map_err(|e| format!("recording_sha256: {e}"))
}

/// Checks a record from `host` and turns it into its audit event.
pub fn to_event(host: &str, r: &HostRecord) -> Result<Event, String> {
    if r.host != host {
        return Err(format!(
            "record is for host {:?} but you are host {host:?}: a host may only report its own sessions",
            r.host
        ));
    }
    if r.record_id.is_empty() || r.record_id.len() > 512 {
        return Err("record_id must be 1 to 512 bytes".into());
    }
    if r.record_id != format!("{}-{}", r.session, r.event) {
        return Err(format!(
            "record_id {:?} is not <session>-<event> ({:?}-{:?})",
            r.record_id, r.session, r.event
        ));
    }
    let grant_id = if r.grant.is_empty() {
        NO_GRANT
    } else {
        r.grant
            .parse::<GrantId>()
            .map_err(|e| format!("grant: {e}"))?
    };
    let grant = Some(r.grant.as_str()).filter(|g| !g.is_empty());
    let prefix = spool::session_id_prefix(host, grant, r.pid);
    match r.session.strip_prefix(&prefix) {
        Some(ms) if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => {
            return Err(format!(
                "session {:?} is not {prefix}<start ms> (host, grant and pid of the record)",
                r.session
            ));
        }
    }
    check_strings(r)?;
    let session = SessionRef {
        record_id: r.record_id.clone(),
        host: host.to_owned(),
        grant_id,
        serial: r.serial,
        principal: r.user.clone(),
        session_id: r.session.clone(),
    };
    let recording = recording(r)?;
    if recording.is_some() && !matches!(r.event.as_str(), "close" | "deny" | "forced_end") {
        return Err(format!(
            "a {:?} record cannot carry a recording: only close, deny and forced_end do",
            r.event
        ));
    }
    let detail = match (r.reason.is_empty(), r.detail.is_empty()) {
        (true, _) => r.detail.clone(),
        (false, true) => r.reason.clone(),
        (false, false) => format!("{}: {}", r.reason, r.detail),
    };
    let kind = match r.event.as_str() {
        "open" => EventKind::SessionOpened(SessionOpened {
            session,
            remote_addr: r.rhost.clone(),
        }),
        "warn" => EventKind::SessionWarned(SessionWarned {
            session,
            ends_at: r.expires,
        }),
        "close" => EventKind::SessionClosed(SessionClosed { session, recording }),
        "deny" => EventKind::SessionEnded(SessionEnded {
            session,
            reason: EndReason::Denied,
            detail,
            recording,
        }),
        "forced_end" => EventKind::SessionEnded(SessionEnded {
            session,
            reason: match r.reason.as_str() {
                "expired" => EndReason::Expired,
                "revoked" => EndReason::Revoked,
                "denied" => EndReason::Denied,
                other => {
                    return Err(format!(
                        "forced_end reason {other:?} is not expired, revoked or denied"
                    ));
                }
            },
            detail,
            recording,
        }),
        other => {
            return Err(format!(
                "event {other:?} is not open, deny, warn, close or forced_end"
            ));
        }
    };
    let event = Event::new(
        Timestamp(r.time.saturating_mul(1000)),
        Actor::Host(format!("{HOST_URI_PREFIX}{host}")),
        kind,
    );
    // Refuse what the log could not encode now, rather than failing the whole call later.
    event.encode().map_err(|e| e.to_string())?;
    Ok(event)
}

/// Serializes check-then-append of host records per host (see the module docs): record
/// ids are unique across hosts, so only deliveries from one host can race each other.
/// Process-wide, so that every listener serving the API shares it; a host's entry is
/// dropped once no call of it is under way.
static APPEND: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The append lock of `host` (see [`APPEND`]).
fn host_lock(host: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(locks.entry(host.to_owned()).or_default())
}

/// Drops `host`'s entry of [`APPEND`] when `lock` (taken from it) is its last user.
fn release_host_lock(host: &str, lock: Arc<tokio::sync::Mutex<()>>) {
    let mut locks = APPEND.lock().unwrap_or_else(|p| p.into_inner());
    // Clones are made under this mutex only: the entry and `lock` are all there are.
    if Arc::strong_count(&lock) == 2 {
        locks.remove(host);
    }
}

/// Host records into a service's log.
#[derive(Debug, Clone)]
pub struct HostRecords {
    service: Arc<Service>,
}

impl HostRecords {
    /// Delivers host records into `service`'s log.
    #[must_use]
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }

    /// Appends the records of one call from `host`, in order: the new ones as one unit
    /// (one write, one fdatasync, one checkpoint, shared with whatever else the log
    /// commits at the same time), each once. A failure of the log fails the whole call:
    /// nothing of it was appended, and the host delivers it again.
    pub async fn append(
        &self,
        host: &str,
        records: &[HostRecord],
    ) -> Result<Vec<HostRecordResult>, Error> {
        if records.len() > MAX_RECORDS_PER_CALL {
            return Err(Error::TooManyRecords {
                given: records.len(),
                max: MAX_RECORDS_PER_CALL,
            });
        }
        let lock = host_lock(host);
        let appended = {
            let _serial = lock.lock().await;
            self.append_serialized(host, records).await
        };
        release_host_lock(host, lock);
        let results = appended?;
        for result in &results {
            self.service.metrics().host_record(match result.status() {
                RecordStatus::Appended => "appended",
                RecordStatus::Duplicate => "duplicate",
                _ => "rejected",
            });
        }
        Ok(results)
    }

    /// [`append`](Self::append) under `host`'s lock.
    async fn append_serialized(
        &self,
        host: &str,
        records: &[HostRecord],
    ) -> Result<Vec<HostRecordResult>, Error> {
        let mut results = Vec::with_capacity(records.len());
        // The new records' events, and where their results are.
        let mut events = Vec::new();
        let mut at = Vec::new();
        // Record ids of this call already taken (a record sent twice in one call).
        let mut taken = HashSet::new();
        for r in records {
            let mut result = HostRecordResult {
                record_id: r.record_id.clone(),
                ..HostRecordResult::default()
            };
            match to_event(host, r) {
                Err(why) => {
                    tracing::warn!(host, record = %text::escaped(&r.record_id), reason = %why, "host record rejected");
                    result.set_status(RecordStatus::Rejected);
                    result.error = why;
                }
                Ok(event) => {
                    let grant = event.kind.grant_id().unwrap_or(NO_GRANT);
                    let seen = self.service.host_record_seen(&r.record_id, event.time);
                    let known = grant != NO_GRANT && self.service.grant_known(grant);
                    result.grant_known = known;
                    if seen || !taken.insert(r.record_id.as_str()) {
                        result.set_status(RecordStatus::Duplicate);
                    } else {
                        result.set_status(RecordStatus::Appended);
                        at.push(results.len());
                        events.push(event);
                    }
                }
            }
            results.push(result);
        }
        if events.is_empty() {
            return Ok(results);
        }
        let first = self.service.record_all(&events).await?;
        for ((index, &i), event) in (first..).zip(&at).zip(&events) {
            let result = &mut results[i];
            result.index = index;
            let grant = event.kind.grant_id().unwrap_or(NO_GRANT);
            if !result.grant_known && grant != NO_GRANT {
                tracing::warn!(
                    host,
                    grant = %grant,
                    record = %result.record_id,
                    "host reported a session of a grant this CA never issued"
                );
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str) -> HostRecord {
        let session = "db-7-g-00000000000000ff-42-1700000000123".to_owned();
        HostRecord {
            record_id: format!("{session}-{event}"),
            session,
            event: event.into(),
            time: 1_700_000_000,
            host: "db-7".into(),
            user: "postgres".into(),
            grant: "g-00000000000000ff".into(),
            serial: 7,
            rhost: "10.0.0.1".into(),
            pid: 42,
            start: 1_700_000_000,
            expires: 1_700_000_900,
            reason: if event == "forced_end" {
                "expired".into()
            } else {
                String::new()
            },
            ..HostRecord::default()
        }
    }

    fn caller(id: &str, groups: &[&str], transport: &'static str) -> Caller {
        Caller {
            identity: id.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            owner: None,
            transport,
            uid: None,
            ssh_key_login: false,
        }
    }

    #[test]
    fn every_spool_event_maps_to_its_audit_event() {
        let cases = [
            ("open", "session_opened"),
            ("warn", "session_warned"),
            ("close", "session_closed"),
            ("deny", "session_ended"),
            ("forced_end", "session_ended"),
        ];
        for (ev, code) in cases {
            let e = to_event("db-7", &record(ev)).unwrap();
            assert_eq!(e.code().name(), code);
            assert_eq!(e.actor, Actor::Host("host://db-7".into()));
            assert_eq!(e.time, Timestamp(1_700_000_000_000));
            assert_eq!(e.kind.session().unwrap().record_id, record(ev).record_id);
        }
        let e = to_event("db-7", &record("forced_end")).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::Expired,
                ..
            })
        ));
    }

    #[test]
    fn a_close_or_end_record_carries_its_recording_into_the_event() {
        let sha = format!("sha256:{}", "ab".repeat(32));
        for ev in ["close", "forced_end", "deny"] {
            let mut r = record(ev);
            r.recording_sha256 = sha.clone();
            r.recording_bytes = 1234;
            r.recording_duration_ms = 5678;
            let want = Some(RecordingDigest {
                sha256: [0xab; 32],
                bytes: 1234,
                duration_ms: 5678,
            });
            let got = match to_event("db-7", &r).unwrap().kind {
                EventKind::SessionClosed(c) => c.recording,
                EventKind::SessionEnded(e) => e.recording,
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "{ev}");
        }
        let mut r = record("close");
        r.recording_sha256 = "sha256:AB".into();
        let e = to_event("db-7", &r).unwrap_err();
        assert!(e.starts_with("recording_sha256: "), "{e}");
        let mut r = record("open");
        r.recording_sha256 = sha;
        let e = to_event("db-7", &r).unwrap_err();
        assert!(e.contains("cannot carry a recording"), "{e}");
        let mut r = record("close");
        r.recording_bytes = 1;
        let e = to_event("db-7", &r).unwrap_err();
        assert!(e.contains("without recording_sha256"), "{e}");
    }

    #[test]
    fn given_another_hosts_record_then_rejected() {
        let e = to_event("web-1", &record("open")).unwrap_err();
        assert!(e.contains("only report its own sessions"), "{e}");
        // Host "db" cannot claim ids of host "db-7": the session must start with its name,
        // grant and pid.
        let mut r = record("open");
        r.host = "db".into();
        let e = to_event("db", &r).unwrap_err();
        assert!(e.contains("is not db-g-00000000000000ff-42-"), "{e}");
    }

    #[test]
    fn malformed_records_are_rejected_with_the_reason() {
        let mut r = record("open");
        r.record_id.push('x');
        assert!(to_event("db-7", &r).unwrap_err().contains("record_id"));
        let mut r = record("open");
        r.grant = "g-1".into();
        assert!(to_event("db-7", &r).unwrap_err().contains("grant"));
        let mut r = record("reopen");
        r.record_id = format!("{}-reopen", r.session);
        assert!(to_event("db-7", &r).unwrap_err().contains("not open, deny"));
        let mut r = record("forced_end");
        r.reason = "bored".into();
        assert!(to_event("db-7", &r).unwrap_err().contains("bored"));
        let mut r = record("deny");
        r.grant = String::new();
        r.session = "db-7-none-42-5".into();
        r.record_id = "db-7-none-42-5-deny".into();
        let e = to_event("db-7", &r).unwrap();
        assert_eq!(e.kind.grant_id(), Some(NO_GRANT));
    }

    #[test]
    fn hazards_in_text_fields_are_rejected_naming_the_field() {
        type Set = fn(&mut HostRecord, &str);
        let fields: [(&str, Set); 5] = [
            ("user", |r, v| r.user = format!("postgres{v}")),
            ("rhost", |r, v| r.rhost = format!("10.0.0.1{v}")),
            ("reason", |r, v| r.reason = format!("expired{v}")),
            ("detail", |r, v| r.detail = v.to_owned()),
            ("key_id", |r, v| r.key_id = v.to_owned()),
        ];
        for (name, set) in fields {
            for v in text::NASTY_SAMPLES {
                let mut r = record("deny");
                set(&mut r, v);
                let e = to_event("db-7", &r).unwrap_err();
                assert!(e.starts_with(&format!("{name}: ")), "{name} {v:?}: {e}");
                assert!(!e.chars().any(text::is_hazard), "{e:?}");
            }
        }
        // Ordinary values of the same fields pass.
        let mut r = record("deny");
        r.user = "john@corp.example".into();
        r.rhost = "fe80::1%eth0".into();
        r.reason = "host_scope".into();
        r.detail = "grant g-… is scoped to hosts \"db-*\"; this host is \"web-1\" — «ok»".into();
        to_event("db-7", &r).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_new_records_of_one_call_are_one_commit_each_appended_once() {
        let dir = tempfile::tempdir().unwrap();
        let setup = crate::init::init_dev(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let config = crate::config::Config::load(&setup.config).unwrap();
        let daemon = crate::server::Daemon::build(config).unwrap();
        let service = daemon.service().clone();
        let hosts = HostRecords::new(service.clone());
        let at = |event: &str| {
            let mut r = record(event);
            let session = "localhost-g-00000000000000ff-42-1700000000123".to_owned();
            r.record_id = format!("{session}-{event}");
            r.session = session;
            r.host = "localhost".into();
            r
        };
        let (open, warn, close) = (at("open"), at("warn"), at("close"));
        let mut bad = at("deny");
        bad.user = "a\nb".into();
        // Each new record sent twice in the call, one rejected among them.
        let call = [
            open.clone(),
            warn.clone(),
            open.clone(),
            bad,
            close.clone(),
            warn.clone(),
            close.clone(),
        ];
        let (size, batches) = (service.audit.size(), service.audit.batches());
        let results = hosts.append("localhost", &call).await.unwrap();
        let status: Vec<RecordStatus> = results.iter().map(HostRecordResult::status).collect();
        use RecordStatus::{Appended, Duplicate, Rejected};
        assert_eq!(
            status,
            [
                Appended, Appended, Duplicate, Rejected, Appended, Duplicate, Duplicate
            ]
        );
        // One commit, three events at contiguous indices, in the call's order.
        assert_eq!(service.audit.batches(), batches + 1);
        assert_eq!(service.audit.size(), size + 3);
        let indices: Vec<u64> = [0, 1, 4].iter().map(|&i| results[i].index).collect();
        assert_eq!(indices, [size, size + 1, size + 2]);
        let logged: Vec<String> = service
            .audit
            .events(size, size + 3)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.kind.session().unwrap().record_id.clone())
            .collect();
        assert_eq!(
            logged,
            [
                open.record_id.as_str(),
                warn.record_id.as_str(),
                close.record_id.as_str()
            ]
        );
        // Delivered again (a lost answer): all duplicates, nothing written.
        let again = hosts
            .append("localhost", &[close, open, warn])
            .await
            .unwrap();
        assert!(again.iter().all(|r| r.status() == Duplicate), "{again:?}");
        assert_eq!(service.audit.batches(), batches + 1);
        assert_eq!(service.audit.size(), size + 3);
        service.audit.shutdown().await;
    }

    #[test]
    fn only_configured_host_identities_are_hosts() {
        assert_eq!(
            host_name(&caller("host://db-7", &["hosts"], "mtls")).unwrap(),
            "db-7"
        );
        for c in [
            caller("host://db-7", &[], "mtls"),
            caller("sre@example.com", &["hosts"], "mtls"),
            caller("host://db-*", &["hosts"], "mtls"),
            caller("host://db-7", &["hosts"], "unix"),
        ] {
            assert!(host_name(&c).is_err(), "{c:?}");
        }
    }
}
