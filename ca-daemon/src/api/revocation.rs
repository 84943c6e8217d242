//! The `breakglass.v1.Revocations` face: revoke, the signed KRL, the revocation stream,
//! translated to and from [`Revocations`].

use std::sync::Arc;

use breakglass_proto::v1::revocations_server::Revocations as RevocationsService;
use breakglass_proto::v1::{
    GetRevocationListRequest, GetRevocationListResponse, RevokeRequest, RevokeResponse,
    WatchRevocationsRequest,
};
use tonic::{Request, Response, Status};

use crate::identity::caller;
use crate::revocation::{Notices, Revocations};

/// The `Revocations` service over the revocation state.
#[derive(Clone, Debug)]
pub struct RevocationsApi(pub Arc<Revocations>);

#[tonic::async_trait]
impl RevocationsService for RevocationsApi {
    async fn revoke(
        &self,
        req: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(self.0.revoke(&who, req.into_inner()).await?))
    }

    async fn get_revocation_list(
        &self,
        req: Request<GetRevocationListRequest>,
    ) -> Result<Response<GetRevocationListResponse>, Status> {
        caller(&req)?;
        Ok(Response::new(self.0.revocation_list().await?))
    }

    type WatchRevocationsStream = Notices;

    async fn watch_revocations(
        &self,
        req: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            self.0.watch(&who.identity, req.get_ref().from_version),
        ))
    }
}
