//! The crash loop (`scripts/crash-loop`, RELIABILITY.md) in `cargo test`: two SIGKILL
//! cycles of the real daemon under load pass, and its check finds what it must find — a
//! received certificate with no grant in the log, and a log that does not verify.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use breakglass_cli::connect;
use breakglass_proto::profile::{GrantId, Profile};
use breakglass_proto::v1::RequestCertificateRequest;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_tests::ca_process::CaProcess;
use breakglass_tests::crash_loop::{Options, check_log, run};
use breakglass_tests::{breakglass_ca_bin, ssh_keygen};

#[tokio::test(flavor = "multi_thread")]
async fn two_sigkill_cycles_under_load_lose_no_received_certificate() {
    let daemon = tokio::task::spawn_blocking(breakglass_ca_bin)
        .await
        .unwrap()
        .clone();
    let opts = Options {
        daemon,
        cycles: 2,
        clients: 8,
        min_run: Duration::from_secs(1),
        max_run: Duration::from_secs(2),
        tmp: None,
        keep: false,
    };
    let mut out = Vec::new();
    let outcome = run(&opts, &mut out).await.expect("the loop runs");
    let text = String::from_utf8_lossy(&out);
    assert!(outcome.passed(), "{text}");
    assert_eq!(outcome.cycles, 2, "{text}");
    assert_eq!(outcome.restarts.len(), 2, "{text}");
    assert!(
        outcome.acknowledged > 0,
        "no load reached the daemon:\n{text}"
    );
    assert!(
        text.contains("crash loop: PASS") && text.contains("missing:       0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_check_reports_a_received_certificate_missing_from_the_log_and_a_damaged_log() {
    let bin = tokio::task::spawn_blocking(breakglass_ca_bin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CaProcess::init(bin, &dir.path().join("ca")).unwrap();
    ca.start().await.unwrap();
    let key = std::fs::read_to_string(ssh_keygen(dir.path(), "id", &["-t", "ed25519"])).unwrap();
    let mut c = BreakGlassClient::new(connect::channel(&ca.target("sre")).unwrap());
    let mut received = HashMap::new();
    for _ in 0..3 {
        let r = c
            .request_certificate(RequestCertificateRequest {
                public_key: key.clone(),
                principals: vec!["bgcrash".into()],
                hosts: vec!["localhost".into()],
                ttl_seconds: 300,
                reason: "crash loop check".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let cert = ssh_key::Certificate::from_openssh(&r.certificate).unwrap();
        received.insert(r.serial, Profile::from_certificate(&cert).unwrap().grant_id);
    }
    ca.kill9();
    let audit = ca.audit_dir().unwrap();
    let verifier = breakglass_cli::audit::read_verifier(&ca.log_pub()).unwrap();

    let ok = check_log(&audit, &verifier, None, 0, &received).unwrap();
    assert!(ok.missing.is_empty() && ok.unreceived == 0, "{ok:?}");

    // A certificate the log does not know, and one whose serial names another grant.
    let (&serial, &grant) = received.iter().next().unwrap();
    let mut claimed = received.clone();
    claimed.insert(42, GrantId(7));
    claimed.insert(serial, GrantId(grant.0 ^ 1));
    let c = check_log(&audit, &verifier, None, 0, &claimed).unwrap();
    let mut expected = vec![(42, GrantId(7)), (serial, GrantId(grant.0 ^ 1))];
    expected.sort_unstable();
    assert_eq!(c.missing, expected);
    // Only events from `from` on are searched (earlier ones were checked before).
    let c = check_log(&audit, &verifier, None, ok.size, &received).unwrap();
    assert_eq!(c.missing.len(), 3);

    let verified = ok.note.clone().unwrap();
    let seg = breakglass_proto::audit::segment::list_segments(&audit)
        .unwrap()
        .pop()
        .unwrap()
        .1;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut data = Vec::new();
    f.read_to_end(&mut data).unwrap();
    // One flipped bit in the middle of the segment: damage before the last checkpoint.
    let at = data.len() / 2;
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&[data[at] ^ 0x10]).unwrap();
    drop(f);
    let e = check_log(&audit, &verifier, Some(&verified), ok.size, &received).unwrap_err();
    assert!(e.contains("does NOT verify"), "{e}");
}
