//! Who is calling: the SAN of the mTLS client certificate, or the Unix user
//! behind the admin socket (`SO_PEERCRED`). Never a field the caller fills in.
//!
//! [`Authenticator`] is the one place this is decided; it runs as a tonic
//! interceptor in front of every handler and stores a [`Caller`] in the
//! request's extensions.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{Identity, check_identity};
use crate::error::Error;
use crate::policy::Caller;

/// Maps transport-level identities to [`Caller`]s using the configured identities.
#[derive(Clone, Debug)]
pub struct Authenticator {
    known: Arc<HashMap<String, Identity>>,
}

impl Authenticator {
    /// Builds the authenticator from the configured identities.
    pub fn new(identities: &[Identity]) -> Self {
        Self {
            known: Arc::new(
                identities
                    .iter()
                    .map(|i| (i.id.clone(), i.clone()))
                    .collect(),
            ),
        }
    }

    /// The tonic interceptor: identifies the caller or refuses the call.
    #[allow(clippy::result_large_err)]
    pub fn intercept(
        &self,
        mut req: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let caller = self.identify(&req)?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }

    fn identify<T>(&self, req: &tonic::Request<T>) -> Result<Caller, Error> {
        let ext = req.extensions();
        let (identity, transport, uid) =
            if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
                let certs = tls.peer_certs().ok_or_else(|| {
                    Error::Unauthenticated("no client certificate was presented".into())
                })?;
                let leaf = certs.first().ok_or_else(|| {
                    Error::Unauthenticated("no client certificate was presented".into())
                })?;
                (identity_from_certificate(leaf.as_ref())?, "mtls", None)
            } else if let Some(uds) = ext.get::<UdsConnectInfo>() {
                let cred = uds.peer_cred.ok_or_else(|| {
                    Error::Unauthenticated(
                        "the admin socket could not read the peer's credentials".into(),
                    )
                })?;
                (unix_identity(cred.uid()), "unix", Some(cred.uid()))
            } else {
                return Err(Error::Unauthenticated(
                    "connection is neither mTLS nor the local admin socket".into(),
                ));
            };
        let known = self.known.get(&identity);
        Ok(Caller {
            groups: known.map(|k| k.groups.clone()).unwrap_or_default(),
            owner: known.and_then(|k| k.owner.clone()),
            identity,
            transport,
            uid,
        })
    }
}

/// The caller identity of a DER client certificate: its first URI SAN, or
/// else its first e-mail SAN. The common name is never used.
pub fn identity_from_certificate(der: &[u8]) -> Result<String, Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::Unauthenticated(format!("client certificate does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Unauthenticated(format!("client certificate SAN is malformed: {e}")))?;
    let names = san
        .map(|s| s.value.general_names.clone())
        .unwrap_or_default();
    let pick = names
        .iter()
        .find_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .or_else(|| {
            names.iter().find_map(|n| match n {
                GeneralName::RFC822Name(m) => Some(m.to_string()),
                _ => None,
            })
        })
        .ok_or_else(|| {
            Error::Unauthenticated(
                "client certificate has no URI or e-mail SAN to identify you by".into(),
            )
        })?;
    check_identity(&pick).map_err(Error::Unauthenticated)?;
    Ok(pick)
}

/// `unix:<user name>` for a local uid (or `unix:uid=<n>` when it has no name).
pub fn unix_identity(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("unix:{}", u.name),
        _ => format!("unix:uid={uid}"),
    }
}

/// Reads the caller the interceptor stored.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Error> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Internal("call reached a handler without authentication".into()))
}
