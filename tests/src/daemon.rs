//! An in-process daemon on loopback, made from a fresh `init --dev` setup.

use std::path::{Path, PathBuf};

use breakglass_ca::config::Config;
use breakglass_ca::init;
use breakglass_ca::server::Daemon;
use breakglass_cli::host::witness::WitnessArgs;
use breakglass_cli::settings::Target;
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::sshd::{Sshd, SshdOptions, TestCa};

/// A running daemon and its dev directory (removed on drop).
#[derive(Debug)]
pub struct TestDaemon {
    /// The dev setup directory.
    pub dir: tempfile::TempDir,
    /// TCP port of the mTLS listener on 127.0.0.1.
    pub port: u16,
    /// The admin socket.
    pub admin_socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestDaemon {
    /// `SHA256:<base64>` of the daemon's TLS CA (what `token create` prints and
    /// `--ca-fingerprint` takes).
    pub fn tls_ca_fingerprint(&self) -> String {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::pem_file_iter(self.path().join("tls/ca.pem"))
            .expect("tls/ca.pem")
            .next()
            .expect("a certificate")
            .expect("PEM");
        breakglass_proto::enrollment::ca_fingerprint(der.as_ref())
    }

    /// The address of its TLS listener with no credentials: what `host enroll` and
    /// `login` get from `--server URL --server-name localhost`.
    pub fn bare_server(&self) -> breakglass_cli::settings::Overrides {
        breakglass_cli::settings::Overrides {
            server: Some(format!("https://127.0.0.1:{}", self.port)),
            server_name: Some("localhost".into()),
            ..breakglass_cli::settings::Overrides::default()
        }
    }

    /// Starts a daemon on the dev config as `init` writes it.
    pub async fn start() -> Self {
        Self::start_with(|c| c).await
    }

    /// Starts a daemon after `edit` has rewritten the dev config text.
    pub async fn start_with(edit: impl FnOnce(String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = init::init_dev(dir.path(), "127.0.0.1:0".parse().unwrap()).expect("init");
        let text = std::fs::read_to_string(&setup.config).unwrap();
        std::fs::write(&setup.config, edit(text)).unwrap();
        let config = Config::load(&setup.config).expect("config loads");
        let admin_socket = config.server.admin_socket.clone().expect("admin socket");
        let mut d = Self {
            dir,
            port: 0,
            admin_socket,
            stop: None,
            task: None,
        };
        d.launch(config).await;
        d
    }

    /// Builds, binds and runs a daemon for `config`; records the port it got.
    async fn launch(&mut self, config: Config) {
        let daemon = Daemon::build(config).expect("daemon builds");
        let (tcp, admin) = daemon.bind().await.expect("daemon binds");
        self.port = tcp.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            daemon
                .run(tcp, admin, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("daemon runs");
        }));
    }

    /// The dev directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a client certificate for `identity` (an e-mail or a URI SAN) from the dev
    /// TLS CA, writes it and its key to `clients/<name>{,-key}.pem` and returns its target.
    /// The daemon knows the identity only if the config lists it.
    pub fn new_client(&self, name: &str, identity: &'static str) -> Target {
        let san = if identity.contains("://") {
            init::ClientSan::Uri(identity)
        } else {
            init::ClientSan::Email(identity)
        };
        let now = time::OffsetDateTime::now_utc();
        let leaf = init::tls_leaf(
            &self.tls_ca(),
            &[],
            Some(san),
            now - std::time::Duration::from_secs(3600),
            now + std::time::Duration::from_secs(86400),
        )
        .expect("client certificate");
        let cert = self.path().join(format!("clients/{name}.pem"));
        let key = self.path().join(format!("clients/{name}-key.pem"));
        std::fs::write(&cert, leaf.cert_pem).unwrap();
        std::fs::write(&key, leaf.key_pem).unwrap();
        self.target_with(&cert, &key)
    }

    /// How the sample client `name` (sre, approver, host) connects.
    pub fn target(&self, name: &str) -> Target {
        self.target_with(
            &self.path().join(format!("clients/{name}.pem")),
            &self.path().join(format!("clients/{name}-key.pem")),
        )
    }

    /// Writes `clients/<file>.toml`: client settings for the client `name` (its
    /// `clients/<name>{,-key}.pem`) with this daemon's real port; returns its path.
    pub fn client_config(&self, file: &str, name: &str) -> PathBuf {
        let path = self.path().join(format!("clients/{file}.toml"));
        std::fs::write(
            &path,
            format!(
                "server = \"https://127.0.0.1:{}\"\nca_cert = \"../tls/ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}-key.pem\"\nserver_name = \"localhost\"\naudit_key = \"../log.pub\"\nwitness_state = \"{file}.witness\"\n",
                self.port
            ),
        )
        .expect("write the client settings");
        path
    }

    /// How the host `name` witnesses this daemon's audit log: its state in
    /// `clients/<name>.witness`, the log's key pinned from `log.pub`, syslog to `syslog`
    /// (`None`: nowhere that a test reads).
    pub fn witness_args(&self, name: &str, syslog: Option<&Path>) -> WitnessArgs {
        WitnessArgs {
            witness_state: Some(self.path().join(format!("clients/{name}.witness"))),
            audit_key: Some(self.path().join("log.pub")),
            syslog_socket: Some(
                syslog.map_or_else(|| self.path().join("no-syslog.sock"), Path::to_path_buf),
            ),
        }
    }

    /// Starts a test sshd (and its PAM module) trusting this daemon's user CA keys, as
    /// the sample host reads them; `host` is the module's `host=` (default `db-7`).
    pub async fn start_sshd(&self, host: Option<&str>) -> Sshd {
        let ca_lines = breakglass_cli::commands::ca_keys(&self.target("host"))
            .await
            .expect("the daemon lists its user CA keys");
        let opts = SshdOptions {
            sshd_trusts: ca_lines.clone(),
            module_trusts: ca_lines,
            host: host.map(str::to_owned),
            ..Default::default()
        };
        tokio::task::spawn_blocking(move || Sshd::start(&opts))
            .await
            .unwrap()
    }

    /// How a client with the given certificate and key connects.
    pub fn target_with(&self, cert: &Path, key: &Path) -> Target {
        Target::Tls {
            url: format!("https://127.0.0.1:{}", self.port),
            fallbacks: Vec::new(),
            ca_cert: self.path().join("tls/ca.pem"),
            cert: cert.to_owned(),
            key: key.to_owned(),
            server_name: Some("localhost".into()),
        }
    }

    /// The real `breakglass` executable as the sample client `name` (its
    /// `clients/<name>.toml`) talking to this daemon: no input, no settings from the
    /// environment.
    pub fn cli(&self, name: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(crate::breakglass_bin());
        c.arg("--config")
            .arg(self.path().join(format!("clients/{name}.toml")))
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", self.port))
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_SERVER")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs `breakglass ARGS` as the sample client `name`; returns its stdout, and
    /// panics with its stderr when it fails.
    pub async fn cli_ok(&self, name: &str, args: &[&str]) -> String {
        let out = self
            .cli(name)
            .args(args)
            .output()
            .await
            .expect("breakglass runs");
        assert!(
            out.status.success(),
            "breakglass {args:?} as {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// The admin socket target.
    pub fn admin(&self) -> Target {
        Target::Unix(self.admin_socket.clone())
    }

    /// Stops the daemon and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("daemon task");
        }
    }

    /// Stops the daemon but keeps its directory (log, keys, config), e.g. to tamper with
    /// the log or to show what hosts do while it is down. [`resume`](Self::resume) starts
    /// it again.
    pub async fn pause(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("daemon task");
        }
    }

    /// Starts a paused daemon again from its directory, on the same port (its state is
    /// rebuilt from the audit log).
    pub async fn resume(&mut self) {
        assert!(self.task.is_none(), "resume() needs a paused daemon");
        let mut config = Config::load(&self.path().join(init::CONFIG_FILE)).expect("config loads");
        config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        self.launch(config).await;
    }

    /// Appends `events` to the daemon's audit log as they are (their own times and actors),
    /// with the daemon paused meanwhile: history its API would not write now (events days
    /// old, records made before a rule changed). It rebuilds its state from the log when it
    /// resumes. The log, key and origin are the daemon's config's. Needs a multi-thread
    /// runtime.
    pub async fn append_to_log(&mut self, events: &[breakglass_proto::audit::Event]) {
        use breakglass_ca::audit::{AuditConfig, AuditLog, load_audit_key};
        self.pause().await;
        let config = Config::load(&self.path().join(init::CONFIG_FILE)).expect("config loads");
        let signer =
            load_audit_key(&config.audit.key, &config.audit.origin).expect("the audit key loads");
        let log = AuditLog::open(AuditConfig::new(config.audit.dir), signer)
            .expect("the audit log opens");
        tokio::task::block_in_place(|| {
            for e in events {
                log.append_blocking(e).expect("the event is appended");
            }
            log.shutdown_blocking();
        });
        drop(log);
        self.resume().await;
    }

    /// Stops the daemon and starts a new one on the same directory and port:
    /// its state is rebuilt from the audit log alone.
    pub async fn restart(&mut self) {
        self.pause().await;
        self.resume().await;
    }

    /// The daemon's SSH user CA (its private key `ssh_ca`), to sign certificates it
    /// never issued, as an offline emergency certificate would be.
    pub fn ssh_ca(&self) -> TestCa {
        TestCa {
            key: ssh_key::PrivateKey::read_openssh_file(&self.path().join("ssh_ca"))
                .expect("the dev CA key"),
        }
    }

    /// The TLS CA of the dev setup, for issuing more client certificates.
    pub fn tls_ca(&self) -> init::CertAndKey {
        init::CertAndKey {
            cert_pem: std::fs::read_to_string(self.path().join("tls/ca.pem")).unwrap(),
            key_pem: std::fs::read_to_string(self.path().join("tls/ca-key.pem")).unwrap(),
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// What the health service on `ch` says of `breakglass.v1.BreakGlass`.
pub async fn breakglass_health(ch: breakglass_cli::connect::Channel) -> ServingStatus {
    let status = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: "breakglass.v1.BreakGlass".into(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("a known serving status")
}
