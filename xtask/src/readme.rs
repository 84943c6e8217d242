//! The parts of `README.md` generated from the code, each between a pair of marker
//! comments; `tests/readme.rs` checks that the README holds what is generated here.
#![forbid(unsafe_code)]

/// The markers around the exit-status table of `breakglass`.
pub const EXIT_STATUS_MARKERS: (&str, &str) =
    ("<!-- exit-status:begin -->", "<!-- exit-status:end -->");

/// The exit-status table of `breakglass` (markdown) and its note, from the CLI's one
/// table ([`breakglass_cli::error::EXIT_STATUSES`]).
#[must_use]
pub fn exit_status_table() -> String {
    let mut out = format!(
        "{}\n\n| exit | name | meaning |\n|---|---|---|\n",
        breakglass_cli::error::EXIT_STATUS_NOTE
    );
    for e in breakglass_cli::error::EXIT_STATUSES {
        out.push_str(&format!("| {} | `{}` | {} |\n", e.code, e.name, e.meaning));
    }
    out
}

/// The text between `markers` in `text`, without the newline after the first marker.
#[must_use]
pub fn between<'a>(text: &'a str, markers: (&str, &str)) -> Option<&'a str> {
    let (_, rest) = text.split_once(markers.0)?;
    let (inner, _) = rest.split_once(markers.1)?;
    Some(inner.strip_prefix('\n').unwrap_or(inner))
}

/// `text` with every generated part replaced by what the code generates now; `None`
/// when a pair of markers is missing.
#[must_use]
pub fn update(text: &str) -> Option<String> {
    let (begin, end) = EXIT_STATUS_MARKERS;
    let (head, rest) = text.split_once(begin)?;
    let (_, tail) = rest.split_once(end)?;
    Some(format!("{head}{begin}\n{}{end}{tail}", exit_status_table()))
}

/// Rewrites the generated parts of the README at `path` (`xtask readme`).
pub fn write(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = update(&text).ok_or_else(|| {
        format!(
            "{}: no {} … {} markers",
            path.display(),
            EXIT_STATUS_MARKERS.0,
            EXIT_STATUS_MARKERS.1
        )
    })?;
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}
