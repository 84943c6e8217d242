//! The shipper's side of the spool's slot file ([`breakglass_proto::spool::slots`]: the
//! format and the locking): the records waiting in its slots, read under each slot's lock,
//! and a slot freed (its header zeroed under the lock) once the CA holds its record.
//!
//! Only the shipper (one at a time, under the spool lock) frees slots, and writers only
//! use free ones, so a record read here stays in its slot until [`SlotFile::free`].

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use breakglass_proto::spool::slots::{self, FILE_NAME, HEADER_LEN, SLOT_SIZE, Slot};
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use crate::error::CliError;

/// How long the shipper waits for a writer to finish a slot (a write and an `fdatasync`)
/// before leaving that slot to the next run.
const WRITER_WAIT: Duration = Duration::from_secs(2);

/// What one used slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Used {
    /// A complete record: its JSON, and the checksum that identifies this write.
    Record {
        /// The record's JSON.
        json: Vec<u8>,
        /// Its checksum (the slot is freed only while it still holds this write).
        sum: [u8; 32],
    },
    /// A slot that is neither free nor a complete record: its bytes, and why.
    Damaged {
        /// The whole slot.
        bytes: Vec<u8>,
        /// Why it is no record.
        why: String,
    },
}

/// The spool's slot file, open for the shipper.
#[derive(Debug)]
pub struct SlotFile {
    file: File,
    path: PathBuf,
    count: u64,
}

impl SlotFile {
    /// Opens `spool`'s slot file; `None` when the spool has none.
    pub fn open(spool: &Path) -> Result<Option<Self>, CliError> {
        let path = spool.join(FILE_NAME);
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CliError::Io(format!("slot file {}: {e}", path.display()))),
        };
        let len = file
            .metadata()
            .map_err(|e| CliError::Io(format!("slot file {}: {e}", path.display())))?
            .len();
        if len % SLOT_SIZE as u64 != 0 {
            return Err(CliError::Io(format!(
                "slot file {} is {len} bytes, not a whole number of {SLOT_SIZE}-byte slots; \
                 its records were not read. Copy it aside for inspection, then, with logins \
                 stopped, remove it (the module creates it again)",
                path.display()
            )));
        }
        Ok(Some(Self {
            file,
            path,
            count: len / SLOT_SIZE as u64,
        }))
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every used slot, by index. A slot a writer holds for longer than [`WRITER_WAIT`]
    /// is left for the next run.
    pub fn used(&self) -> Result<Vec<(u64, Used)>, CliError> {
        let mut out = Vec::new();
        let mut head = [0u8; 8];
        for index in 0..self.count {
            let at = index * SLOT_SIZE as u64;
            self.file
                .read_exact_at(&mut head, at)
                .map_err(|e| self.io(e))?;
            if slots::is_free(&head) {
                continue;
            }
            // Used, or being written: read it whole under its lock.
            if !self.lock(index)? {
                continue;
            }
            let slot = self.read_slot(at);
            self.unlock(index)?;
            let slot = slot?;
            match slots::decode(&slot) {
                Slot::Free => {}
                Slot::Record { record, sum, .. } => out.push((
                    index,
                    Used::Record {
                        json: record.to_vec(),
                        sum,
                    },
                )),
                Slot::Damaged(why) => out.push((index, Used::Damaged { bytes: slot, why })),
            }
        }
        Ok(out)
    }

    /// Frees slot `index` if it still holds what [`SlotFile::used`] read from it (`used`);
    /// an error if it changed meanwhile (nothing is freed then). Durable after [`SlotFile::sync`].
    pub fn free(&self, index: u64, used: &Used) -> Result<(), CliError> {
        let at = index * SLOT_SIZE as u64;
        if !self.lock(index)? {
            return Err(CliError::Io(format!(
                "slot {index} of {} stayed locked while it was being freed; it ships again on the next run",
                self.path.display()
            )));
        }
        let result = (|| {
            let slot = self.read_slot(at)?;
            let same = match (used, slots::decode(&slot)) {
                (Used::Record { sum, .. }, Slot::Record { sum: now, .. }) => *sum == now,
                (Used::Damaged { bytes, .. }, Slot::Damaged(_)) => *bytes == slot,
                _ => false,
            };
            if !same {
                return Err(CliError::Io(format!(
                    "slot {index} of {} changed while it was being shipped (is another shipper \
                     running without the spool lock?); it was not freed",
                    self.path.display()
                )));
            }
            self.file
                .write_all_at(&[0u8; HEADER_LEN], at)
                .map_err(|e| self.io(e))
        })();
        self.unlock(index)?;
        result
    }

    /// Makes the frees so far durable.
    pub fn sync(&self) -> Result<(), CliError> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    fn read_slot(&self, at: u64) -> Result<Vec<u8>, CliError> {
        let mut slot = vec![0u8; SLOT_SIZE];
        self.file
            .read_exact_at(&mut slot, at)
            .map_err(|e| self.io(e))?;
        Ok(slot)
    }

    /// Takes slot `index`'s lock, waiting at most [`WRITER_WAIT`]; false if a writer kept it.
    fn lock(&self, index: u64) -> Result<bool, CliError> {
        let deadline = std::time::Instant::now() + WRITER_WAIT;
        loop {
            if self.set_lock(index, libc::F_WRLCK)? {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn unlock(&self, index: u64) -> Result<(), CliError> {
        self.set_lock(index, libc::F_UNLCK).map(drop)
    }

    /// `F_OFD_SETLK` of `kind` on slot `index`; false when another open file holds it.
    fn set_lock(&self, index: u64, kind: libc::c_int) -> Result<bool, CliError> {
        let range = |v: u64| {
            libc::off_t::try_from(v).map_err(|_| self.io(std::io::ErrorKind::InvalidInput.into()))
        };
        #[allow(clippy::cast_possible_truncation)] // F_WRLCK and F_UNLCK are small
        let fl = libc::flock {
            l_type: kind as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: range(index * SLOT_SIZE as u64)?,
            l_len: range(SLOT_SIZE as u64)?,
            l_pid: 0,
        };
        match fcntl(&self.file, FcntlArg::F_OFD_SETLK(&fl)) {
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
            Err(e) => Err(self.io(e.into())),
        }
    }

    fn io(&self, e: std::io::Error) -> CliError {
        CliError::Io(format!("slot file {}: {e}", self.path.display()))
    }
}
