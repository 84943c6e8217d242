//! `[recordings]`: how long the session recordings hosts upload are kept
//! ([`crate::recordings`]).

use std::time::Duration;

use serde::Deserialize;

use super::field::{ConfigError, duration_field};

/// Default of `[recordings] keep`.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(90 * 86_400);
/// Allowed range of `keep`: a second (tests, drills) to ten years.
const KEEP_RANGE: (Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(10 * 366 * 86_400),
);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecordings {
    #[serde(default)]
    keep: Option<String>,
}

/// Recording settings.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// A stored recording is deleted (and the deletion recorded) this long after it was
    /// stored.
    pub keep: Duration,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self { keep: DEFAULT_KEEP }
    }
}

/// Validates `[recordings]`.
pub(super) fn parse_recordings(
    raw: RawRecordings,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<RecordingSettings, ConfigError> {
    Ok(RecordingSettings {
        keep: duration_field(raw.keep.as_deref(), DEFAULT_KEEP, KEEP_RANGE)
            .map_err(|e| err("recordings.keep", e))?,
    })
}
