//! The host's live-session registry: how a session guard tells the revocation
//! watcher (`breakglass host watch-revocations`) which grant a session belongs to,
//! and how the watcher tells the guard to end it.
//!
//! Both are small `key=value` text files in one run directory (default
//! [`DEFAULT_DIR`], root-owned, mode 0700):
//! - `<session>.session`, written by the guard when it starts watching a session and
//!   removed when it exits: a [`Registration`];
//! - `<session>.revoked`, written (atomically) by the watcher when the session's grant is
//!   revoked: a [`RevocationMarker`]. The guard polls for it and ends the session the
//!   same way as at expiry, with reason `revoked`;
//! - `<grant>.grant-revoked`, written (atomically) by the watcher as soon as it learns
//!   that a grant is revoked, and removed once the grant's certificate has expired: a
//!   [`RevokedGrant`]. The PAM module denies a new session of a grant marked so
//!   ([`grant_state`]), even before the host's KRL file is replaced.
//! - `<session>.guard`, written by the guard before its registration: what a replacement
//!   guard needs to take the session over (the guard's JSON spec and the pid and start
//!   time of sshd's session process; private to the guard crate).
//!
//! Who watches the guard: while it runs, the guard holds an exclusive `flock` on its
//! registration file. The kernel drops the lock when the guard dies, SIGKILL and the
//! OOM killer included, so "no lock on a registration" means "no guard", with no pid
//! that could have been recycled. The watcher sweeps the registry every second and
//! starts the registration's `guard=` executable with `--resume` for a session whose
//! guard is gone; the new guard takes the lock, re-registers and ends the session at
//! expiry (at once when expiry has passed). Registrations written by older guards have
//! no `guard=` line and cannot be taken over.
//!
//! Files, not signals: the guard needs no signal handler (it stays free of `unsafe`
//! outside the PAM crate's `ffi`), a revocation that arrives while the guard is busy
//! is not lost, and either side can restart without the other noticing.

use std::path::{Path, PathBuf};

/// Default run directory of the registry.
pub const DEFAULT_DIR: &str = "/run/breakglass/sessions";
/// Suffix of registration files.
pub const REGISTRATION_SUFFIX: &str = ".session";
/// Suffix of revocation markers.
pub const MARKER_SUFFIX: &str = ".revoked";
/// Suffix of per-grant revocation markers.
pub const GRANT_MARKER_SUFFIX: &str = ".grant-revoked";
/// Suffix of a guard's take-over state.
pub const GUARD_STATE_SUFFIX: &str = ".guard";
/// Largest registry file read.
pub const MAX_FILE: u64 = 8 * 1024;

/// A live session, as its guard registers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Session id (also the file name stem).
    pub session: String,
    /// Grant id (`g-…`).
    pub grant: String,
    /// Certificate serial.
    pub serial: u64,
    /// Certificate key id.
    pub key_id: String,
    /// Certificate expiry, Unix seconds.
    pub expires: u64,
    /// Pid of the guard.
    pub guard_pid: u32,
    /// The guard executable that can take the session over when its guard dies (`None`:
    /// registered by an older guard, which cannot be replaced).
    pub guard: Option<PathBuf>,
}

/// The watcher's instruction to end a session because its grant was revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationMarker {
    /// Grant id.
    pub grant: String,
    /// Who revoked it (the audit log's actor).
    pub revoked_by: String,
    /// Why.
    pub reason: String,
    /// Revocation sequence number, or 0 when learnt from the KRL.
    pub version: u64,
}

/// A grant the host knows is revoked, as the watcher records it for the PAM module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedGrant {
    /// Who revoked it, why, and the revocation's sequence number.
    pub marker: RevocationMarker,
    /// Expiry of the grant's certificate, Unix seconds: the marker is useless after it.
    pub expires: u64,
}

/// What the registry says about a grant when a session of it opens.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantState {
    /// No marker (or no registry directory): nothing is known here; the KRL decides.
    NotMarked,
    /// A marker is present: the grant is revoked. Its content, if it could be read.
    Revoked(Option<RevokedGrant>),
    /// The registry could not be checked (the reason): the caller must deny.
    Unreadable(String),
}

fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| l.split_once('='))
}

fn get<'a>(text: &'a str, key: &str) -> Result<&'a str, String> {
    fields(text)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("missing `{key}=`"))
}

fn num<T: std::str::FromStr>(text: &str, key: &str) -> Result<T, String> {
    get(text, key)?
        .parse()
        .map_err(|_| format!("`{key}=` is not a number"))
}

/// True for a session id that is safe as a file name stem.
#[must_use]
pub fn is_valid_session(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Registration {
    /// The file text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "session={}\ngrant={}\nserial={}\nkey_id={}\nexpires={}\nguard_pid={}\n",
            clean(&self.session),
            clean(&self.grant),
            self.serial,
            clean(&self.key_id),
            self.expires,
            self.guard_pid
        );
        if let Some(g) = &self.guard {
            text.push_str(&format!("guard={}\n", clean(&g.to_string_lossy())));
        }
        text
    }

    /// Parses the file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let session = get(text, "session")?.to_owned();
        if !is_valid_session(&session) {
            return Err(format!("session id {session:?} is not file-name safe"));
        }
        Ok(Self {
            session,
            grant: get(text, "grant")?.to_owned(),
            serial: num(text, "serial")?,
            key_id: get(text, "key_id")?.to_owned(),
            expires: num(text, "expires")?,
            guard_pid: num(text, "guard_pid")?,
            // Absent in registrations of older guards.
            guard: get(text, "guard").ok().map(PathBuf::from),
        })
    }

    /// Where this registration lives in `dir`.
    #[must_use]
    pub fn path(&self, dir: &Path) -> PathBuf {
        registration_path(dir, &self.session)
    }
}

impl RevocationMarker {
    /// The file text.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "grant={}\nrevoked_by={}\nreason={}\nversion={}\n",
            clean(&self.grant),
            clean(&self.revoked_by),
            clean(&self.reason),
            self.version
        )
    }

    /// Parses the file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            grant: get(text, "grant")?.to_owned(),
            revoked_by: get(text, "revoked_by")?.to_owned(),
            reason: get(text, "reason")?.to_owned(),
            version: num(text, "version")?,
        })
    }
}

impl RevokedGrant {
    /// The file text.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!("{}expires={}\n", self.marker.to_text(), self.expires)
    }

    /// Parses the file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            marker: RevocationMarker::parse(text)?,
            expires: num(text, "expires")?,
        })
    }
}

/// `<dir>/<grant>.grant-revoked`, or `None` for a grant id that is not file-name safe.
#[must_use]
pub fn grant_marker_path(dir: &Path, grant: &str) -> Option<PathBuf> {
    is_valid_session(grant).then(|| dir.join(format!("{grant}{GRANT_MARKER_SUFFIX}")))
}

/// Looks up the marker of `grant` in the registry `dir`. A missing marker or directory
/// is [`GrantState::NotMarked`] (a host without the watcher is not locked out); a
/// present one, readable or not, is [`GrantState::Revoked`]; any other error (e.g.
/// permission denied, `dir` not a directory) is [`GrantState::Unreadable`].
pub fn grant_state(dir: &Path, grant: &str) -> GrantState {
    let Some(path) = grant_marker_path(dir, grant) else {
        return GrantState::Unreadable(format!("grant id {grant:?} is not a safe file name"));
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            let content = meta
                .is_file()
                .then(|| {
                    use std::io::Read;
                    let mut text = String::new();
                    std::fs::File::open(&path)
                        .and_then(|f| f.take(MAX_FILE).read_to_string(&mut text))
                        .ok()
                        .and_then(|_| RevokedGrant::parse(&text).ok())
                })
                .flatten();
            GrantState::Revoked(content)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => GrantState::NotMarked,
        Err(e) => GrantState::Unreadable(format!(
            "cannot check the revocation marker {}: {e}",
            path.display()
        )),
    }
}

/// `<dir>/<session>.session`.
#[must_use]
pub fn registration_path(dir: &Path, session: &str) -> PathBuf {
    dir.join(format!("{session}{REGISTRATION_SUFFIX}"))
}

/// `<dir>/<session>.guard`.
#[must_use]
pub fn guard_state_path(dir: &Path, session: &str) -> PathBuf {
    dir.join(format!("{session}{GUARD_STATE_SUFFIX}"))
}

/// The sessions registered in `dir` now (unreadable or malformed files are skipped).
#[must_use]
pub fn read_registrations(dir: &Path) -> Vec<Registration> {
    use std::io::Read;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(REGISTRATION_SUFFIX)?;
            if name.starts_with('.') {
                return None;
            }
            let mut text = String::new();
            std::fs::File::open(e.path())
                .ok()?
                .take(MAX_FILE)
                .read_to_string(&mut text)
                .ok()?;
            Registration::parse(&text).ok()
        })
        .collect()
}

/// `<dir>/<session>.revoked`.
#[must_use]
pub fn marker_path(dir: &Path, session: &str) -> PathBuf {
    dir.join(format!("{session}{MARKER_SUFFIX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_newlines_cannot_inject_fields() {
        let r = Registration {
            session: "db-7-g-00000000000000ff-42-1".into(),
            grant: "g-00000000000000ff".into(),
            serial: 99,
            key_id: "breakglass/g-00000000000000ff/sre@example.com".into(),
            expires: 1_800_000_000,
            guard_pid: 4242,
            guard: Some("/usr/libexec/breakglass/breakglass-guard".into()),
        };
        assert_eq!(Registration::parse(&r.to_text()).unwrap(), r);
        // A registration of an older guard (no guard= line) still parses.
        let old = Registration {
            guard: None,
            ..r.clone()
        };
        assert!(!old.to_text().contains("guard="));
        assert_eq!(Registration::parse(&old.to_text()).unwrap(), old);
        let m = RevocationMarker {
            grant: "g-1".into(),
            revoked_by: "user:admin@example.com".into(),
            reason: "INC-1\ngrant=g-evil".into(),
            version: 17,
        };
        let back = RevocationMarker::parse(&m.to_text()).unwrap();
        assert_eq!(back.grant, "g-1");
        assert_eq!(back.reason, "INC-1 grant=g-evil");
        assert!(Registration::parse("session=../x\ngrant=g\n").is_err());
        assert!(Registration::parse("grant=g\n").is_err());
        let g = RevokedGrant {
            marker: m,
            expires: 1_800_000_000,
        };
        assert_eq!(
            RevokedGrant::parse(&g.to_text()).unwrap().expires,
            g.expires
        );
        assert!(RevokedGrant::parse("grant=g-1\n").is_err());
    }

    #[test]
    fn grant_state_denies_on_a_marker_and_on_errors_but_not_on_absence() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // No registry at all, then an empty one: nothing known.
        assert_eq!(
            grant_state(&d.join("missing"), "g-1"),
            GrantState::NotMarked
        );
        assert_eq!(grant_state(d, "g-1"), GrantState::NotMarked);
        // A marker, readable or not, means revoked.
        let g = RevokedGrant {
            marker: RevocationMarker {
                grant: "g-1".into(),
                revoked_by: "user:admin@example.com".into(),
                reason: "INC-5".into(),
                version: 9,
            },
            expires: 1_800_000_000,
        };
        let path = grant_marker_path(d, "g-1").unwrap();
        std::fs::write(&path, g.to_text()).unwrap();
        assert_eq!(grant_state(d, "g-1"), GrantState::Revoked(Some(g)));
        assert_eq!(grant_state(d, "g-2"), GrantState::NotMarked);
        std::fs::write(&path, "torn").unwrap();
        assert_eq!(grant_state(d, "g-1"), GrantState::Revoked(None));
        // A registry path that is not a directory, or an unsafe grant id: cannot check.
        let file = d.join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            grant_state(&file, "g-1"),
            GrantState::Unreadable(_)
        ));
        assert!(matches!(
            grant_state(d, "../g-1"),
            GrantState::Unreadable(_)
        ));
        assert_eq!(grant_marker_path(d, "../x"), None);
    }
}
