//! Revocation end to end, with real sshd (`RevokedKeys` on the synced KRL), the PAM
//! module and its session guards, `breakglass host watch-revocations` and
//! `breakglass host sync-krl`, and certificates issued by an in-process daemon:
//! - revoking a grant ends its open session within 5 seconds; syslog, the spool and the
//!   audit log say "revoked" and who revoked it; the next login with the same
//!   certificate is refused by sshd because of the synced KRL;
//! - revoking all grants of a requester ends all their sessions on two hosts, and
//!   nobody else's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use breakglass_cli::host::krl_sync::{self, SyncKrlArgs};
use breakglass_cli::host::ship::ShipArgs;
use breakglass_cli::host::watch::{self, WatchArgs};
use breakglass_cli::host::witness::WitnessArgs;
use breakglass_cli::revoke;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::event::EndReason;
use breakglass_proto::audit::{Actor, EventKind};
use breakglass_proto::sessions::REGISTRATION_SUFFIX;
use breakglass_proto::v1::RevokeRequest;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::{self, ADMIN, Grant, SRE2, audit_events, issue};
use breakglass_tests::sshd::{SshSession, Sshd, SshdOptions, TestUser, require_root};
use tokio::sync::oneshot;

/// One test host: sshd with the module (`krl=` on the file sshd's `RevokedKeys` reads,
/// `sessions=` for live revocation), its KRL synced, and a revocation watcher.
struct Host {
    sshd: Sshd,
    sessions: tempfile::TempDir,
    stop_watcher: Option<oneshot::Sender<()>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    target: Target,
    witness: WitnessArgs,
}

impl Host {
    async fn start(d: &TestDaemon, name: &str, ca_lines: Vec<String>) -> Self {
        let host_name = name.to_owned();
        let sshd = tokio::task::spawn_blocking(move || {
            Sshd::start(&SshdOptions {
                sshd_trusts: ca_lines.clone(),
                module_trusts: ca_lines,
                host: Some(host_name),
                ..Default::default()
            })
        })
        .await
        .unwrap();
        let sessions = tempfile::tempdir().unwrap();
        let target = d.new_client(
            &name.replace('-', ""),
            if name == "db-7" {
                "host://db-7"
            } else {
                "host://db-8"
            },
        );
        let h = Self {
            sshd,
            sessions,
            stop_watcher: None,
            watcher: None,
            target,
            witness: d.witness_args(&name.replace('-', ""), None),
        };
        h.sync_krl().await;
        h.sshd.set_module_options(&format!(
            "krl={} sessions={}",
            h.krl().display(),
            h.sessions_dir().display()
        ));
        h
    }

    fn krl(&self) -> PathBuf {
        self.sshd.dir.path().join("revoked.krl")
    }

    fn sessions_dir(&self) -> PathBuf {
        self.sessions.path().join("sessions")
    }

    async fn sync_krl(&self) -> krl_sync::Synced {
        krl_sync::sync(
            &self.target,
            &SyncKrlArgs {
                out: self.krl(),
                ca_keys: Some(self.sshd.dir.path().join("sshd_trusted_cas.pub")),
                state: None,
                witness: self.witness.clone(),
            },
        )
        .await
        .expect("sync-krl")
    }

    fn start_watcher(&mut self) {
        let (tx, rx) = oneshot::channel::<()>();
        let target = self.target.clone();
        let args = WatchArgs {
            sessions: self.sessions_dir(),
            ca_keys: Some(self.sshd.dir.path().join("sshd_trusted_cas.pub")),
            poll: Duration::from_secs(2),
            krl: None,
            krl_state: None,
            witness: self.witness.clone(),
        };
        self.stop_watcher = Some(tx);
        self.watcher = Some(tokio::spawn(async move {
            watch::watch(&target, &args, async move {
                let _ = rx.await;
            })
            .await
            .expect("watcher runs");
        }));
    }

    /// Opens a session running `sleep` and waits until its guard has registered it.
    async fn open(&self, user: &str, g: &Grant) -> SshSession {
        let mut cmd = self.sshd.ssh(user, &g.key, &[]);
        cmd.arg("echo started; sleep 120");
        let s = SshSession::spawn(cmd);
        let dir = self.sessions_dir();
        let grant = g.grant_id.clone();
        let log = self.sshd.log();
        let s = tokio::task::spawn_blocking(move || {
            assert!(
                s.wait_output("started", Duration::from_secs(15)),
                "session did not start: {}\n{log}",
                s.output()
            );
            s
        })
        .await
        .unwrap();
        wait_until(Duration::from_secs(5), || registered(&dir, &grant))
            .await
            .unwrap_or_else(|| panic!("guard of {grant} did not register in {}", self_dir(&dir)));
        s
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop_watcher.take() {
            let _ = tx.send(());
        }
        if let Some(w) = self.watcher.take() {
            let _ = w.await;
        }
    }
}

fn self_dir(d: &Path) -> String {
    d.display().to_string()
}

fn registered(dir: &Path, grant: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.contains(grant) && n.ends_with(REGISTRATION_SUFFIX)
            })
        })
        .unwrap_or(false)
}

async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (off the runtime) for ssh to exit; returns its exit code.
async fn ended_within(s: SshSession, timeout: Duration) -> (Option<i32>, SshSession) {
    tokio::task::spawn_blocking(move || {
        let mut s = s;
        let code = s.wait_exit(timeout).map(|(st, _)| st.code().unwrap_or(-1));
        (code, s)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_grant_session_ends_within_seconds_and_the_next_login_is_refused_by_sshd() {
    if !require_root("a real sshd, PAM and a test user") {
        return;
    }
    let d = revocation::daemon().await;
    let ca_lines = breakglass_cli::commands::ca_keys(&d.target("host"))
        .await
        .unwrap();
    let mut h = Host::start(&d, "db-7", ca_lines).await;
    h.start_watcher();
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    let session = h.open(&user.name, &g).await;

    let admin = d.new_client("admin", ADMIN);
    let r = revoke::revoke(
        &admin,
        RevokeRequest {
            target: Some(Selector::GrantId(g.grant_id.clone())),
            reason: "INC-66 credentials exposed".into(),
        },
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
    let line = h
        .sshd
        .syslog
        .wait_for(
            &[
                "event=session_forced_end",
                "reason=revoked",
                &format!("revoked_by=user:{ADMIN}"),
                &g.grant_id,
            ],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no revoked line in syslog: {:#?}", h.sshd.syslog.lines()));
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
    let ca_lines = breakglass_cli::commands::ca_keys(&d.target("host"))
        .await
        .unwrap();
    let mut db7 = Host::start(&d, "db-7", ca_lines.clone()).await;
    let mut db8 = Host::start(&d, "db-8", ca_lines).await;
    db7.start_watcher();
    db8.start_watcher();
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");
    let sre2 = d.new_client("sre2", SRE2);
    let on7 = issue(&sre, keys.path(), "a", &user.name, "db-7", 600).await;
    let on8 = issue(&sre, keys.path(), "b", &user.name, "db-8", 600).await;
    let other = issue(&sre2, keys.path(), "c", &user.name, "db-7", 600).await;
    let s7 = db7.open(&user.name, &on7).await;
    let s8 = db8.open(&user.name, &on8).await;
    let so = db7.open(&user.name, &other).await;

    let admin = d.new_client("admin", ADMIN);
    let r = revoke::revoke(
        &admin,
        RevokeRequest {
            target: Some(Selector::Requester("sre@example.com".into())),
            reason: "INC-67 account compromised".into(),
        },
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
        assert!(
            h.sshd
                .syslog
                .wait_for(
                    &["event=session_forced_end", "reason=revoked"],
                    Duration::from_secs(5)
                )
                .is_some(),
            "{:#?}",
            h.sshd.syslog.lines()
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
