//! The module's side of session records: the record format, its ids and its file name are
//! the contract's ([`breakglass_proto::spool`], which `breakglass host ship` reads with);
//! here they are written durably, and kept from open to close.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use breakglass_proto::spool::SessionRecord;

use crate::files;

/// Writes `record` durably into `spool` (created with mode 0700 if missing), with one
/// fsync ([`files::write_new_durable`]): this is on the path of every login and logout.
pub fn write(spool: &Path, record: &SessionRecord) -> Result<(), String> {
    files::ensure_private_dir(spool, "spool directory")?;
    files::write_new_durable(spool, &record.file_name(), &record.to_json()?)
}

/// What the module keeps with `pam_set_data` from open to close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    /// The open record (ids and facts of the session).
    pub record: SessionRecord,
    /// Spool directory to write the close record to.
    pub spool: PathBuf,
    /// Syslog socket.
    pub syslog: PathBuf,
    /// The session's recording (a recording tier), sealed into the close record.
    pub recording: Option<PathBuf>,
}
