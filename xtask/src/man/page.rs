//! What every page shares: the manual's name, a rendered page, the `.TH` date, the two
//! command lines and small roff pieces. Below `man` and `man_sections`, which both build
//! pages.

use clap::CommandFactory;
use roff::{bold, roman};

/// The manual every page belongs to (the centre footer/header of `man`).
pub const MANUAL: &str = "breakglass manual";

/// One rendered page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// File name, e.g. `breakglass-host-ship.1`.
    pub file: String,
    /// The roff source.
    pub roff: String,
}

impl Page {
    /// The page's name without section (`breakglass-host-ship`).
    #[must_use]
    pub fn stem(&self) -> &str {
        self.file.rsplit_once('.').map_or(&self.file, |(s, _)| s)
    }

    /// The page's section (`1`, `8`).
    #[must_use]
    pub fn section(&self) -> &str {
        self.file.rsplit_once('.').map_or("", |(_, s)| s)
    }
}

/// The date argument of `.TH`: `SOURCE_DATE_EPOCH` (the reproducible-builds convention)
/// as `YYYY-MM-DD` when set, else an explicitly empty argument (`""`; a bare empty
/// argument would shift the source and manual into the date's place).
#[must_use]
pub fn th_date() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or_else(|| "\"\"".to_owned(), date_of_epoch)
}

/// `YYYY-MM-DD` (UTC) of a Unix time (days-to-civil, proleptic Gregorian calendar).
#[must_use]
pub fn date_of_epoch(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The `breakglass` command line, exactly as the binary parses it.
#[must_use]
pub fn breakglass_command() -> clap::Command {
    breakglass_cli::cli::Cli::command()
}

/// The `breakglass-ca` command line, exactly as the binary parses it.
#[must_use]
pub fn breakglass_ca_command() -> clap::Command {
    breakglass_ca::cli::Cli::command()
}

pub fn see_also_inlines(refs: &[impl AsRef<str>]) -> Vec<roff::Inline> {
    let mut line = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let r = r.as_ref();
        if i > 0 {
            line.push(roman(", "));
        }
        match r.split_once('(') {
            Some((page, sec)) => {
                line.push(bold(page));
                line.push(roman(format!("({sec}")));
            }
            None => line.push(bold(r)),
        }
    }
    line
}

/// `Roff::render` starts with the definition of the apostrophe string; a page needs it
/// once, at the top.
pub fn without_preamble(rendered: &str) -> String {
    let mut out = String::new();
    let mut in_preamble = true;
    for line in rendered.lines() {
        if in_preamble && (line.starts_with(".ie \\n(.g") || line.starts_with(".el .ds Aq")) {
            continue;
        }
        in_preamble = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}
