//! Session recordings on the daemon: received from the host that reported the session
//! (`HostAgent/UploadRecording`, resumable, exactly once), checked against the digest the
//! session's close record put in the log, stored beside the log under their chain hash,
//! served to auditors (`Audit/GetRecording`), and deleted by retention (`[recordings]
//! keep`). Every outcome is an audit event: `recording_stored`, `recording_refused`,
//! `recording_deleted`.
//!
//! # What is accepted
//! A recording is expected once the log holds a `session_closed` or `session_ended` event
//! carrying its digest ([`RecordingIndex`], kept in the [`State`](crate::state::State)): its
//! size and chain hash. Only the host that reported that session may upload it. Bytes are
//! appended to `incoming/<session>.part` (never held in memory: at most one message, 1 MiB);
//! an upload cut short keeps what arrived (synced), and the next upload continues from
//! there. When the file holds as many bytes as the record says, its chain is computed: equal
//! → moved to `sha256/<hex>` and `recording_stored` recorded; different → deleted and
//! `recording_refused` recorded, and the caller told what differs. A session already stored
//! is answered STORED without reading anything: exactly once.
//!
//! # Retention
//! A periodic sweep (every tenth of `keep`, between 1 s and 1 h) records `recording_deleted`
//! for every recording stored more than `keep` ago, then deletes the file: the deletion is
//! on the record before it happens.

mod store;
mod upload;

use std::collections::HashSet;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakglass_proto::audit::event::{RecordingDeleted, RecordingRefused, RecordingStored};
use breakglass_proto::audit::fields::rfc3339;
use breakglass_proto::audit::recordings::{SessionRecording, check_recording};
use breakglass_proto::audit::{Actor, Event, EventKind, Timestamp};
use breakglass_proto::v1::recording_status_response::State as UploadState;
use breakglass_proto::v1::{GetRecordingResponse, RecordingChunk, RecordingStatusResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt};

use crate::config::RecordingSettings;
use crate::error::{Error, RecordingError};
use crate::hosts::HOST_URI_PREFIX;
use crate::service::Service;
pub use store::Store;
pub use upload::{MAX_CHUNK_BYTES, Step, UploadCheck};

/// Bytes of the file in each message of a download.
pub const SEND_CHUNK_BYTES: usize = 64 * 1024;
/// Download messages buffered ahead of a slow reader.
const SEND_QUEUE: usize = 4;

/// Session recordings of one daemon (see the module docs).
#[derive(Debug)]
pub struct Recordings {
    service: Arc<Service>,
    store: Store,
    keep: Duration,
    /// Sessions with an upload in progress (one at a time per session).
    busy: Mutex<HashSet<String>>,
}

/// Removes a session from the busy set when its upload ends, however it ends.
struct Busy<'a>(&'a Recordings, String);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.remove(&self.1);
    }
}

/// The status of a recording the log knows.
fn status_of(r: &SessionRecording, held: u64) -> RecordingStatusResponse {
    let mut s = RecordingStatusResponse {
        held_bytes: held,
        expected_bytes: r.digest.bytes,
        sha256: r.digest.sha256_text(),
        audit_index: r.stored.map_or(0, |(_, i)| i),
        ..RecordingStatusResponse::default()
    };
    s.set_state(match r.state() {
        "stored" => UploadState::Stored,
        "deleted" => UploadState::Deleted,
        _ => UploadState::Incomplete,
    });
    s
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("recording file task: {e}")))?
}

impl Recordings {
    /// The recordings beside the log in `audit_dir`, kept as `settings` say.
    #[must_use]
    pub fn new(
        service: Arc<Service>,
        audit_dir: &std::path::Path,
        settings: &RecordingSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            service,
            store: Store::new(audit_dir),
            keep: settings.keep,
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// The files.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The recorded session `session` of `host`, as the log tells it.
    fn expected(&self, host: &str, session: &str) -> Result<SessionRecording, Error> {
        let found = self.service.state().recordings.get(session).cloned();
        match found {
            None => Err(Error::Recording(RecordingError::NotExpected {
                session: session.to_owned(),
            })),
            Some(r) if r.host != host => Err(Error::Recording(RecordingError::OtherHost {
                session: session.to_owned(),
                owner: r.host,
                host: host.to_owned(),
            })),
            Some(r) => Ok(r),
        }
    }

    /// How much of `session`'s recording the daemon holds (`host` must have reported it).
    pub async fn status(
        &self,
        host: &str,
        session: &str,
    ) -> Result<RecordingStatusResponse, Error> {
        let r = match self.expected(host, session) {
            Err(Error::Recording(RecordingError::NotExpected { .. })) => {
                let mut s = RecordingStatusResponse::default();
                s.set_state(UploadState::NotExpected);
                return Ok(s);
            }
            other => other?,
        };
        let held = if r.stored.is_some() {
            0
        } else {
            let store = self.store.clone();
            let s = session.to_owned();
            blocking(move || store.held(&s)).await?
        };
        Ok(status_of(&r, held))
    }

    /// Receives an upload from `host` (see the module docs).
    pub async fn upload(
        &self,
        host: &str,
        mut chunks: impl Stream<Item = Result<RecordingChunk, tonic::Status>> + Unpin + Send,
    ) -> Result<RecordingStatusResponse, Error> {
        let bad = |why: String| Error::Recording(RecordingError::BadUpload(why));
        let first = match chunks.next().await {
            Some(Ok(c)) => c,
            Some(Err(s)) => return Err(bad(format!("the stream failed: {}", s.message()))),
            None => return Err(bad("no message: the first names the session".into())),
        };
        let session = first.session.clone();
        let r = self.expected(host, &session)?;
        if r.stored.is_some() {
            // Exactly once: stored (or stored and deleted) already; nothing is read.
            return Ok(status_of(&r, 0));
        }
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(session.clone()) {
                return Err(Error::Recording(RecordingError::Busy(session)));
            }
        }
        let _busy = Busy(self, session.clone());
        let (store, s) = (self.store.clone(), session.clone());
        let (mut file, held) = blocking(move || store.open_incoming(&s)).await?;
        let mut check = UploadCheck::start(&session, r.digest.bytes, held, first.offset)?;
        let mut next = Some(first);
        let mut cut: Option<tonic::Status> = None;
        while let Some(c) = next.take() {
            match check.piece(&c.session, c.offset, c.data.len())? {
                Step::Refuse(why) => return self.refuse(&r, why).await,
                Step::Append if c.data.is_empty() => {}
                Step::Append => {
                    let (store, s) = (self.store.clone(), session.clone());
                    file = blocking(move || {
                        store.append(&s, &mut file, &c.data)?;
                        Ok(file)
                    })
                    .await?;
                }
            }
            match chunks.next().await {
                Some(Ok(c)) => next = Some(c),
                Some(Err(status)) => cut = Some(status),
                None => {}
            }
        }
        let held = check.held();
        // What arrived is kept durably, whether the stream ended or broke: a resumed upload
        // continues from it.
        let (store, s) = (self.store.clone(), session.clone());
        blocking(move || store.sync(&s, &file)).await?;
        if let Some(status) = cut {
            tracing::info!(host, session = %session, held, "recording upload cut short; it resumes from here");
            return Err(bad(format!(
                "the stream broke after {held} bytes ({}); upload again to continue",
                status.message()
            )));
        }
        if !check.complete() {
            return Ok(status_of(&r, held));
        }
        self.finish(host, &r).await
    }

    /// The upload of `r` is complete: its chain decides (see the module docs).
    async fn finish(
        &self,
        host: &str,
        r: &SessionRecording,
    ) -> Result<RecordingStatusResponse, Error> {
        let (store, s, digest) = (self.store.clone(), r.session_id.clone(), r.digest);
        let checked = blocking(move || {
            let f = store.read_incoming(&s)?;
            Ok(check_recording(std::io::BufReader::new(f), &digest))
        })
        .await?;
        if let Err(why) = checked {
            return self.refuse(r, why).await;
        }
        let (store, s, sha) = (self.store.clone(), r.session_id.clone(), r.digest.sha256);
        blocking(move || store.keep(&s, &sha)).await?;
        let (_, at) = crate::service::now();
        let index = self
            .service
            .record(Event::new(
                at,
                Actor::Host(format!("{HOST_URI_PREFIX}{host}")),
                EventKind::RecordingStored(RecordingStored {
                    host: host.to_owned(),
                    session_id: r.session_id.clone(),
                    grant_id: r.grant_id,
                    sha256: r.digest.sha256,
                    bytes: r.digest.bytes,
                }),
            ))
            .await?;
        tracing::info!(host, session = %r.session_id, grant = %r.grant_id, bytes = r.digest.bytes, audit_index = index, "session recording stored");
        let mut stored = r.clone();
        stored.stored = Some((at, index));
        Ok(status_of(&stored, 0))
    }

    /// Refuses the upload of `r`: nothing kept, `recording_refused` recorded, the caller
    /// told why.
    async fn refuse(
        &self,
        r: &SessionRecording,
        why: String,
    ) -> Result<RecordingStatusResponse, Error> {
        let (store, s) = (self.store.clone(), r.session_id.clone());
        blocking(move || store.discard(&s)).await?;
        tracing::warn!(host = %r.host, session = %r.session_id, grant = %r.grant_id, reason = %why, "session recording refused");
        let (_, at) = crate::service::now();
        self.service
            .record(Event::new(
                at,
                Actor::Host(format!("{HOST_URI_PREFIX}{}", r.host)),
                EventKind::RecordingRefused(RecordingRefused {
                    host: r.host.clone(),
                    session_id: r.session_id.clone(),
                    grant_id: r.grant_id,
                    reason: why.clone(),
                }),
            ))
            .await?;
        Err(Error::Recording(RecordingError::Mismatch {
            session: r.session_id.clone(),
            why,
        }))
    }

    /// The stored recording of `session`, streamed: what the daemon stored first, then the
    /// file in pieces of [`SEND_CHUNK_BYTES`] (a few buffered at most).
    pub async fn download(
        &self,
        session: &str,
    ) -> Result<mpsc::Receiver<Result<GetRecordingResponse, tonic::Status>>, Error> {
        let r = self.service.state().recordings.get(session).cloned();
        let not_found = |why: String| {
            Error::Recording(RecordingError::NotFound {
                session: session.to_owned(),
                why,
            })
        };
        let r = r.ok_or_else(|| {
            not_found("the audit log holds no recorded session with this id (was it recorded? were its records shipped?)".into())
        })?;
        if let Some((at, why)) = &r.deleted {
            return Err(not_found(format!(
                "the recording was deleted on {} ({why})",
                rfc3339(at.unix_seconds())
            )));
        }
        let Some((_, index)) = r.stored else {
            return Err(not_found(
                "its host has not uploaded the recording yet (breakglass host ship does)".into(),
            ));
        };
        let (store, sha) = (self.store.clone(), r.digest.sha256);
        let mut file = blocking(move || store.open_stored(&sha)).await?;
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let mut head = GetRecordingResponse {
            host: r.host.clone(),
            grant_id: r.grant_id.to_string(),
            sha256: r.digest.sha256_text(),
            bytes: r.digest.bytes,
            duration_ms: r.digest.duration_ms,
            audit_index: index,
            data: Vec::new(),
        };
        let path = self.store.stored_path(&sha);
        tokio::task::spawn_blocking(move || {
            let mut first = true;
            loop {
                let mut buf = vec![0u8; SEND_CHUNK_BYTES];
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(store::io_error(&path, &e).into()));
                        return;
                    }
                };
                buf.truncate(n);
                let msg = if first {
                    head.data = buf;
                    std::mem::take(&mut head)
                } else {
                    GetRecordingResponse {
                        data: buf,
                        ..GetRecordingResponse::default()
                    }
                };
                if (n == 0 && !first) || tx.blocking_send(Ok(msg)).is_err() {
                    return;
                }
                first = false;
                if n < SEND_CHUNK_BYTES {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Deletes the recordings stored more than `keep` before `now`, each deletion recorded
    /// first. Returns how many were deleted.
    pub async fn sweep(&self, now: Timestamp) -> Result<usize, Error> {
        let keep_ms = u64::try_from(self.keep.as_millis()).unwrap_or(u64::MAX);
        let (due, in_use): (Vec<SessionRecording>, HashSet<[u8; 32]>) = {
            let st = self.service.state();
            let live = |r: &&SessionRecording| r.stored.is_some() && r.deleted.is_none();
            let due: Vec<_> = st
                .recordings
                .sessions
                .values()
                .filter(live)
                .filter(|r| {
                    r.stored
                        .is_some_and(|(at, _)| at.0.saturating_add(keep_ms) <= now.0)
                })
                .cloned()
                .collect();
            let in_use = st
                .recordings
                .sessions
                .values()
                .filter(live)
                .filter(|r| !due.iter().any(|d| d.session_id == r.session_id))
                .map(|r| r.digest.sha256)
                .collect();
            (due, in_use)
        };
        let keep = humantime::format_duration(self.keep);
        for r in &due {
            let (_, at) = crate::service::now();
            self.service
                .record(Event::new(
                    at,
                    Actor::Daemon,
                    EventKind::RecordingDeleted(RecordingDeleted {
                        host: r.host.clone(),
                        session_id: r.session_id.clone(),
                        grant_id: r.grant_id,
                        sha256: r.digest.sha256,
                        reason: format!(
                            "retention: stored more than {keep} ago ([recordings] keep)"
                        ),
                    }),
                ))
                .await?;
            // Another session with the very same bytes keeps the file.
            if !in_use.contains(&r.digest.sha256) {
                let (store, sha) = (self.store.clone(), r.digest.sha256);
                blocking(move || store.delete(&sha)).await?;
            }
            tracing::info!(host = %r.host, session = %r.session_id, grant = %r.grant_id, "session recording deleted by retention");
        }
        Ok(due.len())
    }

    /// How often the retention sweep runs: a tenth of `keep`, between 1 s and 1 h.
    fn sweep_every(&self) -> Duration {
        (self.keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    /// Runs the retention sweep until `stop` turns true (first at once).
    pub fn start(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (_, now) = crate::service::now();
                if let Err(e) = this.sweep(now).await {
                    tracing::error!(error = %e, "recording retention sweep failed; it runs again later");
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(this.sweep_every()) => {}
                }
            }
        });
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
