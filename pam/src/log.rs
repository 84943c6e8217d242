//! What the module and the guard say in syslog about a session: the fields of a session
//! record, shared so that `session_open`, `session_close`, `session_warn` and
//! `session_forced_end` lines describe a session the same way.
#![forbid(unsafe_code)]

use crate::verify::fmt_time;
use breakglass_proto::spool::SessionRecord;

/// Fields describing a record, for syslog.
pub fn record_fields(r: &SessionRecord) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    let mut opt = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            f.push((k, v));
        }
    };
    opt("grant", r.grant.clone());
    opt("serial", r.serial.map(|s| s.to_string()));
    opt("key_id", r.key_id.clone());
    opt("requester", r.requester.clone());
    opt("tier", r.tier.clone());
    f.push(("user", r.user.clone()));
    f.push(("host", r.host.clone()));
    f.push(("rhost", r.rhost.clone().unwrap_or_default()));
    f.push(("tty", r.tty.clone().unwrap_or_default()));
    f.push(("pid", r.pid.to_string()));
    if let Some(e) = r.expires {
        f.push(("expires", fmt_time(e)));
    }
    if let Some(d) = r.duration {
        f.push(("duration", d.to_string()));
    }
    f.push(("record", r.record_id.clone()));
    if let Some(sha) = &r.recording_sha256 {
        f.push(("recording_sha256", sha.clone()));
        f.push((
            "recording_bytes",
            r.recording_bytes.unwrap_or_default().to_string(),
        ));
        f.push(("detail", r.detail.clone().unwrap_or_default()));
    }
    f
}

/// Owned field values as the `(&str, &str)` pairs [`bg_syslog::Syslog::send`] takes.
#[must_use]
pub fn borrowed<'a>(fields: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
