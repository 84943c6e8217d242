//! The real `breakglass-ca serve` as a child process on its own `init --dev` setup, for
//! runs that kill it (SIGKILL), fault it (a full disk, `strace` error injection) and start
//! it again on the same directory and port: its state then comes from the audit log alone.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::WhoAmIRequest;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a start may take before it counts as failed (a replay of a long history
/// included).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A `breakglass-ca serve` child process and its setup directory (which the caller owns).
/// Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct CaProcess {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    metrics_port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl CaProcess {
    /// Runs `BIN init --dev DIR --listen 127.0.0.1:<a free port>`; nothing is started yet.
    pub fn init(bin: &Path, dir: &Path) -> Result<Self, String> {
        let port = crate::sshd::free_port();
        let out = Command::new(bin)
            .args(["init", "--dev"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {} init: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} init --dev {} failed ({}): {}",
                bin.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // Not the dev setup's gRPC port + 1, which a connection of another test may hold.
        let metrics_port = crate::sshd::free_port();
        breakglass_test_support::ca::set_metrics_listen(
            &dir.join(breakglass_ca::init::CONFIG_FILE),
            &format!("127.0.0.1:{metrics_port}"),
        );
        Ok(Self {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            port,
            metrics_port,
            env: vec![("NO_COLOR".into(), "1".into())],
            child: None,
        })
    }

    /// Sets an environment variable for the next starts (e.g. `RUST_LOG`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Replaces the first `from` in the config file by `to`.
    pub fn edit_config(&self, from: &str, to: &str) -> Result<(), String> {
        let path = self.config();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !text.contains(from) {
            return Err(format!("{from:?} is not in {}", path.display()));
        }
        std::fs::write(&path, text.replacen(from, to, 1))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The plain-HTTP metrics and probes listener (`[server] metrics_listen`).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.metrics_port))
    }

    /// The setup directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join(breakglass_ca::init::CONFIG_FILE)
    }

    /// The audit log directory, as the config names it.
    pub fn audit_dir(&self) -> Result<PathBuf, String> {
        breakglass_ca::config::Config::load(&self.config())
            .map(|c| c.audit.dir)
            .map_err(|e| format!("{}: {e}", self.config().display()))
    }

    /// The audit log's verifier key (`log.pub`).
    pub fn log_pub(&self) -> PathBuf {
        self.dir.join("log.pub")
    }

    /// The file the daemon's output goes to (appended at every start).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// Everything the daemon printed, over all starts.
    pub fn log_text(&self) -> String {
        std::fs::read(self.log_file())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines the daemon printed.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// How the sample client `name` (sre, approver, auditor, host) connects over mTLS.
    pub fn target(&self, name: &str) -> Target {
        Target::Tls {
            url: format!("https://127.0.0.1:{}", self.port),
            fallbacks: Vec::new(),
            ca_cert: self.dir.join("tls/ca.pem"),
            cert: self.dir.join(format!("clients/{name}.pem")),
            key: self.dir.join(format!("clients/{name}-key.pem")),
            server_name: Some("localhost".into()),
        }
    }

    /// The real `breakglass` executable as the sample client `name`, with its client
    /// config from the setup (`clients/NAME.toml`), against this daemon.
    pub fn cli(&self, name: &str) -> Command {
        let mut c = Command::new(crate::breakglass_bin());
        c.arg("--config")
            .arg(self.dir.join(format!("clients/{name}.toml")))
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", self.port))
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_SERVER")
            .stdin(Stdio::null());
        c
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .map(Pid::from_raw)
    }

    /// Starts `serve` and waits until it answers `WhoAmI` over mTLS; returns the time from
    /// the spawn to that answer (start-up: config, keys, log scan, state replay, bind).
    /// The process gets SIGKILL if this process dies (`setpriv --pdeathsig`, when present).
    pub async fn start(&mut self) -> Result<Duration, String> {
        if self.child.is_some() {
            return Err("breakglass-ca is already running".into());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .map_err(|e| format!("{}: {e}", self.log_file().display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log_file().display()))?;
        let mut cmd = if crate::have("setpriv") {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        cmd.args(["serve", "--config"])
            .arg(self.config())
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let target = self.target("sre");
        while spawned.elapsed() < START_TIMEOUT {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "breakglass-ca exited during start-up ({status}); its last lines:\n{}",
                    self.log_tail(30)
                ));
            }
            if answers(&target).await {
                return Ok(spawned.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.kill9();
        Err(format!(
            "breakglass-ca did not answer within {START_TIMEOUT:?}; its last lines:\n{}",
            self.log_tail(30)
        ))
    }

    /// SIGKILL, and reap the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (at most a minute, then SIGKILL) for the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("breakglass-ca is not running".into());
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let status = crate::process::wait_exit(
            &mut child,
            Duration::from_secs(60),
            Duration::from_millis(20),
        );
        match status {
            Some(s) => Ok(s),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "breakglass-ca did not stop within a minute of SIGTERM; killed. Last lines:\n{}",
                    self.log_tail(30)
                ))
            }
        }
    }
}

impl Drop for CaProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// True when the daemon at `target` answers `WhoAmI` within two seconds.
pub async fn answers(target: &Target) -> bool {
    let Ok(ch) = connect::channel(target) else {
        return false;
    };
    let mut c = BreakGlassClient::new(ch);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), c.who_am_i(WhoAmIRequest {})).await,
        Ok(Ok(_))
    )
}
