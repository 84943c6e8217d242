//! The `breakglass.v1.Audit` face: the latest signed checkpoint, entries by
//! range, inclusion and consistency proofs. Read-only; nothing here needs to be trusted
//! by the caller, who checks signatures, roots and proofs with the contract crate.
//!
//! Authorization is the access layer's ([`crate::access`]): the caller must be in one of
//! the configured `[audit] reader_groups`.

use breakglass_proto::v1::audit_server::Audit;
use breakglass_proto::v1::{
    GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetEntriesRequest, GetEntriesResponse, GetInclusionProofRequest,
    GetInclusionProofResponse, GetRecordingRequest, GetRecordingResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::audit::{AuditError, AuditLog};
use crate::error::Error;
use crate::history::History;

mod filtered;

pub use self::filtered::{MAX_ENTRIES_PER_CALL, MAX_ENTRY_BYTES_PER_CALL};

/// The Audit service over the daemon's log.
#[derive(Clone, Debug)]
pub struct AuditApi {
    log: AuditLog,
    history: Arc<History>,
    /// The session recordings stored beside the log (`GetRecording`).
    recordings: Option<Arc<crate::recordings::Recordings>>,
}

impl AuditApi {
    /// Serves reads of `log`, filtered ones through its index `history`.
    #[must_use]
    pub fn new(log: AuditLog, history: Arc<History>) -> Self {
        Self {
            log,
            history,
            recordings: None,
        }
    }

    /// Also serves the session recordings stored beside the log.
    #[must_use]
    pub fn with_recordings(mut self, r: Arc<crate::recordings::Recordings>) -> Self {
        self.recordings = Some(r);
        self
    }

    fn check_size(&self, size: u64, what: &'static str) -> Result<(), Error> {
        let have = self.log.size();
        if size > have {
            return Err(Error::BeyondLog { what, size, have });
        }
        Ok(())
    }
}

/// Maps an engine error on a read.
fn read_error(e: AuditError) -> Error {
    if matches!(e, AuditError::Corrupt { .. }) {
        tracing::error!(error = %e, "audit log read found damage");
    }
    Error::AuditRead(e)
}

fn hashes(v: Vec<[u8; 32]>) -> Vec<Vec<u8>> {
    v.into_iter().map(|h| h.to_vec()).collect()
}

#[tonic::async_trait]
impl Audit for AuditApi {
    async fn get_checkpoint(
        &self,
        _req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let cp = self.log.latest_checkpoint();
        Ok(Response::new(GetCheckpointResponse {
            size: cp.checkpoint.size,
            checkpoint: cp.note,
            verifier_key: self.log.verifier().to_string(),
        }))
    }

    async fn get_entries(
        &self,
        req: Request<GetEntriesRequest>,
    ) -> Result<Response<GetEntriesResponse>, Status> {
        let GetEntriesRequest {
            start,
            end,
            grant,
            since_ms,
        } = req.into_inner();
        if start > end {
            return Err(Error::RangeReversed { start, end }.into());
        }
        self.check_size(end, "end")?;
        if !grant.is_empty() || since_ms > 0 {
            let filter = filtered::Filter::new(&grant, since_ms)?;
            let history = self.history.clone();
            let log = self.log.clone();
            let answer =
                tokio::task::spawn_blocking(move || filter.read(&log, &history, start, end))
                    .await
                    .map_err(|e| Error::Internal(format!("reading entries: {e}")))?
                    .map_err(read_error)?;
            return Ok(Response::new(answer));
        }
        let end = end.min(start.saturating_add(MAX_ENTRIES_PER_CALL));
        let log = self.log.clone();
        // Reading segment files blocks: keep it off the async workers.
        let mut entries = tokio::task::spawn_blocking(move || log.entries(start, end))
            .await
            .map_err(|e| Error::Internal(format!("reading entries: {e}")))?
            .map_err(read_error)?;
        let mut bytes = 0usize;
        let keep = entries
            .iter()
            .position(|e| {
                bytes += e.len() + 8;
                bytes > MAX_ENTRY_BYTES_PER_CALL
            })
            .map_or(entries.len(), |i| i.max(1));
        entries.truncate(keep);
        Ok(Response::new(GetEntriesResponse {
            start,
            entries,
            ..GetEntriesResponse::default()
        }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let GetInclusionProofRequest { index, tree_size } = req.into_inner();
        self.check_size(tree_size, "tree_size")?;
        let proof = self
            .log
            .inclusion_proof(index, tree_size)
            .map_err(read_error)?;
        Ok(Response::new(GetInclusionProofResponse {
            index,
            tree_size,
            hashes: hashes(proof),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let GetConsistencyProofRequest { old_size, new_size } = req.into_inner();
        self.check_size(new_size, "new_size")?;
        let proof = self
            .log
            .consistency_proof(old_size, new_size)
            .map_err(read_error)?;
        Ok(Response::new(GetConsistencyProofResponse {
            old_size,
            new_size,
            hashes: hashes(proof),
        }))
    }

    type GetRecordingStream = ReceiverStream<Result<GetRecordingResponse, Status>>;

    async fn get_recording(
        &self,
        req: Request<GetRecordingRequest>,
    ) -> Result<Response<Self::GetRecordingStream>, Status> {
        let Some(recordings) = &self.recordings else {
            return Err(Error::Internal("this server keeps no recordings".into()).into());
        };
        let rx = recordings.download(&req.get_ref().session).await?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
