//! Reading a test daemon's audit log, over its Audit API or offline from its files
//! (verified with its public key), and counting what is in it.

use std::path::{Path, PathBuf};

use breakglass_cli::settings::Target;
use breakglass_proto::audit::note::NoteVerifier;
use breakglass_proto::audit::verify_dir;
use breakglass_proto::audit::{Event, EventKind};
use breakglass_proto::v1::GetCheckpointRequest;
use breakglass_proto::v1::audit_client::AuditClient;

use crate::daemon::TestDaemon;

/// The size of the log `t` reads, from its latest checkpoint.
pub async fn log_size(t: &Target) -> u64 {
    AuditClient::new(breakglass_cli::connect::channel(t).unwrap())
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("the latest checkpoint")
        .into_inner()
        .size
}

/// The log's public key in `d`'s dev directory.
pub fn log_key(d: &TestDaemon) -> PathBuf {
    ["log.pub", "audit/log.pub"]
        .iter()
        .map(|p| d.path().join(p))
        .find(|p| p.exists())
        .expect("log.pub in the dev directory")
}

/// `d`'s audit log, read and verified offline with its public key: every event with its
/// index.
pub fn verified_events(d: &TestDaemon) -> Vec<(u64, Event)> {
    breakglass_cli::audit::read_dir_events(&d.path().join("audit"), &log_key(d))
        .expect("audit log verifies")
}

/// Verifies the log in `dir` offline with `d`'s public key alone; returns its size.
pub fn verified_size(d: &TestDaemon, dir: &Path) -> u64 {
    let key = std::fs::read_to_string(log_key(d)).expect("read log.pub");
    let verifier = NoteVerifier::parse(key.trim()).expect("log.pub parses");
    verify_dir(dir, &verifier, None)
        .expect("the audit log verifies")
        .summary
        .size
}

/// Every event in `d`'s audit log, read as the sample auditor over mTLS.
pub async fn all_events(d: &TestDaemon) -> Vec<Event> {
    let t = d.target("auditor");
    let size = log_size(&t).await;
    let mut a = AuditClient::new(breakglass_cli::connect::channel(&t).unwrap());
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
