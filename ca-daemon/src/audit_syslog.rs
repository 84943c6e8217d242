//! Syslog from the daemon: one authpriv `key=value` line per durable audit event.
//!
//! A follower task reads the log behind its writer (what syslog shows is exactly what the
//! log holds, in log order, and only once it is durable; the batches just committed come
//! from the writer's memory, [`AuditLog::follow`]) and hands each line to the
//! non-blocking [`bg_syslog`] sender: a slow or missing syslog socket never delays an
//! append or a caller; lines are dropped and counted instead.
//!
//! ```text
//! <86>Nov 29 13:40:01 breakglass-ca[812]: event=grant_issued index=41 actor=user:sre@example.com grant=g-… serial=…
//! ```

use std::path::Path;
use std::time::Duration;

use bg_syslog::{Severity, Syslog};
use breakglass_proto::audit::fields::event_fields;
use breakglass_proto::audit::{Event, EventCode, EventKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::AuditLog;

/// Syslog ident of the daemon.
pub const IDENT: &str = "breakglass-ca";
/// How often the follower looks for new events.
const POLL: Duration = Duration::from_millis(50);
/// Most events read per step.
const STEP: u64 = 1000;
/// Lines the sender's queue holds: a few steps, so that a step handed over at once is not
/// dropped while the sender thread writes the previous one (the follower reads the batches
/// just committed from memory, faster than the sender writes datagrams).
const QUEUE_LINES: usize = 4 * STEP as usize;

/// The `key=value` fields of the syslog line of event `index`.
#[must_use]
pub fn line_fields(index: u64, event: &Event) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("event", event.code().name().to_owned()),
        ("index", index.to_string()),
        ("actor", event.actor.to_string()),
    ];
    f.extend(
        event_fields(event)
            .into_iter()
            .map(|(k, v)| (k, v.to_text())),
    );
    f
}

fn severity(event: &Event) -> Severity {
    match &event.kind {
        // A failed drill means break-glass access to a host may not work: not routine.
        EventKind::DrillReported(d) if !d.passed => Severity::Warning,
        // An identity refused so often that its refusals are no longer recorded one by one.
        EventKind::RefusalsLimited(_) => Severity::Warning,
        // The log was rolled back or forked: issuance is stopped until acknowledged.
        EventKind::LogConsistencyFailed(_) => Severity::Critical,
        EventKind::LogForkAcknowledged(_) => Severity::Warning,
        _ if event.code() == EventCode::Heartbeat => Severity::Info,
        _ => Severity::Notice,
    }
}

/// Starts the follower: every event appended from now on is written to the syslog socket
/// at `socket` (with a database, every event this daemon appended). It stops (after writing what is durable, with a short flush) when `stop`
/// turns true.
pub fn spawn(log: AuditLog, socket: &Path, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let options = bg_syslog::Options {
        capacity: QUEUE_LINES,
        ..bg_syslog::Options::default()
    };
    let syslog = std::sync::Arc::new(Syslog::with_options(IDENT, socket, options));
    let mut next = log.size();
    tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(POLL) => false,
                r = stop.wait_for(|s| *s) => { let _ = r; true }
            };
            while log.size() > next {
                let end = log.size().min(next + STEP);
                let (reader, sink) = (log.clone(), syslog.clone());
                let from = next;
                // Off the async workers: a step's lines are formatted in one go.
                let sent = tokio::task::spawn_blocking(move || {
                    // With a database, each daemon writes the events it appended: a
                    // collector of every daemon's syslog gets each event once.
                    let own = reader.appended_here(from, end);
                    reader.follow(from, end, |index, event| {
                        if own
                            .as_ref()
                            .is_some_and(|own| !own.iter().any(|r| r.contains(&index)))
                        {
                            return;
                        }
                        let fields = line_fields(index, event);
                        let refs: Vec<(&str, &str)> =
                            fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        sink.send(severity(event), &refs);
                    })
                })
                .await;
                match sent {
                    Ok(Ok(n)) if n > 0 => next = from + n,
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, from, "syslog follower cannot read the audit log");
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "syslog follower read task failed");
                        break;
                    }
                }
            }
            if stopping {
                let s = syslog;
                let _ = tokio::task::spawn_blocking(move || s.flush(Duration::from_secs(1))).await;
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::audit::event::GrantRevoked;
    use breakglass_proto::audit::{Actor, EventKind, Timestamp};
    use breakglass_proto::profile::GrantId;

    #[test]
    fn a_failed_drill_is_a_warning_with_its_step() {
        let drill = |passed: bool| {
            Event::new(
                Timestamp(1),
                Actor::User("sre@example.com".into()),
                EventKind::DrillReported(breakglass_proto::audit::event::DrillReported {
                    grant_id: GrantId(2),
                    passed,
                    failed_step: if passed { "" } else { "session-open" }.into(),
                    detail: String::new(),
                    request_to_shell_ms: 412,
                    logout_to_audit_ms: 0,
                }),
            )
        };
        assert!(matches!(severity(&drill(false)), Severity::Warning));
        assert!(matches!(severity(&drill(true)), Severity::Notice));
        let f = line_fields(9, &drill(false));
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            bg_syslog::format_fields(&refs),
            "event=drill_reported index=9 actor=user:sre@example.com grant=g-0000000000000002 \
             drill=failed failed_step=session-open detail=\"\" request_to_shell_ms=412 logout_to_audit_ms=0"
        );
    }

    #[test]
    fn text_from_old_logs_reaches_syslog_escaped() {
        for nasty in breakglass_proto::text::NASTY_SAMPLES {
            let e = Event::new(
                Timestamp(1),
                Actor::User(format!("sre{nasty}")),
                EventKind::GrantRevoked(GrantRevoked {
                    grant_id: GrantId(1),
                    serial: 5,
                    reason: nasty.into(),
                    revoked_key: None,
                }),
            );
            let f = line_fields(3, &e);
            let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let line = bg_syslog::format_fields(&refs);
            assert!(
                !line.chars().any(breakglass_proto::text::is_hazard),
                "{line:?}"
            );
            assert!(
                line.ends_with(&format!("reason={}", breakglass_proto::text::quote(nasty))),
                "{line}"
            );
        }
    }

    #[test]
    fn a_refusal_line_names_its_kind_rule_and_reason() {
        use breakglass_proto::audit::event::{RefusalKind, RefusalsLimited, RequestRefused};
        let e = Event::new(
            Timestamp(1),
            Actor::User("m@x".into()),
            EventKind::RequestRefused(Box::new(RequestRefused {
                kind: RefusalKind::DenyRule,
                identity: "m@x".into(),
                principals: vec!["root".into()],
                hosts: vec!["localhost".into()],
                command: None,
                ttl_seconds: 600,
                emergency: false,
                drill: false,
                request_reason: "INC-1".into(),
                rule: "no-root".into(),
                tier: String::new(),
                reason: "denied by policy rule `no-root` for root@localhost".into(),
                request_id: None,
            })),
        );
        assert!(matches!(severity(&e), Severity::Notice));
        let f = line_fields(4, &e);
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            bg_syslog::format_fields(&refs),
            "event=request_refused index=4 actor=user:m@x refusal=deny_rule identity=m@x \
             principals=root hosts=localhost command=- ttl_s=600 emergency=false drill=false \
             rule=no-root tier=- reason=\"denied by policy rule `no-root` for root@localhost\" \
             request_reason=INC-1 request=-"
        );
        let limited = Event::new(
            Timestamp(1),
            Actor::Daemon,
            EventKind::RefusalsLimited(RefusalsLimited {
                identity: "m@x".into(),
                window_start: Timestamp(3_600_000),
                window_end: Timestamp(7_200_000),
                limit: 60,
            }),
        );
        assert!(matches!(severity(&limited), Severity::Warning));
    }

    #[test]
    fn a_line_names_event_index_actor_then_fields() {
        let e = Event::new(
            Timestamp(1),
            Actor::User("sre@example.com".into()),
            EventKind::GrantRevoked(GrantRevoked {
                grant_id: GrantId(1),
                serial: 5,
                reason: "done early".into(),
                revoked_key: None,
            }),
        );
        let f = line_fields(3, &e);
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            bg_syslog::format_fields(&refs),
            "event=grant_revoked index=3 actor=user:sre@example.com grant=g-0000000000000001 \
             serial=5 reason=\"done early\""
        );
    }
}
