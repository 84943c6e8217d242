//! Events of a session on a host, as its host reported them: opened, warned, closed,
//! ended by breakglass.

use super::codec::{byte_enum, fields};
use crate::profile::GrantId;

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

fields! {
    /// A session was closed by its user.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SessionClosed {
        /// The session.
        pub session: SessionRef,
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

fields! {
    /// A session was ended (or refused) by breakglass.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SessionEnded {
        /// The session.
        pub session: SessionRef,
        /// Why.
        pub reason: EndReason,
        /// Details (e.g. which check failed for a denial).
        pub detail: String,
    }
}
