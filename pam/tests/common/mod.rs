//! Shared helpers of the pam-breakglass integration tests: artifacts, certificates,
//! a syslog capture socket, pamtester/harness runs under pam_wrapper.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_proto::profile::{EXT_GRANT_ID, EXT_HOSTS, EXT_TIER, GrantId, key_id};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, PrivateKey};

pub const PAM_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so";
pub const PAM_LOGINUID: &str = "/lib/x86_64-linux-gnu/security/pam_loginuid.so";
pub const PAM_PERMIT: &str = "/lib/x86_64-linux-gnu/security/pam_permit.so";

/// Directory holding the built `libpam_breakglass.so` (target/<profile>).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The freshest build of the module: cargo leaves the cdylib of a test build in
/// `deps/` and only copies it up for `cargo build`.
pub fn module_so() -> PathBuf {
    let candidates = [
        target_dir().join("deps/libpam_breakglass.so"),
        target_dir().join("libpam_breakglass.so"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "libpam_breakglass.so not found in {}",
                target_dir().display()
            )
        })
}

pub fn guard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_breakglass-guard"))
}

fn users_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .unwrap_or_default()
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().nth(2) == Some("0"))
        .unwrap_or(false)
}

/// Returns false (after a loud line) when the test cannot run here; panics in CI.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root and CI is set: run the test suite as root");
    }
    // Straight to fd 2: libtest captures eprintln! of passing tests, and a skip must show.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED (needs root): {test} ***");
    false
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn new_key() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
}

pub struct CertSpec<'a> {
    pub grant: u64,
    pub principal: &'a str,
    pub hosts: &'a str,
    pub valid_for: u64,
}

pub fn sign(ca: &PrivateKey, s: &CertSpec<'_>) -> Certificate {
    let now = now();
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        new_key().public_key().key_data().clone(),
        now - 30,
        now + s.valid_for,
    )
    .unwrap();
    let grant = GrantId(s.grant);
    b.serial(7000 + s.grant).unwrap();
    b.key_id(key_id(grant, "sre@example.com")).unwrap();
    b.cert_type(CertType::User).unwrap();
    b.valid_principal(s.principal).unwrap();
    b.extension(EXT_GRANT_ID, grant.to_string()).unwrap();
    b.extension(EXT_HOSTS, s.hosts).unwrap();
    b.extension(EXT_TIER, "low").unwrap();
    b.sign(ca).unwrap()
}

pub fn auth_info(cert: &Certificate) -> String {
    let line = cert.to_openssh().unwrap();
    let mut p = line.split(' ');
    format!("publickey {} {}\n", p.next().unwrap(), p.next().unwrap())
}

/// Collects datagrams sent to a socket bound in a temp dir.
pub struct SyslogCapture {
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SyslogCapture {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("l");
        let sock = UnixDatagram::bind(&path).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Self { path, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
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

/// A PAM service directory for pam_wrapper plus everything the module needs.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub ca: PrivateKey,
    pub syslog: SyslogCapture,
    pub service: String,
}

impl Stack {
    /// `extra` module options are appended after the standard ones. With `loginuid`,
    /// pam_loginuid runs first (needs root).
    pub fn new(extra: &str, loginuid: bool) -> Self {
        // pam_wrapper rewrites service files through a fixed-size line buffer: keep
        // lines short with short names in a short temp dir.
        let dir = tempfile::Builder::new()
            .prefix("bg")
            .tempdir_in("/tmp")
            .unwrap();
        let ca = new_key();
        let ca_pub = dir.path().join("c.pub");
        std::fs::write(&ca_pub, ca.public_key().to_openssh().unwrap() + "\n").unwrap();
        let syslog = SyslogCapture::bind(dir.path());
        let so = dir.path().join("m.so");
        std::os::unix::fs::symlink(module_so(), &so).unwrap();
        let guard = dir.path().join("g");
        std::os::unix::fs::symlink(guard_bin(), &guard).unwrap();
        let svc_dir = dir.path().join("pam.d");
        std::fs::create_dir(&svc_dir).unwrap();
        let service = "bgtest".to_owned();
        let mut text = String::new();
        if loginuid {
            text += &format!("session required {PAM_LOGINUID}\n");
        }
        let line = format!(
            "session required {} ca_keys={} host=db-7 spool={} guard={} syslog={} {extra}",
            so.display(),
            ca_pub.display(),
            dir.path().join("s").display(),
            guard.display(),
            syslog.path.display(),
        );
        assert!(
            line.len() < 240,
            "service line too long for pam_wrapper: {line}"
        );
        text += &line;
        text += &format!("\nsession required {PAM_PERMIT}\n");
        std::fs::write(svc_dir.join(&service), text).unwrap();
        Self {
            dir,
            ca,
            syslog,
            service,
        }
    }

    fn wrap(&self, cmd: &mut Command) {
        cmd.env("LD_PRELOAD", PAM_WRAPPER)
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", self.dir.path().join("pam.d"));
    }

    /// Runs `pamtester -v` with `SSH_AUTH_INFO_0` set (unless `None`).
    pub fn pamtester(&self, user: &str, info: Option<&str>, ops: &[&str]) -> Output {
        let mut cmd = Command::new("pamtester");
        self.wrap(&mut cmd);
        cmd.arg("-v");
        if let Some(i) = info {
            cmd.arg("-E").arg(format!("SSH_AUTH_INFO_0={i}"));
        }
        cmd.arg(&self.service).arg(user).args(ops);
        cmd.output().unwrap()
    }

    /// Runs the C harness with `SSH_AUTH_INFO_0` read from a file (any size).
    pub fn harness(&self, user: &str, info: &[u8], extra: &[&str]) -> Output {
        let env = self.dir.path().join("auth_info");
        std::fs::write(&env, info).unwrap();
        let mut cmd = Command::new(harness_bin());
        self.wrap(&mut cmd);
        cmd.arg(&self.service)
            .arg(user)
            .arg("--env-file")
            .arg(&env)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        remove_pam_wrapper_dirs_of(pid);
        out
    }

    pub fn spool_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("s"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Compiles tests/fixtures/pam_harness.c once per test binary.
pub fn harness_bin() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pam_harness.c");
        // The target dir, or /tmp when the tests run as a user who cannot write there.
        let probe = target_dir().join(format!(".probe.{}", std::process::id()));
        let dir = if std::fs::write(&probe, b"").is_ok() {
            let _ = std::fs::remove_file(&probe);
            target_dir()
        } else {
            std::env::temp_dir()
        };
        let out = dir.join(format!("pam_harness-uid{}", users_uid()));
        let tmp = dir.join(format!("pam_harness.{}.tmp", std::process::id()));
        let st = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpam")
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot compile {} (needs cc and libpam0g-dev)",
            src.display()
        );
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

pub fn text(o: &Output) -> String {
    format!(
        "status={:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// pam_wrapper keeps its copy of the service files in /tmp/pam.X and removes it at exit;
/// a harness killed by a signal (the guard's SIGTERM) leaves it behind.
fn remove_pam_wrapper_dirs_of(pid: u32) {
    let Ok(dir) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in dir.flatten() {
        let path = e.path();
        let is_wrapper_dir = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pam.") && n.len() == 5);
        if is_wrapper_dir
            && std::fs::read_to_string(path.join("pid")).is_ok_and(|p| p.trim() == pid.to_string())
        {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
