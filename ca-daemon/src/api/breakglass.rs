//! The `breakglass.v1.BreakGlass` face: requests, approvals, certificates, reviews and
//! drills, translated to and from [`Service`].

use std::pin::Pin;
use std::sync::Arc;

use breakglass_proto::audit::event::ReviewVerdict;
use breakglass_proto::v1::break_glass_server::BreakGlass;
use breakglass_proto::v1::{
    ApproveRequest, CaPublicKey, CancelRequest, CreateRequestResponse, DenyRequest,
    GetCaPublicKeysRequest, GetCaPublicKeysResponse, GrantRef, GrantSessionsResponse,
    ListMyGrantsRequest, ListMyGrantsResponse, ListPendingRequest, ListPendingResponse,
    ListReviewsRequest, ListReviewsResponse, ReportDrillRequest, ReportDrillResponse,
    RequestCertificateRequest, RequestCertificateResponse, RequestInfo, RequestRef, RequestUpdate,
    ReviewItem, ReviewRequest, WhoAmIRequest, WhoAmIResponse,
};
use ssh_key::HashAlg;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{parse_grant_id, parse_request_id};
use crate::error::Error;
use crate::identity::caller;
use crate::request;
use crate::service::Service;
use crate::service::lifecycle::Settle;
use crate::service::review::DrillOutcome;

/// The `BreakGlass` service over the request lifecycle.
#[derive(Clone, Debug)]
pub struct BreakGlassApi(pub Arc<Service>);

type UpdateStream = Pin<Box<dyn Stream<Item = Result<RequestUpdate, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BreakGlass for BreakGlassApi {
    async fn request_certificate(
        &self,
        req: Request<RequestCertificateRequest>,
    ) -> Result<Response<RequestCertificateResponse>, Status> {
        let who = caller(&req)?;
        let wire = req.get_ref();
        let (access, key) = request::validate(wire, self.0.max_ttl())?;
        // Signing is ~40 µs of CPU: cheap enough to run inline.
        Ok(Response::new(
            self.0
                .create_and_wait(&who, access, key, wire.emergency)
                .await?,
        ))
    }

    async fn create_request(
        &self,
        req: Request<RequestCertificateRequest>,
    ) -> Result<Response<CreateRequestResponse>, Status> {
        let who = caller(&req)?;
        let wire = req.get_ref();
        let (access, key) = request::validate(wire, self.0.max_ttl())?;
        let c = self.0.create(&who, access, key, wire.emergency).await?;
        Ok(Response::new(CreateRequestResponse {
            request: Some(c.info),
            certificate: c.certificate,
        }))
    }

    type WatchRequestStream = UpdateStream;

    async fn watch_request(
        &self,
        req: Request<RequestRef>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        let who = caller(&req)?;
        let id = parse_request_id(&req.get_ref().request_id)?;
        let rx = self.0.watch(&who, id).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_pending(
        &self,
        req: Request<ListPendingRequest>,
    ) -> Result<Response<ListPendingResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(ListPendingResponse {
            requests: self.0.list_pending(&who),
        }))
    }

    async fn get_request(&self, req: Request<RequestRef>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let id = parse_request_id(&req.get_ref().request_id)?;
        Ok(Response::new(self.0.get(&who, id).await?))
    }

    async fn approve(&self, req: Request<ApproveRequest>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let id = parse_request_id(&r.request_id)?;
        Ok(Response::new(
            self.0.settle(&who, id, Settle::Approve, &r.comment).await?,
        ))
    }

    async fn deny(&self, req: Request<DenyRequest>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let id = parse_request_id(&r.request_id)?;
        Ok(Response::new(
            self.0.settle(&who, id, Settle::Deny, &r.reason).await?,
        ))
    }

    async fn cancel(&self, req: Request<CancelRequest>) -> Result<Response<RequestInfo>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let id = parse_request_id(&r.request_id)?;
        Ok(Response::new(
            self.0.settle(&who, id, Settle::Cancel, &r.reason).await?,
        ))
    }

    async fn fetch(
        &self,
        req: Request<RequestRef>,
    ) -> Result<Response<RequestCertificateResponse>, Status> {
        let who = caller(&req)?;
        let id = parse_request_id(&req.get_ref().request_id)?;
        Ok(Response::new(self.0.fetch(&who, id).await?))
    }

    async fn list_reviews(
        &self,
        req: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(ListReviewsResponse {
            items: self.0.list_reviews(&who, req.get_ref().include_reviewed),
        }))
    }

    async fn review(&self, req: Request<ReviewRequest>) -> Result<Response<ReviewItem>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let grant_id = parse_grant_id(&r.grant_id)?;
        let verdict = parse_verdict(&r.verdict)?;
        Ok(Response::new(
            self.0.review(&who, grant_id, verdict, &r.note).await?,
        ))
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

    async fn get_grant_sessions(
        &self,
        req: Request<GrantRef>,
    ) -> Result<Response<GrantSessionsResponse>, Status> {
        let who = caller(&req)?;
        let grant_id = req.get_ref().grant_id.trim().to_owned();
        let sessions = self
            .0
            .grant_sessions(&who, parse_grant_id(&grant_id)?)
            .await?;
        Ok(Response::new(GrantSessionsResponse { grant_id, sessions }))
    }

    async fn report_drill(
        &self,
        req: Request<ReportDrillRequest>,
    ) -> Result<Response<ReportDrillResponse>, Status> {
        let who = caller(&req)?;
        let r = req.get_ref();
        let grant_id = parse_grant_id(&r.grant_id)?;
        let outcome = DrillOutcome {
            passed: r.passed,
            failed_step: &r.failed_step,
            detail: &r.detail,
            request_to_shell_ms: r.request_to_shell_ms,
            logout_to_audit_ms: r.logout_to_audit_ms,
        };
        let audit_index = self.0.report_drill(&who, grant_id, outcome).await?;
        Ok(Response::new(ReportDrillResponse { audit_index }))
    }

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let who = caller(&req)?;
        let t = std::time::SystemTime::now();
        let server_time_unix = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Response::new(WhoAmIResponse {
            identity: who.identity,
            groups: who.groups,
            transport: who.transport.to_owned(),
            server_time_unix,
            backdate_seconds: i64::try_from(self.0.ca.backdate().as_secs()).unwrap_or(i64::MAX),
        }))
    }

    async fn list_my_grants(
        &self,
        req: Request<ListMyGrantsRequest>,
    ) -> Result<Response<ListMyGrantsResponse>, Status> {
        let who = caller(&req)?;
        let grants = self.0.list_my_grants(&who);
        Ok(Response::new(ListMyGrantsResponse { grants }))
    }
}

/// A review verdict as the wire writes it: `ok` or `misuse`.
fn parse_verdict(s: &str) -> Result<ReviewVerdict, Error> {
    match s.trim() {
        "ok" => Ok(ReviewVerdict::Accepted),
        "misuse" => Ok(ReviewVerdict::Rejected),
        other => Err(Error::invalid_field(
            "verdict",
            format!("{other:?} is not \"ok\" or \"misuse\""),
        )),
    }
}
