//! A revocation is not done until hosts can fetch it (issue 19 §3), against the real
//! parts: an in-process daemon whose audit log lives on a small tmpfs that the test fills,
//! the real `breakglass` binary revoking over mTLS and syncing the KRL as a host, the
//! revocation stream, `ssh-keygen -Q` reading the installed KRL, and the signed log read
//! back offline.
//!
//! With the disk full, a revocation can be recorded while the KRL that lists it cannot
//! (its `KrlPublished` event needs room too). To get there without guessing sizes, the
//! test revokes with ever shorter reasons until a `GrantRevoked` fits in what is left and
//! the `KrlPublished` after it does not (tmpfs hands out whole pages; a revocation that
//! does not fit is refused and leaves nothing behind).
//!
//! Then either space returns with the daemon running (its retry publishes the KRL), or
//! the daemon stops with the revocation unpublished and starts again with room (it
//! publishes at start-up, before any host asks).
//!
//! Needs root (mounts a tmpfs).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use breakglass_cli::connect;
use breakglass_cli::host::krl_sync;
use breakglass_cli::settings::Target;
use breakglass_proto::audit::EventKind;
use breakglass_proto::v1::revocations_client::RevocationsClient;
use breakglass_proto::v1::{GetRevocationListResponse, RevocationNotice, WatchRevocationsRequest};
use breakglass_test_support::fs::Tmpfs;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::{self, Grant};
use breakglass_tests::{breakglass_bin, can_run, is_root};

/// Size of the tmpfs holding the audit log.
const TMPFS_SIZE: &str = "1m";
/// tmpfs allocates whole pages.
const PAGE: u64 = 4096;
/// Longest reason tried (the daemon takes up to 1024 bytes).
const LONGEST_REASON: usize = 1000;
/// How much shorter each next reason is: less than a `KrlPublished` batch (an event and
/// a signed checkpoint, well over 200 bytes), so that after the first revocation that fits
/// in the rest of a page, no `KrlPublished` fits any more.
const REASON_STEP: usize = 64;
/// Grants issued before the disk fills: revocations that fit with their KRL use up room.
const GRANTS: usize = 10;

/// A file that takes every free page of the tmpfs.
struct Filler {
    file: File,
}

impl Filler {
    fn new(path: &Path) -> Self {
        let mut f = Self {
            file: File::create(path).unwrap(),
        };
        f.fill();
        f
    }

    /// Writes until the file system is full.
    fn fill(&mut self) {
        use std::io::Seek;
        self.file.seek(std::io::SeekFrom::End(0)).unwrap();
        let chunk = [0u8; PAGE as usize];
        for _ in 0..1_000_000 {
            match self.file.write(&chunk) {
                Ok(n) if n == chunk.len() => {}
                // Short or refused: no page left.
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => return,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        panic!("the tmpfs never filled up");
    }

    /// Gives one page back.
    fn free_page(&mut self) {
        let len = self.file.metadata().unwrap().len();
        assert!(len >= PAGE, "nothing left to free");
        self.file.set_len(len - PAGE).unwrap();
    }
}

/// What the real CLI printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `breakglass --config clients/<client>.toml ARGS`.
async fn cli(bin: &Path, d: &TestDaemon, client: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(bin)
        .arg("--config")
        .arg(d.path().join(format!("clients/{client}.toml")))
        .args(args)
        .env_remove("BREAKGLASS_CONFIG")
        .env_remove("BREAKGLASS_SERVER")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("breakglass runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// How one `breakglass revoke` went.
#[derive(Debug)]
enum Revoked {
    /// Recorded, and a KRL of this version lists it (exit 0).
    Published(u64),
    /// Recorded, but the KRL could not be published (exit 69).
    KrlNotPublished(Run),
    /// Not even the revocation fitted: refused, nothing recorded (exit 69).
    NotRecorded,
}

async fn revoke(bin: &Path, d: &TestDaemon, grant: &Grant, reason_len: usize) -> Revoked {
    let reason = format!("INC-19 disk full {}", "x".repeat(reason_len));
    let r = cli(
        bin,
        d,
        "sre",
        &["revoke", "--grant", &grant.grant_id, "--reason", &reason],
    )
    .await;
    match r.code {
        0 => {
            let v = r
                .stdout
                .split("KRL version ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no KRL version in {r:?}"));
            Revoked::Published(v)
        }
        69 if r.stderr.contains("NOT published") => Revoked::KrlNotPublished(r),
        69 if r.stderr.contains("nothing was recorded")
            && r.stderr.contains("No space left on device") =>
        {
            Revoked::NotRecorded
        }
        _ => panic!("unexpected revoke outcome: {r:?}"),
    }
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// A daemon whose audit disk is full right after a revocation was recorded and its KRL
/// was not. Fields drop in order: the daemon stops before the tmpfs goes.
struct RecordedWithoutKrl {
    bin: PathBuf,
    d: TestDaemon,
    filler: Filler,
    fs: Tmpfs,
    host: Target,
    /// The KRL file the host keeps (`sync-krl --out`).
    krl: PathBuf,
    /// The grant revoked without its KRL.
    target: Grant,
    /// What `breakglass revoke` printed for it.
    answer: Run,
    /// The newest KRL version published before.
    last_published: u64,
    /// A host's revocation stream, opened before the disk filled.
    stream: tonic::Streaming<RevocationNotice>,
    _keys: tempfile::TempDir,
    _scratch: tempfile::TempDir,
}

impl RecordedWithoutKrl {
    async fn new() -> Self {
        let bin = tokio::task::spawn_blocking(|| breakglass_bin().clone())
            .await
            .unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let fs = Tmpfs::mount(&scratch.path().join("disk"), TMPFS_SIZE);
        let audit_dir = fs.path().join("audit");
        let d = TestDaemon::start_with(move |c| {
            assert!(
                c.contains("dir = \"audit\""),
                "the dev config names no audit dir"
            );
            c.replace(
                "dir = \"audit\"",
                &format!("dir = {:?}", audit_dir.display().to_string()),
            )
        })
        .await;
        d.client_config("sre", "sre");
        d.client_config("host", "host");
        let sre = d.target("sre");
        let host = d.target("host");
        let keys = tempfile::tempdir().unwrap();
        let mut grants = Vec::new();
        for i in 0..GRANTS {
            grants.push(
                revocation::issue(
                    &sre,
                    keys.path(),
                    &format!("k{i}"),
                    "postgres",
                    "localhost",
                    1200,
                )
                .await,
            );
        }

        // The host installs the current KRL while the disk has room.
        let krl = scratch.path().join("revoked.krl");
        let krl_arg = krl.display().to_string();
        let r = cli(&bin, &d, "host", &["host", "sync-krl", "--out", &krl_arg]).await;
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains("installed KRL version"), "{r:?}");
        let mut last_published = krl_sync::fetch(&host).await.unwrap().version;

        // A host following the revocation stream.
        let stream = RevocationsClient::new(connect::channel(&host).unwrap())
            .watch_revocations(WatchRevocationsRequest { from_version: 0 })
            .await
            .unwrap()
            .into_inner();

        // Fill the disk, then revoke until a revocation is recorded but its KRL is not.
        let mut filler = Filler::new(&fs.path().join("filler"));
        let mut next = grants.into_iter();
        let mut grant = next.next().unwrap();
        let mut len = LONGEST_REASON;
        let mut attempts = 0;
        let (target, answer) = loop {
            attempts += 1;
            assert!(
                attempts < 500,
                "no revocation landed between its record and its KRL"
            );
            match revoke(&bin, &d, &grant, len).await {
                Revoked::Published(v) => {
                    // It and its KRL fitted: that room is used up; on with the next grant.
                    last_published = v;
                    grant = next.next().expect("more grants to revoke");
                    len = LONGEST_REASON;
                }
                Revoked::NotRecorded if len > REASON_STEP => len -= REASON_STEP,
                Revoked::NotRecorded => {
                    // Not even the shortest reason fits in what is left: one more page.
                    filler.free_page();
                    len = LONGEST_REASON;
                }
                Revoked::KrlNotPublished(run) => {
                    // Make sure no page is free (the checkpoint file is rewritten now and
                    // then), and that the daemon still could not publish; otherwise it was
                    // published meanwhile: go on.
                    filler.fill();
                    let fetched = krl_sync::fetch(&host).await.unwrap();
                    if fetched.unpublished_revocations > 0 {
                        break (grant, run);
                    }
                    last_published = fetched.version;
                    grant = next.next().expect("more grants to revoke");
                    len = LONGEST_REASON;
                }
            }
        };
        eprintln!(
            "revocation recorded without its KRL after {attempts} revoke(s):\n{}",
            answer.stderr
        );
        Self {
            bin,
            d,
            filler,
            fs,
            host,
            krl,
            target,
            answer,
            last_published,
            stream,
            _keys: keys,
            _scratch: scratch,
        }
    }

    /// `breakglass host sync-krl` as the host.
    async fn sync_krl(&self) -> Run {
        let out = self.krl.display().to_string();
        cli(
            &self.bin,
            &self.d,
            "host",
            &["host", "sync-krl", "--out", &out],
        )
        .await
    }

    /// Frees the space taken by the filler.
    fn free_space(&mut self) {
        self.filler.file.set_len(0).unwrap();
    }

    /// The audit log, verified, or why not (while the daemon runs, a batch may be
    /// half-written at the moment it is read).
    fn try_events(&self) -> Result<Vec<(u64, breakglass_proto::audit::Event)>, String> {
        breakglass_cli::audit::read_dir_events(
            &self.fs.path().join("audit"),
            &self.d.path().join("log.pub"),
        )
        .map_err(|e| e.to_string())
    }

    /// The verified audit log.
    fn events(&self) -> Vec<(u64, breakglass_proto::audit::Event)> {
        breakglass_cli::audit::read_dir_events(
            &self.fs.path().join("audit"),
            &self.d.path().join("log.pub"),
        )
        .expect("audit log verifies")
    }
}

/// Waits until the daemon serves a KRL newer than `after` that lacks nothing.
async fn published_after(host: &Target, after: u64) -> GetRevocationListResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let f = krl_sync::fetch(host).await.unwrap();
        if f.unpublished_revocations == 0 && f.version > after {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "no KRL published after space returned: still version {} with {} unpublished revocation(s): {}",
            f.version,
            f.unpublished_revocations,
            f.unpublished_reason
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_revocation_is_reported_and_its_krl_published_once_space_returns() {
    if !can_run("root (mounts a tmpfs for the audit log)", is_root()) {
        return;
    }
    let mut t = RecordedWithoutKrl::new().await;
    let grant_id = t.target.grant_id.clone();
    let cert = t.target.key.cert_path.clone().unwrap();
    let last_published = t.last_published;

    // The answer: recorded, NOT published, why, what hosts see, what to do; exit 69.
    let e = &t.answer.stderr;
    assert_eq!(t.answer.code, 69);
    for want in [
        format!("revoked grant {grant_id}"),
        "recorded in the audit log, but the KRL that lists it is NOT published".into(),
        "the audit log cannot be written".into(),
        "No space left on device".into(),
        "hosts that follow the revocation stream (`breakglass host watch-revocations`) got it"
            .into(),
        format!("keep KRL version {last_published}, which does not list it"),
        "sshd there still accepts the certificate".into(),
        "free space on (or fix) the disk".into(),
        "without another revoke".into(),
    ] {
        assert!(e.contains(&want), "missing {want:?} in {e}");
    }

    // The revocation stream has it already: watching hosts end its sessions now.
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(n) = t.stream.message().await.unwrap() {
            if n.grant_id == grant_id {
                return n;
            }
        }
        panic!("the revocation stream ended");
    })
    .await
    .expect("the revocation reached the stream");
    let audit_index = seen.version;

    // What a host that reads the KRL sees: the last published one and why it is not
    // newer; sync-krl exits 69 and does not mark the file as confirmed.
    let fetched = krl_sync::fetch(&t.host).await.unwrap();
    assert_eq!(fetched.version, last_published);
    assert_eq!(fetched.unpublished_revocations, 1);
    assert_eq!(fetched.newest_unpublished, audit_index);
    assert!(
        fetched
            .unpublished_reason
            .contains("No space left on device"),
        "{}",
        fetched.unpublished_reason
    );
    let r = t.sync_krl().await;
    assert_eq!(r.code, 69, "{r:?}");
    let old = SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&t.krl)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let r = t.sync_krl().await;
    assert_eq!(r.code, 69, "{r:?}");
    for want in [
        format!(
            "KRL version {last_published} at {} is the newest the CA serves, but it is not complete",
            t.krl.display()
        ),
        format!(
            "the CA has 1 revocation(s), up to version {audit_index}, that it could not publish in a KRL yet"
        ),
        "No space left on device".into(),
        "sshd on this host still accepts those certificates".into(),
        "not marked as confirmed".into(),
    ] {
        assert!(r.stderr.contains(&want), "missing {want:?} in {r:?}");
    }
    assert_eq!(
        mtime(&t.krl),
        old,
        "a KRL known to lack revocations was marked as confirmed"
    );
    assert!(
        !revocation::ssh_keygen_revoked(&t.krl, &cert),
        "the installed KRL cannot list the unpublished revocation"
    );

    // host doctor says it too (other findings depend on this machine's sshd set-up).
    let r = cli(&t.bin, &t.d, "host", &["host", "doctor"]).await;
    assert!(
        r.stdout.lines().any(|l| l.starts_with("WARN")
            && l.contains("no newer KRL is available: the CA has 1 revocation(s)")),
        "{r:?}"
    );

    // Space returns: the daemon publishes by itself, without another revoke. Fetches do
    // not publish while a failure is pending, so this is the daemon's own retry.
    t.free_space();
    let published = published_after(&t.host, last_published).await;
    assert!(published.unpublished_reason.is_empty());
    let r = t.sync_krl().await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("installed KRL version {}", published.version)),
        "{r:?}"
    );
    assert!(mtime(&t.krl) > old);
    assert!(
        revocation::ssh_keygen_revoked(&t.krl, &cert),
        "sshd must refuse the revoked certificate with the new KRL"
    );

    // The log: the revocation, then the KRL that lists it, and it verifies.
    t.d.pause().await;
    let events = t.events();
    assert_recorded_then_published(&events, &grant_id, audit_index, published.version);
}

/// The log holds the revocation of `grant_id` at `index` and, after it, `KrlPublished` of
/// `version`.
fn assert_recorded_then_published(
    events: &[(u64, breakglass_proto::audit::Event)],
    grant_id: &str,
    index: u64,
    version: u64,
) {
    let revoked_at = events
        .iter()
        .find(|(_, e)| {
            matches!(&e.kind, EventKind::GrantRevoked(g) if g.grant_id.to_string() == grant_id)
        })
        .map(|(i, _)| *i)
        .expect("the revocation is in the log");
    assert_eq!(revoked_at, index);
    assert!(
        events.iter().any(|(i, e)| *i > revoked_at
            && matches!(&e.kind, EventKind::KrlPublished(k) if k.version == version)),
        "no KrlPublished of version {version} after the revocation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_left_unpublished_at_shutdown_is_published_at_start_up() {
    if !can_run("root (mounts a tmpfs for the audit log)", is_root()) {
        return;
    }
    let mut t = RecordedWithoutKrl::new().await;
    let grant_id = t.target.grant_id.clone();
    let index = t
        .answer
        .stderr
        .split("(audit index ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the answer names the revocation's audit index");

    // The daemon stops with the revocation unpublished, and starts again with room.
    t.d.pause().await;
    t.free_space();
    t.d.resume().await;

    // Nobody fetches: the daemon publishes at start-up, as the log on disk shows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let version = loop {
        let published = t.try_events().ok().and_then(|events| {
            events.into_iter().find_map(|(i, e)| match e.kind {
                EventKind::KrlPublished(k) if i > index => Some(k.version),
                _ => None,
            })
        });
        if let Some(v) = published {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no KRL published at start-up for revocation {index}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(version > t.last_published);
    let served = krl_sync::fetch(&t.host).await.unwrap();
    assert_eq!(served.unpublished_revocations, 0);
    assert_eq!(served.version, version);
    let r = t.sync_krl().await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(revocation::ssh_keygen_revoked(
        &t.krl,
        t.target.key.cert_path.as_ref().unwrap()
    ));
    t.d.pause().await;
    assert_recorded_then_published(&t.events(), &grant_id, index, version);
}
