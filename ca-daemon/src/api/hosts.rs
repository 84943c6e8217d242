//! The `breakglass.v1.HostAgent` face: session records from a host, translated to and
//! from [`HostRecords`]; session recordings from a host, to and from [`Recordings`].

use std::sync::Arc;

use breakglass_proto::v1::host_agent_server::HostAgent;
use breakglass_proto::v1::{
    AppendHostRecordsRequest, AppendHostRecordsResponse, RecordingChunk, RecordingStatusRequest,
    RecordingStatusResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::hosts::{HostRecords, host_name};
use crate::identity::caller;
use crate::recordings::Recordings;

/// The `HostAgent` service over the host records and the recordings.
#[derive(Clone, Debug)]
pub struct HostAgentApi(pub HostRecords, pub Arc<Recordings>);

#[tonic::async_trait]
impl HostAgent for HostAgentApi {
    async fn append_host_records(
        &self,
        req: Request<AppendHostRecordsRequest>,
    ) -> Result<Response<AppendHostRecordsResponse>, Status> {
        let who = caller(&req)?;
        let host = host_name(&who)?;
        let results = self.0.append(&host, &req.get_ref().records).await?;
        Ok(Response::new(AppendHostRecordsResponse { results }))
    }

    async fn upload_recording(
        &self,
        req: Request<Streaming<RecordingChunk>>,
    ) -> Result<Response<RecordingStatusResponse>, Status> {
        let who = caller(&req)?;
        let host = host_name(&who)?;
        Ok(Response::new(self.1.upload(&host, req.into_inner()).await?))
    }

    async fn get_recording_status(
        &self,
        req: Request<RecordingStatusRequest>,
    ) -> Result<Response<RecordingStatusResponse>, Status> {
        let who = caller(&req)?;
        let host = host_name(&who)?;
        Ok(Response::new(
            self.1.status(&host, &req.get_ref().session).await?,
        ))
    }
}
