//! The real `breakglass-ca` executable as its users run it: `init --dev`, then `serve`
//! as a child process. The executable is a parameter: the daemon's own tests pass the
//! one cargo built for them, the end-to-end tests [`crate::artifacts::breakglass_ca_bin`].

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::process::Running;

/// The dev config file `init --dev` writes in its directory.
pub const CONFIG_FILE: &str = "breakglass-ca.toml";

/// `BIN init --dev DIR --listen LISTEN`; asserts that it succeeded and returns what it
/// printed. The metrics listener is then put on an ephemeral port
/// ([`set_metrics_listen`]).
pub fn init_dev(bin: &Path, dir: &Path, listen: &str) -> String {
    let out = crate::process::run_ok(
        Command::new(bin)
            .args(["init", "--dev"])
            .arg(dir)
            .args(["--listen", listen]),
    );
    set_metrics_listen(&dir.join(CONFIG_FILE), "127.0.0.1:0");
    out
}

/// Sets `[server] metrics_listen` of the dev config `config` to `addr`. `init --dev` puts
/// it on the gRPC port + 1, a port that a connection of a test running beside may hold;
/// tests take an ephemeral one (`127.0.0.1:0`) or a free one they picked.
pub fn set_metrics_listen(config: &Path, addr: &str) {
    let text =
        std::fs::read_to_string(config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("metrics_listen = ") {
                found = true;
                format!("metrics_listen = \"{addr}\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "no metrics_listen in {}", config.display());
    std::fs::write(config, lines.join("\n") + "\n")
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
}

/// `BIN serve --config CONFIG` with no input and plain (uncoloured) logs at the default
/// level, whatever `RUST_LOG` says.
pub fn serve_command(bin: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `serve` to its end (for a daemon that must refuse to start).
pub fn serve_output(bin: &Path, config: &Path) -> Output {
    serve_command(bin, config)
        .output()
        .expect("breakglass-ca serve runs")
}

/// A daemon running as a child process, its output collected; SIGKILLed on drop.
#[derive(Debug)]
pub struct CaProcess(Running);

impl CaProcess {
    /// Spawns `cmd` and waits up to `timeout` until `ready(log so far)`; panics with the
    /// log when the daemon exits first or never gets ready.
    pub fn start(
        cmd: &mut Command,
        timeout: Duration,
        mut ready: impl FnMut(&str) -> bool,
    ) -> Self {
        let mut p = Running::spawn(cmd);
        let started = crate::wait::poll(timeout, Duration::from_millis(20), || {
            if let Some(status) = p.exit_status() {
                p.drain_output();
                return Some(Err(status));
            }
            ready(&p.output()).then_some(Ok(()))
        });
        match started {
            Some(Ok(())) => Self(p),
            Some(Err(status)) => panic!("breakglass-ca exited ({status}): {}", p.output()),
            None => panic!(
                "breakglass-ca did not start within {timeout:?}:\n{}",
                p.output()
            ),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.0.output()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// SIGTERM; asserts that it exits cleanly within a minute; returns everything it logged.
    pub fn stop(mut self) -> String {
        let status = self.0.terminate(Duration::from_secs(60));
        let log = self.log();
        assert!(
            status.is_some_and(|s| s.success()),
            "the daemon did not stop cleanly on SIGTERM ({status:?}):\n{log}"
        );
        log
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.0.kill();
    }
}
