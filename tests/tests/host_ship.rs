//! Host session records into the audit log with the real pieces: a real `sshd` with
//! `pam_breakglass.so` (`ship=`/`ship_config=`), its session guard starting the real
//! `breakglass host ship`, and the daemon stopped while the session opens and closes.
//! After the daemon comes back the session is in the log exactly once, open and close;
//! a re-delivered record is not appended again.

use std::time::{Duration, Instant};

use breakglass_cli::commands;
use breakglass_cli::host::ship::{ShipArgs, ship};
use breakglass_proto::audit::EventKind;
use breakglass_proto::spool::slots::{self, Slot};
use breakglass_proto::spool::{SessionEvent, SessionRecord};
use breakglass_tests::audit::{all_events, session_counts};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::{client_key, request_args};
use breakglass_tests::sshd::{TestUser, require_root};
use breakglass_tests::{breakglass_bin_built, ssh_keygen};

#[tokio::test(flavor = "multi_thread")]
async fn session_opened_while_the_daemon_is_down_is_logged_once_when_it_returns() {
    if !require_root("a real sshd, a test user and /etc/pam.d") {
        return;
    }
    let bin = breakglass_bin_built().await;
    let mut d = daemon_knowing_db7().await;
    // The host's client identity and config, as an administrator would install them.
    let host_target = d.new_client("db-7", "host://db-7");
    let ship_config = d.client_config("db-7", "db-7");

    let sshd = d.start_sshd(None).await;
    sshd.ship_with(&bin, &ship_config);
    let user = tokio::task::spawn_blocking(TestUser::create).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id", &["-t", "ed25519"]);
    let reason = "INC-4 host records while the CA is down";
    let a = request_args(&public, &user.name, "db-7", 600, reason);
    let outcome = commands::request(&d.target("sre"), &a)
        .await
        .expect("certificate issued");
    let grant = outcome.response.grant_id.clone();
    let key = client_key(&outcome);

    // The CA goes down; a session opens and closes on the host.
    d.pause().await;
    let out = tokio::task::block_in_place(|| sshd.run(&user.name, &key, "echo session-ran"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("session-ran"),
        "the session opens while the daemon is down: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let wait = Duration::from_secs(15);
    assert!(
        sshd.wait_spool(&grant, "close", wait),
        "{:?}",
        sshd.spool_files()
    );
    assert!(
        sshd.spool_files().iter().any(|f| f.ends_with("-open.json")),
        "{:?}",
        sshd.spool_files()
    );

    // The CA comes back: the shipper the guard started (retrying with backoff) delivers.
    d.resume().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let events = all_events(&d).await;
        let records: Vec<String> = sshd
            .spool_files()
            .into_iter()
            .filter(|f| f.ends_with(".json"))
            .collect();
        if session_counts(&events, &grant, Some("db-7")) == (1, 1) && records.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: log {:?}, spool {records:?}",
            session_counts(&events, &grant, Some("db-7"))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Once more by hand (the timer's job): nothing new. A record whose deletion was lost
    // after the daemon's answer is acknowledged as a duplicate and removed.
    let spool = sshd.dir.path().join("spool");
    let args = ship_once(&d, &spool);
    let r = ship(&host_target, &args).await.unwrap();
    assert_eq!((r.appended, r.duplicates, r.rejected), (0, 0, 0), "{r:?}");
    let events = all_events(&d).await;
    let opened = events
        .iter()
        .find(|e| {
            matches!(e.kind, EventKind::SessionOpened(_))
                && e.kind.grant_id().is_some_and(|g| g.to_string() == grant)
        })
        .unwrap();
    let s = opened.kind.session().unwrap();
    let record = format!(
        r#"{{"version":1,"record_id":"{id}","session":"{session}","event":"open","time":{t},"host":"db-7","user":"{user}","grant":"{grant}","serial":{serial},"pid":{pid},"start":{t}}}"#,
        id = s.record_id,
        session = s.session_id,
        t = opened.time.0 / 1000,
        user = user.name,
        serial = s.serial,
        pid = s.session_id.split('-').rev().nth(1).unwrap(),
    );
    std::fs::write(spool.join(format!("{}.json", s.record_id)), record).unwrap();
    let r = ship(&host_target, &args).await.unwrap();
    assert_eq!((r.appended, r.duplicates), (0, 1), "{r:?}");
    assert_eq!(
        session_counts(&all_events(&d).await, &grant, Some("db-7")),
        (1, 1)
    );
    assert!(
        sshd.spool_files()
            .iter()
            .all(|f| !f.ends_with(".json") || f.starts_with('.')),
        "{:?}",
        sshd.spool_files()
    );
    d.stop().await;
}

/// A test daemon that knows host `db-7` (in the policy's hosts, and `host://db-7` in the
/// hosts group).
async fn daemon_knowing_db7() -> TestDaemon {
    TestDaemon::start_with(|c| {
        c.replace(
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\"]",
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\", \"db-7\"]",
        )
        .replace(
            "[[identities]]\nid = \"host://localhost\"",
            "[[identities]]\nid = \"host://db-7\"\ngroups = [\"hosts\"]\n\n[[identities]]\nid = \"host://localhost\"",
        )
    })
    .await
}

/// `breakglass host ship --once` of `spool` as host `db-7`.
fn ship_once(d: &TestDaemon, spool: &std::path::Path) -> ShipArgs {
    ShipArgs {
        spool: spool.to_path_buf(),
        once: true,
        retry_for: Duration::from_secs(5),
        lock_wait: Duration::from_secs(60),
        witness: d.witness_args("db-7", None),
    }
}

/// The session records in the slots of `spool`'s slot file (`spool_slots=`), and the
/// number of slots that are not free.
fn slot_records(spool: &std::path::Path) -> (Vec<SessionRecord>, usize) {
    let Ok(bytes) = std::fs::read(spool.join(slots::FILE_NAME)) else {
        return (Vec::new(), 0);
    };
    let mut records = Vec::new();
    let mut used = 0;
    for slot in bytes.chunks(slots::SLOT_SIZE) {
        match slots::decode(slot) {
            Slot::Free => {}
            Slot::Record { record, .. } => {
                used += 1;
                records.push(SessionRecord::from_json(record).expect("a slot record parses"));
            }
            Slot::Damaged(_) => used += 1,
        }
    }
    (records, used)
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_records_of_a_real_login_ship_once_and_their_slots_are_freed() {
    if !require_root("a real sshd, a test user and /etc/pam.d") {
        return;
    }
    let d = daemon_knowing_db7().await;
    let host_target = d.new_client("db-7", "host://db-7");
    let sshd = d.start_sshd(None).await;
    sshd.set_module_options("spool_slots=4");
    let user = tokio::task::spawn_blocking(TestUser::create).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let public = ssh_keygen(keys.path(), "id", &["-t", "ed25519"]);
    let a = request_args(&public, &user.name, "db-7", 600, "INC-5 records in slots");
    let outcome = commands::request(&d.target("sre"), &a)
        .await
        .expect("certificate issued");
    let grant = outcome.response.grant_id.clone();
    let key = client_key(&outcome);
    let out = tokio::task::block_in_place(|| sshd.run(&user.name, &key, "echo session-ran"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("session-ran"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    let spool = sshd.dir.path().join("spool");
    let closed = breakglass_test_support::wait::until(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            slot_records(&spool)
                .0
                .iter()
                .any(|r| r.event == SessionEvent::Close)
        },
    );
    let (records, used) = slot_records(&spool);
    assert!(closed, "{records:?} {:?}", sshd.spool_files());
    let events: Vec<SessionEvent> = records.iter().map(|r| r.event).collect();
    assert!(events.contains(&SessionEvent::Open), "{events:?}");
    assert_eq!(used, records.len());
    assert!(
        sshd.spool_files().iter().all(|f| !f.ends_with(".json")),
        "records went to slots, not files: {:?}",
        sshd.spool_files()
    );
    // A slot cut short by a crash: set aside, never delivered.
    let mut torn = slots::encode(1, &records[0].to_json().unwrap()).unwrap();
    torn[100..].fill(0);
    let free = (0..4)
        .find(|i| {
            let bytes = std::fs::read(spool.join(slots::FILE_NAME)).unwrap();
            slots::is_free(&bytes[i * slots::SLOT_SIZE..])
        })
        .expect("a free slot");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(spool.join(slots::FILE_NAME))
            .unwrap();
        f.write_all_at(&torn, (free * slots::SLOT_SIZE) as u64)
            .unwrap();
    }

    let args = ship_once(&d, &spool);
    let r = ship(&host_target, &args).await.unwrap();
    assert_eq!(
        (r.appended, r.duplicates, r.rejected),
        (records.len() as u64, 0, 1),
        "{r:?}"
    );
    assert_eq!(
        session_counts(&all_events(&d).await, &grant, Some("db-7")),
        (1, 1)
    );
    assert_eq!(
        slot_records(&spool),
        (Vec::new(), 0),
        "every slot is free again"
    );
    let rejected = breakglass_test_support::fs::file_names(&spool.join("rejected"));
    assert!(
        rejected.iter().any(|f| f.ends_with(".bin.why")),
        "{rejected:?}"
    );
    // Shipped once: a second run has nothing to deliver.
    let r = ship(&host_target, &args).await.unwrap();
    assert_eq!((r.appended, r.duplicates, r.rejected), (0, 0, 0), "{r:?}");
    d.stop().await;
}
