//! The CA over real sockets: issuance checked with `ssh-keygen -L`, mTLS
//! refusals, identity from the certificate, bad input on every field,
//! health checking and reflection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_ca::init::{ClientSan, tls_ca, tls_leaf};
use breakglass_cli::commands::{self, RequestArgs};
use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::{RequestCertificateRequest, WhoAmIRequest};
use breakglass_tests::daemon::{TestDaemon, breakglass_health};
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::ssh_keygen;
use time::OffsetDateTime;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn base_request(public_key: &std::path::Path) -> RequestCertificateRequest {
    let key = std::fs::read_to_string(public_key).unwrap();
    certificate_request(&key, "bgdemo", "localhost", 600, "INC-4411 primary down")
}

#[tokio::test(flavor = "multi_thread")]
async fn issued_certificate_shows_exactly_what_was_requested_in_ssh_keygen() {
    let d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let before = now();
    let outcome = commands::request(
        &d.target("sre"),
        &RequestArgs {
            hosts: vec!["localhost".into()],
            principals: vec!["bgdemo".into()],
            ttl: Duration::from_secs(600),
            reason: "INC-4411 primary down".into(),
            command: Some("/usr/bin/id".into()),
            source_addresses: vec!["127.0.0.0/8".into(), "::1".into()],
            public_key: Some(public.clone()),
            permit: vec!["permit-pty".into()],
            add_to_agent: None,
        },
    )
    .await
    .expect("request allowed");
    let cert_path = keys.path().join("id_ed25519-cert.pub");
    assert_eq!(outcome.paths.certificate, cert_path);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cert_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);

    let out = std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let r = &outcome.response;
    assert!(text.contains("user certificate"), "{text}");
    assert!(
        text.contains(&format!(
            "Key ID: \"breakglass/{}/sre@example.com\"",
            r.grant_id
        )),
        "{text}"
    );
    assert!(text.contains(&format!("Serial: {}", r.serial)), "{text}");
    // Exactly one principal, the one asked for.
    let principals: Vec<&str> = section(&text, "Principals:");
    assert_eq!(principals, ["bgdemo"], "{text}");
    let critical = section(&text, "Critical Options:");
    assert_eq!(
        critical,
        [
            "force-command /usr/bin/id",
            "source-address 127.0.0.0/8,::1/128"
        ],
        "{text}"
    );
    let ext: Vec<String> = section(&text, "Extensions:")
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        ext,
        [
            "grant-id@breakglass.dev",
            "hosts@breakglass.dev",
            "permit-pty",
            "tier@breakglass.dev"
        ],
        "{text}"
    );
    // Validity: backdated by the configured 2 minutes, valid_before = now + TTL.
    let va = r.valid_after as u64;
    let vb = r.valid_before as u64;
    assert!(
        va + 120 >= before && va + 120 <= now(),
        "valid_after {va} not backdated 2m"
    );
    assert!(
        vb >= before + 600 && vb <= now() + 600,
        "valid_before {vb} is not now + TTL"
    );
    assert!(vb - va <= 600 + 120);
    let fmt = |t: u64| chrono_like(t);
    assert!(
        text.contains(&format!("Valid: from {} to {}", fmt(va), fmt(vb))),
        "{text}"
    );
}

/// `ssh-keygen -L` prints local time; the tests run with TZ unset (UTC).
fn chrono_like(t: u64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp(t as i64).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The indented lines under a heading of `ssh-keygen -L` output.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| l.trim() != heading);
    lines.next();
    lines
        .take_while(|l| l.starts_with("                "))
        .map(str::trim)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_comes_from_the_client_certificate_san() {
    let d = TestDaemon::start().await;
    let who = commands::whoami(&d.target("sre")).await.unwrap();
    assert_eq!(who, "sre@example.com (via mtls; groups: sre)");
    let who = commands::whoami(&d.target("host")).await.unwrap();
    assert_eq!(who, "host://localhost (via mtls; groups: hosts)");
    // The admin socket identifies the local user by SO_PEERCRED.
    let who = commands::whoami(&d.admin()).await.unwrap();
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    assert!(who.starts_with(&format!("unix:{me} (via unix")), "{who}");
}

async fn whoami_status(target: &Target) -> Result<String, tonic::Status> {
    let mut c = connect::client(target).unwrap();
    c.who_am_i(WhoAmIRequest {})
        .await
        .map(|r| r.into_inner().identity)
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_refuses_missing_foreign_and_expired_client_certificates() {
    let d = TestDaemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, ck: &breakglass_ca::init::CertAndKey| {
        let c = dir.path().join(format!("{name}.pem"));
        let k = dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&c, &ck.cert_pem).unwrap();
        std::fs::write(&k, &ck.key_pem).unwrap();
        d.target_with(&c, &k)
    };
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86400);

    // Another CA, same SAN.
    let rogue = tls_ca("rogue CA").unwrap();
    let foreign = tls_leaf(
        &rogue,
        &[],
        Some(ClientSan::Email("sre@example.com")),
        now - day,
        now + day,
    )
    .unwrap();
    let e = whoami_status(&write("foreign", &foreign))
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // Our CA, but expired yesterday.
    let expired = tls_leaf(
        &d.tls_ca(),
        &[],
        Some(ClientSan::Email("sre@example.com")),
        now - day * 2,
        now - day,
    )
    .unwrap();
    let e = whoami_status(&write("expired", &expired))
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // No client certificate at all.
    connect::install_crypto_provider();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(d.path().join("tls/ca.pem")).unwrap(),
        ))
        .domain_name("localhost");
    let ch = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{}", d.port))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    let e = breakglass_proto::v1::break_glass_client::BreakGlassClient::new(ch)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // A valid certificate from our CA with another SAN is a different caller.
    let other = tls_leaf(
        &d.tls_ca(),
        &[],
        Some(ClientSan::Uri("spiffe://corp/sre/bob")),
        now - day,
        now + day,
    )
    .unwrap();
    assert_eq!(
        whoami_status(&write("bob", &other)).await.unwrap(),
        "spiffe://corp/sre/bob"
    );
    // The CLI explains a refused handshake instead of printing "transport error".
    let err = commands::whoami(&write("foreign2", &foreign))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 77, "{err}");
    assert!(err.to_string().contains("client certificate"), "{err}");
    // And the daemon still serves.
    assert_eq!(
        whoami_status(&d.target("sre")).await.unwrap(),
        "sre@example.com"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_on_every_field_is_refused_clearly_and_the_daemon_keeps_serving() {
    let d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    let good = ssh_keygen(keys.path(), "good", &["-t", "ed25519"]);
    let dsa = ssh_keygen(keys.path(), "dsa", &["-t", "dsa"]);
    let rsa1024 = ssh_keygen(keys.path(), "rsa1024", &["-t", "rsa", "-b", "1024"]);
    let rsa3072 = ssh_keygen(keys.path(), "rsa3072", &["-t", "rsa", "-b", "3072"]);
    let ecdsa = ssh_keygen(keys.path(), "ecdsa", &["-t", "ecdsa"]);
    let mut client = connect::client(&d.target("sre")).unwrap();

    type Edit = Box<dyn Fn(&mut RequestCertificateRequest)>;
    let cases: Vec<(&str, Edit, Code, &str)> = vec![
        (
            "empty reason",
            Box::new(|r| r.reason = " ".into()),
            Code::InvalidArgument,
            "reason",
        ),
        (
            "huge reason",
            Box::new(|r| r.reason = "x".repeat(100_000)),
            Code::InvalidArgument,
            "reason",
        ),
        (
            "reason with newline",
            Box::new(|r| r.reason = "a\nb".into()),
            Code::InvalidArgument,
            "reason",
        ),
        (
            "no principal",
            Box::new(|r| r.principals.clear()),
            Code::InvalidArgument,
            "principals",
        ),
        (
            "principal with comma",
            Box::new(|r| r.principals = vec!["a,b".into()]),
            Code::InvalidArgument,
            "principal",
        ),
        (
            "principal with newline",
            Box::new(|r| r.principals = vec!["a\nb".into()]),
            Code::InvalidArgument,
            "principal",
        ),
        (
            "principal star",
            Box::new(|r| r.principals = vec!["*".into()]),
            Code::InvalidArgument,
            "principal",
        ),
        (
            "principal with NUL",
            Box::new(|r| r.principals = vec!["a\0b".into()]),
            Code::InvalidArgument,
            "principal",
        ),
        (
            "no host",
            Box::new(|r| r.hosts.clear()),
            Code::InvalidArgument,
            "hosts",
        ),
        (
            "host with space",
            Box::new(|r| r.hosts = vec!["db 7".into()]),
            Code::InvalidArgument,
            "host",
        ),
        (
            "ttl 0",
            Box::new(|r| r.ttl_seconds = 0),
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "negative ttl",
            Box::new(|r| r.ttl_seconds = -600),
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "ttl of years",
            Box::new(|r| r.ttl_seconds = 3 * 365 * 86400),
            Code::InvalidArgument,
            "ttl",
        ),
        (
            "garbage public key",
            Box::new(|r| r.public_key = "ssh-ed25519 AAAA!!garbage".into()),
            Code::InvalidArgument,
            "public_key",
        ),
        (
            "empty public key",
            Box::new(|r| r.public_key.clear()),
            Code::InvalidArgument,
            "public_key",
        ),
        (
            "force-command with NUL",
            Box::new(|r| r.force_command = "/usr/bin/id\0rm".into()),
            Code::InvalidArgument,
            "command",
        ),
        (
            "force-command with newline",
            Box::new(|r| r.force_command = "/usr/bin/id\nrm -rf /".into()),
            Code::InvalidArgument,
            "command",
        ),
        (
            "bad source address",
            Box::new(|r| r.source_addresses = vec!["10.0.0.0/33".into()]),
            Code::InvalidArgument,
            "source_addresses",
        ),
        (
            "unknown extension",
            Box::new(|r| r.extensions = vec!["permit-everything".into()]),
            Code::InvalidArgument,
            "extensions",
        ),
        (
            "denied principal",
            Box::new(|r| r.principals = vec!["root".into()]),
            Code::PermissionDenied,
            "no-root",
        ),
        (
            "host outside policy",
            Box::new(|r| r.hosts = vec!["db-7.prod".into()]),
            Code::PermissionDenied,
            "host db-7.prod",
        ),
        (
            "ttl over rule",
            Box::new(|r| r.ttl_seconds = 7200),
            Code::PermissionDenied,
            "TTL 2h exceeds the 30m maximum",
        ),
    ];
    let keyed: Vec<(&str, &std::path::Path, Code, &str)> = vec![
        (
            "DSA key",
            &dsa,
            Code::InvalidArgument,
            "DSA keys are not accepted",
        ),
        (
            "1024-bit RSA key",
            &rsa1024,
            Code::InvalidArgument,
            "1024 bits is too weak",
        ),
    ];
    for (what, edit, code, needle) in &cases {
        let mut r = base_request(&good);
        edit(&mut r);
        let e = client.request_certificate(r).await.expect_err(what);
        assert_eq!(e.code(), *code, "{what}: {}", e.message());
        assert!(
            e.message().contains(needle),
            "{what}: {:?} lacks {needle:?}",
            e.message()
        );
    }
    for (what, key, code, needle) in keyed {
        let e = client
            .request_certificate(base_request(key))
            .await
            .expect_err(what);
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(e.message().contains(needle), "{what}: {:?}", e.message());
    }
    // Accepted key types still work after all that.
    for key in [&good, &rsa3072, &ecdsa] {
        client
            .request_certificate(base_request(key))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_checking_and_reflection_answer_generic_grpc_tools() {
    let d = TestDaemon::start().await;
    let ch = connect::channel(&d.target("sre")).unwrap();
    assert_eq!(breakglass_health(ch.clone()).await, ServingStatus::Serving);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"breakglass.v1.BreakGlass".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_keys_lists_the_signing_key_for_trusted_user_ca_keys() {
    let d = TestDaemon::start().await;
    let keys = commands::ca_keys(&d.target("host")).await.unwrap();
    let on_disk = std::fs::read_to_string(d.path().join("ssh_ca.pub")).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].trim(), on_disk.trim());
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_agent_loads_key_and_certificate_for_the_remaining_lifetime() {
    let d = TestDaemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent runs");
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let public = ssh_keygen(dir.path(), "id", &["-t", "ed25519"]);
    let outcome = commands::request(
        &d.target("sre"),
        &RequestArgs {
            hosts: vec!["localhost".into()],
            principals: vec!["bgdemo".into()],
            ttl: Duration::from_secs(300),
            reason: "agent test".into(),
            command: None,
            source_addresses: vec![],
            public_key: Some(public),
            permit: vec![],
            add_to_agent: Some(sock.clone()),
        },
    )
    .await;
    let listed = std::process::Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let outcome = outcome.expect("request with --add-to-agent");
    let text = String::from_utf8_lossy(&listed.stdout);
    // The agent holds the plain key and the certificate.
    assert!(text.contains("ED25519-CERT"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(outcome.response.valid_before > 0);
}

/// Several servers (`--server A --server B`): with nothing listening at A, calls go to B,
/// through the library and through the real `breakglass` binary's flags; with nothing
/// anywhere, the error names every address.
#[tokio::test(flavor = "multi_thread")]
async fn calls_go_to_the_next_server_when_one_cannot_be_reached() {
    let d = TestDaemon::start().await;
    let dead = format!("https://127.0.0.1:{}", breakglass_tests::sshd::free_port());
    let live = format!("https://127.0.0.1:{}", d.port);
    let Target::Tls {
        ca_cert,
        cert,
        key,
        server_name,
        ..
    } = d.target("sre")
    else {
        unreachable!("a TLS target")
    };
    let target = |url: &str, fallbacks: Vec<String>| Target::Tls {
        url: url.to_owned(),
        fallbacks,
        ca_cert: ca_cert.clone(),
        cert: cert.clone(),
        key: key.clone(),
        server_name: server_name.clone(),
    };
    let me = commands::whoami(&target(&dead, vec![live.clone()]))
        .await
        .expect("whoami through the second server");
    assert!(me.starts_with("sre@example.com"), "{me}");

    d.client_config("sre", "sre");
    let out = tokio::process::Command::new(breakglass_tests::breakglass_bin())
        .arg("--config")
        .arg(d.path().join("clients/sre.toml"))
        .args(["--server", &dead, "--server", &live, "whoami"])
        .env_remove("BREAKGLASS_CONFIG")
        .env_remove("BREAKGLASS_SERVER")
        .output()
        .await
        .expect("breakglass runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sre@example.com"));

    let other_dead = format!("https://127.0.0.1:{}", breakglass_tests::sshd::free_port());
    let e = commands::whoami(&target(&dead, vec![other_dead.clone()]))
        .await
        .unwrap_err();
    let e = e.to_string();
    assert!(e.contains(&dead) && e.contains(&other_dead), "{e}");
    d.stop().await;
}
