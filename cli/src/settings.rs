//! Connection settings: flags, then environment variables, then a small
//! client config file (`--config`, `BREAKGLASS_CONFIG`, or
//! `~/.config/breakglass/client.toml`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CliError;

/// The client config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// `https://host:port` or `unix:///path/to/admin.sock`.
    pub server: Option<String>,
    /// CA certificate that signed the daemon's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub key: Option<PathBuf>,
    /// Name to check in the server certificate, if not the host of `server`.
    pub server_name: Option<String>,
    /// Hosts: the audit log's public key (`log.pub`) to pin when witnessing the log.
    pub audit_key: Option<PathBuf>,
    /// Hosts: the witness state file (the latest checkpoint of the log this host verified).
    pub witness_state: Option<PathBuf>,
    /// Several daemons of one log (`https://` addresses), tried in order: a call goes to
    /// the next when one cannot be reached or answers `UNAVAILABLE`. With `server`, it
    /// comes first.
    pub servers: Option<Vec<String>>,
}

/// Settings given on the command line or in the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Explicit config file.
    pub config: Option<PathBuf>,
    /// Server address (the first, when several are given).
    pub server: Option<String>,
    /// Further daemons of the same log, tried in order after `server`.
    pub fallbacks: Vec<String>,
    /// CA certificate.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// TLS server name.
    pub server_name: Option<String>,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub enum Target {
    /// mTLS over TCP.
    Tls {
        /// `https://host:port`.
        url: String,
        /// Further daemons of the same log (`https://host:port`), tried in order when one
        /// cannot take a call ([`crate::connect::Channel`]).
        fallbacks: Vec<String>,
        /// CA certificate path.
        ca_cert: PathBuf,
        /// Client certificate path.
        cert: PathBuf,
        /// Client key path.
        key: PathBuf,
        /// Server name to verify.
        server_name: Option<String>,
    },
    /// The daemon's local admin socket.
    Unix(PathBuf),
}

impl Target {
    /// The address, for messages.
    pub fn shown(&self) -> String {
        match self {
            Target::Tls { url, fallbacks, .. } if fallbacks.is_empty() => url.clone(),
            Target::Tls { url, fallbacks, .. } => format!("{url} (or {})", fallbacks.join(", ")),
            Target::Unix(p) => format!("unix://{}", p.display()),
        }
    }
}

fn default_config() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let p = base.join("breakglass/client.toml");
    p.exists().then_some(p)
}

/// Reads a client config file; relative paths in it are made relative to its directory.
pub fn read_client_file(path: &Path) -> Result<ClientFile, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("client config {}: {e}", path.display())))?;
    let mut f: ClientFile = toml::from_str(&text)
        .map_err(|e| CliError::Config(format!("client config {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [
        &mut f.ca_cert,
        &mut f.cert,
        &mut f.key,
        &mut f.audit_key,
        &mut f.witness_state,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(f)
}

impl Overrides {
    /// The client config file in effect (`--config`, `BREAKGLASS_CONFIG` or the default
    /// one), or an empty one when there is none.
    pub fn client_file(&self) -> Result<ClientFile, CliError> {
        match self.config.clone().or_else(default_config) {
            Some(p) => read_client_file(&p),
            None => Ok(ClientFile::default()),
        }
    }

    /// The daemons' addresses in the order to try them: the flags' (`--server`, repeated),
    /// else `file`'s `server` then its `servers`; each once.
    #[must_use]
    pub fn servers(&self, file: &ClientFile) -> Vec<String> {
        let mut servers: Vec<String> = match &self.server {
            Some(first) => std::iter::once(first.clone())
                .chain(self.fallbacks.iter().cloned())
                .collect(),
            None => file
                .server
                .clone()
                .into_iter()
                .chain(file.servers.clone().unwrap_or_default())
                .collect(),
        };
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| seen.insert(s.clone()));
        servers
    }

    /// Merges flags/env with the config file into a connection target.
    pub fn resolve(&self) -> Result<Target, CliError> {
        let file = self.client_file()?;
        let mut servers = self.servers(&file);
        let Some(server) = servers.first().cloned() else {
            return Err(CliError::Usage(
                "no server given: pass --server https://HOST:PORT (or BREAKGLASS_SERVER, or a client config file with --config)".into(),
            ));
        };
        if let Some(path) = server.strip_prefix("unix://") {
            if servers.len() > 1 {
                return Err(CliError::Usage(format!(
                    "{server} is the local admin socket of one daemon: give it alone, not among several servers"
                )));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        if let Some(bad) = servers.iter().find(|s| !s.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "server {bad:?} must start with https:// (mTLS) or unix:// (local admin socket, alone)"
            )));
        }
        let need = |v: Option<PathBuf>, what: &str, flag: &str| {
            v.ok_or_else(|| {
                CliError::Usage(format!(
                    "no {what} given: pass {flag} (or set it in the client config file)"
                ))
            })
        };
        Ok(Target::Tls {
            url: server,
            fallbacks: servers.split_off(1),
            ca_cert: need(
                self.ca_cert.clone().or(file.ca_cert),
                "CA certificate",
                "--ca-cert",
            )?,
            cert: need(
                self.cert.clone().or(file.cert),
                "client certificate",
                "--cert",
            )?,
            key: need(self.key.clone().or(file.key), "client key", "--key")?,
            server_name: self.server_name.clone().or(file.server_name),
        })
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The example /etc/breakglass/host.toml the Debian package ships parses, with every
    /// setting it shows uncommented.
    #[test]
    fn packaged_host_toml_example_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/hosts/host.example.toml");
        let f = read_client_file(&path).expect("the packaged host.toml example");
        assert_eq!(
            f.server.as_deref(),
            Some("https://ca.example.internal:7443")
        );
        assert_eq!(
            f.cert.as_deref(),
            Some(Path::new("/etc/breakglass/host.crt"))
        );
        assert_eq!(
            f.key.as_deref(),
            Some(Path::new("/etc/breakglass/host.key"))
        );
        assert_eq!(
            f.audit_key.as_deref(),
            Some(Path::new("/etc/breakglass/log.pub"))
        );
        let text = std::fs::read_to_string(&path).expect("read");
        let uncommented = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = "))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let all: ClientFile = toml::from_str(&uncommented).expect("with the commented settings");
        assert!(all.server_name.is_some() && all.witness_state.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("client.toml");
        std::fs::write(
            &p,
            format!("{text}\nca_cert = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n"),
        )
        .unwrap();
        p
    }

    fn servers(t: &Target) -> Vec<String> {
        match t {
            Target::Tls { url, fallbacks, .. } => std::iter::once(url.clone())
                .chain(fallbacks.iter().cloned())
                .collect(),
            Target::Unix(p) => vec![format!("unix://{}", p.display())],
        }
    }

    #[test]
    fn several_servers_come_from_the_flags_or_else_the_file_in_order_without_repeats() {
        let d = tempfile::tempdir().unwrap();
        let file = config(
            d.path(),
            "server = \"https://a:1\"\nservers = [\"https://b:1\", \"https://a:1\", \"https://c:1\"]",
        );
        let from_file = Overrides {
            config: Some(file.clone()),
            ..Overrides::default()
        };
        let t = from_file.resolve().unwrap();
        assert_eq!(servers(&t), ["https://a:1", "https://b:1", "https://c:1"]);
        assert_eq!(t.shown(), "https://a:1 (or https://b:1, https://c:1)");
        let flags = Overrides {
            config: Some(file),
            server: Some("https://x:1".into()),
            fallbacks: vec!["https://y:1".into()],
            ..Overrides::default()
        };
        assert_eq!(
            servers(&flags.resolve().unwrap()),
            ["https://x:1", "https://y:1"]
        );
    }

    #[test]
    fn an_admin_socket_is_never_one_of_several_and_every_address_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let o = |server: &str, more: &[&str]| Overrides {
            config: Some(config(d.path(), "")),
            server: Some(server.into()),
            fallbacks: more.iter().map(|s| (*s).to_owned()).collect(),
            ..Overrides::default()
        };
        let e = o("unix:///run/a.sock", &["https://b:1"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("give it alone"), "{e}");
        let e = o("https://a:1", &["http://b:1"]).resolve().unwrap_err();
        assert!(
            e.to_string()
                .contains("\"http://b:1\" must start with https://"),
            "{e}"
        );
        assert!(matches!(
            o("unix:///run/a.sock", &[]).resolve().unwrap(),
            Target::Unix(_)
        ));
    }
}
