//! A test host following a daemon: real sshd with the PAM module registering its
//! sessions, the host's own client identity, and `breakglass host watch-revocations`
//! running in-process once started (it ends sessions of revoked grants and replaces
//! dead guards).

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, SystemTime};

use breakglass_cli::host::krl_sync::{self, SyncKrlArgs};
use breakglass_cli::host::watch::{self, WatchArgs};
use breakglass_cli::host::witness::WitnessArgs;
use breakglass_cli::settings::Target;
use breakglass_proto::sessions::{self, Registration};
use breakglass_test_support::wait;
use tokio::sync::oneshot;

use crate::daemon::TestDaemon;
use crate::revocation::Grant;
use crate::sshd::{ClientKey, SshSession, Sshd};

/// Whether the host's sshd and module read a KRL synced from the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Krl {
    /// The KRL stays as `ssh-keygen -k` made it (empty); the module reads none.
    None,
    /// Synced at start (`host sync-krl`); the module reads it too (`krl=`).
    Synced,
}

/// One test host (`db-7`, `db-8`, ...; identity `host://<name>`): sshd with the module
/// registering sessions in `sessions/`, and (once started) the revocation watcher.
#[derive(Debug)]
pub struct TestHost {
    /// The host's sshd.
    pub sshd: Sshd,
    sessions: tempfile::TempDir,
    /// How the host connects to the daemon.
    pub target: Target,
    /// How the host witnesses the daemon's log.
    pub witness: WitnessArgs,
    watcher: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl TestHost {
    /// Starts sshd for host `name` trusting `d`'s CA keys, issues the host's client
    /// certificate, and with [`Krl::Synced`] syncs the KRL first.
    pub async fn start(d: &TestDaemon, name: &str, krl: Krl) -> Self {
        let sshd = d.start_sshd(Some(name)).await;
        let client = name.replace('-', "");
        let h = Self {
            sshd,
            sessions: tempfile::tempdir().expect("tempdir"),
            target: d.new_client(&client, identity(name)),
            witness: d.witness_args(&client, None),
            watcher: None,
        };
        let mut options = format!("sessions={}", h.sessions_dir().display());
        if krl == Krl::Synced {
            h.sync_krl().await;
            options = format!("krl={} {options}", h.krl().display());
        }
        h.sshd.set_module_options(&options);
        h
    }

    /// The KRL sshd's `RevokedKeys` reads.
    pub fn krl(&self) -> PathBuf {
        self.sshd.dir.path().join("revoked.krl")
    }

    /// Where the module registers sessions and the watcher marks revoked grants.
    pub fn sessions_dir(&self) -> PathBuf {
        self.sessions.path().join("sessions")
    }

    /// The CA keys sshd trusts.
    pub fn ca_keys(&self) -> PathBuf {
        self.sshd.dir.path().join("sshd_trusted_cas.pub")
    }

    /// `breakglass host sync-krl` into [`krl`](Self::krl).
    pub async fn sync_krl(&self) -> krl_sync::Synced {
        krl_sync::sync(
            &self.target,
            &SyncKrlArgs {
                out: self.krl(),
                ca_keys: Some(self.ca_keys()),
                state: None,
                witness: self.witness.clone(),
            },
        )
        .await
        .expect("sync-krl")
    }

    /// Starts the revocation watcher (in-process, polling every 2 s).
    pub fn start_watcher(&mut self) {
        let (tx, rx) = oneshot::channel::<()>();
        let target = self.target.clone();
        let args = WatchArgs {
            sessions: self.sessions_dir(),
            ca_keys: Some(self.ca_keys()),
            poll: Duration::from_secs(2),
            krl: None,
            krl_state: None,
            witness: self.witness.clone(),
        };
        let task = tokio::spawn(async move {
            watch::watch(&target, &args, async move {
                let _ = rx.await;
            })
            .await
            .expect("watcher runs");
        });
        self.watcher = Some((tx, task));
    }

    /// Opens a session of `user` with the grant `g` running `sleep`, and waits until its
    /// guard has registered it (a registration not in `known`); returns both.
    pub async fn open(
        &self,
        user: &str,
        g: &Grant,
        known: &[String],
    ) -> (SshSession, Registration) {
        let mut cmd = self.sshd.ssh(user, &g.key, &[]);
        cmd.arg("echo started; sleep 300");
        let s = SshSession::spawn(cmd);
        let log = self.sshd.log();
        let s = tokio::task::spawn_blocking(move || {
            assert!(
                s.wait_output("started", Duration::from_secs(15)),
                "session did not start: {}\n{log}",
                s.output()
            );
            s
        })
        .await
        .expect("the session starts");
        let dir = self.sessions_dir();
        let grant = g.grant_id.clone();
        let reg = wait::poll_async(Duration::from_secs(5), Duration::from_millis(50), || {
            sessions::read_registrations(&dir)
                .into_iter()
                .find(|r| r.grant == grant && !known.contains(&r.session))
        })
        .await
        .unwrap_or_else(|| panic!("the guard of {grant} did not register in {}", dir.display()));
        (s, reg)
    }

    /// Stops the watcher, if it runs.
    pub async fn stop(mut self) {
        if let Some((tx, task)) = self.watcher.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }
}

/// The client identity of the test host `name` (the config must list it).
fn identity(name: &str) -> &'static str {
    match name {
        "db-7" => "host://db-7",
        "db-8" => "host://db-8",
        other => panic!("no identity for the test host {other}: add one here"),
    }
}

/// Runs `cmd` to its end off the runtime.
pub async fn output_of(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    })
    .await
    .expect("the command ends")
}

/// Runs `cmd` to its end off the runtime: its exit code and everything it printed
/// (stdout, then stderr).
pub async fn code_and_output(cmd: Command) -> (Option<i32>, String) {
    let out = output_of(cmd).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs `command` as `user` on `sshd` over ssh with `key`, off the runtime.
pub async fn ssh_run(sshd: &Sshd, user: &str, key: &ClientKey, command: &str) -> Output {
    let mut cmd = sshd.ssh(user, key, &[]);
    cmd.arg(command);
    output_of(cmd).await
}

/// Waits (off the runtime, at most `timeout`) for ssh to exit; returns its status and
/// when it was seen to exit, and the session.
pub async fn session_end(
    s: SshSession,
    timeout: Duration,
) -> (Option<(ExitStatus, SystemTime)>, SshSession) {
    tokio::task::spawn_blocking(move || {
        let mut s = s;
        let end = s.wait_exit(timeout);
        (end, s)
    })
    .await
    .expect("waiting for ssh")
}
