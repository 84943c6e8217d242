//! `breakglass audit show` and `tail`: the log's events, filtered, as text or JSON.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connect::Channel;
use breakglass_proto::audit::event::EventKind;
use breakglass_proto::audit::fields::{Value, event_fields, rfc3339};
use breakglass_proto::audit::{Actor, Event, RequestId};
use breakglass_proto::names::host_matches;
use breakglass_proto::profile::GrantId;
use breakglass_proto::text;
use breakglass_proto::v1::GetEntriesRequest;
use breakglass_proto::v1::audit_client::AuditClient;
use clap::Args;

use crate::connect::Answer as _;
use crate::error::CliError;
use crate::settings::{Overrides, Target};

use super::fetch::{CheckedLog, audit_client, checkpoint_size, fetch_events};
use super::verify::read_dir_events;

/// Which events to print.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only events of this grant (its request, approvals, issuance, sessions, revocation)
    #[arg(long, value_name = "GRANT")]
    pub grant: Option<String>,
    /// Only events of requests and grants of this identity, or caused by it
    #[arg(long, value_name = "IDENTITY")]
    pub requester: Option<String>,
    /// Only sessions on this host and grants/requests whose host scope covers it
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only events at or after TIME (RFC 3339, e.g. 2026-11-29T10:00:00Z, or a duration ago, e.g. 2h)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only refusals: requests and calls refused by policy (request_refused,
    /// action_refused, with the kind of refusal, the rule and the reason) and identities
    /// that reached the hourly refusal limit (refusals_limited)
    #[arg(long)]
    pub refused: bool,
    /// One JSON object per line instead of text: set by the global `--json` /
    /// `--output json`
    #[arg(skip)]
    pub json: bool,
}

/// `breakglass audit show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Read a copy of the log directory instead of the daemon (needs --key; the copy is
    /// verified while it is read)
    #[arg(long, value_name = "DIR", requires = "key")]
    pub dir: Option<PathBuf>,
    /// The log's public key (log.pub), with --dir
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// `breakglass audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// How many of the last matching events to print
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
    /// Keep running and print new events as they are logged; when the daemon cannot be
    /// reached (a restart), say so once, retry, and go on from the last entry printed
    #[arg(long, short = 'f')]
    pub follow: bool,
}
/// Runs `show`: every matching event of the daemon's log, or of a directory (`--dir`).
pub(super) async fn show(s: &ShowArgs, overrides: &Overrides) -> Result<(), CliError> {
    let mut filter = Filter::new(&s.filter)?;
    let events = match (&s.dir, &s.key) {
        (Some(dir), Some(key)) => read_dir_events(dir, key)?,
        _ => {
            let target = overrides.resolve()?;
            let mut client = audit_client(&target)?;
            let size = checkpoint_size(&mut client, &target).await?;
            // `--grant` and `--since` are filtered on the daemon, through its index; not
            // `--since` with `--requester`, which needs the requests created earlier.
            let since = if s.filter.requester.is_none() {
                filter.since_ms
            } else {
                None
            };
            let grant = filter.grant;
            let found = if grant.is_some() || since.is_some() {
                fetch_matching(&mut client, &target, grant, since, size).await?
            } else {
                None
            };
            match found {
                Some(events) => {
                    // The daemon matched the grant against the grant's whole story,
                    // part of which `--since` may leave out here.
                    filter.grant = None;
                    events
                }
                None => fetch_events(&mut client, &target, 0, size).await?,
            }
        }
    };
    for (_, e) in &events {
        filter.observe(e);
    }
    for (i, e) in &events {
        if filter.matches(e) {
            println!("{}", format_event(*i, e, s.filter.json));
        }
    }
    Ok(())
}

/// The entries of `0..size` of grant `grant` and at or after `since_ms`, filtered by the
/// daemon (`GetEntries` with a filter); `None` from a daemon that does not filter (it
/// answers a plain range), so that the caller downloads and filters the log itself.
async fn fetch_matching(
    client: &mut AuditClient<Channel>,
    target: &Target,
    grant: Option<GrantId>,
    since_ms: Option<u64>,
    size: u64,
) -> Result<Option<Vec<(u64, Event)>>, CliError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let r = client
            .get_entries(GetEntriesRequest {
                start: at,
                end: size,
                grant: grant.map(|g| g.to_string()).unwrap_or_default(),
                since_ms: since_ms.unwrap_or(0),
            })
            .await
            .answer(target)?;
        if r.indices.len() != r.entries.len() {
            if r.indices.is_empty() {
                return Ok(None);
            }
            return Err(CliError::Verification(format!(
                "the daemon sent {} entries with {} indices",
                r.entries.len(),
                r.indices.len()
            )));
        }
        if r.next <= at || r.next > size {
            return Err(CliError::Verification(format!(
                "the daemon answered entries from {at} up to {}, outside {at}..{size}",
                r.next
            )));
        }
        for (i, leaf) in r.indices.into_iter().zip(r.entries) {
            if i < at || i >= r.next {
                return Err(CliError::Verification(format!(
                    "the daemon sent entry {i} outside {at}..{}",
                    r.next
                )));
            }
            let e = Event::decode(&leaf)
                .map_err(|e| CliError::Verification(format!("entry {i}: {e}")))?;
            out.push((i, e));
        }
        at = r.next;
    }
    Ok(Some(out))
}

/// Parses `--since`: RFC 3339 or a duration ago.
pub fn parse_since(s: &str, now: SystemTime) -> Result<u64, CliError> {
    let t = humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_duration(s).map(|d| now - d))
        .map_err(|_| {
            CliError::Usage(format!(
                "--since {s:?} is neither a time like 2026-11-29T10:00:00Z nor a duration like 2h"
            ))
        })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// Event filter of `show` and `tail`. Events are [`observe`](Filter::observe)d first so that
/// a request's events can be tied to the grant that answers it.
#[derive(Debug, Default)]
pub struct Filter {
    grant: Option<GrantId>,
    requester: Option<String>,
    host: Option<String>,
    since_ms: Option<u64>,
    refused: bool,
    /// Requester and grant of each request seen.
    requests: HashMap<RequestId, (String, Option<GrantId>)>,
    /// Request and requester of each grant seen.
    grants: HashMap<GrantId, (RequestId, String)>,
}

impl Filter {
    /// Builds the filter from the flags.
    pub fn new(a: &FilterArgs) -> Result<Self, CliError> {
        Ok(Self {
            grant: a
                .grant
                .as_deref()
                .map(|g| {
                    g.parse::<GrantId>()
                        .map_err(|e| CliError::Usage(format!("--grant: {e}")))
                })
                .transpose()?,
            requester: a.requester.clone(),
            host: a.host.clone(),
            since_ms: a
                .since
                .as_deref()
                .map(|s| parse_since(s, SystemTime::now()))
                .transpose()?,
            refused: a.refused,
            ..Self::default()
        })
    }

    /// Learns which requests and grants belong together.
    pub fn observe(&mut self, e: &Event) {
        match &e.kind {
            EventKind::RequestCreated(r) => {
                self.requests
                    .entry(r.request_id)
                    .or_insert_with(|| (r.requester.clone(), None));
            }
            EventKind::GrantIssued(g) => {
                self.grants
                    .insert(g.grant_id, (g.request_id, g.requester.clone()));
                self.requests
                    .entry(g.request_id)
                    .or_insert_with(|| (g.requester.clone(), None))
                    .1 = Some(g.grant_id);
            }
            _ => {}
        }
    }

    fn request_of(e: &Event) -> Option<RequestId> {
        e.kind.request_id()
    }

    /// The identity a refusal event is about.
    fn refused_identity(e: &Event) -> Option<&str> {
        match &e.kind {
            EventKind::RequestRefused(r) => Some(&r.identity),
            EventKind::ActionRefused(a) => Some(&a.identity),
            EventKind::RefusalsLimited(l) => Some(&l.identity),
            _ => None,
        }
    }

    /// True when the event passes every filter given.
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(t) = self.since_ms
            && e.time.0 < t
        {
            return false;
        }
        if self.refused && !e.code().is_refusal() {
            return false;
        }
        let request = Self::request_of(e);
        let refused_grant = match &e.kind {
            EventKind::ActionRefused(a) => a.target.parse::<GrantId>().ok(),
            _ => None,
        };
        let grant = e
            .kind
            .grant_id()
            .or(refused_grant)
            .or_else(|| request.and_then(|r| self.requests.get(&r).and_then(|(_, g)| *g)));
        if let Some(g) = self.grant
            && grant != Some(g)
        {
            return false;
        }
        if let Some(who) = &self.requester {
            let by_request = request
                .and_then(|r| self.requests.get(&r))
                .is_some_and(|(req, _)| req == who);
            let by_grant = grant
                .and_then(|g| self.grants.get(&g))
                .is_some_and(|(_, req)| req == who);
            let by_actor = e.actor == Actor::User(who.clone());
            let refused = Self::refused_identity(e) == Some(who.as_str());
            if !(by_request || by_grant || by_actor || refused) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            let ok = match &e.kind {
                EventKind::RequestCreated(r) => r.hosts.iter().any(|p| host_matches(p, h)),
                EventKind::GrantIssued(g) => g.hosts.iter().any(|p| host_matches(p, h)),
                EventKind::RequestRefused(r) => r.hosts.iter().any(|p| host_matches(p, h)),
                k => k.session().is_some_and(|s| s.host.eq_ignore_ascii_case(h)),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// A JSON string; besides what JSON requires, every hazard ([`text::is_hazard`]: DEL, C1
/// controls, bidi controls, line separators) is written as `\uXXXX`, so the line is safe on
/// a terminal and a JSON reader still gets the exact text.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if text::is_hazard(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value(v: &Value) -> String {
    match v {
        Value::Str(s) => json_string(s),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(l) => format!(
            "[{}]",
            l.iter()
                .map(|s| json_string(s))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Time(t) => json_string(&rfc3339(*t)),
        Value::None => "null".into(),
    }
}

/// One event as a line of text, or as one JSON object.
#[must_use]
pub fn format_event(index: u64, e: &Event, json: bool) -> String {
    let time = format!(
        "{}.{:03}Z",
        &rfc3339(e.time.0 / 1000)[..19],
        e.time.0 % 1000
    );
    let fields = event_fields(e);
    if json {
        let mut parts = vec![
            format!("\"index\":{index}"),
            format!("\"time\":{}", json_string(&time)),
            format!("\"event\":{}", json_string(e.code().name())),
            format!("\"actor\":{}", json_string(&e.actor.to_string())),
        ];
        parts.extend(
            fields
                .iter()
                .map(|(k, v)| format!("{}:{}", json_string(k), json_value(v))),
        );
        format!("{{{}}}", parts.join(","))
    } else {
        let mut line = format!(
            "{time} #{index} {} {}",
            e.code().name(),
            text::escaped(&e.actor.to_string())
        );
        for (k, v) in &fields {
            if matches!(v, Value::None) || matches!(v, Value::List(l) if l.is_empty()) {
                continue;
            }
            let _ = write!(line, " {k}={}", text::kv_value(&v.to_text()));
        }
        line
    }
}

/// Runs `tail`: the last matching events; with `--follow`, new ones as they come. What
/// it prints is checked against the log's signed checkpoints ([`CheckedLog`]).
pub(super) async fn tail(t: TailArgs, target: &Target) -> Result<(), CliError> {
    let mut filter = Filter::new(&t.filter)?;
    let mut client = audit_client(target)?;
    let (mut log, events) = CheckedLog::open(&mut client, target).await?;
    for (_, e) in &events {
        filter.observe(e);
    }
    let matching: Vec<&(u64, Event)> = events.iter().filter(|(_, e)| filter.matches(e)).collect();
    for (i, e) in &matching[matching.len().saturating_sub(t.lines)..] {
        println!("{}", format_event(*i, e, t.filter.json));
    }
    if !t.follow {
        return Ok(());
    }
    // Since when, and why, the daemon cannot be reached; the next retry's delay.
    let mut outage: Option<(std::time::Instant, String)> = None;
    let mut delay = crate::approvals::RECONNECT_FIRST;
    // Runs until interrupted, as `tail -f` does; every wait is bounded.
    loop {
        tokio::time::sleep(if outage.is_some() {
            delay
        } else {
            FOLLOW_EVERY
        })
        .await;
        match log.advance(&mut client, target).await {
            Ok(events) => {
                if let Some((since, _)) = outage.take() {
                    eprintln!(
                        "breakglass: reconnected to breakglass-ca at {} after {}; following the log from entry {}",
                        target.shown(),
                        humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                        events.first().map_or(log.size(), |(i, _)| *i)
                    );
                }
                delay = crate::approvals::RECONNECT_FIRST;
                for (i, e) in events {
                    filter.observe(&e);
                    if filter.matches(&e) {
                        println!("{}", format_event(i, &e, t.filter.json));
                    }
                }
            }
            Err(CliError::Unavailable(why)) => {
                if outage.is_none() {
                    eprintln!(
                        "breakglass: lost the connection to breakglass-ca at {} ({why}); retrying (up to every {}) and following from entry {} once it answers",
                        target.shown(),
                        humantime::format_duration(crate::approvals::RECONNECT_MAX),
                        log.size()
                    );
                    outage = Some((std::time::Instant::now(), why));
                } else {
                    delay = (delay * 2).min(crate::approvals::RECONNECT_MAX);
                }
                // A new connection: the old one may be dead for good.
                client = audit_client(target)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often `tail --follow` asks for new entries.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::Timestamp;
    use breakglass_proto::audit::event::{GrantIssued, RequestCreated};

    fn created(id: u64, who: &str, host: &str) -> Event {
        Event::new(
            Timestamp(1_000),
            Actor::User(who.into()),
            EventKind::RequestCreated(RequestCreated {
                request_id: RequestId(id),
                requester: who.into(),
                public_key: "ssh-ed25519 AAAA".into(),
                principals: vec!["postgres".into()],
                hosts: vec![host.into()],
                ttl_seconds: 600,
                reason: "INC-1 \"db\" down".into(),
                command: None,
                source_addresses: vec![],
                extensions: vec![],
                emergency: false,
                rule: "r".into(),
                tier: "low".into(),
                approvals_required: 0,
                expires_at: Timestamp(1_000),
            }),
        )
    }

    fn issued(id: u64, grant: u64, who: &str, host: &str) -> Event {
        Event::new(
            Timestamp(2_000),
            Actor::User(who.into()),
            EventKind::GrantIssued(Box::new(GrantIssued {
                request_id: RequestId(id),
                grant_id: GrantId(grant),
                serial: grant,
                key_id: "k".into(),
                ca_fingerprint: "SHA256:x".into(),
                key_fingerprint: "SHA256:y".into(),
                principals: vec!["postgres".into()],
                hosts: vec![host.into()],
                command: None,
                source_addresses: vec![],
                extensions: vec![],
                valid_after: 1,
                valid_before: 601,
                requester: who.into(),
                approvers: vec![],
                rule: "r".into(),
                tier: "low".into(),
                emergency: false,
            })),
        )
    }

    fn filter(args: FilterArgs, events: &[Event]) -> Vec<usize> {
        let mut f = Filter::new(&args).unwrap();
        events.iter().for_each(|e| f.observe(e));
        (0..events.len())
            .filter(|&i| f.matches(&events[i]))
            .collect()
    }

    #[test]
    fn filters_tie_requests_to_their_grants() {
        let ev = [
            created(1, "a@x", "db-*"),
            created(2, "b@x", "web-1"),
            issued(2, 20, "b@x", "web-1"),
            issued(1, 10, "a@x", "db-*"),
        ];
        let g = |s: &str| FilterArgs {
            grant: Some(s.into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(g("g-000000000000000a"), &ev), [0, 3]);
        let r = FilterArgs {
            requester: Some("b@x".into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(r, &ev), [1, 2]);
        let h = FilterArgs {
            host: Some("db-7".into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(h, &ev), [0, 3]);
        let t = FilterArgs {
            since: Some("1970-01-01T00:00:01.500Z".into()),
            ..FilterArgs::default()
        };
        assert_eq!(filter(t, &ev), [2, 3]);
    }

    fn refused(who: &str, target: &str) -> Event {
        use breakglass_proto::audit::event::{ActionRefused, RefusalKind};
        Event::new(
            Timestamp(3_000),
            Actor::User(who.into()),
            EventKind::ActionRefused(ActionRefused {
                kind: RefusalKind::NotApprover,
                identity: who.into(),
                action: "approve".into(),
                target: target.into(),
                reason: "m@x may not approve".into(),
            }),
        )
    }

    fn request_refused(who: &str, host: &str) -> Event {
        use breakglass_proto::audit::event::{RefusalKind, RequestRefused};
        Event::new(
            Timestamp(3_000),
            Actor::User(who.into()),
            EventKind::RequestRefused(Box::new(RequestRefused {
                kind: RefusalKind::DenyRule,
                identity: who.into(),
                principals: vec!["root".into()],
                hosts: vec![host.into()],
                command: None,
                ttl_seconds: 60,
                emergency: false,
                drill: false,
                request_reason: "x".into(),
                rule: "no-root".into(),
                tier: String::new(),
                reason: "denied by policy rule `no-root`".into(),
                request_id: None,
            })),
        )
    }

    #[test]
    fn refused_lists_only_refusals_and_combines_with_the_other_filters() {
        use breakglass_proto::audit::event::RefusalsLimited;
        let limited = Event::new(
            Timestamp(4_000),
            Actor::Daemon,
            EventKind::RefusalsLimited(RefusalsLimited {
                identity: "m@x".into(),
                window_start: Timestamp(0),
                window_end: Timestamp(3_600_000),
                limit: 1,
            }),
        );
        let ev = [
            created(1, "a@x", "db-7"),
            issued(1, 10, "a@x", "db-7"),
            refused("m@x", "r-0000000000000001"),
            request_refused("n@x", "db-7"),
            limited,
        ];
        let refused_only = |a: FilterArgs| filter(FilterArgs { refused: true, ..a }, &ev);
        assert_eq!(refused_only(FilterArgs::default()), [2, 3, 4]);
        let who = |w: &str| FilterArgs {
            requester: Some(w.into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(who("m@x")), [2, 4]);
        assert_eq!(refused_only(who("n@x")), [3]);
        // A refused approval of a@x's request is among the events of that request.
        assert_eq!(refused_only(who("a@x")), [2]);
        let g = FilterArgs {
            grant: Some("g-000000000000000a".into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(g), [2]);
        let h = FilterArgs {
            host: Some("db-7".into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(h), [3]);
        let t = FilterArgs {
            since: Some("1970-01-01T00:00:03.500Z".into()),
            ..FilterArgs::default()
        };
        assert_eq!(refused_only(t), [4]);
        let line = format_event(3, &ev[3], false);
        assert!(
            line.contains("request_refused user:n@x refusal=deny_rule identity=n@x"),
            "{line}"
        );
        assert!(line.contains("rule=no-root"), "{line}");
        assert!(!line.contains("tier="), "{line}");
    }

    #[test]
    fn events_print_as_text_and_json() {
        let e = created(1, "a@x", "db-7");
        let text = format_event(4, &e, false);
        assert!(
            text.starts_with("1970-01-01T00:00:01.000Z #4 request_created user:a@x request=r-0000000000000001 requester=a@x"),
            "{text}"
        );
        assert!(text.contains(r#"reason="INC-1 \"db\" down""#), "{text}");
        assert!(!text.contains("command="), "{text}");
        let json = format_event(4, &e, true);
        assert!(json.starts_with("{\"index\":4,\"time\":\"1970-01-01T00:00:01.000Z\",\"event\":\"request_created\",\"actor\":\"user:a@x\""), "{json}");
        assert!(json.contains(r#""hosts":["db-7"]"#), "{json}");
        assert!(json.contains(r#""command":null"#), "{json}");
        assert!(json.contains(r#""reason":"INC-1 \"db\" down""#), "{json}");
    }
}
