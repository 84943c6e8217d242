//! Events as named fields: the one description of an event shared by the daemon's syslog
//! lines (`key=value`) and the CLI's `audit show` (text and JSON), so both say the same.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::event::{EndReason, Event, EventKind, ReviewVerdict, SessionRef};
use crate::recording::RecordingDigest;

/// One field value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Text.
    Str(String),
    /// A number.
    Int(u64),
    /// A flag.
    Bool(bool),
    /// A list of texts.
    List(Vec<String>),
    /// Unix seconds (shown as RFC 3339 UTC).
    Time(u64),
    /// Absent (an optional field that is not set).
    None,
}

impl Value {
    /// The value as one `key=value` token value: lists joined by commas, times as RFC 3339,
    /// absent as `-`.
    #[must_use]
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::List(l) => l.join(","),
            Value::Time(t) => rfc3339(*t),
            Value::None => "-".to_owned(),
        }
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
#[must_use]
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

fn opt(v: Option<&str>) -> Value {
    v.map_or(Value::None, s)
}

fn session(r: &SessionRef, out: &mut Vec<(&'static str, Value)>) {
    out.push(("grant", s(&r.grant_id.to_string())));
    out.push(("serial", Value::Int(r.serial)));
    out.push(("host", s(&r.host)));
    out.push(("user", s(&r.principal)));
    out.push(("session", s(&r.session_id)));
    out.push(("record", s(&r.record_id)));
}

/// A session's recording, when it has one: hash, size and duration (absent fields are left
/// out, so the lines of sessions without recordings do not change).
fn recording(d: Option<&RecordingDigest>, out: &mut Vec<(&'static str, Value)>) {
    if let Some(d) = d {
        out.push(("recording_sha256", s(&d.sha256_text())));
        out.push(("recording_bytes", Value::Int(d.bytes)));
        out.push(("recording_duration_ms", Value::Int(d.duration_ms)));
    }
}

/// The fields of an event after its name, time and actor, in a stable order.
///
/// The public key of a request is left out (it is long and its fingerprint is in the grant).
#[must_use]
pub fn event_fields(event: &Event) -> Vec<(&'static str, Value)> {
    let mut f = Vec::new();
    match &event.kind {
        EventKind::RequestCreated(e) => {
            f.push(("request", s(&e.request_id.to_string())));
            f.push(("requester", s(&e.requester)));
            f.push(("principals", Value::List(e.principals.clone())));
            f.push(("hosts", Value::List(e.hosts.clone())));
            f.push(("ttl_s", Value::Int(e.ttl_seconds)));
            f.push(("reason", s(&e.reason)));
            f.push(("command", opt(e.command.as_deref())));
            f.push(("source_addresses", Value::List(e.source_addresses.clone())));
            f.push(("extensions", Value::List(e.extensions.clone())));
            f.push(("emergency", Value::Bool(e.emergency)));
            f.push(("rule", s(&e.rule)));
            f.push(("tier", s(&e.tier)));
            f.push((
                "approvals_required",
                Value::Int(u64::from(e.approvals_required)),
            ));
            f.push(("expires_at", Value::Time(e.expires_at.unix_seconds())));
        }
        EventKind::ApprovalAdded(e) => {
            f.push(("request", s(&e.request_id.to_string())));
            f.push(("comment", s(&e.comment)));
        }
        EventKind::RequestDenied(e) => {
            f.push(("request", s(&e.request_id.to_string())));
            f.push(("reason", s(&e.reason)));
        }
        EventKind::RequestExpired(e) => f.push(("request", s(&e.request_id.to_string()))),
        EventKind::RequestCancelled(e) => {
            f.push(("request", s(&e.request_id.to_string())));
            f.push(("reason", s(&e.reason)));
        }
        EventKind::GrantIssued(e) => {
            f.push(("request", s(&e.request_id.to_string())));
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push(("serial", Value::Int(e.serial)));
            f.push(("key_id", s(&e.key_id)));
            f.push(("requester", s(&e.requester)));
            f.push(("principals", Value::List(e.principals.clone())));
            f.push(("hosts", Value::List(e.hosts.clone())));
            f.push(("command", opt(e.command.as_deref())));
            f.push(("source_addresses", Value::List(e.source_addresses.clone())));
            f.push(("extensions", Value::List(e.extensions.clone())));
            f.push(("valid_after", Value::Time(e.valid_after)));
            f.push(("valid_before", Value::Time(e.valid_before)));
            f.push(("approvers", Value::List(e.approvers.clone())));
            f.push(("rule", s(&e.rule)));
            f.push(("tier", s(&e.tier)));
            f.push(("emergency", Value::Bool(e.emergency)));
            f.push(("ca", s(&e.ca_fingerprint)));
            f.push(("key", s(&e.key_fingerprint)));
        }
        EventKind::GrantRevoked(e) => {
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push(("serial", Value::Int(e.serial)));
            f.push(("reason", s(&e.reason)));
            if let Some(k) = &e.revoked_key {
                f.push(("revoked_key", s(k)));
            }
        }
        EventKind::GrantReviewed(e) => {
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push((
                "verdict",
                s(match e.verdict {
                    ReviewVerdict::Accepted => "accepted",
                    ReviewVerdict::Rejected => "rejected",
                }),
            ));
            f.push(("comment", s(&e.comment)));
        }
        EventKind::SessionOpened(e) => {
            session(&e.session, &mut f);
            f.push(("remote_addr", s(&e.remote_addr)));
        }
        EventKind::SessionWarned(e) => {
            session(&e.session, &mut f);
            f.push(("ends_at", Value::Time(e.ends_at)));
        }
        EventKind::SessionClosed(e) => {
            session(&e.session, &mut f);
            recording(e.recording.as_ref(), &mut f);
        }
        EventKind::SessionEnded(e) => {
            session(&e.session, &mut f);
            f.push((
                "end_reason",
                s(match e.reason {
                    EndReason::Expired => "expired",
                    EndReason::Revoked => "revoked",
                    EndReason::Denied => "denied",
                }),
            ));
            f.push(("detail", s(&e.detail)));
            recording(e.recording.as_ref(), &mut f);
        }
        EventKind::KrlPublished(e) => {
            f.push((
                "sha256",
                Value::Str(e.sha256.iter().map(|b| format!("{b:02x}")).collect()),
            ));
            f.push(("version", Value::Int(e.version)));
            f.push(("revoked_serials", Value::Int(e.revoked_serials)));
        }
        EventKind::CaKeyAdded(e) => {
            f.push(("fingerprint", s(&e.fingerprint)));
            f.push(("signing", Value::Bool(e.signing)));
        }
        EventKind::Heartbeat(_) => {}
        EventKind::DrillReported(e) => {
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push(("drill", s(if e.passed { "passed" } else { "failed" })));
            f.push(("failed_step", s(&e.failed_step)));
            f.push(("detail", s(&e.detail)));
            f.push(("request_to_shell_ms", Value::Int(e.request_to_shell_ms)));
            f.push(("logout_to_audit_ms", Value::Int(e.logout_to_audit_ms)));
        }
        EventKind::RequestRefused(e) => {
            f.push(("refusal", s(e.kind.name())));
            f.push(("identity", s(&e.identity)));
            f.push(("principals", Value::List(e.principals.clone())));
            f.push(("hosts", Value::List(e.hosts.clone())));
            f.push(("command", opt(e.command.as_deref())));
            f.push(("ttl_s", Value::Int(e.ttl_seconds)));
            f.push(("emergency", Value::Bool(e.emergency)));
            f.push(("drill", Value::Bool(e.drill)));
            // No rule (none concerns the caller) is absent, not an empty name.
            f.push(("rule", opt(Some(e.rule.as_str()).filter(|r| !r.is_empty()))));
            f.push(("tier", opt(Some(e.tier.as_str()).filter(|t| !t.is_empty()))));
            f.push(("reason", s(&e.reason)));
            f.push(("request_reason", s(&e.request_reason)));
            f.push((
                "request",
                e.request_id.map_or(Value::None, |r| s(&r.to_string())),
            ));
        }
        EventKind::ActionRefused(e) => {
            f.push(("refusal", s(e.kind.name())));
            f.push(("identity", s(&e.identity)));
            f.push(("action", s(&e.action)));
            f.push(("target", s(&e.target)));
            f.push(("reason", s(&e.reason)));
        }
        EventKind::RefusalsLimited(e) => {
            f.push(("identity", s(&e.identity)));
            f.push(("window_start", Value::Time(e.window_start.unix_seconds())));
            f.push(("window_end", Value::Time(e.window_end.unix_seconds())));
            f.push(("limit", Value::Int(u64::from(e.limit))));
        }
        EventKind::LogConsistencyFailed(e) => {
            // The signed note itself is in the event (the evidence); its size and root say it.
            f.push(("host", s(&e.host)));
            f.push((
                "finding",
                s(if e.size > e.log_size {
                    "rolled_back"
                } else {
                    "forked"
                }),
            ));
            f.push(("host_size", Value::Int(e.size)));
            f.push(("host_root", s(&B64.encode(e.root))));
            f.push(("log_size", Value::Int(e.log_size)));
            f.push(("log_root", s(&B64.encode(e.log_root))));
        }
        EventKind::LogForkAcknowledged(e) => {
            f.push(("reason", s(&e.reason)));
            f.push(("reports", Value::Int(e.reports)));
        }
        EventKind::ConfigReloaded(e) => {
            f.push(("path", s(&e.path)));
            f.push((
                "sha256",
                Value::Str(e.sha256.iter().map(|b| format!("{b:02x}")).collect()),
            ));
            f.push(("rules", Value::Int(e.rules)));
            f.push(("identities", Value::Int(e.identities)));
        }
        EventKind::RecordingStored(e) => {
            f.push(("host", s(&e.host)));
            f.push(("session", s(&e.session_id)));
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push(("sha256", Value::Str(hex(&e.sha256))));
            f.push(("bytes", Value::Int(e.bytes)));
        }
        EventKind::RecordingRefused(e) => {
            f.push(("host", s(&e.host)));
            f.push(("session", s(&e.session_id)));
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push(("reason", s(&e.reason)));
        }
        EventKind::RecordingDeleted(e) => {
            f.push(("host", s(&e.host)));
            f.push(("session", s(&e.session_id)));
            f.push(("grant", s(&e.grant_id.to_string())));
            f.push(("sha256", Value::Str(hex(&e.sha256))));
            f.push(("reason", s(&e.reason)));
        }
        EventKind::JoinTokenCreated(e) => {
            f.push(("token_sha256", Value::Str(hex(&e.token_sha256))));
            f.push(("host", s(&e.host)));
            f.push(("expires_at", Value::Int(e.expires_at.unix_seconds())));
        }
        EventKind::ClientCertificateIssued(e) => {
            f.push(("identity", s(&e.identity)));
            f.push(("groups", s(&e.groups.join(","))));
            f.push(("serial", s(&e.serial)));
            f.push(("public_key_sha256", Value::Str(hex(&e.public_key_sha256))));
            f.push(("not_after", Value::Int(e.not_after.unix_seconds())));
            f.push(("method", s(&e.method)));
            if let Some(t) = &e.join_token_sha256 {
                f.push(("token_sha256", Value::Str(hex(t))));
            }
        }
        EventKind::IdentityDisabled(e) => {
            f.push(("identity", s(&e.identity)));
            f.push(("reason", s(&e.reason)));
        }
        EventKind::SshKeyAdded(e) => {
            f.push(("identity", s(&e.identity)));
            f.push(("public_key", s(&e.public_key)));
        }
        EventKind::SshKeyRemoved(e) => {
            f.push(("identity", s(&e.identity)));
            f.push(("public_key", s(&e.public_key)));
        }
    }
    f
}

/// Lowercase hex of a hash.
fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Actor, SessionClosed, Timestamp};
    use crate::profile::GrantId;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn session_events_name_grant_host_and_record() {
        let e = Event::new(
            Timestamp(5_000),
            Actor::Host("host://db-7".into()),
            EventKind::SessionClosed(SessionClosed {
                session: SessionRef {
                    record_id: "db-7-g-00000000000000ff-42-1-close".into(),
                    host: "db-7".into(),
                    grant_id: GrantId(255),
                    serial: 9,
                    principal: "postgres".into(),
                    session_id: "db-7-g-00000000000000ff-42-1".into(),
                },
                recording: None,
            }),
        );
        let text: Vec<String> = event_fields(&e)
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_text()))
            .collect();
        assert_eq!(
            text,
            [
                "grant=g-00000000000000ff",
                "serial=9",
                "host=db-7",
                "user=postgres",
                "session=db-7-g-00000000000000ff-42-1",
                "record=db-7-g-00000000000000ff-42-1-close"
            ]
        );
    }
}
