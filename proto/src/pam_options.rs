//! The arguments of `pam_breakglass.so` (`key=value` tokens of a PAM service line): the
//! table of options ([`OPTIONS`], rendered into pam_breakglass(8)) and the one parser
//! ([`PamOptions::parse`]). The module reads its arguments with it, and `breakglass host
//! doctor` judges a service line with it, so both always agree on what the module accepts.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names;

/// Default path of the session guard executable.
pub const DEFAULT_GUARD: &str = "/usr/libexec/breakglass/breakglass-guard";
/// The system's local syslog socket: the module's default `syslog=` (and `bg_syslog`'s).
pub const DEFAULT_SYSLOG: &str = "/dev/log";
/// Default lead time of the expiry warning.
pub const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(120);

/// One module argument, as documented in pam_breakglass(8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleOption {
    /// The name before `=` (or the whole token of a flag).
    pub name: &'static str,
    /// The value's syntax (`FILE`, `DIR`, `PATH`, `DUR`, `closed|open`); `None` for a flag.
    pub value: Option<&'static str>,
    /// An accepted value, used in examples and by the tests; `None` for a flag.
    pub example: Option<&'static str>,
    /// Whether every service line must give it.
    pub required: bool,
    /// What applies when the option is absent (`None`: nothing, or see the description).
    pub default: Option<&'static str>,
    /// What the option does, in sentences.
    pub description: &'static str,
}

/// Every option the module understands: the parser accepts exactly these names, its
/// "unknown option" error lists them, and pam_breakglass(8) is rendered from them.
pub const OPTIONS: &[ModuleOption] = &[
    ModuleOption {
        name: "ca_keys",
        value: Some("FILE"),
        example: Some("/etc/ssh/breakglass_user_ca.pub"),
        required: true,
        default: None,
        description: "CA public keys that breakglass certificates are signed by, in the format of \
            sshd's TrustedUserCAKeys (one key per line). The file must be a regular file owned \
            by root and not writable by group or others.",
    },
    ModuleOption {
        name: "krl",
        value: Some("FILE"),
        example: Some("/etc/ssh/breakglass_revoked.krl"),
        required: false,
        default: None,
        description: "OpenSSH key revocation list (as written by ssh-keygen -k and kept current by \
            breakglass host sync-krl); sessions of certificates it revokes are denied.",
    },
    ModuleOption {
        name: "krl_max_age",
        value: Some("DUR"),
        example: Some("15m"),
        required: false,
        default: None,
        description: "A KRL older than this (by modification time; breakglass host sync-krl \
            touches it on every verified sync) is stale; see krl_fail. Needs krl. Seconds \
            (90) or a duration (15m, 1h), at most 24h.",
    },
    ModuleOption {
        name: "krl_fail",
        value: Some("closed|open"),
        example: Some("closed"),
        required: false,
        default: Some("closed"),
        description: "What a stale KRL does: closed denies the session (a stale KRL may miss \
            revocations); open logs loudly and admits it. Needs krl_max_age.",
    },
    ModuleOption {
        name: "host",
        value: Some("NAME"),
        example: Some("db-7"),
        required: false,
        default: Some("the kernel host name"),
        description: "This host's name as matched against the certificate's host scope. A \
            name, not a pattern.",
    },
    ModuleOption {
        name: "require",
        value: None,
        example: None,
        required: false,
        default: None,
        description: "Deny logins that do not use a breakglass certificate (for hosts reachable \
            only through break-glass access). Without it such logins are ignored (PAM_IGNORE) \
            and other access keeps working.",
    },
    ModuleOption {
        name: "warn_before",
        value: Some("DUR"),
        example: Some("2m"),
        required: false,
        default: Some("2m"),
        description: "Warn the session's terminal this long before the certificate expires. \
            Seconds (90) or a duration (2m), at most 24h.",
    },
    ModuleOption {
        name: "spool",
        value: Some("DIR"),
        example: Some(crate::spool::DEFAULT_DIR),
        required: false,
        default: Some(crate::spool::DEFAULT_DIR),
        description: "Directory of durable session records (mode 0700) that breakglass host \
            ship delivers to the CA's audit log.",
    },
    ModuleOption {
        name: "guard",
        value: Some("PATH"),
        example: Some(DEFAULT_GUARD),
        required: false,
        default: Some(DEFAULT_GUARD),
        description: "The session guard executable, which ends the session when the \
            certificate expires or is revoked.",
    },
    ModuleOption {
        name: "syslog",
        value: Some("PATH"),
        example: Some(DEFAULT_SYSLOG),
        required: false,
        default: Some(DEFAULT_SYSLOG),
        description: "Syslog datagram socket; messages use the authpriv facility.",
    },
    ModuleOption {
        name: "sessions",
        value: Some("DIR"),
        example: Some(crate::sessions::DEFAULT_DIR),
        required: false,
        default: Some(crate::sessions::DEFAULT_DIR),
        description: "Run directory where guards register open sessions, so that a revocation \
            can end them while they are open. The module also denies a session of a grant that \
            breakglass host watch-revocations has marked revoked there (GRANT.grant-revoked), \
            even before the KRL file is replaced. A missing directory or marker admits (the KRL \
            decides); a directory that cannot be checked denies.",
    },
    ModuleOption {
        name: "ship",
        value: Some("PATH"),
        example: Some("/usr/bin/breakglass"),
        required: false,
        default: None,
        description: "The breakglass executable the guard starts (breakglass host ship) after \
            each spool record, so records reach the CA's audit log at once. Needs ship_config; \
            without both, breakglass-ship.timer delivers the spool.",
    },
    ModuleOption {
        name: "ship_config",
        value: Some("FILE"),
        example: Some("/etc/breakglass/host.toml"),
        required: false,
        default: None,
        description: "The client config ship uses: the CA's address and CA certificate, this \
            host's host://NAME certificate and key. Needs ship.",
    },
    ModuleOption {
        name: "debug",
        value: None,
        example: None,
        required: false,
        default: None,
        description: "Also log the logins the module ignores, and where the time of each \
            session_open and session_close went (timing_us=, microseconds per step).",
    },
    ModuleOption {
        name: "recorder",
        value: Some("PATH"),
        example: Some(crate::recording::DEFAULT_RECORDER),
        required: false,
        default: Some(crate::recording::DEFAULT_RECORDER),
        description: "The session recorder (breakglass-record). A certificate of a recording \
            tier (extension session-recording@breakglass.dev) must have it as its force-command, \
            or the session is denied; the session is also denied when the recorder or the \
            spool's recordings directory is missing, or that directory's file system is nearly \
            full. The close record carries the recording's hash, size and duration.",
    },
    ModuleOption {
        name: "spool_slots",
        value: Some("N"),
        example: Some("256"),
        required: false,
        default: Some("0"),
        description: "Write session records into N reusable slots of one pre-written file in \
            the spool (records.slots, created at the first session; 1 to 4096) instead of a \
            new file per record: one fdatasync per record instead of a new file's metadata. \
            When every slot waits to be shipped, records fall back to one file each. 0: \
            one file per record.",
    },
];

/// The option list the "unknown option" error shows (`ca_keys=, krl=, …, debug`).
#[must_use]
pub fn known_options() -> String {
    OPTIONS
        .iter()
        .map(|o| match o.value {
            Some(_) => format!("{}=", o.name),
            None => o.name.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do when the KRL is older than `krl_max_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KrlFail {
    /// Deny the session (the default: a stale KRL may miss revocations).
    Closed,
    /// Log loudly and let the session open.
    Open,
}

/// How the guard starts `<program> --config <config> host ship --spool <spool>` after each
/// spool record (`ship=` and `ship_config=`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipSpec {
    /// The `breakglass` executable (root-owned, not writable by others).
    pub program: PathBuf,
    /// Its client config: the daemon's address and CA, this host's certificate and key.
    pub config: PathBuf,
}

/// The module's validated arguments, with the defaults of the options not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PamOptions {
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
    pub ship: Option<ShipSpec>,
    /// The session recorder a recording tier's certificate must force.
    pub recorder: PathBuf,
    /// Slots of the spool's slot file (`spool_slots=`); 0: one file per record.
    pub spool_slots: u32,
}

impl PamOptions {
    /// Parses the module arguments; any unknown, repeated or malformed option is an error
    /// naming it.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, String> {
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
        let mut recorder = None;
        let mut spool_slots = 0;
        let mut seen: Vec<&str> = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            if seen.contains(&key) {
                return Err(format!("option `{key}` is given twice"));
            }
            seen.push(key);
            let Some(option) = OPTIONS.iter().find(|o| o.name == key) else {
                return Err(format!(
                    "unknown option `{}`; known options: {}",
                    arg.escape_debug(),
                    known_options()
                ));
            };
            match (option.value, value) {
                (None, Some(_)) => {
                    return Err(format!(
                        "option `{arg}`: `{key}` is a flag and takes no value"
                    ));
                }
                (Some(_), None) => {
                    return Err(format!("option `{key}` needs a value (`{key}=...`)"));
                }
                _ => {}
            }
            match (key, value) {
                ("ca_keys", Some(v)) => ca_keys = Some(abs_path(key, v)?),
                ("krl", Some(v)) => krl = Some(abs_path(key, v)?),
                ("host", Some(v)) => {
                    names::check_host_pattern(v).map_err(|e| format!("option `host`: {e}"))?;
                    if v.contains(['*', '?']) {
                        return Err(format!(
                            "option `host={v}`: give this host's own name, not a pattern"
                        ));
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
                ("recorder", Some(v)) => recorder = Some(abs_path(key, v)?),
                ("spool_slots", Some(v)) => {
                    spool_slots = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n <= crate::spool::slots::MAX_SLOTS)
                        .ok_or_else(|| {
                            format!(
                                "option `spool_slots={}`: give a number of slots from 0 to {}",
                                v.escape_debug(),
                                crate::spool::slots::MAX_SLOTS
                            )
                        })?;
                }
                ("krl_max_age", Some(v)) => {
                    let d = parse_duration(key, v)?;
                    if d.is_zero() {
                        return Err(
                            "option `krl_max_age=0`: give the longest acceptable KRL age, e.g. 15m"
                                .into(),
                        );
                    }
                    krl_max_age = Some(d);
                }
                ("krl_fail", Some("open")) => krl_fail = Some(KrlFail::Open),
                ("krl_fail", Some("closed")) => krl_fail = Some(KrlFail::Closed),
                ("krl_fail", Some(v)) => {
                    return Err(format!(
                        "option `krl_fail={}`: use `open` or `closed`",
                        v.escape_debug()
                    ));
                }
                ("require", None) => require = true,
                ("debug", None) => debug = true,
                // Only reachable if OPTIONS lists an option this match does not handle;
                // the tests parse every entry of OPTIONS.
                _ => {
                    return Err(format!(
                        "option `{key}` is documented but not implemented by this build"
                    ));
                }
            }
        }
        let ca_keys = ca_keys.ok_or_else(|| {
            "option `ca_keys=` is required: the file of CA public keys breakglass certificates are signed by"
                .to_owned()
        })?;
        if (krl_max_age.is_some() || krl_fail.is_some()) && krl.is_none() {
            return Err(
                "options `krl_max_age=`/`krl_fail=` check the KRL: give it with `krl=`".into(),
            );
        }
        let ship = match (ship, ship_config) {
            (Some(program), Some(config)) => Some(ShipSpec { program, config }),
            (None, None) => None,
            _ => {
                return Err(
                    "options `ship=` (the breakglass executable) and `ship_config=` (its client config with this host's certificate) go together".into(),
                );
            }
        };
        if krl_fail.is_some() && krl_max_age.is_none() {
            return Err("option `krl_fail=` applies to `krl_max_age=`: give both".into());
        }
        Ok(Self {
            krl_max_age,
            krl_fail: krl_fail.unwrap_or(KrlFail::Closed),
            sessions: sessions.unwrap_or_else(|| crate::sessions::DEFAULT_DIR.into()),
            ca_keys,
            krl,
            host,
            require,
            warn_before: warn_before.unwrap_or(DEFAULT_WARN_BEFORE),
            spool: spool.unwrap_or_else(|| crate::spool::DEFAULT_DIR.into()),
            guard: guard.unwrap_or_else(|| DEFAULT_GUARD.into()),
            syslog: syslog.unwrap_or_else(|| DEFAULT_SYSLOG.into()),
            debug,
            ship,
            recorder: recorder.unwrap_or_else(|| crate::recording::DEFAULT_RECORDER.into()),
            spool_slots,
        })
    }

    /// The syslog socket named by the arguments, read leniently so that an error in
    /// another option can still be logged where the admin looks for it.
    #[must_use]
    pub fn syslog_hint<S: AsRef<str>>(args: &[S]) -> PathBuf {
        path_hint(args, "syslog=", DEFAULT_SYSLOG)
    }

    /// The guard path named by the arguments, read leniently (see [`PamOptions::syslog_hint`]).
    #[must_use]
    pub fn guard_hint<S: AsRef<str>>(args: &[S]) -> PathBuf {
        path_hint(args, "guard=", DEFAULT_GUARD)
    }
}

/// The first absolute path given as `<key>=PATH`, else `default`.
fn path_hint<S: AsRef<str>>(args: &[S], key: &str, default: &str) -> PathBuf {
    args.iter()
        .filter_map(|a| a.as_ref().strip_prefix(key))
        .find(|v| v.starts_with('/'))
        .map_or_else(|| default.into(), PathBuf::from)
}

fn abs_path(key: &str, v: &str) -> Result<PathBuf, String> {
    if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
        return Err(format!(
            "option `{key}={}`: give an absolute path without `..`",
            v.escape_debug()
        ));
    }
    Ok(PathBuf::from(v))
}

/// Accepts plain seconds (`90`) or a humantime duration (`2m`, `1m30s`).
fn parse_duration(key: &str, v: &str) -> Result<Duration, String> {
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(v).map_err(|e| {
            format!(
                "option `{key}={}`: {e}; use seconds or a duration like `2m`",
                v.escape_debug()
            )
        })?,
    };
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!("option `{key}={v}`: at most 24h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_option_set_parses() {
        let c = PamOptions::parse(&[
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
        let c = PamOptions::parse(&["ca_keys=/a", "warn_before=2m"]).unwrap();
        assert_eq!(c.warn_before, Duration::from_secs(120));
        assert_eq!(c.spool, PathBuf::from(crate::spool::DEFAULT_DIR));
        assert!(!c.require);
        assert_eq!(c.krl_max_age, None);
        let c = PamOptions::parse(&[
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
            let e = PamOptions::parse(&args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn host_doctor_cases_are_named() {
        // The cases `breakglass host doctor` checked with its own copy of this parser.
        assert!(
            PamOptions::parse(&["ca_keys=/a", "require", "debug", "krl=/k", "krl_max_age=90"])
                .is_ok()
        );
        for (args, needle) in [
            (&["krl=/k"][..], "`ca_keys=` is required"),
            (&["ca_keys=/a", "krl"], "needs a value"),
            (&["ca_keys=/a", "bogus"], "unknown option `bogus`"),
            (&["ca_keys=/a", "krl_max_age=10m"], "give it with `krl=`"),
            (
                &["ca_keys=/a", "krl=/k", "krl_max_age=soon"],
                "krl_max_age=soon",
            ),
            (&["ca_keys=/a", "krl_fail=maybe"], "use `open` or `closed`"),
        ] {
            let e = PamOptions::parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn ship_and_ship_config_go_together_into_the_guard_spec() {
        let c = PamOptions::parse(&[
            "ca_keys=/a",
            "ship=/usr/bin/breakglass",
            "ship_config=/etc/breakglass/host.toml",
        ])
        .unwrap();
        let s = c.ship.unwrap();
        assert_eq!(s.program, PathBuf::from("/usr/bin/breakglass"));
        assert_eq!(s.config, PathBuf::from("/etc/breakglass/host.toml"));
        assert_eq!(PamOptions::parse(&["ca_keys=/a"]).unwrap().ship, None);
        for args in [
            vec!["ca_keys=/a", "ship=/usr/bin/breakglass"],
            vec!["ca_keys=/a", "ship_config=/etc/h.toml"],
        ] {
            let e = PamOptions::parse(&args).unwrap_err();
            assert!(e.contains("go together"), "{args:?}: {e}");
        }
        let e = PamOptions::parse(&["ca_keys=/a", "ship=bin", "ship_config=/c"]).unwrap_err();
        assert!(e.contains("ship"), "{e}");
    }

    fn option(name: &str) -> &'static ModuleOption {
        OPTIONS.iter().find(|o| o.name == name).unwrap()
    }

    fn example_arg(o: &ModuleOption) -> String {
        match o.example {
            Some(v) => format!("{}={v}", o.name),
            None => o.name.to_owned(),
        }
    }

    #[test]
    fn every_documented_option_is_accepted_with_its_example() {
        for o in OPTIONS {
            assert_eq!(o.value.is_some(), o.example.is_some(), "{}", o.name);
            assert!(!o.description.is_empty(), "{}", o.name);
            // Alone (with the required ca_keys) an option may need a companion, but the
            // parser must know it and have code for it.
            let alone = PamOptions::parse(&[example_arg(option("ca_keys")), example_arg(o)]);
            if let Err(e) = alone {
                let e = e.to_string();
                assert!(
                    !e.contains("unknown option") && !e.contains("not implemented"),
                    "{}: {e}",
                    o.name
                );
            }
        }
        // All together they satisfy each other's companions.
        let all: Vec<String> = OPTIONS.iter().map(example_arg).collect();
        let c = PamOptions::parse(&all).unwrap();
        assert!(c.require && c.debug);
        assert_eq!(c.krl_max_age, Some(Duration::from_secs(900)));
        assert_eq!(c.host.as_deref(), option("host").example);
        assert!(c.ship.is_some());
    }

    #[test]
    fn table_defaults_are_the_parser_defaults() {
        let c = PamOptions::parse(&["ca_keys=/a"]).unwrap();
        let default = |n: &str| option(n).default.unwrap();
        assert_eq!(c.spool, PathBuf::from(default("spool")));
        assert_eq!(c.guard, PathBuf::from(default("guard")));
        assert_eq!(c.syslog, PathBuf::from(default("syslog")));
        assert_eq!(c.sessions, PathBuf::from(default("sessions")));
        assert_eq!(c.recorder, PathBuf::from(default("recorder")));
        assert_eq!(c.spool_slots.to_string(), default("spool_slots"));
        assert_eq!(
            c.warn_before,
            humantime::parse_duration(default("warn_before")).unwrap()
        );
        assert_eq!(c.krl_fail, KrlFail::Closed);
        assert_eq!(default("krl_fail"), "closed");
        assert!(option("ca_keys").required);
        assert_eq!(OPTIONS.iter().filter(|o| o.required).count(), 1);
    }

    #[test]
    fn unknown_option_is_rejected_and_the_error_lists_the_table() {
        let e = PamOptions::parse(&["ca_keys=/a", "ca_key=/b"]).unwrap_err();
        assert!(e.contains("unknown option `ca_key=/b`"), "{e}");
        for o in OPTIONS {
            assert!(e.contains(o.name), "{} missing from: {e}", o.name);
        }
        assert_eq!(
            known_options(),
            "ca_keys=, krl=, krl_max_age=, krl_fail=, host=, require, warn_before=, spool=, guard=, syslog=, sessions=, ship=, ship_config=, debug, recorder=, spool_slots="
        );
    }

    #[test]
    fn hints_survive_bad_options() {
        let args = ["bogus", "syslog=/run/x.sock", "guard=/g"];
        assert_eq!(PamOptions::syslog_hint(&args), PathBuf::from("/run/x.sock"));
        assert_eq!(PamOptions::guard_hint(&args), PathBuf::from("/g"));
        assert_eq!(
            PamOptions::syslog_hint(&["syslog=rel"]),
            PathBuf::from("/dev/log")
        );
    }
}
