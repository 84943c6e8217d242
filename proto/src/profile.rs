//! The breakglass certificate profile.
//!
//! Every certificate the CA signs carries:
//! - key id `breakglass/<grant id>/<requester>`: readable in sshd's
//!   `Accepted publickey ... ID <key id>` log line, free of spaces;
//! - extension [`EXT_GRANT_ID`] with the grant id;
//! - extension [`EXT_HOSTS`] with the comma-separated host scope (patterns, see [`crate::patterns`]);
//! - extension [`EXT_TIER`] with the risk tier of the policy rule;
//! - extension [`EXT_SESSION_RECORDING`] when the tier requires session recording.
//!
//! sshd ignores unknown extensions; the PAM module reads them back with
//! [`Profile::from_certificate`] and enforces them.

use std::fmt;
use std::str::FromStr;

use ssh_key::Certificate;

use crate::names;

/// Extension carrying the grant id.
pub const EXT_GRANT_ID: &str = "grant-id@breakglass.dev";
/// Extension carrying the host scope: comma-separated host names or patterns.
pub const EXT_HOSTS: &str = "hosts@breakglass.dev";
/// Extension carrying the risk tier of the grant.
pub const EXT_TIER: &str = "tier@breakglass.dev";
/// Extension present (empty value) when the grant's tier requires its sessions to be
/// recorded; the host side decides how (e.g. start a recorder in the session guard).
pub const EXT_SESSION_RECORDING: &str = "session-recording@breakglass.dev";
/// First component of every breakglass key id.
pub const KEY_ID_PREFIX: &str = "breakglass";
/// The forced command of every break-glass drill grant (`breakglass drill`): harmless,
/// and its output shows the shell was reached. Rules of a drill tier allow exactly this.
pub const DRILL_COMMAND: &str = "echo breakglass-drill";

/// The `permit-*` extensions OpenSSH defines for user certificates.
pub const PERMIT_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// Critical options OpenSSH defines for user certificates.
pub const CRITICAL_FORCE_COMMAND: &str = "force-command";
/// Comma-separated CIDR list the certificate may be used from.
pub const CRITICAL_SOURCE_ADDRESS: &str = "source-address";

/// Unique id of one grant (one issued certificate), shown as `g-` + 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct GrantId(pub u64);

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g-{:016x}", self.0)
    }
}

impl FromStr for GrantId {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("g-")
            .filter(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ProfileError::BadGrantId(s.to_owned()))?;
        u64::from_str_radix(hex, 16)
            .map(GrantId)
            .map_err(|_| ProfileError::BadGrantId(s.to_owned()))
    }
}

/// Formats the key id of a grant.
#[must_use]
pub fn key_id(grant: GrantId, requester: &str) -> String {
    format!("{KEY_ID_PREFIX}/{grant}/{requester}")
}

/// Splits a key id into grant id and requester.
pub fn parse_key_id(key_id: &str) -> Result<(GrantId, &str), ProfileError> {
    let mut parts = key_id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(KEY_ID_PREFIX), Some(grant), Some(requester)) if !requester.is_empty() => {
            Ok((grant.parse()?, requester))
        }
        _ => Err(ProfileError::NotOurs(format!(
            "key id {key_id:?} is not of the form {KEY_ID_PREFIX}/<grant>/<requester>"
        ))),
    }
}

/// Joins a host scope into the [`EXT_HOSTS`] value.
#[must_use]
pub fn encode_hosts<S: AsRef<str>>(hosts: &[S]) -> String {
    hosts
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a certificate does not follow the breakglass profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// The certificate was not issued by breakglass (no key id or extensions of ours).
    #[error("not a breakglass certificate: {0}")]
    NotOurs(String),
    /// A grant id that is not `g-` followed by 16 hex digits.
    #[error("malformed grant id {0:?}")]
    BadGrantId(String),
    /// The profile's parts disagree or are malformed.
    #[error("malformed breakglass certificate: {0}")]
    Malformed(String),
}

/// What a breakglass certificate says about its grant, read back from the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The grant this certificate belongs to.
    pub grant_id: GrantId,
    /// Identity of the person who requested it.
    pub requester: String,
    /// Host names or patterns the certificate is scoped to (never empty).
    pub hosts: Vec<String>,
    /// Risk tier of the grant.
    pub tier: String,
}

impl Profile {
    /// Reads the profile back from a certificate. Does not verify the signature.
    pub fn from_certificate(cert: &Certificate) -> Result<Self, ProfileError> {
        let (grant_id, requester) = parse_key_id(cert.key_id())?;
        let ext = cert.extensions();
        let grant_ext = ext
            .get(EXT_GRANT_ID)
            .ok_or_else(|| ProfileError::Malformed(format!("extension {EXT_GRANT_ID} missing")))?;
        if grant_ext.parse::<GrantId>()? != grant_id {
            return Err(ProfileError::Malformed(format!(
                "extension {EXT_GRANT_ID} ({grant_ext}) disagrees with the key id ({grant_id})"
            )));
        }
        let hosts_ext = ext
            .get(EXT_HOSTS)
            .ok_or_else(|| ProfileError::Malformed(format!("extension {EXT_HOSTS} missing")))?;
        let hosts: Vec<String> = hosts_ext.split(',').map(str::to_owned).collect();
        for h in &hosts {
            names::check_host_pattern(h)
                .map_err(|e| ProfileError::Malformed(format!("host scope: {e}")))?;
        }
        let tier = ext.get(EXT_TIER).cloned().unwrap_or_default();
        Ok(Self {
            grant_id,
            requester: requester.to_owned(),
            hosts,
            tier,
        })
    }

    /// True when `host` is within the certificate's host scope.
    #[must_use]
    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| names::host_matches(p, host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_id_round_trips() {
        let g = GrantId(0x3fa9_c1d2_7e55_b048);
        assert_eq!(g.to_string(), "g-3fa9c1d27e55b048");
        assert_eq!("g-3fa9c1d27e55b048".parse::<GrantId>(), Ok(g));
        for bad in [
            "",
            "g-",
            "g-3fa9",
            "x-3fa9c1d27e55b048",
            "g-3fa9c1d27e55b04g",
            "g-+fa9c1d27e55b048",
        ] {
            assert!(bad.parse::<GrantId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn key_id_round_trips_with_uri_requesters() {
        let g = GrantId(7);
        let id = key_id(g, "spiffe://corp/sre/alice");
        assert_eq!(id, "breakglass/g-0000000000000007/spiffe://corp/sre/alice");
        assert_eq!(parse_key_id(&id), Ok((g, "spiffe://corp/sre/alice")));
        assert!(parse_key_id("alice").is_err());
        assert!(parse_key_id("breakglass/g-0000000000000007/").is_err());
    }
}
