//! The break-glass login with an SSH key end to end: a real daemon over real mTLS
//! sockets, real `ssh-keygen -Y sign`, and a real `ssh-agent` started here holding the
//! only copy of the private key. The login's certificate reaches a declared emergency
//! and nothing else (the tiers' default `ssh_key_login = "emergency-only"`); keys that are
//! not enrolled, replayed and expired nonces, other namespaces and other daemons are
//! refused; FIDO2 `sk-` keys enroll through the configuration and `identity add-key`,
//! DSA and short RSA keys do not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_ca::admin::{self, AdminSocket, IdentityDisableArgs, IdentityKeyArgs};
use breakglass_ca::config::Config;
use breakglass_ca::init::CONFIG_FILE;
use breakglass_cli::approvals::{self, RequestMode, RequestResult};
use breakglass_cli::error::CliError;
use breakglass_cli::login::session::{self, Begun, LoggedIn};
use breakglass_cli::login::ssh_key;
use breakglass_cli::settings::{Overrides, Target};
use breakglass_proto::audit::EventKind;
use breakglass_proto::audit::event::RefusalKind;
use breakglass_proto::ssh_login::{BEGIN_SSH_KEY, SSH_LOGIN_NAMESPACE, fixtures};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::process::{Running, run_ok};
use breakglass_tests::revocation::{audit_events, request_args};
use breakglass_tests::{breakglass_bin_built, ssh_keygen};

/// A daemon whose sample SRE (`sre@example.com`, group `sre`) has `keys` enrolled in the
/// configuration, with `extra` appended to it.
async fn daemon(keys: &[String], extra: &str) -> TestDaemon {
    let list = keys
        .iter()
        .map(|k| format!("{:?}", k.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let extra = extra.to_owned();
    TestDaemon::start_with(move |c| {
        let c = c.replace(
            "owner = \"sample-sre\"\n",
            &format!("owner = \"sample-sre\"\nssh_keys = [{list}]\n"),
        );
        assert!(
            c.contains("ssh_keys"),
            "the dev config names the sample SRE"
        );
        c + &extra
    })
    .await
}

/// An Ed25519 key made by ssh-keygen: (private key file, its public key line).
fn new_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let public = ssh_keygen(dir, name, &["-t", "ed25519"]);
    let line = std::fs::read_to_string(&public).unwrap();
    (dir.join(name), line)
}

/// A real ssh-agent on a socket of its own, stopped when dropped.
struct Agent {
    socket: PathBuf,
    _process: Running,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let process = Running::spawn(Command::new("ssh-agent").arg("-D").arg("-a").arg(&socket));
        assert!(
            breakglass_test_support::wait::until(
                Duration::from_secs(10),
                Duration::from_millis(20),
                || { socket.exists() }
            ),
            "ssh-agent made no socket"
        );
        Self {
            socket,
            _process: process,
            _dir: dir,
        }
    }

    /// `ssh-add FILE`: the agent holds the key from now on.
    fn add(&self, key: &Path) {
        run_ok(
            Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket),
        );
    }
}

/// `BeginLogin` for an SSH-key login, pinning the daemon's TLS CA.
async fn begin(d: &TestDaemon) -> Result<Begun, CliError> {
    session::begin_method(
        &d.bare_server(),
        Some(&d.tls_ca_fingerprint()),
        BEGIN_SSH_KEY,
    )
    .await
}

/// A whole SSH-key login in-process with the private key file `key`.
async fn login(d: &TestDaemon, key: &Path, dir: &Path) -> Result<LoggedIn, CliError> {
    let begun = begin(d).await?;
    let sig = ssh_key::sign_login(key, &begun.ca_pem, &begun.begin.nonce)?;
    session::finish_ssh_key(begun, &sig, Some(dir)).await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The admin socket, as `breakglass-ca identity add-key` finds it.
fn socket(d: &TestDaemon) -> AdminSocket {
    AdminSocket {
        config: d.path().join(CONFIG_FILE),
        socket: Some(d.admin_socket.clone()),
    }
}

/// `breakglass-ca identity add-key` (`add`) or `remove-key` of the key `line`.
async fn key_cmd(d: &TestDaemon, identity: &str, line: &str, add: bool) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.pub");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    admin::identity_key(
        &IdentityKeyArgs {
            identity: identity.into(),
            key: file,
            socket: socket(d),
        },
        add,
    )
    .await
    .map_err(|e| format!("{} {e}", e.exit_code()))
}

/// A request from `target` for bgdemo@`host`, an emergency or not, not waiting.
async fn request(
    target: &Target,
    keys: &Path,
    host: &str,
    emergency: bool,
) -> Result<RequestResult, CliError> {
    let public = keys.join("id_ed25519.pub");
    if !public.exists() {
        ssh_keygen(keys, "id_ed25519", &["-t", "ed25519"]);
    }
    let a = request_args(
        &public,
        "bgdemo",
        host,
        600,
        "INC-77 primary is down, SSO too",
    );
    let mode = RequestMode {
        emergency,
        no_wait: true,
    };
    approvals::request_live(target, &a, mode, |_| {}).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_held_only_by_ssh_agent_logs_in_for_an_emergency_and_not_for_a_normal_tier() {
    let keys = tempfile::tempdir().unwrap();
    let (private, line) = new_key(keys.path(), "id_breakglass");
    let agent = Agent::start();
    agent.add(&private);
    std::fs::remove_file(&private).unwrap();
    let d = daemon(&[line], "").await;
    let dir = tempfile::tempdir().unwrap();

    // The real CLI, with nothing but the public key and the agent.
    let out = tokio::process::Command::new(breakglass_bin_built().await)
        .args(["--server", &format!("https://127.0.0.1:{}", d.port)])
        .args(["--server-name", "localhost", "login", "--ssh-key"])
        .arg(keys.path().join("id_breakglass.pub"))
        .args(["--ca-fingerprint", &d.tls_ca_fingerprint(), "--dir"])
        .arg(dir.path())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .env_remove("BREAKGLASS_CONFIG")
        .env_remove("BREAKGLASS_SERVER")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "login --ssh-key: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Logged in as sre@example.com (groups: sre)")
            && stdout.contains("break-glass login"),
        "{stdout}"
    );

    // `status` says who, in which groups, until when, and how.
    let me = Overrides {
        config: Some(dir.path().join("client.toml")),
        ..Overrides::default()
    };
    let target = me.resolve().expect("the login's client settings");
    let status = breakglass_cli::status::status(&target)
        .await
        .expect("status");
    let text = breakglass_cli::status::describe(&status);
    assert!(
        text.contains("identity     sre@example.com")
            && text.contains("groups       sre")
            && text.contains("expires")
            && text.contains("with an SSH key"),
        "{text}"
    );
    assert!(
        status
            .json()
            .credential
            .expect("a credential")
            .ssh_key_login
    );
    let left = status.credential.as_ref().unwrap().not_after - now();
    assert!(
        (12 * 3600 - 120..=12 * 3600).contains(&left),
        "12 h login: {left}"
    );

    // An emergency on a tier that allows one is issued at once...
    let reqs = tempfile::tempdir().unwrap();
    match request(&target, reqs.path(), "db.staging.example", true).await {
        Ok(RequestResult::Issued(o)) => assert!(!o.response.grant_id.is_empty()),
        other => panic!("the emergency was not issued: {other:?}"),
    }
    // ...a normal request (tier low) is refused, saying what to do.
    let e = request(&target, reqs.path(), "localhost", false)
        .await
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("this login was made with an SSH key")
            && e.to_string()
                .contains("tier `low` needs an SSO login: run `breakglass login`"),
        "{e}"
    );

    // On the record: the login with its method, and the refusal with its kind.
    let events = audit_events(&d);
    let login = events
        .iter()
        .find_map(|(_, e)| match &e.kind {
            EventKind::ClientCertificateIssued(c) => Some(c.clone()),
            _ => None,
        })
        .expect("the login is recorded");
    assert_eq!(
        (
            login.identity.as_str(),
            login.method.as_str(),
            login.groups.as_slice()
        ),
        ("sre@example.com", "ssh-key", &["sre".to_owned()][..])
    );
    assert!(events.iter().any(
        |(_, e)| matches!(&e.kind, EventKind::RequestRefused(r) if r.kind == RefusalKind::LoginMethod)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn unenrolled_keys_replayed_and_expired_nonces_other_namespaces_and_daemons_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (enrolled, line) = new_key(keys.path(), "enrolled");
    let (stranger, _) = new_key(keys.path(), "stranger");
    let d = daemon(&[line], "\n[enrollment]\nlogin_nonce_ttl = \"1s\"\n").await;
    let dir = tempfile::tempdir().unwrap();

    // A good login; its nonce and signature cannot be used again.
    let begun = begin(&d).await.unwrap();
    assert_eq!(begun.begin.ssh_namespace, SSH_LOGIN_NAMESPACE);
    let nonce = begun.begin.nonce.clone();
    let sig = ssh_key::sign_login(&enrolled, &begun.ca_pem, &nonce).unwrap();
    let mut replay = begin(&d).await.unwrap();
    let done = session::finish_ssh_key(begun, &sig, Some(dir.path()))
        .await
        .expect("login");
    assert_eq!(done.answer.method, "ssh-key");
    replay.begin.nonce = nonce;
    let e = session::finish_ssh_key(replay, &sig, Some(dir.path()))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("nonce is unknown, used already or expired"),
        "{e}"
    );

    // A key nobody enrolled.
    let other = tempfile::tempdir().unwrap();
    let e = login(&d, &stranger, other.path()).await.unwrap_err();
    assert!(
        e.to_string().contains("is not enrolled for any identity"),
        "{e}"
    );
    assert!(
        !other.path().join("login.key").exists(),
        "nothing is written"
    );

    // The enrolled key, signing for another purpose (namespace `file`)...
    let begun = begin(&d).await.unwrap();
    let challenge = ssh_key::challenge_for(&begun.ca_pem, &begun.begin.nonce).unwrap();
    let sig = ssh_key::sign(&enrolled, "file", &challenge).unwrap();
    let e = session::finish_ssh_key(begun, &sig, Some(other.path()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("made for namespace \"file\""), "{e}");
    // ...or for another daemon (another TLS CA).
    let begun = begin(&d).await.unwrap();
    let elsewhere =
        breakglass_proto::ssh_login::challenge("SHA256:another-daemon", &begun.begin.nonce);
    let sig = ssh_key::sign(&enrolled, SSH_LOGIN_NAMESPACE, &elsewhere).unwrap();
    let e = session::finish_ssh_key(begun, &sig, Some(other.path()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");

    // A nonce past its time (login_nonce_ttl = 1s here).
    let begun = begin(&d).await.unwrap();
    let sig = ssh_key::sign_login(&enrolled, &begun.ca_pem, &begun.begin.nonce).unwrap();
    let expires_at = begun.begin.expires_at;
    assert!(expires_at <= now() + 1, "the configured TTL is used");
    let passed = breakglass_test_support::wait::until_async(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || now() > expires_at,
    )
    .await;
    assert!(passed, "the nonce's time passed");
    let e = session::finish_ssh_key(begun, &sig, Some(other.path()))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("nonce is unknown, used already or expired"),
        "{e}"
    );

    // An approval is no emergency: an approver logged in with an SSH key cannot give one
    // on a tier that takes such logins only for emergencies.
    let (approver_key, approver_line) = new_key(keys.path(), "approver");
    key_cmd(&d, "approver@example.com", &approver_line, true)
        .await
        .unwrap();
    let approver_dir = tempfile::tempdir().unwrap();
    let done = login(&d, &approver_key, approver_dir.path())
        .await
        .expect("the approver logs in");
    let approver = Overrides {
        config: Some(done.config.clone()),
        ..Overrides::default()
    }
    .resolve()
    .unwrap();
    let reqs = tempfile::tempdir().unwrap();
    let pending = match request(&d.target("sre"), reqs.path(), "db.staging.example", false).await {
        Ok(RequestResult::Pending(i)) => i,
        other => panic!("the request does not wait for approval: {other:?}"),
    };
    let e = approvals::approve(&approver, &pending.request_id, "looks fine")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("this login was made with an SSH key")
            && e.to_string().contains("tier `elevated` needs an SSO login"),
        "{e}"
    );

    // A disabled identity cannot log in this way either.
    admin::identity_disable(&IdentityDisableArgs {
        identity: "sre@example.com".into(),
        reason: "left the company".into(),
        socket: socket(&d),
    })
    .await
    .unwrap();
    let e = login(&d, &enrolled, other.path()).await.unwrap_err();
    assert!(e.to_string().contains("disabled"), "{e}");
    assert!(
        !other.path().join("login.key").exists(),
        "nothing is written"
    );
}

/// An `sk-ssh-ed25519@openssh.com` public key around the Ed25519 key of `line`, as
/// `ssh-keygen -t ed25519-sk` writes one (no security key here to make a real one).
fn as_security_key(line: &str) -> String {
    use ::ssh_key::public::{KeyData, SkEd25519};
    let key = ::ssh_key::PublicKey::from_openssh(line.trim()).unwrap();
    let KeyData::Ed25519(pk) = key.key_data() else {
        panic!("an ed25519 key")
    };
    let sk = ::ssh_key::PublicKey::new(KeyData::SkEd25519(SkEd25519::new(*pk, "ssh:")), "");
    sk.to_openssh().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn security_keys_enroll_by_config_and_add_key_and_dsa_and_short_rsa_keys_do_not() {
    // The configuration takes an sk- key (and the daemon starts with it)...
    let d = daemon(&[fixtures::SK_ED25519.to_owned()], "").await;
    // ...and `identity add-key` takes another one, once, for one identity.
    let keys = tempfile::tempdir().unwrap();
    let (_, line) = new_key(keys.path(), "token");
    let sk = as_security_key(&line);
    assert!(sk.starts_with("sk-ssh-ed25519@openssh.com "), "{sk}");
    let out = key_cmd(&d, "approver@example.com", &sk, true)
        .await
        .unwrap();
    assert!(out.contains("enrolled for approver@example.com"), "{out}");
    let again = key_cmd(&d, "approver@example.com", &sk, true)
        .await
        .unwrap();
    assert!(
        again.contains("enrolled for approver@example.com already"),
        "{again}"
    );
    let e = key_cmd(&d, "auditor@example.com", &sk, true)
        .await
        .unwrap_err();
    assert!(e.contains("logs in approver@example.com already"), "{e}");
    let e = key_cmd(&d, "auditor@example.com", fixtures::SK_ED25519, true)
        .await
        .unwrap_err();
    assert!(e.contains("logs in sre@example.com already"), "{e}");
    // DSA and short RSA keys are refused by name (exit 65: bad input).
    let e = key_cmd(&d, "auditor@example.com", fixtures::DSA, true)
        .await
        .unwrap_err();
    assert!(
        e.starts_with("65 ") && e.contains("DSA keys (ssh-dss) are refused"),
        "{e}"
    );
    let e = key_cmd(&d, "auditor@example.com", fixtures::RSA_1024, true)
        .await
        .unwrap_err();
    assert!(e.contains("1024 bits, fewer than 2048"), "{e}");
    // Nobody the daemon knows, and hosts, get no key.
    let e = key_cmd(&d, "nobody@example.com", &line, true)
        .await
        .unwrap_err();
    assert!(e.contains("has never logged in"), "{e}");
    let e = key_cmd(&d, "host://localhost", &line, true)
        .await
        .unwrap_err();
    assert!(e.contains("not a person's identity"), "{e}");
    // Removed: recorded, and then there is nothing to remove.
    let out = key_cmd(&d, "approver@example.com", &sk, false)
        .await
        .unwrap();
    assert!(out.contains("removed from approver@example.com"), "{out}");
    let out = key_cmd(&d, "approver@example.com", &sk, false)
        .await
        .unwrap();
    assert!(out.contains("was not enrolled"), "{out}");
    let e = key_cmd(&d, "sre@example.com", fixtures::SK_ED25519, false)
        .await
        .unwrap_err();
    assert!(e.contains("listed in the configuration"), "{e}");
    let events = audit_events(&d);
    let added = events
        .iter()
        .filter(|(_, e)| matches!(&e.kind, EventKind::SshKeyAdded(k) if k.identity == "approver@example.com" && sk.starts_with(&k.public_key)))
        .count();
    let removed = events
        .iter()
        .filter(|(_, e)| matches!(&e.kind, EventKind::SshKeyRemoved(k) if k.identity == "approver@example.com"))
        .count();
    assert_eq!((added, removed), (1, 1));

    // The configuration refuses DSA and short RSA keys too, naming the entry.
    for (bad, why) in [
        (fixtures::DSA, "DSA keys (ssh-dss) are refused"),
        (fixtures::RSA_1024, "fewer than 2048"),
    ] {
        let path = d.path().join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("ssh_keys = [", &format!("ssh_keys = [{bad:?}, "));
        let e = Config::parse(&path, &text).unwrap_err().to_string();
        assert!(
            e.contains("identities[0].ssh_keys[0]") && e.contains(why),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_without_oidc_or_enrolled_keys_says_how_to_log_in() {
    let d = TestDaemon::start().await;
    let fp = d.tls_ca_fingerprint();
    let e = session::begin(&d.bare_server(), Some(&fp))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("takes no OpenID Connect logins")
            && e.to_string().contains("breakglass login --ssh-key"),
        "{e}"
    );
    let e = begin(&d).await.unwrap_err();
    assert!(
        e.to_string().contains("takes no logins with an SSH key")
            && e.to_string().contains("identity add-key"),
        "{e}"
    );
}
