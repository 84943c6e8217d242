//! The `breakglass.v1.BreakGlass` gRPC handlers. Authentication happened in
//! the interceptor; here: validate, decide, sign, answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use breakglass_proto::v1::break_glass_server::BreakGlass;
use breakglass_proto::v1::{
    CaPublicKey, GetCaPublicKeysRequest, GetCaPublicKeysResponse, RequestCertificateRequest,
    RequestCertificateResponse, WhoAmIRequest, WhoAmIResponse,
};
use ssh_key::HashAlg;
use tonic::{Request, Response, Status};

use crate::certificate::{CertSpec, CertificateAuthority};
use crate::error::Error;
use crate::identity::caller;
use crate::policy::{Decision, Policy};
use crate::request;

/// Shared state of the handlers.
#[derive(Debug)]
pub struct Service {
    ca: CertificateAuthority,
    policy: Policy,
    max_ttl: Duration,
}

impl Service {
    /// Builds the service.
    pub fn new(ca: CertificateAuthority, policy: Policy, max_ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ca,
            policy,
            max_ttl,
        })
    }

    fn request_certificate(
        &self,
        req: &Request<RequestCertificateRequest>,
    ) -> Result<RequestCertificateResponse, Error> {
        let who = caller(req)?;
        let (access, key) = request::validate(req.get_ref(), self.max_ttl)?;
        let grant = match self.policy.decide(&who, &access) {
            Decision::Allow(g) => g,
            Decision::Deny(why) => {
                tracing::info!(
                    requester = %who.identity,
                    principals = ?access.principals,
                    hosts = ?access.hosts,
                    reason = %why,
                    "request denied"
                );
                return Err(Error::PermissionDenied(why));
            }
        };
        let grant_id = CertificateAuthority::new_grant_id();
        let issued = self.ca.issue(
            &CertSpec {
                grant_id,
                requester: &who.identity,
                subject: &key,
                principals: &access.principals,
                hosts: &access.hosts,
                tier: &grant.tier,
                ttl: access.ttl,
                force_command: access.force_command.as_deref(),
                source_addresses: &access.source_addresses,
                extensions: &grant.extensions,
            },
            SystemTime::now(),
        )?;
        let certificate = issued
            .certificate
            .to_openssh()
            .map_err(|e| Error::Internal(format!("encoding certificate: {e}")))?;
        tracing::info!(
            grant = %grant_id,
            serial = issued.serial,
            key_id = %issued.key_id,
            requester = %who.identity,
            principals = ?access.principals,
            hosts = ?access.hosts,
            ttl_s = access.ttl.as_secs(),
            rule = %grant.rule,
            reason = %access.reason,
            "certificate issued"
        );
        Ok(RequestCertificateResponse {
            certificate,
            grant_id: grant_id.to_string(),
            serial: issued.serial,
            key_id: issued.key_id,
            valid_after: issued.valid_after as i64,
            valid_before: issued.valid_before as i64,
            rule: grant.rule,
            tier: grant.tier,
            principals: access.principals,
            extensions: grant.extensions,
        })
    }
}

/// The tonic service: a thin adapter from gRPC to [`Service`].
#[derive(Clone, Debug)]
pub struct Handlers(pub Arc<Service>);

#[tonic::async_trait]
impl BreakGlass for Handlers {
    async fn request_certificate(
        &self,
        req: Request<RequestCertificateRequest>,
    ) -> Result<Response<RequestCertificateResponse>, Status> {
        // Signing is ~40 µs of CPU: cheap enough to run inline.
        Ok(Response::new(self.0.request_certificate(&req)?))
    }

    async fn get_ca_public_keys(
        &self,
        _req: Request<GetCaPublicKeysRequest>,
    ) -> Result<Response<GetCaPublicKeysResponse>, Status> {
        let keys = self
            .0
            .ca
            .published()
            .iter()
            .map(|k| {
                Ok(CaPublicKey {
                    public_key: k
                        .key
                        .to_openssh()
                        .map_err(|e| Error::Internal(format!("encoding CA key: {e}")))?,
                    fingerprint: k.key.fingerprint(HashAlg::Sha256).to_string(),
                    signing: k.signing,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Response::new(GetCaPublicKeysResponse { keys }))
    }

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(WhoAmIResponse {
            identity: who.identity,
            groups: who.groups,
            transport: who.transport.to_owned(),
        }))
    }
}
