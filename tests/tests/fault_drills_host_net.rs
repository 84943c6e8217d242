//! Host fault drills (issue 19 §5; RELIABILITY.md, "Host fault drills") around what a host
//! talks to, against the real parts (root: sshd, /etc/pam.d, a test user):
//! - the syslog socket missing, or present but never read and full: breakglass logins
//!   through real sshd and the real module still complete and still reach the spool (the
//!   time each took is printed; `cargo bench -p breakglass-tests --bench syslog_drill`
//!   measures it);
//! - the revocation stream down while the KRL endpoint is up: the real `breakglass host
//!   watch-revocations` reaches the daemon through a fault in front of it that refuses
//!   `WatchRevocations` (as a proxy with a broken streaming route would), or holds it open
//!   and silent, and forwards every other call. A revocation still reaches the host by the
//!   KRL poll: the KRL is installed, the open session is ended, the next login is refused;
//!   and the poll witnesses the log first, so a rolled-back log's KRL is not installed.
//!
//! The other host drills are in `tests/tests/fault_drills_host.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use breakglass_cli::settings::Target;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::revocations_server::{Revocations, RevocationsServer};
use breakglass_proto::v1::witness_client::WitnessClient;
use breakglass_proto::v1::witness_server::{Witness, WitnessServer};
use breakglass_proto::v1::{
    AcknowledgeLogForkRequest, AcknowledgeLogForkResponse, GetRevocationListRequest,
    GetRevocationListResponse, RevocationNotice, RevokeRequest, RevokeResponse,
    WatchRevocationsRequest, WitnessCheckpointRequest, WitnessCheckpointResponse,
};
use breakglass_test_support::fs::copy_dir;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::faults::{SyslogFault, SyslogSwitch};
use breakglass_tests::process::Captured;
use breakglass_tests::revocation::{self, Grant, issue, ssh_keygen_revoked};
use breakglass_tests::sshd::{
    CertSpec, ClientKey, SshSession, Sshd, SshdOptions, TestCa, TestUser,
};
use breakglass_tests::{breakglass_bin, can_run, is_root};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Generous bound on every wait for something the host or the daemon does by itself.
const BOUND: Duration = Duration::from_secs(30);
/// How long the watcher waits on a silent stream before it gives up on it (cli/src/watch.rs).
const STREAM_SILENCE: Duration = Duration::from_secs(15);

fn root(what: &str) -> bool {
    can_run(
        &format!("root ({what}, a real sshd, /etc/pam.d and a test user)"),
        is_root(),
    )
}

fn spooled(spool: &Path) -> usize {
    std::fs::read_dir(spool)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    !n.starts_with('.') && n.ends_with(".json")
                })
                .count()
        })
        .unwrap_or(0)
}

fn wait_until(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Syslog.

/// With the module's syslog socket working, missing, and never read (its queue full), a
/// breakglass login completes each time and its open and close records reach the spool;
/// the lines of the faulted logins never reach the working socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_complete_with_the_syslog_socket_missing_or_never_read() {
    if !root("a syslog socket to take away") {
        return;
    }
    tokio::task::spawn_blocking(|| {
        let ca = TestCa::new();
        let sshd = Sshd::start(&SshdOptions::trusting(&ca));
        let user = TestUser::create();
        let keys = tempfile::tempdir().unwrap();
        let key =
            ClientKey::with_cert(keys.path(), "k", &ca, &CertSpec::new(0x5e, &user.name, 600));
        let spool = sshd.dir.path().join("spool");
        let mut switch = SyslogSwitch::new(&sshd.syslog.path);
        let opened = |s: &Sshd| {
            s.syslog
                .lines()
                .iter()
                .filter(|l| l.contains("event=session_open"))
                .count()
        };
        for fault in SyslogFault::ALL {
            switch.set(fault);
            let lines_before = opened(&sshd);
            let records = spooled(&spool);
            let t = Instant::now();
            let mut cmd = sshd.ssh(&user.name, &key, &[]);
            let out = cmd.arg("echo logged-in").output().unwrap();
            let took = t.elapsed();
            let said = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && said.contains("logged-in"),
                "syslog {}: the login failed: {said}\n{}",
                fault.name(),
                sshd.log()
            );
            assert!(
                wait_until(BOUND, || spooled(&spool) >= records + 2),
                "syslog {}: the records did not reach the spool",
                fault.name()
            );
            if fault == SyslogFault::Working {
                assert!(
                    sshd.syslog
                        .wait_for(&["event=session_open", &user.name], BOUND)
                        .is_some()
                );
            } else {
                assert_eq!(opened(&sshd), lines_before, "the fault was not in place");
            }
            println!(
                "syslog {:<18} login (ssh, session open, echo, close) took {:.3} s",
                fault.name(),
                took.as_secs_f64()
            );
        }
    })
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// The revocation stream down.

/// What the fault in front of the daemon does with `WatchRevocations`.
#[derive(Clone, Debug)]
struct StreamFault {
    /// The daemon, reached with the host's identity.
    upstream: breakglass_cli::connect::Channel,
    /// Hold the stream open and send nothing (else refuse it with UNAVAILABLE).
    silent: Arc<AtomicBool>,
    /// Streams asked for.
    asked: Arc<AtomicUsize>,
}

type NoticeStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<RevocationNotice, Status>> + Send>>;

#[tonic::async_trait]
impl Revocations for StreamFault {
    async fn revoke(
        &self,
        req: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        RevocationsClient::new(self.upstream.clone())
            .revoke(req.into_inner())
            .await
    }

    async fn get_revocation_list(
        &self,
        req: Request<GetRevocationListRequest>,
    ) -> Result<Response<GetRevocationListResponse>, Status> {
        RevocationsClient::new(self.upstream.clone())
            .get_revocation_list(req.into_inner())
            .await
    }

    type WatchRevocationsStream = NoticeStream;

    async fn watch_revocations(
        &self,
        _req: Request<WatchRevocationsRequest>,
    ) -> Result<Response<NoticeStream>, Status> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.silent.load(Ordering::SeqCst) {
            Ok(Response::new(Box::pin(tokio_stream::pending())))
        } else {
            Err(Status::unavailable(
                "the revocation stream is down (fault drill)",
            ))
        }
    }
}

#[tonic::async_trait]
impl Witness for StreamFault {
    async fn witness_checkpoint(
        &self,
        req: Request<WitnessCheckpointRequest>,
    ) -> Result<Response<WitnessCheckpointResponse>, Status> {
        WitnessClient::new(self.upstream.clone())
            .witness_checkpoint(req.into_inner())
            .await
    }

    async fn acknowledge_log_fork(
        &self,
        req: Request<AcknowledgeLogForkRequest>,
    ) -> Result<Response<AcknowledgeLogForkResponse>, Status> {
        WitnessClient::new(self.upstream.clone())
            .acknowledge_log_fork(req.into_inner())
            .await
    }
}

/// The fault, serving mTLS on loopback with the daemon's server certificate.
struct Front {
    fault: StreamFault,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
}

impl Front {
    async fn start(d: &TestDaemon, upstream: &Target) -> Self {
        let read = |p: &str| std::fs::read(d.path().join(p)).unwrap();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read("tls/server.pem"),
                read("tls/server-key.pem"),
            ))
            .client_ca_root(Certificate::from_pem(read("tls/ca.pem")));
        let fault = StreamFault {
            upstream: breakglass_cli::connect::channel(upstream).unwrap(),
            silent: Arc::new(AtomicBool::new(false)),
            asked: Arc::new(AtomicUsize::new(0)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(RevocationsServer::new(fault.clone()))
            .add_service(WitnessServer::new(fault.clone()));
        tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async move {
                        let _ = stopped.await;
                    },
                )
                .await;
        });
        Self {
            fault,
            port,
            stop: Some(stop),
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A running `breakglass host watch-revocations`; killed on drop.
struct WatcherProcess {
    child: Child,
    out: Captured,
}

impl WatcherProcess {
    fn start(config: &Path, sessions: &Path, ca_keys: &Path, krl: &Path) -> Self {
        let mut child = Command::new(breakglass_bin())
            .arg("--config")
            .arg(config)
            .args(["host", "watch-revocations", "--sessions"])
            .arg(sessions)
            .arg("--ca-keys")
            .arg(ca_keys)
            .args(["--poll", "2s", "--krl"])
            .arg(krl)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start breakglass host watch-revocations");
        let out = Captured::take(&mut child);
        Self { child, out }
    }

    fn output(&self) -> String {
        self.out.text()
    }
}

impl Drop for WatcherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Host `db-7`: sshd (`RevokedKeys` on `revoked.krl`) with the module (`krl=` on the same
/// file, `sessions=` for the watcher), and the real watcher reaching the daemon only
/// through the fault.
struct Host {
    sshd: Sshd,
    sessions: tempfile::TempDir,
    front: Front,
    watcher: WatcherProcess,
}

impl Host {
    async fn start(d: &TestDaemon) -> Self {
        let sshd = d.start_sshd(Some("db-7")).await;
        let sessions = tempfile::tempdir().unwrap();
        let dir = sessions.path().join("sessions");
        let krl = sshd.dir.path().join("revoked.krl");
        sshd.set_module_options(&format!("krl={} sessions={}", krl.display(), dir.display()));
        let target = d.new_client("db7", "host://db-7");
        let front = Front::start(d, &target).await;
        let config = d.path().join("clients/db7-via-fault.toml");
        std::fs::write(
            &config,
            format!(
                "server = \"https://127.0.0.1:{}\"\nca_cert = \"../tls/ca.pem\"\ncert = \"db7.pem\"\n\
                 key = \"db7-key.pem\"\nserver_name = \"localhost\"\naudit_key = \"../log.pub\"\n\
                 witness_state = \"db7.witness\"\n",
                front.port
            ),
        )
        .unwrap();
        let ca_keys = sshd.dir.path().join("sshd_trusted_cas.pub");
        let watcher = WatcherProcess::start(&config, &dir, &ca_keys, &krl);
        Self {
            sshd,
            sessions,
            front,
            watcher,
        }
    }

    fn krl(&self) -> PathBuf {
        self.sshd.dir.path().join("revoked.krl")
    }

    fn context(&self) -> String {
        format!(
            "watcher:\n{}\nsyslog: {:#?}",
            self.watcher.output(),
            self.sshd.syslog.lines()
        )
    }

    /// Opens a session of `g` that runs until it is ended.
    async fn open(&self, user: &str, g: &Grant) -> SshSession {
        let mut cmd = self.sshd.ssh(user, &g.key, &[]);
        cmd.arg("echo started; sleep 300");
        let s = SshSession::spawn(cmd);
        let s = tokio::task::spawn_blocking(move || {
            let ok = s.wait_output("started", BOUND);
            (ok, s)
        })
        .await
        .unwrap();
        assert!(s.0, "the session did not start: {}", s.1.output());
        // The guard registered it for the watcher.
        let dir = self.sessions.path().join("sessions");
        let grant = g.grant_id.clone();
        let registered = tokio::task::spawn_blocking(move || {
            wait_until(BOUND, || {
                breakglass_proto::sessions::read_registrations(&dir)
                    .iter()
                    .any(|r| r.grant == grant)
            })
        })
        .await
        .unwrap();
        assert!(registered, "{}", self.context());
        s.1
    }

    /// Waits for `s` to be ended; returns how long after `since` it was seen to end.
    async fn ended(&self, s: SshSession, since: Instant, bound: Duration) -> Duration {
        let (ended, out) = tokio::task::spawn_blocking(move || {
            let mut s = s;
            let st = s.wait_exit(bound);
            (st, s.output())
        })
        .await
        .unwrap();
        assert!(
            ended.is_some(),
            "the session of a revoked grant still runs: {out}\n{}",
            self.context()
        );
        since.elapsed()
    }

    /// The revocation reached this host: sshd's KRL revokes the certificate, the guard's
    /// forced end says revoked, and sshd refuses the next login.
    async fn assert_revoked_here(&self, user: &str, g: &Grant) {
        assert!(
            ssh_keygen_revoked(&self.krl(), g.key.cert_path.as_deref().unwrap()),
            "the installed KRL does not revoke it: {}",
            self.context()
        );
        assert!(
            self.sshd
                .syslog
                .wait_for(
                    &["event=session_forced_end", "reason=revoked", &g.grant_id],
                    BOUND
                )
                .is_some(),
            "{}",
            self.context()
        );
        let refusals = || self.sshd.log().matches("revoked by file").count();
        let before = refusals();
        let mut cmd = self.sshd.ssh(user, &g.key, &[]);
        cmd.arg("echo logged-in");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(255), "a revoked login got in");
        assert_eq!(refusals(), before + 1, "{}", self.sshd.log());
    }
}

async fn revoke(d: &TestDaemon, g: &Grant, reason: &str) {
    breakglass_cli::revoke::revoke(
        &d.admin(),
        RevokeRequest {
            target: Some(breakglass_proto::v1::revoke_request::Target::GrantId(
                g.grant_id.clone(),
            )),
            reason: reason.into(),
        },
    )
    .await
    .expect("revoke");
}

/// The stream refused, then silent: each time a revocation reaches the host through the
/// KRL poll (the session is ended, the KRL installed, the next login refused). Then the
/// daemon's log is rolled back to a copy from before the revocation: the poll witnesses
/// the log before installing, says `log_consistency_failed`, and the KRL stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_reaches_the_host_by_the_krl_poll_while_the_stream_is_down() {
    if !root("a real sshd, PAM and the breakglass binary") {
        return;
    }
    let mut d = revocation::daemon().await;
    let h = Host::start(&d).await;
    let state = PathBuf::from(format!("{}.version", h.krl().display()));
    let installed = tokio::task::spawn_blocking({
        let state = state.clone();
        move || wait_until(BOUND, || state.exists())
    })
    .await
    .unwrap();
    assert!(installed, "no KRL installed by the poll: {}", h.context());
    assert!(
        h.watcher
            .output()
            .contains("the revocation stream is down (fault drill)"),
        "{}",
        h.context()
    );
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");

    // The stream refused: a copy of the log from before the revocation is kept for later.
    let g = issue(&sre, keys.path(), "refused", &user.name, "db-7", 600).await;
    let session = h.open(&user.name, &g).await;
    d.pause().await;
    let older = d.path().join("audit.before-revocation");
    copy_dir(&d.path().join("audit"), &older);
    d.resume().await;
    let t = Instant::now();
    revoke(&d, &g, "INC-19 stream down, refused").await;
    let took = h.ended(session, t, BOUND).await;
    h.assert_revoked_here(&user.name, &g).await;
    assert!(
        h.watcher.output().contains("found through the KRL"),
        "{}",
        h.context()
    );
    println!(
        "stream refused: the revoked session ended {:.3} s after `revoke` (KRL poll every 2 s)",
        took.as_secs_f64()
    );

    // The stream silent: opened, then nothing, not even a heartbeat.
    h.front.fault.silent.store(true, Ordering::SeqCst);
    let asked = h.front.fault.asked.load(Ordering::SeqCst);
    let g2 = issue(&sre, keys.path(), "silent", &user.name, "db-7", 600).await;
    let session = h.open(&user.name, &g2).await;
    let fault = h.front.fault.clone();
    let opened = tokio::task::spawn_blocking(move || {
        wait_until(BOUND, || fault.asked.load(Ordering::SeqCst) > asked)
    })
    .await
    .unwrap();
    assert!(
        opened,
        "the watcher never opened the silent stream: {}",
        h.context()
    );
    let t = Instant::now();
    revoke(&d, &g2, "INC-19 stream down, silent").await;
    let took = h.ended(session, t, STREAM_SILENCE + BOUND).await;
    h.assert_revoked_here(&user.name, &g2).await;
    assert!(
        h.watcher.output().contains("revocation stream silent for"),
        "{}",
        h.context()
    );
    println!(
        "stream silent: the revoked session ended {:.3} s after `revoke` (the watcher gives \
         a silent stream {} s)",
        took.as_secs_f64(),
        STREAM_SILENCE.as_secs()
    );

    // The log rolled back behind the host's back: the poll refuses its KRL.
    h.front.fault.silent.store(false, Ordering::SeqCst);
    let krl_before = std::fs::read(h.krl()).unwrap();
    d.pause().await;
    std::fs::remove_dir_all(d.path().join("audit")).unwrap();
    std::fs::rename(&older, d.path().join("audit")).unwrap();
    d.resume().await;
    let noticed = tokio::task::spawn_blocking({
        let out = h.watcher.out.clone();
        move || out.wait_for("log_consistency_failed", BOUND, Duration::from_millis(50))
    })
    .await
    .unwrap();
    assert!(
        noticed,
        "the KRL poll did not witness the log: {}",
        h.context()
    );
    assert_eq!(
        std::fs::read(h.krl()).unwrap(),
        krl_before,
        "a KRL was installed"
    );
    let revoked: BTreeSet<bool> = [&g, &g2]
        .iter()
        .map(|g| ssh_keygen_revoked(&h.krl(), g.key.cert_path.as_deref().unwrap()))
        .collect();
    assert_eq!(revoked, BTreeSet::from([true]));
}
