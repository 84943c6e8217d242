//! Helpers for the revocation tests: a daemon whose config knows an admin, a second
//! requester and the test hosts, grants issued over mTLS, and the audit log read back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use breakglass_cli::commands::{self, RequestArgs, RequestOutcome};
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_proto::v1::{RequestCertificateRequest, RevokeRequest};

pub use crate::audit::verified_events as audit_events;
pub use breakglass_test_support::ssh_keygen_revoked;

use crate::daemon::TestDaemon;
use crate::sshd::ClientKey;

/// Identity of the admin the tests revoke as.
pub const ADMIN: &str = "admin@example.com";
/// A second requester (group `sre`).
pub const SRE2: &str = "sre2@example.com";

/// The dev daemon with: hosts `db-7`/`db-8` allowed to the `sre` rule, an admin
/// identity, a second SRE, and host identities for `db-7` and `db-8`.
pub async fn daemon() -> TestDaemon {
    TestDaemon::start_with(|c| {
        let mut c = c.replace(
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\"]",
            "hosts = [\"localhost\", \"127.0.0.1\", \"*.dev.example\", \"db-7\", \"db-8\"]",
        );
        c.push_str(&format!(
            "\n[[identities]]\nid = \"{ADMIN}\"\ngroups = [\"admins\"]\n\n\
             [[identities]]\nid = \"{SRE2}\"\ngroups = [\"sre\"]\n\n\
             [[identities]]\nid = \"host://db-7\"\ngroups = [\"hosts\"]\n\n\
             [[identities]]\nid = \"host://db-8\"\ngroups = [\"hosts\"]\n"
        ));
        c
    })
    .await
}

/// A grant issued to the client `who` (a [`TestDaemon::target`] name or a target):
/// a fresh key in `dir` and its certificate.
#[derive(Debug)]
pub struct Grant {
    /// Key and certificate files.
    pub key: ClientKey,
    /// Public key file.
    pub public: PathBuf,
    /// Grant id.
    pub grant_id: String,
    /// Certificate serial.
    pub serial: u64,
}

/// What `breakglass request` sends for the key `public`: `user` on `host` for `ttl`
/// seconds, for `reason`.
pub fn request_args(public: &Path, user: &str, host: &str, ttl: u64, reason: &str) -> RequestArgs {
    RequestArgs {
        hosts: vec![host.into()],
        principals: vec![user.into()],
        ttl: Duration::from_secs(ttl),
        reason: reason.into(),
        command: None,
        source_addresses: vec![],
        public_key: Some(public.to_owned()),
        permit: vec![],
        add_to_agent: None,
    }
}

/// The wire request for a certificate for the key `public_key` (its OpenSSH line):
/// `principal` on `host` for `ttl` seconds, for `reason`.
pub fn certificate_request(
    public_key: &str,
    principal: &str,
    host: &str,
    ttl: i64,
    reason: &str,
) -> RequestCertificateRequest {
    RequestCertificateRequest {
        public_key: public_key.to_owned(),
        principals: vec![principal.into()],
        hosts: vec![host.into()],
        ttl_seconds: ttl,
        reason: reason.into(),
        ..Default::default()
    }
}

/// The key and certificate `breakglass request` wrote.
pub fn client_key(outcome: &RequestOutcome) -> ClientKey {
    ClientKey {
        key_path: outcome.paths.private.clone(),
        cert_path: Some(outcome.paths.certificate.clone()),
        valid_before: Some(outcome.response.valid_before as u64),
    }
}

/// A revocation of `selector` for `reason`.
pub fn revoke_request(selector: Selector, reason: &str) -> RevokeRequest {
    RevokeRequest {
        target: Some(selector),
        reason: reason.into(),
    }
}

/// Requests a grant for `user` on `host` as `target`.
pub async fn issue(
    target: &breakglass_cli::settings::Target,
    dir: &Path,
    name: &str,
    user: &str,
    host: &str,
    ttl: u64,
) -> Grant {
    let public = crate::ssh_keygen(dir, name, &["-t", "ed25519"]);
    let a = request_args(&public, user, host, ttl, "INC-6 revocation test");
    let outcome = commands::request(target, &a)
        .await
        .expect("certificate issued");
    Grant {
        key: client_key(&outcome),
        public,
        grant_id: outcome.response.grant_id,
        serial: outcome.response.serial,
    }
}
