//! The `breakglass.v1.BreakGlass` gRPC handlers. Authentication happened in
//! the interceptor; here: validate, decide, sign, answer.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use breakglass_proto::audit::event::{GrantIssued, RequestCreated};
use breakglass_proto::audit::{Event, EventKind, RequestId, Timestamp};
use ssh_key::rand_core::{OsRng, RngCore};

use breakglass_proto::v1::break_glass_server::BreakGlass;
use breakglass_proto::v1::{
    CaPublicKey, GetCaPublicKeysRequest, GetCaPublicKeysResponse, RequestCertificateRequest,
    RequestCertificateResponse, WhoAmIRequest, WhoAmIResponse,
};
use ssh_key::HashAlg;
use tonic::{Request, Response, Status};

use crate::audit::{AuditError, AuditLog};
use crate::certificate::{CertSpec, CertificateAuthority};
use crate::error::Error;
use crate::identity::caller;
use crate::policy::{Decision, Policy};
use crate::request;
use crate::state::State;

/// Shared state of the handlers.
#[derive(Debug)]
pub struct Service {
    pub(crate) ca: CertificateAuthority,
    pub(crate) policy: Policy,
    pub(crate) max_ttl: Duration,
    pub(crate) audit: AuditLog,
    state: Mutex<State>,
}

impl Service {
    /// Builds the service around a log whose events were replayed into `state`.
    pub fn new(
        ca: CertificateAuthority,
        policy: Policy,
        max_ttl: Duration,
        audit: AuditLog,
        state: State,
    ) -> Arc<Self> {
        Arc::new(Self {
            ca,
            policy,
            max_ttl,
            audit,
            state: Mutex::new(state),
        })
    }

    /// The state derived from the log.
    pub fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-applied
        // in a way the log does not describe; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event, and applies it to the state once it is durable.
    /// This is the only way the daemon changes state.
    pub async fn record(&self, event: Event) -> Result<u64, Error> {
        let index = self.audit.append(&event).await.map_err(audit_unavailable)?;
        self.state().apply(index, &event);
        Ok(index)
    }

    async fn request_certificate(
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
        let now = SystemTime::now();
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
            now,
        )?;
        // The certificate leaves the daemon only after its grant is durable in
        // the audit log; if the log cannot be written, nothing is issued.
        let at = Timestamp::from_system_time(now);
        let request_id = RequestId(OsRng.next_u64());
        let source_addresses: Vec<String> = access
            .source_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        self.record(Event::new(
            at,
            who.actor(),
            EventKind::RequestCreated(RequestCreated {
                request_id,
                requester: who.identity.clone(),
                public_key: key
                    .to_openssh()
                    .map_err(|e| Error::Internal(format!("encoding public key: {e}")))?,
                principals: access.principals.clone(),
                hosts: access.hosts.clone(),
                ttl_seconds: access.ttl.as_secs(),
                reason: access.reason.clone(),
                command: access.force_command.clone(),
                source_addresses: source_addresses.clone(),
                extensions: access.extensions.clone().unwrap_or_default(),
                emergency: false,
                rule: grant.rule.clone(),
                tier: grant.tier.clone(),
                approvals_required: 0,
                expires_at: at,
            }),
        ))
        .await?;
        let index = self
            .record(Event::new(
                at,
                who.actor(),
                EventKind::GrantIssued(Box::new(GrantIssued {
                    request_id,
                    grant_id,
                    serial: issued.serial,
                    key_id: issued.key_id.clone(),
                    ca_fingerprint: self.ca.signing_fingerprint(),
                    key_fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                    principals: access.principals.clone(),
                    hosts: access.hosts.clone(),
                    command: access.force_command.clone(),
                    source_addresses,
                    extensions: grant.extensions.clone(),
                    valid_after: issued.valid_after,
                    valid_before: issued.valid_before,
                    requester: who.identity.clone(),
                    approvers: Vec::new(),
                    rule: grant.rule.clone(),
                    tier: grant.tier.clone(),
                    emergency: false,
                })),
            ))
            .await?;
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
            audit_index = index,
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

/// The audit log could not record an event: nothing was done.
fn audit_unavailable(e: AuditError) -> Error {
    tracing::error!(error = %e, "audit log append failed");
    Error::Unavailable(format!(
        "{e}; nothing was issued or changed. Try again shortly; operators: check the disk of the audit log"
    ))
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
        Ok(Response::new(self.0.request_certificate(&req).await?))
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
