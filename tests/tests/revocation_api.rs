//! Revocation over real sockets: who may revoke what, by every selector; one audit
//! event per revoked grant; the signed KRL (checked with `ssh-keygen -Q` and
//! `ssh-keygen -Y verify`) with increasing versions that survive a restart; expired
//! grants dropping out; the revocation stream resuming from a version; and
//! `sync-krl` installing the daemon's KRL and refusing a replayed older one.

use std::time::{Duration, Instant};

use breakglass_cli::error::CliError;
use breakglass_cli::host::krl_sync;
use breakglass_cli::revoke;
use breakglass_proto::audit::{Actor, EventKind};
use breakglass_proto::krl::{Krl, SIGNATURE_NAMESPACE};
use breakglass_proto::v1::WatchRevocationsRequest;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_tests::revocation::{
    self, ADMIN, SRE2, audit_events, issue, revoke_request, ssh_keygen_revoked,
};

fn code(e: CliError) -> i32 {
    e.exit_code()
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_by_every_selector_with_permissions_audit_events_and_a_signed_krl() {
    let d = revocation::daemon().await;
    let sre = d.target("sre");
    let sre2 = d.new_client("sre2", SRE2);
    let admin = d.new_client("admin", ADMIN);
    let keys = tempfile::tempdir().unwrap();
    let g1 = issue(&sre, keys.path(), "k1", "alice", "db-7", 600).await;
    let g2 = issue(&sre, keys.path(), "k2", "alice", "db-7", 600).await;
    let g3 = issue(&sre, keys.path(), "k3", "alice", "db-7", 600).await;
    let g4 = issue(&sre2, keys.path(), "k4", "bob", "db-7", 600).await;
    let keep = issue(&sre, keys.path(), "k5", "alice", "db-7", 600).await;

    // Another requester may not revoke sre's grant; nothing is recorded.
    let e = revoke::revoke(
        &sre2,
        revoke_request(Selector::GrantId(g1.grant_id.clone()), "not mine"),
    )
    .await
    .unwrap_err();
    assert_eq!(code(e), 77);
    // A reason is required; unknown grants and serials are named.
    let e = revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(g1.grant_id.clone()), "  "),
    )
    .await
    .unwrap_err();
    assert_eq!(code(e), 65);
    let e = revoke::revoke(&admin, revoke_request(Selector::Serial(12345), "x"))
        .await
        .unwrap_err();
    assert_eq!(code(e), 66, "unknown serial");
    let e = revoke::revoke(
        &admin,
        revoke_request(Selector::GrantId("g-nonsense".into()), "x"),
    )
    .await
    .unwrap_err();
    assert_eq!(code(e), 65, "malformed grant id");

    // The requester revokes their own grant by id.
    let r = revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(g1.grant_id.clone()), "INC-1 done early"),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked.len(), 1);
    assert_eq!(r.revoked[0].serial, g1.serial);
    let v1 = r.krl_version;
    assert!(v1 >= 1);
    // Again: already revoked, nothing new.
    let r = revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(g1.grant_id.clone()), "again"),
    )
    .await
    .unwrap();
    assert!(r.revoked.is_empty());
    assert_eq!(r.already_revoked, vec![g1.grant_id.clone()]);
    // An admin revokes by serial, by public key, and all of a requester's grants.
    let r = revoke::revoke(
        &admin,
        revoke_request(Selector::Serial(g2.serial), "INC-2 key leaked"),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked[0].grant_id, g2.grant_id);
    assert!(r.krl_version > v1);
    let r = revoke::revoke(
        &admin,
        revoke_request(
            Selector::PublicKey(std::fs::read_to_string(&g3.public).unwrap()),
            "INC-3 laptop lost",
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked.len(), 1);
    assert_eq!(r.revoked[0].grant_id, g3.grant_id);
    let r = revoke::revoke(
        &admin,
        revoke_request(Selector::Requester(SRE2.into()), "INC-4 offboarding"),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked.len(), 1);
    assert_eq!(r.revoked[0].grant_id, g4.grant_id);
    let last_version = r.krl_version;

    // One GrantRevoked per revoked grant, with who revoked it and why.
    let events = audit_events(&d);
    let revoked: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::GrantRevoked(r) => Some((r.serial, e.actor.clone(), r.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        revoked,
        vec![
            (
                g1.serial,
                Actor::User("sre@example.com".into()),
                "INC-1 done early".into()
            ),
            (
                g2.serial,
                Actor::User(ADMIN.into()),
                "INC-2 key leaked".into()
            ),
            (
                g3.serial,
                Actor::User(ADMIN.into()),
                "INC-3 laptop lost".into()
            ),
            (
                g4.serial,
                Actor::User(ADMIN.into()),
                "INC-4 offboarding".into()
            ),
        ]
    );
    let published: Vec<u64> = events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::KrlPublished(k) => Some(k.version),
            _ => None,
        })
        .collect();
    assert!(published.windows(2).all(|w| w[0] < w[1]), "{published:?}");
    assert_eq!(published.last(), Some(&last_version));

    // The KRL as hosts get it: sshd's own tool agrees on every certificate.
    let fetched = krl_sync::fetch(&d.target("host")).await.unwrap();
    assert_eq!(fetched.version, last_version);
    assert_eq!(fetched.namespace, SIGNATURE_NAMESPACE);
    assert_eq!(fetched.revoked_serials, 4);
    let krl_file = keys.path().join("ca.krl");
    std::fs::write(&krl_file, &fetched.krl).unwrap();
    for g in [&g1, &g2, &g3, &g4] {
        assert!(
            ssh_keygen_revoked(&krl_file, g.key.cert_path.as_ref().unwrap()),
            "{} should be revoked",
            g.grant_id
        );
    }
    assert!(!ssh_keygen_revoked(
        &krl_file,
        keep.key.cert_path.as_ref().unwrap()
    ));
    // The signature is a standard SSHSIG by the CA: ssh-keygen -Y verify accepts it.
    let ca_lines = breakglass_cli::commands::ca_keys(&d.target("host"))
        .await
        .unwrap();
    let signers = keys.path().join("allowed_signers");
    std::fs::write(
        &signers,
        format!(
            "breakglass-ca namespaces=\"{SIGNATURE_NAMESPACE}\" {}\n",
            ca_lines[0]
        ),
    )
    .unwrap();
    let sig = keys.path().join("ca.krl.sig");
    std::fs::write(&sig, &fetched.signature).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ssh-keygen -Y verify -f {} -I breakglass-ca -n {SIGNATURE_NAMESPACE} -s {} < {}",
            signers.display(),
            sig.display(),
            krl_file.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -Y verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Fetching again without changes publishes nothing new.
    let again = krl_sync::fetch(&d.target("host")).await.unwrap();
    assert_eq!(again.version, last_version);
    assert_eq!(again.krl, fetched.krl);
}

#[tokio::test(flavor = "multi_thread")]
async fn krl_versions_survive_a_restart_and_expired_grants_drop_out() {
    let mut d = revocation::daemon().await;
    let sre = d.target("sre");
    let keys = tempfile::tempdir().unwrap();
    let short = issue(&sre, keys.path(), "short", "alice", "db-7", 3).await;
    let long = issue(&sre, keys.path(), "long", "alice", "db-7", 600).await;
    for g in [&short, &long] {
        revoke::revoke(
            &sre,
            revoke_request(Selector::GrantId(g.grant_id.clone()), "INC-5"),
        )
        .await
        .unwrap();
    }
    let before = krl_sync::fetch(&d.target("host")).await.unwrap();
    let krl = Krl::parse(&before.krl).unwrap();
    assert_eq!(krl.serial_count(), 2);

    // Restart: state and the KRL version come back from the audit log.
    d.pause().await;
    d.resume().await;
    let after = krl_sync::fetch(&d.target("host")).await.unwrap();
    assert!(
        after.version > before.version,
        "{} then {}",
        before.version,
        after.version
    );
    assert_eq!(Krl::parse(&after.krl).unwrap().serial_count(), 2);

    // Once the short certificate is past its validity, it leaves the list.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = krl_sync::fetch(&d.target("host")).await.unwrap();
    assert!(later.version > after.version);
    let krl = Krl::parse(&later.krl).unwrap();
    assert_eq!(krl.serial_count(), 1);
    let ca = ssh_key::PublicKey::from_openssh(
        &breakglass_cli::commands::ca_keys(&d.target("host"))
            .await
            .unwrap()[0],
    )
    .unwrap();
    assert!(krl.revokes_serial(ca.key_data(), long.serial));
    assert!(!krl.revokes_serial(ca.key_data(), short.serial));
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_stream_resumes_from_a_version_and_beats() {
    let d = revocation::daemon().await;
    let sre = d.target("sre");
    let keys = tempfile::tempdir().unwrap();
    let a = issue(&sre, keys.path(), "a", "alice", "db-7", 600).await;
    let b = issue(&sre, keys.path(), "b", "alice", "db-7", 600).await;
    revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(a.grant_id.clone()), "first"),
    )
    .await
    .unwrap();
    let channel = breakglass_cli::connect::channel(&d.target("host")).unwrap();
    let mut client = RevocationsClient::new(channel);
    // From 0: the backlog (a), then b live, then a heartbeat.
    let mut stream = client
        .watch_revocations(WatchRevocationsRequest { from_version: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = loop {
        let n = stream.message().await.unwrap().unwrap();
        if !n.heartbeat {
            break n;
        }
    };
    assert_eq!(first.grant_id, a.grant_id);
    assert_eq!(first.revoked_by, "user:sre@example.com");
    assert_eq!(first.reason, "first");
    let t = Instant::now();
    revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(b.grant_id.clone()), "second"),
    )
    .await
    .unwrap();
    let second = loop {
        let n = stream.message().await.unwrap().unwrap();
        if !n.heartbeat {
            break n;
        }
    };
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "live notice took {:?}",
        t.elapsed()
    );
    assert_eq!(second.grant_id, b.grant_id);
    assert!(second.version > first.version);
    let beat = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            let n = stream.message().await.unwrap().unwrap();
            if n.heartbeat {
                break n;
            }
        }
    })
    .await
    .expect("a heartbeat within 12 s");
    assert!(beat.krl_version >= 2);
    // Resuming after the first: only the second.
    let mut resumed = client
        .watch_revocations(WatchRevocationsRequest {
            from_version: first.version,
        })
        .await
        .unwrap()
        .into_inner();
    let n = loop {
        let n = resumed.message().await.unwrap().unwrap();
        if !n.heartbeat {
            break n;
        }
    };
    assert_eq!(n.grant_id, b.grant_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_krl_installs_the_daemons_krl_and_refuses_a_replayed_older_one() {
    let d = revocation::daemon().await;
    let sre = d.target("sre");
    let host = d.target("host");
    let keys = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    let out = etc.path().join("breakglass.krl");
    let args = krl_sync::SyncKrlArgs {
        out: out.clone(),
        ca_keys: None,
        state: None,
        witness: d.witness_args("host", None),
    };
    let first = krl_sync::sync(&host, &args).await.unwrap();
    assert!(
        matches!(first, krl_sync::Synced::Installed { previous: None, .. }),
        "{first:?}"
    );
    let old = krl_sync::fetch(&host).await.unwrap();
    let g = issue(&sre, keys.path(), "g", "alice", "db-7", 600).await;
    revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(g.grant_id.clone()), "INC-7"),
    )
    .await
    .unwrap();
    let second = krl_sync::sync(&host, &args).await.unwrap();
    assert!(
        matches!(second, krl_sync::Synced::Installed { serials: 1, .. }),
        "{second:?}"
    );
    assert!(ssh_keygen_revoked(&out, g.key.cert_path.as_ref().unwrap()));
    let installed = std::fs::read(&out).unwrap();
    // The older, genuinely signed KRL replayed: refused, the file stays.
    let cas = krl_sync::ca_keys(&host, None).await.unwrap();
    let e = krl_sync::install(&old, &cas, &out, &krl_sync::state_path(&out, None))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 65);
    assert!(
        e.to_string().contains("older than the installed version"),
        "{e}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), installed);
    assert!(ssh_keygen_revoked(&out, g.key.cert_path.as_ref().unwrap()));
    // Nothing new: up to date.
    assert!(matches!(
        krl_sync::sync(&host, &args).await.unwrap(),
        krl_sync::Synced::UpToDate { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_marks_sessions_of_revoked_grants_and_survives_a_daemon_restart() {
    use breakglass_cli::host::watch::{WatchArgs, watch};
    use breakglass_proto::sessions::{Registration, RevocationMarker, marker_path};
    let mut d = revocation::daemon().await;
    let sre = d.target("sre");
    let keys = tempfile::tempdir().unwrap();
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().join("sessions");
    let a = issue(&sre, keys.path(), "a", "alice", "db-7", 600).await;
    let b = issue(&sre, keys.path(), "b", "alice", "db-7", 600).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let args = WatchArgs {
        sessions: dir.clone(),
        ca_keys: None,
        poll: Duration::from_secs(1),
        krl: None,
        krl_state: None,
        witness: d.witness_args("host", None),
    };
    let host = d.target("host");
    let watcher = tokio::spawn(async move {
        watch(&host, &args, async move {
            let _ = stopped.await;
        })
        .await
    });
    // Sessions as guards register them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (s, g) in [("sa", &a), ("sb", &b)] {
        let r = Registration {
            session: s.into(),
            grant: g.grant_id.clone(),
            serial: g.serial,
            key_id: String::new(),
            expires: g.key.valid_before.unwrap(),
            guard_pid: 1,
            guard: None,
        };
        std::fs::write(r.path(&dir), r.to_text()).unwrap();
    }
    let marked = |s: &str| marker_path(&dir, s).exists();
    revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(a.grant_id.clone()), "INC-8 first"),
    )
    .await
    .unwrap();
    let t = Instant::now();
    while !marked("sa") && t.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(marked("sa"), "no marker for the revoked session");
    assert!(!marked("sb"));
    let m = RevocationMarker::parse(&std::fs::read_to_string(marker_path(&dir, "sa")).unwrap())
        .unwrap();
    assert_eq!(m.revoked_by, "user:sre@example.com");
    assert_eq!(m.reason, "INC-8 first");

    // The daemon restarts: the watcher reconnects (or polls the KRL) and still acts.
    d.pause().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.resume().await;
    revoke::revoke(
        &sre,
        revoke_request(Selector::GrantId(b.grant_id.clone()), "INC-8 second"),
    )
    .await
    .unwrap();
    let t = Instant::now();
    while !marked("sb") && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(marked("sb"), "no marker after the restart");
    let _ = stop.send(());
    watcher.await.unwrap().unwrap();
}
