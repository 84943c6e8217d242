//! `breakglass host ship`: delivers the session records of the host spool (written by
//! `pam_breakglass` and its session guard: one JSON file per record, or a slot of the
//! spool's slot file each, [`super::ship_slots`]) to breakglass-ca, each exactly once.
//!
//! - One shipper at a time: an exclusive `flock` on `<spool>/.ship.lock`. A shipper started
//!   while another runs waits for the lock (bounded), then ships what is left, so a record
//!   written just after the running shipper listed the spool is never stranded.
//! - In order: oldest record first (time, then open < warn < close/end within a second).
//! - A spool file is deleted (a slot freed) only after the daemon acknowledged the record
//!   as durable (or as already in the log: a retry after a lost answer). Records the daemon
//!   rejects (not this host's, malformed) are moved to `<spool>/rejected/` with the reason
//!   beside them; so is a slot that holds no complete record (a write cut short).
//! - While the daemon cannot be reached: retries with exponential backoff (1 s doubling to
//!   30 s) for at most `--retry-for`, then gives up (exit 69); the next run (the guard's
//!   next record, or the systemd timer) delivers the rest.
//! - Only into a log this host can trust: before the first record is sent, the host
//!   witnesses the CA's audit log ([`super::witness::check`]); when the log does not extend
//!   the checkpoint this host saw last (rolled back or forked), nothing is delivered and the
//!   records stay in the spool.

#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use breakglass_proto::spool::{self, SessionEvent, SessionRecord};
use breakglass_proto::text::escaped as esc;
use breakglass_proto::v1::AppendHostRecordsRequest;
use breakglass_proto::v1::host_agent_client::HostAgentClient;
use breakglass_proto::v1::host_record_result::Status as RecordStatus;
use clap::Args;

use super::ship_slots::{SlotFile, Used};
use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// Lock file inside the spool.
pub const LOCK_FILE: &str = ".ship.lock";
pub use super::ship_recordings::REJECTED_DIR;
use super::ship_recordings::rejected_dir;
/// Records per call.
const BATCH: usize = 100;
/// Age after which a writer's temporary file (`.<record>.json.tmp`) is known abandoned: a
/// write and fsync of one record takes milliseconds.
const ABANDONED_TMP: Duration = Duration::from_secs(600);

/// `breakglass host ship`.
#[derive(Debug, Args, Clone)]
pub struct ShipArgs {
    /// Spool directory (the module's spool= option)
    #[arg(long, value_name = "DIR", default_value = spool::DEFAULT_DIR)]
    pub spool: PathBuf,
    /// Try once: no retries while the daemon is unreachable
    #[arg(long)]
    pub once: bool,
    /// Give up after retrying this long while the daemon is unreachable
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::flags::parse_duration)]
    pub retry_for: Duration,
    /// Wait at most this long for another shipper to release the spool
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = crate::flags::parse_duration)]
    pub lock_wait: Duration,
    #[command(flatten)]
    pub witness: super::witness::WitnessArgs,
}

/// What one `ship` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    /// Records appended to the log by this run.
    pub appended: u64,
    /// Records the log already held (delivered before; their files are now removed).
    pub duplicates: u64,
    /// Records moved to `rejected/`.
    pub rejected: u64,
    /// Records of grants the CA does not know (appended anyway; investigate).
    pub unknown_grants: u64,
    /// True when another shipper held the spool for longer than `--lock-wait`.
    pub lock_busy: bool,
    /// Session recordings uploaded after the records ([`super::ship_recordings`]).
    pub recordings: super::ship_recordings::RecordingsShipped,
}

impl ShipReport {
    /// One line for the operator.
    #[must_use]
    pub fn summary(&self) -> String {
        if self.lock_busy {
            return "another shipper holds the spool; it delivers the records".into();
        }
        let mut s = format!(
            "delivered {} record(s) ({} were already in the log)",
            self.appended + self.duplicates,
            self.duplicates
        );
        if self.rejected > 0 {
            s.push_str(&format!(
                "; {} rejected, kept in {REJECTED_DIR}/",
                self.rejected
            ));
        }
        if self.unknown_grants > 0 {
            s.push_str(&format!(
                "; WARNING: {} record(s) name a grant the CA never issued",
                self.unknown_grants
            ));
        }
        let r = &self.recordings;
        if r.stored + r.waiting + r.refused > 0 {
            s.push_str(&format!(
                "; {} recording(s) stored, {} waiting for a later run",
                r.stored, r.waiting
            ));
        }
        if r.refused > 0 {
            s.push_str(&format!(
                "; WARNING: {} recording(s) refused (they do not match their session records), kept in {REJECTED_DIR}/",
                r.refused
            ));
        }
        s
    }
}

/// Takes the spool lock, waiting at most `wait`. `None` when another shipper kept it.
async fn lock_spool(
    spool: &Path,
    wait: Duration,
) -> Result<Option<nix::fcntl::Flock<File>>, CliError> {
    let path = spool.join(LOCK_FILE);
    super::lock::exclusive(&path, wait)
        .await
        .map_err(|e| CliError::Io(format!("spool lock {}: {e}", path.display())))
}

/// Shipping order within one second: open (or deny) < warn < close and forced end.
fn rank(event: SessionEvent) -> u8 {
    match event {
        SessionEvent::Open | SessionEvent::Deny => 0,
        SessionEvent::Warn => 1,
        SessionEvent::Close | SessionEvent::ForcedEnd => 2,
    }
}

/// Where a spool record is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Its own file.
    File(PathBuf),
    /// A slot of the slot file, and what it held when read.
    Slot(u64, Used),
}

/// The spool's records, oldest first, from its files and the slots of `slots`. Files and
/// slots that are not records are moved to `rejected/`.
fn list_spool(
    spool: &Path,
    slots: Option<&SlotFile>,
    report: &mut ShipReport,
) -> Result<Vec<(Source, SessionRecord)>, CliError> {
    use std::io::Read as _;
    let rd = std::fs::read_dir(spool)
        .map_err(|e| CliError::Io(format!("spool {}: {e}", spool.display())))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| CliError::Io(format!("spool {}: {e}", spool.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        // Dot files are the module's temporary files and our lock. A temporary file left
        // by a writer that died before renaming it (a crash mid-write) never becomes a
        // record: set it aside, said once, instead of keeping it forever unnoticed.
        if name.starts_with('.') && name.ends_with(".json.tmp") && abandoned(&entry) {
            reject(
                spool,
                &path,
                &format!(
                    "a temporary file left by a write that never finished (the writer died before renaming it into place, older than {}); the record it was writing was never complete and cannot be delivered",
                    humantime::format_duration(ABANDONED_TMP)
                ),
            )?;
            report.rejected += 1;
            continue;
        }
        if name.starts_with('.') || !name.ends_with(spool::FILE_SUFFIX) {
            continue;
        }
        let mut text = Vec::new();
        let read = File::open(&path).and_then(|f| f.take(spool::MAX_FILE).read_to_end(&mut text));
        match read {
            Ok(_) => {}
            // Shipped and removed by someone else meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CliError::Io(format!("{}: {e}", path.display()))),
        }
        match SessionRecord::from_json(&text) {
            Ok(r) if r.file_name() == name => out.push((Source::File(path), r)),
            Ok(r) => {
                reject(
                    spool,
                    &path,
                    &format!("record id {:?} is not the file name", r.record_id),
                )?;
                report.rejected += 1;
            }
            Err(e) => {
                reject(spool, &path, &not_a_record(&text, &e))?;
                report.rejected += 1;
            }
        }
    }
    for (index, used) in slots.map(SlotFile::used).transpose()?.unwrap_or_default() {
        let slots = slots.ok_or_else(|| CliError::Io("slot file went away".into()))?;
        match &used {
            Used::Record { json, .. } => match SessionRecord::from_json(json) {
                Ok(r) => out.push((Source::Slot(index, used), r)),
                Err(e) => {
                    reject_slot(spool, slots, index, &used, &not_a_record(json, &e))?;
                    report.rejected += 1;
                }
            },
            Used::Damaged { why, .. } => {
                let why = format!("not a session record: {why}; the record it held is lost");
                reject_slot(spool, slots, index, &used, &why)?;
                report.rejected += 1;
            }
        }
    }
    out.sort_by(|(_, a), (_, b)| {
        (a.time, rank(a.event), &a.record_id).cmp(&(b.time, rank(b.event), &b.record_id))
    });
    Ok(out)
}

/// Why a spool file is not a record (`e`: the parser's word): a torn write (empty, or cut
/// short) said as such.
fn not_a_record(text: &[u8], e: &str) -> String {
    let cut_short =
        || serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err_and(|j| j.is_eof());
    if text.iter().all(u8::is_ascii_whitespace) {
        "not a session record: the file is empty, a write cut short (a crash or power loss \
         while it was written); the record it held is lost"
            .into()
    } else if cut_short() {
        format!(
            "not a session record: the file is cut short after {} bytes, in the middle of a \
             record (a crash or power loss while it was written): {e}",
            text.len()
        )
    } else {
        format!("not a session record: {e}")
    }
}

/// True when `entry` was last modified more than [`ABANDONED_TMP`] ago.
fn abandoned(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > ABANDONED_TMP)
}

/// Moves a spool file to `rejected/` (a leading dot dropped, so it shows) and writes why
/// beside it.
fn reject(spool: &Path, path: &Path, why: &str) -> Result<(), CliError> {
    let dir = rejected_dir(spool)?;
    let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", dir.display()));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let kept = name.trim_start_matches('.');
    std::fs::rename(path, dir.join(kept)).map_err(io)?;
    std::fs::write(dir.join(format!("{kept}.why")), format!("{why}\n")).map_err(io)?;
    eprintln!(
        "breakglass: record {} rejected, moved to {}: {}",
        esc(&name),
        dir.display(),
        breakglass_proto::text::escape_hazards(why)
    );
    Ok(())
}

/// Sets aside what slot `index` of `slots` holds (`used`): copied durably into `rejected/`
/// with why beside it, then the slot is freed.
fn reject_slot(
    spool: &Path,
    slots: &SlotFile,
    index: u64,
    used: &Used,
    why: &str,
) -> Result<(), CliError> {
    let dir = rejected_dir(spool)?;
    let io = |e: std::io::Error| CliError::Io(format!("{}: {e}", dir.display()));
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let (name, bytes) = match used {
        Used::Record { json, .. } => (format!("slot-{index}-{stamp}.json"), json),
        Used::Damaged { bytes, .. } => (format!("slot-{index}-{stamp}.bin"), bytes),
    };
    let mut kept = File::create(dir.join(&name)).map_err(io)?;
    std::io::Write::write_all(&mut kept, bytes).map_err(io)?;
    kept.sync_all().map_err(io)?;
    std::fs::write(dir.join(format!("{name}.why")), format!("{why}\n")).map_err(io)?;
    sync_dir(&dir);
    slots.free(index, used)?;
    slots.sync()?;
    eprintln!(
        "breakglass: slot {index} of {} rejected, its bytes moved to {}: {}",
        slots.path().display(),
        dir.join(&name).display(),
        breakglass_proto::text::escape_hazards(why)
    );
    Ok(())
}

/// Sets aside the record at `source` (its file moved, its slot copied and freed).
fn reject_record(
    spool: &Path,
    slots: Option<&SlotFile>,
    source: &Source,
    why: &str,
) -> Result<(), CliError> {
    match (source, slots) {
        (Source::File(path), _) => reject(spool, path, why),
        (Source::Slot(index, used), Some(slots)) => reject_slot(spool, slots, *index, used, why),
        (Source::Slot(..), None) => Err(CliError::Io("slot file went away".into())),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// True for errors after which trying again later may work (daemon down, restarting,
/// or its log cannot be written right now).
fn retryable(e: &CliError) -> bool {
    matches!(
        e,
        CliError::Unavailable(_)
            | CliError::Rpc {
                code: tonic::Code::Unavailable | tonic::Code::DeadlineExceeded,
                ..
            }
    )
}

/// Ships the spool (see the module docs).
pub async fn ship(target: &Target, args: &ShipArgs) -> Result<ShipReport, CliError> {
    let mut report = ShipReport::default();
    let Some(_lock) = lock_spool(&args.spool, args.lock_wait).await? else {
        report.lock_busy = true;
        return Ok(report);
    };
    // One connection for the witness check and the deliveries.
    let channel = connect::channel(target)?;
    let mut client = HostAgentClient::new(channel.clone());
    let started = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let mut witnessed = false;
    let slots = SlotFile::open(&args.spool)?;
    loop {
        let records = list_spool(&args.spool, slots.as_ref(), &mut report)?;
        if records.is_empty() {
            // The records are in the log: the recordings their close records commit to
            // are expected now.
            report.recordings =
                super::ship_recordings::ship_recordings(&mut client, target, &args.spool).await?;
            return Ok(report);
        }
        let batch = &records[..records.len().min(BATCH)];
        let request = AppendHostRecordsRequest {
            records: batch.iter().map(|(_, r)| r.to_wire()).collect(),
        };
        let answer = async {
            if !witnessed {
                super::witness::check(
                    target,
                    &channel,
                    &args.witness,
                    None,
                    &format!(
                        "No session records were delivered: they stay in {}.",
                        args.spool.display()
                    ),
                )
                .await?;
                witnessed = true;
            }
            client.append_host_records(request).await.answer(target)
        }
        .await;
        let results = match answer {
            Ok(r) => r.results,
            Err(e) if retryable(&e) && !args.once => {
                if started.elapsed() + backoff > args.retry_for {
                    return Err(CliError::Unavailable(format!(
                        "{e}\ngave up after {}; {} record(s) stay in {} for the next run",
                        humantime::format_duration(Duration::from_secs(
                            started.elapsed().as_secs()
                        )),
                        records.len(),
                        args.spool.display()
                    )));
                }
                eprintln!(
                    "breakglass: daemon unavailable, retrying in {}: {e}",
                    humantime::format_duration(backoff)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(e) => return Err(e),
        };
        backoff = Duration::from_secs(1);
        if results.len() != batch.len() {
            return Err(CliError::Rpc {
                code: tonic::Code::Internal,
                message: format!(
                    "the daemon answered {} results for {} records; nothing removed",
                    results.len(),
                    batch.len()
                ),
            });
        }
        for ((source, record), result) in batch.iter().zip(&results) {
            if result.record_id != record.record_id {
                return Err(CliError::Rpc {
                    code: tonic::Code::Internal,
                    message: format!(
                        "the daemon answered for record {} instead of {}",
                        esc(&result.record_id),
                        esc(&record.record_id)
                    ),
                });
            }
            match result.status() {
                RecordStatus::Appended | RecordStatus::Duplicate => {
                    if result.status() == RecordStatus::Appended {
                        report.appended += 1;
                    } else {
                        report.duplicates += 1;
                    }
                    if !result.grant_known && record.grant.is_some() {
                        report.unknown_grants += 1;
                    }
                    match source {
                        Source::File(path) => match std::fs::remove_file(path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => {
                                return Err(CliError::Io(format!(
                                    "{} was delivered but cannot be removed: {e}",
                                    path.display()
                                )));
                            }
                        },
                        Source::Slot(index, used) => {
                            let slots = slots
                                .as_ref()
                                .ok_or_else(|| CliError::Io("slot file went away".into()))?;
                            slots.free(*index, used)?;
                        }
                    }
                }
                RecordStatus::Rejected => {
                    reject_record(&args.spool, slots.as_ref(), source, &result.error)?;
                    report.rejected += 1;
                }
                RecordStatus::Unspecified => {
                    return Err(CliError::Rpc {
                        code: tonic::Code::Internal,
                        message: format!(
                            "the daemon gave no status for record {}",
                            esc(&record.record_id)
                        ),
                    });
                }
            }
        }
        sync_dir(&args.spool);
        if let Some(slots) = &slots {
            slots.sync()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, id: &str, event: &str, time: u64) {
        let session = id.strip_suffix(&format!("-{event}")).unwrap();
        std::fs::write(
            dir.join(format!("{id}.json")),
            format!(
                r#"{{"version":1,"record_id":"{id}","session":"{session}","event":"{event}","time":{time},"host":"db-7","user":"u","grant":"g-00000000000000ff","serial":1,"key_id":null,"requester":null,"tier":null,"rhost":null,"tty":"ssh","service":"sshd","pid":42,"audit_session":null,"start":{time},"expires":null,"reason":null,"detail":null,"duration":null,"killed":null}}"#
            ),
        )
        .unwrap();
    }

    #[test]
    fn spool_is_listed_oldest_first_and_junk_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let s = "db-7-g-00000000000000ff-42-1";
        write(dir.path(), &format!("{s}-close"), "close", 10);
        write(dir.path(), &format!("{s}-open"), "open", 10);
        write(dir.path(), &format!("{s}-warn"), "warn", 5);
        std::fs::write(dir.path().join("garbage.json"), "{").unwrap();
        std::fs::write(dir.path().join(".x.json.tmp"), "{").unwrap();
        let mut report = ShipReport::default();
        let list = list_spool(dir.path(), None, &mut report).unwrap();
        let events: Vec<&str> = list.iter().map(|(_, r)| r.event.name()).collect();
        assert_eq!(events, ["warn", "open", "close"]);
        assert_eq!(report.rejected, 1);
        assert!(dir.path().join("rejected/garbage.json").exists());
        let why = std::fs::read_to_string(dir.path().join("rejected/garbage.json.why")).unwrap();
        assert!(why.contains("not a session record"), "{why}");
        assert!(dir.path().join(".x.json.tmp").exists());
    }

    #[test]
    fn torn_writes_are_set_aside_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let s = "db-7-g-00000000000000ff-42-1";
        write(dir.path(), &format!("{s}-open"), "open", 10);
        let full = std::fs::read(dir.path().join(format!("{s}-open.json"))).unwrap();
        std::fs::write(dir.path().join("cut.json"), &full[..full.len() / 2]).unwrap();
        std::fs::write(dir.path().join("empty.json"), "").unwrap();
        let old = dir.path().join(format!(".{s}-close.json.tmp"));
        std::fs::write(&old, &full[..10]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * ABANDONED_TMP)
            .unwrap();
        let young = dir.path().join(format!(".{s}-warn.json.tmp"));
        std::fs::write(&young, &full[..10]).unwrap();
        let mut report = ShipReport::default();
        let list = list_spool(dir.path(), None, &mut report).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(report.rejected, 3);
        let why = |f: &str| {
            std::fs::read_to_string(dir.path().join(REJECTED_DIR).join(format!("{f}.why"))).unwrap()
        };
        assert!(
            why("cut.json").contains("cut short after"),
            "{}",
            why("cut.json")
        );
        assert!(why("empty.json").contains("the file is empty"));
        let tmp = format!("{s}-close.json.tmp");
        assert!(why(&tmp).contains("never finished"), "{}", why(&tmp));
        assert!(young.exists(), "a write in progress is left alone");
    }

    /// Writes `slots` (JSON, or raw slot bytes) into a slot file of `count` slots in `dir`.
    fn slot_file(dir: &Path, count: usize, slots: &[(usize, Vec<u8>)]) {
        use breakglass_proto::spool::slots::{FILE_NAME, SLOT_SIZE};
        let mut file = vec![0u8; count * SLOT_SIZE];
        for (i, s) in slots {
            file[i * SLOT_SIZE..i * SLOT_SIZE + s.len()].copy_from_slice(s);
        }
        std::fs::write(dir.join(FILE_NAME), file).unwrap();
    }

    fn json(dir: &Path, id: &str, event: &str, time: u64) -> Vec<u8> {
        write(dir, id, event, time);
        let path = dir.join(format!("{id}.json"));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(path).unwrap();
        bytes
    }

    #[test]
    fn slot_records_ship_with_the_files_oldest_first_and_torn_slots_are_set_aside() {
        use breakglass_proto::spool::slots::{self, SLOT_SIZE};
        let dir = tempfile::tempdir().unwrap();
        let s = "db-7-g-00000000000000ff-42-1";
        let open = slots::encode(1, &json(dir.path(), &format!("{s}-open"), "open", 10)).unwrap();
        let warn = slots::encode(2, &json(dir.path(), &format!("{s}-warn"), "warn", 20)).unwrap();
        let mut torn =
            slots::encode(3, &json(dir.path(), &format!("{s}-close"), "close", 30)).unwrap();
        torn[200..].fill(0); // only the first sectors reached the disk
        let junk = slots::encode(4, b"{\"not\":\"a record\"}").unwrap();
        slot_file(
            dir.path(),
            8,
            &[(1, warn), (5, open), (6, torn.clone()), (7, junk)],
        );
        write(dir.path(), &format!("{s}-close"), "close", 15);
        let slots_file = SlotFile::open(dir.path()).unwrap().unwrap();
        let mut report = ShipReport::default();
        let list = list_spool(dir.path(), Some(&slots_file), &mut report).unwrap();
        let events: Vec<&str> = list.iter().map(|(_, r)| r.event.name()).collect();
        assert_eq!(events, ["open", "close", "warn"]);
        assert!(matches!(list[0].0, Source::Slot(5, _)));
        assert!(matches!(list[1].0, Source::File(_)));
        assert_eq!(report.rejected, 2, "the torn slot and the junk one");
        let rejected: Vec<String> =
            breakglass_test_support::fs::file_names(&dir.path().join(REJECTED_DIR));
        let why = |ending: &str| {
            let name = rejected.iter().find(|n| n.ends_with(ending)).unwrap();
            std::fs::read_to_string(dir.path().join(REJECTED_DIR).join(name)).unwrap()
        };
        assert!(why(".bin.why").contains("cut short"), "{}", why(".bin.why"));
        assert!(why(".json.why").contains("not a session record"));
        let kept = rejected.iter().find(|n| n.ends_with(".bin")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(REJECTED_DIR).join(kept)).unwrap(),
            torn
        );
        // Set aside means freed: a second listing finds only the records.
        let again = list_spool(dir.path(), Some(&slots_file), &mut report).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(report.rejected, 2);
        // Delivered: the slot is freed once, and only while it holds what was read.
        let Source::Slot(i, used) = &list[0].0 else {
            unreachable!()
        };
        slots_file.free(*i, used).unwrap();
        slots_file.sync().unwrap();
        assert!(
            slots_file.free(*i, used).is_err(),
            "a slot changed since is never freed"
        );
        let bytes = std::fs::read(dir.path().join(slots::FILE_NAME)).unwrap();
        assert!(slots::is_free(&bytes[*i as usize * SLOT_SIZE..]));
        assert_eq!(
            list_spool(dir.path(), Some(&slots_file), &mut report)
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn only_one_shipper_holds_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_spool(dir.path(), Duration::ZERO).await.unwrap();
        assert!(first.is_some());
        let t = Instant::now();
        assert!(
            lock_spool(dir.path(), Duration::from_millis(300))
                .await
                .unwrap()
                .is_none()
        );
        assert!(t.elapsed() >= Duration::from_millis(300));
        drop(first);
        assert!(
            lock_spool(dir.path(), Duration::ZERO)
                .await
                .unwrap()
                .is_some()
        );
    }
}
