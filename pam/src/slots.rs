//! The writers' side of the spool's slot file ([`breakglass_proto::spool::slots`], which
//! says the format and the locking): a record goes into a free slot of a file whose
//! blocks are already written, made durable by one `fdatasync`.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use breakglass_proto::spool::slots::{self, FILE_NAME, MAX_SLOTS, SLOT_SIZE};

use crate::{files, system};

/// Writes the record `json` into a free slot of `spool`'s slot file and makes it durable
/// (one `fdatasync`). With `create` > 0 a missing slot file is first created with that many
/// slots. `Ok(false)`: not written here, write it as its own file instead (no slot file and
/// none to create, every slot waiting to be shipped, or a record larger than a slot). An
/// error: the slot file is unusable or the write failed; nothing claims to be durable.
pub fn write(spool: &Path, create: u32, json: &[u8]) -> Result<bool, String> {
    // Without a slot file (the default, `spool_slots=0`) nothing is encoded.
    let Some((file, count)) = open(spool, create)? else {
        return Ok(false);
    };
    let sequence = sequence();
    let Some(slot) = slots::encode(sequence, json) else {
        return Ok(false);
    };
    let path = spool.join(FILE_NAME);
    let io = |e: std::io::Error| format!("cannot write slot file {}: {e}", path.display());
    // Start anywhere (the clock's low bits and the pid): writers at the same moment start
    // apart, and waiting records, spread over the file, cost a search of about
    // 1 / (free share) slots instead of a walk past all of them.
    let first = ((sequence / 1000) ^ u64::from(system::getpid()).wrapping_mul(0x9e37_79b9)) % count;
    let mut head = [0u8; 8];
    for k in 0..count {
        let at = (first + k) % count * SLOT_SIZE as u64;
        // A used slot is skipped without its lock; a free one is checked again under it.
        file.read_exact_at(&mut head, at).map_err(io)?;
        if !slots::is_free(&head) {
            continue;
        }
        if !system::ofd_lock(file.as_fd(), at, SLOT_SIZE as u64, true).map_err(io)? {
            continue; // another writer, or the shipper, is at this slot
        }
        file.read_exact_at(&mut head, at).map_err(io)?;
        if !slots::is_free(&head) {
            system::ofd_lock(file.as_fd(), at, SLOT_SIZE as u64, false).map_err(io)?;
            continue;
        }
        let written = file.write_all_at(&slot, at).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Nothing may claim to be durable that was not reported so: free it again.
            let _ = file.write_all_at(&[0u8; 8], at);
            return Err(io(e));
        }
        return Ok(true); // the lock goes with the file
    }
    Ok(false)
}

/// Opens the slot file (creating it with `create` slots when missing and `create` > 0):
/// the file and its number of slots, or `None` when there is none.
fn open(spool: &Path, create: u32) -> Result<Option<(File, u64)>, String> {
    let path = spool.join(FILE_NAME);
    let opened = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
    };
    let file = match opened() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create > 0 => {
            make(spool, create)?;
            opened().map_err(|e| format!("cannot open slot file {}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open slot file {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat slot file {}: {e}", path.display()))?;
    files::check_owner_mode(&meta, "slot file", &path)?;
    let count = meta.len() / SLOT_SIZE as u64;
    if !meta.is_file()
        || meta.len() % SLOT_SIZE as u64 != 0
        || count == 0
        || count > u64::from(MAX_SLOTS)
    {
        return Err(format!(
            "slot file {} is not a file of 1 to {MAX_SLOTS} slots of {SLOT_SIZE} bytes ({} bytes): \
             with logins stopped, ship the spool (breakglass host ship) and remove it; the \
             module creates it again",
            path.display(),
            meta.len()
        ));
    }
    Ok(Some((file, count)))
}

/// Creates the slot file with `count` free slots, every block written (not only
/// allocated: a first write into an unwritten extent would cost metadata I/O) and durable
/// before it appears under its name. Another writer creating it at the same time wins
/// harmlessly: its file is used.
fn make(spool: &Path, count: u32) -> Result<(), String> {
    files::ensure_private_dir(spool, "spool directory")?;
    let path = spool.join(FILE_NAME);
    let err = |e: std::io::Error| format!("cannot create slot file {}: {e}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(spool)
        .map_err(err)?;
    let zeros = vec![0u8; SLOT_SIZE * 16];
    let mut left = count.min(MAX_SLOTS) as usize * SLOT_SIZE;
    while left > 0 {
        let n = left.min(zeros.len());
        f.write_all(&zeros[..n]).map_err(err)?;
        left -= n;
    }
    f.sync_all().map_err(err)?;
    match system::link_unnamed(f.as_fd(), &path) {
        Ok(()) => f.sync_all().map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// The writer's clock in nanoseconds: the slot's sequence (an ordering hint).
fn sequence() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::spool::slots::Slot;

    /// Every slot of the slot file in `spool`: (index, record) of the used ones.
    fn records(spool: &Path) -> Vec<(usize, Vec<u8>)> {
        let bytes = std::fs::read(spool.join(FILE_NAME)).unwrap();
        bytes
            .chunks(SLOT_SIZE)
            .enumerate()
            .filter_map(|(i, s)| match slots::decode(s) {
                Slot::Free => None,
                Slot::Record { record, .. } => Some((i, record.to_vec())),
                Slot::Damaged(why) => panic!("slot {i} damaged: {why}"),
            })
            .collect()
    }

    #[test]
    fn the_slot_file_is_created_written_private_and_then_used() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        // No slot file and none to create: the caller writes a file.
        assert_eq!(write(&spool, 0, b"r0"), Ok(false));
        assert!(write(&spool, 4, b"r1").unwrap());
        let meta = std::fs::metadata(spool.join(FILE_NAME)).unwrap();
        assert_eq!(
            (meta.len(), meta.mode() & 0o777),
            (4 * SLOT_SIZE as u64, 0o600)
        );
        // Every block is allocated (written, not a hole).
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "{} blocks",
            meta.blocks()
        );
        // Once there, it is used whatever `create` says, and never resized.
        assert!(write(&spool, 0, b"r2").unwrap());
        assert!(write(&spool, 100, b"r3").unwrap());
        assert_eq!(
            std::fs::metadata(spool.join(FILE_NAME)).unwrap().len(),
            meta.len()
        );
        let mut got: Vec<Vec<u8>> = records(&spool).into_iter().map(|(_, r)| r).collect();
        got.sort();
        assert_eq!(got, [b"r1".to_vec(), b"r2".to_vec(), b"r3".to_vec()]);
        // A record larger than a slot goes to a file.
        assert_eq!(
            write(&spool, 4, &vec![b'x'; slots::MAX_RECORD + 1]),
            Ok(false)
        );
    }

    #[test]
    fn full_slots_say_so_and_a_freed_slot_is_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        assert!(write(&spool, 2, b"a").unwrap());
        assert!(write(&spool, 2, b"b").unwrap());
        assert_eq!(write(&spool, 2, b"c"), Ok(false), "every slot is waiting");
        let (i, _) = records(&spool)[0].clone();
        // What the shipper does once the CA has a slot's record: zero its header.
        let f = OpenOptions::new()
            .write(true)
            .open(spool.join(FILE_NAME))
            .unwrap();
        f.write_all_at(&[0u8; slots::HEADER_LEN], (i * SLOT_SIZE) as u64)
            .unwrap();
        assert!(write(&spool, 2, b"c").unwrap());
        assert_eq!(records(&spool).len(), 2);
    }

    #[test]
    fn a_bad_slot_file_is_an_error_that_says_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        files::ensure_private_dir(&spool, "spool").unwrap();
        std::fs::write(spool.join(FILE_NAME), b"short").unwrap();
        let e = write(&spool, 4, b"r").unwrap_err();
        assert!(e.contains("remove it"), "{e}");
        std::fs::write(spool.join(FILE_NAME), vec![0u8; SLOT_SIZE]).unwrap();
        std::fs::set_permissions(
            spool.join(FILE_NAME),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let e = write(&spool, 4, b"r").unwrap_err();
        assert!(e.contains("chmod go-w"), "{e}");
        std::fs::remove_file(spool.join(FILE_NAME)).unwrap();
        std::os::unix::fs::symlink("/dev/null", spool.join(FILE_NAME)).unwrap();
        assert!(
            write(&spool, 4, b"r").is_err(),
            "a symlink is never followed"
        );
    }

    #[test]
    fn concurrent_writers_never_share_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        assert!(write(&spool, 256, b"first").unwrap());
        // 8 threads, each with its own open file (as separate processes have), all
        // starting at the same slot (one pid): every claim is contended.
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let spool = spool.clone();
                std::thread::spawn(move || {
                    (0..30)
                        .map(|n| write(&spool, 256, format!("t{t}-{n}").as_bytes()).unwrap())
                        .filter(|w| *w)
                        .count()
                })
            })
            .collect();
        let written: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(written, 240);
        assert_distinct_records(&spool, 241);
    }

    /// Run by [`concurrent_writer_processes_never_share_a_slot`] as a separate process.
    #[test]
    fn slot_writers_child() {
        let Some(spool) = std::env::var_os("BG_SLOT_WRITERS_SPOOL") else {
            return; // only as a child
        };
        let me = std::process::id();
        for n in 0..25 {
            assert!(write(Path::new(&spool), 128, format!("p{me}-{n}").as_bytes()).unwrap());
        }
    }

    #[test]
    fn concurrent_writer_processes_never_share_a_slot() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        assert!(write(&spool, 128, b"first").unwrap());
        let children: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "slots::tests::slot_writers_child", "--quiet"])
                    .env("BG_SLOT_WRITERS_SPOOL", &spool)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        assert_distinct_records(&spool, 101);
    }

    /// `spool`'s slots hold `n` records, each in a slot of its own and none twice.
    fn assert_distinct_records(spool: &Path, n: usize) {
        let mut got: Vec<Vec<u8>> = records(spool).into_iter().map(|(_, r)| r).collect();
        assert_eq!(got.len(), n, "one slot per record");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), n, "no record twice, none overwritten");
    }

    /// Run by [`a_record_survives_kill_9_of_its_writer`] as a separate process.
    #[test]
    fn slot_writer_child() {
        let Some(spool) = std::env::var_os("BG_SLOT_CHILD_SPOOL") else {
            return; // only as a child
        };
        assert!(write(Path::new(&spool), 8, b"written-before-kill").unwrap());
        println!("WRITTEN");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_record_survives_kill_9_of_its_writer() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "slots::tests::slot_writer_child", "--nocapture"])
            .env("BG_SLOT_CHILD_SPOOL", &spool)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let written = out
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("WRITTEN"));
        assert!(written, "the child wrote its record");
        child.kill().unwrap(); // SIGKILL, right after write() returned
        child.wait().unwrap();
        assert_eq!(records(&spool).len(), 1);
        assert_eq!(records(&spool)[0].1, b"written-before-kill");
        // Its lock died with it: the other slots are free to use.
        assert!(write(&spool, 8, b"next").unwrap());
    }
}
