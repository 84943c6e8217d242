//! Harness for the end-to-end tests, one floor above `breakglass-test-support` (which
//! it re-exports): an in-process `breakglass-ca` serving over real sockets (mTLS on
//! loopback TCP, the admin Unix socket), hosts following it, and the real executables.
//! It depends on the daemon and the CLI, so only this crate's tests use it.

pub mod audit;
pub mod bench;
pub mod ca_process;
pub mod crash_loop;
pub mod daemon;
pub mod faults;
pub mod host;
pub mod oidc;
pub mod recording;
pub mod revocation;
pub mod sshd;
pub mod watcher;
pub mod webhook;

pub use breakglass_test_support::{
    breakglass_bin, breakglass_ca_bin, can_run, have, is_root, process, side_build, ssh_keygen,
    workspace,
};

/// The real `breakglass` executable, built (once) off the async runtime.
pub async fn breakglass_bin_built() -> std::path::PathBuf {
    let bin = tokio::task::spawn_blocking(|| breakglass_bin().clone())
        .await
        .expect("building breakglass");
    assert!(bin.exists(), "{}", bin.display());
    bin
}
