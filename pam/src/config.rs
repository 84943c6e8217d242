//! Module arguments (`key=value` tokens from the PAM service file).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use breakglass_proto::names;

use crate::error::Error;

/// Default spool directory for session records.
pub const DEFAULT_SPOOL: &str = "/var/spool/breakglass";
/// Default path of the session guard executable.
pub const DEFAULT_GUARD: &str = "/usr/libexec/breakglass/breakglass-guard";
/// Default lead time of the expiry warning.
pub const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(120);
/// Time the guard gives the sshd session process to exit after SIGTERM before SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Every option the module understands, for error messages.
pub const KNOWN_OPTIONS: &str = "ca_keys=, krl=, krl_max_age=, krl_fail=, host=, require, warn_before=, spool=, guard=, syslog=, sessions=, ship=, ship_config=, debug";

/// What to do when the KRL is older than `krl_max_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KrlFail {
    /// Deny the session (the default: a stale KRL may miss revocations).
    Closed,
    /// Log loudly and let the session open.
    Open,
}

/// Validated module configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// File of trusted CA public keys (OpenSSH `TrustedUserCAKeys` format).
    pub ca_keys: PathBuf,
    /// Optional OpenSSH KRL; certificates it revokes are denied.
    pub krl: Option<PathBuf>,
    /// This host's name as matched against the certificate's host scope (default: kernel hostname).
    pub host: Option<String>,
    /// Deny logins that do not use a breakglass certificate.
    pub require: bool,
    /// How long before expiry the guard warns the session's terminal.
    pub warn_before: Duration,
    /// Durable spool directory for session records.
    pub spool: PathBuf,
    /// Session guard executable.
    pub guard: PathBuf,
    /// Syslog datagram socket.
    pub syslog: PathBuf,
    /// Log decisions that are otherwise silent (ignored logins).
    pub debug: bool,
    /// Oldest acceptable KRL (by modification time; `breakglass host sync-krl` touches
    /// it on every verified sync), if checked.
    pub krl_max_age: Option<Duration>,
    /// What a stale KRL does.
    pub krl_fail: KrlFail,
    /// Run directory where guards register sessions for live revocation.
    pub sessions: PathBuf,
    /// `breakglass` executable the guard starts (`host ship`) after each spool record,
    /// with its client config file; `None`: records wait for the shipping timer.
    pub ship: Option<crate::guard::ShipSpec>,
}

impl Config {
    /// Parses the module arguments; any unknown, repeated or malformed option is an error
    /// naming it.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, Error> {
        let mut ca_keys = None;
        let mut krl = None;
        let mut host = None;
        let mut require = false;
        let mut warn_before = None;
        let mut spool = None;
        let mut guard = None;
        let mut syslog = None;
        let mut debug = false;
        let mut krl_max_age = None;
        let mut krl_fail = None;
        let mut sessions = None;
        let mut ship = None;
        let mut ship_config = None;
        let mut seen: Vec<&str> = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            if seen.contains(&key) {
                return Err(Error::Option(format!("option `{key}` is given twice")));
            }
            seen.push(key);
            match (key, value) {
                ("ca_keys", Some(v)) => ca_keys = Some(abs_path(key, v)?),
                ("krl", Some(v)) => krl = Some(abs_path(key, v)?),
                ("host", Some(v)) => {
                    names::check_host_pattern(v)
                        .map_err(|e| Error::Option(format!("option `host`: {e}")))?;
                    if v.contains(['*', '?']) {
                        return Err(Error::Option(format!(
                            "option `host={v}`: give this host's own name, not a pattern"
                        )));
                    }
                    host = Some(v.to_owned());
                }
                ("warn_before", Some(v)) => warn_before = Some(parse_duration(key, v)?),
                ("spool", Some(v)) => spool = Some(abs_path(key, v)?),
                ("guard", Some(v)) => guard = Some(abs_path(key, v)?),
                ("syslog", Some(v)) => syslog = Some(abs_path(key, v)?),
                ("sessions", Some(v)) => sessions = Some(abs_path(key, v)?),
                ("ship", Some(v)) => ship = Some(abs_path(key, v)?),
                ("ship_config", Some(v)) => ship_config = Some(abs_path(key, v)?),
                ("krl_max_age", Some(v)) => {
                    let d = parse_duration(key, v)?;
                    if d.is_zero() {
                        return Err(Error::Option(
                            "option `krl_max_age=0`: give the longest acceptable KRL age, e.g. 15m"
                                .into(),
                        ));
                    }
                    krl_max_age = Some(d);
                }
                ("krl_fail", Some("open")) => krl_fail = Some(KrlFail::Open),
                ("krl_fail", Some("closed")) => krl_fail = Some(KrlFail::Closed),
                ("krl_fail", Some(v)) => {
                    return Err(Error::Option(format!(
                        "option `krl_fail={}`: use `open` or `closed`",
                        v.escape_debug()
                    )));
                }
                ("require", None) => require = true,
                ("debug", None) => debug = true,
                ("require" | "debug", Some(_)) => {
                    return Err(Error::Option(format!(
                        "option `{arg}`: `{key}` is a flag and takes no value"
                    )));
                }
                (
                    "ca_keys" | "krl" | "host" | "warn_before" | "spool" | "guard" | "syslog"
                    | "sessions" | "krl_max_age" | "krl_fail" | "ship" | "ship_config",
                    None,
                ) => {
                    return Err(Error::Option(format!(
                        "option `{key}` needs a value (`{key}=...`)"
                    )));
                }
                _ => {
                    return Err(Error::Option(format!(
                        "unknown option `{}`; known options: {KNOWN_OPTIONS}",
                        arg.escape_debug()
                    )));
                }
            }
        }
        let ca_keys = ca_keys.ok_or_else(|| {
            Error::Option(
                "option `ca_keys=` is required: the file of CA public keys breakglass certificates are signed by"
                    .into(),
            )
        })?;
        if (krl_max_age.is_some() || krl_fail.is_some()) && krl.is_none() {
            return Err(Error::Option(
                "options `krl_max_age=`/`krl_fail=` check the KRL: give it with `krl=`".into(),
            ));
        }
        let ship = match (ship, ship_config) {
            (Some(program), Some(config)) => Some(crate::guard::ShipSpec { program, config }),
            (None, None) => None,
            _ => {
                return Err(Error::Option(
                    "options `ship=` (the breakglass executable) and `ship_config=` (its client config with this host's certificate) go together".into(),
                ));
            }
        };
        if krl_fail.is_some() && krl_max_age.is_none() {
            return Err(Error::Option(
                "option `krl_fail=` applies to `krl_max_age=`: give both".into(),
            ));
        }
        Ok(Self {
            krl_max_age,
            krl_fail: krl_fail.unwrap_or(KrlFail::Closed),
            sessions: sessions.unwrap_or_else(|| breakglass_proto::sessions::DEFAULT_DIR.into()),
            ca_keys,
            krl,
            host,
            require,
            warn_before: warn_before.unwrap_or(DEFAULT_WARN_BEFORE),
            spool: spool.unwrap_or_else(|| DEFAULT_SPOOL.into()),
            guard: guard.unwrap_or_else(|| DEFAULT_GUARD.into()),
            syslog: syslog.unwrap_or_else(|| bg_syslog::DEFAULT_SOCKET.into()),
            debug,
            ship,
        })
    }

    /// The syslog socket named by the arguments, read leniently so that an error in
    /// another option can still be logged where the admin looks for it.
    #[must_use]
    pub fn syslog_hint<S: AsRef<str>>(args: &[S]) -> PathBuf {
        args.iter()
            .filter_map(|a| a.as_ref().strip_prefix("syslog="))
            .find(|v| v.starts_with('/'))
            .map_or_else(|| bg_syslog::DEFAULT_SOCKET.into(), PathBuf::from)
    }

    /// The guard path named by the arguments, read leniently (see [`Config::syslog_hint`]).
    #[must_use]
    pub fn guard_hint<S: AsRef<str>>(args: &[S]) -> PathBuf {
        args.iter()
            .filter_map(|a| a.as_ref().strip_prefix("guard="))
            .find(|v| v.starts_with('/'))
            .map_or_else(|| DEFAULT_GUARD.into(), PathBuf::from)
    }
}

fn abs_path(key: &str, v: &str) -> Result<PathBuf, Error> {
    if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
        return Err(Error::Option(format!(
            "option `{key}={}`: give an absolute path without `..`",
            v.escape_debug()
        )));
    }
    Ok(PathBuf::from(v))
}

/// Accepts plain seconds (`90`) or a humantime duration (`2m`, `1m30s`).
fn parse_duration(key: &str, v: &str) -> Result<Duration, Error> {
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(v).map_err(|e| {
            Error::Option(format!(
                "option `{key}={}`: {e}; use seconds or a duration like `2m`",
                v.escape_debug()
            ))
        })?,
    };
    if d > Duration::from_secs(24 * 3600) {
        return Err(Error::Option(format!("option `{key}={v}`: at most 24h")));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_option_set_parses() {
        let c = Config::parse(&[
            "ca_keys=/etc/ssh/bg_ca.pub",
            "krl=/etc/ssh/revoked.krl",
            "host=db-7",
            "require",
            "warn_before=90",
            "spool=/tmp/s",
            "guard=/usr/bin/g",
            "syslog=/tmp/log.sock",
            "debug",
        ])
        .unwrap();
        assert_eq!(c.warn_before, Duration::from_secs(90));
        assert!(c.require && c.debug);
        assert_eq!(c.host.as_deref(), Some("db-7"));
        let c = Config::parse(&["ca_keys=/a", "warn_before=2m"]).unwrap();
        assert_eq!(c.warn_before, Duration::from_secs(120));
        assert_eq!(c.spool, PathBuf::from(DEFAULT_SPOOL));
        assert!(!c.require);
        assert_eq!(c.krl_max_age, None);
        let c = Config::parse(&[
            "ca_keys=/a",
            "krl=/k",
            "krl_max_age=15m",
            "krl_fail=open",
            "sessions=/run/bg",
        ])
        .unwrap();
        assert_eq!(c.krl_max_age, Some(Duration::from_secs(900)));
        assert_eq!(c.krl_fail, KrlFail::Open);
        assert_eq!(c.sessions, PathBuf::from("/run/bg"));
    }

    #[test]
    fn bad_options_are_named() {
        for (args, needle) in [
            (
                vec!["ca_keys=/a", "frobnicate=1"],
                "unknown option `frobnicate=1`",
            ),
            (vec!["ca_keys=/a", "requir"], "unknown option `requir`"),
            (vec!["ca_keys=/a", "require=yes"], "`require` is a flag"),
            (vec!["ca_keys=relative"], "absolute path"),
            (vec!["ca_keys=/a", "ca_keys=/b"], "given twice"),
            (vec!["host=db-7"], "`ca_keys=` is required"),
            (vec!["ca_keys=/a", "host=db-*"], "not a pattern"),
            (vec!["ca_keys=/a", "host=a b"], "option `host`"),
            (vec!["ca_keys=/a", "warn_before=soon"], "warn_before=soon"),
            (vec!["ca_keys"], "needs a value"),
            (vec!["ca_keys=/a", "krl_max_age=1h"], "give it with `krl=`"),
            (
                vec!["ca_keys=/a", "krl=/k", "krl_max_age=1h", "krl_fail=maybe"],
                "use `open` or `closed`",
            ),
            (vec!["ca_keys=/a", "krl=/k", "krl_fail=open"], "give both"),
            (
                vec!["ca_keys=/a", "krl=/k", "krl_max_age=0"],
                "krl_max_age=0",
            ),
        ] {
            let e = Config::parse(&args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn ship_and_ship_config_go_together_into_the_guard_spec() {
        let c = Config::parse(&[
            "ca_keys=/a",
            "ship=/usr/bin/breakglass",
            "ship_config=/etc/breakglass/host.toml",
        ])
        .unwrap();
        let s = c.ship.unwrap();
        assert_eq!(s.program, PathBuf::from("/usr/bin/breakglass"));
        assert_eq!(s.config, PathBuf::from("/etc/breakglass/host.toml"));
        assert_eq!(Config::parse(&["ca_keys=/a"]).unwrap().ship, None);
        for args in [
            vec!["ca_keys=/a", "ship=/usr/bin/breakglass"],
            vec!["ca_keys=/a", "ship_config=/etc/h.toml"],
        ] {
            let e = Config::parse(&args).unwrap_err().to_string();
            assert!(e.contains("go together"), "{args:?}: {e}");
        }
        let e = Config::parse(&["ca_keys=/a", "ship=bin", "ship_config=/c"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ship"), "{e}");
    }

    #[test]
    fn hints_survive_bad_options() {
        let args = ["bogus", "syslog=/run/x.sock", "guard=/g"];
        assert_eq!(Config::syslog_hint(&args), PathBuf::from("/run/x.sock"));
        assert_eq!(Config::guard_hint(&args), PathBuf::from("/g"));
        assert_eq!(
            Config::syslog_hint(&["syslog=rel"]),
            PathBuf::from("/dev/log")
        );
    }
}
