//! The audit log of the real `breakglass-ca` binary under damage and faults: a flipped bit
//! (verify names the record, the daemon refuses to start), a torn last batch (cut at
//! start-up, nothing acknowledged lost), a deleted segment or an older copy (caught by
//! `verify --since`), `kill -9` under 64 concurrent clients (every certificate a client
//! received has its grant in the log) and a full disk (issuance refused with a clear
//! error, reads served, issuance resumes).
//!
//! The daemon runs as a child process; the CLI (`breakglass audit verify`) runs in-process
//! through its library, exit codes included.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breakglass_cli::cli::{Cli, run};
use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::EventKind;
use breakglass_proto::audit::segment::{
    Parsed, RECORD_HEADER_LEN, RecordKind, SEGMENTS_DIR, list_segments, parse_record,
};
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_proto::v1::{GetCaPublicKeysRequest, WhoAmIRequest};
use breakglass_test_support::ca::{self, CaProcess};
use breakglass_test_support::fs::{Tmpfs, copy_dir, fill};
use breakglass_test_support::{breakglass_ca_bin, free_port, require_root};
use breakglass_tests::audit::log_size;
use breakglass_tests::revocation::certificate_request;
use clap::Parser;
use tonic::Code;

/// Made by `ssh-keygen -t ed25519` (the private half was thrown away).
const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFSR2vRx/Pe0XmzRHzy2FdtBGZgkkyZUnjQ3JIIpgD4H test";

/// A dev setup made by `breakglass-ca init`, on a port of its own.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A free port now; the daemon binds it with SO_REUSEADDR at each start.
        let port = free_port();
        ca::init_dev(
            breakglass_ca_bin(),
            dir.path(),
            &format!("127.0.0.1:{port}"),
        );
        Self { dir, port }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join(ca::CONFIG_FILE)
    }

    fn audit_dir(&self) -> PathBuf {
        self.path().join("audit")
    }

    fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "{from:?} not in the config");
        std::fs::write(self.config(), text.replacen(from, to, 1)).unwrap();
    }

    fn target(&self, who: &str) -> Target {
        Target::Tls {
            url: format!("https://127.0.0.1:{}", self.port),
            fallbacks: Vec::new(),
            ca_cert: self.path().join("tls/ca.pem"),
            cert: self.path().join(format!("clients/{who}.pem")),
            key: self.path().join(format!("clients/{who}-key.pem")),
            server_name: Some("localhost".into()),
        }
    }

    /// Starts `breakglass-ca serve` and waits until it accepts connections.
    fn start(&self) -> CaProcess {
        let mut cmd = ca::serve_command(breakglass_ca_bin(), &self.config());
        cmd.stdout(Stdio::null());
        // Serving answers (not only a bound port) means the signal handlers are set.
        CaProcess::start(&mut cmd, Duration::from_secs(30), |_| {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.answers()
        })
    }

    /// True when the daemon answers WhoAmI.
    fn answers(&self) -> bool {
        let t = self.target("sre");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = BreakGlassClient::new(connect::channel(&t).unwrap());
                c.who_am_i(WhoAmIRequest {}).await.is_ok()
            })
        })
        .join()
        .unwrap()
    }

    /// Runs `breakglass-ca serve` expecting it to refuse to start.
    fn refused_start(&self) -> (i32, String) {
        let out = ca::serve_output(breakglass_ca_bin(), &self.config());
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn segments(&self) -> Vec<PathBuf> {
        list_segments(&self.audit_dir())
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }
}

/// `breakglass ARGS...` in-process: Ok(()) or the exit code and message.
async fn cli(args: &[&str]) -> Result<(), (i32, String)> {
    let mut argv = vec!["breakglass"];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).map_err(|e| (64, e.to_string()))?;
    run(parsed)
        .await
        .map_err(|e| (e.exit_code(), e.to_string()))
}

async fn verify(dir: &Path, key: &Path, extra: &[&str]) -> Result<(), (i32, String)> {
    let d = dir.display().to_string();
    let k = key.display().to_string();
    let mut args = vec!["audit", "verify", d.as_str(), "--key", k.as_str()];
    args.extend_from_slice(extra);
    cli(&args).await
}

async fn request(
    c: &mut BreakGlassClient<breakglass_cli::connect::Channel>,
) -> Result<u64, tonic::Status> {
    request_with(c, "INC-4 audit fault test").await
}

async fn request_with(
    c: &mut BreakGlassClient<breakglass_cli::connect::Channel>,
    reason: &str,
) -> Result<u64, tonic::Status> {
    let r = certificate_request(PUBLIC_KEY, "postgres", "localhost", 300, reason);
    Ok(c.request_certificate(r).await?.into_inner().serial)
}

async fn issue(s: &Setup, n: usize) -> Vec<u64> {
    let mut c = BreakGlassClient::new(connect::channel(&s.target("sre")).unwrap());
    let mut serials = Vec::new();
    for _ in 0..n {
        serials.push(request(&mut c).await.expect("certificate issued"));
    }
    serials
}

/// Serials of every GrantIssued event of the setup's (verified) log.
fn logged_serials(s: &Setup) -> HashSet<u64> {
    logged_serials_in(&s.audit_dir(), &s.path().join("log.pub"))
}

/// Serials of every GrantIssued event of the (verified) log in `dir`.
fn logged_serials_in(dir: &Path, key: &Path) -> HashSet<u64> {
    breakglass_cli::audit::read_dir_events(dir, key)
        .unwrap()
        .into_iter()
        .filter_map(|(_, e)| match e.kind {
            EventKind::GrantIssued(g) => Some(g.serial),
            _ => None,
        })
        .collect()
}

/// Records of a segment: (offset, kind, payload length).
fn records(seg: &Path) -> Vec<(usize, RecordKind, usize)> {
    let data = std::fs::read(seg).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        match parse_record(&data[at..]) {
            Parsed::Record { kind, payload, .. } => {
                out.push((at, kind, payload.len()));
                at += RECORD_HEADER_LEN + payload.len();
            }
            other => panic!("{}: record at {at}: {other:?}", seg.display()),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_bit_fails_verify_naming_the_record_and_the_daemon_refuses_to_start() {
    let s = Setup::new();
    let d = s.start();
    issue(&s, 20).await;
    d.stop();
    let key = s.path().join("log.pub");
    verify(&s.audit_dir(), &key, &[])
        .await
        .expect("intact log verifies");

    // One bit in the payload of the record in the middle of the segment.
    let seg = s.segments().pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let middle = data.len() / 2;
    let (offset, _, len) = *records(&seg)
        .iter()
        .rev()
        .find(|(at, _, _)| *at <= middle)
        .unwrap();
    data[offset + RECORD_HEADER_LEN + len / 2] ^= 0x08;
    std::fs::write(&seg, &data).unwrap();

    let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
    // Both name the record: its segment and byte offset.
    let names_it = |(code, msg): (i32, String), what: &str| {
        assert_eq!(code, 65, "{msg}");
        assert!(
            msg.contains(what)
                && msg.contains(&seg_name)
                && msg.contains(&format!("byte {offset}:")),
            "{msg}"
        );
    };
    names_it(
        verify(&s.audit_dir(), &key, &[]).await.unwrap_err(),
        "does NOT verify",
    );
    // Start-up reads only what its derived files (the tree and offsets index, the state
    // snapshot, the history index) do not cover: history damaged after they were written is
    // found by `audit verify` (above) and by a read of it, not at start. Without them the
    // daemon checks every segment again and refuses to start on the damage.
    for derived in ["index", "history"] {
        let _ = std::fs::remove_dir_all(s.audit_dir().join(derived));
    }
    let _ = std::fs::remove_file(s.audit_dir().join("state.snapshot"));
    names_it(s.refused_start(), "audit log is damaged");
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_last_batch_is_cut_at_start_and_every_acknowledged_event_stays() {
    let s = Setup::new();
    let d = s.start();
    let serials = issue(&s, 10).await;
    d.stop();
    let seg = s.segments().pop().unwrap();
    let data = std::fs::read(&seg).unwrap();
    let good_len = data.len();

    // An interrupted batch: an event record written in full, then half a checkpoint.
    let recs = records(&seg);
    let (ev_at, _, ev_len) = *recs
        .iter()
        .rfind(|(_, k, _)| *k == RecordKind::Event)
        .unwrap();
    let (cp_at, _, cp_len) = *recs.last().unwrap();
    let mut torn = data.clone();
    torn.extend_from_slice(&data[ev_at..ev_at + RECORD_HEADER_LEN + ev_len]);
    torn.extend_from_slice(&data[cp_at..cp_at + (RECORD_HEADER_LEN + cp_len) / 2]);
    std::fs::write(&seg, &torn).unwrap();

    let d = s.start();
    let size = log_size(&s.target("auditor")).await;
    assert_eq!(size, 20, "the unacknowledged event is not in the log");
    let log = d.stop();
    assert!(log.contains("cutting the torn tail"), "{log}");
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, good_len);
    verify(&s.audit_dir(), &s.path().join("log.pub"), &[])
        .await
        .expect("the log verifies after the cut");
    let logged = logged_serials(&s);
    assert!(serials.iter().all(|x| logged.contains(x)));
    assert_eq!(logged.len(), serials.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_segment_or_older_copy_fails_verify_since_the_saved_checkpoint() {
    let s = Setup::new();
    s.edit_config("segment_max_mib = 64", "segment_max_mib = 1");
    let d = s.start();
    issue(&s, 10).await;
    d.stop();
    let older = s.path().join("audit.older");
    copy_dir(&s.audit_dir(), &older);

    // Enough certificates for the log to roll into a second segment (1 MiB each): long
    // reasons make each request event about 1 KiB.
    let d = s.start();
    let reason = format!("INC-4 {}", "x".repeat(1000));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let t = s.target("sre");
            let reason = reason.clone();
            tokio::spawn(async move {
                let mut c = BreakGlassClient::new(connect::channel(&t).unwrap());
                for _ in 0..50 {
                    request_with(&mut c, &reason).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    d.stop();
    assert!(s.segments().len() >= 2, "{:?}", s.segments());
    let key = s.path().join("log.pub");
    let saved = s.path().join("saved.checkpoint");
    let saved_s = saved.display().to_string();
    verify(&s.audit_dir(), &key, &["--save", &saved_s])
        .await
        .expect("verifies and saves");
    verify(&s.audit_dir(), &key, &["--since", &saved_s])
        .await
        .expect("the same log extends its own checkpoint");

    // Rolled back to the older copy: it verifies on its own, but not against the saved one.
    verify(&older, &key, &[])
        .await
        .expect("an older copy is self-consistent");
    let (code, msg) = verify(&older, &key, &["--since", &saved_s])
        .await
        .unwrap_err();
    assert_eq!(code, 65, "{msg}");
    assert!(msg.contains("events were removed"), "{msg}");

    // The last segment deleted (and the checkpoint file with it, to hide it).
    let cut = s.path().join("audit.cut");
    copy_dir(&s.audit_dir(), &cut);
    let last = list_segments(&cut).unwrap().pop().unwrap().1;
    std::fs::remove_file(&last).unwrap();
    std::fs::remove_file(cut.join("checkpoint")).unwrap();
    let (code, msg) = verify(&cut, &key, &["--since", &saved_s])
        .await
        .unwrap_err();
    assert_eq!(code, 65, "{msg}");
    assert!(msg.contains("events were removed"), "{msg}");
    assert!(cut.join(SEGMENTS_DIR).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_under_64_clients_every_received_certificate_is_in_the_log() {
    let s = Setup::new();
    let mut d = s.start();
    let received = Arc::new(Mutex::new(Vec::<u64>::new()));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let t = s.target("sre");
            let received = received.clone();
            tokio::spawn(async move {
                let mut c = BreakGlassClient::new(connect::channel(&t).unwrap());
                // Until the daemon dies under us.
                while let Ok(serial) = request(&mut c).await {
                    received.lock().unwrap().push(serial);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() >= 500,
        "only {} certificates",
        received.len()
    );

    // Restart: recovery may cut a torn tail; nothing acknowledged is lost.
    let d = s.start();
    d.stop();
    verify(&s.audit_dir(), &s.path().join("log.pub"), &[])
        .await
        .expect("the log verifies after kill -9");
    let logged = logged_serials(&s);
    let missing: Vec<&u64> = received.iter().filter(|x| !logged.contains(x)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} certificates have no grant in the log: {missing:?}",
        missing.len(),
        received.len()
    );
    eprintln!(
        "kill -9: {} certificates received, {} grants logged",
        received.len(),
        logged.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_refuses_issuance_clearly_keeps_reads_and_resumes() {
    if !require_root("mounting a size-limited tmpfs") {
        return;
    }
    let s = Setup::new();
    let mnt = s.path().join("audit-tmpfs");
    let _fs = Tmpfs::mount(&mnt, "512k");
    s.edit_config("dir = \"audit\"", "dir = \"audit-tmpfs\"");
    let d = s.start();
    let sre = s.target("sre");
    let mut c = BreakGlassClient::new(connect::channel(&sre).unwrap());
    request(&mut c).await.expect("issues while there is space");

    let filler = fill(&mnt);
    // The segment's last page may still take a batch or two.
    let mut accepted = 0u64;
    let e = loop {
        match request(&mut c).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 20, "issuance never failed on a full disk");
    };
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("audit log cannot be written")
            && e.message().contains("nothing was issued"),
        "{}",
        e.message()
    );
    // The CLI says so too, with exit code 69.
    let p = s.path().join("id.pub");
    std::fs::write(&p, format!("{PUBLIC_KEY}\n")).unwrap();
    let cfg = s.path().join("clients/sre.toml").display().to_string();
    let (code, msg) = cli(&[
        "--config",
        &cfg,
        "request",
        "--host",
        "localhost",
        "--as",
        "postgres",
        "--ttl",
        "5m",
        "--reason",
        "INC-4 disk full",
        "--public-key",
        &p.display().to_string(),
    ])
    .await
    .unwrap_err();
    assert_eq!(code, 69, "{msg}");
    assert!(msg.contains("audit log cannot be written"), "{msg}");

    // Reads keep working.
    c.who_am_i(WhoAmIRequest {}).await.expect("WhoAmI");
    c.get_ca_public_keys(GetCaPublicKeysRequest {})
        .await
        .expect("GetCaPublicKeys");
    let size = log_size(&s.target("auditor")).await;
    assert_eq!(
        size,
        2 * (1 + accepted),
        "nothing of the refused requests was logged"
    );

    // Space returns: issuance resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    let serial = request(&mut c).await.expect("issues again");
    let _ = d.stop();
    let logged = logged_serials_in(&mnt, &s.path().join("log.pub"));
    assert!(logged.contains(&serial));
    assert_eq!(logged.len() as u64, 2 + accepted);
}
