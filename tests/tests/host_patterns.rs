//! Requested host patterns against the daemon over mTLS, and the certificates it issues
//! for them against real sshd + PAM: a pattern is granted only when every host name it
//! can match is one the rule allows and no deny rule forbids, so a certificate never
//! admits a host the rules would refuse by name.

use std::path::Path;
use std::time::Duration;

use breakglass_cli::commands::{self, RequestOutcome};
use breakglass_cli::error::CliError;
use breakglass_proto::profile::Profile;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::host::ssh_run;
use breakglass_tests::revocation::{client_key, request_args};
use breakglass_tests::ssh_keygen;
use breakglass_tests::sshd::{ClientKey, Sshd, TestUser, require_root};

/// The dev policy (its `sre-local` rule allows `*.dev.example` to group sre), plus the
/// rules of the hardening issue's two examples: a deny rule for some of the dev hosts,
/// and a rule naming a `?` pattern.
async fn daemon() -> TestDaemon {
    TestDaemon::start_with(|c| {
        format!(
            "{c}
[[rules]]
name = \"no-secrets\"
effect = \"deny\"
hosts = [\"secret-*.dev.example\"]

[[rules]]
name = \"q-apps\"
tier = \"low\"
groups = [\"sre\"]
principals = [\"*\"]
hosts = [\"app-?.q.example\"]
interactive = true
max_ttl = \"30m\"
extensions = [\"permit-pty\"]
"
        )
    })
    .await
}

async fn request(
    d: &TestDaemon,
    keys: &Path,
    name: &str,
    user: &str,
    host: &str,
) -> Result<RequestOutcome, CliError> {
    let public = ssh_keygen(keys, name, &["-t", "ed25519"]);
    let a = request_args(&public, user, host, 600, "INC-9 host pattern test");
    commands::request(&d.target("sre"), &a).await
}

/// A key file name of its own for each requested host.
fn key_name(host: &str) -> String {
    host.replace('*', "STAR")
        .replace('?', "QM")
        .replace('.', "_")
}

/// The request is refused by policy (exit 79) with a message containing `needle`.
async fn refused(d: &TestDaemon, keys: &Path, host: &str, needle: &str) {
    let e = request(d, keys, &key_name(host), "postgres", host)
        .await
        .err()
        .unwrap_or_else(|| panic!("a certificate was issued for {host}"));
    assert_eq!(e.exit_code(), 79, "{host}: {e}");
    assert!(e.to_string().contains(needle), "{host}: {e}");
}

/// The host scope the issued certificate carries.
fn scope(outcome: &RequestOutcome) -> Vec<String> {
    let cert = ssh_key::Certificate::read_file(&outcome.paths.certificate).expect("certificate");
    Profile::from_certificate(&cert).expect("profile").hosts
}

#[tokio::test(flavor = "multi_thread")]
async fn host_patterns_wider_than_the_rules_are_refused_and_narrower_ones_granted() {
    let d = daemon().await;
    let keys = tempfile::tempdir().unwrap();

    // Example 1: *.dev.example would reach secret-1.dev.example, which a deny rule forbids.
    refused(
        &d,
        keys.path(),
        "*.dev.example",
        "denied by policy rule `no-secrets` for postgres@*.dev.example: host pattern *.dev.example also matches secret-y.dev.example, which this rule denies",
    )
    .await;
    // The same through `?` or another case.
    refused(&d, keys.path(), "se?ret-1.dev.example", "`no-secrets`").await;
    refused(&d, keys.path(), "SECRET-*", "`no-secrets`").await;

    // Example 2: app-?.q.example does not cover app-*.q.example (app-database.q.example).
    refused(
        &d,
        keys.path(),
        "app-*.q.example",
        "host pattern app-*.q.example is not allowed for postgres by rule `q-apps`: it also matches app-yy.q.example, which the rule's hosts (app-?.q.example) do not",
    )
    .await;
    // Nor is anything wider than the dev rule.
    refused(&d, keys.path(), "*", "refused:").await;

    // What the rules do allow is still granted: the rule's pattern repeated verbatim,
    // narrower patterns clear of the denied hosts, and host names.
    for host in [
        "app-?.q.example",
        "web-*.dev.example",
        "db-?.dev.example",
        "app-1.q.example",
    ] {
        let out = request(&d, keys.path(), &key_name(host), "postgres", host)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(scope(&out), [host]);
    }
}

async fn login(sshd: &Sshd, user: &TestUser, key: &ClientKey) -> std::process::Output {
    ssh_run(sshd, &user.name, key, "echo IN-ON-$(whoami)").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_a_granted_pattern_admits_no_host_outside_it() {
    if !require_root("a real sshd and a test user") {
        return;
    }
    let d = daemon().await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let key_of = |out: RequestOutcome| client_key(&out);
    let web = key_of(
        request(&d, keys.path(), "web", &user.name, "web-*.dev.example")
            .await
            .expect("web-*.dev.example is granted"),
    );
    let app = key_of(
        request(&d, keys.path(), "app", &user.name, "app-?.q.example")
            .await
            .expect("app-?.q.example is granted"),
    );

    // Each certificate opens a session on a host its pattern names; the PAM module's
    // host-scope check refuses it on a host outside the pattern, including the one the
    // deny rule protects and the one `app-*` would have reached.
    for (key, inside, outside) in [
        (&web, "web-1.dev.example", "secret-1.dev.example"),
        (&app, "app-1.q.example", "app-database.q.example"),
    ] {
        let sshd = d.start_sshd(Some(inside)).await;
        let out = login(&sshd, &user, key).await;
        assert!(
            out.status.success(),
            "{inside}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("IN-ON-{}", user.name)
        );

        let sshd = d.start_sshd(Some(outside)).await;
        let out = login(&sshd, &user, key).await;
        assert_ne!(
            out.status.code(),
            Some(0),
            "{outside} admitted the certificate"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("IN-ON-"),
            "{outside} ran the command"
        );
        let denied = sshd.syslog.expect(
            &["event=session_denied", "reason=host_scope"],
            Duration::from_secs(10),
        );
        assert!(denied.contains(outside), "{denied}");
    }
}
