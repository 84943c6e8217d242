//! Value parsers shared by the flags of several commands.
#![forbid(unsafe_code)]

use std::time::Duration;

/// The value parser of every duration flag (`--ttl 10m`, `--timeout 90s`, `--poll 2s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s, 10m or 1h ({e})"))
}

/// [`parse_duration`] for flags where zero makes no sense (a certificate lifetime, a wait).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be longer than zero")),
        d => Ok(d),
    }
}
