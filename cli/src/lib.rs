//! `breakglass`: the command-line client for SREs, approvers, auditors and hosts.
//!
//! The binary is a thin clap front end over [`commands`] and the command modules
//! ([`approvals`], [`revoke`], [`audit`], [`drill`], [`host`]); tests and the daemon's
//! benchmark drive the same functions in-process.
//!
//! No unsafe code outside [`ffi`] (the `dlopen` of `host doctor`): every other module
//! starts with `#![forbid(unsafe_code)]`.
#![deny(unsafe_code)]

pub mod approvals;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod completions;
pub mod connect;
pub mod drill;
pub mod error;
pub mod ffi;
pub mod flags;
pub mod host;
pub mod login;
pub mod manual;
pub mod output;
#[cfg(test)]
mod printer_tests;
pub mod renewal;
pub mod revoke;
pub mod settings;
pub mod ssh;
pub mod ssh_config;
pub mod status;
pub mod wait_line;
