//! A gRPC client not written in Rust (Python grpcio, stubs generated from
//! the `.proto` files alone) requests a certificate over mTLS.

use std::path::Path;

use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::{can_run, ssh_keygen};

fn python_has_grpc() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_client_gets_a_certificate_over_mtls_from_the_proto_files_alone() {
    if !can_run("python3 with grpcio and grpcio-tools", python_has_grpc()) {
        return;
    }
    let d = TestDaemon::start().await;
    let work = tempfile::tempdir().unwrap();
    let public = ssh_keygen(work.path(), "id", &["-t", "ed25519"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out_dir = work.path().join("gen");
    std::fs::create_dir(&out_dir).unwrap();
    let dir = d.path().to_owned();
    let port = d.port;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(root.join("tests/python/request_cert.py"))
            .arg(root.join("proto"))
            .arg(&out_dir)
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir.join("tls/ca.pem"))
            .arg(dir.join("clients/sre.pem"))
            .arg(dir.join("clients/sre-key.pem"))
            .arg(&public)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("sre@example.com"));
    let cert = lines.next().unwrap();
    let parsed = ssh_key::Certificate::from_openssh(cert).expect("a certificate");
    assert_eq!(parsed.valid_principals(), ["bgdemo"]);
    assert!(parsed.key_id().ends_with("/sre@example.com"));
}
