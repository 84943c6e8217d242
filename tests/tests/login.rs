//! `breakglass login` end to end: a real daemon over real sockets with `[oidc]` pointing at
//! a real OpenID provider (node `oidc-provider`, `tests/src/oidc.rs`). The daemon gives a
//! nonce without a client certificate, the person completes the provider's device flow in
//! a browser (driven over HTTP), the CLI makes a key and trades the ID token for a client
//! certificate, and that login then asks for an SSH certificate.

use std::os::unix::fs::PermissionsExt;

use breakglass_ca::enrollment::LOGIN_NONCE_TTL;
use breakglass_cli::error::CliError;
use breakglass_cli::login::session::{self, LoggedIn};
use breakglass_cli::settings::Overrides;
use breakglass_proto::audit::EventKind;

use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::oidc::{CLIENT, TestProvider};
use breakglass_tests::revocation::{audit_events, issue};

/// A daemon whose `[oidc]` trusts `idp`: idp-sre → sre, idp-dba → dba, example.com only.
async fn daemon(idp: &TestProvider) -> TestDaemon {
    let oidc = format!(
        "\n[oidc]\nissuer = {:?}\nclient_id = {CLIENT:?}\ngroup_map = {{ \"idp-sre\" = [\"sre\"], \"idp-dba\" = [\"dba\"] }}\nallowed_domains = [\"example.com\"]\nlogin_ttl = \"2h\"\n",
        idp.issuer
    );
    TestDaemon::start_with(move |c| c + &oidc).await
}

/// A whole login as `user` through the device flow; the files go to `dir`.
async fn login(
    d: &TestDaemon,
    idp: &TestProvider,
    user: &str,
    dir: &std::path::Path,
) -> Result<LoggedIn, CliError> {
    let begun = session::begin(&d.bare_server(), Some(&d.tls_ca_fingerprint())).await?;
    assert_eq!(begun.begin.issuer, idp.issuer);
    let token = idp.device_login(CLIENT, user, &begun.begin.nonce).await;
    session::finish(begun, &token, Some(dir)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_logs_in_with_the_device_flow_and_then_asks_for_a_certificate() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    let d = daemon(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    // Given a second daemon of the log too: the login talks to the first (its nonce is
    // that daemon's) and keeps the second in the settings it writes.
    let second = format!("https://127.0.0.1:{}", breakglass_tests::sshd::free_port());
    let both = Overrides {
        fallbacks: vec![second.clone()],
        ..d.bare_server()
    };
    let begun = session::begin(&both, Some(&d.tls_ca_fingerprint()))
        .await
        .expect("login begins");
    let token = idp.device_login(CLIENT, "alice", &begun.begin.nonce).await;
    let done = session::finish(begun, &token, Some(dir.path()))
        .await
        .expect("login");
    assert_eq!(done.answer.identity, "alice@example.com");
    assert_eq!(done.answer.groups, ["sre"]);
    assert!(done.wrote_config);
    let mode = std::fs::metadata(dir.path().join("login.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is 0600");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lifetime = done.answer.not_after - i64::try_from(now).unwrap();
    assert!((7000..=7200).contains(&lifetime), "2 h login: {lifetime}");
    assert!(session::describe(&done).contains("Logged in as alice@example.com (groups: sre)"));

    // From now on the written client settings are the person's credentials.
    let me = Overrides {
        config: Some(done.config.clone()),
        ..Overrides::default()
    };
    let target = me.resolve().expect("the login's client settings");
    assert!(
        matches!(&target, breakglass_cli::settings::Target::Tls { fallbacks, .. } if *fallbacks == [second.clone()]),
        "{target:?}"
    );
    let who = breakglass_cli::commands::whoami(&target)
        .await
        .expect("whoami");
    assert!(
        who.contains("alice@example.com") && who.contains("sre"),
        "{who}"
    );
    // `status` says who, in which groups, and when the login expires.
    let status = breakglass_cli::status::status(&target)
        .await
        .expect("status");
    let text = breakglass_cli::status::describe(&status);
    assert!(
        text.contains("identity     alice@example.com")
            && text.contains("groups       sre")
            && text.contains("login.crt expires")
            && !text.contains("with an SSH key"),
        "{text}"
    );
    let keys = tempfile::tempdir().unwrap();
    let grant = issue(
        &target,
        keys.path(),
        "id_ed25519",
        "bgdemo",
        "localhost",
        600,
    )
    .await;
    assert!(!grant.grant_id.is_empty());

    // Recorded: the login, with its method and groups.
    let events = audit_events(&d);
    let requester = events.iter().find_map(|(_, e)| match &e.kind {
        EventKind::RequestCreated(r) => Some(r.requester.clone()),
        _ => None,
    });
    assert_eq!(requester.as_deref(), Some("alice@example.com"));
    let logins: Vec<_> = events
        .into_iter()
        .filter_map(|(_, e)| match e.kind {
            EventKind::ClientCertificateIssued(c) if c.method == "login" => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0].identity, "alice@example.com");
    assert_eq!(logins[0].groups, ["sre"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_nonce_is_good_once_and_only_from_the_daemon_and_its_token_must_carry_it() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    assert!(LOGIN_NONCE_TTL.as_secs() <= 900);
    let d = daemon(&idp).await;
    let dir = tempfile::tempdir().unwrap();
    // A token for a nonce the daemon never gave.
    let begun = session::begin(&d.bare_server(), Some(&d.tls_ca_fingerprint()))
        .await
        .unwrap();
    let stray = idp.device_login(CLIENT, "bob", "a-nonce-of-my-own").await;
    let e = session::finish(begun, &stray, Some(dir.path()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nonce"), "{e}");
    // The nonce of that refused login was used up: its own token cannot come later.
    // A good login, then the same nonce and token again.
    let begun = session::begin(&d.bare_server(), Some(&d.tls_ca_fingerprint()))
        .await
        .unwrap();
    let nonce = begun.begin.nonce.clone();
    let token = idp.device_login(CLIENT, "bob", &nonce).await;
    let again = session::begin(&d.bare_server(), Some(&d.tls_ca_fingerprint()))
        .await
        .unwrap();
    let done = session::finish(begun, &token, Some(dir.path()))
        .await
        .unwrap();
    assert_eq!(done.answer.groups, ["dba"]);
    let mut replay = again;
    replay.begin.nonce = nonce;
    let e = session::finish(replay, &token, Some(dir.path()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("nonce is unknown, used already"),
        "{e}"
    );
    // A person outside the allowed domains is refused, and nothing is written.
    let other = tempfile::tempdir().unwrap();
    let e = login(&d, &idp, "carol", other.path()).await.unwrap_err();
    assert!(e.to_string().contains("login refused"), "{e}");
    assert!(!other.path().join("login.key").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_fingerprint_stops_the_login_before_anything_is_sent() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    let d = daemon(&idp).await;
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let e = session::begin(&d.bare_server(), Some(wrong))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing was sent"), "{e}");
}
