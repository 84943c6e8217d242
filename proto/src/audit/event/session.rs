//! Events of a session on a host, as its host reported them: opened, warned, closed,
//! ended by breakglass.

use super::codec::{Codec, DecodeError, EncodeError, Reader, Writer, byte_enum, fields};
use crate::profile::GrantId;
use crate::recording::RecordingDigest;

fields! {
    /// Identifies one SSH session on a host, and the host record that reported it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SessionRef {
        /// Unique id of the host record (from the host spool): a retried delivery has the same id,
        /// so the daemon appends each record once.
        pub record_id: String,
        /// Host the session is on.
        pub host: String,
        /// Grant of the certificate used.
        pub grant_id: GrantId,
        /// Serial of the certificate used.
        pub serial: u64,
        /// Unix account logged into.
        pub principal: String,
        /// Host-local session id (e.g. the sshd session pid and tty).
        pub session_id: String,
    }
}

fields! {
    /// A session was opened on a host.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SessionOpened {
        /// The session.
        pub session: SessionRef,
        /// Address the client connected from.
        pub remote_addr: String,
    }
}

fields! {
    /// The user of a session was warned of its coming end.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SessionWarned {
        /// The session.
        pub session: SessionRef,
        /// When the session will be ended, Unix seconds.
        pub ends_at: u64,
    }
}

/// A session was closed by its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionClosed {
    /// The session.
    pub session: SessionRef,
    /// The session's recording, for a recording tier: the log commits to its content.
    /// Encoded after the other fields only when present, so events written before this
    /// field existed decode (as `None`) and re-encode to the same bytes.
    pub recording: Option<RecordingDigest>,
}

/// `recording` is trailing and present only when set (as `GrantRevoked::revoked_key`).
impl Codec for SessionClosed {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        self.session.encode(w)?;
        encode_recording(self.recording.as_ref(), w)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: Codec::read(r)?,
            recording: read_recording(r)?,
        })
    }
}

/// `sha256 | bytes:u64 | duration_ms:u64`.
impl Codec for RecordingDigest {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        self.sha256.encode(w)?;
        self.bytes.encode(w)?;
        self.duration_ms.encode(w)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sha256: Codec::read(r)?,
            bytes: Codec::read(r)?,
            duration_ms: Codec::read(r)?,
        })
    }
}

/// A trailing recording: written only when there is one.
fn encode_recording(d: Option<&RecordingDigest>, w: &mut Writer) -> Result<(), EncodeError> {
    match d {
        Some(d) => d.encode(w),
        None => Ok(()),
    }
}

/// A trailing recording: there when bytes are left.
fn read_recording(r: &mut Reader<'_>) -> Result<Option<RecordingDigest>, DecodeError> {
    if r.has_more() {
        Ok(Some(Codec::read(r)?))
    } else {
        Ok(None)
    }
}

/// Why a session was ended by breakglass rather than by its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The certificate expired.
    Expired,
    /// The grant was revoked.
    Revoked,
    /// The PAM module denied the session.
    Denied,
}

byte_enum!(EndReason, "session end reason" {
    Expired = 1,
    Revoked = 2,
    Denied = 3,
});

/// A session was ended (or refused) by breakglass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnded {
    /// The session.
    pub session: SessionRef,
    /// Why.
    pub reason: EndReason,
    /// Details (e.g. which check failed for a denial).
    pub detail: String,
    /// The session's recording, for a recording tier (as [`SessionClosed::recording`]).
    pub recording: Option<RecordingDigest>,
}

/// `recording` is trailing and present only when set (as in [`SessionClosed`]).
impl Codec for SessionEnded {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        self.session.encode(w)?;
        self.reason.encode(w)?;
        self.detail.encode(w)?;
        encode_recording(self.recording.as_ref(), w)
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            session: Codec::read(r)?,
            reason: Codec::read(r)?,
            detail: Codec::read(r)?,
            recording: read_recording(r)?,
        })
    }
}
