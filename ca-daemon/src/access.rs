//! Who may call what: the one authorization decision, made by a tower layer in front of
//! every gRPC service on both listeners, before any handler runs.
//!
//! | calls | who may make them |
//! |---|---|
//! | [`OPEN_CALLS`]: `Enrollment/GetTlsCa`, `Enrollment/EnrollHost`, `Enrollment/BeginLogin`, `Enrollment/Login` | anyone, with or without a client certificate; at most `[server] open_calls_per_minute` per peer address |
//! | `BreakGlass/WhoAmI`, gRPC health, server reflection | every authenticated caller, listed or not |
//! | `Identities/*` (join tokens, disabling identities) | admins |
//! | `Enrollment/RenewHost` | hosts |
//! | `Revocations/GetRevocationList`, `Revocations/WatchRevocations` | hosts and admins |
//! | `Audit/*` | members of `[audit] reader_groups` |
//! | `HostAgent/*` | hosts |
//! | everything else | listed callers (the handlers then apply the policy; `ListMyGrants` lists the caller's own grants only) |
//!
//! - *Listed*: in `[[identities]]`, or a caller of the admin socket (mode 0600: only the
//!   daemon's user and root can open it). An unlisted caller gets `PERMISSION_DENIED`
//!   ([`Error::UnknownIdentity`]) saying how to get listed.
//! - *Hosts*: see [`crate::hosts::host_name`] (`host://NAME` in the group `hosts`).
//! - *Admins*: callers of the admin socket and members of `[revocation] admin_groups`.
//!   Revocation notices name who revoked whose grant and why: people have no use for the
//!   stream (auditors read the same in the audit log), hosts need it and the KRL.
//!
//! `WhoAmI` stays open so that someone who is not listed yet can learn the identity the
//! daemon sees and ask for it to be listed. Health and reflection stay open because they
//! reveal nothing of the daemon's state: health answers "serving" (what monitoring probes
//! ask, without an entry in the config), reflection describes the public `.proto` API.
//! Every call but the [`OPEN_CALLS`] still needs a client certificate from `[server]
//! client_ca` (or the admin socket) and an identity outside the reserved `unix:` namespace:
//! the TLS listener accepts connections without one so that hosts can enroll, and a call
//! that needs one gets `UNAUTHENTICATED` saying how to get one. An identity the audit log
//! disabled is refused on every call ([`crate::identity`]).
//!
//! Every refusal made here goes through [`Access::refused`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

use crate::accept::Source;
use crate::config::Config;
use crate::error::{EnrollmentError, Error, Unauthenticated};
use crate::identity::{Authenticator, Identified};
use crate::policy::Caller;

/// Longest RPC path kept in logs and messages (paths come from the caller).
const MAX_RPC_LEN: usize = 200;

/// What a call needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated caller, listed or not.
    Anyone,
    /// A listed caller.
    Listed,
    /// A host or an admin.
    HostOrAdmin,
    /// A member of `[audit] reader_groups`.
    AuditReader,
    /// A host.
    Host,
    /// Anyone, even without a client certificate: the [`OPEN_CALLS`].
    Open,
    /// An admin: a caller of the admin socket or a member of `[revocation] admin_groups`.
    Admin,
}

/// The calls answered without a client certificate (`(service, method)`): how a host
/// without credentials gets them. Nothing else is; each is rate-limited per peer address.
pub const OPEN_CALLS: &[(&str, &str)] = &[
    ("breakglass.v1.Enrollment", "GetTlsCa"),
    ("breakglass.v1.Enrollment", "EnrollHost"),
    ("breakglass.v1.Enrollment", "BeginLogin"),
    ("breakglass.v1.Enrollment", "Login"),
];

/// Sources tracked at most: when this many called in the current minute, calls from
/// further sources are refused until it ends (the memory stays bounded under a flood).
const MAX_OPEN_CALL_PEERS: usize = 16_384;

/// Calls without a client certificate counted per source and minute: an IPv4 address, or
/// an IPv6 /64 (one host gets a whole /64, so counting its addresses one by one would let
/// it rotate through them).
#[derive(Debug)]
struct OpenCallLimit {
    per_minute: u32,
    /// Source → (minute, calls in it).
    windows: Mutex<HashMap<Source, (u64, u32)>>,
}

impl OpenCallLimit {
    /// Counts a call from `peer` at `minute`; false when it is over the limit.
    fn admit(&self, peer: IpAddr, minute: u64) -> bool {
        let source = Source::from(peer);
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= MAX_OPEN_CALL_PEERS && !w.contains_key(&source) {
            w.retain(|_, (m, _)| *m == minute);
            if w.len() >= MAX_OPEN_CALL_PEERS {
                return false;
            }
        }
        let e = w.entry(source).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1 <= self.per_minute
    }
}

/// What the call at `path` (`/package.Service/Method`) needs. Calls not named here
/// (including new ones) need a listed caller.
pub fn need(path: &str) -> Need {
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(_, method)| !method.contains('/'))
        .unwrap_or(("", ""));
    if OPEN_CALLS.contains(&(service, method)) {
        return Need::Open;
    }
    match (service, method) {
        ("breakglass.v1.Enrollment", "RenewHost") => Need::Host,
        ("breakglass.v1.Identities", _) => Need::Admin,
        ("breakglass.v1.BreakGlass", "WhoAmI")
        | ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Need::Anyone,
        ("breakglass.v1.Revocations", "GetRevocationList" | "WatchRevocations") => {
            Need::HostOrAdmin
        }
        ("breakglass.v1.Audit", _) => Need::AuditReader,
        ("breakglass.v1.HostAgent", _) => Need::Host,
        _ => Need::Listed,
    }
}

/// The caller of an open call made without a client certificate (transport `tls`).
pub const ANONYMOUS: &str = "anonymous";

/// A refused call: who asked for what, and why.
#[derive(Debug)]
pub struct Refusal {
    /// The caller, when it could be identified.
    pub caller: Option<Caller>,
    /// The peer's address on the mTLS listener.
    pub peer: Option<SocketAddr>,
    /// The call (`/package.Service/Method`, cut to 200 characters).
    pub rpc: String,
    /// Why; its status is what the caller gets.
    pub error: Error,
}

/// The authorization rules of a configuration.
#[derive(Clone, Debug)]
pub struct Access {
    auth: Authenticator,
    reader_groups: Vec<String>,
    admin_groups: Vec<String>,
    /// Where refusals of unknown identities are recorded (the audit log, rate-limited).
    recorder: Option<Arc<crate::service::Service>>,
    /// The limit of the calls without a client certificate.
    open_calls: Arc<OpenCallLimit>,
}

impl Access {
    /// The rules of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            auth: Authenticator::from_config(config),
            reader_groups: config.audit.reader_groups.clone(),
            admin_groups: config.revocation.admin_groups.clone(),
            recorder: None,
            open_calls: Arc::new(OpenCallLimit {
                per_minute: config.server.open_calls_per_minute,
                windows: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same rules, recording refusals of unknown identities through `service`.
    #[must_use]
    pub fn recording(mut self, service: Arc<crate::service::Service>) -> Self {
        // The service's authenticator: the one a reload updates.
        self.auth = service.authenticator().clone();
        self.recorder = Some(service);
        self
    }

    /// Identifies the caller of a call to `path` and decides whether it may make it.
    pub fn check(&self, path: &str, extensions: &http::Extensions) -> Result<Caller, Box<Refusal>> {
        let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
        let peer = tls.and_then(|t| t.get_ref().remote_addr());
        let rpc: String = path.chars().take(MAX_RPC_LEN).collect();
        let refuse = |caller: Option<Caller>, error: Error| {
            Box::new(Refusal {
                caller,
                peer,
                rpc: rpc.clone(),
                error,
            })
        };
        let need = need(path);
        let identified = self.auth.identify(tls, extensions.get::<UdsConnectInfo>());
        if need == Need::Open {
            if let Some(peer) = peer {
                let minute = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() / 60);
                if !self.open_calls.admit(peer.ip(), minute) {
                    return Err(refuse(
                        None,
                        EnrollmentError::RateLimited {
                            peer: peer.ip().to_string(),
                            per_minute: self.open_calls.per_minute,
                        }
                        .into(),
                    ));
                }
            }
            return match identified {
                Ok(who) => Ok(who.caller),
                Err(Error::Unauthenticated(Unauthenticated::NoCertificate)) => Ok(Caller {
                    identity: ANONYMOUS.to_owned(),
                    groups: Vec::new(),
                    owner: None,
                    transport: "tls",
                    uid: None,
                    ssh_key_login: false,
                }),
                Err(e) => Err(refuse(None, e)),
            };
        }
        let who = identified.map_err(|e| refuse(None, e))?;
        match self.authorize(&who, need, &rpc) {
            Ok(()) => Ok(who.caller),
            Err(e) => Err(refuse(Some(who.caller), e)),
        }
    }

    /// Whether `who` may make a call that needs `need`.
    pub fn authorize(&self, who: &Identified, need: Need, rpc: &str) -> Result<(), Error> {
        let caller = &who.caller;
        if matches!(need, Need::Anyone | Need::Open) {
            return Ok(());
        }
        if !who.listed {
            return Err(Error::UnknownIdentity {
                identity: caller.identity.clone(),
                rpc: rpc.to_owned(),
            });
        }
        match need {
            Need::Anyone | Need::Listed | Need::Open => Ok(()),
            Need::Admin => {
                if self.is_admin(caller) {
                    Ok(())
                } else {
                    Err(EnrollmentError::NotAdmin {
                        identity: caller.identity.clone(),
                        what: "administer identities (join tokens, disabling)",
                        admin_groups: self.admin_groups.clone(),
                    }
                    .into())
                }
            }
            Need::Host => crate::hosts::host_name(caller).map(|_| ()),
            Need::HostOrAdmin => {
                if self.is_admin(caller) || crate::hosts::host_name(caller).is_ok() {
                    Ok(())
                } else {
                    Err(Error::NotHostOrAdmin {
                        identity: caller.identity.clone(),
                        rpc: rpc.to_owned(),
                        admin_groups: self.admin_groups.clone(),
                        groups: caller.groups.clone(),
                    })
                }
            }
            Need::AuditReader => {
                if caller.groups.iter().any(|g| self.reader_groups.contains(g)) {
                    Ok(())
                } else {
                    Err(Error::NotAuditReader {
                        identity: caller.identity.clone(),
                        reader_groups: self.reader_groups.clone(),
                    })
                }
            }
        }
    }

    /// An admin: a caller of the admin socket, or a member of `[revocation] admin_groups`.
    fn is_admin(&self, caller: &Caller) -> bool {
        caller.transport == "unix" || caller.groups.iter().any(|g| self.admin_groups.contains(g))
    }

    /// Answers a refused call: the one place every refusal of this layer passes, in an
    /// async context (so that it can also be recorded), before the status goes back.
    pub async fn refused(&self, r: Refusal) -> http::Response<tonic::body::Body> {
        let identity = r.caller.as_ref().map_or("-", |c| c.identity.as_str());
        let transport = r.caller.as_ref().map_or("-", |c| c.transport);
        tracing::warn!(
            identity,
            transport,
            peer = r.peer.map(|p| p.to_string()),
            rpc = %r.rpc,
            reason = %r.error,
            "call refused"
        );
        let error = match (&self.recorder, &r.caller, &r.error) {
            // An identity the configuration does not list is on the record (like every
            // refusal of the policy); the recorder rate-limits it per identity.
            (Some(service), Some(caller), Error::UnknownIdentity { .. }) => {
                let call = r.rpc.rsplit('/').next().unwrap_or(&r.rpc).to_owned();
                service
                    .refuse_action(
                        caller,
                        &call,
                        "",
                        breakglass_proto::audit::event::RefusalKind::UnknownIdentity,
                        r.error,
                    )
                    .await
            }
            _ => r.error,
        };
        tonic::Status::from(error).into_http()
    }
}

/// The tower layer that puts [`Access`] in front of a service.
#[derive(Clone, Debug)]
pub struct AccessLayer(Arc<Access>);

impl AccessLayer {
    /// The layer for the rules of `config`.
    pub fn new(config: &Config) -> Self {
        Self(Arc::new(Access::new(config)))
    }

    /// The layer for the rules of `config`, recording refusals of unknown identities
    /// in the audit log through `service`.
    pub fn recording(config: &Config, service: Arc<crate::service::Service>) -> Self {
        Self(Arc::new(Access::new(config).recording(service)))
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            access: self.0.clone(),
        }
    }
}

/// A service behind [`AccessLayer`]: reached only by calls [`Access`] lets through, with
/// the [`Caller`] in the request's extensions.
#[derive(Clone, Debug)]
pub struct AccessService<S> {
    inner: S,
    access: Arc<Access>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<http::Request<B>> for AccessService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone is not ready; call the instance that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let access = self.access.clone();
        Box::pin(async move {
            match access.check(req.uri().path(), req.extensions()) {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(refusal) => Ok(access.refused(*refusal).await),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_api_needs_what_the_table_says() {
        use breakglass_proto::v1::{
            audit_server, break_glass_server, host_agent_server, revocations_server,
        };
        let bg = break_glass_server::SERVICE_NAME;
        let rev = revocations_server::SERVICE_NAME;
        assert_eq!(need(&format!("/{bg}/WhoAmI")), Need::Anyone);
        assert_eq!(need(&format!("/{bg}/RequestCertificate")), Need::Listed);
        assert_eq!(need(&format!("/{bg}/GetCaPublicKeys")), Need::Listed);
        // Open to listed callers; the handler lists the caller's own grants only.
        assert_eq!(need(&format!("/{bg}/ListMyGrants")), Need::Listed);
        assert_eq!(need(&format!("/{rev}/Revoke")), Need::Listed);
        assert_eq!(
            need(&format!("/{rev}/GetRevocationList")),
            Need::HostOrAdmin
        );
        assert_eq!(need(&format!("/{rev}/WatchRevocations")), Need::HostOrAdmin);
        assert_eq!(
            need(&format!("/{}/GetCheckpoint", audit_server::SERVICE_NAME)),
            Need::AuditReader
        );
        assert_eq!(
            need(&format!(
                "/{}/AppendHostRecords",
                host_agent_server::SERVICE_NAME
            )),
            Need::Host
        );
        // Only the named enrollment calls are open; the rest of the service is not.
        assert_eq!(need("/breakglass.v1.Enrollment/GetTlsCa"), Need::Open);
        assert_eq!(need("/breakglass.v1.Enrollment/EnrollHost"), Need::Open);
        assert_eq!(need("/breakglass.v1.Enrollment/RenewHost"), Need::Host);
        assert_eq!(need("/breakglass.v1.Enrollment/Other"), Need::Listed);
        assert_eq!(
            need("/breakglass.v1.Identities/DisableIdentity"),
            Need::Admin
        );
        assert_eq!(
            need("/breakglass.v1.Identities/CreateJoinTokens"),
            Need::Admin
        );
        assert_eq!(need("/breakglass.v1.Enrollment/EnrollHost/"), Need::Listed);
        assert_eq!(need("/grpc.health.v1.Health/Check"), Need::Anyone);
        assert_eq!(
            need("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Need::Anyone
        );
        // Unknown and malformed paths: listed callers only (deny by default).
        for p in [
            "",
            "/",
            "WhoAmI",
            "/breakglass.v1.BreakGlass",
            "/x/y",
            "//WhoAmI",
            "/grpc.health.v1.Health/Check/../../breakglass.v1.Audit/GetEntries",
            "/breakglass.v1.BreakGlass/WhoAmI/",
        ] {
            assert_eq!(need(p), Need::Listed, "{p:?}");
        }
    }

    fn caller(identity: &str, groups: &[&str], transport: &'static str) -> Caller {
        Caller {
            identity: identity.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            owner: None,
            transport,
            uid: (transport == "unix").then_some(0),
            ssh_key_login: false,
        }
    }

    #[test]
    fn unlisted_callers_get_only_the_open_calls_and_are_told_how_to_get_listed() {
        let access = Access {
            auth: Authenticator::new(&[], &[]),
            reader_groups: vec!["auditors".into()],
            admin_groups: vec!["admins".into()],
            recorder: None,
            open_calls: Arc::new(OpenCallLimit {
                per_minute: 2,
                windows: Mutex::new(HashMap::new()),
            }),
        };
        let who = |c: Caller, listed| Identified { caller: c, listed };
        // An unlisted certificate that even claims the hosts group is unknown.
        let stranger = who(caller("host://db-9", &["hosts"], "mtls"), false);
        assert!(access.authorize(&stranger, Need::Anyone, "/w").is_ok());
        for need in [
            Need::Listed,
            Need::HostOrAdmin,
            Need::AuditReader,
            Need::Host,
        ] {
            let e = access.authorize(&stranger, need, "/x/Y").unwrap_err();
            assert!(matches!(e, Error::UnknownIdentity { .. }), "{need:?}: {e}");
            assert!(e.to_string().contains("[[identities]]"), "{e}");
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::PermissionDenied);
        }
        let sre = who(caller("sre@example.com", &["sre"], "mtls"), true);
        let host = who(caller("host://db-7", &["hosts"], "mtls"), true);
        let admin = who(caller("admin@example.com", &["admins"], "mtls"), true);
        let root = who(caller("unix:root", &[], "unix"), true);
        assert!(access.authorize(&sre, Need::Listed, "/x/Y").is_ok());
        let e = access
            .authorize(&sre, Need::HostOrAdmin, "/x/Y")
            .unwrap_err();
        assert!(matches!(e, Error::NotHostOrAdmin { .. }), "{e}");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.to_string().contains("for hosts"), "{e}");
        for ok in [&host, &admin, &root] {
            assert!(access.authorize(ok, Need::HostOrAdmin, "/x/Y").is_ok());
        }
        assert!(access.authorize(&admin, Need::Host, "/x/Y").is_err());
        assert!(access.authorize(&host, Need::Host, "/x/Y").is_ok());
        assert!(access.authorize(&sre, Need::AuditReader, "/x/Y").is_err());
        // Identities are administered by admins only.
        let e = access.authorize(&sre, Need::Admin, "/x/Y").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        assert!(e.to_string().contains("admin socket"), "{e}");
        assert!(access.authorize(&host, Need::Admin, "/x/Y").is_err());
        for ok in [&admin, &root] {
            assert!(access.authorize(ok, Need::Admin, "/x/Y").is_ok());
        }
        // Open calls are limited per peer address and minute.
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(access.open_calls.admit(a, 7));
        assert!(access.open_calls.admit(a, 7));
        assert!(!access.open_calls.admit(a, 7), "the third call in a minute");
        assert!(
            access.open_calls.admit(b, 7),
            "another address has its own count"
        );
        assert!(access.open_calls.admit(a, 8), "a new minute starts afresh");
        // An IPv6 host counts as its /64, whichever of its addresses it calls from.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(access.open_calls.admit(v6("2001:db8:1:2::1"), 9));
        assert!(access.open_calls.admit(v6("2001:db8:1:2::2"), 9));
        assert!(
            !access.open_calls.admit(v6("2001:db8:1:2:ffff::3"), 9),
            "a third address of the same /64"
        );
        assert!(access.open_calls.admit(v6("2001:db8:1:3::1"), 9));
        // IPv4-mapped IPv6 is the IPv4 address: its calls add to 192.0.2.1's one of minute 8.
        assert!(access.open_calls.admit(v6("::ffff:192.0.2.1"), 8));
        assert!(!access.open_calls.admit(v6("::ffff:192.0.2.1"), 8));
    }
}
