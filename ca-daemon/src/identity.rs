//! Who is calling: the SAN of the mTLS client certificate, or the Unix user
//! behind the admin socket (`SO_PEERCRED`). Never a field the caller fills in.
//!
//! [`Authenticator`] is the one place this is decided. The access layer
//! ([`crate::access`]) runs it in front of every call, and each API's tonic
//! interceptor runs it again (a second layer) before storing the [`Caller`] in
//! the request's extensions.
//!
//! The two kinds of callers never mix: certificate identities are looked up in
//! `[[identities]]` and then among the identities the audit log enrolled (hosts that
//! joined with a token, [`crate::enrollment`]), admin-socket users in `[[admin_users]]`.
//! A certificate identity the log disabled is refused on every call, whatever its
//! certificate says ([`Authenticator::follow_log`] keeps the table in step with the state). The `unix:`
//! namespace belongs to the admin socket: a certificate that claims it is refused
//! at the TLS handshake ([`crate::tls`]) and, should one get through, here.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use breakglass_proto::audit::fields::rfc3339;
use breakglass_proto::ssh_login::SSH_KEY_LOGIN_UNIT;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{AdminUser, Config, Identity, check_identity};
use crate::state::identities::Identities;

pub use crate::config::{ADMIN_SOCKET_NAMESPACE, is_admin_socket_identity};
use crate::error::{EnrollmentError, Error, Unauthenticated};
use crate::policy::Caller;

/// A caller and whether the configuration lists it.
#[derive(Clone, Debug)]
pub struct Identified {
    /// The caller.
    pub caller: Caller,
    /// Listed in `[[identities]]`, or a caller of the admin socket (which only local
    /// administrators can open). Unlisted callers may call nothing but `WhoAmI`.
    pub listed: bool,
}

/// Maps transport-level identities to [`Caller`]s using the configuration.
///
/// Clones share one table, which a reload replaces whole ([`Authenticator::replace`]):
/// each call is identified against one table.
#[derive(Clone, Debug)]
pub struct Authenticator {
    tables: Arc<ArcSwap<Tables>>,
    /// What the audit log says about identities, replaced whole after each change.
    from_log: Arc<ArcSwap<LogTable>>,
}

/// The identities of the audit log, as callers are identified by them.
#[derive(Debug, Default)]
struct LogTable {
    /// Enrolled identities and their groups.
    enrolled: HashMap<String, Vec<String>>,
    /// Disabled identities and the refusal their calls get.
    disabled: HashMap<String, (String, String, String)>,
}

#[derive(Debug)]
struct Tables {
    /// `[[identities]]` by id.
    certificates: HashMap<String, Identity>,
    /// `[[admin_users]]` by `unix:<user>`.
    admin_users: HashMap<String, AdminUser>,
}

impl Tables {
    fn new(identities: &[Identity], admin_users: &[AdminUser]) -> Self {
        Self {
            certificates: identities
                .iter()
                .map(|i| (i.id.clone(), i.clone()))
                .collect(),
            admin_users: admin_users
                .iter()
                .map(|u| (format!("{ADMIN_SOCKET_NAMESPACE}{}", u.user), u.clone()))
                .collect(),
        }
    }
}

impl Authenticator {
    /// Builds the authenticator from the configured identities and admin-socket users.
    pub fn new(identities: &[Identity], admin_users: &[AdminUser]) -> Self {
        Self {
            tables: Arc::new(ArcSwap::from_pointee(Tables::new(identities, admin_users))),
            from_log: Arc::new(ArcSwap::from_pointee(LogTable::default())),
        }
    }

    /// Puts what the log says about identities (enrolled, disabled) in force, for this
    /// authenticator and its clones: called with the state after each identity event.
    pub fn follow_log(&self, ids: &Identities) {
        self.from_log.store(Arc::new(LogTable {
            enrolled: ids
                .enrolled
                .iter()
                .map(|(id, e)| (id.clone(), e.groups.clone()))
                .collect(),
            disabled: ids
                .disabled
                .iter()
                .map(|(id, d)| {
                    let at = rfc3339(d.at.unix_seconds());
                    (id.clone(), (d.by.to_string(), at, d.reason.clone()))
                })
                .collect(),
        }));
    }

    /// Puts the identities and admin-socket users of a reloaded configuration in force,
    /// for this authenticator and its clones; calls under way keep the table they read.
    pub fn replace(&self, config: &Config) {
        self.tables.store(Arc::new(Tables::new(
            &config.identities,
            &config.admin_users,
        )));
    }

    /// The groups of a certificate identity, as its calls get them: from
    /// `[[identities]]`, else from its latest client certificate in the log; `None` when
    /// neither knows it.
    pub fn groups_of(&self, identity: &str) -> Option<Vec<String>> {
        self.tables
            .load()
            .certificates
            .get(identity)
            .map(|k| k.groups.clone())
            .or_else(|| self.from_log.load().enrolled.get(identity).cloned())
    }

    /// The `[[identities]]` entry whose `ssh_keys` list `key`, if any.
    pub fn configured_key_owner(&self, key: &ssh_key::public::KeyData) -> Option<String> {
        self.tables
            .load()
            .certificates
            .values()
            .find(|i| i.ssh_keys.iter().any(|k| k.key_data() == key))
            .map(|i| i.id.clone())
    }

    /// Whether any `[[identities]]` entry lists an SSH key.
    pub fn any_configured_key(&self) -> bool {
        self.tables
            .load()
            .certificates
            .values()
            .any(|i| !i.ssh_keys.is_empty())
    }

    /// The authenticator of a configuration.
    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.identities, &config.admin_users)
    }

    /// The tonic interceptor: identifies the caller or refuses the call.
    #[allow(clippy::result_large_err)]
    pub fn intercept(
        &self,
        mut req: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let ext = req.extensions();
        let who = self.identify(
            ext.get::<TlsConnectInfo<TcpConnectInfo>>(),
            ext.get::<UdsConnectInfo>(),
        )?;
        req.extensions_mut().insert(who.caller);
        Ok(req)
    }

    /// Identifies the caller of a connection from what the transport proved: the mTLS
    /// client certificate or the admin socket's peer credentials.
    pub fn identify(
        &self,
        tls: Option<&TlsConnectInfo<TcpConnectInfo>>,
        uds: Option<&UdsConnectInfo>,
    ) -> Result<Identified, Error> {
        if let Some(tls) = tls {
            let certs = tls.peer_certs().ok_or(Unauthenticated::NoCertificate)?;
            let leaf = certs.first().ok_or(Unauthenticated::NoCertificate)?;
            let (identity, ssh_key_login) = certificate_identity(leaf.as_ref())?;
            if is_admin_socket_identity(&identity) {
                // The TLS verifier refuses these at the handshake; this is the second layer.
                return Err(reserved(identity).into());
            }
            let from_log = self.from_log.load();
            if let Some((by, at, reason)) = from_log.disabled.get(&identity) {
                return Err(EnrollmentError::Disabled {
                    identity,
                    by: by.clone(),
                    at: at.clone(),
                    reason: reason.clone(),
                }
                .into());
            }
            let tables = self.tables.load();
            let known = tables.certificates.get(&identity);
            // The configuration first; then the identities the log enrolled.
            let groups = known
                .map(|k| k.groups.clone())
                .or_else(|| from_log.enrolled.get(&identity).cloned());
            Ok(Identified {
                listed: groups.is_some(),
                caller: Caller {
                    groups: groups.unwrap_or_default(),
                    owner: known.and_then(|k| k.owner.clone()),
                    identity,
                    transport: "mtls",
                    uid: None,
                    ssh_key_login,
                },
            })
        } else if let Some(uds) = uds {
            let cred = uds.peer_cred.ok_or(Unauthenticated::NoPeerCredentials)?;
            let identity = unix_identity(cred.uid());
            let groups = self
                .tables
                .load()
                .admin_users
                .get(&identity)
                .map(|u| u.groups.clone())
                .unwrap_or_default();
            Ok(Identified {
                listed: true,
                caller: Caller {
                    identity,
                    groups,
                    owner: None,
                    transport: "unix",
                    uid: Some(cred.uid()),
                    ssh_key_login: false,
                },
            })
        } else {
            Err(Unauthenticated::NoTransport.into())
        }
    }
}

/// The refusal of a certificate identity in the `unix:` namespace.
fn reserved(identity: String) -> Unauthenticated {
    Unauthenticated::ReservedNamespace {
        identity,
        namespace: ADMIN_SOCKET_NAMESPACE,
    }
}

/// Why a certificate identity in the `unix:` namespace is refused.
pub fn reserved_namespace(identity: &str) -> String {
    reserved(identity.to_owned()).to_string()
}

/// The caller identity of a DER client certificate: its first URI SAN, or
/// else its first e-mail SAN. The common name is never used.
pub fn identity_from_certificate(der: &[u8]) -> Result<String, Error> {
    certificate_identity(der).map(|(id, _)| id)
}

/// The caller identity of a DER client certificate ([`identity_from_certificate`]), and
/// whether the daemon's client CA marked it as got by a login with an SSH key (its
/// subject's OU is [`SSH_KEY_LOGIN_UNIT`]; only the CA writes the subject, a CSR's is
/// ignored).
pub fn certificate_identity(der: &[u8]) -> Result<(String, bool), Error> {
    // Every call of a connection presents the same certificate, identified twice (access
    // layer and interceptor): parsing it each time was ~6 % of the CPU per certificate.
    // The answer depends on the bytes alone; kept by the whole DER, bounded.
    static SEEN: std::sync::LazyLock<std::sync::Mutex<ParsedCertificates>> =
        std::sync::LazyLock::new(Default::default);
    let lock = || SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = lock().get(der) {
        return Ok(known.clone());
    }
    let parsed = parse_certificate_identity(der)?;
    let mut seen = lock();
    if seen.len() >= MAX_IDENTIFIED_CERTIFICATES {
        seen.clear();
    }
    seen.insert(der.into(), parsed.clone());
    Ok(parsed)
}

/// Client certificates (DER) and their identities, as [`certificate_identity`] parsed them.
type ParsedCertificates = HashMap<Box<[u8]>, (String, bool)>;

/// Most client certificates [`certificate_identity`] keeps parsed; when full, it starts
/// over (each entry is one certificate's DER, ~1 KB, and its identity).
const MAX_IDENTIFIED_CERTIFICATES: usize = 4096;

/// [`certificate_identity`], parsed.
fn parse_certificate_identity(der: &[u8]) -> Result<(String, bool), Error> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Unauthenticated::CertificateUnparsable(e.to_string()))?;
    let ssh_key_login = cert
        .subject()
        .iter_organizational_unit()
        .any(|ou| ou.as_str().is_ok_and(|v| v == SSH_KEY_LOGIN_UNIT));
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Unauthenticated::SanMalformed(e.to_string()))?;
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
        .ok_or(Unauthenticated::NoSan)?;
    check_identity(&pick).map_err(Unauthenticated::BadIdentity)?;
    Ok((pick, ssh_key_login))
}

/// `unix:<user name>` for a local uid (or `unix:uid=<n>` when it has no name).
pub fn unix_identity(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{ADMIN_SOCKET_NAMESPACE}{}", u.name),
        _ => format!("{ADMIN_SOCKET_NAMESPACE}uid={uid}"),
    }
}

/// Reads the caller the interceptor stored.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Error> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Internal("call reached a handler without authentication".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unix_namespace_is_recognised_in_any_letter_case() {
        for id in ["unix:root", "UNIX:root", "Unix:uid=0", "unix:"] {
            assert!(is_admin_socket_identity(id), "{id}");
        }
        for id in [
            "unixroot",
            "unix",
            "host://unix:root",
            "sre@example.com",
            "spiffe://x/unix:",
            "üñîx:root",
        ] {
            assert!(!is_admin_socket_identity(id), "{id}");
        }
    }
}
