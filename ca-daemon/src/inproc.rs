//! In-process calls of the gRPC API: a method path, a caller and the encoded request
//! message in, the encoded response out, through the same handlers and authorization
//! decision ([`crate::access`]) the server runs, without a transport. The caller is given, not
//! authenticated: this is for drivers that feed the API raw bytes, the fuzz harness
//! (`fuzz/fuzz_targets/grpc_requests.rs`) and the seed generator (`xtask fuzz-seeds`).
//!
//! Server-streaming methods answer with an empty body once the handler accepted the call
//! (the stream is dropped, as a client that hangs up would).

use std::sync::Arc;

use breakglass_proto::v1::RecordingChunk;
use breakglass_proto::v1::audit_server::Audit;
use breakglass_proto::v1::break_glass_server::BreakGlass;
use breakglass_proto::v1::enrollment_server::Enrollment;
use breakglass_proto::v1::host_agent_server::HostAgent;
use breakglass_proto::v1::identities_server::Identities;
use breakglass_proto::v1::revocations_server::Revocations;
use breakglass_proto::v1::witness_server::Witness;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::access::{Access, need};
use crate::api::audit::AuditApi;
use crate::api::breakglass::BreakGlassApi;
use crate::api::enrollment::{EnrollmentApi, IdentitiesApi};
use crate::api::hosts::HostAgentApi;
use crate::api::revocation::RevocationsApi;
use crate::api::witness::WitnessApi;
use crate::config::Config;
use crate::hosts::HostRecords;
use crate::identity::Identified;
use crate::policy::Caller;
use crate::server::Daemon;
use crate::service::Service;

/// Every RPC of the API, by gRPC method path. A unit test checks this against the
/// service descriptors, so a new RPC cannot be left out.
pub const METHODS: &[&str] = &[
    "/breakglass.v1.BreakGlass/RequestCertificate",
    "/breakglass.v1.BreakGlass/CreateRequest",
    "/breakglass.v1.BreakGlass/WatchRequest",
    "/breakglass.v1.BreakGlass/ListPending",
    "/breakglass.v1.BreakGlass/GetRequest",
    "/breakglass.v1.BreakGlass/Approve",
    "/breakglass.v1.BreakGlass/Deny",
    "/breakglass.v1.BreakGlass/Cancel",
    "/breakglass.v1.BreakGlass/Fetch",
    "/breakglass.v1.BreakGlass/ListReviews",
    "/breakglass.v1.BreakGlass/Review",
    "/breakglass.v1.BreakGlass/GetCaPublicKeys",
    "/breakglass.v1.BreakGlass/WhoAmI",
    "/breakglass.v1.BreakGlass/GetGrantSessions",
    "/breakglass.v1.BreakGlass/ReportDrill",
    "/breakglass.v1.Revocations/Revoke",
    "/breakglass.v1.Revocations/GetRevocationList",
    "/breakglass.v1.Revocations/WatchRevocations",
    "/breakglass.v1.Audit/GetCheckpoint",
    "/breakglass.v1.Audit/GetEntries",
    "/breakglass.v1.Audit/GetInclusionProof",
    "/breakglass.v1.Audit/GetConsistencyProof",
    "/breakglass.v1.HostAgent/AppendHostRecords",
    "/breakglass.v1.Witness/WitnessCheckpoint",
    "/breakglass.v1.Witness/AcknowledgeLogFork",
    // New methods go last: a fuzz seed names its method by index.
    "/breakglass.v1.BreakGlass/ListMyGrants",
    "/breakglass.v1.HostAgent/UploadRecording",
    "/breakglass.v1.HostAgent/GetRecordingStatus",
    "/breakglass.v1.Audit/GetRecording",
    "/breakglass.v1.Enrollment/GetTlsCa",
    "/breakglass.v1.Enrollment/EnrollHost",
    "/breakglass.v1.Enrollment/RenewHost",
    "/breakglass.v1.Enrollment/BeginLogin",
    "/breakglass.v1.Enrollment/Login",
    "/breakglass.v1.Identities/CreateJoinTokens",
    "/breakglass.v1.Identities/DisableIdentity",
    "/breakglass.v1.Identities/AddSshKey",
    "/breakglass.v1.Identities/RemoveSshKey",
];

/// A caller for every identity `config` names, as the interceptor attaches it: `unix:`
/// identities over the admin socket as uid 0, the others over mTLS.
#[must_use]
pub fn callers(config: &Config) -> Vec<Caller> {
    config
        .identities
        .iter()
        .map(|i| {
            let unix = i.id.starts_with("unix:");
            Caller {
                identity: i.id.clone(),
                groups: i.groups.clone(),
                owner: i.owner.clone(),
                transport: if unix { "unix" } else { "mtls" },
                uid: unix.then_some(0),
                ssh_key_login: false,
            }
        })
        .collect()
}

/// The handlers of every service of one daemon.
#[derive(Debug, Clone)]
pub struct InProcess {
    service: Arc<Service>,
    breakglass: BreakGlassApi,
    revocations: RevocationsApi,
    audit: AuditApi,
    hosts: HostAgentApi,
    witness: WitnessApi,
    enrollment: EnrollmentApi,
    identities: IdentitiesApi,
    access: Access,
}

/// Decodes a request message the way tonic's codec does (a decode error is
/// `InvalidArgument`) and attaches the caller the interceptor would have attached.
#[allow(clippy::result_large_err)]
fn request<M: Message + Default>(caller: &Caller, body: &[u8]) -> Result<Request<M>, Status> {
    let msg = M::decode(body)
        .map_err(|e| Status::invalid_argument(format!("request message does not decode: {e}")))?;
    let mut req = Request::new(msg);
    req.extensions_mut().insert(caller.clone());
    Ok(req)
}

#[allow(clippy::result_large_err, clippy::needless_pass_by_value)]
fn unary<M: Message>(r: Result<Response<M>, Status>) -> Result<Vec<u8>, Status> {
    r.map(|resp| resp.into_inner().encode_to_vec())
}

#[allow(clippy::result_large_err, clippy::needless_pass_by_value)]
fn streaming<S>(r: Result<Response<S>, Status>) -> Result<Vec<u8>, Status> {
    r.map(|_| Vec::new())
}

impl InProcess {
    /// The handlers of `daemon`'s services (its background work is not started).
    #[must_use]
    pub fn new(daemon: &Daemon) -> Self {
        let service = daemon.service().clone();
        Self {
            breakglass: BreakGlassApi(service.clone()),
            revocations: RevocationsApi(daemon.revocations().clone()),
            audit: AuditApi::new(service.audit.clone(), service.history().clone())
                .with_recordings(daemon.recordings().clone()),
            hosts: HostAgentApi(
                HostRecords::new(service.clone()),
                daemon.recordings().clone(),
            ),
            witness: WitnessApi(daemon.witness().clone()),
            enrollment: EnrollmentApi(daemon.enrollment().clone()),
            identities: IdentitiesApi(daemon.enrollment().clone()),
            access: Access::new(daemon.config()),
            service,
        }
    }

    /// The shared service state behind the handlers.
    #[must_use]
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The number of events in the audit log.
    #[must_use]
    pub fn log_size(&self) -> u64 {
        self.service.audit.size()
    }

    /// The events recorded in the audit log from index `start` to `end` (exclusive), for
    /// drivers that check what a call recorded.
    pub fn recorded(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<breakglass_proto::audit::Event>, crate::audit::AuditError> {
        let events = self.service.audit.events(start, end)?;
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    /// Calls `method` (one of [`METHODS`]) as `caller` with the encoded request `body`.
    pub async fn call(
        &self,
        method: &str,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let (bg, rv, au, ho, wi) = (
            &self.breakglass,
            &self.revocations,
            &self.audit,
            &self.hosts,
            &self.witness,
        );
        let Some(name) = method.rsplit('/').next() else {
            return Err(Status::unimplemented(format!("no method {method:?}")));
        };
        // The server's authorization (authentication is the caller given, as listed).
        let who = Identified {
            caller: caller.clone(),
            listed: true,
        };
        self.access
            .authorize(&who, need(method), method)
            .map_err(Status::from)?;
        match method.rsplit_once('/').map(|(service, _)| service) {
            Some("/breakglass.v1.BreakGlass") => match name {
                "RequestCertificate" => unary(bg.request_certificate(request(caller, body)?).await),
                "CreateRequest" => unary(bg.create_request(request(caller, body)?).await),
                "WatchRequest" => streaming(bg.watch_request(request(caller, body)?).await),
                "ListPending" => unary(bg.list_pending(request(caller, body)?).await),
                "GetRequest" => unary(bg.get_request(request(caller, body)?).await),
                "Approve" => unary(bg.approve(request(caller, body)?).await),
                "Deny" => unary(bg.deny(request(caller, body)?).await),
                "Cancel" => unary(bg.cancel(request(caller, body)?).await),
                "Fetch" => unary(bg.fetch(request(caller, body)?).await),
                "ListReviews" => unary(bg.list_reviews(request(caller, body)?).await),
                "Review" => unary(bg.review(request(caller, body)?).await),
                "GetCaPublicKeys" => unary(bg.get_ca_public_keys(request(caller, body)?).await),
                "WhoAmI" => unary(bg.who_am_i(request(caller, body)?).await),
                "GetGrantSessions" => unary(bg.get_grant_sessions(request(caller, body)?).await),
                "ReportDrill" => unary(bg.report_drill(request(caller, body)?).await),
                "ListMyGrants" => unary(bg.list_my_grants(request(caller, body)?).await),
                _ => Err(Status::unimplemented(format!("no method {method:?}"))),
            },
            Some("/breakglass.v1.Revocations") => match name {
                "Revoke" => unary(rv.revoke(request(caller, body)?).await),
                "GetRevocationList" => unary(rv.get_revocation_list(request(caller, body)?).await),
                "WatchRevocations" => streaming(rv.watch_revocations(request(caller, body)?).await),
                _ => Err(Status::unimplemented(format!("no method {method:?}"))),
            },
            Some("/breakglass.v1.Audit") => match name {
                "GetCheckpoint" => unary(au.get_checkpoint(request(caller, body)?).await),
                "GetEntries" => unary(au.get_entries(request(caller, body)?).await),
                "GetInclusionProof" => unary(au.get_inclusion_proof(request(caller, body)?).await),
                "GetConsistencyProof" => {
                    unary(au.get_consistency_proof(request(caller, body)?).await)
                }
                "GetRecording" => streaming(au.get_recording(request(caller, body)?).await),
                _ => Err(Status::unimplemented(format!("no method {method:?}"))),
            },
            Some("/breakglass.v1.HostAgent") => match name {
                "AppendHostRecords" => unary(ho.append_host_records(request(caller, body)?).await),
                "GetRecordingStatus" => {
                    unary(ho.get_recording_status(request(caller, body)?).await)
                }
                // Client-streaming: the body is the one message of the stream.
                "UploadRecording" => {
                    let chunk: Request<RecordingChunk> = request(caller, body)?;
                    let host = crate::hosts::host_name(caller).map_err(Status::from)?;
                    let one = tokio_stream::iter([Ok(chunk.into_inner())]);
                    unary(
                        ho.1.upload(&host, one)
                            .await
                            .map(Response::new)
                            .map_err(Status::from),
                    )
                }
                _ => Err(Status::unimplemented(format!("no method {method:?}"))),
            },
            Some("/breakglass.v1.Witness") => match name {
                "WitnessCheckpoint" => unary(wi.witness_checkpoint(request(caller, body)?).await),
                "AcknowledgeLogFork" => {
                    unary(wi.acknowledge_log_fork(request(caller, body)?).await)
                }
                _ => Err(Status::unimplemented(format!("no method {method:?}"))),
            },
            Some("/breakglass.v1.Enrollment") => {
                let en = &self.enrollment;
                match name {
                    "GetTlsCa" => unary(en.get_tls_ca(request(caller, body)?).await),
                    "EnrollHost" => unary(en.enroll_host(request(caller, body)?).await),
                    "RenewHost" => unary(en.renew_host(request(caller, body)?).await),
                    "BeginLogin" => unary(en.begin_login(request(caller, body)?).await),
                    "Login" => unary(en.login(request(caller, body)?).await),
                    _ => Err(Status::unimplemented(format!("no method {method:?}"))),
                }
            }
            Some("/breakglass.v1.Identities") => {
                let id = &self.identities;
                match name {
                    "CreateJoinTokens" => {
                        unary(id.create_join_tokens(request(caller, body)?).await)
                    }
                    "DisableIdentity" => unary(id.disable_identity(request(caller, body)?).await),
                    "AddSshKey" => unary(id.add_ssh_key(request(caller, body)?).await),
                    "RemoveSshKey" => unary(id.remove_ssh_key(request(caller, body)?).await),
                    _ => Err(Status::unimplemented(format!("no method {method:?}"))),
                }
            }
            _ => Err(Status::unimplemented(format!("no method {method:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use breakglass_proto::v1::FILE_DESCRIPTOR_SET;
    use prost_types::FileDescriptorSet;

    #[test]
    fn methods_list_every_rpc_of_the_api() {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut described: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                let package = f.package().to_owned();
                f.service.iter().flat_map(move |s| {
                    let service = format!("{package}.{}", s.name());
                    s.method
                        .iter()
                        .map(move |m| format!("/{service}/{}", m.name()))
                })
            })
            .collect();
        described.sort();
        let mut listed: Vec<String> = METHODS.iter().map(|m| (*m).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, described);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_certificate_without_approvals_costs_one_durable_commit_for_both_its_events() {
        use breakglass_proto::audit::event::EventCode;
        use breakglass_proto::v1::{RequestCertificateRequest, RequestCertificateResponse};
        let dir = tempfile::tempdir().unwrap();
        let setup = crate::init::init_dev(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let config = crate::config::Config::load(&setup.config).unwrap();
        let daemon = Daemon::build(config).unwrap();
        let api = InProcess::new(&daemon);
        let sre = callers(daemon.config())
            .into_iter()
            .find(|c| c.identity == "sre@example.com")
            .expect("the dev config's SRE");
        let key = ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )
        .unwrap();
        let request = RequestCertificateRequest {
            public_key: key.public_key().to_openssh().unwrap(),
            principals: vec!["postgres".into()],
            hosts: vec!["web-1.dev.example".into()],
            ttl_seconds: 600,
            reason: "INC-1 disk full".into(),
            ..Default::default()
        };
        let (size, batches) = (api.log_size(), api.service().audit.batches());
        let answer = api
            .call(
                "/breakglass.v1.BreakGlass/RequestCertificate",
                &sre,
                &request.encode_to_vec(),
            )
            .await
            .expect("issued at once (low tier)");
        let issued = RequestCertificateResponse::decode(answer.as_slice()).unwrap();
        assert!(
            issued
                .certificate
                .starts_with("ssh-ed25519-cert-v01@openssh.com ")
        );
        assert_eq!(api.service().audit.batches(), batches + 1);
        let recorded = api.recorded(size, api.log_size()).unwrap();
        let codes: Vec<_> = recorded
            .iter()
            .map(breakglass_proto::audit::Event::code)
            .collect();
        assert_eq!(codes, [EventCode::RequestCreated, EventCode::GrantIssued]);
        // The state has both: the request is issued, with this grant.
        let st = daemon.service().state();
        let statuses: Vec<String> = st
            .requests()
            .map(|r| match &r.status {
                crate::state::RequestStatus::Issued(g) => g.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(statuses, std::slice::from_ref(&issued.grant_id));
    }

    #[tokio::test]
    async fn every_method_reaches_its_handler() {
        let dir = tempfile::tempdir().unwrap();
        let setup = crate::init::init_dev(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let config = crate::config::Config::load(&setup.config).unwrap();
        let daemon = Daemon::build(config).unwrap();
        let api = InProcess::new(&daemon);
        let admin = Caller {
            identity: "unix:root".into(),
            groups: vec!["admins".into()],
            owner: None,
            transport: "unix",
            uid: Some(0),
            ssh_key_login: false,
        };
        for m in METHODS {
            if let Err(s) = api.call(m, &admin, &[]).await {
                assert_ne!(s.code(), tonic::Code::Unimplemented, "{m}: {s}");
            }
        }
        let who = api
            .call("/breakglass.v1.BreakGlass/WhoAmI", &admin, &[])
            .await
            .unwrap();
        let who = breakglass_proto::v1::WhoAmIResponse::decode(who.as_slice()).unwrap();
        assert_eq!(
            (who.identity.as_str(), who.transport.as_str()),
            ("unix:root", "unix")
        );
        let e = api
            .call("/breakglass.v1.BreakGlass/Approve", &admin, &[0xff])
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        let e = api
            .call("/breakglass.v1.BreakGlass/Nothing", &admin, &[])
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
        let e = api
            .call("/breakglass.v1.HostAgent/AppendHostRecords", &admin, &[])
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    }
}
