//! Reading a test daemon's audit log over its Audit API, and counting what is in it.

use breakglass_proto::audit::{Event, EventKind};
use breakglass_proto::v1::GetCheckpointRequest;
use breakglass_proto::v1::audit_client::AuditClient;

use crate::daemon::TestDaemon;

/// Every event in `d`'s audit log, read as the sample auditor over mTLS.
pub async fn all_events(d: &TestDaemon) -> Vec<Event> {
    let t = d.target("auditor");
    let mut a = AuditClient::new(breakglass_cli::connect::channel(&t).unwrap());
    let size = a
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .size;
    breakglass_cli::audit::fetch_leaves(&mut a, &t, 0, size)
        .await
        .unwrap()
        .iter()
        .map(|l| Event::decode(l).unwrap())
        .collect()
}

/// (opened, closed) session events of `grant` (on `host`, when given).
pub fn session_counts(events: &[Event], grant: &str, host: Option<&str>) -> (usize, usize) {
    let of_grant = |e: &&Event| {
        e.kind
            .session()
            .is_some_and(|s| s.grant_id.to_string() == grant && host.is_none_or(|h| s.host == h))
    };
    let opened = events
        .iter()
        .filter(of_grant)
        .filter(|e| matches!(e.kind, EventKind::SessionOpened(_)))
        .count();
    let closed = events
        .iter()
        .filter(of_grant)
        .filter(|e| matches!(e.kind, EventKind::SessionClosed(_)))
        .count();
    (opened, closed)
}
