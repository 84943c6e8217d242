//! `pam_breakglass.so` through real libpam without touching `/etc/pam.d`: a PAM service
//! directory for pam_wrapper, run by `pamtester` or by the small C harness in
//! `test-support/fixtures/pam_harness.c`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use ssh_key::PrivateKey;

use crate::artifacts::{pam_artifacts, target_dir, workspace};
use crate::cert::new_key;
use crate::syslog::SyslogCapture;

/// The pam_wrapper preload library (Debian `libpam-wrapper`).
pub const PAM_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so";
/// The stock `pam_loginuid.so`.
pub const PAM_LOGINUID: &str = "/lib/x86_64-linux-gnu/security/pam_loginuid.so";
/// The stock `pam_permit.so`.
pub const PAM_PERMIT: &str = "/lib/x86_64-linux-gnu/security/pam_permit.so";

/// A PAM service directory for pam_wrapper plus everything the module needs: a CA it
/// trusts, a spool, the guard and a syslog socket.
#[derive(Debug)]
pub struct Stack {
    /// The directory (service files, CA, spool, syslog socket).
    pub dir: tempfile::TempDir,
    /// The CA the module trusts.
    pub ca: PrivateKey,
    /// What the module and the guard log.
    pub syslog: SyslogCapture,
    /// The PAM service name.
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
            .expect("tempdir");
        let ca = new_key();
        let ca_pub = dir.path().join("c.pub");
        std::fs::write(
            &ca_pub,
            ca.public_key().to_openssh().expect("encode key") + "\n",
        )
        .expect("write c.pub");
        let syslog = SyslogCapture::bind_at(dir.path().join("l"));
        let artifacts = pam_artifacts();
        let so = dir.path().join("m.so");
        std::os::unix::fs::symlink(&artifacts.module, &so).expect("link the module");
        let guard = dir.path().join("g");
        std::os::unix::fs::symlink(&artifacts.guard, &guard).expect("link the guard");
        let svc_dir = dir.path().join("pam.d");
        std::fs::create_dir(&svc_dir).expect("mkdir pam.d");
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
        std::fs::write(svc_dir.join(&service), text).expect("write the service file");
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
        cmd.output().expect("pamtester runs")
    }

    /// Runs the C harness with `SSH_AUTH_INFO_0` read from a file (any size).
    pub fn harness(&self, user: &str, info: &[u8], extra: &[&str]) -> Output {
        let env = self.dir.path().join("auth_info");
        std::fs::write(&env, info).expect("write auth_info");
        let mut cmd = Command::new(harness_bin());
        self.wrap(&mut cmd);
        cmd.arg(&self.service)
            .arg(user)
            .arg("--env-file")
            .arg(&env)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("the harness runs");
        let pid = child.id();
        let out = child.wait_with_output().expect("the harness ends");
        remove_pam_wrapper_dirs_of(pid);
        out
    }

    /// Names of the files in the module's spool directory.
    pub fn spool_files(&self) -> Vec<String> {
        crate::fs::file_names(&self.dir.path().join("s"))
    }
}

/// Compiles `test-support/fixtures/pam_harness.c` once per test process.
pub fn harness_bin() -> PathBuf {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let src = workspace().join("test-support/fixtures/pam_harness.c");
        // The target dir, or /tmp when the tests run as a user who cannot write there.
        let probe = target_dir().join(format!(".probe.{}", std::process::id()));
        let dir = if std::fs::write(&probe, b"").is_ok() {
            let _ = std::fs::remove_file(&probe);
            target_dir()
        } else {
            std::env::temp_dir()
        };
        let out = dir.join(format!("pam_harness-uid{}", nix::unistd::geteuid()));
        let tmp = dir.join(format!("pam_harness.{}.tmp", std::process::id()));
        let st = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpam")
            .status()
            .expect("cc runs");
        assert!(
            st.success(),
            "cannot compile {} (needs cc and libpam0g-dev)",
            src.display()
        );
        std::fs::rename(&tmp, &out).expect("move the harness in place");
        out
    })
    .clone()
}

/// pam_wrapper keeps its copy of the service files in /tmp/pam.X and removes it at exit;
/// a harness killed by a signal (the guard's SIGTERM) leaves it behind.
pub fn remove_pam_wrapper_dirs_of(pid: u32) {
    for dir in pam_wrapper_dirs() {
        if std::fs::read_to_string(dir.join("pid")).is_ok_and(|p| p.trim() == pid.to_string()) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// pam_wrapper's copies of service directories in /tmp (`/tmp/pam.X`).
pub fn pam_wrapper_dirs() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/tmp") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pam.") && n.len() == 5)
        })
        .collect()
}
