//! Audit events and their canonical encoding: the bytes of one Merkle leaf.
//!
//! # Encoding, version 1
//!
//! ```text
//! leaf    = version:u8 (=1) | code:u16 | time:u64 (Unix ms) | actor | body
//! actor   = 0 (daemon) | 1 string (user) | 2 string (host) | 3 u32 (local uid)
//! string  = len:u32 | UTF-8 bytes (len <= 65,536)
//! list    = count:u32 | items            option = 0 | 1 item
//! bool    = 0 | 1                         integers big-endian, fixed width
//! ```
//!
//! `body` is the fields of the event kind in the order they are declared (each kind's struct
//! is defined inside `fields!`, which writes its codec from that order); every kind has a
//! stable numeric [`EventCode`]. The encoding is canonical: one event has exactly one
//! encoding, and [`Event::decode`] accepts only that one (no trailing bytes, no bool other
//! than 0/1, no unknown code or version, valid UTF-8), so `encode(decode(b)) == b` for every
//! accepted `b`. New kinds get new codes; changing a kind's fields needs a new version byte.
//!
//! Each kind is defined beside its encoder and decoder (one `Codec` impl, `codec.rs`),
//! grouped by what it is about: `request.rs`, `grant.rs`, `session.rs`, `refusal.rs` and
//! `daemon.rs`. The envelope (version, code, time, actor) and the dispatch on the code are
//! here; the bytes of one event of every kind are pinned in `golden-v1.txt` (`tests.rs`).

mod codec;
mod daemon;
mod grant;
mod identity;
mod ids;
mod recording;
mod refusal;
mod request;
mod session;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;

use crate::profile::GrantId;
use codec::{Codec, Reader, Writer};
pub use codec::{DecodeError, EncodeError, MAX_STRING_LEN};
pub use daemon::{
    CaKeyAdded, ConfigReloaded, Heartbeat, KrlPublished, LogConsistencyFailed, LogForkAcknowledged,
};
pub use grant::{DrillReported, GrantIssued, GrantReviewed, GrantRevoked, ReviewVerdict};
pub use identity::{
    ClientCertificateIssued, IdentityDisabled, JoinTokenCreated, SshKeyAdded, SshKeyRemoved,
};
pub use ids::{RequestId, Timestamp};
pub use recording::{RecordingDeleted, RecordingRefused, RecordingStored};
pub use refusal::{ActionRefused, RefusalKind, RefusalsLimited, RequestRefused};
pub use request::{ApprovalAdded, RequestCancelled, RequestCreated, RequestDenied, RequestExpired};
pub use session::{
    EndReason, SessionClosed, SessionEnded, SessionOpened, SessionRef, SessionWarned,
};

/// Version byte of the encoding produced by [`Event::encode`].
pub const EVENT_VERSION: u8 = 1;
/// Longest encoded event accepted, in bytes.
pub const MAX_EVENT_LEN: usize = 1024 * 1024;

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The CA daemon itself (timeouts, heartbeats, key management at start-up).
    Daemon,
    /// A person, identified by the SAN (URI or e-mail) of their mTLS client certificate.
    User(String),
    /// A host, identified by its mTLS host identity.
    Host(String),
    /// A local administrator on the Unix socket, identified by `SO_PEERCRED` uid.
    LocalUid(u32),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Daemon => f.write_str("daemon"),
            Actor::User(u) => write!(f, "user:{u}"),
            Actor::Host(h) => write!(f, "host:{h}"),
            Actor::LocalUid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

/// `actor = 0 (daemon) | 1 string (user) | 2 string (host) | 3 u32 (local uid)`.
impl Codec for Actor {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        match self {
            Actor::Daemon => w.u8(0),
            Actor::User(u) => {
                w.u8(1);
                u.encode(w)?;
            }
            Actor::Host(h) => {
                w.u8(2);
                h.encode(w)?;
            }
            Actor::LocalUid(uid) => {
                w.u8(3);
                uid.encode(w)?;
            }
        }
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos;
        Ok(match r.u8()? {
            0 => Actor::Daemon,
            1 => Actor::User(Codec::read(r)?),
            2 => Actor::Host(Codec::read(r)?),
            3 => Actor::LocalUid(Codec::read(r)?),
            t => {
                return Err(DecodeError {
                    offset: at,
                    reason: format!("unknown actor type {t}"),
                });
            }
        })
    }
}

/// Stable numeric code of each event kind (never reused, never renumbered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum EventCode {
    /// [`RequestCreated`].
    RequestCreated = 1,
    /// [`ApprovalAdded`].
    ApprovalAdded = 2,
    /// [`RequestDenied`].
    RequestDenied = 3,
    /// [`RequestExpired`].
    RequestExpired = 4,
    /// [`GrantIssued`].
    GrantIssued = 5,
    /// [`GrantRevoked`].
    GrantRevoked = 6,
    /// [`GrantReviewed`].
    GrantReviewed = 7,
    /// [`SessionOpened`].
    SessionOpened = 8,
    /// [`SessionWarned`].
    SessionWarned = 9,
    /// [`SessionClosed`].
    SessionClosed = 10,
    /// [`SessionEnded`].
    SessionEnded = 11,
    /// [`KrlPublished`].
    KrlPublished = 12,
    /// [`CaKeyAdded`].
    CaKeyAdded = 13,
    /// [`Heartbeat`].
    Heartbeat = 14,
    /// [`RequestCancelled`].
    RequestCancelled = 15,
    /// [`DrillReported`].
    DrillReported = 16,
    /// [`RequestRefused`].
    RequestRefused = 17,
    /// [`ActionRefused`].
    ActionRefused = 18,
    /// [`RefusalsLimited`].
    RefusalsLimited = 19,
    /// [`LogConsistencyFailed`].
    LogConsistencyFailed = 20,
    /// [`LogForkAcknowledged`].
    LogForkAcknowledged = 21,
    /// [`ConfigReloaded`].
    ConfigReloaded = 22,
    /// [`RecordingStored`].
    RecordingStored = 23,
    /// [`RecordingRefused`].
    RecordingRefused = 24,
    /// [`RecordingDeleted`].
    RecordingDeleted = 25,
    /// [`JoinTokenCreated`].
    JoinTokenCreated = 26,
    /// [`ClientCertificateIssued`].
    ClientCertificateIssued = 27,
    /// [`IdentityDisabled`].
    IdentityDisabled = 28,
    /// [`SshKeyAdded`].
    SshKeyAdded = 29,
    /// [`SshKeyRemoved`].
    SshKeyRemoved = 30,
}

impl EventCode {
    /// Every code, in numeric order.
    pub const ALL: [EventCode; 30] = [
        EventCode::RequestCreated,
        EventCode::ApprovalAdded,
        EventCode::RequestDenied,
        EventCode::RequestExpired,
        EventCode::GrantIssued,
        EventCode::GrantRevoked,
        EventCode::GrantReviewed,
        EventCode::SessionOpened,
        EventCode::SessionWarned,
        EventCode::SessionClosed,
        EventCode::SessionEnded,
        EventCode::KrlPublished,
        EventCode::CaKeyAdded,
        EventCode::Heartbeat,
        EventCode::RequestCancelled,
        EventCode::DrillReported,
        EventCode::RequestRefused,
        EventCode::ActionRefused,
        EventCode::RefusalsLimited,
        EventCode::LogConsistencyFailed,
        EventCode::LogForkAcknowledged,
        EventCode::ConfigReloaded,
        EventCode::RecordingStored,
        EventCode::RecordingRefused,
        EventCode::RecordingDeleted,
        EventCode::JoinTokenCreated,
        EventCode::ClientCertificateIssued,
        EventCode::IdentityDisabled,
        EventCode::SshKeyAdded,
        EventCode::SshKeyRemoved,
    ];

    /// The code for a number, if it is one.
    #[must_use]
    pub fn from_u16(n: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| *c as u16 == n)
    }

    /// Stable snake_case name, for syslog and `audit show`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EventCode::RequestCreated => "request_created",
            EventCode::ApprovalAdded => "approval_added",
            EventCode::RequestDenied => "request_denied",
            EventCode::RequestExpired => "request_expired",
            EventCode::GrantIssued => "grant_issued",
            EventCode::GrantRevoked => "grant_revoked",
            EventCode::GrantReviewed => "grant_reviewed",
            EventCode::SessionOpened => "session_opened",
            EventCode::SessionWarned => "session_warned",
            EventCode::SessionClosed => "session_closed",
            EventCode::SessionEnded => "session_ended",
            EventCode::KrlPublished => "krl_published",
            EventCode::CaKeyAdded => "ca_key_added",
            EventCode::Heartbeat => "heartbeat",
            EventCode::RequestCancelled => "request_cancelled",
            EventCode::DrillReported => "drill_reported",
            EventCode::RequestRefused => "request_refused",
            EventCode::ActionRefused => "action_refused",
            EventCode::RefusalsLimited => "refusals_limited",
            EventCode::LogConsistencyFailed => "log_consistency_failed",
            EventCode::LogForkAcknowledged => "log_fork_acknowledged",
            EventCode::ConfigReloaded => "config_reloaded",
            EventCode::RecordingStored => "recording_stored",
            EventCode::RecordingRefused => "recording_refused",
            EventCode::RecordingDeleted => "recording_deleted",
            EventCode::JoinTokenCreated => "join_token_created",
            EventCode::ClientCertificateIssued => "client_certificate_issued",
            EventCode::IdentityDisabled => "identity_disabled",
            EventCode::SshKeyAdded => "ssh_key_added",
            EventCode::SshKeyRemoved => "ssh_key_removed",
        }
    }

    /// True for the refusal events (`request_refused`, `action_refused`,
    /// `refusals_limited`): what `breakglass audit show --refused` lists.
    #[must_use]
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            EventCode::RequestRefused | EventCode::ActionRefused | EventCode::RefusalsLimited
        )
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// See [`RequestCreated`].
    RequestCreated(RequestCreated),
    /// See [`ApprovalAdded`].
    ApprovalAdded(ApprovalAdded),
    /// See [`RequestDenied`].
    RequestDenied(RequestDenied),
    /// See [`RequestExpired`].
    RequestExpired(RequestExpired),
    /// See [`GrantIssued`].
    GrantIssued(Box<GrantIssued>),
    /// See [`GrantRevoked`].
    GrantRevoked(GrantRevoked),
    /// See [`GrantReviewed`].
    GrantReviewed(GrantReviewed),
    /// See [`SessionOpened`].
    SessionOpened(SessionOpened),
    /// See [`SessionWarned`].
    SessionWarned(SessionWarned),
    /// See [`SessionClosed`].
    SessionClosed(SessionClosed),
    /// See [`SessionEnded`].
    SessionEnded(SessionEnded),
    /// See [`KrlPublished`].
    KrlPublished(KrlPublished),
    /// See [`CaKeyAdded`].
    CaKeyAdded(CaKeyAdded),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`RequestCancelled`].
    RequestCancelled(RequestCancelled),
    /// See [`DrillReported`].
    DrillReported(DrillReported),
    /// See [`RequestRefused`].
    RequestRefused(Box<RequestRefused>),
    /// See [`ActionRefused`].
    ActionRefused(ActionRefused),
    /// See [`RefusalsLimited`].
    RefusalsLimited(RefusalsLimited),
    /// See [`LogConsistencyFailed`].
    LogConsistencyFailed(Box<LogConsistencyFailed>),
    /// See [`LogForkAcknowledged`].
    LogForkAcknowledged(LogForkAcknowledged),
    /// See [`ConfigReloaded`].
    ConfigReloaded(ConfigReloaded),
    /// See [`RecordingStored`].
    RecordingStored(RecordingStored),
    /// See [`RecordingRefused`].
    RecordingRefused(RecordingRefused),
    /// See [`RecordingDeleted`].
    RecordingDeleted(RecordingDeleted),
    /// See [`JoinTokenCreated`].
    JoinTokenCreated(JoinTokenCreated),
    /// See [`ClientCertificateIssued`].
    ClientCertificateIssued(ClientCertificateIssued),
    /// See [`IdentityDisabled`].
    IdentityDisabled(IdentityDisabled),
    /// See [`SshKeyAdded`].
    SshKeyAdded(SshKeyAdded),
    /// See [`SshKeyRemoved`].
    SshKeyRemoved(SshKeyRemoved),
}

/// The one list of event kinds: each [`EventKind`] variant holds the struct of the same
/// name, has the [`EventCode`] of the same name, and is encoded as that struct's
/// [`Codec`] body. The matches it writes are exhaustive, so a new kind must be listed.
macro_rules! kinds {
    ($($kind:ident),* $(,)?) => {
        impl EventKind {
            /// The stable code of this kind.
            #[must_use]
            pub fn code(&self) -> EventCode {
                match self {
                    $( EventKind::$kind(_) => EventCode::$kind, )*
                }
            }

            fn encode_body(&self, w: &mut Writer) -> Result<(), EncodeError> {
                match self {
                    $( EventKind::$kind(e) => e.encode(w), )*
                }
            }

            fn read_body(code: EventCode, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(match code {
                    $( EventCode::$kind => EventKind::$kind(Codec::read(r)?), )*
                })
            }
        }
    };
}

kinds!(
    RequestCreated,
    ApprovalAdded,
    RequestDenied,
    RequestExpired,
    GrantIssued,
    GrantRevoked,
    GrantReviewed,
    SessionOpened,
    SessionWarned,
    SessionClosed,
    SessionEnded,
    KrlPublished,
    CaKeyAdded,
    Heartbeat,
    RequestCancelled,
    DrillReported,
    RequestRefused,
    ActionRefused,
    RefusalsLimited,
    LogConsistencyFailed,
    LogForkAcknowledged,
    ConfigReloaded,
    RecordingStored,
    RecordingRefused,
    RecordingDeleted,
    JoinTokenCreated,
    ClientCertificateIssued,
    IdentityDisabled,
    SshKeyAdded,
    SshKeyRemoved,
);

impl EventKind {
    /// The grant this event is about, if any (for filtering by grant).
    #[must_use]
    pub fn grant_id(&self) -> Option<GrantId> {
        match self {
            EventKind::GrantIssued(g) => Some(g.grant_id),
            EventKind::GrantRevoked(g) => Some(g.grant_id),
            EventKind::GrantReviewed(g) => Some(g.grant_id),
            EventKind::SessionOpened(s) => Some(s.session.grant_id),
            EventKind::SessionWarned(s) => Some(s.session.grant_id),
            EventKind::SessionClosed(s) => Some(s.session.grant_id),
            EventKind::SessionEnded(s) => Some(s.session.grant_id),
            EventKind::DrillReported(d) => Some(d.grant_id),
            EventKind::RecordingStored(r) => Some(r.grant_id),
            EventKind::RecordingRefused(r) => Some(r.grant_id),
            EventKind::RecordingDeleted(r) => Some(r.grant_id),
            _ => None,
        }
    }

    /// The host session this event is about, if any (for filtering by host).
    #[must_use]
    pub fn session(&self) -> Option<&SessionRef> {
        match self {
            EventKind::SessionOpened(s) => Some(&s.session),
            EventKind::SessionWarned(s) => Some(&s.session),
            EventKind::SessionClosed(s) => Some(&s.session),
            EventKind::SessionEnded(s) => Some(&s.session),
            _ => None,
        }
    }

    /// The request this event is about, if any (for filtering by request or grant): a
    /// request's own events, its grant's issuance, and refusals naming it.
    #[must_use]
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            EventKind::RequestCreated(r) => Some(r.request_id),
            EventKind::ApprovalAdded(r) => Some(r.request_id),
            EventKind::RequestDenied(r) => Some(r.request_id),
            EventKind::RequestExpired(r) => Some(r.request_id),
            EventKind::RequestCancelled(r) => Some(r.request_id),
            EventKind::GrantIssued(g) => Some(g.request_id),
            EventKind::RequestRefused(r) => r.request_id,
            EventKind::ActionRefused(a) => a.target.parse().ok(),
            _ => None,
        }
    }
}

/// One audit event: when, who, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it happened, according to the actor that reported it (the daemon's clock for
    /// daemon-side events, the host's clock for host records).
    pub time: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// Builds an event.
    #[must_use]
    pub fn new(time: Timestamp, actor: Actor, kind: EventKind) -> Self {
        Self { time, actor, kind }
    }

    /// The event's stable code.
    #[must_use]
    pub fn code(&self) -> EventCode {
        self.kind.code()
    }

    /// Canonical bytes of the event: the Merkle leaf.
    ///
    /// Fails only when a field exceeds [`MAX_STRING_LEN`] or the whole exceeds
    /// [`MAX_EVENT_LEN`], so an event that encodes always decodes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer {
            buf: Vec::with_capacity(256),
        };
        w.u8(EVENT_VERSION);
        w.u16(self.code() as u16);
        self.time.encode(&mut w)?;
        self.actor.encode(&mut w)?;
        self.kind.encode_body(&mut w)?;
        if w.buf.len() > MAX_EVENT_LEN {
            return Err(EncodeError(format!(
                "event is {} bytes, more than the {MAX_EVENT_LEN} allowed",
                w.buf.len()
            )));
        }
        Ok(w.buf)
    }

    /// Parses canonical event bytes. Never panics; anything non-canonical is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if bytes.len() > MAX_EVENT_LEN {
            return r.err(format!(
                "event is {} bytes, more than the {MAX_EVENT_LEN} allowed",
                bytes.len()
            ));
        }
        let version = r.u8()?;
        if version != EVENT_VERSION {
            return Err(DecodeError {
                offset: 0,
                reason: format!(
                    "unknown event encoding version {version} (this build reads version {EVENT_VERSION})"
                ),
            });
        }
        let code_at = r.pos;
        let code_n = r.u16()?;
        let code = EventCode::from_u16(code_n).ok_or_else(|| DecodeError {
            offset: code_at,
            reason: format!("unknown event code {code_n}"),
        })?;
        let time = Timestamp::read(&mut r)?;
        let actor = Actor::read(&mut r)?;
        let kind = EventKind::read_body(code, &mut r)?;
        if r.pos != bytes.len() {
            return r.err(format!(
                "{} trailing bytes after the {} event",
                bytes.len() - r.pos,
                code.name()
            ));
        }
        Ok(Event { time, actor, kind })
    }
}
