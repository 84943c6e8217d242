//! The ids and times events carry (a grant's id is the profile's,
//! [`crate::profile::GrantId`]).

use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Converts a `SystemTime`; times before the epoch become 0.
    #[must_use]
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Whole seconds since the epoch.
    #[must_use]
    pub fn unix_seconds(self) -> u64 {
        self.0 / 1000
    }
}

/// Unique id of one access request, shown as `r-` + 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r-{:016x}", self.0)
    }
}

impl FromStr for RequestId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("r-")
            .filter(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .map(RequestId)
            .ok_or_else(|| format!("malformed request id {s:?} (expected r- and 16 hex digits)"))
    }
}
