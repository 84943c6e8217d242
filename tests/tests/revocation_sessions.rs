//! Revocation end to end, with real sshd (`RevokedKeys` on the synced KRL), the PAM
//! module and its session guards, `breakglass host watch-revocations` and
//! `breakglass host sync-krl`, and certificates issued by an in-process daemon:
//! - revoking a grant ends its open session within 5 seconds; syslog, the spool and the
//!   audit log say "revoked" and who revoked it; the next login with the same
//!   certificate is refused by sshd because of the synced KRL;
//! - revoking all grants of a requester ends all their sessions on two hosts, and
//!   nobody else's.

use std::time::{Duration, Instant};

use breakglass_cli::host::krl_sync;
use breakglass_cli::host::ship::ShipArgs;
use breakglass_cli::revoke;
use breakglass_proto::audit::event::EndReason;
use breakglass_proto::audit::{Actor, EventKind};
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::host::{Krl, TestHost, session_end};
use breakglass_tests::revocation::{self, ADMIN, Grant, SRE2, audit_events, issue, revoke_request};
use breakglass_tests::sshd::{SshSession, TestUser, require_root};

/// Waits (off the runtime) for ssh to exit; returns its exit code.
async fn ended_within(s: SshSession, timeout: Duration) -> (Option<i32>, SshSession) {
    let (end, s) = session_end(s, timeout).await;
    (end.map(|(st, _)| st.code().unwrap_or(-1)), s)
}

/// A test host whose sshd and module read the synced KRL, its watcher running.
async fn host(d: &TestDaemon, name: &str) -> TestHost {
    let mut h = TestHost::start(d, name, Krl::Synced).await;
    h.start_watcher();
    h
}

/// Opens a session of `user` with `g` on `h`, registered by its guard.
async fn open(h: &TestHost, user: &str, g: &Grant) -> SshSession {
    h.open(user, g, &[]).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_grant_session_ends_within_seconds_and_the_next_login_is_refused_by_sshd() {
    if !require_root("a real sshd, PAM and a test user") {
        return;
    }
    let d = revocation::daemon().await;
    let h = host(&d, "db-7").await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    let session = open(&h, &user.name, &g).await;

    let admin = d.new_client("admin", ADMIN);
    let r = revoke::revoke(
        &admin,
        revoke_request(
            Selector::GrantId(g.grant_id.clone()),
            "INC-66 credentials exposed",
        ),
    )
    .await
    .unwrap();
    let revoked_at = Instant::now();
    assert_eq!(r.revoked.len(), 1);
    let (code, session) = ended_within(session, Duration::from_secs(5)).await;
    assert_eq!(
        code,
        Some(255),
        "session still running {:?} after the revocation: {}\n{}",
        revoked_at.elapsed(),
        session.output(),
        h.sshd.log()
    );
    assert!(revoked_at.elapsed() < Duration::from_secs(5));

    // Syslog: the guard's forced end says revoked, by whom and why.
    let line = h.sshd.syslog.expect(
        &[
            "event=session_forced_end",
            "reason=revoked",
            &format!("revoked_by=user:{ADMIN}"),
            &g.grant_id,
        ],
        Duration::from_secs(5),
    );
    assert!(line.contains("INC-66"), "{line}");
    assert!(
        h.sshd
            .wait_spool(&g.grant_id, "forced_end", Duration::from_secs(5))
    );

    // Audit log: the revocation with who revoked it, and (after the host ships its
    // spool) the forced end of the session with reason revoked.
    breakglass_cli::host::ship::ship(
        &h.target,
        &ShipArgs {
            spool: h.sshd.dir.path().join("spool"),
            once: true,
            retry_for: Duration::from_secs(5),
            lock_wait: Duration::from_secs(5),
            witness: h.witness.clone(),
        },
    )
    .await
    .expect("host ship");
    let events = audit_events(&d);
    assert!(
        events.iter().any(|(_, e)| matches!(&e.kind,
            EventKind::GrantRevoked(r) if r.serial == g.serial && r.reason.contains("INC-66"))
            && e.actor == Actor::User(ADMIN.into())),
        "no GrantRevoked by {ADMIN}"
    );
    let ended = events
        .iter()
        .find_map(|(_, e)| match &e.kind {
            EventKind::SessionEnded(s) if s.session.grant_id.to_string() == g.grant_id => Some(s),
            _ => None,
        })
        .expect("SessionEnded in the audit log");
    assert_eq!(ended.reason, EndReason::Revoked);
    assert!(ended.detail.contains(ADMIN), "{}", ended.detail);

    // The next login with the same certificate: sshd refuses it from the synced KRL.
    assert!(matches!(
        h.sync_krl().await,
        krl_sync::Synced::Installed { serials: 1, .. }
    ));
    let mut cmd = h.sshd.ssh(&user.name, &g.key, &[]);
    cmd.arg("true");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        h.sshd.log().contains("revoked by file"),
        "sshd did not refuse it by the KRL: {}",
        h.sshd.log()
    );
    drop(session);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_requester_ends_all_their_sessions_on_two_hosts_and_no_one_elses() {
    if !require_root("two real sshds, PAM and a test user") {
        return;
    }
    let d = revocation::daemon().await;
    let db7 = host(&d, "db-7").await;
    let db8 = host(&d, "db-8").await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");
    let sre2 = d.new_client("sre2", SRE2);
    let on7 = issue(&sre, keys.path(), "a", &user.name, "db-7", 600).await;
    let on8 = issue(&sre, keys.path(), "b", &user.name, "db-8", 600).await;
    let other = issue(&sre2, keys.path(), "c", &user.name, "db-7", 600).await;
    let s7 = open(&db7, &user.name, &on7).await;
    let s8 = open(&db8, &user.name, &on8).await;
    let so = open(&db7, &user.name, &other).await;

    let admin = d.new_client("admin", ADMIN);
    let r = revoke::revoke(
        &admin,
        revoke_request(
            Selector::Requester("sre@example.com".into()),
            "INC-67 account compromised",
        ),
    )
    .await
    .unwrap();
    let t = Instant::now();
    assert_eq!(r.revoked.len(), 2);
    let (c7, s7) = ended_within(s7, Duration::from_secs(5)).await;
    let (c8, s8) = ended_within(s8, Duration::from_secs(5)).await;
    assert_eq!(c7, Some(255), "db-7 session: {}", s7.output());
    assert_eq!(c8, Some(255), "db-8 session: {}", s8.output());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    for h in [&db7, &db8] {
        h.sshd.syslog.expect(
            &["event=session_forced_end", "reason=revoked"],
            Duration::from_secs(5),
        );
    }
    // The other requester's session on db-7 is untouched.
    let (co, so) = ended_within(so, Duration::from_secs(2)).await;
    assert_eq!(co, None, "{}'s session ended too: {}", SRE2, so.output());
    assert!(!so.output().contains("closed"));
    drop((s7, s8, so));
    db7.stop().await;
    db8.stop().await;
}
