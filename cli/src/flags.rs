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

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// One JSON object (its schema: JSON OUTPUT in the command's man page).
    Json,
}

/// The output flags, global to every command.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print the result as one JSON object on stdout (schema: JSON OUTPUT in the
    /// command's man page; progress goes to stderr). `audit show` and `audit tail` print
    /// one JSON object per event per line. Commands that print no data refuse it
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value_t = Format::Text
    )]
    pub output: Format,
    /// Short for --output json
    #[arg(long, global = true)]
    pub json: bool,
}

impl OutputArgs {
    /// True when JSON was asked for.
    #[must_use]
    pub fn is_json(&self) -> bool {
        self.json || self.output == Format::Json
    }
}
