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
