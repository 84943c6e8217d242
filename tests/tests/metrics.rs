//! Metrics and probes (issue 17): the real `breakglass-ca serve` as a child process on its
//! `init --dev` setup, driven over mTLS gRPC; `/metrics`, `/healthz` and `/readyz` read
//! over a real socket from the plain-HTTP `[server] metrics_listen` listener.
//!
//! - a scripted run (a grant issued at once, a request that waits and is approved, a
//!   refusal, a revocation, a revocation stream) and the counters' exact values after it;
//! - `/readyz` turns 503 with the reason when the audit log's file system is full (a
//!   request then fails closed and counts as an error) and 200 again once there is room
//!   (needs root: a tmpfs).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use breakglass_cli::connect;
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::host_record_result::Status as RecordStatus;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{
    AppendHostRecordsRequest, ApproveRequest, GetCheckpointRequest, HostRecord,
    RequestCertificateRequest, WatchRevocationsRequest,
};
use breakglass_test_support::require_root;
use breakglass_test_support::wait;
use breakglass_tests::ca_process::CaProcess;
use breakglass_tests::faults::Tmpfs;
use breakglass_tests::revocation::revoke_request;
use breakglass_tests::{breakglass_ca_bin, can_run, have, ssh_keygen};
use tonic::Code;

/// Longest wait for the daemon to notice a change (a stream, the disk).
const SETTLE: Duration = Duration::from_secs(30);

/// `GET path` over plain HTTP/1.0: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The samples of a Prometheus/OpenMetrics text body: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                k.to_owned(),
                v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
            )
        })
        .collect()
}

/// A daemon set up by `init --dev` whose metrics listener is on a free loopback port.
async fn daemon(
    dir: &std::path::Path,
    tmpfs: Option<&str>,
) -> (CaProcess, SocketAddr, Option<Tmpfs>) {
    let bin = tokio::task::spawn_blocking(breakglass_ca_bin)
        .await
        .unwrap();
    let mut ca = CaProcess::init(bin, &dir.join("ca")).unwrap();
    ca.edit_config(
        "syslog_socket = \"/dev/log\"",
        "syslog_socket = \"no-syslog.sock\"",
    )
    .unwrap();
    // The dev setup puts it on loopback; the harness on a free port.
    let configured = breakglass_ca::config::Config::load(&ca.config())
        .unwrap()
        .server
        .metrics_listen
        .expect("the dev config turns the metrics listener on");
    let addr = ca.metrics_addr();
    assert_eq!(configured, addr);
    let tmpfs = tmpfs.map(|size| {
        let fs = Tmpfs::mount(&ca.path().join("audit-tmpfs"), size);
        ca.edit_config("dir = \"audit\"", "dir = \"audit-tmpfs\"")
            .unwrap();
        fs
    });
    ca.start().await.unwrap();
    (ca, addr, tmpfs)
}

/// A session-open record of `host` for `grant`.
fn host_record(host: &str, grant: &str) -> HostRecord {
    let session = format!("{host}-{grant}-4242-1700000000000");
    HostRecord {
        record_id: format!("{session}-open"),
        session,
        event: "open".into(),
        time: 1_700_000_000,
        host: host.into(),
        user: "bgmetrics".into(),
        grant: grant.into(),
        serial: 1,
        rhost: "127.0.0.1".into(),
        pid: 4242,
        start: 1_700_000_000,
        ..Default::default()
    }
}

fn request(public_key: &str, user: &str, host: &str, reason: &str) -> RequestCertificateRequest {
    RequestCertificateRequest {
        public_key: public_key.to_owned(),
        principals: vec![user.into()],
        hosts: vec![host.into()],
        ttl_seconds: 600,
        reason: reason.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_run_of_issue_approve_refuse_and_revoke() {
    if !can_run("ssh-keygen (scripts/install-deps)", have("ssh-keygen")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, addr, _) = daemon(dir.path(), None).await;
    let key = ssh_keygen(dir.path(), "id_metrics", &["-t", "ed25519"]);
    let public_key = std::fs::read_to_string(key).unwrap();
    let channel = |who| connect::channel(&ca.target(who)).unwrap();
    let mut sre = BreakGlassClient::new(channel("sre"));
    let mut approver = BreakGlassClient::new(channel("approver"));

    let (status, body) = http_get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http_get(addr, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    // Issued at once (tier low).
    let low = sre
        .request_certificate(request(
            &public_key,
            "bgmetrics",
            "localhost",
            "metrics run",
        ))
        .await
        .expect("issued at once")
        .into_inner();
    // Waits for one approval (tier elevated), then is issued.
    let waiting = sre
        .create_request(request(
            &public_key,
            "bgmetrics",
            "db.staging.example",
            "metrics run, staging",
        ))
        .await
        .expect("created")
        .into_inner();
    assert!(waiting.certificate.is_none(), "{waiting:?}");
    let id = waiting.request.expect("the request").request_id;
    let m = samples(&http_get(addr, "/metrics").1);
    assert_eq!(m["breakglass_requests_pending"], 1.0, "{m:?}");
    approver
        .approve(ApproveRequest {
            request_id: id,
            comment: "ok".into(),
        })
        .await
        .expect("approved");
    // Refused by the dev config's deny rule.
    let refused = sre
        .request_certificate(request(&public_key, "root", "localhost", "metrics run"))
        .await
        .expect_err("root is denied");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // A host follows the revocation stream; the low grant is revoked.
    let mut host = RevocationsClient::new(channel("host"));
    let mut stream = host
        .watch_revocations(WatchRevocationsRequest::default())
        .await
        .expect("stream")
        .into_inner();
    let mut sre_revocations = RevocationsClient::new(channel("sre"));
    let revoked = sre_revocations
        .revoke(revoke_request(
            breakglass_proto::v1::revoke_request::Target::GrantId(low.grant_id.clone()),
            "metrics run over",
        ))
        .await
        .expect("revoked")
        .into_inner();
    let notice = tokio::time::timeout(SETTLE, async {
        loop {
            let n = stream.message().await.unwrap().expect("a notice");
            if !n.heartbeat {
                return n;
            }
        }
    })
    .await
    .expect("the revocation reaches the stream");
    assert_eq!(notice.grant_id, low.grant_id);

    // The host reports a session of the low grant, the same record again, and one of
    // another host (refused: a host reports only its own sessions).
    let mut agent = HostAgentClient::new(channel("host"));
    let open = host_record("localhost", &low.grant_id);
    let results = agent
        .append_host_records(AppendHostRecordsRequest {
            records: vec![open.clone(), open, host_record("elsewhere", &low.grant_id)],
        })
        .await
        .expect("host records answered")
        .into_inner()
        .results;
    let statuses: Vec<RecordStatus> = results.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses,
        [
            RecordStatus::Appended,
            RecordStatus::Duplicate,
            RecordStatus::Rejected
        ]
    );

    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let m = samples(&text);
    let count = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(
        count(r#"breakglass_requests_total{tier="low",outcome="issued"}"#),
        1.0
    );
    assert_eq!(
        count(r#"breakglass_requests_total{tier="elevated",outcome="pending"}"#),
        1.0
    );
    assert_eq!(
        count(r#"breakglass_requests_total{tier="elevated",outcome="issued"}"#),
        1.0
    );
    // A deny rule refuses before any tier applies.
    assert_eq!(
        count(r#"breakglass_requests_total{tier="none",outcome="refused"}"#),
        1.0
    );
    assert!(
        !m.keys().any(|k| k.contains(r#"outcome="error""#)),
        "{text}"
    );
    assert_eq!(count("breakglass_requests_pending"), 0.0);
    assert_eq!(
        count("breakglass_grants_live"),
        1.0,
        "the approved grant is live"
    );
    assert_eq!(count("breakglass_krl_version"), revoked.krl_version as f64);
    assert!(revoked.krl_version >= 1, "{revoked:?}");
    assert_eq!(count("breakglass_issuance_duration_seconds_count"), 2.0);
    assert_eq!(count("breakglass_revocation_streams"), 1.0);
    for result in ["appended", "duplicate", "rejected"] {
        let key = format!("breakglass_host_records_total{{result=\"{result}\"}}");
        assert_eq!(count(&key), 1.0);
    }
    // Every event of the log was committed since start-up: the group sizes add up to it.
    let mut auditor = AuditClient::new(channel("auditor"));
    let size = auditor
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .size;
    assert_eq!(count("breakglass_audit_log_entries"), size as f64);
    let segments: u64 = std::fs::read_dir(ca.audit_dir().unwrap().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(count("breakglass_audit_log_bytes"), segments as f64);
    assert_eq!(count("breakglass_audit_batch_events_sum"), size as f64);
    let commits = count("breakglass_audit_commit_duration_seconds_count");
    assert!(
        commits >= 1.0 && commits <= size as f64,
        "{commits} commits, {size} events"
    );
    assert!(count("breakglass_audit_last_checkpoint_age_seconds") >= 0.0);
    // Each append waits for one commit, which may serve several; an append has one event
    // or more.
    let appends = count("breakglass_audit_append_duration_seconds_count");
    assert!(
        commits <= appends && appends <= size as f64,
        "{appends} appends"
    );
    assert_eq!(
        count(r#"breakglass_webhook_deliveries_total{result="failed"}"#),
        0.0
    );
    // No identity, host or reason in any label.
    for secret in [
        "sre@example.com",
        "bgmetrics",
        "localhost",
        "elsewhere",
        "metrics run",
        "root",
    ] {
        assert!(!text.contains(secret), "{secret:?} in the metrics:\n{text}");
    }

    // The stream goes: the gauge follows.
    drop(stream);
    let gone = wait::poll(SETTLE, Duration::from_millis(50), || {
        let m = samples(&http_get(addr, "/metrics").1);
        (m["breakglass_revocation_streams"] == 0.0).then_some(())
    });
    assert!(gone.is_some(), "the closed stream is still counted");
    let (status, body) = http_get(addr, "/nothing");
    assert_eq!(status, 404, "{body}");
    drop(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_with_the_reason_while_the_audit_disk_is_full_and_200_after() {
    if !require_root("mounts a tmpfs for the audit log") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, addr, fs) = daemon(dir.path(), Some("2m")).await;
    let fs = fs.unwrap();
    let ready = |want: u16| {
        wait::poll(SETTLE, Duration::from_millis(100), || {
            let (status, body) = http_get(addr, "/readyz");
            (status == want).then_some(body)
        })
    };
    assert_eq!(ready(200).as_deref(), Some("ready\n"));

    let filler = fs.fill();
    let body = ready(503)
        .unwrap_or_else(|| panic!("/readyz stayed 200 with a full disk\n{}", ca.log_tail(20)));
    assert!(body.starts_with("not ready:"), "{body}");
    assert!(body.contains("audit log not writable"), "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    // The README's example, as an operator runs it.
    if have("curl") {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://{addr}/readyz")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("not ready:\naudit log not writable: ")
                && text.contains(".writable-probe: No space left on device (os error 28)"),
            "{text}"
        );
    }
    // Alive all the same; a request fails closed and counts as an error of its tier.
    assert_eq!(http_get(addr, "/healthz").0, 200);
    let key = ssh_keygen(dir.path(), "id_full", &["-t", "ed25519"]);
    let mut sre = BreakGlassClient::new(connect::channel(&ca.target("sre")).unwrap());
    let e = sre
        .request_certificate(request(
            &std::fs::read_to_string(key).unwrap(),
            "bgmetrics",
            "localhost",
            "disk full",
        ))
        .await
        .expect_err("nothing is issued on a full disk");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let m = samples(&http_get(addr, "/metrics").1);
    assert_eq!(
        m[r#"breakglass_requests_total{tier="low",outcome="error"}"#], 1.0,
        "{m:?}"
    );

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        ready(200).as_deref(),
        Some("ready\n"),
        "/readyz did not recover once there was room"
    );
    drop(ca);
    drop(fs);
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_exit_69_naming_the_listener() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let bin = breakglass_ca_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = breakglass_tests::sshd::free_port();
    breakglass_test_support::ca::init_dev(bin, dir.path(), &format!("127.0.0.1:{port}"));
    let config = dir.path().join(breakglass_test_support::ca::CONFIG_FILE);
    breakglass_test_support::ca::set_metrics_listen(&config, &addr.to_string());
    let out = breakglass_test_support::ca::serve_output(bin, &config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!("metrics listener {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
    drop(held);
}
