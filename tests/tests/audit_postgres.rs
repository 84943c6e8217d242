//! One daemon serving from PostgreSQL (`[audit] backend = "postgres"`), over real mTLS
//! sockets against a throw-away cluster: every certificate's grant is in the database
//! before the answer; while the database is down nothing is issued (UNAVAILABLE) and reads
//! keep working; once it is back, issuance resumes by itself; a restarted daemon goes on
//! from the database; the exported log verifies offline with every grant in it once.

use std::time::Duration;

use breakglass_cli::connect;
use breakglass_proto::audit::event::EventCode;
use breakglass_proto::audit::verify_dir;
use breakglass_proto::v1::GetCheckpointRequest;
use breakglass_proto::v1::RequestCertificateRequest;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_test_support::postgres::PgCluster;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::certificate_request;
use breakglass_tests::ssh_keygen;
use tonic::Code;
use tonic::transport::Channel;

fn request(public_key: &std::path::Path) -> RequestCertificateRequest {
    let key = std::fs::read_to_string(public_key).unwrap();
    certificate_request(&key, "bgdemo", "localhost", 600, "INC-4411 primary down")
}

async fn log_size(d: &TestDaemon) -> u64 {
    let mut a = AuditClient::new(connect::channel(&d.target("auditor")).unwrap());
    a.get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("the checkpoint is served from the mirror")
        .into_inner()
        .size
}

async fn issue(c: &mut BreakGlassClient<Channel>, key: &std::path::Path) -> u64 {
    c.request_certificate(request(key))
        .await
        .expect("issued")
        .into_inner()
        .serial
}

#[tokio::test(flavor = "multi_thread")]
async fn one_daemon_serves_from_postgres_fails_closed_while_it_is_down_and_resumes() {
    if !PgCluster::available("a daemon serving from a throw-away PostgreSQL cluster") {
        return;
    }
    let mut cluster = PgCluster::start();
    let url = cluster.url();
    let mut d = TestDaemon::start_with(|c| {
        let c = c.replacen("[audit]\n", "[audit]\nbackend = \"postgres\"\n", 1);
        format!(
            "{c}\n[postgres]\nurl = \"{url}\"\ntls = \"disable\"\nconnect_timeout = \"2s\"\n\
             statement_timeout = \"2s\"\n"
        )
    })
    .await;
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id_ed25519", &["-t", "ed25519"]);
    let mut c = connect::client(&d.target("sre")).unwrap();

    let mut serials = Vec::new();
    for _ in 0..10 {
        serials.push(issue(&mut c, &public).await);
    }
    let size = log_size(&d).await;
    assert_eq!(
        cluster.psql("SELECT size FROM audit_head"),
        size.to_string(),
        "the database holds what the daemon acknowledged"
    );
    assert_eq!(
        cluster.psql("SELECT count(*), coalesce(max(idx) + 1, 0) FROM audit_entries"),
        format!("{size}|{size}"),
        "dense indices"
    );

    // The database down: nothing issued, told UNAVAILABLE; reads still answered.
    cluster.primary.stop("immediate");
    for _ in 0..3 {
        let e = c
            .request_certificate(request(&public))
            .await
            .expect_err("no certificate without its record");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("PostgreSQL"), "{}", e.message());
    }
    assert_eq!(log_size(&d).await, size, "reads keep working");

    // Back: issuance resumes by itself (the writer reconnects).
    cluster.primary.start();
    let mut resumed = None;
    for _ in 0..50 {
        match c.request_certificate(request(&public)).await {
            Ok(r) => {
                resumed = Some(r.into_inner().serial);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    serials.push(resumed.expect("issuance resumed once the database was back"));

    // A restart goes on from the database and its mirror.
    d.restart().await;
    let mut c = connect::client(&d.target("sre")).unwrap();
    serials.push(issue(&mut c, &public).await);
    let size = log_size(&d).await;
    assert_eq!(
        cluster.psql("SELECT size FROM audit_head"),
        size.to_string()
    );

    // The database's log, exported, verifies offline; every certificate's grant is in it
    // exactly once.
    let copy = tempfile::tempdir().unwrap();
    breakglass_ca::audit_transfer::export(&breakglass_ca::audit_transfer::ExportArgs {
        config: d.path().join(breakglass_ca::init::CONFIG_FILE),
        to: copy.path().join("log"),
    })
    .await
    .expect("audit export");
    let signer = breakglass_ca::audit::load_audit_key(
        &d.path().join("audit_key.pem"),
        "breakglass-ca/audit/v1",
    )
    .unwrap();
    let report = verify_dir(&copy.path().join("log"), &signer.verifier(), None).unwrap();
    assert_eq!(report.summary.size, size);
    let grants = report
        .events_by_code
        .iter()
        .find(|(code, _)| *code == EventCode::GrantIssued)
        .map_or(0, |(_, n)| *n);
    assert_eq!(grants, serials.len() as u64, "{:?}", report.events_by_code);
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len() as u64, grants);
}
