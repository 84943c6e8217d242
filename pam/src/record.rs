//! The module's side of session records: the record format, its ids and its file name are
//! the contract's ([`breakglass_proto::spool`], which `breakglass host ship` reads with);
//! here they are written durably, and kept from open to close.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use breakglass_proto::spool::SessionRecord;

use crate::files;

/// Writes `record` durably into `spool` (created with mode 0700 if missing): into a slot
/// of the spool's slot file when there is one and a slot is free (created first with
/// `slots` slots, `spool_slots=`, when missing; [`crate::slots::write`], one `fdatasync`),
/// else as its own file with one fsync ([`files::write_new_durable`]). This is on the path
/// of every login and logout.
pub fn write(spool: &Path, slots: u32, record: &SessionRecord) -> Result<(), String> {
    files::ensure_private_dir(spool, "spool directory")?;
    let json = record.to_json()?;
    if crate::slots::write(spool, slots, &json)? {
        return Ok(());
    }
    files::write_new_durable(spool, &record.file_name(), &json)
}

/// What the module keeps with `pam_set_data` from open to close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    /// The open record (ids and facts of the session).
    pub record: SessionRecord,
    /// Spool directory to write the close record to.
    pub spool: PathBuf,
    /// The `spool_slots=` option.
    pub spool_slots: u32,
    /// Syslog socket.
    pub syslog: PathBuf,
    /// The session's recording (a recording tier), sealed into the close record.
    pub recording: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::spool::slots::{self, FILE_NAME, SLOT_SIZE, Slot};
    use breakglass_proto::spool::{RECORD_VERSION, SessionEvent, record_id, session_id};

    /// An open record of process `pid` (the fields it does not name are null).
    fn record(pid: u32) -> SessionRecord {
        let session = session_id("db-7", Some("g-00000000000000ff"), pid, 1);
        let id = record_id(&session, SessionEvent::Open);
        SessionRecord::from_json(
            format!(
                r#"{{"version":{RECORD_VERSION},"record_id":"{id}","session":"{session}","event":"open","time":1,"host":"db-7","user":"u","pid":{pid},"start":1}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn records_go_to_slots_and_to_their_own_file_once_every_slot_waits() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        write(&spool, 2, &record(1)).unwrap();
        write(&spool, 2, &record(2)).unwrap();
        write(&spool, 2, &record(3)).unwrap();
        let bytes = std::fs::read(spool.join(FILE_NAME)).unwrap();
        let mut in_slots: Vec<u32> = bytes
            .chunks(SLOT_SIZE)
            .map(|s| match slots::decode(s) {
                Slot::Record { record, .. } => SessionRecord::from_json(record).unwrap().pid,
                other => panic!("{other:?}"),
            })
            .collect();
        in_slots.sort_unstable();
        assert_eq!(in_slots, [1, 2]);
        let mut names = breakglass_test_support::fs::file_names(&spool);
        names.sort();
        assert_eq!(names, [record(3).file_name(), FILE_NAME.to_owned()]);
        // Without spool_slots= and no slot file: one file per record, as before.
        let other = dir.path().join("other");
        write(&other, 0, &record(4)).unwrap();
        assert_eq!(
            breakglass_test_support::fs::file_names(&other),
            [record(4).file_name()]
        );
    }
}
