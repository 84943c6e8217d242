//! The bytes of a [`State`] in a snapshot: a private format, versioned by the file header
//! ([`super::FORMAT_VERSION`]). Requests and grants carry their `RequestCreated` /
//! `GrantIssued` as canonical event encodings (the log's own codec); the rest is
//! big-endian integers and length-prefixed strings.

use std::collections::BTreeMap;
use std::io::Write;

use breakglass_proto::audit::event::{EndReason, GrantIssued, RequestCreated, ReviewVerdict};
use breakglass_proto::audit::recordings::SessionRecording;
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId, Timestamp};
use breakglass_proto::profile::GrantId;
use breakglass_proto::recording::RecordingDigest;

use crate::state::identities::{Disabled, Enrolled, JoinToken};
use crate::state::{
    Grant, Held, IssuedRequest, KeyRevocation, LogFork, RefusalWindow, Request, RequestStatus,
    Session, State,
};

/// Why snapshot bytes do not decode.
pub type DecodeError = String;

/// Bytes buffered by an [`Enc`] before they are handed to its sink.
const SPILL_AT: usize = 64 << 10;

/// Where a snapshot is written: a buffer, handed to the sink (when there is one) in pieces
/// of about [`SPILL_AT`] bytes between items, so that a snapshot of any size is written
/// with bounded memory.
#[derive(Default)]
pub(super) struct Enc<'a> {
    pub(super) buf: Vec<u8>,
    sink: Option<&'a mut dyn Write>,
}

impl<'a> Enc<'a> {
    /// An encoder writing into `sink`.
    pub(super) fn to(sink: &'a mut dyn Write) -> Self {
        Self {
            buf: Vec::with_capacity(SPILL_AT + 4096),
            sink: Some(sink),
        }
    }
    /// Hands the buffer to the sink once it holds [`SPILL_AT`] bytes.
    fn spill(&mut self) -> Result<(), String> {
        if self.buf.len() >= SPILL_AT {
            self.flush()?;
        }
        Ok(())
    }
    /// Hands the buffer to the sink (without a sink, it stays in the buffer).
    pub(super) fn flush(&mut self) -> Result<(), String> {
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(&self.buf).map_err(|e| e.to_string())?;
            self.buf.clear();
        }
        Ok(())
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn bool(&mut self, b: bool) {
        self.u8(u8::from(b));
    }
    fn ts(&mut self, t: Timestamp) {
        self.u64(t.0);
    }
    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
    fn actor(&mut self, a: &Actor) {
        match a {
            Actor::Daemon => self.u8(0),
            Actor::User(u) => {
                self.u8(1);
                self.str(u);
            }
            Actor::Host(h) => {
                self.u8(2);
                self.str(h);
            }
            Actor::LocalUid(uid) => {
                self.u8(3);
                self.u32(*uid);
            }
        }
    }
    /// `kind` at `at` as a canonical event (the log's codec).
    fn event(&mut self, at: Timestamp, kind: EventKind) -> Result<(), String> {
        let bytes = Event::new(at, Actor::Daemon, kind)
            .encode()
            .map_err(|e| e.to_string())?;
        self.bytes(&bytes);
        Ok(())
    }
    fn session(&mut self, s: &Session) {
        self.str(&s.host);
        self.str(&s.principal);
        self.str(&s.session_id);
        self.str(&s.remote_addr);
        self.opt(s.opened_at.as_ref(), |e, t| e.ts(*t));
        self.opt(s.warned_at.as_ref(), |e, t| e.ts(*t));
        self.opt(s.closed_at.as_ref(), |e, t| e.ts(*t));
        self.opt(s.ended.as_ref(), |e, (reason, at, detail)| {
            e.u8(match reason {
                EndReason::Expired => 1,
                EndReason::Revoked => 2,
                EndReason::Denied => 3,
            });
            e.ts(*at);
            e.str(detail);
        });
    }
    fn sessions(&mut self, m: &BTreeMap<String, Session>) {
        self.len(m.len());
        for (k, s) in m {
            self.str(k);
            self.session(s);
        }
    }
    fn request(&mut self, r: &Request) -> Result<(), String> {
        self.event(
            r.created_at,
            EventKind::RequestCreated((*r.created).clone()),
        )?;
        self.approvals(&r.approvals);
        match &r.status {
            RequestStatus::Pending => self.u8(0),
            RequestStatus::Issued(g) => {
                self.u8(1);
                self.u64(g.0);
            }
            RequestStatus::Denied { by, reason } => {
                self.u8(2);
                self.actor(by);
                self.str(reason);
            }
            RequestStatus::Expired => self.u8(3),
            RequestStatus::Cancelled { by, reason } => {
                self.u8(4);
                self.actor(by);
                self.str(reason);
            }
        }
        Ok(())
    }
    fn grant(&mut self, g: &Grant) -> Result<(), String> {
        self.event(g.issued_at, EventKind::GrantIssued(g.issued.clone()))?;
        self.u64(g.index);
        self.opt(g.revoked.as_deref(), |e, (by, reason, at)| {
            e.actor(by);
            e.str(reason);
            e.ts(*at);
        });
        self.opt(g.review.as_deref(), |e, (verdict, by, comment, at)| {
            e.u8(match verdict {
                ReviewVerdict::Accepted => 1,
                ReviewVerdict::Rejected => 2,
            });
            e.actor(by);
            e.str(comment);
            e.ts(*at);
        });
        self.sessions(&g.sessions);
        self.opt(g.drill_report.as_ref(), |e, (passed, at)| {
            e.bool(*passed);
            e.ts(*at);
        });
        self.opt(g.revoked_index.as_ref(), |e, i| e.u64(*i));
        self.opt(g.request.as_deref(), Self::issued_request);
        Ok(())
    }
    fn approvals(&mut self, approvals: &[(Actor, String, Timestamp)]) {
        self.len(approvals.len());
        for (a, comment, at) in approvals {
            self.actor(a);
            self.str(comment);
            self.ts(*at);
        }
    }
    fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }
    fn issued_request(&mut self, r: &IssuedRequest) {
        self.ts(r.created_at);
        self.approvals(&r.approvals);
        self.str(&r.public_key);
        self.str(&r.reason);
        self.u64(r.ttl_seconds);
        self.u32(r.approvals_required);
        self.ts(r.expires_at);
        self.bool(r.emergency);
        self.opt(r.extensions.as_ref(), |e, x| e.strs(x));
    }
    fn held(&mut self, h: &Held) {
        match h {
            Held::Grant(g) => {
                self.u8(1);
                self.u64(g.0);
            }
            Held::Request(r) => {
                self.u8(2);
                self.u64(r.0);
            }
            Held::Orphan(k) => {
                self.u8(3);
                self.str(k);
            }
            Held::Record(id) => {
                self.u8(4);
                self.str(id);
            }
        }
    }
}

/// Writes the body of a snapshot of `st` into `e`.
pub(super) fn encode_state(st: &State, e: &mut Enc<'_>) -> Result<(), String> {
    e.len(st.loose_requests.len());
    for r in st.loose_requests.values() {
        e.request(r)?;
        e.spill()?;
    }
    e.len(st.pending.len());
    for id in &st.pending {
        e.u64(id.0);
    }
    e.len(st.grants.len());
    for g in st.grants.values() {
        e.grant(g)?;
        e.spill()?;
    }
    e.len(st.serials.len());
    for (serial, g) in &st.serials {
        e.u64(*serial);
        e.u64(g.0);
        e.spill()?;
    }
    let mut records: Vec<&String> = st.host_records.iter().collect();
    records.sort();
    e.len(records.len());
    for r in records {
        e.str(r);
        e.spill()?;
    }
    e.sessions(&st.orphan_sessions);
    e.u64(st.krl_version);
    e.opt(st.krl_published_index.as_ref(), |e, i| e.u64(*i));
    e.len(st.revocations.len());
    for (i, g) in &st.revocations {
        e.u64(*i);
        e.u64(g.0);
    }
    let refusals: BTreeMap<_, _> = st.refusals.iter().collect();
    e.len(refusals.len());
    for (identity, w) in refusals {
        e.str(identity);
        e.ts(w.start);
        e.u32(w.recorded);
        e.bool(w.limited);
    }
    e.len(st.revoked_keys.len());
    for (fp, k) in &st.revoked_keys {
        e.str(fp);
        e.u64(k.grant.0);
        e.actor(&k.by);
        e.str(&k.reason);
        e.ts(k.at);
        e.u64(k.index);
    }
    e.len(st.log_forks.len());
    for f in &st.log_forks {
        e.u64(f.index);
        e.ts(f.at);
        e.str(&f.host);
        e.u64(f.size);
        e.buf.extend_from_slice(&f.root);
        e.u64(f.log_size);
    }
    e.len(st.acknowledged_forks.len());
    for (size, root) in &st.acknowledged_forks {
        e.u64(*size);
        e.buf.extend_from_slice(root);
    }
    e.u64(st.events);
    e.u64(st.top);
    e.len(st.expiry.len());
    for (t, h) in &st.expiry {
        e.u64(*t);
        e.held(h);
        e.spill()?;
    }
    e.u64(st.clock);
    e.len(st.recordings.sessions.len());
    for r in st.recordings.sessions.values() {
        e.str(&r.host);
        e.str(&r.session_id);
        e.u64(r.grant_id.0);
        e.buf.extend_from_slice(&r.digest.sha256);
        e.u64(r.digest.bytes);
        e.u64(r.digest.duration_ms);
        e.u64(r.committed_at);
        e.opt(r.stored.as_ref(), |e, (at, i)| {
            e.ts(*at);
            e.u64(*i);
        });
        e.opt(r.deleted.as_ref(), |e, (at, why)| {
            e.ts(*at);
            e.str(why);
        });
        e.u32(r.refused);
        e.spill()?;
    }
    let ids = &st.identities;
    e.len(ids.tokens.len());
    for (hash, t) in &ids.tokens {
        e.buf.extend_from_slice(hash);
        e.str(&t.host);
        e.ts(t.created_at);
        e.ts(t.expires_at);
        e.opt(t.used.as_ref(), |e, (at, serial)| {
            e.ts(*at);
            e.str(serial);
        });
    }
    e.len(ids.enrolled.len());
    for (id, n) in &ids.enrolled {
        e.str(id);
        e.len(n.groups.len());
        for g in &n.groups {
            e.str(g);
        }
        e.str(&n.serial);
        e.ts(n.not_after);
        e.ts(n.since);
    }
    e.len(ids.disabled.len());
    for (id, x) in &ids.disabled {
        e.str(id);
        e.actor(&x.by);
        e.str(&x.reason);
        e.ts(x.at);
    }
    e.len(ids.ssh_keys.len());
    for (id, keys) in &ids.ssh_keys {
        e.str(id);
        e.len(keys.len());
        for k in keys {
            e.str(k);
        }
    }
    Ok(())
}

/// Where a snapshot's body is read from.
#[derive(Debug)]
pub(super) struct Dec<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(format!(
                "truncated at byte {}: {n} more bytes needed, {} left",
                self.pos,
                self.buf.len() - self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A count of items, each at least one byte: more than the bytes left is damage.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(format!(
                "count {n} at byte {} exceeds the {left} bytes left",
                self.pos - 8
            ));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| format!("bad UTF-8 at byte {at}"))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("bad boolean {v} at byte {}", self.pos - 1)),
        }
    }
    fn ts(&mut self) -> Result<Timestamp, DecodeError> {
        Ok(Timestamp(self.u64()?))
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            v => Err(format!("bad option tag {v} at byte {}", self.pos - 1)),
        }
    }
    fn bad_tag<T>(&self, what: &str, v: u8) -> Result<T, DecodeError> {
        Err(format!("unknown {what} {v} at byte {}", self.pos - 1))
    }
    fn actor(&mut self) -> Result<Actor, DecodeError> {
        Ok(match self.u8()? {
            0 => Actor::Daemon,
            1 => Actor::User(self.str()?),
            2 => Actor::Host(self.str()?),
            3 => Actor::LocalUid(self.u32()?),
            v => return self.bad_tag("actor type", v),
        })
    }
    fn event(&mut self) -> Result<Event, DecodeError> {
        let at = self.pos;
        Event::decode(self.bytes()?).map_err(|e| format!("event at byte {at}: {e}"))
    }
    fn created(&mut self) -> Result<(Timestamp, Box<RequestCreated>), DecodeError> {
        let e = self.event()?;
        match e.kind {
            EventKind::RequestCreated(c) => Ok((e.time, Box::new(c))),
            other => Err(format!("a request holds a {} event", other.code().name())),
        }
    }
    fn issued(&mut self) -> Result<(Timestamp, Box<GrantIssued>), DecodeError> {
        let e = self.event()?;
        match e.kind {
            EventKind::GrantIssued(g) => Ok((e.time, g)),
            other => Err(format!("a grant holds a {} event", other.code().name())),
        }
    }
    fn session(&mut self) -> Result<Session, DecodeError> {
        Ok(Session {
            host: self.str()?,
            principal: self.str()?,
            session_id: self.str()?,
            remote_addr: self.str()?,
            opened_at: self.opt(Self::ts)?,
            warned_at: self.opt(Self::ts)?,
            closed_at: self.opt(Self::ts)?,
            ended: self.opt(|d| {
                let reason = match d.u8()? {
                    1 => EndReason::Expired,
                    2 => EndReason::Revoked,
                    3 => EndReason::Denied,
                    v => return d.bad_tag("session end reason", v),
                };
                Ok((reason, d.ts()?, d.str()?))
            })?,
        })
    }
    fn sessions(&mut self) -> Result<BTreeMap<String, Session>, DecodeError> {
        let n = self.len()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.str()?;
            m.insert(k, self.session()?);
        }
        Ok(m)
    }
    fn request(&mut self) -> Result<Request, DecodeError> {
        let (created_at, created) = self.created()?;
        let approvals = self.approvals()?;
        let status = match self.u8()? {
            0 => RequestStatus::Pending,
            1 => RequestStatus::Issued(GrantId(self.u64()?)),
            2 => RequestStatus::Denied {
                by: self.actor()?,
                reason: self.str()?,
            },
            3 => RequestStatus::Expired,
            4 => RequestStatus::Cancelled {
                by: self.actor()?,
                reason: self.str()?,
            },
            v => return self.bad_tag("request status", v),
        };
        Ok(Request {
            created,
            created_at,
            approvals,
            status,
        })
    }
    fn grant(&mut self) -> Result<Grant, DecodeError> {
        let (issued_at, issued) = self.issued()?;
        Ok(Grant {
            issued,
            issued_at,
            index: self.u64()?,
            revoked: self.opt(|d| Ok(Box::new((d.actor()?, d.str()?, d.ts()?))))?,
            review: self.opt(|d| {
                let verdict = match d.u8()? {
                    1 => ReviewVerdict::Accepted,
                    2 => ReviewVerdict::Rejected,
                    v => return d.bad_tag("review verdict", v),
                };
                Ok(Box::new((verdict, d.actor()?, d.str()?, d.ts()?)))
            })?,
            sessions: self.sessions()?,
            drill_report: self.opt(|d| Ok((d.bool()?, d.ts()?)))?,
            revoked_index: self.opt(Self::u64)?,
            request: self.opt(|d| d.issued_request().map(Box::new))?,
        })
    }
    fn approvals(&mut self) -> Result<Vec<(Actor, String, Timestamp)>, DecodeError> {
        let n = self.len()?;
        // Grown as approvals decode, not reserved from the count: a count checked only
        // against the bytes left would still reserve ~60 bytes of memory per byte of file.
        let mut approvals = Vec::new();
        for _ in 0..n {
            approvals.push((self.actor()?, self.str()?, self.ts()?));
        }
        Ok(approvals)
    }
    fn strs(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.len()?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(self.str()?);
        }
        Ok(v)
    }
    fn issued_request(&mut self) -> Result<IssuedRequest, DecodeError> {
        Ok(IssuedRequest {
            created_at: self.ts()?,
            approvals: self.approvals()?,
            public_key: self.str()?,
            reason: self.str()?,
            ttl_seconds: self.u64()?,
            approvals_required: self.u32()?,
            expires_at: self.ts()?,
            emergency: self.bool()?,
            extensions: self.opt(Self::strs)?,
        })
    }
    fn held(&mut self) -> Result<Held, DecodeError> {
        Ok(match self.u8()? {
            1 => Held::Grant(GrantId(self.u64()?)),
            2 => Held::Request(RequestId(self.u64()?)),
            3 => Held::Orphan(self.str()?),
            4 => Held::Record(self.str()?),
            v => return self.bad_tag("held item", v),
        })
    }
}

/// The state a snapshot body describes; every byte must be used.
pub(super) fn decode_state(buf: &[u8]) -> Result<State, DecodeError> {
    let mut d = Dec { buf, pos: 0 };
    let mut st = State::default();
    for _ in 0..d.len()? {
        let r = d.request()?;
        st.loose_requests.insert(r.created.request_id, r);
    }
    for _ in 0..d.len()? {
        st.pending.insert(RequestId(d.u64()?));
    }
    for _ in 0..d.len()? {
        let g = d.grant()?;
        if g.request.is_some()
            && st
                .issued_requests
                .insert(g.issued.request_id, g.issued.grant_id)
                .is_some()
        {
            return Err(format!(
                "request {} is held with two grants",
                g.issued.request_id
            ));
        }
        st.grants.insert(g.issued.grant_id, g);
    }
    for _ in 0..d.len()? {
        st.serials.insert(d.u64()?, GrantId(d.u64()?));
    }
    for _ in 0..d.len()? {
        st.host_records.insert(d.str()?);
    }
    st.orphan_sessions = d.sessions()?;
    st.krl_version = d.u64()?;
    st.krl_published_index = d.opt(Dec::u64)?;
    for _ in 0..d.len()? {
        st.revocations.insert(d.u64()?, GrantId(d.u64()?));
    }
    for _ in 0..d.len()? {
        let identity = d.str()?;
        let w = RefusalWindow {
            start: d.ts()?,
            recorded: d.u32()?,
            limited: d.bool()?,
        };
        st.refusals.insert(identity, w);
    }
    for _ in 0..d.len()? {
        let fp = d.str()?;
        let k = KeyRevocation {
            grant: GrantId(d.u64()?),
            by: d.actor()?,
            reason: d.str()?,
            at: d.ts()?,
            index: d.u64()?,
        };
        st.revoked_keys.insert(fp, k);
    }
    for _ in 0..d.len()? {
        st.log_forks.push(LogFork {
            index: d.u64()?,
            at: d.ts()?,
            host: d.str()?,
            size: d.u64()?,
            root: d.array()?,
            log_size: d.u64()?,
        });
    }
    for _ in 0..d.len()? {
        st.acknowledged_forks.insert((d.u64()?, d.array()?));
    }
    st.events = d.u64()?;
    st.top = d.u64()?;
    for _ in 0..d.len()? {
        st.expiry.insert((d.u64()?, d.held()?));
    }
    st.clock = d.u64()?;
    for _ in 0..d.len()? {
        let r = SessionRecording {
            host: d.str()?,
            session_id: d.str()?,
            grant_id: GrantId(d.u64()?),
            digest: RecordingDigest {
                sha256: d.array()?,
                bytes: d.u64()?,
                duration_ms: d.u64()?,
            },
            committed_at: d.u64()?,
            stored: d.opt(|d| Ok((d.ts()?, d.u64()?)))?,
            deleted: d.opt(|d| Ok((d.ts()?, d.str()?)))?,
            refused: d.u32()?,
        };
        st.recordings.sessions.insert(r.session_id.clone(), r);
    }
    for _ in 0..d.len()? {
        let hash = d.array()?;
        let t = JoinToken {
            host: d.str()?,
            created_at: d.ts()?,
            expires_at: d.ts()?,
            used: d.opt(|d| Ok((d.ts()?, d.str()?)))?,
        };
        st.identities.tokens.insert(hash, t);
    }
    for _ in 0..d.len()? {
        let id = d.str()?;
        let mut groups = Vec::new();
        for _ in 0..d.len()? {
            groups.push(d.str()?);
        }
        let n = Enrolled {
            groups,
            serial: d.str()?,
            not_after: d.ts()?,
            since: d.ts()?,
        };
        st.identities.enrolled.insert(id, n);
    }
    for _ in 0..d.len()? {
        let id = d.str()?;
        let x = Disabled {
            by: d.actor()?,
            reason: d.str()?,
            at: d.ts()?,
        };
        st.identities.disabled.insert(id, x);
    }
    for _ in 0..d.len()? {
        let id = d.str()?;
        let mut keys = std::collections::BTreeSet::new();
        for _ in 0..d.len()? {
            keys.insert(d.str()?);
        }
        st.identities.ssh_keys.insert(id, keys);
    }
    if d.pos != buf.len() {
        return Err(format!("{} bytes left after the state", buf.len() - d.pos));
    }
    Ok(st)
}
