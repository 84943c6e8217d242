//! Host enrollment and disabled identities, end to end: a real daemon over mTLS (its admin
//! socket for `breakglass-ca token create` / `identity disable`), the CLI's `host enroll`,
//! `host doctor` against a real `sshd -T` and the built PAM module, `host ship`, `host
//! sync-krl`, `host renew`; and disabling an identity whose session is open on a real
//! sshd (the revocation harness: module, guard, `host watch-revocations`).
//!
//! - token create → enroll → doctor passes → ship and sync-krl work → renew → the token
//!   cannot be used twice; the log holds the tokens' hashes, never the tokens;
//! - an expired token and an unknown one are refused;
//! - a wrong --ca-fingerprint is refused before anything is sent: the daemon recorded no
//!   use of the token, which still enrolls afterwards;
//! - calls without a client certificate: only the open enrollment calls are answered
//!   (rate-limited per address); the others get UNAUTHENTICATED saying how to get one;
//! - disable: the identity's next call is refused and its live session ends.
//!
//! Needs root (sshd, PAM, test users; the doctor's file checks expect root-owned files).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use breakglass_ca::admin::{self, AdminSocket, IdentityDisableArgs, TokenCreateArgs};
use breakglass_ca::init::CONFIG_FILE;
use breakglass_cli::error::CliError;
use breakglass_cli::host::doctor::{self, DoctorArgs, Level};
use breakglass_cli::host::enroll::{self, EnrollArgs, RenewArgs, Renewed};
use breakglass_cli::host::krl_sync::{self, SyncKrlArgs};
use breakglass_cli::host::ship::{self, ShipArgs};
use breakglass_cli::host::witness::WitnessArgs;
use breakglass_cli::settings::Overrides;
use breakglass_proto::audit::EventKind;
use breakglass_proto::enrollment::{ca_fingerprint, join_token_hash};
use breakglass_proto::spool::{SessionEvent, SessionRecord};
use breakglass_proto::v1::WatchRevocationsRequest;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::host::{Krl, TestHost, session_end};
use breakglass_tests::revocation::{self, audit_events, issue};
use breakglass_tests::sshd::{TestUser, pam_artifacts, require_root};
use breakglass_tests::{can_run, ssh_keygen};

const SECURITY: &str = "/lib/x86_64-linux-gnu/security";
const SSHD: &str = "/usr/sbin/sshd";

fn runnable(test: &str) -> bool {
    require_root(test)
        && can_run("OpenSSH server (/usr/sbin/sshd)", Path::new(SSHD).exists())
        && can_run(
            "PAM modules in /lib/x86_64-linux-gnu/security",
            Path::new(SECURITY).join("pam_loginuid.so").exists(),
        )
}

/// The daemon's admin socket, as `breakglass-ca token create` finds it.
fn socket(d: &TestDaemon) -> AdminSocket {
    AdminSocket {
        config: d.path().join(CONFIG_FILE),
        socket: Some(d.admin_socket.clone()),
    }
}

/// `breakglass-ca token create --host HOST [--ttl] --count N`: the tokens and what it told
/// the administrator.
async fn tokens(
    d: &TestDaemon,
    host: &str,
    ttl: Option<Duration>,
    count: u32,
) -> (Vec<String>, String) {
    let p = admin::token_create(&TokenCreateArgs {
        host: host.into(),
        ttl,
        count,
        socket: socket(d),
    })
    .await
    .expect("token create");
    (p.out.lines().map(str::to_owned).collect(), p.err)
}

/// A host's directory: where `host enroll` writes, and the sshd/PAM files of `doctor`.
struct HostDir {
    dir: tempfile::TempDir,
}

impl HostDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn enroll_args(&self, token: &str, fp: &str) -> EnrollArgs {
        EnrollArgs {
            token: token.into(),
            ca_fingerprint: fp.into(),
            dir: self.path("etc"),
            ca_keys: self.path("ca.pub"),
            krl: self.path("revoked.krl"),
            witness_state: self.path("witness"),
        }
    }
    fn config(&self) -> Overrides {
        Overrides {
            config: Some(self.path("etc/host.toml")),
            ..Overrides::default()
        }
    }
    fn witness(&self) -> WitnessArgs {
        WitnessArgs::default().with_config(&self.config()).unwrap()
    }
}

/// A certificate issued, as the log says: identity, method, the token it used up.
type Issued = (String, String, Option<[u8; 32]>);

/// The enrollment events of the log: (tokens created by hash, certificates issued).
fn enrollment_events(d: &TestDaemon) -> (Vec<[u8; 32]>, Vec<Issued>) {
    let mut created = Vec::new();
    let mut issued = Vec::new();
    for (_, e) in audit_events(d) {
        match e.kind {
            EventKind::JoinTokenCreated(t) => created.push(t.token_sha256),
            EventKind::ClientCertificateIssued(c) => {
                issued.push((c.identity, c.method, c.join_token_sha256));
            }
            _ => {}
        }
    }
    (created, issued)
}

/// Every byte the daemon wrote to its audit directory.
fn audit_bytes(d: &TestDaemon) -> Vec<u8> {
    fn walk(p: &Path, out: &mut Vec<u8>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = Vec::new();
    walk(&d.path().join("audit"), &mut out);
    out
}

/// `host doctor` on the enrolled host: sshd -T and the PAM service on its files.
async fn doctor_report(h: &HostDir) -> doctor::Report {
    let artifacts = tokio::task::spawn_blocking(pam_artifacts).await.unwrap();
    let d = h.dir.path();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let spool = h.path("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sshd = h.path("sshd-enrolled");
    std::fs::copy(SSHD, &sshd).unwrap();
    ssh_keygen(d, "host_key", &["-t", "ed25519"]);
    std::fs::write(
        h.path("sshd_config"),
        format!(
            "Port 2\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM yes\n\
             TrustedUserCAKeys {}\nRevokedKeys {}\nAuthorizedKeysFile none\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
            h.path("host_key").display(),
            h.path("sshd.pid").display(),
            h.path("ca.pub").display(),
            h.path("revoked.krl").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(h.path("pam")).unwrap();
    let pam = h.path("pam/sshd-enrolled");
    std::fs::write(
        &pam,
        [
            format!("auth required {SECURITY}/pam_deny.so"),
            format!("account required {SECURITY}/pam_unix.so"),
            format!("session required {SECURITY}/pam_loginuid.so"),
            format!(
                "session required {} ca_keys={} krl={} guard={} spool={}",
                artifacts.module.display(),
                h.path("ca.pub").display(),
                h.path("revoked.krl").display(),
                artifacts.guard.display(),
                spool.display()
            ),
            format!("session required {SECURITY}/pam_unix.so"),
            format!("session required {SECURITY}/pam_env.so"),
            String::new(),
        ]
        .join("\n"),
    )
    .unwrap();
    let args = DoctorArgs {
        sshd,
        sshd_config: h.path("sshd_config"),
        pam_service: Some(pam),
        module_dir: vec![],
        krl_max_age: None,
        guard: None,
        spool: None,
        witness: h.witness(),
    };
    doctor::check(&args, &h.config()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_enrolls_with_a_token_passes_doctor_ships_syncs_renews_and_the_token_is_single_use()
{
    let test =
        "a_host_enrolls_with_a_token_passes_doctor_ships_syncs_renews_and_the_token_is_single_use";
    if !runnable(test) {
        return;
    }
    let d = TestDaemon::start().await;
    let fp = d.tls_ca_fingerprint();
    let (toks, told) = tokens(&d, "db-9", None, 2).await;
    assert_eq!(toks.len(), 2, "{toks:?}");
    assert!(told.contains("host://db-9"), "{told}");
    // The test daemon's file listens on port 0: the address is left for the administrator.
    assert!(
        told.contains(&format!(
            "breakglass host enroll --server https://CA-HOST:PORT --token TOKEN --ca-fingerprint {fp}"
        )),
        "{told}"
    );
    // The log holds the tokens' hashes, and nowhere the tokens.
    let (created, issued) = enrollment_events(&d);
    let hashes: Vec<[u8; 32]> = toks.iter().map(|t| join_token_hash(t).unwrap()).collect();
    assert_eq!(created, hashes);
    assert!(issued.is_empty());
    let bytes = audit_bytes(&d);
    for t in &toks {
        assert!(
            !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
            "a token is in the audit directory"
        );
    }

    // Enroll: the key made here (0600), the identity host://db-9 (not in the config).
    let h = HostDir::new();
    let enrolled = enroll::enroll(&h.enroll_args(&toks[0], &fp), &d.bare_server())
        .await
        .expect("host enroll");
    assert_eq!(enrolled.identity, "host://db-9");
    let key_mode = std::fs::metadata(h.path("etc/host.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(h.path("revoked.krl").exists(), "no first KRL");
    let ca_keys = std::fs::read_to_string(h.path("ca.pub")).unwrap();
    let daemon_keys = breakglass_cli::commands::ca_keys(&d.target("host"))
        .await
        .unwrap();
    assert_eq!(ca_keys.trim(), daemon_keys.join("\n"));
    let (_, issued) = enrollment_events(&d);
    assert_eq!(
        issued,
        vec![(
            "host://db-9".to_owned(),
            "enroll".to_owned(),
            Some(hashes[0])
        )]
    );

    // host doctor passes with the enrolled identity.
    let r = doctor_report(&h).await;
    let text = r.render();
    assert_eq!(r.exit_code(), 0, "{text}");
    assert!(r.findings.iter().all(|f| f.level == Level::Ok), "{text}");
    assert!(
        text.contains("reachable as host://db-9 (via mtls)"),
        "{text}"
    );

    // host ship delivers a record as host db-9; host sync-krl works.
    let target = h.config().resolve().unwrap();
    let spool = h.path("ship-spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let session = breakglass_proto::spool::session_id("db-9", None, 4242, now * 1000);
    let record = SessionRecord {
        version: breakglass_proto::spool::RECORD_VERSION,
        record_id: breakglass_proto::spool::record_id(&session, SessionEvent::Deny),
        session,
        event: SessionEvent::Deny,
        time: now,
        host: "db-9".into(),
        user: "nobody".into(),
        grant: None,
        serial: None,
        key_id: None,
        requester: None,
        tier: None,
        rhost: Some("127.0.0.1".into()),
        tty: Some("ssh".into()),
        service: Some("sshd".into()),
        pid: 4242,
        audit_session: None,
        start: now,
        expires: None,
        reason: Some("no_certificate".into()),
        detail: Some("enrollment test".into()),
        duration: None,
        killed: None,
        recording_sha256: None,
        recording_bytes: None,
        recording_duration_ms: None,
    };
    std::fs::write(spool.join(record.file_name()), record.to_json().unwrap()).unwrap();
    let shipped = ship::ship(
        &target,
        &ShipArgs {
            spool: spool.clone(),
            once: true,
            retry_for: Duration::from_secs(5),
            lock_wait: Duration::from_secs(5),
            witness: h.witness(),
        },
    )
    .await
    .expect("host ship as the enrolled host");
    assert_eq!(shipped.appended, 1, "{shipped:?}");
    assert!(
        audit_events(&d)
            .iter()
            .any(|(_, e)| e.kind.session().is_some_and(|s| s.host == "db-9")),
        "the shipped record is not in the log"
    );
    krl_sync::sync(
        &target,
        &SyncKrlArgs {
            out: h.path("revoked.krl"),
            ca_keys: Some(h.path("ca.pub")),
            state: None,
            witness: h.witness(),
        },
    )
    .await
    .expect("host sync-krl as the enrolled host");

    // host renew: not due yet; forced, a new key and certificate that work.
    let before = std::fs::read(h.path("etc/host.crt")).unwrap();
    let key_before = std::fs::read(h.path("etc/host.key")).unwrap();
    assert!(matches!(
        enroll::renew(&RenewArgs { force: false }, &h.config())
            .await
            .unwrap(),
        Renewed::NotDue { .. }
    ));
    assert_eq!(std::fs::read(h.path("etc/host.crt")).unwrap(), before);
    let renewed = enroll::renew(&RenewArgs { force: true }, &h.config())
        .await
        .expect("host renew");
    assert!(matches!(renewed, Renewed::Renewed { .. }), "{renewed:?}");
    assert_ne!(std::fs::read(h.path("etc/host.crt")).unwrap(), before);
    assert_ne!(std::fs::read(h.path("etc/host.key")).unwrap(), key_before);
    let key_mode = std::fs::metadata(h.path("etc/host.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let me = breakglass_cli::commands::whoami(&target)
        .await
        .expect("whoami with the renewed certificate");
    assert!(
        me.starts_with("host://db-9 (via mtls; groups: hosts"),
        "{me}"
    );
    // A crash between the renewal's two renames (new key, old certificate, the new one
    // still at host.crt.next): the next command finishes the renewal and works.
    let renewed_cert = std::fs::read(h.path("etc/host.crt")).unwrap();
    std::fs::write(h.path("etc/host.crt.next"), &renewed_cert).unwrap();
    std::fs::write(h.path("etc/host.crt"), &before).unwrap();
    let me = breakglass_cli::commands::whoami(&target)
        .await
        .expect("whoami after a renewal interrupted between its renames");
    assert!(me.starts_with("host://db-9"), "{me}");
    assert_eq!(std::fs::read(h.path("etc/host.crt")).unwrap(), renewed_cert);
    assert!(!h.path("etc/host.crt.next").exists());
    let (_, issued) = enrollment_events(&d);
    assert_eq!(issued.len(), 2);
    assert_eq!(
        issued[1],
        ("host://db-9".to_owned(), "renew".to_owned(), None)
    );

    // The token cannot be used twice, not even by the same host.
    let again = HostDir::new();
    let e = enroll::enroll(&again.enroll_args(&toks[0], &fp), &d.bare_server())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("was used already"), "{e}");
    assert_eq!(e.exit_code(), 77, "{e:?}");
    assert!(!again.path("etc/host.key").exists());
    assert_eq!(enrollment_events(&d).1.len(), 2);

    // Disabled, the enrolled host's next call is refused, and the revocation stream it
    // has open ends.
    let mut stream = RevocationsClient::new(breakglass_cli::connect::channel(&target).unwrap())
        .watch_revocations(WatchRevocationsRequest { from_version: 0 })
        .await
        .expect("the revocation stream opens")
        .into_inner();
    admin::identity_disable(&IdentityDisableArgs {
        identity: "host://db-9".into(),
        reason: "decommissioned".into(),
        socket: socket(&d),
    })
    .await
    .expect("identity disable");
    let e = breakglass_cli::commands::whoami(&target).await.unwrap_err();
    assert!(e.to_string().contains("host://db-9 is disabled"), "{e}");
    assert!(e.to_string().contains("decommissioned"), "{e}");
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the disabled host's revocation stream is still open after 30 s");
    let s = ended.expect_err("the stream ends with the refusal");
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("host://db-9 is disabled"), "{s:?}");
    // And its other token no longer enrolls it.
    let e = enroll::enroll(&HostDir::new().enroll_args(&toks[1], &fp), &d.bare_server())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is disabled"), "{e}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fingerprint_is_refused_before_the_token_is_sent() {
    let d = TestDaemon::start().await;
    let (toks, _) = tokens(&d, "db-10", None, 1).await;
    let h = HostDir::new();
    let wrong = ca_fingerprint(b"some other CA");
    let e = enroll::enroll(&h.enroll_args(&toks[0], &wrong), &d.bare_server())
        .await
        .unwrap_err();
    assert!(matches!(e, CliError::Verification(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("nothing was sent") && text.contains(&wrong),
        "{text}"
    );
    // Nothing was written, and the daemon recorded no use of the token.
    assert!(!h.path("etc").exists());
    assert!(enrollment_events(&d).1.is_empty());
    // A malformed fingerprint is refused before any contact.
    let e = enroll::enroll(&h.enroll_args(&toks[0], "MD5:aa"), &d.bare_server())
        .await
        .unwrap_err();
    assert!(matches!(e, CliError::Usage(_)), "{e:?}");
    // The token is unused: with the right fingerprint it enrolls.
    let ok = enroll::enroll(
        &h.enroll_args(&toks[0], &d.tls_ca_fingerprint()),
        &d.bare_server(),
    )
    .await
    .expect("enroll with the right fingerprint");
    assert_eq!(ok.identity, "host://db-10");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_unknown_tokens_are_refused() {
    let d = TestDaemon::start().await;
    let fp = d.tls_ca_fingerprint();
    let (toks, _) = tokens(&d, "db-11", Some(Duration::from_secs(1)), 1).await;
    // Past its expiry (a wait, not a timed assertion).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = enroll::enroll(&HostDir::new().enroll_args(&toks[0], &fp), &d.bare_server())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expired at"), "{e}");
    assert_eq!(e.exit_code(), 77, "{e:?}");
    let unknown = breakglass_proto::enrollment::join_token(&[9; 32]);
    let e = enroll::enroll(&HostDir::new().enroll_args(&unknown, &fp), &d.bare_server())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("join token is not known"), "{e}");
    let e = enroll::enroll(
        &HostDir::new().enroll_args("not-a-token", &fp),
        &d.bare_server(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    assert!(enrollment_events(&d).1.is_empty());
    // A person may not create tokens; only admins.
    let e = breakglass_cli::connect::channel(&d.target("sre")).unwrap();
    let status = breakglass_proto::v1::identities_client::IdentitiesClient::new(e)
        .create_join_tokens(breakglass_proto::v1::CreateJoinTokensRequest {
            host: "db-12".into(),
            ttl_seconds: 0,
            count: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_only_the_open_calls_answer_and_they_are_rate_limited() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let d = TestDaemon::start_with(|c| {
        c.replace(
            "client_ca_key = \"tls/ca-key.pem\"",
            "client_ca_key = \"tls/ca-key.pem\"\nopen_calls_per_minute = 3",
        )
    })
    .await;
    breakglass_cli::connect::install_crypto_provider();
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", d.port))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(
                    std::fs::read(d.path().join("tls/ca.pem")).unwrap(),
                ))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection without a client certificate is accepted");
    let mut bg = breakglass_proto::v1::break_glass_client::BreakGlassClient::new(channel.clone());
    let s = bg
        .who_am_i(breakglass_proto::v1::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    assert!(
        s.message().contains("breakglass host enroll") && s.message().contains("breakglass login"),
        "{}",
        s.message()
    );
    let mut en = breakglass_proto::v1::enrollment_client::EnrollmentClient::new(channel);
    let s = en
        .renew_host(breakglass_proto::v1::RenewHostRequest { csr_der: vec![] })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    for _ in 0..3 {
        let ca = en
            .get_tls_ca(breakglass_proto::v1::GetTlsCaRequest {})
            .await
            .expect("GetTlsCa without a certificate");
        assert_eq!(ca.into_inner().fingerprint, d.tls_ca_fingerprint());
    }
    let s = en
        .get_tls_ca(breakglass_proto::v1::GetTlsCaRequest {})
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("open_calls_per_minute"),
        "{}",
        s.message()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_an_identity_refuses_its_next_call_and_ends_its_live_session() {
    if !require_root("a real sshd, PAM and a test user") {
        return;
    }
    let d = revocation::daemon().await;
    let mut h = TestHost::start(&d, "db-7", Krl::Synced).await;
    h.start_watcher();
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");
    let g = issue(&sre, keys.path(), "k", &user.name, "db-7", 600).await;
    let (session, _) = h.open(&user.name, &g, &[]).await;

    let out = admin::identity_disable(&IdentityDisableArgs {
        identity: "sre@example.com".into(),
        reason: "left the company".into(),
        socket: socket(&d),
    })
    .await
    .expect("identity disable");
    assert!(out.contains("sre@example.com disabled"), "{out}");
    assert!(out.contains(&g.grant_id), "{out}");

    // The identity's next call is refused, whatever its certificate says.
    let e = breakglass_cli::commands::whoami(&sre).await.unwrap_err();
    assert!(e.to_string().contains("sre@example.com is disabled"), "{e}");
    assert!(e.to_string().contains("left the company"), "{e}");
    // Its live session on the host ends (the revocation path).
    let (end, session) = session_end(session, Duration::from_secs(10)).await;
    assert!(
        end.is_some(),
        "the session is still running: {}\n{}",
        session.output(),
        h.sshd.log()
    );
    let events = audit_events(&d);
    let disabled = events
        .iter()
        .position(|(_, e)| matches!(&e.kind, EventKind::IdentityDisabled(x) if x.identity == "sre@example.com" && x.reason == "left the company"))
        .expect("identity_disabled in the log");
    let revoked = events
        .iter()
        .position(|(_, e)| matches!(&e.kind, EventKind::GrantRevoked(r) if r.serial == g.serial))
        .expect("grant_revoked in the log");
    assert!(
        disabled < revoked,
        "the identity is disabled before its grants are revoked"
    );
    // Disabling again records nothing new.
    let out = admin::identity_disable(&IdentityDisableArgs {
        identity: "sre@example.com".into(),
        reason: "again".into(),
        socket: socket(&d),
    })
    .await
    .unwrap();
    assert!(out.contains("was disabled already"), "{out}");
    drop(session);
    h.stop().await;
    // The log holds it: after a restart (state from the snapshot and the log) it stays.
    let mut d = d;
    d.restart().await;
    let e = breakglass_cli::commands::whoami(&sre).await.unwrap_err();
    assert!(e.to_string().contains("sre@example.com is disabled"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_approved_after_its_requester_was_disabled_is_denied_not_issued() {
    use breakglass_cli::approvals::{self, RequestMode, RequestResult};
    let d = TestDaemon::start().await;
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    // The dev config's `elevated` tier: one approval.
    let args = revocation::request_args(
        &public,
        "bgdemo",
        "web-1.staging.example",
        600,
        "INC-9 queue",
    );
    let mode = RequestMode {
        emergency: false,
        no_wait: true,
    };
    let info = match approvals::request_live(&d.target("sre"), &args, mode, |_| {})
        .await
        .expect("request created")
    {
        RequestResult::Pending(i) => *i,
        RequestResult::Issued(_) => panic!("issued without approval"),
    };
    admin::identity_disable(&IdentityDisableArgs {
        identity: "sre@example.com".into(),
        reason: "left the company".into(),
        socket: socket(&d),
    })
    .await
    .expect("identity disable");
    // The approver is told: the daemon denied it.
    let after = approvals::approve(&d.target("approver"), &info.request_id, "ok")
        .await
        .expect("the approval is recorded");
    assert_eq!(
        breakglass_proto::v1::RequestState::try_from(after.state),
        Ok(breakglass_proto::v1::RequestState::Denied),
        "{after:?}"
    );
    assert_eq!(after.decided_by, "daemon");
    assert!(after.grant_id.is_empty(), "{after:?}");
    assert_eq!(
        after.decision_reason,
        "the requester sre@example.com is disabled: left the company"
    );
    let events = audit_events(&d);
    assert!(
        events.iter().any(|(_, e)| matches!(&e.kind,
            EventKind::RequestDenied(r) if r.request_id.to_string() == info.request_id
                && r.reason.contains("is disabled"))),
        "no request_denied for the disabled requester"
    );
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(&e.kind, EventKind::GrantIssued(_))),
        "a certificate was issued to a disabled identity"
    );
    d.stop().await;
}
