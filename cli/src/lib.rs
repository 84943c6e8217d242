//! `breakglass`: the command-line client for SREs, approvers, auditors and hosts.
//!
//! The binary is a thin clap front end over [`commands`]; tests and the
//! daemon's benchmark drive the same functions in-process.
// No unsafe code, except the one dlopen check in `doctor` (allowed there, with its SAFETY).
#![deny(unsafe_code)]

pub mod approvals;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod connect;
pub mod doctor;
pub mod drill;
pub mod error;
pub mod guard_sweep;
pub mod host;
pub mod krl_sync;
pub mod pam_stack;
pub mod revoke;
pub mod settings;
pub mod watch;

#[cfg(test)]
mod printer_tests;
pub mod witness;
