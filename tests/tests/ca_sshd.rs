//! Certificates issued by the daemon against a real `sshd` on loopback whose
//! `TrustedUserCAKeys` came from `breakglass ca-keys`: the user gets in, the
//! forced command runs instead of the requested one, and certificates for
//! another principal, past their expiry, or from another CA are refused.

use std::path::Path;
use std::time::Duration;

use breakglass_cli::commands;
use breakglass_proto::v1::RequestCertificateResponse;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::host::ssh_run;
use breakglass_tests::revocation::{client_key, request_args};
use breakglass_tests::ssh_keygen;
use breakglass_tests::sshd::{CertSpec, ClientKey, TestCa, TestUser, require_root};

/// The dev policy, widened to the host name the test sshd's module is configured with.
async fn daemon() -> TestDaemon {
    TestDaemon::start_with(|c| {
        c.replace(
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\"]",
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\", \"db-7\"]",
        )
    })
    .await
}

async fn issue(
    d: &TestDaemon,
    dir: &Path,
    name: &str,
    user: &str,
    ttl: u64,
    command: Option<&str>,
) -> (ClientKey, RequestCertificateResponse) {
    let public = ssh_keygen(dir, name, &["-t", "ed25519"]);
    let mut a = request_args(&public, user, "db-7", ttl, "INC-7 sshd test");
    a.command = command.map(Into::into);
    let outcome = commands::request(&d.target("sre"), &a)
        .await
        .expect("certificate issued");
    (client_key(&outcome), outcome.response)
}

#[tokio::test(flavor = "multi_thread")]
async fn sshd_trusting_ca_keys_accepts_issued_certificates_and_refuses_the_rest() {
    if !require_root("a real sshd and a test user") {
        return;
    }
    let d = daemon().await;
    let sshd = d.start_sshd(None).await;
    let other_ca = TestCa::new();
    let user = TestUser::create();
    let other = TestUser::create();
    let keys = tempfile::tempdir().unwrap();

    // An interactive grant: the requested command runs.
    let (shell, granted) = issue(&d, keys.path(), "shell", &user.name, 600, None).await;
    let out = ssh_run(&sshd, &user.name, &shell, "echo hello from $(whoami)").await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hello from {}", user.name)
    );
    // The PAM module logged the open and the close of this grant's session to syslog.
    let grant = format!("grant={}", granted.grant_id);
    let serial = format!("serial={}", granted.serial);
    let wait = Duration::from_secs(10);
    let open = sshd
        .syslog
        .expect(&["event=session_open", &grant, &serial], wait);
    assert!(open.contains(&format!("user={}", user.name)), "{open}");
    sshd.syslog
        .expect(&["event=session_close", &grant, &serial, "duration="], wait);

    // A forced-command grant: /usr/bin/id runs instead of what the client asked for.
    let (forced, _) = issue(
        &d,
        keys.path(),
        "forced",
        &user.name,
        600,
        Some("/usr/bin/id"),
    )
    .await;
    let out = ssh_run(&sshd, &user.name, &forced, "echo not-this").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("uid={}({})", user.uid, user.name)),
        "{stdout}"
    );
    assert!(!stdout.contains("not-this"));

    // A certificate for another principal does not open this account.
    let (wrong, _) = issue(&d, keys.path(), "wrong", &other.name, 600, None).await;
    let out = ssh_run(&sshd, &user.name, &wrong, "true").await;
    assert_eq!(
        out.status.code(),
        Some(255),
        "login as {} with a cert for {}",
        user.name,
        other.name
    );

    // A certificate past its expiry is refused by sshd.
    let (short, _) = issue(&d, keys.path(), "short", &user.name, 1, None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = ssh_run(&sshd, &user.name, &short, "true").await;
    assert_eq!(out.status.code(), Some(255));
    assert!(sshd.log().contains("expired"), "{}", sshd.log());

    // A well-formed breakglass certificate from a CA sshd does not trust is refused.
    let foreign = ClientKey::with_cert(
        keys.path(),
        "foreign",
        &other_ca,
        &CertSpec::new(1, &user.name, 600),
    );
    let out = ssh_run(&sshd, &user.name, &foreign, "true").await;
    assert_eq!(out.status.code(), Some(255));

    // The trusted one still works afterwards.
    let out = ssh_run(&sshd, &user.name, &shell, "true").await;
    assert!(out.status.success());
}
