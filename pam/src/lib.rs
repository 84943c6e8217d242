//! `pam_breakglass.so`: a PAM session module for sshd that re-verifies the breakglass
//! certificate a login used, binds the session to it, and has a detached session guard
//! end the session when the certificate expires.
//!
//! Layout, in floors (arrows only point down):
//! - top: [`hooks`], the `pam_sm_*` entry points and libpam calls (`unsafe`);
//! - logic: [`module`] decides (against the `Pam` and `Host` traits); [`host`] is the
//!   real `Host`; [`verify`] and [`krl`] check certificates; [`guard`] and [`procs`]
//!   end sessions; [`record`], [`files`] and [`log`] write the spool and syslog;
//!   [`config`] and [`error`] are the options and the reasons to deny;
//! - bottom: [`system`], the Linux system calls (`unsafe`), which knows nothing above it.
//!
//! Only `hooks` and `system` may use `unsafe`; every other module forbids it.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod error;
pub mod files;
pub mod guard;
pub mod hooks;
pub mod host;
pub mod krl;
pub mod log;
pub mod module;
pub mod procs;
pub mod record;
pub mod recorder;
pub mod recording;
pub mod slots;
pub mod system;
#[cfg(test)]
mod testutil;
pub mod verify;
