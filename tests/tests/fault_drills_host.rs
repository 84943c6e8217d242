//! Host fault drills (issue 19 §5; RELIABILITY.md, "Host fault drills"), each against the
//! real parts: a real `sshd` with the real `pam_breakglass.so` and its session guard, the
//! real `breakglass host ship` executable, and the daemon over mTLS (in-process, or the
//! real `breakglass-ca serve` process where it must die by SIGKILL). All need root (a
//! tmpfs, useradd, /etc/pam.d, sshd) and skip loudly without it.
//! - the daemon's audit disk full while the host ships: the records stay in the spool,
//!   the shipper says why, and once space returns each arrives exactly once, also those a
//!   call appended before the disk filled up again (counted in the log);
//! - the host's spool full while a session opens: the module denies it (fail closed, as
//!   pam_breakglass(8) says), the connection ends, `host doctor` says why, and logins work
//!   again when space returns;
//! - the daemon killed (SIGKILL) while sessions open, warn, end at expiry, close and are
//!   denied: every record waits in the spool and arrives exactly once after the restart,
//!   with the guards' shippers and the timer's shipper running at the same time;
//! - a torn record in the spool (cut in the middle, empty, or a temporary file a crash
//!   left behind): the shipper quarantines it in `rejected/` saying why and ships the rest;
//!   the module keeps working.
//!
//! The session guard killed with SIGKILL is `tests/tests/guard_watch_e2e.rs`; the syslog
//! socket missing or never read and the revocation stream down are in
//! `tests/tests/fault_drills_host_net.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use breakglass_proto::audit::Event;
use breakglass_test_support::ca::{self, CaProcess};
use breakglass_tests::audit::all_events;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::faults::Tmpfs;
use breakglass_tests::host::code_and_output;
use breakglass_tests::process::{Captured, wait_exit};
use breakglass_tests::revocation::issue;
use breakglass_tests::sshd::{
    CertSpec, ClientKey, SshSession, Sshd, SshdOptions, TestCa, TestUser, cmdline, processes_where,
};
use breakglass_tests::{breakglass_bin, breakglass_ca_bin, can_run, is_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Generous bound on every wait for something the host or the daemon does by itself.
const BOUND: Duration = Duration::from_secs(30);

/// The dev daemon with hosts `db-7` and `db-8` allowed to the sample SRE and the host
/// identity `host://db-7`, after `edit` rewrote its config text.
async fn daemon_with(edit: impl FnOnce(String) -> String) -> TestDaemon {
    TestDaemon::start_with(|c| {
        let c = c.replace(
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\"]",
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\", \"db-7\", \"db-8\"]",
        );
        edit(format!(
            "{c}\n[[identities]]\nid = \"host://db-7\"\ngroups = [\"hosts\"]\n"
        ))
    })
    .await
}

async fn daemon() -> TestDaemon {
    daemon_with(|c| c).await
}

fn root(what: &str) -> bool {
    can_run(
        &format!("root ({what}, a real sshd, /etc/pam.d and a test user)"),
        is_root(),
    )
}

/// Polls `f` every 50 ms for at most `bound`.
fn poll<T>(bound: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test host `db-7`: sshd with the module, and the host's client config (`host://db-7`,
/// its witness state and the log's pinned key) for `breakglass host ...`.
struct Host {
    sshd: Sshd,
    config: PathBuf,
}

impl Host {
    async fn start(d: &TestDaemon) -> Self {
        let sshd = d.start_sshd(Some("db-7")).await;
        d.new_client("db7", "host://db-7");
        Self {
            sshd,
            config: d.client_config("db7", "db7"),
        }
    }

    fn spool(&self) -> PathBuf {
        self.sshd.dir.path().join("spool")
    }

    /// Record ids of the records waiting in the spool.
    fn waiting(&self) -> BTreeSet<String> {
        spooled(&self.spool())
    }

    /// `ssh user@db-7 <command>`: exit code and everything ssh printed.
    async fn login(&self, user: &str, key: &ClientKey, command: &str) -> (Option<i32>, String) {
        let mut cmd = self.sshd.ssh(user, key, &[]);
        cmd.arg(command);
        code_and_output(cmd).await
    }

    async fn assert_login_works(&self, user: &str, key: &ClientKey) {
        let (code, out) = self.login(user, key, "echo logged-in").await;
        assert!(
            code == Some(0) && out.contains("logged-in"),
            "login failed ({code:?}): {out}\n{}\n{:#?}",
            self.sshd.log(),
            self.sshd.syslog.lines()
        );
    }

    /// Runs the real `breakglass --config <host.toml> host ship --spool <spool> <args>`.
    fn ship(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(breakglass_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .args(["host", "ship", "--spool"])
            .arg(self.spool())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a shipper to its end: exit code and what it printed.
    async fn ship_once(&self, args: &[&str]) -> (Option<i32>, String) {
        code_and_output(self.ship(args)).await
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        kill_shippers(&self.spool());
    }
}

/// Record ids of the `*.json` records in `spool` (not its temporary files or `rejected/`).
fn spooled(spool: &Path) -> BTreeSet<String> {
    std::fs::read_dir(spool)
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                (!name.starts_with('.'))
                    .then(|| name.strip_suffix(".json").map(str::to_owned))
                    .flatten()
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Waits until `spool` holds at least `want` records and has not changed for a second.
fn settled(spool: &Path, want: usize) -> BTreeSet<String> {
    let mut last = BTreeSet::new();
    let mut since = Instant::now();
    poll(BOUND, || {
        let now = spooled(spool);
        if now != last {
            last = now;
            since = Instant::now();
            return None;
        }
        (last.len() >= want && since.elapsed() >= Duration::from_secs(1)).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("the spool did not settle on {want} records: {last:?}"))
}

/// Pids of `breakglass host ship` processes working on `spool`.
fn shippers(spool: &Path) -> Vec<u32> {
    let spool = spool.display().to_string();
    processes_where(|pid| {
        let c = cmdline(pid);
        c.contains(" host ship ") && c.contains(&spool)
    })
}

/// Ends the shippers of `spool` still running (a guard's shipper retries for minutes).
fn kill_shippers(spool: &Path) {
    for pid in shippers(spool) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// How many times each host record id is in the log.
fn logged(events: &[Event]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for s in events.iter().filter_map(|e| e.kind.session()) {
        *n.entry(s.record_id.clone()).or_insert(0) += 1;
    }
    n
}

/// Asserts that every record of `ids` is in the log exactly once.
fn assert_exactly_once(events: &[Event], ids: &BTreeSet<String>) {
    let n = logged(events);
    let wrong: Vec<(&String, usize)> = ids
        .iter()
        .map(|id| (id, n.get(id).copied().unwrap_or(0)))
        .filter(|(_, c)| *c != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "records not in the log exactly once (id, times): {wrong:?}"
    );
}

/// How many of `ids` are in the log.
fn in_log(events: &[Event], ids: &BTreeSet<String>) -> usize {
    let n = logged(events);
    ids.iter().filter(|id| n.contains_key(*id)).count()
}

// ---------------------------------------------------------------------------------------
// Disk full.

/// The daemon's audit log on a 4 MiB tmpfs; sessions' records wait in the host spool; the
/// disk fills up; the timer's shipper gives up saying the records stay; a shipper
/// started on the full disk fails and retries (a call's records are one commit: none of
/// them is appended); once space returns it delivers them, any a failed call had appended
/// come back as duplicates: each record is in the log exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_disk_full_while_a_host_ships_keeps_the_records_until_they_arrive_exactly_once() {
    if !root("a tmpfs for the audit log") {
        return;
    }
    const SESSIONS: usize = 20;
    /// Room made on the full disk before the shipper runs: none. The records of one
    /// `AppendHostRecords` call are one commit (all or none), and the 40 records here go
    /// in one call, so the shipper fails on the full disk and retries until space returns.
    const ROOM: u64 = 0;
    let mnt = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&mnt.path().join("audit-disk"), "4m");
    let audit_dir = disk.path().join("audit");
    let dir = audit_dir.display().to_string();
    let d = daemon_with(move |c| c.replace("dir = \"audit\"", &format!("dir = \"{dir}\""))).await;
    let h = Host::start(&d).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    for _ in 0..SESSIONS {
        h.assert_login_works(&user.name, &g.key).await;
    }
    let spool = h.spool();
    let records = tokio::task::spawn_blocking(move || settled(&spool, 2 * SESSIONS))
        .await
        .unwrap();
    assert_eq!(records.len(), 2 * SESSIONS, "{records:?}");

    // The audit disk fills up. The timer's shipper gives up and says the records stay.
    let filler = disk.fill();
    let (code, out) = h.ship_once(&["--retry-for", "3s"]).await;
    assert_eq!(code, Some(69), "{out}");
    assert!(
        out.contains("audit log") && out.contains(&format!("stay in {}", h.spool().display())),
        "{out}"
    );
    assert_eq!(h.waiting(), records, "a record left the spool: {out}");
    let events = all_events(&d).await; // reads keep working
    let first = in_log(&events, &records);
    assert!(first < records.len(), "all records fitted: {out}");

    // The disk stays full (ROOM): a shipper fails, keeps every record, and retries.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(ROOM)).unwrap();
    drop(f);
    let mut child = h
        .ship(&["--retry-for", "2m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Captured::take(&mut child);
    let retrying = tokio::task::spawn_blocking({
        let out = out.clone();
        move || out.wait_for("retrying in", BOUND, Duration::from_millis(20))
    })
    .await
    .unwrap();
    assert!(
        retrying,
        "the shipper did not fail on the full disk: {}",
        out.text()
    );
    let partial = in_log(&all_events(&d).await, &records);
    assert_eq!(
        h.waiting(),
        records,
        "a record left the spool: {}",
        out.text()
    );
    // Space returns: the same shipper delivers the rest.
    std::fs::remove_file(&filler).unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let st = wait_exit(
            &mut child,
            Duration::from_secs(90),
            Duration::from_millis(50),
        );
        if st.is_none() {
            let _ = child.kill();
        }
        st
    })
    .await
    .unwrap();
    let text = out.text();
    assert!(status.is_some_and(|s| s.success()), "{text}");
    let events = all_events(&d).await;
    assert_exactly_once(&events, &records);
    assert!(h.waiting().is_empty(), "{:?}", h.waiting());
    // The records a failed call had appended came back as duplicates, none twice.
    let summary = text
        .lines()
        .rfind(|l| l.starts_with("delivered "))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    let dups: usize = summary
        .rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        summary.starts_with(&format!("delivered {} record(s) (", records.len()))
            && (partial..records.len()).contains(&dups),
        "{summary}: {first} in the log after the first run, {partial} while retrying"
    );
    println!(
        "{} records: {first} appended before the disk was full, {partial} while the shipper \
         retried; then: {summary}",
        records.len()
    );
    // The log verifies offline with its key.
    let verified =
        breakglass_cli::audit::read_dir_events(&audit_dir, &d.path().join("log.pub")).unwrap();
    assert_eq!(verified.len(), events.len());
    drop(h);
    drop(d);
}

/// The module's spool on a small tmpfs that fills up: a breakglass login is denied (the
/// module records every session durably before admitting it), the user is told why, the
/// command does not run and an `ssh -N` connection does not linger; `host doctor` FAILs
/// on the spool; once space returns logins work and are recorded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spool_full_at_session_open_denies_the_session_until_space_returns() {
    if !root("a tmpfs for the spool") {
        return;
    }
    let ca = TestCa::new();
    let sshd = tokio::task::spawn_blocking({
        let line = ca.public_line();
        move || {
            Sshd::start(&SshdOptions {
                sshd_trusts: vec![line.clone()],
                module_trusts: vec![line],
                ..Default::default()
            })
        }
    })
    .await
    .unwrap();
    let spool_disk = Tmpfs::mount(&sshd.dir.path().join("spool"), "64k");
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::with_cert(keys.path(), "k", &ca, &CertSpec::new(0x5f, &user.name, 600));
    let login = |cmd: &str| {
        let mut c = sshd.ssh(&user.name, &key, &[]);
        c.arg(cmd);
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = login("echo logged-in");
    assert!(code == Some(0) && out.contains("logged-in"), "{out}");
    let before = settled(spool_disk.path(), 2);

    let filler = spool_disk.fill();
    let (code, out) = login("echo must-not-run");
    assert!(!out.contains("must-not-run"), "the command ran: {out}");
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("breakglass: session denied: cannot write")
            && out.contains("No space left on device"),
        "{out}"
    );
    let line = sshd
        .syslog
        .wait_for(
            &["event=session_denied", "reason=spool_error", &user.name],
            BOUND,
        )
        .unwrap_or_else(|| panic!("{:#?}", sshd.syslog.lines()));
    assert!(line.contains("No space left on device"), "{line}");
    // The deny record could not be written either; that is said, not hidden.
    assert!(
        sshd.syslog
            .wait_for(&["event=spool_error", "No space left on device"], BOUND)
            .is_some(),
        "{:#?}",
        sshd.syslog.lines()
    );
    // `ssh -N` (no command, so nothing exits by itself) is disconnected too.
    let mut c = sshd.ssh(&user.name, &key, &["-N"]);
    c.stdin(Stdio::null());
    let mut forwarder = SshSession::spawn(c);
    assert!(
        forwarder.wait_exit(BOUND).is_some(),
        "ssh -N still connected after the denial: {}",
        forwarder.output()
    );
    // Its guard tried to record the forced end (after the client was gone) while the disk
    // was still full: wait for that, or the record could land once space returns.
    assert!(
        sshd.syslog
            .wait_for(&["event=session_forced_end"], BOUND)
            .is_some(),
        "{:#?}",
        sshd.syslog.lines()
    );
    // Nothing half-written: no new record, no temporary file.
    let files: Vec<String> = std::fs::read_dir(spool_disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "filler")
        .collect();
    assert_eq!(
        files.iter().cloned().collect::<BTreeSet<_>>(),
        before.iter().map(|id| format!("{id}.json")).collect(),
        "{files:?}"
    );

    // host doctor says why sessions are denied.
    let out = Command::new(breakglass_bin())
        .args(["host", "doctor", "--sshd"])
        .arg(sshd.dir.path().join(&sshd.service))
        .arg("--sshd-config")
        .arg(sshd.dir.path().join("sshd_config"))
        .arg("--pam-service")
        .arg(Path::new("/etc/pam.d").join(&sshd.service))
        .env_remove("BREAKGLASS_CONFIG")
        .env("HOME", keys.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let spool_line = report
        .lines()
        .find(|l| l.contains(&format!("spool {}", spool_disk.path().display())))
        .unwrap_or_else(|| panic!("no spool line:\n{report}"));
    assert!(
        spool_line.starts_with("FAIL") && spool_line.contains("No space left on device"),
        "{report}"
    );
    assert_eq!(out.status.code(), Some(78), "{report}");

    // Space returns: the next login works and is recorded.
    std::fs::remove_file(&filler).unwrap();
    let (code, out) = login("echo logged-in");
    assert!(code == Some(0) && out.contains("logged-in"), "{out}");
    let after = settled(spool_disk.path(), before.len() + 2);
    assert_eq!(after.len(), before.len() + 2, "{after:?}");
    drop(spool_disk);
}

// ---------------------------------------------------------------------------------------
// The daemon down.

/// Copies the spool records `ids` from `from` to `to`.
fn copy_records<'a>(ids: impl IntoIterator<Item = &'a String>, from: &Path, to: &Path) {
    for id in ids {
        let name = format!("{id}.json");
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

/// The daemon as the real `breakglass-ca serve` process on a paused [`TestDaemon`]'s
/// directory and port.
fn serve_paused(d: &TestDaemon) -> CaProcess {
    let config = d.path().join(breakglass_ca::init::CONFIG_FILE);
    let text = std::fs::read_to_string(&config).unwrap();
    // The gRPC listener's line only (`metrics_listen = ` stays on an ephemeral port).
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("listen = ") {
                format!("listen = \"127.0.0.1:{}\"", d.port)
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&config, text.join("\n") + "\n").unwrap();
    let mut cmd = ca::serve_command(breakglass_ca_bin(), &config);
    CaProcess::start(&mut cmd, Duration::from_secs(60), |log| {
        log.contains("breakglass-ca serving")
    })
}

/// The daemon as the real process: a session's records are delivered, then the process is
/// SIGKILLed. On the host a session opens and closes, one is warned and ended at expiry,
/// one is denied, while the guards' shippers (`ship=`) retry. After the restart the guards'
/// shippers and the timer's shipper deliver at the same time: every record is in the log
/// exactly once and the spool is empty; records delivered before the kill and put back in
/// the spool (a deletion lost in the crash) are acknowledged as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_killed_while_sessions_open_and_close_gets_every_record_exactly_once() {
    if !root("a daemon process to SIGKILL") {
        return;
    }
    let bin = tokio::task::spawn_blocking(|| {
        breakglass_ca_bin();
        breakglass_bin().clone()
    })
    .await
    .unwrap();
    let mut d = daemon().await;
    let h = Host::start(&d).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");
    let long = issue(&sre, keys.path(), "long", &user.name, "db-7", 600).await;
    let short = issue(&sre, keys.path(), "short", &user.name, "db-7", 20).await;
    let elsewhere = issue(&sre, keys.path(), "db8", &user.name, "db-8", 600).await;

    // The real daemon process serves; a session's records are delivered (and kept aside).
    d.pause().await;
    let mut ca = serve_paused(&d);
    h.assert_login_works(&user.name, &long.key).await;
    let spool = h.spool();
    let delivered = tokio::task::spawn_blocking(move || settled(&spool, 2))
        .await
        .unwrap();
    let kept = tempfile::tempdir().unwrap();
    copy_records(&delivered, &h.spool(), kept.path());
    let (code, out) = h.ship_once(&["--once"]).await;
    assert!(
        code == Some(0) && out.contains("delivered 2 record(s)"),
        "{out}"
    );

    // Down hard: SIGKILL. From now on the guards start a shipper after every record.
    ca.kill9();
    h.sshd.ship_with(&bin, &h.config);
    h.assert_login_works(&user.name, &long.key).await;
    let (_, out) = h
        .login(&user.name, &elsewhere.key, "echo must-not-run")
        .await;
    assert!(
        !out.contains("must-not-run") && out.contains("scoped to hosts"),
        "{out}"
    );
    let mut cmd = h.sshd.ssh(&user.name, &short.key, &[]);
    cmd.arg("echo started; sleep 300");
    let mut ending = SshSession::spawn(cmd);
    let bound = Duration::from_secs(20) + BOUND;
    let (ended, said) = tokio::task::spawn_blocking(move || {
        let st = ending.wait_exit(bound);
        (st, ending.output())
    })
    .await
    .unwrap();
    assert!(ended.is_some() && said.contains("started"), "{said}");
    let spool = h.spool();
    let records = tokio::task::spawn_blocking(move || settled(&spool, 7))
        .await
        .unwrap();
    let kinds: BTreeSet<&str> = records
        .iter()
        .filter_map(|id| {
            ["-open", "-close", "-warn", "-forced_end", "-deny"]
                .into_iter()
                .find(|k| id.ends_with(k))
        })
        .collect();
    assert_eq!(kinds.len(), 5, "{records:?}");
    let retrying = shippers(&h.spool());
    assert!(
        !retrying.is_empty(),
        "no guard's shipper is retrying: {:#?}",
        h.sshd.syslog.lines()
    );

    // Back up: the guards' shippers (backing off) and the timer's shipper race to deliver.
    let mut ca = serve_paused(&d);
    let (code, out) = h
        .ship_once(&["--retry-for", "50s", "--lock-wait", "30s"])
        .await;
    assert_eq!(code, Some(0), "{out}");
    let spool = h.spool();
    let drained = tokio::task::spawn_blocking(move || {
        poll(Duration::from_secs(60), || {
            (spooled(&spool).is_empty() && shippers(&spool).is_empty()).then_some(())
        })
    })
    .await
    .unwrap();
    assert!(
        drained.is_some(),
        "spool {:?}, shippers {:?}",
        h.waiting(),
        shippers(&h.spool())
    );
    assert_exactly_once(&all_events(&d).await, &records);
    assert!(!h.spool().join("rejected").exists());

    // Records delivered before the kill, back in the spool: duplicates, not appended again.
    copy_records(&delivered, kept.path(), &h.spool());
    let (code, again) = h.ship_once(&["--once"]).await;
    assert!(
        code == Some(0) && again.contains("delivered 2 record(s) (2 were already in the log)"),
        "{again}"
    );
    let all: BTreeSet<String> = records.union(&delivered).cloned().collect();
    assert_exactly_once(&all_events(&d).await, &all);
    println!(
        "{} records spooled while the daemon was down ({} guard shippers retrying), each \
         delivered once after the restart; the timer's shipper: {}",
        records.len(),
        retrying.len(),
        out.trim()
    );
    ca.kill9();
}

// ---------------------------------------------------------------------------------------
// Torn writes.

/// Cuts the file at `path` in the middle, as a crash while it was written would.
fn tear(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

/// Three kinds of torn writes in the spool: a record cut in the middle, a record that is
/// empty, and a half-written temporary file an hour old (a writer that died before its
/// rename). The shipper moves each to `rejected/` with the reason, says so, and delivers
/// the others; a temporary file being written now is left alone; later sessions are
/// recorded and shipped as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torn_spool_records_are_quarantined_and_the_rest_ships() {
    if !root("a real sshd") {
        return;
    }
    let d = daemon().await;
    let h = Host::start(&d).await;
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let g = issue(&d.target("sre"), keys.path(), "k", &user.name, "db-7", 600).await;
    for _ in 0..3 {
        h.assert_login_works(&user.name, &g.key).await;
    }
    let spool = h.spool();
    let records = tokio::task::spawn_blocking(move || settled(&spool, 6))
        .await
        .unwrap();
    let ids: Vec<&String> = records.iter().collect();
    let (cut, empty) = (ids[1].clone(), ids[4].clone());
    tear(&h.spool().join(format!("{cut}.json")));
    std::fs::write(h.spool().join(format!("{empty}.json")), "").unwrap();
    // A crash between write and rename: the module's temporary file, an hour old; and one
    // being written right now.
    let stale = h.spool().join(format!(".{}.json.tmp", ids[2]));
    std::fs::copy(h.spool().join(format!("{}.json", ids[2])), &stale).unwrap();
    tear(&stale);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let fresh = h.spool().join(".db-7-g-0000000000000001-1-1-open.json.tmp");
    std::fs::write(&fresh, "{\"version\":1,").unwrap();

    let (code, out) = h.ship_once(&["--once"]).await;
    assert_eq!(code, Some(0), "{out}");
    let rejected = h.spool().join("rejected");
    let stale_name = stale.file_name().unwrap().to_string_lossy().into_owned();
    for (name, kept, why) in [
        (format!("{cut}.json"), format!("{cut}.json"), "cut short"),
        (format!("{empty}.json"), format!("{empty}.json"), "empty"),
        (
            stale_name.clone(),
            stale_name[1..].to_owned(),
            "never finished",
        ),
    ] {
        assert!(
            rejected.join(&kept).exists(),
            "{kept} not in rejected/: {out}"
        );
        let reason = std::fs::read_to_string(rejected.join(format!("{kept}.why"))).unwrap();
        assert!(reason.contains(why), "{name}: {reason}");
        assert!(
            out.contains(&format!("record {name} rejected")) && out.contains(why),
            "{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "delivered {} record(s) (0 were already in the log); 3 rejected, kept in rejected/",
            records.len() - 2
        )),
        "{out}"
    );
    assert!(fresh.exists(), "a write in progress was taken away");
    let delivered: BTreeSet<String> = records
        .iter()
        .filter(|id| **id != cut && **id != empty)
        .cloned()
        .collect();
    let events = all_events(&d).await;
    assert_exactly_once(&events, &delivered);
    assert_eq!(in_log(&events, &BTreeSet::from([cut, empty])), 0);

    // The module keeps working beside the quarantine; later records ship as usual.
    std::fs::remove_file(&fresh).unwrap();
    h.assert_login_works(&user.name, &g.key).await;
    let spool = h.spool();
    let later = tokio::task::spawn_blocking(move || settled(&spool, 2))
        .await
        .unwrap();
    let (code, out) = h.ship_once(&["--once"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("delivered 2 record(s)"), "{out}");
    assert_exactly_once(&all_events(&d).await, &later);
    assert!(h.waiting().is_empty());
}
