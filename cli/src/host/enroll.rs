//! `breakglass host enroll` and `breakglass host renew`: a host gets its `host://NAME`
//! client certificate itself, with a one-time join token, and renews it with the current
//! one before it expires.
//!
//! Enrollment, in order:
//! 1. first contact: fetch the daemon's TLS CA (`Enrollment/GetTlsCa`, no client
//!    certificate, the server not verified yet: nothing secret is sent or believed) and
//!    compare its SHA-256 with `--ca-fingerprint`; a mismatch stops here, before the token
//!    has been sent anywhere;
//! 2. a new key pair made here (mode 0600; it never leaves the host) and a CSR signed by it;
//! 3. a second connection that verifies the daemon against the pinned CA, and only over it
//!    the token and the CSR (`Enrollment/EnrollHost`);
//! 4. the files: `host.toml` (a client config), the key, the certificate, the pinned TLS CA,
//!    the audit log's key, the trusted SSH CA keys; then the first KRL (`host sync-krl`,
//!    which also witnesses the log for the first time).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::enrollment::{ca_fingerprint, parse_fingerprint};
use breakglass_proto::v1::enrollment_client::EnrollmentClient;
use breakglass_proto::v1::{
    EnrollHostRequest, GetTlsCaRequest, GetTlsCaResponse, HostCertificateResponse, RenewHostRequest,
};
use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::commands::write_atomic;
use crate::connect::Answer;
use crate::error::CliError;
use crate::renewal;
use crate::settings::{Overrides, Target, read_client_file};

/// Where the host's files go unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "/etc/breakglass";
/// The client config enrollment writes, in the directory.
pub const HOST_CONFIG: &str = "host.toml";
const KEY_FILE: &str = "host.key";
const CERT_FILE: &str = "host.crt";
const TLS_CA_FILE: &str = "ca.crt";
const LOG_KEY_FILE: &str = "log.pub";

/// `breakglass host enroll`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "The daemon's address is the global --server https://HOST:PORT; \
    --server-name names the host to verify in its certificate when it is not the host of \
    --server. An administrator makes the token on the CA with `breakglass-ca token create \
    --host NAME`, which also prints the fingerprint. Run as root; then `breakglass --config \
    /etc/breakglass/host.toml host doctor`, and enable breakglass-renew.timer."
)]
pub struct EnrollArgs {
    /// The one-time join token from `breakglass-ca token create`
    #[arg(
        long,
        env = "BREAKGLASS_JOIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: String,
    /// SHA-256 fingerprint of the daemon's TLS CA (SHA256:<base64>, as `token create`
    /// prints it): checked on first contact, before the token is sent
    #[arg(long, value_name = "SHA256:...")]
    pub ca_fingerprint: String,
    /// Directory of the host's files: host.toml, host.key (0600), host.crt, ca.crt, log.pub
    #[arg(long, env = "BREAKGLASS_HOST_DIR", value_name = "DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Where to write the SSH CA keys sshd and the PAM module trust (TrustedUserCAKeys)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssh/breakglass_user_ca.pub"
    )]
    pub ca_keys: PathBuf,
    /// Where to install the first KRL (sshd's RevokedKeys)
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssh/breakglass_revoked.krl"
    )]
    pub krl: PathBuf,
    /// The witness state file named in host.toml (the latest checkpoint of the CA's log
    /// this host verified)
    #[arg(long, value_name = "FILE", default_value = crate::host::witness::DEFAULT_STATE)]
    pub witness_state: PathBuf,
}

/// `breakglass host renew`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Connects with the current certificate (the client config, e.g. \
    --config /etc/breakglass/host.toml), makes a new key, and replaces the key and the \
    certificate the config names. breakglass-renew.timer runs it daily."
)]
pub struct RenewArgs {
    /// Renew even when more than a third of the certificate's lifetime is left
    #[arg(long)]
    pub force: bool,
}

/// What enrollment did.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The identity the certificate names.
    pub identity: String,
    /// The client config written.
    pub config: PathBuf,
    /// When the certificate expires (Unix seconds).
    pub not_after: i64,
}

/// Refuses anything but `https://HOST:PORT`; returns the host and the address.
fn server_of(url: &str) -> Result<(String, String), CliError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        CliError::Usage(format!(
            "--server {url:?}: enrollment needs the daemon's TLS address, https://HOST:PORT"
        ))
    })?;
    let authority = rest.trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => {
            return Err(CliError::Usage(format!(
                "--server {url:?}: give the port too, https://HOST:PORT"
            )));
        }
    };
    Ok((host.to_owned(), authority.to_owned()))
}

/// A verifier that accepts any server certificate. Used only for the first contact, to
/// fetch the daemon's TLS CA, whose fingerprint is then checked against the one given;
/// nothing secret is sent over that connection.
#[derive(Debug)]
struct DangerUnverifiedFirstContact(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for DangerUnverifiedFirstContact {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// First contact: the daemon's TLS CA, over a connection that verifies nothing.
pub async fn fetch_tls_ca(
    url: &str,
    server_name: Option<&str>,
) -> Result<GetTlsCaResponse, CliError> {
    let (host, authority) = server_of(url)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerUnverifiedFirstContact(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name = ServerName::try_from(server_name.unwrap_or(&host).to_owned())
        .map_err(|e| CliError::Usage(format!("server name {host:?}: {e}")))?;
    let addr = authority.clone();
    let channel = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| CliError::Usage(format!("--server {url}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, name, addr) = (connector.clone(), name.clone(), addr.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| CliError::Unavailable(format!("cannot reach the daemon at {url}: {e}")))?;
    EnrollmentClient::new(channel)
        .get_tls_ca(GetTlsCaRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| CliError::from_status(s, url))
}

/// Checks the fetched CA against the fingerprint given; returns its PEM.
pub fn pin(fetched: &GetTlsCaResponse, expected: &str) -> Result<String, CliError> {
    let expected = parse_fingerprint(expected).map_err(CliError::Usage)?;
    let first = rustls_first_cert(&fetched.ca_pem).ok_or_else(|| {
        CliError::Verification("the daemon sent no CA certificate on first contact".into())
    })?;
    let got = ca_fingerprint(first.as_ref());
    if got != expected {
        return Err(CliError::Verification(format!(
            "the daemon's TLS CA has fingerprint {got}, not {expected} (--ca-fingerprint): this \
             is not the CA the administrator named, or something is in between; nothing was sent. \
             Check the fingerprint `breakglass-ca token create` printed"
        )));
    }
    Ok(fetched.ca_pem.clone())
}

fn rustls_first_cert(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

/// A channel that verifies the daemon against `ca_pem`, without a client certificate.
pub fn pinned_channel(
    url: &str,
    ca_pem: &str,
    server_name: Option<&str>,
) -> Result<Channel, CliError> {
    crate::connect::install_crypto_provider();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(n) = server_name {
        tls = tls.domain_name(n.to_owned());
    }
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| CliError::Usage(format!("--server {url}: {e}")))?
        .tls_config(tls)
        .map_err(|e| CliError::Usage(format!("TLS settings: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect_lazy())
}

/// A new key pair and a CSR signed by it: (key PEM, CSR DER). Hosts and `breakglass login`.
pub fn new_key_and_csr() -> Result<(String, Vec<u8>), CliError> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| CliError::Io(format!("generating the host key: {e}")))?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .map_err(|e| CliError::Io(format!("making the certificate signing request: {e}")))?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// `breakglass host enroll`.
pub async fn enroll(args: &EnrollArgs, overrides: &Overrides) -> Result<Enrolled, CliError> {
    let url = overrides.server.clone().ok_or_else(|| {
        CliError::Usage(
            "give the daemon's address: breakglass host enroll --server https://HOST:PORT ..."
                .into(),
        )
    })?;
    let server_name = overrides.server_name.as_deref();
    // Refuse a malformed fingerprint before any contact.
    parse_fingerprint(&args.ca_fingerprint).map_err(CliError::Usage)?;
    let fetched = fetch_tls_ca(&url, server_name).await?;
    let ca_pem = pin(&fetched, &args.ca_fingerprint)?;
    let (key_pem, csr_der) = new_key_and_csr()?;
    let mut client = EnrollmentClient::new(pinned_channel(&url, &ca_pem, server_name)?);
    let answer = client
        .enroll_host(EnrollHostRequest {
            token: args.token.trim().to_owned(),
            csr_der,
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| CliError::from_status(s, &url))?;
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Io(format!("creating {}: {e}", dir.display())))?;
    write_atomic(&dir.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_answer(dir, &answer)?;
    let mut toml = format!(
        "# breakglass host settings, written by `breakglass host enroll` for {identity}.\n\
         # Relative paths are relative to this file. `breakglass host renew` replaces the\n\
         # key and the certificate before the certificate expires.\n\
         server = {server}\n\
         ca_cert = \"{TLS_CA_FILE}\"\n\
         cert = \"{CERT_FILE}\"\n\
         key = \"{KEY_FILE}\"\n\
         audit_key = \"{LOG_KEY_FILE}\"\n\
         witness_state = {witness}\n",
        identity = answer.identity,
        server = toml_string(&url),
        witness = toml_string(&args.witness_state.display().to_string()),
    );
    if let Some(n) = server_name {
        toml.push_str(&format!("server_name = {}\n", toml_string(n)));
    }
    let config = dir.join(HOST_CONFIG);
    write_atomic(&config, toml.as_bytes(), 0o644)?;
    write_atomic(
        &args.ca_keys,
        format!("{}\n", answer.ssh_ca_keys.join("\n")).as_bytes(),
        0o644,
    )?;
    // The first KRL, with the new identity: it witnesses the log for the first time too.
    let host = Overrides {
        config: Some(config.clone()),
        ..Overrides::default()
    };
    let target = host.resolve()?;
    let sync = crate::host::krl_sync::SyncKrlArgs {
        out: args.krl.clone(),
        ca_keys: Some(args.ca_keys.clone()),
        state: None,
        witness: crate::host::witness::WitnessArgs::default().with_config(&host)?,
    };
    crate::host::krl_sync::sync(&target, &sync).await?;
    Ok(Enrolled {
        identity: answer.identity,
        config,
        not_after: answer.not_after,
    })
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Writes what every answer carries: the certificate, the pinned TLS CA, the log's key.
fn write_answer(dir: &Path, answer: &HostCertificateResponse) -> Result<(), CliError> {
    write_atomic(&dir.join(TLS_CA_FILE), answer.tls_ca_pem.as_bytes(), 0o644)?;
    write_atomic(
        &dir.join(LOG_KEY_FILE),
        answer.audit_public_key.as_bytes(),
        0o644,
    )?;
    write_atomic(
        &dir.join(CERT_FILE),
        answer.certificate_pem.as_bytes(),
        0o644,
    )
}

/// What renewal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewed {
    /// A new certificate (and key) was installed; it expires then (Unix seconds).
    Renewed {
        /// Its serial.
        serial: String,
        /// When it expires.
        not_after: i64,
    },
    /// More than a third of the lifetime is left; nothing changed.
    NotDue {
        /// When the current certificate expires.
        not_after: i64,
    },
}

/// The validity window of a PEM certificate (Unix seconds).
fn validity(pem: &[u8], path: &Path) -> Result<(i64, i64), CliError> {
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| CliError::Config(format!("{}: no PEM certificate in it", path.display())))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
    Ok((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// `breakglass host renew`: renews the certificate of the client config in effect.
pub async fn renew(args: &RenewArgs, overrides: &Overrides) -> Result<Renewed, CliError> {
    let target = overrides.resolve()?;
    let Target::Tls { cert, key, .. } = &target else {
        return Err(CliError::Usage(
            "host renew renews a host's mTLS certificate: give its client config (--config /etc/breakglass/host.toml)".into(),
        ));
    };
    // A renewal a crash interrupted is finished first.
    renewal::finish(cert, key)?;
    let current = std::fs::read(cert)
        .map_err(|e| CliError::Usage(format!("client certificate {}: {e}", cert.display())))?;
    let (not_before, not_after) = validity(&current, cert)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if !args.force && due_at(not_before, not_after) > now {
        return Ok(Renewed::NotDue { not_after });
    }
    if not_after <= now {
        return Err(CliError::Permission(format!(
            "the certificate {} expired; a host whose certificate expired enrolls again with a \
             new join token (breakglass-ca token create, then breakglass host enroll)",
            cert.display()
        )));
    }
    let (key_pem, csr_der) = new_key_and_csr()?;
    let mut client = EnrollmentClient::new(crate::connect::channel(&target)?);
    let answer = client
        .renew_host(RenewHostRequest { csr_der })
        .await
        .answer(&target)?;
    // Both under `.next` names first (the key first: a certificate is only useful with its
    // key), then into place: a crash at any point leaves a pair that works or one that
    // `renewal::finish` completes.
    write_atomic(&renewal::next_of(key), key_pem.as_bytes(), 0o600)?;
    write_atomic(
        &renewal::next_of(cert),
        answer.certificate_pem.as_bytes(),
        0o644,
    )?;
    renewal::finish(cert, key)?;
    if let Some(file) = overrides.config.as_deref()
        && let Ok(f) = read_client_file(file)
        && let Some(ca) = f.ca_cert
    {
        write_atomic(&ca, answer.tls_ca_pem.as_bytes(), 0o644)?;
    }
    Ok(Renewed::Renewed {
        serial: answer.serial,
        not_after: answer.not_after,
    })
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal: once
/// two thirds of its lifetime have passed.
#[must_use]
pub fn due_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before).max(0) / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime() {
        assert_eq!(due_at(0, 3000), 2000);
        assert_eq!(due_at(100, 100), 100);
        assert_eq!(due_at(200, 100), 100);
    }

    #[test]
    fn only_an_https_address_with_a_port_is_accepted() {
        assert_eq!(
            server_of("https://ca.example:7443").unwrap(),
            ("ca.example".to_owned(), "ca.example:7443".to_owned())
        );
        assert_eq!(server_of("https://[::1]:7443/").unwrap().0, "::1");
        for bad in ["http://ca:1", "ca:1", "https://ca", "unix:///x"] {
            assert!(server_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_fetched_ca_must_have_the_fingerprint_given() {
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        let der = rustls_first_cert(pem).unwrap();
        let fetched = GetTlsCaResponse {
            ca_pem: pem.into(),
            fingerprint: String::new(),
        };
        assert_eq!(pin(&fetched, &ca_fingerprint(der.as_ref())).unwrap(), pem);
        let e = pin(&fetched, &ca_fingerprint(b"other")).unwrap_err();
        assert!(e.to_string().contains("nothing was sent"), "{e}");
    }
}
