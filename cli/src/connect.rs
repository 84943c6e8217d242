//! Opens a gRPC channel to the daemon (mTLS over TCP, or the local admin socket), and
//! turns the answers of its calls into results ([`Answer`]). A call that fails for want of
//! a connection is explained from the connection's own settings, in one place
//! ([`failure`]): an unknown issuer names `--ca-cert`, a name mismatch `--server-name`, a
//! refused connection the address, a refused client certificate the file and its expiry;
//! a certificate and key that do not match are caught before anything is sent.
#![forbid(unsafe_code)]

use std::time::Duration;

use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::CliError;
use crate::settings::Target;

mod failover;
pub use failover::Channel;

/// The process-wide rustls crypto provider (ring). Call once at start-up.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{what} {}: {e}", path.display())))
}

/// Connects lazily (the first call dials) so that connection errors carry the call's context.
pub fn channel(target: &Target) -> Result<Channel, CliError> {
    install_crypto_provider();
    match target {
        Target::Unix(path) => {
            let url = format!("unix://{}", path.display());
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|e| CliError::Usage(format!("socket path {url}: {e}")))?;
            let ch = ep.connect_timeout(Duration::from_secs(5)).connect_lazy();
            Ok(Channel::new(vec![(url, ch)]))
        }
        Target::Tls {
            url,
            fallbacks,
            ca_cert,
            cert,
            key,
            server_name,
        } => {
            // A host renewal a crash interrupted is finished before the pair is read (best
            // effort: who cannot write the files gets the mismatch explained below).
            let _ = crate::renewal::finish(cert, key);
            let (cert_pem, key_pem) = (read(cert, "client certificate")?, read(key, "client key")?);
            check_identity(cert, &cert_pem, key, &key_pem)?;
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca_cert, "CA certificate")?))
                .identity(Identity::from_pem(cert_pem, key_pem));
            if let Some(n) = server_name {
                tls = tls.domain_name(n.clone());
            }
            let mut servers = Vec::with_capacity(1 + fallbacks.len());
            for url in std::iter::once(url).chain(fallbacks) {
                let ep = Endpoint::from_shared(url.clone())
                    .map_err(|e| CliError::Usage(format!("server {url}: {e}")))?
                    .tls_config(tls.clone())
                    .map_err(|e| CliError::Usage(format!("TLS settings: {e}")))?
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(60));
                servers.push((url.clone(), ep.connect_lazy()));
            }
            Ok(Channel::new(servers))
        }
    }
}

/// A BreakGlass API client.
pub fn client(target: &Target) -> Result<BreakGlassClient<Channel>, CliError> {
    Ok(BreakGlassClient::new(channel(target)?))
}

/// The message of a unary gRPC call, or its failure explained ([`CliError::from_status`]).
pub trait Answer<T> {
    /// `client.who_am_i(req).await.answer(target)?`
    fn answer(self, target: &Target) -> Result<T, CliError>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self, target: &Target) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| failure(target, s))
    }
}

/// The failure of a call to the daemon at `target`, explained: the daemon's own answer as
/// [`CliError::from_status`] reads it, a transport failure from what the connection's
/// settings and files say (what to pass or fix, with its exit status).
pub fn failure(target: &Target, s: tonic::Status) -> CliError {
    if CliError::is_transport(&s)
        && let Some(e) = explain(target, &s)
    {
        return e;
    }
    CliError::from_status(s, &target.shown())
}

/// Refuses a client certificate and key that do not belong together, naming both files,
/// before anything is sent (the TLS library would only say "inconsistent keys").
fn check_identity(
    cert: &std::path::Path,
    cert_pem: &[u8],
    key: &std::path::Path,
    key_pem: &[u8],
) -> Result<(), CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            CliError::Config(format!(
                "client certificate {}: no PEM certificate in it; pass your client \
                 certificate (-----BEGIN CERTIFICATE-----) with --cert",
                cert.display()
            ))
        })?;
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        CliError::Config(format!(
            "client key {}: no PEM private key in it ({e}); pass the private key of your \
             client certificate with --key",
            key.display()
        ))
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| CliError::Config(format!("client key {}: {e}", key.display())))?;
    match rustls::sign::CertifiedKey::new(chain, signer).keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CliError::Config(format!(
                "client certificate {} and client key {} do not match: the key is not the \
                 private key of the certificate; pass the key the certificate was issued for \
                 (--key), or the certificate of this key (--cert)",
                cert.display(),
                key.display()
            )))
        }
        // A key type whose public half rustls cannot derive: the handshake will tell.
        _ => Ok(()),
    }
}

/// What the transport said, from the status's chain of causes.
enum Cause {
    /// Nothing accepts connections at the address.
    Refused,
    /// No admin socket at the path.
    NoSocket,
    /// The TLS library's verdict.
    Tls(rustls::Error),
}

fn cause(s: &tonic::Status) -> Option<Cause> {
    use std::error::Error;
    let mut cur: Option<&(dyn Error + 'static)> = s.source();
    // Bounded: a chain of causes is a few links long.
    for _ in 0..32 {
        let e = cur?;
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(Cause::Tls(t.clone()));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // `io::Error::source` skips the error it wraps: look at it here.
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(Cause::Tls(t.clone()));
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(Cause::Refused),
                std::io::ErrorKind::NotFound => return Some(Cause::NoSocket),
                _ => {}
            }
        }
        cur = e.source();
    }
    None
}

/// A transport failure explained from `target`'s settings and files, when they say
/// what is wrong; `None` leaves it to the general explanation.
fn explain(target: &Target, s: &tonic::Status) -> Option<CliError> {
    use rustls::{AlertDescription as Alert, CertificateError as Bad};
    let shown = target.shown();
    let (cause, tls) = (
        cause(s),
        match target {
            Target::Tls {
                url,
                ca_cert,
                cert,
                key,
                server_name,
                ..
            } => Some((url, ca_cert, cert, key, server_name)),
            Target::Unix(_) => None,
        },
    );
    // An expired client certificate explains a refusal whatever the daemon sent (but not
    // a failure before the daemon saw it: nothing listening, or its certificate refused).
    if let Some((_, _, cert, _, _)) = tls
        && !matches!(
            cause,
            Some(Cause::Refused | Cause::Tls(rustls::Error::InvalidCertificate(_)))
        )
        && let Some(e) = expired_client_certificate(cert)
    {
        return Some(e);
    }
    // A client certificate refused after the handshake (TLS 1.3) reaches gRPC only as a
    // closed connection: dial once more, without gRPC, to hear the daemon's alert.
    let cause = match (cause, tls) {
        (None, Some((url, ca_cert, cert, key, name))) => {
            probe_alert(url, ca_cert, cert, key, name.as_deref()).map(Cause::Tls)
        }
        (cause, _) => cause,
    };
    match (cause?, tls) {
        (Cause::Refused, _) => Some(CliError::Unavailable(format!(
            "cannot talk to breakglass-ca at {shown}: connection refused: nothing accepts \
             connections there. Is breakglass-ca running (`breakglass-ca serve --config \
             FILE`), and is this its address ([server] {} in its config)? Pass the right one \
             with --server (or BREAKGLASS_SERVER, or server in the client config)",
            if tls.is_some() {
                "listen"
            } else {
                "admin_socket"
            }
        ))),
        (Cause::NoSocket, None) => Some(CliError::Unavailable(format!(
            "cannot talk to breakglass-ca at {shown}: there is no socket there. Is \
             breakglass-ca running on this machine, with [server] admin_socket at this path? \
             Pass the right one with --server unix:///PATH"
        ))),
        (Cause::Tls(rustls::Error::InvalidCertificate(bad)), Some((url, ca_cert, _, _, name))) => {
            match bad {
                Bad::UnknownIssuer | Bad::BadSignature => Some(CliError::Config(format!(
                    "the certificate breakglass-ca presented at {url} is not signed by the CA \
                     in --ca-cert {} (unknown issuer): pass the CA certificate that signed the \
                     daemon's TLS certificate (its [server] tls_cert; in a dev set-up \
                     tls/ca.pem) with --ca-cert, BREAKGLASS_CA_CERT or ca_cert in the client \
                     config",
                    ca_cert.display()
                ))),
                Bad::NotValidForName | Bad::NotValidForNameContext { .. } => {
                    let presented = match &bad {
                        Bad::NotValidForNameContext { presented, .. } => format!(
                            " (it names {})",
                            presented
                                .iter()
                                .map(|n| bare_name(n))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        _ => String::new(),
                    };
                    let asked = name.clone().unwrap_or_else(|| host_of(url));
                    Some(CliError::Config(format!(
                        "the certificate breakglass-ca presented at {url} is not valid for the \
                         name {asked}{presented}: pass --server-name with a name it carries \
                         (or BREAKGLASS_SERVER_NAME, or server_name in the client config), or \
                         reach the daemon by that name in --server"
                    )))
                }
                Bad::Expired | Bad::ExpiredContext { .. } => Some(CliError::Unavailable(format!(
                    "the certificate breakglass-ca presented at {url} has expired: its \
                     operators must renew the daemon's TLS certificate ([server] tls_cert)"
                ))),
                _ => None,
            }
        }
        (Cause::Tls(rustls::Error::AlertReceived(alert)), Some((url, _, cert, _, _))) => {
            match alert {
                Alert::CertificateExpired => Some(CliError::Permission(format!(
                    "breakglass-ca at {url} refused your client certificate {} as expired (by \
                     its clock): {}",
                    cert.display(),
                    RENEW
                ))),
                Alert::UnknownCA => Some(CliError::Permission(format!(
                    "breakglass-ca at {url} refused your client certificate {}{}: it is not \
                     signed by a CA the daemon trusts; it accepts only certificates from the CA \
                     of its [server] client_ca: pass one of those with --cert and its key with \
                     --key",
                    cert.display(),
                    issuer_of(cert)
                        .map(|i| format!(" (issued by {i})"))
                        .unwrap_or_default()
                ))),
                Alert::BadCertificate
                | Alert::CertificateUnknown
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::AccessDenied
                | Alert::CertificateRequired => Some(CliError::Permission(format!(
                    "breakglass-ca at {url} refused your client certificate {} ({alert:?}): its \
                     log says why (e.g. an identity in the unix: namespace of the admin socket, \
                     no URI or e-mail SAN, not for client authentication); pass a client \
                     certificate the daemon accepts with --cert and its key with --key",
                    cert.display()
                ))),
                _ => None,
            }
        }
        _ => None,
    }
}

/// How to get a new client certificate.
const RENEW: &str = "get a new client certificate from the CA that issues them (the one \
                     the daemon's [server] client_ca names; in a dev set-up, run \
                     `breakglass-ca init` again) and pass it with --cert and its key with --key";

/// The host of an `https://HOST:PORT` URL (what rustls checks when no name is given).
fn host_of(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6).to_owned(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned(),
    }
}

/// The first certificate of a PEM file, parsed, when it is one.
fn with_certificate<T>(
    path: &std::path::Path,
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> T,
) -> Option<T> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).ok()?;
    let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(f(&cert))
}

fn issuer_of(path: &std::path::Path) -> Option<String> {
    with_certificate(path, |c| c.issuer().to_string())
}

/// The client certificate at `path` has expired (by this machine's clock): the error
/// that says so and how to renew it.
fn expired_client_certificate(path: &std::path::Path) -> Option<CliError> {
    let not_after = with_certificate(path, |c| c.validity().not_after.timestamp())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    (not_after < now).then(|| {
        let at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64),
        );
        CliError::Permission(format!(
            "your client certificate {} expired at {at}, so breakglass-ca refuses it: {RENEW}",
            path.display()
        ))
    })
}

/// A name as rustls presents it (`DnsName("localhost")`, `IpAddress(127.0.0.1)`), bare.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

/// Dials `url` with the same TLS settings, outside gRPC and with bounded waits, and
/// returns the TLS error the daemon's side produced (its alert), if any.
fn probe_alert(
    url: &str,
    ca_cert: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    server_name: Option<&str>,
) -> Option<rustls::Error> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_cert).ok()? {
        roots.add(c.ok()?).ok()?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(key).ok()?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    let host = host_of(url);
    let name = ServerName::try_from(server_name.unwrap_or(&host).to_owned()).ok()?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let authority = url.strip_prefix("https://")?.split('/').next()?;
    let addr = authority.to_socket_addrs().ok()?.next()?;
    let wait = Duration::from_secs(5);
    let mut sock = std::net::TcpStream::connect_timeout(&addr, wait).ok()?;
    sock.set_read_timeout(Some(wait)).ok()?;
    sock.set_write_timeout(Some(wait)).ok()?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    // The HTTP/2 preface: the daemon reads it only after it has accepted the certificate.
    let sent = tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .and_then(|()| tls.flush());
    let mut buf = [0u8; 64];
    let err = match sent {
        Err(e) => e,
        Ok(()) => tls.read(&mut buf).err()?,
    };
    err.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_a_url_is_what_tls_checks() {
        assert_eq!(host_of("https://ca.example:4443"), "ca.example");
        assert_eq!(host_of("https://127.0.0.1:4443/"), "127.0.0.1");
        assert_eq!(host_of("https://[::1]:4443"), "::1");
        assert_eq!(host_of("https://ca.example"), "ca.example");
    }

    #[test]
    fn presented_names_are_shown_bare() {
        assert_eq!(bare_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("plain"), "plain");
    }

    #[test]
    fn a_status_without_a_cause_is_left_to_the_general_explanation() {
        let t = Target::Unix("/nonexistent/admin.sock".into());
        let e = failure(&t, tonic::Status::not_found("no request r-1"));
        assert_eq!(e.exit_code(), 66, "{e}");
    }
}
