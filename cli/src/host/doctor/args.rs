//! What `host doctor` checks, where: its flags, and the defaults it falls back to.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

/// Default sshd executable.
pub const DEFAULT_SSHD: &str = "/usr/sbin/sshd";
/// Default sshd configuration.
pub const DEFAULT_SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// Oldest acceptable KRL when neither `--krl-max-age` nor the module's `krl_max_age=`
/// says otherwise; `breakglass-krl-sync.timer` touches it every minute.
pub const DEFAULT_KRL_MAX_AGE: Duration = Duration::from_secs(3600);

/// `breakglass host doctor`.
#[derive(Debug, Args, Clone)]
#[command(after_help = "\
Prints one line per check: `ok`, `WARN` (works, but should be fixed) or `FAIL` \
(breakglass access or its enforcement is broken here), each problem followed by the \
command or config line that fixes it, then a summary. Run it as root: `sshd -T` and the \
file checks need it. Every path can be pointed elsewhere, e.g. at a test sshd under \
pam_wrapper.

Exit status: 0 when no check FAILed (WARN lines allowed), 78 (EX_CONFIG) when any \
check FAILed, 64 for bad flags.")]
pub struct DoctorArgs {
    /// sshd executable whose effective configuration (`sshd -T`) is checked
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SSHD)]
    pub sshd: PathBuf,
    /// sshd configuration file given to `sshd -T -f`
    #[arg(long, value_name = "FILE", default_value = DEFAULT_SSHD_CONFIG)]
    pub sshd_config: PathBuf,
    /// sshd's PAM service file [default: <dir>/<file name of --sshd>, where <dir> is
    /// $PAM_WRAPPER_SERVICE_DIR if set (pam_wrapper), else /etc/pam.d]
    #[arg(long, value_name = "FILE")]
    pub pam_service: Option<PathBuf>,
    /// Directory to look for a module named without a path (repeatable)
    /// [default: /usr/lib/<multiarch>/security, /lib/<multiarch>/security,
    /// /usr/lib/security, /lib/security]
    #[arg(long, value_name = "DIR")]
    pub module_dir: Vec<PathBuf>,
    /// Oldest acceptable KRL, by modification time [default: the module's
    /// krl_max_age=, else 1h]
    #[arg(long, value_name = "DURATION", value_parser = crate::flags::parse_duration)]
    pub krl_max_age: Option<Duration>,
    /// Session guard to check [default: the module's guard=, else
    /// /usr/libexec/breakglass/breakglass-guard]
    #[arg(long, value_name = "PATH")]
    pub guard: Option<PathBuf>,
    /// Spool directory to check [default: the module's spool=, else /var/spool/breakglass]
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    #[command(flatten)]
    pub witness: crate::host::witness::WitnessArgs,
}

impl DoctorArgs {
    /// The PAM service file: the flag, else sshd's service name (its file name) in the
    /// directory libpam reads (`$PAM_WRAPPER_SERVICE_DIR` under pam_wrapper, else /etc/pam.d).
    #[must_use]
    pub fn pam_service_file(&self) -> PathBuf {
        self.pam_service.clone().unwrap_or_else(|| {
            default_pam_service(&self.sshd, std::env::var_os("PAM_WRAPPER_SERVICE_DIR"))
        })
    }

    pub(super) fn module_dirs(&self) -> Vec<PathBuf> {
        if !self.module_dir.is_empty() {
            return self.module_dir.clone();
        }
        let arch = match std::env::consts::ARCH {
            "x86" => "i386-linux-gnu",
            "arm" => "arm-linux-gnueabihf",
            "powerpc64" => "powerpc64le-linux-gnu",
            a => return multiarch_dirs(&format!("{a}-linux-gnu")),
        };
        multiarch_dirs(arch)
    }
}

/// sshd 9.2 uses its file name as the PAM service name.
fn default_pam_service(sshd: &Path, wrapper_dir: Option<std::ffi::OsString>) -> PathBuf {
    let name = sshd
        .file_name()
        .map_or_else(|| "sshd".into(), |n| n.to_string_lossy().into_owned());
    wrapper_dir
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/etc/pam.d"), PathBuf::from)
        .join(name)
}

fn multiarch_dirs(triple: &str) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/lib/{triple}/security")),
        PathBuf::from(format!("/lib/{triple}/security")),
        PathBuf::from("/usr/lib/security"),
        PathBuf::from("/lib/security"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_service_follows_sshds_file_name() {
        assert_eq!(
            default_pam_service(Path::new("/usr/sbin/sshd"), None),
            Path::new("/etc/pam.d/sshd")
        );
        assert_eq!(
            default_pam_service(
                Path::new("/tmp/demo/sshd-demo"),
                Some("/tmp/demo/pam".into())
            ),
            Path::new("/tmp/demo/pam/sshd-demo")
        );
    }
}
