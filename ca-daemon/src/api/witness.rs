//! The `breakglass.v1.Witness` face: hosts witness the audit log, administrators
//! acknowledge a fork, translated to and from [`Witness`].

use std::sync::Arc;

use breakglass_proto::v1::witness_server::Witness as WitnessService;
use breakglass_proto::v1::{
    AcknowledgeLogForkRequest, AcknowledgeLogForkResponse, WitnessCheckpointRequest,
    WitnessCheckpointResponse,
};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::hosts::host_name;
use crate::identity::caller;
use crate::witness::{MAX_FAILURE_BYTES, Witness};

/// The `Witness` service over the daemon's log.
#[derive(Clone, Debug)]
pub struct WitnessApi(pub Arc<Witness>);

#[tonic::async_trait]
impl WitnessService for WitnessApi {
    async fn witness_checkpoint(
        &self,
        req: Request<WitnessCheckpointRequest>,
    ) -> Result<Response<WitnessCheckpointResponse>, Status> {
        let who = caller(&req)?;
        let host = host_name(&who).map_err(|e| Error::NotAWitness(Box::new(e)))?;
        let r = req.get_ref();
        if r.failure.len() > MAX_FAILURE_BYTES * 4 || r.checkpoint.len() > 64 * 1024 {
            return Err(Error::WitnessTooLong.into());
        }
        Ok(Response::new(self.0.witness(&host, r).await?))
    }

    async fn acknowledge_log_fork(
        &self,
        req: Request<AcknowledgeLogForkRequest>,
    ) -> Result<Response<AcknowledgeLogForkResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            self.0.acknowledge(&who, &req.get_ref().reason).await?,
        ))
    }
}
