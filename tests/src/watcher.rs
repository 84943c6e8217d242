//! A host's revocation watcher as hosts run it: the real `breakglass host
//! watch-revocations` executable, a child process following a daemon over mTLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use breakglass_test_support::process::Running;
use breakglass_test_support::wait;

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
