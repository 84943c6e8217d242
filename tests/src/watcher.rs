//! A host's revocation watcher as hosts run it: the real `breakglass host
//! watch-revocations` executable, a child process following a daemon over mTLS; and a
//! test host that runs it beside sshd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use breakglass_test_support::process::Running;
use breakglass_test_support::{ssh_keygen_revoked, wait};

use crate::daemon::TestDaemon;
use crate::host::code_and_output;
use crate::sshd::{ClientKey, Sshd};

/// A running `breakglass host watch-revocations`; killed on drop.
#[derive(Debug)]
pub struct WatcherProcess {
    process: Running,
    /// The KRL it keeps for sshd (`--krl`), if any.
    pub krl: Option<PathBuf>,
}

impl WatcherProcess {
    /// Starts `breakglass --config CONFIG host watch-revocations --sessions SESSIONS
    /// --ca-keys CA_KEYS [--krl KRL]` and waits (at most 20 s) until it follows the
    /// stream and, with a KRL, has installed the daemon's current one.
    pub fn start(config: &Path, sessions: &Path, ca_keys: &Path, krl: Option<&Path>) -> Self {
        let mut cmd = Command::new(crate::breakglass_bin());
        cmd.arg("--config")
            .arg(config)
            .args(["host", "watch-revocations", "--sessions"])
            .arg(sessions)
            .arg("--ca-keys")
            .arg(ca_keys)
            .args(["--poll", "2s"]);
        if let Some(k) = krl {
            cmd.arg("--krl").arg(k);
        }
        let w = Self {
            process: Running::spawn(cmd.stdin(Stdio::null())),
            krl: krl.map(Path::to_path_buf),
        };
        let (bound, every) = (Duration::from_secs(20), Duration::from_millis(20));
        assert!(
            w.process
                .wait_output("watching revocations at", bound, every),
            "the watcher does not follow the stream: {}",
            w.output()
        );
        if let Some(k) = krl {
            // The first install writes the version state file beside the KRL.
            let state = PathBuf::from(format!("{}.version", k.display()));
            assert!(
                wait::until(bound, every, || state.exists()),
                "the watcher installed no KRL at {}: {}",
                k.display(),
                w.output()
            );
        }
        w
    }

    /// Everything it printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// Test host `db-7` following a daemon with the real watcher: sshd (`RevokedKeys` on
/// `revoked.krl`) with the module (`krl=` on the same file, `sessions=` for the
/// watcher's markers). No `sync-krl` runs: the KRL starts as `ssh-keygen -k` made it.
#[derive(Debug)]
pub struct WatchedHost {
    /// The host's sshd.
    pub sshd: Sshd,
    sessions: tempfile::TempDir,
    /// The watcher.
    pub watcher: WatcherProcess,
}

impl WatchedHost {
    /// `keep_krl`: the watcher installs the KRL (`--krl`); else the KRL file stays stale.
    pub async fn start(d: &TestDaemon, keep_krl: bool) -> Self {
        let sshd = d.start_sshd(Some("db-7")).await;
        let sessions = tempfile::tempdir().expect("tempdir");
        let dir = sessions.path().join("sessions");
        let krl = sshd.dir.path().join("revoked.krl");
        sshd.set_module_options(&format!("krl={} sessions={}", krl.display(), dir.display()));
        d.new_client("db7", "host://db-7");
        let config = d.client_config("db7", "db7");
        let ca_keys = sshd.dir.path().join("sshd_trusted_cas.pub");
        let watcher = tokio::task::spawn_blocking(move || {
            WatcherProcess::start(&config, &dir, &ca_keys, keep_krl.then_some(krl.as_path()))
        })
        .await
        .expect("the watcher starts");
        Self {
            sshd,
            sessions,
            watcher,
        }
    }

    /// The KRL sshd and the module read.
    pub fn krl(&self) -> PathBuf {
        self.sshd.dir.path().join("revoked.krl")
    }

    /// Where the module registers sessions and the watcher marks revoked grants.
    pub fn sessions_dir(&self) -> PathBuf {
        self.sessions.path().join("sessions")
    }

    /// `ssh user@db-7 echo logged-in`: exit code and everything ssh printed.
    pub async fn login(&self, user: &str, key: &ClientKey) -> (Option<i32>, String) {
        let mut cmd = self.sshd.ssh(user, key, &[]);
        cmd.arg("echo logged-in");
        code_and_output(cmd).await
    }

    /// Asserts that `user` logs in with `key`.
    pub async fn assert_login_works(&self, user: &str, key: &ClientKey) {
        let (code, out) = self.login(user, key).await;
        assert!(
            code == Some(0) && out.contains("logged-in"),
            "login refused ({code:?}): {out}\n{}\nwatcher: {}",
            self.sshd.log(),
            self.watcher.output()
        );
    }

    /// Waits (bounded) until the installed KRL revokes the certificate `cert`.
    pub async fn wait_krl_revokes(&self, cert: &Path) {
        let krl = self.krl();
        let cert = cert.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            wait::until(Duration::from_secs(15), Duration::from_millis(10), || {
                ssh_keygen_revoked(&krl, &cert)
            })
        })
        .await
        .expect("polling the KRL");
        assert!(
            ok,
            "the watcher did not install a KRL revoking it: {}",
            self.watcher.output()
        );
    }
}
