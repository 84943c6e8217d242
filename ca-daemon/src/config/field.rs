//! What every part of the configuration shares: the error that names a field, and the
//! rules of durations, counts and names.

use std::path::PathBuf;
use std::time::Duration;

/// A configuration error: which field, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {field}: {reason}")]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// Dotted path of the offending field (`rules[2].max_ttl`), or `file`.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// Parses a duration like `90s`, `15m`, `2h`, checking it against `(min, max)`.
pub fn duration_field(
    value: Option<&str>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Result<Duration, String> {
    let Some(s) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like \"90s\", \"15m\" or \"2h\" ({e})"))?;
    if d < min || d > max {
        return Err(format!(
            "{s} is outside the allowed range {} to {}",
            crate::fmt_duration(min),
            crate::fmt_duration(max)
        ));
    }
    Ok(d)
}

/// Checks a count against its allowed range.
pub fn count_field(n: usize, (min, max): (usize, usize)) -> Result<usize, String> {
    if n < min || n > max {
        return Err(format!("{n} is outside the allowed range {min} to {max}"));
    }
    Ok(n)
}

/// A group or rule name: one word.
pub fn check_word(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "{s:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
        ));
    }
    Ok(())
}
