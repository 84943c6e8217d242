//! `[log]`: how the daemon writes its own log lines (to stderr; the journal under systemd).

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default)]
    format: Option<LogFormat>,
    #[serde(default)]
    issuance_lines: Option<bool>,
}

/// The format of the daemon's log lines: one event per line either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `TIME LEVEL target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, fields).
    Json,
}

/// Log settings.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// The format of log lines; `serve --log-format` overrides it.
    pub format: LogFormat,
    /// One `certificate issued` line per certificate at info level (otherwise at debug
    /// level: the audit log and its syslog lines record every issuance anyway).
    pub issuance_lines: bool,
}

/// Validates `[log]` (serde already refused an unknown format, naming the allowed ones).
pub(super) fn parse_log(raw: RawLog) -> LogSettings {
    LogSettings {
        format: raw.format.unwrap_or_default(),
        issuance_lines: raw.issuance_lines.unwrap_or(false),
    }
}
