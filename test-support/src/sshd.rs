//! A real `sshd` on a loopback port under its own PAM service (`/etc/pam.d/sshd-bgtest-N`,
//! removed on drop) with `pam_breakglass.so` in the session stack and a syslog capture
//! socket the module and the guard are pointed at; the real `ssh` client.
//!
//! Everything needs root (/etc/pam.d, sshd): tests call [`crate::machine::require_root`] first.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, SystemTime};

use crate::artifacts::pam_artifacts;
use crate::cert::{ClientKey, TestCa, empty_krl, ssh_keygen};
use crate::fs::file_names;
use crate::fs::write_lines;
use crate::machine::free_port;
use crate::process::{Running, processes_where, sigkill};
use crate::syslog::SyslogCapture;
use crate::users::unique;

const PAM_D: &str = "/etc/pam.d";

// ---------------------------------------------------------------------------------------
// sshd.

/// How to configure a test sshd.
#[derive(Debug, Default)]
pub struct SshdOptions {
    /// Public key lines sshd trusts as user CAs (`TrustedUserCAKeys`).
    pub sshd_trusts: Vec<String>,
    /// Public key lines the module trusts (`ca_keys=`).
    pub module_trusts: Vec<String>,
    /// Extra module options (e.g. `require`, `warn_before=4`).
    pub module_options: String,
    /// `authorized_keys` lines per user, for plain-key logins.
    pub authorized_keys: Vec<(String, String)>,
    /// This host's name for the module's host-scope check (`host=`); default `db-7`.
    pub host: Option<String>,
}

impl SshdOptions {
    /// sshd and the module trusting the one CA `ca`, and nothing else set.
    pub fn trusting(ca: &TestCa) -> Self {
        Self {
            sshd_trusts: vec![ca.public_line()],
            module_trusts: vec![ca.public_line()],
            ..Self::default()
        }
    }
}

/// A running test sshd; killed, with its connections, guards and PAM service file, on drop.
#[derive(Debug)]
pub struct Sshd {
    /// Loopback port.
    pub port: u16,
    /// PAM service name (basename of the sshd copy).
    pub service: String,
    /// Syslog lines of the module and the guard.
    pub syslog: SyslogCapture,
    /// Working directory (config, keys, spool, logs).
    pub dir: tempfile::TempDir,
    exe: PathBuf,
    pam_file: PathBuf,
    host: String,
    child: Option<Child>,
}

impl Sshd {
    /// Starts sshd with `opts`.
    pub fn start(opts: &SshdOptions) -> Self {
        pam_artifacts();
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("bgsshd")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let service = unique("sshd-bgtest-");
        let exe = d.join(&service);
        std::fs::copy("/usr/sbin/sshd", &exe).expect("copy sshd");
        ssh_keygen(d, "host_ed25519", &["-t", "ed25519"]);
        write_lines(&d.join("sshd_trusted_cas.pub"), &opts.sshd_trusts);
        write_lines(&d.join("module_trusted_cas.pub"), &opts.module_trusts);
        let ak = d.join("authorized_keys");
        std::fs::create_dir(&ak).expect("mkdir");
        for (user, line) in &opts.authorized_keys {
            std::fs::write(ak.join(user), format!("{line}\n")).expect("write authorized_keys");
        }
        // An empty KRL first: RevokedKeys with a missing file refuses every login.
        empty_krl(&d.join("revoked.krl"));
        let syslog = SyslogCapture::bind(d);
        let pam_file = Path::new(PAM_D).join(&service);
        let mut sshd = Self {
            port: 0,
            service,
            syslog,
            exe,
            pam_file,
            host: opts.host.clone().unwrap_or_else(|| "db-7".into()),
            child: None,
            dir,
        };
        sshd.set_module_options(&opts.module_options);
        for attempt in 0..3 {
            let port = free_port();
            std::fs::write(sshd.dir.path().join("sshd_config"), sshd.config(port))
                .expect("write config");
            check_config(&sshd.exe, &sshd.dir.path().join("sshd_config"));
            let child = Command::new(&sshd.exe)
                .arg("-D")
                .arg("-f")
                .arg(sshd.dir.path().join("sshd_config"))
                .arg("-E")
                .arg(sshd.dir.path().join("sshd.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sshd");
            sshd.child = Some(child);
            sshd.port = port;
            if sshd.wait_listening(Duration::from_secs(5)) {
                return sshd;
            }
            sshd.stop_listener();
            eprintln!(
                "sshd did not start on port {port} (attempt {attempt}): {}",
                sshd.log()
            );
        }
        panic!("sshd did not start: {}", sshd.log());
    }

    fn config(&self, port: u16) -> String {
        let d = self.dir.path();
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\nUsePAM yes\n\
             TrustedUserCAKeys {d}/sshd_trusted_cas.pub\nRevokedKeys {d}/revoked.krl\n\
             AuthorizedKeysFile {d}/authorized_keys/%u\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nLogLevel VERBOSE\nStrictModes no\nPrintMotd no\n\
             PrintLastLog no\nMaxStartups 50\nMaxSessions 50\n",
            hk = d.join("host_ed25519").display(),
            d = d.display(),
        )
    }

    /// Rewrites the PAM service file with these module options (read at each login).
    pub fn set_module_options(&self, options: &str) {
        let a = pam_artifacts();
        let d = self.dir.path();
        let text = format!(
            "# written by the breakglass PAM end-to-end tests; removed when they finish\n\
             account required pam_unix.so\n\
             session required pam_loginuid.so\n\
             session required {module} ca_keys={d}/module_trusted_cas.pub host={host} spool={d}/spool guard={guard} syslog={sock} {options}\n\
             session required pam_unix.so\n",
            module = a.module.display(),
            d = d.display(),
            guard = a.guard.display(),
            sock = self.syslog.path.display(),
            host = self.host,
        );
        std::fs::write(&self.pam_file, text).expect("write /etc/pam.d service");
    }

    /// Makes the module ship its records at once with `bin host ship` as the client
    /// of `config` (`ship=`/`ship_config=`).
    pub fn ship_with(&self, bin: &Path, config: &Path) {
        self.set_module_options(&format!(
            "ship={} ship_config={}",
            bin.display(),
            config.display()
        ));
    }

    /// Rewrites the PAM service file without the pam_breakglass line: the mistake a
    /// drill must catch (sshd still accepts the certificate; nothing is recorded).
    pub fn remove_module_from_pam_stack(&self) {
        let text = std::fs::read_to_string(&self.pam_file).expect("read /etc/pam.d service");
        let module = pam_artifacts().module.display().to_string();
        let kept: String = text
            .lines()
            .filter(|l| !l.contains(&module))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(kept, text, "the module line was in the stack");
        std::fs::write(&self.pam_file, kept).expect("write /etc/pam.d service");
    }

    fn stop_listener(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True once sshd accepts connections; false when it exited or `timeout` passed.
    fn wait_listening(&mut self, timeout: Duration) -> bool {
        let port = self.port;
        let child = self.child.as_mut().expect("sshd started");
        crate::wait::poll(timeout, Duration::from_millis(25), || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port))
                .is_ok()
                .then_some(true)
        })
        .unwrap_or(false)
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Names of the files in the module's spool directory.
    pub fn spool_files(&self) -> Vec<String> {
        file_names(&self.dir.path().join("spool"))
    }

    /// Waits up to `timeout` for a spool record of `grant` (e.g. `g-0000000000000101`)
    /// and `event` (`open`, `close`, `warn`, `forced_end`, `deny`).
    pub fn wait_spool(&self, grant: &str, event: &str, timeout: Duration) -> bool {
        let suffix = format!("-{event}.json");
        crate::wait::until(timeout, Duration::from_millis(20), || {
            self.spool_files()
                .iter()
                .any(|f| f.contains(grant) && f.ends_with(&suffix))
        })
    }

    /// An `ssh` command to `user@127.0.0.1` with `key` (and its certificate), batch mode,
    /// no config files, no host key checks; `args` go before the destination.
    pub fn ssh(&self, user: &str, key: &ClientKey, args: &[&str]) -> Command {
        let mut cmd = ssh_command(self.port, key);
        cmd.args(args).arg(format!("{user}@127.0.0.1"));
        cmd
    }

    /// Runs `command` as `user` over [`ssh`](Self::ssh) and waits for it.
    pub fn run(&self, user: &str, key: &ClientKey, command: &str) -> Output {
        self.ssh(user, key, &[])
            .arg(command)
            .output()
            .expect("ssh runs")
    }
}

/// An `ssh` command to port `port` of 127.0.0.1 with `key` (and its certificate), batch
/// mode, no config files, no host key checks; the caller adds the destination.
pub fn ssh_command(port: u16, key: &ClientKey) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-p"])
        .arg(port.to_string())
        .arg("-i")
        .arg(&key.key_path);
    if let Some(c) = &key.cert_path {
        cmd.arg("-o")
            .arg(format!("CertificateFile={}", c.display()));
    }
    cmd.args([
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
    ]);
    cmd
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop_listener();
        // Connection processes of this sshd copy. The session guards watch those
        // processes through pidfds and exit once they are gone (and TestUser's drop
        // removes any leftovers a guard would otherwise wait for).
        let exe = self.exe.clone();
        let ours = processes_where(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .as_deref()
                == Some(exe.as_path())
        });
        for pid in ours {
            let _ = sigkill(pid);
        }
        let _ = std::fs::remove_file(&self.pam_file);
        // Guards may still be writing their last record into the spool: retry the removal
        // (TempDir's own removal ignores errors and would leave a partial tree behind).
        for _ in 0..10 {
            if std::fs::remove_dir_all(self.dir.path()).is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running ssh.

/// A running `ssh` whose stdout and stderr are collected in the background.
#[derive(Debug)]
pub struct SshSession(Running);

impl SshSession {
    /// Spawns `cmd` with piped stdin/stdout/stderr (stderr merged into the buffer).
    pub fn spawn(mut cmd: Command) -> Self {
        Self(Running::spawn(cmd.stdin(Stdio::piped())))
    }

    /// Writes to ssh's stdin.
    pub fn send(&mut self, text: &str) {
        self.0.send(text);
    }

    /// Everything ssh printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.0.output()
    }

    /// Waits up to `timeout` for the output to contain `needle`.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        self.0
            .wait_output(needle, timeout, Duration::from_millis(20))
    }

    /// Waits up to `timeout` for ssh to exit; returns its status and the time it was seen.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, SystemTime)> {
        self.0.wait_exit(timeout, Duration::from_millis(10))
    }
}

/// Asserts that `sshd -t -f config` (with the sshd executable `sshd`) accepts `config`.
pub fn check_config(sshd: &Path, config: &Path) {
    crate::process::run_ok(Command::new(sshd).arg("-t").arg("-f").arg(config));
}
