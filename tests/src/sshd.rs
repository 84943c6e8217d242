//! Harness for the PAM end-to-end tests: a real `sshd` on a loopback port under its own
//! PAM service (`/etc/pam.d/sshd-bgtest-N`, removed on drop) with `pam_breakglass.so`
//! in the session stack, a throw-away Unix user, breakglass certificates signed with
//! ssh-key's builder following the profile, the real `ssh` client, and a syslog
//! capture socket the module and the guard are pointed at.
//!
//! Everything needs root (useradd, /etc/pam.d, sshd). Tests call [`require_root`] first.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::process::{Captured, wait_exit};
use breakglass_proto::profile::{
    CRITICAL_FORCE_COMMAND, EXT_GRANT_ID, EXT_HOSTS, EXT_TIER, GrantId, key_id,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey};

const PAM_D: &str = "/etc/pam.d";
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Returns true when the test can run (root); otherwise prints a loud `SKIPPED` line and
/// returns false, or panics when `CI` is set.
pub fn require_root(test: &str) -> bool {
    if crate::is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root, and CI must run it");
    }
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED (needs root): {test}: run the tests as root ***"
    );
    false
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// The module and the guard, built for these tests.

/// Paths of the built `pam_breakglass.so` and `breakglass-guard`.
#[derive(Debug)]
pub struct PamArtifacts {
    /// The PAM module.
    pub module: PathBuf,
    /// The session guard.
    pub guard: PathBuf,
}

/// The module and the guard of `pam-breakglass`, built once per test process by
/// [`crate::side_build`] (alone: the module stays free of the workspace's tokio/tonic
/// feature unification). `BREAKGLASS_PAM_ARTIFACTS=<dir>` uses a directory holding both
/// files instead.
pub fn pam_artifacts() -> &'static PamArtifacts {
    static ARTIFACTS: OnceLock<PamArtifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let dir = match std::env::var_os("BREAKGLASS_PAM_ARTIFACTS") {
            Some(d) => PathBuf::from(d),
            None => crate::side_build(&["pam-breakglass"]),
        };
        let a = PamArtifacts {
            module: dir.join("libpam_breakglass.so"),
            guard: dir.join("breakglass-guard"),
        };
        assert!(
            a.module.exists() && a.guard.exists(),
            "missing artifacts in {}",
            dir.display()
        );
        a
    })
}

// ---------------------------------------------------------------------------------------
// Certificates.

/// A certificate authority key.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's private key.
    pub key: PrivateKey,
}

impl TestCa {
    /// A fresh Ed25519 CA.
    pub fn new() -> Self {
        Self { key: new_key() }
    }

    /// The public key line (`ssh-ed25519 AAAA...`).
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().expect("encode CA key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh Ed25519 key.
pub fn new_key() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("random key")
}

/// What a test certificate carries; defaults follow the breakglass profile.
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// Grant id number.
    pub grant: u64,
    /// Principal (the Unix account).
    pub principal: String,
    /// Host scope (comma-separated globs).
    pub hosts: String,
    /// Seconds from now until `valid_before`.
    pub valid_for: u64,
    /// `force-command` critical option.
    pub force_command: Option<String>,
    /// Grant `permit-pty`.
    pub pty: bool,
    /// Grant `permit-port-forwarding`.
    pub port_forwarding: bool,
}

impl CertSpec {
    /// A certificate for `principal` on hosts `db-*`, valid for `valid_for` seconds.
    pub fn new(grant: u64, principal: &str, valid_for: u64) -> Self {
        Self {
            grant,
            principal: principal.into(),
            hosts: "db-*".into(),
            valid_for,
            force_command: None,
            pty: true,
            port_forwarding: true,
        }
    }
}

/// Signs a certificate for `key` as the breakglass CA would (key id
/// `breakglass/<grant>/<requester>`, our extensions, serial = 10000 + grant).
pub fn sign_cert(ca: &TestCa, key: &PrivateKey, spec: &CertSpec) -> Certificate {
    let now = unix_now();
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        key.public_key().key_data().clone(),
        now - 60,
        now + spec.valid_for,
    )
    .expect("builder");
    let grant = GrantId(spec.grant);
    b.serial(10_000 + spec.grant).expect("serial");
    b.key_id(key_id(grant, "sre@example.com")).expect("key id");
    b.cert_type(CertType::User).expect("type");
    b.valid_principal(spec.principal.clone())
        .expect("principal");
    if let Some(cmd) = &spec.force_command {
        b.critical_option(CRITICAL_FORCE_COMMAND, cmd.clone())
            .expect("force-command");
    }
    b.extension(EXT_GRANT_ID, grant.to_string())
        .expect("grant ext");
    b.extension(EXT_HOSTS, spec.hosts.clone())
        .expect("hosts ext");
    b.extension(EXT_TIER, "low").expect("tier ext");
    if spec.pty {
        b.extension("permit-pty", "").expect("pty");
    }
    if spec.port_forwarding {
        b.extension("permit-port-forwarding", "").expect("pf");
    }
    b.sign(&ca.key).expect("sign")
}

/// A client identity on disk: private key plus (optionally) a certificate.
#[derive(Debug)]
pub struct ClientKey {
    /// Private key file (mode 0600).
    pub key_path: PathBuf,
    /// Certificate file, if any.
    pub cert_path: Option<PathBuf>,
    /// The certificate's `valid_before`, if any.
    pub valid_before: Option<u64>,
}

impl ClientKey {
    /// Writes `key` and a certificate signed for it into `dir`.
    pub fn with_cert(dir: &Path, name: &str, ca: &TestCa, spec: &CertSpec) -> Self {
        let key = new_key();
        let cert = sign_cert(ca, &key, spec);
        let key_path = write_private_key(dir, name, &key);
        let cert_path = dir.join(format!("{name}-cert.pub"));
        std::fs::write(&cert_path, cert.to_openssh().expect("encode cert") + "\n")
            .expect("write cert");
        Self {
            key_path,
            cert_path: Some(cert_path),
            valid_before: Some(cert.valid_before()),
        }
    }

    /// Writes a plain key (no certificate) and returns it with its public line.
    pub fn plain(dir: &Path, name: &str) -> (Self, String) {
        let key = new_key();
        let key_path = write_private_key(dir, name, &key);
        let public = key.public_key().to_openssh().expect("encode key");
        (
            Self {
                key_path,
                cert_path: None,
                valid_before: None,
            },
            public,
        )
    }
}

fn write_private_key(dir: &Path, name: &str, key: &PrivateKey) -> PathBuf {
    let path = dir.join(name);
    key.write_openssh_file(&path, LineEnding::LF)
        .expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    path
}

// ---------------------------------------------------------------------------------------
// Syslog capture.

/// A Unix datagram socket collecting the lines sent to it.
#[derive(Debug)]
pub struct SyslogCapture {
    /// Socket path, for the module's `syslog=` option.
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SyslogCapture {
    /// Binds `dir/syslog.sock` and collects in a background thread.
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("syslog.sock");
        let sock = UnixDatagram::bind(&path).expect("bind syslog socket");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Self { path, lines }
    }

    /// Lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Waits up to `timeout` for a line containing every needle.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Users and processes.

/// A throw-away local user (`useradd -m`), removed with its home on drop after its
/// processes are killed.
#[derive(Debug)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
}

impl TestUser {
    /// Creates a user with a unique name.
    pub fn create() -> Self {
        let name = unique("bgt");
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash"])
            .arg(&name)
            .output()
            .expect("useradd runs");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("id")
            .arg("-u")
            .arg(&name)
            .output()
            .expect("id runs");
        let uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("uid");
        Self { name, uid }
    }

    /// Pids of live processes running as this user.
    pub fn processes(&self) -> Vec<u32> {
        processes_where(|pid| uid_of(pid) == Some(self.uid))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = Command::new("userdel")
            .args(["-r", "-f"])
            .arg(&self.name)
            .output();
    }
}

/// Live (non-zombie) pids for which `pred` holds.
pub fn processes_where(pred: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| !is_zombie(pid) && pred(pid))
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The command line of `pid`, NULs as spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

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
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("host_ed25519"))
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        std::fs::write(d.join("sshd_trusted_cas.pub"), lines(&opts.sshd_trusts)).expect("write");
        std::fs::write(d.join("module_trusted_cas.pub"), lines(&opts.module_trusts))
            .expect("write");
        let ak = d.join("authorized_keys");
        std::fs::create_dir(&ak).expect("mkdir");
        for (user, line) in &opts.authorized_keys {
            std::fs::write(ak.join(user), format!("{line}\n")).expect("write authorized_keys");
        }
        // An empty KRL first: RevokedKeys with a missing file refuses every login.
        let status = Command::new("ssh-keygen")
            .arg("-q")
            .args(["-k", "-f"])
            .arg(d.join("revoked.krl"))
            .status()
            .expect("ssh-keygen -k");
        assert!(status.success());
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
            let out = Command::new(&sshd.exe)
                .arg("-t")
                .arg("-f")
                .arg(sshd.dir.path().join("sshd_config"))
                .output()
                .expect("sshd -t");
            assert!(
                out.status.success(),
                "sshd -t: {}",
                String::from_utf8_lossy(&out.stderr)
            );
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

    fn wait_listening(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Names of the files in the module's spool directory.
    pub fn spool_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("spool"))
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits up to `timeout` for a spool record of `grant` (e.g. `g-0000000000000101`)
    /// and `event` (`open`, `close`, `warn`, `forced_end`, `deny`).
    pub fn wait_spool(&self, grant: &str, event: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let suffix = format!("-{event}.json");
        loop {
            if self
                .spool_files()
                .iter()
                .any(|f| f.contains(grant) && f.ends_with(&suffix))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// An `ssh` command to `user@127.0.0.1` with `key` (and its certificate), batch mode,
    /// no config files, no host key checks; `args` go before the destination.
    pub fn ssh(&self, user: &str, key: &ClientKey, args: &[&str]) -> Command {
        let mut cmd = ssh_command(self.port, key);
        cmd.args(args).arg(format!("{user}@127.0.0.1"));
        cmd
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
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
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

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------------------
// Running ssh.

/// A running `ssh` whose stdout and stderr are collected in the background.
#[derive(Debug)]
pub struct SshSession {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Captured,
}

impl SshSession {
    /// Spawns `cmd` with piped stdin/stdout/stderr (stderr merged into the buffer).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        let output = Captured::take(&mut child);
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            output,
        }
    }

    /// Writes to ssh's stdin.
    pub fn send(&mut self, text: &str) {
        if let Some(s) = self.stdin.as_mut() {
            s.write_all(text.as_bytes()).expect("write to ssh");
            s.flush().expect("flush");
        }
    }

    /// Everything ssh printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Waits up to `timeout` for the output to contain `needle`.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        self.output
            .wait_for(needle, timeout, Duration::from_millis(20))
    }

    /// Waits up to `timeout` for ssh to exit; returns its status and the time it was seen.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, SystemTime)> {
        let st = wait_exit(&mut self.child, timeout, Duration::from_millis(10))?;
        Some((st, SystemTime::now()))
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pids of processes of `user` whose command line contains `needle`.
pub fn user_processes_matching(user: &TestUser, needle: &str) -> Vec<u32> {
    let found: BTreeSet<u32> = user
        .processes()
        .into_iter()
        .filter(|&p| cmdline(p).contains(needle))
        .collect();
    found.into_iter().collect()
}
