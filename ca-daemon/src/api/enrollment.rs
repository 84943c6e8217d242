//! The `breakglass.v1.Enrollment` and `breakglass.v1.Identities` faces: hosts enroll and
//! renew, administrators create join tokens and disable identities, translated to and
//! from [`Enrollment`]. `GetTlsCa` and `EnrollHost` are reached without a client
//! certificate ([`crate::access::OPEN_CALLS`]); the access layer put the caller it
//! identified (or the anonymous one) in the request.

use std::sync::Arc;
use std::time::Duration;

use breakglass_proto::v1::enrollment_server::Enrollment as EnrollmentService;
use breakglass_proto::v1::identities_server::Identities as IdentitiesService;
use breakglass_proto::v1::{
    BeginLoginRequest, BeginLoginResponse, CreateJoinTokensRequest, CreateJoinTokensResponse,
    DisableIdentityRequest, DisableIdentityResponse, EnrollHostRequest, GetTlsCaRequest,
    GetTlsCaResponse, HostCertificateResponse, LoginRequest, LoginResponse, RenewHostRequest,
    SshKeyRequest, SshKeyResponse,
};
use tonic::{Request, Response, Status};

use crate::enrollment::Enrollment;
use crate::identity::caller;

/// The `Enrollment` service.
#[derive(Clone, Debug)]
pub struct EnrollmentApi(pub Arc<Enrollment>);

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    async fn get_tls_ca(
        &self,
        _req: Request<GetTlsCaRequest>,
    ) -> Result<Response<GetTlsCaResponse>, Status> {
        Ok(Response::new(self.0.tls_ca()))
    }

    async fn enroll_host(
        &self,
        req: Request<EnrollHostRequest>,
    ) -> Result<Response<HostCertificateResponse>, Status> {
        let r = req.get_ref();
        Ok(Response::new(self.0.enroll(&r.token, &r.csr_der).await?))
    }

    async fn renew_host(
        &self,
        req: Request<RenewHostRequest>,
    ) -> Result<Response<HostCertificateResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            self.0.renew(&who, &req.get_ref().csr_der).await?,
        ))
    }

    async fn begin_login(
        &self,
        req: Request<BeginLoginRequest>,
    ) -> Result<Response<BeginLoginResponse>, Status> {
        Ok(Response::new(self.0.begin_login(&req.get_ref().method)?))
    }

    async fn login(&self, req: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        let r = req.get_ref();
        Ok(Response::new(
            self.0
                .login(&r.nonce, &r.id_token, &r.csr_der, &r.ssh_signature)
                .await?,
        ))
    }
}

/// The `Identities` service.
#[derive(Clone, Debug)]
pub struct IdentitiesApi(pub Arc<Enrollment>);

#[tonic::async_trait]
impl IdentitiesService for IdentitiesApi {
    async fn create_join_tokens(
        &self,
        req: Request<CreateJoinTokensRequest>,
    ) -> Result<Response<CreateJoinTokensResponse>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let ttl = (r.ttl_seconds > 0).then(|| Duration::from_secs(r.ttl_seconds));
        Ok(Response::new(
            self.0.create_tokens(&who, &r.host, ttl, r.count).await?,
        ))
    }

    async fn disable_identity(
        &self,
        req: Request<DisableIdentityRequest>,
    ) -> Result<Response<DisableIdentityResponse>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.0.disable(&who, &r.identity, &r.reason).await?,
        ))
    }

    async fn add_ssh_key(
        &self,
        req: Request<SshKeyRequest>,
    ) -> Result<Response<SshKeyResponse>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.0.add_ssh_key(&who, &r.identity, &r.public_key).await?,
        ))
    }

    async fn remove_ssh_key(
        &self,
        req: Request<SshKeyRequest>,
    ) -> Result<Response<SshKeyResponse>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        Ok(Response::new(
            self.0
                .remove_ssh_key(&who, &r.identity, &r.public_key)
                .await?,
        ))
    }
}
