//! An in-process daemon on loopback, made from a fresh `init --dev` setup.

use std::path::{Path, PathBuf};

use breakglass_ca::config::Config;
use breakglass_ca::init;
use breakglass_ca::server::Daemon;
use breakglass_cli::settings::Target;
use tokio::sync::oneshot;

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
        let daemon = Daemon::build(config).expect("daemon builds");
        // The dev config listens on 127.0.0.1:0: the kernel picks a free port.
        let (tcp, admin) = daemon.bind().await.expect("daemon binds");
        let port = tcp.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            daemon
                .run(tcp, admin, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("daemon runs");
        });
        Self {
            dir,
            port,
            admin_socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The dev directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// How the sample client `name` (sre, approver, host) connects.
    pub fn target(&self, name: &str) -> Target {
        self.target_with(
            &self.path().join(format!("clients/{name}.pem")),
            &self.path().join(format!("clients/{name}-key.pem")),
        )
    }

    /// How a client with the given certificate and key connects.
    pub fn target_with(&self, cert: &Path, key: &Path) -> Target {
        Target::Tls {
            url: format!("https://127.0.0.1:{}", self.port),
            ca_cert: self.path().join("tls/ca.pem"),
            cert: cert.to_owned(),
            key: key.to_owned(),
            server_name: Some("localhost".into()),
        }
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
