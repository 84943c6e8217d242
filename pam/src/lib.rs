//! `pam_breakglass.so`: a PAM session module for sshd that re-verifies the breakglass
//! certificate a login used, binds the session to it, and has a detached session guard
//! end the session when the certificate expires.
//!
//! Layout: [`ffi`] is the only module with `unsafe` (PAM entry points, `pam_getenv`,
//! pidfd and fork/exec); [`module`] decides; [`verify`] checks certificates;
//! [`guard`] and [`procs`] end sessions; [`record`] and [`files`] write the spool.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod error;
pub mod ffi;
pub mod files;
pub mod guard;
pub mod krl;
pub mod module;
pub mod procs;
pub mod record;
#[cfg(test)]
mod testutil;
pub mod verify;
