//! New logins of a revoked certificate are refused as soon as the host learns of the
//! revocation, with no KRL sync timer: the real `breakglass host watch-revocations`
//! follows the daemon's stream over mTLS, installs the new signed KRL for sshd's
//! `RevokedKeys` at once (`--krl`) and marks the grant for the PAM module; real sshd
//! and the real module refuse the next login.
//! - a revoked certificate is refused by sshd once the watcher replaced the KRL;
//! - the module refuses a grant the watcher marked revoked while the KRL file is stale;
//! - `revoke --public-key` revokes the key itself: another certificate for the same key
//!   (one the daemon did not issue, e.g. signed offline with the CA key) is refused by
//!   sshd, and no new certificate is issued for the key, also after a daemon restart;
//! - the key is revoked even when all its grants were already revoked or expired.
//! - the watcher's stream, its witness checks and its KRL fetches share one connection:
//!   counted by a TCP relay in front of the daemon, several revocations installed cost no
//!   connection beyond the stream's, and a daemon restart costs one more.

use std::path::Path;
use std::time::Duration;

use breakglass_cli::commands;
use breakglass_cli::error::CliError;
use breakglass_cli::host::krl_sync;
use breakglass_cli::revoke;
use breakglass_proto::audit::EventKind;
use breakglass_proto::krl::Krl;
use breakglass_proto::sessions::{GrantState, grant_state};
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_test_support::wait;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::{
    self, ADMIN, Grant, audit_events, issue, request_args, revoke_request, ssh_keygen_revoked,
};
use breakglass_tests::sshd::{CertSpec, ClientKey, TestUser, require_root, sign_cert};
use breakglass_tests::watcher::{WatchedHost, WatcherProcess};
use ssh_key::{HashAlg, PrivateKey};

fn cert_of(g: &Grant) -> &Path {
    g.key.cert_path.as_deref().unwrap()
}

/// Asks for a certificate for the existing public key `public`.
async fn request_with(
    d: &TestDaemon,
    public: &Path,
    user: &str,
) -> Result<commands::RequestOutcome, CliError> {
    let a = request_args(public, user, "db-7", 600, "INC-6 again");
    commands::request(&d.target("sre"), &a).await
}

/// A certificate for the key of `g` that the daemon never issued: signed with the
/// daemon's CA key directly (as an offline emergency certificate would be), with the
/// breakglass profile and a serial no grant has.
fn offline_certificate(d: &TestDaemon, g: &Grant, user: &str) -> ClientKey {
    let key = PrivateKey::read_openssh_file(&g.key.key_path).expect("the grant's key");
    let cert = sign_cert(&d.ssh_ca(), &key, &CertSpec::new(0x77, user, 600));
    ClientKey::certified(g.key.key_path.clone(), &cert, "offline-cert.pub".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_certificate_is_refused_by_sshd_once_the_watcher_installs_the_new_krl() {
    if !require_root("a real sshd, PAM, a test user and the breakglass binary") {
        return;
    }
    let d = revocation::daemon().await;
    let h = WatchedHost::start(&d, true).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    let other = issue(&d.target("sre"), keys.path(), "o", &user.name, "db-7", 600).await;
    h.assert_login_works(&user.name, &g.key).await;
    assert!(!ssh_keygen_revoked(&h.krl(), cert_of(&g)));

    let admin = d.new_client("admin", ADMIN);
    let r = revoke::revoke(
        &admin,
        revoke_request(Selector::GrantId(g.grant_id.clone()), "INC-70 key exposed"),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked.len(), 1);
    // No sync timer: the watcher installs the daemon's new KRL from the stream.
    h.wait_krl_revokes(cert_of(&g)).await;
    let installed = Krl::parse(&std::fs::read(h.krl()).unwrap()).unwrap();
    assert!(installed.version >= r.krl_version, "{installed}");
    assert!(
        h.watcher.output().contains("installed KRL version"),
        "{}",
        h.watcher.output()
    );
    let (code, out) = h.login(&user.name, &g.key).await;
    assert_eq!(code, Some(255), "{out}");
    assert!(!out.contains("logged-in"), "{out}");
    assert!(
        h.sshd.log().contains("revoked by file"),
        "sshd did not refuse it by the KRL: {}",
        h.sshd.log()
    );
    // The grant is also marked for the module; other grants still log in.
    assert!(matches!(
        grant_state(&h.sessions_dir(), &g.grant_id),
        GrantState::Revoked(Some(_))
    ));
    h.assert_login_works(&user.name, &other.key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_module_refuses_a_grant_the_watcher_marked_revoked_while_the_krl_is_stale() {
    if !require_root("a real sshd, PAM, a test user and the breakglass binary") {
        return;
    }
    let d = revocation::daemon().await;
    // The watcher does not keep the KRL here: sshd's file stays as it was.
    let h = WatchedHost::start(&d, false).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    h.assert_login_works(&user.name, &g.key).await;

    let admin = d.new_client("admin", ADMIN);
    revoke::revoke(
        &admin,
        revoke_request(Selector::GrantId(g.grant_id.clone()), "INC-71 laptop lost"),
    )
    .await
    .unwrap();
    let dir = h.sessions_dir();
    let grant = g.grant_id.clone();
    let marked = wait::until_async(Duration::from_secs(15), Duration::from_millis(10), || {
        matches!(grant_state(&dir, &grant), GrantState::Revoked(_))
    });
    assert!(marked.await, "no grant marker: {}", h.watcher.output());
    // sshd still admits the certificate (its KRL is stale); the module denies the session.
    assert!(!ssh_keygen_revoked(&h.krl(), cert_of(&g)));
    let (code, out) = h.login(&user.name, &g.key).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("logged-in"), "{out}");
    assert!(out.contains("session denied"), "{out}");
    let line = h.sshd.syslog.expect(
        &["event=session_denied", "reason=revoked", &g.grant_id],
        Duration::from_secs(5),
    );
    assert!(line.contains(ADMIN) && line.contains("INC-71"), "{line}");
    assert!(
        !h.sshd.log().contains("revoked by file"),
        "{}",
        h.sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_public_key_refuses_its_other_certificates_and_new_requests_after_a_restart() {
    if !require_root("a real sshd, PAM, a test user and the breakglass binary") {
        return;
    }
    let mut d = revocation::daemon().await;
    let h = WatchedHost::start(&d, true).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    let offline = offline_certificate(&d, &g, &user.name);
    // Before the revocation the host admits both certificates of the key.
    h.assert_login_works(&user.name, &g.key).await;
    h.assert_login_works(&user.name, &offline).await;

    let admin = d.new_client("admin", ADMIN);
    let r = revoke::revoke(
        &admin,
        revoke_request(
            Selector::PublicKey(std::fs::read_to_string(&g.public).unwrap()),
            "INC-72 key stolen",
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked.len(), 1);
    // The watcher installs a KRL that names the key itself: the certificate the daemon
    // never issued, which no serial in the KRL covers, is refused by sshd.
    h.wait_krl_revokes(offline.cert_path.as_deref().unwrap())
        .await;
    let (code, out) = h.login(&user.name, &offline).await;
    assert_eq!(code, Some(255), "{out}");
    assert!(h.sshd.log().contains("revoked by file"), "{}", h.sshd.log());

    // No new certificate for the key; the reason names it and what to do.
    let fp = ssh_key::PublicKey::read_openssh_file(&g.public)
        .unwrap()
        .fingerprint(HashAlg::Sha256)
        .to_string();
    let refused = |e: CliError| {
        let m = e.to_string();
        assert!(
            m.contains(&fp) && m.contains("revoked") && m.contains("new key"),
            "{m}"
        );
    };
    refused(request_with(&d, &g.public, &user.name).await.unwrap_err());
    let events = audit_events(&d);
    assert!(
        events.iter().any(|(_, e)| matches!(&e.kind,
            EventKind::GrantRevoked(r) if r.revoked_key.as_deref() == Some(fp.as_str()))),
        "no GrantRevoked naming the key"
    );

    // After a restart (state rebuilt from the audit log) the key is still revoked.
    d.restart().await;
    let fetched = krl_sync::fetch(&d.target("host")).await.unwrap();
    let krl = Krl::parse(&fetched.krl).unwrap();
    let offline_cert =
        ssh_key::Certificate::read_file(offline.cert_path.as_deref().unwrap()).unwrap();
    assert!(krl.revoked(&offline_cert).is_some(), "{krl}");
    refused(request_with(&d, &g.public, &user.name).await.unwrap_err());
}

/// No root needed: the daemon over mTLS only.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_revoked_even_when_its_grants_were_already_revoked_or_expired() {
    let d = revocation::daemon().await;
    let sre = d.target("sre");
    let admin = d.new_client("admin", ADMIN);
    let keys = tempfile::tempdir().unwrap();
    let ca = ssh_key::PublicKey::from_openssh(
        &breakglass_cli::commands::ca_keys(&d.target("host"))
            .await
            .unwrap()[0],
    )
    .unwrap();
    let key_revoked = |krl: &Krl, g: &Grant| {
        let dev_ca = d.ssh_ca();
        assert_eq!(dev_ca.key.public_key().key_data(), ca.key_data());
        let key = PrivateKey::read_openssh_file(&g.key.key_path).unwrap();
        krl.revoked(&sign_cert(&dev_ca, &key, &CertSpec::new(0x99, "alice", 60)))
            .is_some()
    };
    let host = d.target("host");
    let fetch = || {
        let host = host.clone();
        async move { Krl::parse(&krl_sync::fetch(&host).await.unwrap().krl).unwrap() }
    };

    // Revoked by id first: the key is not revoked by that.
    let g1 = issue(&sre, keys.path(), "k1", "alice", "db-7", 600).await;
    revoke::revoke(
        &admin,
        revoke_request(Selector::GrantId(g1.grant_id.clone()), "INC-73"),
    )
    .await
    .unwrap();
    assert!(!key_revoked(&fetch().await, &g1));
    // Then by key: nothing left to revoke by serial, but the key goes into the KRL.
    let r = revoke::revoke(
        &admin,
        revoke_request(
            Selector::PublicKey(std::fs::read_to_string(&g1.public).unwrap()),
            "INC-73 the key too",
        ),
    )
    .await
    .unwrap();
    assert!(r.revoked.is_empty());
    assert_eq!(r.already_revoked, vec![g1.grant_id.clone()]);
    assert!(key_revoked(&fetch().await, &g1));

    // A key whose only grant has expired.
    let g2 = issue(&sre, keys.path(), "k2", "alice", "db-7", 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = revoke::revoke(
        &admin,
        revoke_request(
            Selector::PublicKey(std::fs::read_to_string(&g2.public).unwrap()),
            "INC-74",
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.revoked.len(), 1);
    assert!(key_revoked(&fetch().await, &g2));
    assert!(request_with(&d, &g2.public, "alice").await.is_err());

    // A key the daemon never certified: nothing to revoke, said so.
    let stranger = breakglass_tests::ssh_keygen(keys.path(), "stranger", &["-t", "ed25519"]);
    let e = revoke::revoke(
        &admin,
        revoke_request(
            Selector::PublicKey(std::fs::read_to_string(&stranger).unwrap()),
            "INC-75",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.exit_code(), 66, "{e}");
    assert!(e.to_string().contains("no grant was ever issued"), "{e}");
}

/// A TCP relay on loopback in front of the daemon's port that counts the connections it
/// carried to the daemon (each one a TLS handshake there; an attempt while the daemon is
/// down is not one).
struct CountingRelay {
    port: u16,
    carried: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    async fn start(daemon_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let carried = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&carried);
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(mut daemon) =
                    tokio::net::TcpStream::connect(("127.0.0.1", daemon_port)).await
                else {
                    continue; // dropped: the client sees the daemon down
                };
                count.fetch_add(1, Ordering::SeqCst);
                pipes.spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut daemon).await;
                });
            }
        });
        Self {
            port,
            carried,
            task,
        }
    }

    fn carried(&self) -> usize {
        self.carried.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Issues a grant to the sample SRE, revokes it as `admin`, and waits (bounded) until the
/// watcher has installed the KRL that lists it (its version state file `state` says so).
async fn revoke_and_wait_installed(
    d: &TestDaemon,
    admin: &breakglass_cli::settings::Target,
    keys: &Path,
    n: usize,
    state: &Path,
    watcher: &WatcherProcess,
) {
    let g = issue(
        &d.target("sre"),
        keys,
        &format!("k{n}"),
        "alice",
        "db-7",
        600,
    )
    .await;
    let r = revoke::revoke(
        admin,
        revoke_request(Selector::GrantId(g.grant_id), &format!("INC-8{n}")),
    )
    .await
    .unwrap();
    let installed = wait::until_async(Duration::from_secs(20), Duration::from_millis(10), || {
        std::fs::read_to_string(state)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .is_some_and(|v| v >= r.krl_version)
    })
    .await;
    assert!(
        installed,
        "the watcher did not install KRL version {}: {}",
        r.krl_version,
        watcher.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_watcher_fetches_krls_and_witnesses_the_log_on_its_stream_connection() {
    let mut d = revocation::daemon().await;
    let relay = CountingRelay::start(d.port).await;
    d.new_client("db7", "host://db-7");
    let config = d.client_config("db7", "db7");
    let text = std::fs::read_to_string(&config).unwrap();
    let through_relay = text.replace(
        &format!("127.0.0.1:{}", d.port),
        &format!("127.0.0.1:{}", relay.port),
    );
    assert_ne!(text, through_relay, "no daemon address in {text}");
    std::fs::write(&config, through_relay).unwrap();
    let host = tempfile::tempdir().unwrap();
    let (sessions, krl) = (
        host.path().join("sessions"),
        host.path().join("revoked.krl"),
    );
    let state = host.path().join("revoked.krl.version");
    let ca_keys = d.path().join("ssh_ca.pub");
    let watcher = tokio::task::spawn_blocking(move || {
        WatcherProcess::start(&config, &sessions, &ca_keys, Some(krl.as_path()))
    })
    .await
    .unwrap();
    // Following the stream: witnessed the log at connect, installed the current KRL.
    assert_eq!(relay.carried(), 1, "{}", watcher.output());

    let admin = d.new_client("admin", ADMIN);
    let keys = tempfile::tempdir().unwrap();
    for n in 0..3 {
        revoke_and_wait_installed(&d, &admin, keys.path(), n, &state, &watcher).await;
    }
    // The version file is written before the watcher prints the install: wait for the line.
    let installs = || watcher.output().matches("installed KRL version").count();
    let printed = wait::until_async(Duration::from_secs(20), Duration::from_millis(10), || {
        installs() >= 4
    })
    .await;
    assert!(printed, "{}", watcher.output());
    let installs = installs();
    assert_eq!(
        relay.carried(),
        1,
        "{installs} KRL installs (each fetched and witnessed) took more than the stream's \
         connection: {}",
        watcher.output()
    );

    // A restart ends the stream: the watcher reconnects on one new connection, which
    // carries its KRL poll, its witness check and the new stream.
    d.restart().await;
    let reconnected = wait::until_async(Duration::from_secs(30), Duration::from_millis(20), || {
        watcher.output().matches("watching revocations at").count() >= 2
    })
    .await;
    assert!(reconnected, "no reconnect: {}", watcher.output());
    revoke_and_wait_installed(&d, &admin, keys.path(), 3, &state, &watcher).await;
    assert_eq!(relay.carried(), 2, "{}", watcher.output());
}
