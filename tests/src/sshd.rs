//! Real sshd, ssh, certificates, users and syslog for the end-to-end tests: the shared
//! harness of `breakglass-test-support`, under the names these tests have always used.

pub use breakglass_test_support::artifacts::{PamArtifacts, pam_artifacts};
pub use breakglass_test_support::cert::{
    CertSpec, ClientKey, TestCa, new_key, sign_cert, write_private_key,
};
pub use breakglass_test_support::process::{cmdline, processes_where};
pub use breakglass_test_support::sshd::{SshSession, Sshd, SshdOptions, ssh_command};
pub use breakglass_test_support::syslog::SyslogCapture;
pub use breakglass_test_support::users::{TestUser, user_processes_matching};
pub use breakglass_test_support::{free_port, require_root, unix_now};
