//! Wiring: the mTLS TCP server and the local admin Unix socket, both serving
//! the same authenticated API, plus health checking and reflection, all behind the
//! access layer ([`crate::access`]); graceful shutdown with a drain deadline.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use breakglass_proto::v1::FILE_DESCRIPTOR_SET;
use breakglass_proto::v1::audit_server::AuditServer;
use breakglass_proto::v1::break_glass_server::BreakGlassServer;
use breakglass_proto::v1::enrollment_server::EnrollmentServer;
use breakglass_proto::v1::host_agent_server::HostAgentServer;
use breakglass_proto::v1::identities_server::IdentitiesServer;
use breakglass_proto::v1::revocations_server::RevocationsServer;
use breakglass_proto::v1::witness_server::WitnessServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tower::layer::util::{Identity, Stack};

use crate::accept::{self, FrontDoor, Limits};
use crate::access::AccessLayer;
use crate::api::audit::AuditApi;
use crate::api::breakglass::BreakGlassApi;
use crate::api::enrollment::{EnrollmentApi, IdentitiesApi};
use crate::api::hosts::HostAgentApi;
use crate::api::revocation::RevocationsApi;
use crate::api::witness::WitnessApi;
use crate::audit::{AuditConfig, AuditLog};
use crate::certificate::{CaKeyError, CertificateAuthority};
use crate::config::Config;
use crate::hosts::HostRecords;
use crate::service::Service;
use crate::state::State;
use crate::tls::{self, TlsError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The CA key is missing, unsafe or unusable.
    #[error("{0}")]
    CaKey(#[from] CaKeyError),
    /// The audit log or its key is unusable (damaged log: refuse to start).
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The TLS material is missing, unsafe or unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A socket could not be bound.
    #[error("{what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server: {0}")]
    Serve(String),
    /// Enrollment could not be set up (client CA key, TLS CA).
    #[error("{0}")]
    Enrollment(#[from] crate::enrollment::EnrollmentSetupError),
}

/// A daemon whose keys and TLS material are loaded and checked, ready to serve.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    service: Arc<Service>,
    tls: Arc<rustls::ServerConfig>,
    revocations: Arc<crate::revocation::Revocations>,
    witness: Arc<crate::witness::Witness>,
    /// Session recordings beside the log ([`crate::recordings`]).
    recordings: Arc<crate::recordings::Recordings>,
    /// Reload the configuration on each of these signals (SIGHUP), see [`crate::reload`].
    hangup: Option<tokio::signal::unix::Signal>,
    /// Join tokens, host enrollment, disabled identities ([`crate::enrollment`]).
    enrollment: Arc<crate::enrollment::Enrollment>,
}

impl Daemon {
    /// Loads and checks everything the configuration points at. Binds nothing.
    pub fn build(config: Config) -> Result<Self, StartupError> {
        tls::install_crypto_provider();
        let ca = CertificateAuthority::load(
            &config.ca.signing_key,
            &config.ca.extra_public_keys,
            config.ca.backdate,
        )?;
        let tls = tls::server_config(
            &config.server.tls_cert,
            &config.server.tls_key,
            &config.server.client_ca,
        )?;
        let (audit, state) = open_audit(&config.audit, config.postgres.as_ref())?;
        let service = Service::new(ca, &config, audit, state);
        let revocations = crate::revocation::Revocations::new(
            service.clone(),
            config.revocation.admin_groups.clone(),
        );
        let witness =
            crate::witness::Witness::new(service.clone(), config.revocation.admin_groups.clone());
        if let Some(why) = service.halted() {
            tracing::error!("CRITICAL {why}");
        }
        let recordings = crate::recordings::Recordings::new(
            service.clone(),
            &config.audit.dir,
            &config.recordings,
        );
        let enrollment =
            crate::enrollment::Enrollment::new(service.clone(), revocations.clone(), &config)?;
        Ok(Self {
            config,
            service,
            tls: Arc::new(tls),
            revocations,
            witness,
            recordings,
            hangup: None,
            enrollment,
        })
    }

    /// Reloads the configuration in place on each signal of `hangup` while serving
    /// ([`crate::reload`]). Install the handler early (before the log is replayed) so that
    /// a SIGHUP during start-up is not fatal: it is acted on once serving starts.
    #[must_use]
    pub fn reload_on(mut self, hangup: tokio::signal::unix::Signal) -> Self {
        self.hangup = Some(hangup);
        self
    }

    /// Checks everything the configuration points at (CA key, TLS material,
    /// audit key) without opening the audit log, which recovery could modify.
    pub fn check(config: &Config) -> Result<(), StartupError> {
        tls::install_crypto_provider();
        CertificateAuthority::load(
            &config.ca.signing_key,
            &config.ca.extra_public_keys,
            config.ca.backdate,
        )?;
        tls::server_config(
            &config.server.tls_cert,
            &config.server.tls_key,
            &config.server.client_ca,
        )?;
        crate::audit::load_audit_key(&config.audit.key, &config.audit.origin)?;
        if let Some(key) = &config.server.client_ca_key {
            crate::client_ca::ClientCa::load(&config.server.client_ca, key)
                .map_err(crate::enrollment::EnrollmentSetupError::from)?;
        }
        crate::enrollment::load_tls_ca(
            config
                .enrollment
                .tls_ca
                .as_deref()
                .unwrap_or(&config.server.client_ca),
        )?;
        Ok(())
    }

    /// The loaded configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The request lifecycle service behind the handlers.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The witnessing service behind its handlers.
    pub fn witness(&self) -> &Arc<crate::witness::Witness> {
        &self.witness
    }

    /// The revocation service behind its handlers.
    pub fn revocations(&self) -> &Arc<crate::revocation::Revocations> {
        &self.revocations
    }

    /// The session recordings behind their handlers.
    pub fn recordings(&self) -> &Arc<crate::recordings::Recordings> {
        &self.recordings
    }

    /// Join tokens, host enrollment and disabled identities.
    pub fn enrollment(&self) -> &Arc<crate::enrollment::Enrollment> {
        &self.enrollment
    }

    /// Binds the TCP listener and the admin socket named in the configuration.
    pub async fn bind(&self) -> Result<(TcpListener, Option<UnixListener>), StartupError> {
        let addr = self.config.server.listen;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind {
                what: "gRPC listener",
                addr: addr.to_string(),
                source,
            })?;
        let admin = match &self.config.server.admin_socket {
            Some(p) => Some(bind_admin_socket(p)?),
            None => None,
        };
        Ok((tcp, admin))
    }

    /// Binds the plain-HTTP metrics and probes listener, when `[server] metrics_listen`
    /// names one.
    async fn bind_metrics(&self) -> Result<Option<TcpListener>, StartupError> {
        let Some(addr) = self.config.server.metrics_listen else {
            return Ok(None);
        };
        TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| StartupError::Bind {
                what: "metrics listener",
                addr: addr.to_string(),
                source,
            })
    }

    fn router(&self) -> Result<Router<Stack<AccessLayer, Identity>>, StartupError> {
        // Each API's interceptor identifies the caller again (a second layer behind the
        // access layer, which decides who may call what) and stores it for the handlers.
        let auth = self.service.authenticator().clone();
        let intercept = move |r: tonic::Request<()>| auth.intercept(r);
        let api = BreakGlassServer::with_interceptor(
            BreakGlassApi(self.service.clone()),
            intercept.clone(),
        );
        let audit_api = AuditServer::with_interceptor(
            AuditApi::new(self.service.audit.clone(), self.service.history().clone())
                .with_recordings(self.recordings.clone()),
            intercept.clone(),
        );
        let host_api = HostAgentServer::with_interceptor(
            HostAgentApi(
                HostRecords::new(self.service.clone()),
                self.recordings.clone(),
            ),
            intercept.clone(),
        );
        let revocation_api = RevocationsServer::with_interceptor(
            RevocationsApi(self.revocations.clone()),
            intercept.clone(),
        );
        let witness_api =
            WitnessServer::with_interceptor(WitnessApi(self.witness.clone()), intercept.clone());
        let identities_api =
            IdentitiesServer::with_interceptor(IdentitiesApi(self.enrollment.clone()), intercept);
        // No interceptor: its open calls have no client certificate to identify; the access
        // layer identified the caller (or let an open call through without one).
        let enrollment_api = EnrollmentServer::new(EnrollmentApi(self.enrollment.clone()));
        let (health_reporter, health) = tonic_health::server::health_reporter();
        // The reporter only updates a shared map; no await point is needed here.
        let reporter = health_reporter.clone();
        tokio::spawn(async move {
            reporter
                .set_service_status("breakglass.v1.BreakGlass", ServingStatus::Serving)
                .await;
        });
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartupError::Serve(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| StartupError::Serve(format!("reflection: {e}")))?;
        Ok(Server::builder()
            .layer(AccessLayer::recording(&self.config, self.service.clone()))
            .add_service(api)
            .add_service(revocation_api)
            .add_service(audit_api)
            .add_service(host_api)
            .add_service(witness_api)
            .add_service(enrollment_api)
            .add_service(identities_api)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha))
    }

    /// Serves on the given listeners until `shutdown` completes, then stops
    /// accepting and lets in-flight calls finish within the configured grace.
    pub async fn run(
        mut self,
        tcp: TcpListener,
        admin: Option<UnixListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let metrics_listener = self.bind_metrics().await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        // Request expiry and notification delivery run until shutdown.
        self.service.start_background(stop_rx.clone());
        crate::snapshot::run_periodic(
            self.service.clone(),
            self.config.audit.dir.clone(),
            crate::snapshot::Every {
                events: self.config.audit.snapshot_every_events,
                interval: self.config.audit.snapshot_every,
            },
            stop_rx.clone(),
        );
        // Publishing the KRL again after a failure, until shutdown.
        self.revocations.start();
        // Deleting recordings older than [recordings] keep, until shutdown.
        self.recordings.start(stop_rx.clone());
        let grace = self.config.server.shutdown_grace;
        let local = tcp
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string());
        let admin_socket = self.config.server.admin_socket.as_deref();
        tracing::info!(
            listen = %local,
            admin_socket = admin_socket.map(|p| p.display().to_string()),
            "breakglass-ca serving"
        );
        if let Some(l) = metrics_listener {
            if let Ok(a) = l.local_addr() {
                tracing::info!(
                    "metrics and probes on http://{a}/metrics, /healthz, /readyz (plain HTTP)"
                );
            }
            tokio::spawn(crate::metrics::listener::serve(
                l,
                self.service.clone(),
                stop_rx.clone(),
            ));
        }

        let syslog = crate::audit_syslog::spawn(
            self.service.audit.clone(),
            &self.config.audit.syslog_socket,
            stop_rx.clone(),
        );
        let (limits, notes) = Limits::resolve(&self.config.server, accept::fd_limit());
        for note in notes {
            tracing::warn!("{note}");
        }
        tracing::info!(
            fd_limit = limits.fd_limit,
            max_connections = limits.max_connections,
            max_handshakes = limits.max_handshakes,
            max_handshakes_per_source = limits.max_handshakes_per_source,
            handshake_timeout = ?limits.handshake_timeout,
            "TCP limits (the rest of the file descriptors is kept for the admin socket and files)"
        );
        let (tx, rx) = mpsc::channel(128);
        let acceptor =
            tokio::spawn(FrontDoor::new(limits).run(tcp, self.tls.clone(), tx, stop_rx.clone()));
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tcp_server = tokio::spawn(
            self.router()?
                .serve_with_incoming_shutdown(ReceiverStream::new(rx), stopped(stop_rx.clone())),
        );
        let uds_server = match admin {
            Some(l) => Some(tokio::spawn(self.router()?.serve_with_incoming_shutdown(
                accept::unix_incoming(l, stop_rx.clone()),
                stopped(stop_rx.clone()),
            ))),
            None => None,
        };

        if let Some(hangup) = self.hangup.take() {
            crate::reload::spawn(
                self.service.clone(),
                self.config.clone(),
                hangup,
                stop_rx.clone(),
            );
        }
        if let Some(every) = crate::systemd::watchdog_interval() {
            tracing::info!(every = ?every, "feeding the systemd watchdog from the audit writer");
            self.service.audit.feed_watchdog(every);
        }
        // The log is replayed (Daemon::build) and the listeners are bound (given to us).
        crate::systemd::ready("serving");

        shutdown.await;
        crate::systemd::stopping();
        tracing::info!(grace = ?grace, "shutting down: no new connections, draining calls");
        let _ = stop_tx.send(true);
        self.revocations.shutdown();
        let drain = async {
            let _ = acceptor.await;
            let r = tcp_server.await;
            if let Some(u) = uds_server {
                let _ = u.await;
            }
            r
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(StartupError::Serve(e.to_string())),
            Ok(Err(e)) => return Err(StartupError::Serve(e.to_string())),
            Err(_) => tracing::warn!("calls still running after the shutdown grace; closing them"),
        }
        if let Some(p) = &self.config.server.admin_socket {
            let _ = std::fs::remove_file(p);
        }
        // Everything acknowledged is already durable; this lets the writer finish cleanly.
        self.service.audit.shutdown().await;
        // Every acknowledged event is applied: a snapshot now makes the next start-up
        // replay nothing.
        let audit = &self.config.audit;
        if audit.snapshot_every_events > 0 || !audit.snapshot_every.is_zero() {
            let (svc, dir) = (self.service.clone(), audit.dir.clone());
            match tokio::task::spawn_blocking(move || crate::snapshot::take(&svc, &dir)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "state snapshot at shutdown not written"),
                Err(e) => tracing::warn!(error = %e, "state snapshot at shutdown failed"),
            }
        }
        let _ = syslog.await;
        Ok(())
    }
}

/// Opens the audit log (recovering a torn tail, refusing a damaged log) and
/// rebuilds the state from it.
fn open_audit(
    cfg: &crate::config::AuditSettings,
    db: Option<&crate::config::postgres::PostgresSettings>,
) -> Result<(AuditLog, State), StartupError> {
    let signer = crate::audit::load_audit_key(&cfg.key, &cfg.origin)?;
    let mut engine = AuditConfig::new(&cfg.dir);
    engine.segment_max_bytes = cfg.segment_max_bytes;
    engine.max_batch = cfg.max_batch;
    if cfg.backend == crate::config::AuditBackend::Postgres {
        engine.db = db.cloned();
    }
    let log = AuditLog::open(engine, signer)?;
    let started = std::time::Instant::now();
    let (state, loaded) = crate::snapshot::load_state(&log, &cfg.dir)?;
    tracing::info!(
        events = state.events,
        snapshot = loaded.snapshot,
        replayed = loaded.replayed,
        grants = state.grants.len(),
        requests = state.requests_held(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state loaded: snapshot and the audit log after it"
    );
    Ok((log, state))
}

/// Binds the admin socket (replacing a stale one) with mode 0600.
fn bind_admin_socket(path: &Path) -> Result<UnixListener, StartupError> {
    let err = |source| StartupError::Bind {
        what: "admin socket",
        addr: path.display().to_string(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A live daemon would answer; a stale socket refuses connections.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another breakglass-ca is serving on it",
                )));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket; remove it or choose another path",
            )));
        }
        Err(_) => {}
    }
    let l = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

/// Installs the SIGTERM and SIGINT handlers now (so a signal that arrives
/// while the daemon is still starting is not fatal) and returns a future that
/// resolves when one of them arrives. Must be called inside the runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
