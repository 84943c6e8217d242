//! The one test harness of the workspace: the real tools the tests drive (`ssh-keygen`,
//! `sshd` under its own PAM service, `ssh`, libpam under pam_wrapper, a syslog socket),
//! certificates following the breakglass profile, throw-away users, processes and file
//! systems, and the rule for tests that cannot run here.
//!
//! **Why it depends on nothing of ours but the contract crate.** Every crate's tests use
//! it, so it must sit below all of them. A crate may dev-depend on a crate that depends
//! on it, but its unit tests are then built against a second copy of it: two
//! `pam_breakglass::Config`s that do not unify. With only `breakglass-proto` (without
//! its wire types or tokio's runtime) and std-level crates beneath it, the daemon, the CLI
//! and the PAM module can use it from their unit and integration tests alike, and the
//! module's tests still build no gRPC stack. The contract crate's integration tests use
//! it too; its unit tests only use what takes none of its types (`oracle`): they link a
//! second copy of the contract crate through this one, whose types would not unify with
//! their own. Harness pieces that need the daemon or the CLI (an in-process daemon, hosts
//! following it) live one floor up, in `breakglass-tests` (`tests/src`), which
//! re-exports this crate.
//!
//! Test files are named `<area>[_<aspect>].rs` after the behaviour they cover (the word
//! the README uses: approvals, audit, revocation, pam…) and, where an area has several
//! files, the aspect or the real part they drive (`_api` over gRPC, `_sshd` with a real
//! sshd, `_faults` under damage); no `_e2e`/`_test` suffix: the directory says the layer
//! (`<crate>/tests/` drives that crate's public face, `tests/tests/` the whole system).

pub mod artifacts;
pub mod ca;
pub mod cert;
pub mod fs;
pub mod machine;
pub mod oracle;
pub mod pam_wrapper;
pub mod postgres;
pub mod process;
pub mod sshd;
pub mod syslog;
pub mod users;
pub mod wait;

pub use artifacts::{breakglass_bin, breakglass_ca_bin, pam_artifacts, side_build, workspace};
pub use cert::{ssh_keygen, ssh_keygen_revoked};
pub use fs::{packaging, packaging_dir, write_lines};
pub use machine::{can_run, free_port, have, is_root, require_root, unix_now};
pub use process::{output_text, run_ok};
