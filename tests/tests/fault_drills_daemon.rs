//! Daemon fault drills (RELIABILITY.md "Daemon fault drills"): the real `breakglass-ca`
//! process, real mTLS clients and the real `breakglass` CLI, with its audit log made to
//! fail underneath it.
//! - The disk fills up (a small tmpfs) while 16 clients request certificates: every
//!   refusal is `UNAVAILABLE` "audit log cannot be written … nothing was issued", reads
//!   keep working, issuance resumes by itself when space returns, and after a SIGKILL the
//!   log verifies and holds exactly the grants clients received.
//! - `fdatasync` or the segment `pwrite64` fail with EIO (`strace -e inject=`, attached
//!   to the running daemon): the same, and the failed batch is cut off the segment; a
//!   single failed `fdatasync` costs one request only.
//! - Killed while the disk is full, the daemon starts again on the full disk, serves reads
//!   and refuses issuance until there is space (it used to exit 64 at start-up, unable to
//!   refresh its `checkpoint` file, and the unit does not restart on 64).
//! - On a read-only audit disk it exits 74 (retried by the unit), not 64, and starts once
//!   the disk is writable.
//!
//! They need root (a tmpfs mount; ptrace of the daemon) and say so loudly without it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breakglass_cli::connect;
use breakglass_cli::connect::Channel;
use breakglass_proto::profile::{GrantId, Profile};
use breakglass_proto::v1::audit_client::AuditClient;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::{
    GetCaPublicKeysRequest, GetCheckpointRequest, RequestCertificateRequest, WhoAmIRequest,
};
use breakglass_test_support::require_root;
use breakglass_tests::ca_process::CaProcess;
use breakglass_tests::crash_loop::check_log;
use breakglass_tests::faults::{Injection, Tmpfs};
use breakglass_tests::{breakglass_bin, breakglass_ca_bin, can_run, have, is_root, ssh_keygen};
use tonic::Code;

/// What every refusal for want of a writable log says (with the OS error after it).
const NOT_WRITTEN: &str = "audit log cannot be written";

/// A daemon on a fresh setup in a temporary directory. Dropped in field order: the
/// daemon (SIGKILL), the tmpfs (unmounted), then the directory.
struct Drill {
    ca: CaProcess,
    tmpfs: Option<Tmpfs>,
    dir: tempfile::TempDir,
    public_key: String,
    /// Certificates clients received: serial → grant, read from the certificates.
    received: Arc<Mutex<HashMap<u64, GrantId>>>,
}

impl Drill {
    /// Sets up (`init --dev`) and starts the daemon; with `tmpfs` (a size), its audit log
    /// lives on a tmpfs of that size.
    async fn start(tmpfs: Option<&str>) -> Self {
        let (bin, _) = tokio::task::spawn_blocking(|| (breakglass_ca_bin(), breakglass_bin()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CaProcess::init(bin, &dir.path().join("ca")).unwrap();
        ca.edit_config(
            "syslog_socket = \"/dev/log\"",
            "syslog_socket = \"no-syslog.sock\"",
        )
        .unwrap();
        let tmpfs = tmpfs.map(|size| {
            let fs = Tmpfs::mount(&ca.path().join("audit-tmpfs"), size);
            ca.edit_config("dir = \"audit\"", "dir = \"audit-tmpfs\"")
                .unwrap();
            fs
        });
        ca.start().await.unwrap();
        let key = ssh_keygen(dir.path(), "id_drill", &["-t", "ed25519"]);
        let public_key = std::fs::read_to_string(key).unwrap();
        Self {
            ca,
            tmpfs,
            dir,
            public_key,
            received: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn client(&self) -> BreakGlassClient<Channel> {
        BreakGlassClient::new(connect::channel(&self.ca.target("sre")).unwrap())
    }

    fn received(&self) -> HashMap<u64, GrantId> {
        self.received.lock().unwrap().clone()
    }

    /// One certificate request; a received certificate is recorded.
    async fn request(&self, c: &mut BreakGlassClient<Channel>) -> Result<u64, tonic::Status> {
        request(c, &self.public_key, &self.received).await
    }

    /// The log size the daemon reports (Audit API, as the sample auditor).
    async fn log_size(&self) -> u64 {
        let mut a = AuditClient::new(connect::channel(&self.ca.target("auditor")).unwrap());
        a.get_checkpoint(GetCheckpointRequest {})
            .await
            .expect("GetCheckpoint answers")
            .into_inner()
            .size
    }

    /// Reads that must keep working while the log cannot be written: WhoAmI, the CA keys,
    /// the signed checkpoint and the last event of the log.
    async fn reads_work(&self) {
        let mut c = self.client();
        c.who_am_i(WhoAmIRequest {}).await.expect("WhoAmI");
        c.get_ca_public_keys(GetCaPublicKeysRequest {})
            .await
            .expect("GetCaPublicKeys");
        let size = self.log_size().await;
        let t = self.ca.target("auditor");
        let mut a = AuditClient::new(connect::channel(&t).unwrap());
        let last = breakglass_cli::audit::fetch_leaves(&mut a, &t, size - 1, size)
            .await
            .expect("the last event of the log is served");
        assert_eq!(last.len(), 1);
    }

    /// The real `breakglass request` CLI while the log cannot be written: exit 69 and the
    /// reason, and no certificate file.
    async fn cli_request_is_refused(&self) {
        let key = ssh_keygen(self.dir.path(), "id_cli", &["-t", "ed25519"]);
        let out = tokio::process::Command::new(breakglass_bin())
            .arg("--config")
            .arg(self.ca.path().join("clients/sre.toml"))
            .args([
                "request",
                "--host",
                "localhost",
                "--as",
                "bgdrill",
                "--ttl",
                "5m",
                "--reason",
                "fault drill",
                "--public-key",
            ])
            .arg(&key)
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_SERVER")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), out)
            .await
            .expect("breakglass request finishes")
            .expect("breakglass runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{stderr}");
        assert!(stderr.contains(NOT_WRITTEN), "{stderr}");
        assert!(!self.dir.path().join("id_cli-cert.pub").exists());
    }

    /// SIGKILL, then the log on disk must verify and hold exactly the grants clients
    /// received; a restart recovers all of it and issues again. Returns the daemon's output.
    async fn crash_and_check(mut self) -> String {
        self.ca.kill9();
        let received = self.received();
        let audit_dir = self.ca.audit_dir().unwrap();
        let verifier = breakglass_cli::audit::read_verifier(&self.ca.log_pub()).unwrap();
        let check = check_log(&audit_dir, &verifier, None, 0, &received)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.ca.log_tail(40)));
        assert!(
            check.missing.is_empty(),
            "received certificates with no grant in the log: {:?}",
            check.missing
        );
        assert_eq!(
            check.unreceived, 0,
            "grants in the log that no client received (acknowledged nothing, yet recorded)"
        );
        assert!(check.torn_tail.is_none(), "{:?}", check.torn_tail);

        self.ca.start().await.unwrap();
        assert_eq!(
            self.log_size().await,
            check.size,
            "the restart recovers every event"
        );
        let mut c = self.client();
        self.request(&mut c)
            .await
            .expect("issues after the restart");
        let status = self.ca.stop().unwrap();
        assert!(status.success(), "{status}: {}", self.ca.log_tail(40));
        self.ca.log_text()
    }
}

async fn request(
    c: &mut BreakGlassClient<Channel>,
    public_key: &str,
    received: &Mutex<HashMap<u64, GrantId>>,
) -> Result<u64, tonic::Status> {
    let r = c
        .request_certificate(RequestCertificateRequest {
            public_key: public_key.to_owned(),
            principals: vec!["bgdrill".into()],
            hosts: vec!["localhost".into()],
            ttl_seconds: 300,
            reason: "fault drill".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let cert = ssh_key::Certificate::from_openssh(&r.certificate).expect("a certificate");
    assert_eq!(cert.serial(), r.serial);
    let grant = Profile::from_certificate(&cert).expect("profile").grant_id;
    received.lock().unwrap().insert(r.serial, grant);
    Ok(r.serial)
}

/// Asserts that `e` is the refusal for want of a writable audit log.
fn assert_not_written(e: &tonic::Status) {
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(NOT_WRITTEN) && e.message().contains("nothing was issued"),
        "{}",
        e.message()
    );
}

/// Waits (bounded) until `done`, failing with `what` and the daemon's last lines.
async fn wait_until(what: &str, ca: &CaProcess, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 120 s; daemon:\n{}",
            ca.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Concurrent clients requesting certificates until stopped; errors are kept.
struct Load {
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<tonic::Status>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(d: &Drill, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let mut c = d.client();
                let (stop, errors) = (stop.clone(), errors.clone());
                let (key, received) = (d.public_key.clone(), d.received.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        if let Err(e) = request(&mut c, &key, &received).await {
                            errors.lock().unwrap().push(e);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            errors,
            tasks,
        }
    }

    fn errors(&self) -> usize {
        self.errors.lock().unwrap().len()
    }

    async fn stop(self) -> Vec<tonic::Status> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let errors = self.errors.lock().unwrap();
        errors.clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_during_issuance_fails_closed_keeps_reads_and_resumes_when_space_returns() {
    if !require_root("mounting a size-limited tmpfs for the audit log") {
        return;
    }
    let d = Drill::start(Some("4m")).await;
    let load = Load::start(&d, 16);
    wait_until("50 certificates before the disk fills", &d.ca, || {
        d.received.lock().unwrap().len() >= 50
    })
    .await;
    assert_eq!(load.errors(), 0, "{:?}", load.errors.lock().unwrap());

    // The disk fills up under the clients.
    let filler = d.tmpfs.as_ref().unwrap().fill();
    let errors_before = load.errors();
    wait_until("refusals on the full disk", &d.ca, || {
        load.errors() >= errors_before + 32
    })
    .await;
    d.reads_work().await;

    // Space returns: issuance resumes by itself, under the same clients.
    std::fs::remove_file(filler).unwrap();
    let before = d.received.lock().unwrap().len();
    wait_until("issuance after space returned", &d.ca, || {
        d.received.lock().unwrap().len() >= before + 50
    })
    .await;
    let errors = load.stop().await;
    assert!(errors.len() >= 32);
    for e in &errors {
        assert_not_written(e);
    }
    let log = d.crash_and_check().await;
    assert!(
        log.contains("audit batch not written") && log.contains("No space left on device"),
        "{log}"
    );
}

/// While strace makes every `syscall` of the daemon fail with EIO: concurrent requests
/// and the CLI are refused, reads work, and nothing of the refused requests stays in the
/// segment; once strace detaches, issuance resumes; after a SIGKILL the log holds exactly
/// the grants received.
async fn eio_window(syscall: &str) {
    if !can_run("root (to trace the daemon with strace)", is_root())
        || !can_run("strace (scripts/install-deps)", have("strace"))
    {
        return;
    }
    let d = Drill::start(None).await;
    let mut c = d.client();
    for _ in 0..5 {
        d.request(&mut c).await.expect("issues before the fault");
    }
    let size = d.log_size().await;
    let segment = last_segment(&d.ca.audit_dir().unwrap());
    let segment_len = std::fs::metadata(&segment).unwrap().len();

    let trace = d.dir.path().join(format!("strace-{syscall}.txt"));
    let inj = Injection::attach(d.ca.pid().unwrap(), syscall, "EIO", None, &trace).unwrap();
    let refused: Vec<_> = (0..8)
        .map(|_| {
            let mut c = d.client();
            let (key, received) = (d.public_key.clone(), d.received.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for _ in 0..3 {
                    match request(&mut c, &key, &received).await {
                        Ok(serial) => panic!("certificate {serial} issued while {NOT_WRITTEN}"),
                        Err(e) => errors.push(e),
                    }
                }
                errors
            })
        })
        .collect();
    for t in refused {
        for e in t.await.unwrap() {
            assert_not_written(&e);
            assert!(
                e.message().contains("Input/output error"),
                "{}",
                e.message()
            );
        }
    }
    d.cli_request_is_refused().await;
    d.reads_work().await;
    assert_eq!(d.log_size().await, size, "nothing was added to the log");
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        segment_len,
        "the failed batches were cut off the segment"
    );
    let injected = inj.stop().unwrap();
    // At least one failed call per batch: each client's three requests, and the CLI's.
    assert!(
        injected >= 4,
        "strace failed only {injected} {syscall} calls"
    );

    for _ in 0..5 {
        d.request(&mut c)
            .await
            .expect("issues again once the disk works");
    }
    assert_eq!(d.received().len(), 10);
    let log = d.crash_and_check().await;
    assert!(
        log.contains("audit batch not written") && log.contains("Input/output error"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fdatasync_eio_fails_closed_cuts_the_batch_and_issuance_resumes_after() {
    eio_window("fdatasync").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn segment_write_eio_fails_closed_and_issuance_resumes_after() {
    eio_window("pwrite64").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failed_fdatasync_refuses_one_request_and_the_next_is_issued() {
    if !can_run("root (to trace the daemon with strace)", is_root())
        || !can_run("strace (scripts/install-deps)", have("strace"))
    {
        return;
    }
    let d = Drill::start(None).await;
    let mut c = d.client();
    d.request(&mut c).await.expect("issues before the fault");
    let trace = d.dir.path().join("strace-once.txt");
    let inj =
        Injection::attach(d.ca.pid().unwrap(), "fdatasync", "EIO", Some("1"), &trace).unwrap();
    let e = d
        .request(&mut c)
        .await
        .expect_err("the request whose fdatasync fails is refused");
    assert_not_written(&e);
    // strace stays attached: the log recovers by itself (the next batch cuts the failed
    // one off and commits), no restart needed.
    for _ in 0..3 {
        d.request(&mut c)
            .await
            .expect("the next requests are issued");
    }
    assert_eq!(
        inj.stop().unwrap(),
        1,
        "strace failed exactly one fdatasync"
    );
    assert_eq!(d.received().len(), 4);
    d.crash_and_check().await;
}

/// The newest segment file of the log in `audit_dir`.
fn last_segment(audit_dir: &Path) -> std::path::PathBuf {
    breakglass_proto::audit::segment::list_segments(audit_dir)
        .unwrap()
        .pop()
        .expect("a segment")
        .1
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_while_the_disk_is_full_starts_again_serves_reads_and_refuses_issuance() {
    if !require_root("mounting a size-limited tmpfs for the audit log") {
        return;
    }
    let mut d = Drill::start(Some("4m")).await;
    let mut c = d.client();
    for _ in 0..20 {
        d.request(&mut c)
            .await
            .expect("issues before the disk fills");
    }
    let filler = d.tmpfs.as_ref().unwrap().fill();
    // The segment's last page may still take a batch or two.
    let mut refused = 0;
    for _ in 0..100 {
        match d.request(&mut c).await {
            Ok(_) => refused = 0,
            Err(e) => {
                assert_not_written(&e);
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "issuance never failed on the full disk");

    // A crash while the disk is full, and a start on the full disk.
    d.ca.kill9();
    d.ca.start()
        .await
        .expect("the daemon starts on a full disk");
    d.reads_work().await;
    let mut c = d.client();
    assert_not_written(
        &d.request(&mut c)
            .await
            .expect_err("no space: nothing issued"),
    );
    std::fs::remove_file(filler).unwrap();
    d.request(&mut c).await.expect("issues once space returns");
    d.crash_and_check().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_audit_disk_at_start_up_exits_74_and_the_daemon_starts_once_it_is_writable() {
    if !require_root("mounting a size-limited tmpfs for the audit log") {
        return;
    }
    let mut d = Drill::start(Some("4m")).await;
    let mut c = d.client();
    for _ in 0..3 {
        d.request(&mut c).await.expect("issues");
    }
    assert!(d.ca.stop().unwrap().success());
    // The disk was remounted read-only after errors: not the configuration's fault, so
    // not exit 64 (the unit does not restart on 64), but 74 (it restarts on that).
    let fs = d.tmpfs.as_ref().unwrap();
    fs.remount("ro");
    let e =
        d.ca.start()
            .await
            .expect_err("no start on a read-only audit disk");
    assert!(
        e.contains("exit status: 74") && e.contains("Read-only file system"),
        "{e}"
    );
    fs.remount("rw");
    d.ca.start()
        .await
        .expect("starts once the disk is writable");
    d.crash_and_check().await;
}
