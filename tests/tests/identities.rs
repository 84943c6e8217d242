//! Who may call what, against an in-process daemon over real mTLS sockets: the `unix:`
//! namespace belongs to the admin socket (a certificate claiming it is refused at the TLS
//! handshake), identities not in `[[identities]]` may only ask who they are, the
//! revocation list and stream are for hosts and admins, and malformed protobuf is the
//! caller's fault (`INVALID_ARGUMENT`), not the daemon's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use breakglass_ca::init::{CertAndKey, ClientSan, tls_leaf};
use breakglass_cli::commands;
use breakglass_cli::connect;
use breakglass_cli::revoke;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_proto::v1::{
    AppendHostRecordsRequest, GetCaPublicKeysRequest, GetCheckpointRequest,
    GetRevocationListRequest, ListPendingRequest, RevokeRequest, WatchRevocationsRequest,
    WhoAmIRequest,
};
use breakglass_tests::daemon::{TestDaemon, breakglass_health};
use breakglass_tests::revocation::{self, ADMIN};
use breakglass_tests::revocation::{certificate_request, request_args};
use breakglass_tests::ssh_keygen;
use prost::bytes::{Buf, BufMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Writes a client certificate from the daemon's TLS CA with exactly `san`.
fn client_with(d: &TestDaemon, name: &str, san: ClientSan) -> (Target, CertAndKey) {
    let now = time::OffsetDateTime::now_utc();
    let day = Duration::from_secs(86400);
    let leaf = tls_leaf(&d.tls_ca(), &[], Some(san), now - day, now + day).unwrap();
    let cert = d.path().join(format!("clients/{name}.pem"));
    let key = d.path().join(format!("clients/{name}-key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    (d.target_with(&cert, &key), leaf)
}

/// What a raw TLS client with `leaf` gets from the daemon after sending the HTTP/2
/// preface: the server's first bytes (its SETTINGS frame), or the error that ended the
/// connection (a refused client certificate is a TLS alert, after the client's side of
/// the TLS 1.3 handshake has finished).
fn raw_tls(d: &TestDaemon, leaf: &CertAndKey) -> Result<Vec<u8>, std::io::Error> {
    connect::install_crypto_provider();
    let ca = CertificateDer::from_pem_slice(
        &std::fs::read(d.path().join("tls/ca.pem")).expect("dev TLS CA"),
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
    tls.flush()?;
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

/// The TLS alert a raw connection ended with, if any.
fn alert(r: &Result<Vec<u8>, std::io::Error>) -> Option<rustls::AlertDescription> {
    let e = r.as_ref().err()?;
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_claiming_unix_root_is_refused_at_the_handshake() {
    let d = TestDaemon::start().await;
    // The control: a valid certificate completes the handshake and gets HTTP/2 SETTINGS.
    let (_, sre) = client_with(&d, "sre-raw", ClientSan::Email("sre@example.com"));
    let (_, root) = client_with(&d, "fake-root", ClientSan::Uri("unix:root"));
    let (_, upper) = client_with(&d, "fake-root-upper", ClientSan::Uri("UNIX:root"));
    let (_, mail) = client_with(&d, "fake-root-mail", ClientSan::Email("unix:root"));
    let (ok, refused) = {
        let d = &d;
        let sre = &sre;
        tokio::task::block_in_place(|| {
            (
                raw_tls(d, sre),
                [&root, &upper, &mail].map(|leaf| raw_tls(d, leaf)),
            )
        })
    };
    let settings = ok.expect("the SRE's handshake completes");
    assert!(
        settings.len() >= 9 && settings[3] == 0x04,
        "HTTP/2 SETTINGS frame expected: {settings:?}"
    );
    for r in &refused {
        assert_eq!(
            alert(r),
            Some(rustls::AlertDescription::CertificateUnknown),
            "{r:?}"
        );
    }

    // Through gRPC the call never reaches the API: no status from the daemon's layers
    // (UNAUTHENTICATED, PERMISSION_DENIED), a failed connection the CLI explains.
    let (root_target, _) = client_with(&d, "fake-root-grpc", ClientSan::Uri("unix:root"));
    let e = connect::client(&root_target)
        .unwrap()
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert!(
        !matches!(
            e.code(),
            Code::Ok | Code::Unauthenticated | Code::PermissionDenied
        ),
        "{e:?}"
    );
    let e = commands::whoami(&root_target).await.unwrap_err();
    assert_eq!(e.exit_code(), 77, "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");

    // The admin socket is still the one way to be unix:<user>, and the daemon serves on.
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let who = commands::whoami(&d.admin()).await.unwrap();
    assert!(who.starts_with(&format!("unix:{me} (via unix")), "{who}");
    assert_eq!(
        commands::whoami(&d.target("sre")).await.unwrap(),
        "sre@example.com (via mtls; groups: sre)"
    );
}

/// Asserts that `r` is the daemon's refusal of an unknown identity.
fn assert_unknown<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) {
    let e = r.expect_err(what);
    assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    assert!(
        e.message()
            .contains("stranger@example.com is not a known identity")
            && e.message().contains("[[identities]]"),
        "{what}: {}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_identity_may_only_ask_who_it_is() {
    let d = TestDaemon::start().await;
    let stranger = d.new_client("stranger", "stranger@example.com");
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "k", &["-t", "ed25519"]);

    // WhoAmI answers, so the stranger learns what to ask the operators to list.
    assert_eq!(
        commands::whoami(&stranger).await.unwrap(),
        "stranger@example.com (via mtls; groups: none)"
    );
    // Health and reflection reveal nothing of the daemon's state and stay open.
    let ch = connect::channel(&stranger).unwrap();
    assert_eq!(breakglass_health(ch.clone()).await, ServingStatus::Serving);

    // Everything else: PERMISSION_DENIED saying how to get listed.
    let mut bg = BreakGlassClient::new(ch.clone());
    let key = std::fs::read_to_string(&public).unwrap();
    let request = certificate_request(&key, "bgdemo", "localhost", 300, "INC-1 who am I");
    assert_unknown("request", bg.request_certificate(request.clone()).await);
    assert_unknown("create", bg.create_request(request).await);
    assert_unknown("pending", bg.list_pending(ListPendingRequest {}).await);
    assert_unknown(
        "ca keys",
        bg.get_ca_public_keys(GetCaPublicKeysRequest {}).await,
    );
    let mut rev = RevocationsClient::new(ch.clone());
    assert_unknown(
        "revoke",
        rev.revoke(RevokeRequest {
            target: Some(Selector::Requester("sre@example.com".into())),
            reason: "INC-1 not mine".into(),
        })
        .await,
    );
    assert_unknown(
        "revocation list",
        rev.get_revocation_list(GetRevocationListRequest {}).await,
    );
    assert_unknown(
        "watch revocations",
        rev.watch_revocations(WatchRevocationsRequest { from_version: 0 })
            .await,
    );
    assert_unknown(
        "audit checkpoint",
        AuditClient::new(ch.clone())
            .get_checkpoint(GetCheckpointRequest {})
            .await,
    );
    assert_unknown(
        "host records",
        HostAgentClient::new(ch)
            .append_host_records(AppendHostRecordsRequest { records: vec![] })
            .await,
    );

    // The CLI shows the message and exits 77.
    let a = request_args(&public, "bgdemo", "localhost", 300, "INC-1 who am I");
    let e = commands::request(&stranger, &a).await.unwrap_err();
    assert_eq!(e.exit_code(), 77, "{e}");
    assert!(e.to_string().contains("ask the CA's operators"), "{e}");

    // A host-shaped identity that is not listed is just as unknown.
    let unlisted_host = d.new_client("db-9", "host://db-9");
    let e = RevocationsClient::new(connect::channel(&unlisted_host).unwrap())
        .get_revocation_list(GetRevocationListRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("host://db-9 is not a known identity"),
        "{e:?}"
    );
    // Listed callers are unaffected.
    BreakGlassClient::new(connect::channel(&d.target("sre")).unwrap())
        .list_pending(ListPendingRequest {})
        .await
        .unwrap();
}

/// The KRL and the first notice of the revocation stream, as `target`.
async fn krl_and_watch(target: &Target) -> Result<(u64, String), tonic::Status> {
    let mut c = RevocationsClient::new(connect::channel(target).unwrap());
    let krl = c
        .get_revocation_list(GetRevocationListRequest {})
        .await?
        .into_inner();
    let mut stream = c
        .watch_revocations(WatchRevocationsRequest { from_version: 0 })
        .await?
        .into_inner();
    let first = loop {
        let n = stream.message().await?.expect("the stream stays open");
        if !n.heartbeat {
            break n;
        }
    };
    Ok((krl.version, first.grant_id))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_revocation_list_and_stream_are_for_hosts_and_admins_only() {
    let d = revocation::daemon().await;
    let keys = tempfile::tempdir().unwrap();
    let g = revocation::issue(&d.target("sre"), keys.path(), "a", "alice", "db-7", 600).await;
    revoke::revoke(
        &d.target("sre"),
        RevokeRequest {
            target: Some(Selector::GrantId(g.grant_id.clone())),
            reason: "INC-2 key exposed".into(),
        },
    )
    .await
    .expect("a requester may still revoke their own grant");

    // Known people who are neither hosts nor admins: refused, told who may.
    for name in ["sre", "approver", "auditor"] {
        let e = krl_and_watch(&d.target(name)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{name}: {e:?}");
        assert!(
            e.message().contains("GetRevocationList")
                && e.message().contains("are for hosts")
                && e.message().contains("admin_groups"),
            "{name}: {}",
            e.message()
        );
        let mut c = RevocationsClient::new(connect::channel(&d.target(name)).unwrap());
        let e = c
            .watch_revocations(WatchRevocationsRequest { from_version: 0 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{name}: {e:?}");
        assert!(e.message().contains("WatchRevocations"), "{}", e.message());
    }
    // `breakglass host sync-krl` with a person's certificate says so (exit 77).
    let out = keys.path().join("revoked.krl");
    let e = breakglass_cli::host::krl_sync::sync(
        &d.target("sre"),
        &breakglass_cli::host::krl_sync::SyncKrlArgs {
            out: out.clone(),
            ca_keys: None,
            state: None,
            witness: d.witness_args("sre", None),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.exit_code(), 77, "{e}");

    // Hosts (sample host://localhost, host://db-7), an admin by group, and the admin
    // socket: the KRL and the stream, with the revocation in it.
    let db7 = d.new_client("db7", "host://db-7");
    let admin = d.new_client("admin", ADMIN);
    for (name, target) in [
        ("host://localhost", d.target("host")),
        ("host://db-7", db7.clone()),
        (ADMIN, admin),
        ("admin socket", d.admin()),
    ] {
        let (version, first) = krl_and_watch(&target)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(version >= 1, "{name}: KRL version {version}");
        assert_eq!(first, g.grant_id, "{name}");
    }
    let synced = breakglass_cli::host::krl_sync::sync(
        &db7,
        &breakglass_cli::host::krl_sync::SyncKrlArgs {
            out: out.clone(),
            ca_keys: None,
            state: None,
            witness: d.witness_args("db7", None),
        },
    )
    .await
    .expect("a host syncs the KRL");
    assert!(matches!(
        synced,
        breakglass_cli::host::krl_sync::Synced::Installed { .. }
    ));
    assert!(Path::new(&out).exists());
}

/// Sends raw bytes as the request message (no protobuf encoding) and reads raw replies.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

#[derive(Clone, Copy, Debug, Default)]
struct RawCoder;

impl tonic::codec::Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

/// Calls `path` as `target` with `bytes` as the (unary or server-streaming) request.
async fn raw_call(target: &Target, path: &'static str, bytes: &[u8]) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(connect::channel(target).unwrap());
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let r = grpc
        .server_streaming(tonic::Request::new(bytes.to_vec()), path, RawCodec)
        .await;
    match r {
        Err(s) => s,
        Ok(resp) => {
            let mut stream = resp.into_inner();
            match stream.message().await {
                Err(s) => s,
                Ok(m) => tonic::Status::ok(format!("answered {m:?}")),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_protobuf_is_invalid_argument_not_internal() {
    let d = TestDaemon::start().await;
    let sre = d.target("sre");
    // Field 1 (public_key, length-delimited) announcing 100 bytes that never come; an
    // invalid wire type (7); a varint that never ends.
    let truncated: &[u8] = &[0x0a, 0x64, b's', b's', b'h'];
    let wire_type_7: &[u8] = &[0x0f];
    let endless_varint: &[u8] = &[0x08, 0xff, 0xff, 0xff];
    for bytes in [truncated, wire_type_7, endless_varint] {
        let s = raw_call(&sre, "/breakglass.v1.BreakGlass/RequestCertificate", bytes).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{bytes:?}: {s:?}");
        assert!(
            s.message().contains("not a valid protobuf message"),
            "{s:?}"
        );
    }
    // Every service of the API, unary and streaming, mTLS and the admin socket.
    let host = d.target("host");
    let auditor = d.target("auditor");
    for (target, path) in [
        (&sre, "/breakglass.v1.BreakGlass/WhoAmI"),
        (&sre, "/breakglass.v1.BreakGlass/WatchRequest"),
        (&sre, "/breakglass.v1.Revocations/Revoke"),
        (&host, "/breakglass.v1.Revocations/WatchRevocations"),
        (&host, "/breakglass.v1.HostAgent/AppendHostRecords"),
        (&auditor, "/breakglass.v1.Audit/GetEntries"),
        (&d.admin(), "/breakglass.v1.Revocations/GetRevocationList"),
    ] {
        let s = raw_call(target, path, wire_type_7).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{path}: {s:?}");
    }
    // The control: the same raw client with a valid (empty) WhoAmI message is answered.
    let s = raw_call(&sre, "/breakglass.v1.BreakGlass/WhoAmI", &[]).await;
    assert_eq!(s.code(), Code::Ok, "{s:?}");
    // An unknown caller is refused before its bytes are even decoded.
    let stranger = d.new_client("stranger", "stranger@example.com");
    let s = raw_call(
        &stranger,
        "/breakglass.v1.BreakGlass/RequestCertificate",
        wire_type_7,
    )
    .await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    // The daemon keeps serving.
    assert_eq!(
        commands::whoami(&sre).await.unwrap(),
        "sre@example.com (via mtls; groups: sre)"
    );
}
