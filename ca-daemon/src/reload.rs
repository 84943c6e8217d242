//! Reload in place (SIGHUP, `systemctl reload`): the configuration file is read and
//! validated again as a whole; if it is valid and changes nothing that needs a restart, a
//! `config_reloaded` event with the file's SHA-256 is written to the audit log and then
//! the new policy, tiers (with their webhooks), identities, admin-socket users, refusal and
//! notification settings are put in force at once ([`Service::replace_live`]). Otherwise
//! nothing changes: the running configuration stays, and the error is logged naming the
//! field (or the settings that need a restart).
//!
//! Connections, calls under way, requests waiting for approval, revocation streams and
//! host sessions are not touched: each call reads the configuration once when it starts
//! ([`crate::service::Live`]), and the next call reads the new one.

use std::path::Path;
use std::sync::Arc;

use breakglass_proto::audit::event::ConfigReloaded;
use breakglass_proto::audit::{Actor, Event, EventKind};
use tokio::signal::unix::Signal;
use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::service::Service;

/// Why a reload was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is unreadable or invalid (the error names the field).
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The file changes settings that only a restart can change.
    #[error(
        "{}: {} cannot change while the daemon runs; restart it (`systemctl restart breakglass-ca`) to change them, or put the running values back",
        path.display(),
        names.join(", ")
    )]
    NeedsRestart {
        /// The configuration file.
        path: std::path::PathBuf,
        /// The settings, as written in the file (`server.listen`).
        names: Vec<&'static str>,
    },
    /// The `config_reloaded` event could not be written: nothing was changed.
    #[error("the audit log did not take the config_reloaded event, so nothing was changed: {0}")]
    Audit(Error),
}

/// What a reload put in force.
#[derive(Debug)]
pub struct Reloaded {
    /// The new configuration.
    pub config: Config,
    /// SHA-256 of the file as read.
    pub sha256: [u8; 32],
    /// Leaf index of the `config_reloaded` event.
    pub index: u64,
}

/// The settings of `new` that differ from `running` but cannot change in place: the
/// listeners (the metrics listener too), the log format, recording retention, the TLS material and the CA keys, the audit log and its key, the revocation
/// administrators and audit readers (the access layer's rules), and the notification
/// queue, syslog and CA bundle (fixed when delivery starts). Paths are compared, not the
/// files' contents: a key replaced under the same name needs a restart to be read.
#[must_use]
pub fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (running, new);
    let checks: [(&'static str, bool); 27] = [
        ("server.listen", a.server.listen != b.server.listen),
        (
            "server.admin_socket",
            a.server.admin_socket != b.server.admin_socket,
        ),
        ("server.tls_cert", a.server.tls_cert != b.server.tls_cert),
        ("server.tls_key", a.server.tls_key != b.server.tls_key),
        ("server.client_ca", a.server.client_ca != b.server.client_ca),
        (
            "server.handshake_timeout",
            a.server.handshake_timeout != b.server.handshake_timeout,
        ),
        (
            "server.max_connections",
            a.server.max_connections != b.server.max_connections,
        ),
        (
            "server.max_handshakes",
            a.server.max_handshakes != b.server.max_handshakes,
        ),
        (
            "server.max_handshakes_per_source",
            a.server.max_handshakes_per_source != b.server.max_handshakes_per_source,
        ),
        (
            "server.shutdown_grace",
            a.server.shutdown_grace != b.server.shutdown_grace,
        ),
        ("ca.signing_key", a.ca.signing_key != b.ca.signing_key),
        (
            "ca.extra_public_keys",
            a.ca.extra_public_keys != b.ca.extra_public_keys,
        ),
        ("ca.backdate", a.ca.backdate != b.ca.backdate),
        ("audit.dir", a.audit.dir != b.audit.dir),
        ("audit.key", a.audit.key != b.audit.key),
        ("audit.origin", a.audit.origin != b.audit.origin),
        (
            "audit.segment_max_mib",
            a.audit.segment_max_bytes != b.audit.segment_max_bytes,
        ),
        ("audit.max_batch", a.audit.max_batch != b.audit.max_batch),
        (
            "audit.reader_groups",
            a.audit.reader_groups != b.audit.reader_groups,
        ),
        (
            "audit.syslog_socket",
            a.audit.syslog_socket != b.audit.syslog_socket,
        ),
        (
            "revocation.admin_groups",
            a.revocation.admin_groups != b.revocation.admin_groups,
        ),
        (
            "notifications.queue",
            a.notifications.queue != b.notifications.queue,
        ),
        (
            "notifications.syslog, notifications.syslog_socket",
            a.notifications.syslog != b.notifications.syslog
                || a.notifications.syslog_socket != b.notifications.syslog_socket,
        ),
        (
            "notifications.ca_bundle",
            a.notifications.ca_bundle != b.notifications.ca_bundle,
        ),
        (
            "server.metrics_listen",
            a.server.metrics_listen != b.server.metrics_listen,
        ),
        ("log.format", a.log.format != b.log.format),
        ("recordings.keep", a.recordings.keep != b.recordings.keep),
    ];
    checks
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}

/// Reads `path` again and, if it is valid and changes only what may change in place,
/// records `config_reloaded` and puts it in force. On any error nothing changes.
pub async fn reload(
    service: &Service,
    running: &Config,
    path: &Path,
) -> Result<Reloaded, ReloadError> {
    let (config, sha256) = Config::load_hashed(path)?;
    let names = needs_restart(running, &config);
    if !names.is_empty() {
        return Err(ReloadError::NeedsRestart {
            path: path.to_owned(),
            names,
        });
    }
    let (_, at) = crate::service::now();
    let event = Event::new(
        at,
        Actor::Daemon,
        EventKind::ConfigReloaded(ConfigReloaded {
            path: path.display().to_string(),
            sha256,
            rules: config.policy.rules().len() as u64,
            identities: config.identities.len() as u64,
        }),
    );
    // On the record first: a configuration in force that the log does not show would be
    // a state change without its event.
    let index = service.record(event).await.map_err(ReloadError::Audit)?;
    service.replace_live(&config);
    Ok(Reloaded {
        config,
        sha256,
        index,
    })
}

/// Reloads `running`'s file on every signal from `hangup` until `stop` turns true,
/// telling systemd (`RELOADING=1`, then `READY=1`) and logging the outcome.
pub fn spawn(
    service: Arc<Service>,
    mut running: Config,
    mut hangup: Signal,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            crate::systemd::reloading();
            let path = running.path.clone();
            tracing::info!(config = %path.display(), "SIGHUP received: reloading the configuration");
            let outcome = reload(&service, &running, &path).await;
            service.metrics().config_reload(match &outcome {
                Ok(_) => "reloaded",
                Err(ReloadError::Invalid(_)) => "invalid",
                Err(ReloadError::NeedsRestart { .. }) => "needs_restart",
                Err(ReloadError::Audit(_)) => "error",
            });
            match outcome {
                Ok(r) => {
                    let sha: String = r.sha256.iter().map(|b| format!("{b:02x}")).collect();
                    tracing::info!(
                        config = %path.display(),
                        sha256 = %sha,
                        rules = r.config.policy.rules().len(),
                        identities = r.config.identities.len(),
                        event = r.index,
                        "configuration reloaded"
                    );
                    running = r.config;
                    crate::systemd::ready("serving (configuration reloaded)");
                }
                Err(e) => {
                    match &e {
                        ReloadError::Invalid(c) => tracing::error!(
                            field = %c.field,
                            "configuration not reloaded, the running one stays in force: {e}"
                        ),
                        _ => tracing::error!(
                            "configuration not reloaded, the running one stays in force: {e}"
                        ),
                    }
                    crate::systemd::ready("serving (configuration reload refused; see the log)");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init;

    fn dev_config(dir: &Path) -> Config {
        init::init_dev(dir, "127.0.0.1:0".parse().unwrap()).unwrap();
        Config::load(&dir.join(init::CONFIG_FILE)).unwrap()
    }

    #[test]
    fn the_same_file_needs_no_restart_and_fixed_settings_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let running = dev_config(tmp.path());
        assert!(needs_restart(&running, &running.clone()).is_empty());
        let mut new = running.clone();
        new.server.listen = "127.0.0.1:1".parse().unwrap();
        new.audit.dir = "/elsewhere".into();
        new.ca.max_ttl /= 2; // may change in place
        assert_eq!(
            needs_restart(&running, &new),
            vec!["server.listen", "audit.dir"]
        );
    }

    #[test]
    fn every_setting_named_as_needing_a_restart_is_a_key_of_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let running = dev_config(tmp.path());
        let mut new = running.clone();
        // Change everything needs_restart compares, so that it names every setting.
        new.server.listen = "127.0.0.1:1".parse().unwrap();
        new.server.admin_socket = None;
        new.server.tls_cert = "x".into();
        new.server.tls_key = "x".into();
        new.server.client_ca = "x".into();
        new.server.handshake_timeout *= 2;
        new.server.max_connections = Some(7);
        new.server.max_handshakes += 1;
        new.server.max_handshakes_per_source += 1;
        new.server.shutdown_grace *= 2;
        new.ca.signing_key = "x".into();
        new.ca.extra_public_keys = vec!["x".into()];
        new.ca.backdate *= 2;
        new.audit.dir = "x".into();
        new.audit.key = "x".into();
        new.audit.origin = "x".into();
        new.audit.segment_max_bytes += 1;
        new.audit.max_batch += 1;
        new.audit.reader_groups = vec![];
        new.audit.syslog_socket = "x".into();
        new.revocation.admin_groups = vec!["x".into()];
        new.notifications.queue += 1;
        new.notifications.syslog = !new.notifications.syslog;
        new.notifications.ca_bundle = "x".into();
        new.server.metrics_listen = None;
        new.log.format = crate::config::LogFormat::Json;
        let named = needs_restart(&running, &new);
        assert_eq!(named.len(), 26, "{named:?}");
        for names in named {
            for name in names.split(", ") {
                let (section, key) = name.split_once('.').unwrap();
                assert!(
                    crate::config::keys::KEYS
                        .iter()
                        .any(|k| k.section == section && k.name == key),
                    "{name} is not a key of breakglass-ca.toml(5)"
                );
            }
        }
    }
}
