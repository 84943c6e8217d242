//! Session recordings on the daemon, with real pieces: the daemon in-process over mTLS,
//! `breakglass host ship` from a real spool directory, real files under the audit
//! directory, and the auditor's CLI functions. The recording is a small valid asciicast v2
//! made here, its digest computed with the contract's chain (`proto::recording`); the
//! recorder itself is covered by the real-sshd tests of the host side.
//!
//! - shipped after its session's records, stored once, shown by `review list`, exported
//!   unchanged (and played by `asciinema cat`, when installed);
//! - an upload cut off mid-stream resumes from what the daemon holds, stored once;
//! - another host may neither query nor upload it;
//! - a changed byte is refused on arrival (recorded, nothing stored, the file set aside);
//! - a stored recording changed afterwards fails `audit verify` (remote and offline),
//!   naming the session;
//! - retention deletes it, records the deletion, and `audit verify` says so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use breakglass_cli::approvals::{self, RequestMode, RequestResult};
use breakglass_cli::audit::{export, verify_recordings_offline, verify_remote};
use breakglass_cli::error::CliError;
use breakglass_cli::host::ship::{ShipArgs, ShipReport, ship};
use breakglass_cli::settings::Target;
use breakglass_proto::audit::recordings::stored_name;
use breakglass_proto::audit::{Event, EventKind};
use breakglass_proto::recording::chain_of;
use breakglass_proto::spool;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::recording_status_response::State;
use breakglass_proto::v1::{GetRecordingRequest, RecordingChunk, RecordingStatusRequest};
use breakglass_tests::audit::{all_events, log_key};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::request_args;
use breakglass_tests::ssh_keygen;

/// The recorded host (in the `elevated` tier of the dev config, which allows emergencies).
const HOST: &str = "db-7.staging.example";
/// What the recorded session typed and saw.
const TYPED: &str = "echo recorded-session-output";
const SEEN: &str = "recorded-session-output";

/// A daemon that knows `HOST` and a second host, an emergency grant on `HOST`, and the
/// host's spool.
struct Setup {
    d: TestDaemon,
    host: Target,
    grant: String,
    serial: u64,
    spool: tempfile::TempDir,
    _keys: tempfile::TempDir,
}

async fn setup(edit: impl FnOnce(String) -> String) -> Setup {
    let d = TestDaemon::start_with(|c| {
        edit(c.replace(
            "[[identities]]\nid = \"host://localhost\"",
            "[[identities]]\nid = \"host://db-7.staging.example\"\ngroups = [\"hosts\"]\n\n\
             [[identities]]\nid = \"host://web-1.staging.example\"\ngroups = [\"hosts\"]\n\n\
             [[identities]]\nid = \"host://localhost\"",
        ))
    })
    .await;
    let host = d.new_client("db-7", "host://db-7.staging.example");
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id", &["-t", "ed25519"]);
    let args = request_args(
        &public,
        "bgdemo",
        HOST,
        600,
        "INC-16 recorded emergency session",
    );
    let mode = RequestMode {
        emergency: true,
        no_wait: true,
    };
    let outcome = match approvals::request_live(&d.target("sre"), &args, mode, |_| {})
        .await
        .expect("emergency request")
    {
        RequestResult::Issued(o) => o,
        RequestResult::Pending(i) => panic!("not issued at once: {i:?}"),
    };
    Setup {
        host,
        grant: outcome.response.grant_id.clone(),
        serial: outcome.response.serial,
        spool: tempfile::tempdir().unwrap(),
        _keys: keys,
        d,
    }
}

/// A valid asciicast v2 of about `size` bytes: a header, the typed command, its output
/// and filler lines, timed over a few seconds.
fn cast(size: usize) -> Vec<u8> {
    let mut s = String::from(
        "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1700000000, \"env\": {\"SHELL\": \"/bin/bash\", \"TERM\": \"xterm-256color\"}}\n",
    );
    s.push_str("[0.100000, \"o\", \"$ \"]\n");
    s.push_str(&format!("[0.500000, \"i\", \"{TYPED}\\r\"]\n"));
    s.push_str(&format!(
        "[0.600000, \"o\", \"{TYPED}\\r\\n{SEEN}\\r\\n$ \"]\n"
    ));
    let mut t = 1.0f64;
    let mut n = 0;
    while s.len() < size {
        t += 0.01;
        n += 1;
        s.push_str(&format!(
            "[{t:.6}, \"o\", \"line {n} of filler output\\r\\n\"]\n"
        ));
    }
    s.push_str(&format!("[{:.6}, \"o\", \"exit\\r\\n\"]\n", t + 0.5));
    s.into_bytes()
}

/// Writes the open and close records of a session of `s`'s grant into the spool, the
/// close record carrying the digest of `committed`, and `file` as its recording. Returns
/// the session id.
fn write_session(s: &Setup, pid: u32, committed: &[u8], file: &[u8]) -> String {
    let (sha, bytes) = chain_of(committed).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let session = spool::session_id(HOST, Some(&s.grant), pid, now.as_millis() as u64);
    let t = now.as_secs();
    for (event, extra) in [
        ("open", String::new()),
        (
            "close",
            format!(
                r#","recording_sha256":"sha256:{}","recording_bytes":{bytes},"recording_duration_ms":4000"#,
                stored_name(&sha)
            ),
        ),
    ] {
        let id = format!("{session}-{event}");
        std::fs::write(
            s.spool.path().join(format!("{id}.json")),
            format!(
                r#"{{"version":1,"record_id":"{id}","session":"{session}","event":"{event}","time":{t},"host":"{HOST}","user":"bgdemo","grant":"{grant}","serial":{serial},"tty":"ssh","service":"sshd","pid":{pid},"start":{t}{extra}}}"#,
                grant = s.grant,
                serial = s.serial,
            ),
        )
        .unwrap();
    }
    let dir = s.spool.path().join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{session}.cast")), file).unwrap();
    session
}

fn ship_args(s: &Setup) -> ShipArgs {
    ShipArgs {
        spool: s.spool.path().to_owned(),
        once: true,
        retry_for: Duration::from_secs(5),
        lock_wait: Duration::from_secs(60),
        witness: s.d.witness_args("db-7", None),
    }
}

async fn ship_now(s: &Setup) -> ShipReport {
    ship(&s.host, &ship_args(s)).await.expect("host ship")
}

fn local_recording(s: &Setup, session: &str) -> PathBuf {
    s.spool.path().join(format!("recordings/{session}.cast"))
}

fn stored_file(s: &Setup, recording: &[u8]) -> PathBuf {
    let (sha, _) = chain_of(recording).unwrap();
    s.d.path()
        .join("audit/recordings/sha256")
        .join(stored_name(&sha))
}

/// The recording events of `session` in the log, by name.
fn recording_events(events: &[Event], session: &str) -> Vec<&'static str> {
    events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::RecordingStored(r) => r.session_id == session,
            EventKind::RecordingRefused(r) => r.session_id == session,
            EventKind::RecordingDeleted(r) => r.session_id == session,
            _ => false,
        })
        .map(|e| e.code().name())
        .collect()
}

fn host_client(t: &Target) -> HostAgentClient<breakglass_cli::connect::Channel> {
    HostAgentClient::new(breakglass_cli::connect::channel(t).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_recording_is_stored_once_listed_for_review_and_exported_for_asciinema() {
    let s = setup(|c| c).await;
    let recording = cast(150_000);
    let session = write_session(&s, 4242, &recording, &recording);

    let r = ship_now(&s).await;
    assert_eq!(
        (r.appended, r.recordings.stored, r.recordings.refused),
        (2, 1, 0),
        "{r:?}"
    );
    assert!(
        !local_recording(&s, &session).exists(),
        "removed once stored"
    );
    assert_eq!(
        std::fs::read(stored_file(&s, &recording)).unwrap(),
        recording
    );
    // Once more: nothing to send, nothing stored again.
    let r = ship_now(&s).await;
    assert_eq!((r.appended, r.recordings.stored), (0, 0), "{r:?}");
    let events = all_events(&s.d).await;
    assert_eq!(recording_events(&events, &session), ["recording_stored"]);

    // The reviewer sees the emergency grant's session has a stored recording.
    let items = approvals::review_list(&s.d.target("auditor"), false)
        .await
        .unwrap();
    let item = items
        .iter()
        .find(|i| i.grant_id == s.grant)
        .expect("grant under review");
    let x = item
        .sessions
        .iter()
        .find(|x| x.session_id == session)
        .unwrap();
    assert_eq!(x.recording, "stored");
    assert_eq!(x.recording_bytes, recording.len() as u64);
    assert!(x.recording_sha256.starts_with("sha256:"), "{x:?}");
    let text = approvals::describe_reviews(&items);
    assert!(text.contains("recording stored: sha256:"), "{text}");
    assert!(
        text.contains(&format!("breakglass audit play {session}")),
        "{text}"
    );

    // The auditor exports it: the very bytes the host recorded.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("session.cast");
    let said = export(&s.d.target("auditor"), &session, &file)
        .await
        .unwrap();
    assert!(
        said.contains("matches the session's audit record"),
        "{said}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), recording);
    asciinema_cat_shows(&file, SEEN);

    // And the log with its recordings verifies, remotely and offline.
    let report = verify_remote(&s.d.target("auditor"), Some(&log_key(&s.d)), None, None)
        .await
        .unwrap();
    assert!(
        report.contains("recordings: 1 stored recording(s) match"),
        "{report}"
    );
    let mut offline = String::new();
    verify_recordings_offline(
        &s.d.path().join("audit"),
        &log_key(&s.d),
        None,
        &mut offline,
    )
    .unwrap();
    assert!(
        offline.contains("recordings: 1 stored recording(s) match"),
        "{offline}"
    );
}

/// `asciinema cat FILE` prints the recorded output (said loudly when asciinema is missing).
/// It reads keys from `/dev/tty`, so it runs on a pty (`script`).
fn asciinema_cat_shows(file: &Path, seen: &str) {
    if std::process::Command::new("asciinema")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: asciinema is not installed; scripts/install-deps installs it. The export \
             was checked byte for byte against the recording instead."
        );
        return;
    }
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat '{}'", file.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "asciinema cat: {shown} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains(seen), "asciinema cat printed {shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_resumes_after_an_interrupted_stream_and_stores_once() {
    let s = setup(|c| c).await;
    let recording = cast(300_000);
    let session = write_session(&s, 4343, &recording, &recording);
    // The records go in first, the recording stays (moved away for now).
    let aside = s.spool.path().join("aside.cast");
    std::fs::rename(local_recording(&s, &session), &aside).unwrap();
    let r = ship_now(&s).await;
    assert_eq!(r.appended, 2, "{r:?}");
    std::fs::rename(&aside, local_recording(&s, &session)).unwrap();

    let mut client = host_client(&s.host);
    let status = |c: &mut HostAgentClient<_>| {
        let req = RecordingStatusRequest {
            session: session.clone(),
        };
        let mut c = c.clone();
        async move { c.get_recording_status(req).await.unwrap().into_inner() }
    };
    let st = status(&mut client).await;
    assert_eq!((st.state(), st.held_bytes), (State::Incomplete, 0));
    assert_eq!(st.expected_bytes, recording.len() as u64);

    // Two chunks are sent, then the call is cut off mid-stream (the client goes away).
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut upload_client = client.clone();
    let call = tokio::spawn(async move {
        upload_client
            .upload_recording(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let half = 2 * 65_536;
    for (i, piece) in recording[..half].chunks(65_536).enumerate() {
        tx.send(RecordingChunk {
            session: session.clone(),
            offset: (i * 65_536) as u64,
            data: piece.to_vec(),
        })
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&mut client).await.held_bytes < half as u64 {
        assert!(
            Instant::now() < deadline,
            "the daemon never held the first chunks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call.abort();
    drop(tx);
    let _ = call.await;
    let st = status(&mut client).await;
    assert_eq!(
        (st.state(), st.held_bytes),
        (State::Incomplete, half as u64)
    );
    assert!(recording_events(&all_events(&s.d).await, &session).is_empty());

    // An upload that does not start where the daemon's copy ends is refused, saying where.
    let e = client
        .upload_recording(tokio_stream::iter([RecordingChunk {
            session: session.clone(),
            offset: 0,
            data: recording[..10].to_vec(),
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&format!("holds {half}")),
        "{}",
        e.message()
    );

    // The shipper resumes from there; the recording is stored once.
    let r = ship_now(&s).await;
    assert_eq!(r.recordings.stored, 1, "{r:?}");
    assert_eq!(
        std::fs::read(stored_file(&s, &recording)).unwrap(),
        recording
    );
    let st = status(&mut client).await;
    assert_eq!(st.state(), State::Stored);
    // Sent again in full: nothing is read, nothing stored again.
    let again = client
        .upload_recording(tokio_stream::iter([RecordingChunk {
            session: session.clone(),
            offset: 0,
            data: recording[..65_536].to_vec(),
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state(), State::Stored);
    assert_eq!(
        recording_events(&all_events(&s.d).await, &session),
        ["recording_stored"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_host_may_neither_query_nor_upload_the_recording() {
    let s = setup(|c| c).await;
    let recording = cast(10_000);
    let session = write_session(&s, 4444, &recording, &recording);
    let aside = s.spool.path().join("aside.cast");
    std::fs::rename(local_recording(&s, &session), &aside).unwrap();
    ship_now(&s).await;

    let other = s.d.new_client("web-1", "host://web-1.staging.example");
    let mut client = host_client(&other);
    let e = client
        .get_recording_status(RecordingStatusRequest {
            session: session.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("only upload the recordings of its own sessions"),
        "{}",
        e.message()
    );
    let e = client
        .upload_recording(tokio_stream::iter([RecordingChunk {
            session: session.clone(),
            offset: 0,
            data: recording.clone(),
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("db-7.staging.example"),
        "{}",
        e.message()
    );
    // A person is not a host at all.
    let e = host_client(&s.d.target("sre"))
        .get_recording_status(RecordingStatusRequest {
            session: session.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(!stored_file(&s, &recording).exists());
    assert!(recording_events(&all_events(&s.d).await, &session).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_byte_is_refused_on_arrival_and_recorded() {
    let s = setup(|c| c).await;
    let recording = cast(100_000);
    let mut changed = recording.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    let session = write_session(&s, 4545, &recording, &changed);

    let r = ship_now(&s).await;
    assert_eq!((r.recordings.stored, r.recordings.refused), (0, 1), "{r:?}");
    assert!(!stored_file(&s, &recording).exists());
    assert!(!stored_file(&s, &changed).exists());
    let kept = s.spool.path().join(format!("rejected/{session}.cast"));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        changed,
        "set aside for an administrator"
    );
    let why = std::fs::read_to_string(s.spool.path().join(format!("rejected/{session}.cast.why")))
        .unwrap();
    assert!(why.contains("chain hash"), "{why}");
    let events = all_events(&s.d).await;
    assert_eq!(recording_events(&events, &session), ["recording_refused"]);
    // Nothing to export.
    let out = tempfile::tempdir().unwrap();
    let e = export(&s.d.target("auditor"), &session, &out.path().join("x.cast"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not on the daemon yet"), "{e}");
    assert!(!out.path().join("x.cast").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_changed_in_storage_fails_audit_verify_naming_the_session() {
    let s = setup(|c| c).await;
    let recording = cast(100_000);
    let session = write_session(&s, 4646, &recording, &recording);
    assert_eq!(ship_now(&s).await.recordings.stored, 1);

    // One byte of the stored file changes (someone with access to the CA host's disk).
    let path = stored_file(&s, &recording);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[70_000] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let e = verify_remote(&s.d.target("auditor"), Some(&log_key(&s.d)), None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, CliError::Verification(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&session), "{msg}");
    assert!(msg.contains("does NOT match"), "{msg}");

    let mut out = String::new();
    let e = verify_recordings_offline(&s.d.path().join("audit"), &log_key(&s.d), None, &mut out)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&session) && msg.contains("chain hash"),
        "{msg}"
    );

    // As `audit verify` reports it: a verification failure (exit 65).
    assert_eq!(e.exit_status(), breakglass_cli::error::ExitStatus::DATA);

    // Export refuses to write it.
    let dir = tempfile::tempdir().unwrap();
    let e = export(&s.d.target("auditor"), &session, &dir.path().join("x.cast"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("does NOT match its audit record"),
        "{e}"
    );
    assert!(!dir.path().join("x.cast").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_the_recording_and_records_it() {
    let s = setup(|c| format!("{c}\n[recordings]\nkeep = \"2s\"\n")).await;
    let recording = cast(20_000);
    let session = write_session(&s, 4747, &recording, &recording);
    assert_eq!(ship_now(&s).await.recordings.stored, 1);
    let path = stored_file(&s, &recording);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = all_events(&s.d).await;
        if recording_events(&events, &session) == ["recording_stored", "recording_deleted"] {
            let deleted = events
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::RecordingDeleted(r) if r.session_id == session => {
                        Some(r.reason.clone())
                    }
                    _ => None,
                })
                .unwrap();
            assert!(deleted.starts_with("retention"), "{deleted}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never deleted: {:?}",
            recording_events(&events, &session)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!path.exists(), "the file is gone");

    // Verification reports the deletion rather than failing.
    let report = verify_remote(&s.d.target("auditor"), Some(&log_key(&s.d)), None, None)
        .await
        .unwrap();
    assert!(
        report.contains(&format!("recording of session {session} deleted on"))
            && report.contains("by retention"),
        "{report}"
    );
    let mut offline = String::new();
    verify_recordings_offline(
        &s.d.path().join("audit"),
        &log_key(&s.d),
        None,
        &mut offline,
    )
    .unwrap();
    assert!(offline.contains("by retention"), "{offline}");
    // Fetching it says when it went.
    let mut audit = breakglass_proto::v1::audit_client::AuditClient::new(
        breakglass_cli::connect::channel(&s.d.target("auditor")).unwrap(),
    );
    let e = audit
        .get_recording(GetRecordingRequest {
            session: session.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("deleted on"), "{}", e.message());
}
