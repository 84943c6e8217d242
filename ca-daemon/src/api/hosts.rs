//! The `breakglass.v1.HostAgent` face: session records from a host, translated to and
//! from [`HostRecords`].

use breakglass_proto::v1::host_agent_server::HostAgent;
use breakglass_proto::v1::{AppendHostRecordsRequest, AppendHostRecordsResponse};
use tonic::{Request, Response, Status};

use crate::hosts::{HostRecords, host_name};
use crate::identity::caller;

/// The `HostAgent` service over the host records.
#[derive(Clone, Debug)]
pub struct HostAgentApi(pub HostRecords);

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
}
