//! `breakglass-ca`: the certificate authority daemon.
//!
//! Where things happen:
//! - [`config`]: the TOML configuration, validated before anything binds;
//! - [`identity`]: who is calling (mTLS SAN or `SO_PEERCRED`); [`access`]: who may call what;
//! - [`request`]: validation of every request field;
//! - [`policy`]: the access decision and risk tiers;
//! - [`refusal`]: refusals by policy on the record (audit events, limit, alert);
//! - [`service`]: the request lifecycle (pending, approvals, issuance, review), with
//!   [`Service::record`](service::Service::record), the one way state changes;
//! - [`notify`]: webhooks and syslog lines about requests;
//! - [`certificate`]: building and signing the OpenSSH certificate;
//! - [`audit`]: the signed audit log; [`state`]: what the daemon knows, rebuilt from it;
//! - [`api`]: the gRPC faces, one per service, translating wire ↔ domain;
//!   [`server`]: listeners, shutdown;
//! - [`accept`]: the TCP front door (handshake limits, descriptor budget, backoff);
//! - [`revocation`]: revoking grants, the KRL, the revocation stream; [`hosts`]: host
//!   session records into the log; [`audit_syslog`]: one syslog line per logged event;
//! - [`witness`]: hosts witness the log; a rolled-back or forked log stops issuance;
//! - [`systemd`]: readiness, reload and watchdog notifications; [`reload`]: the
//!   configuration re-read in place on SIGHUP;
//! - [`metrics`]: metrics and probes on the plain-HTTP `metrics_listen` listener;
//! - [`cli`]: the command line (also the source of the man pages); [`logging`]: the
//!   daemon's own log lines (text or JSON);
//! - [`init`]: the dev setup;
//! - [`inproc`]: the API called in-process with encoded messages (fuzzing, seeds).
#![forbid(unsafe_code)]

pub mod accept;
pub mod access;
pub mod admin;
pub mod api;
pub mod audit;
pub mod audit_syslog;
pub mod audit_transfer;
pub mod certificate;
pub mod cli;
pub mod client_ca;
pub mod config;
pub mod enrollment;
pub mod error;
pub mod history;
pub mod hosts;
pub mod identity;
pub mod init;
pub mod inproc;
pub mod keyfile;
pub mod krl;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod policy;
pub mod recordings;
pub mod refusal;
pub mod reload;
pub mod request;
pub mod revocation;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod ssh_signature;
pub mod state;
pub mod systemd;
pub mod tls;
pub mod witness;

/// Formats a duration the way configs and messages write it (`30m`, `2h 5m`).
pub fn fmt_duration(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}
