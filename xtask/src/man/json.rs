//! The JSON OUTPUT section of a `breakglass(1)` subcommand page, from the command's
//! schema ([`breakglass_cli::output::schema::SCHEMAS`]): the same definition the test of
//! the real output (`tests/tests/cli_json.rs`) checks against.

use breakglass_cli::output::schema;
use roff::{Roff, bold, italic, roman};

/// The section for the page `name` (`breakglass-review-list`) in `section`, if its
/// command prints JSON.
#[must_use]
pub fn section(name: &str, section: &str) -> Option<Roff> {
    let s = schema::schema_of_page(name).filter(|_| section == "1")?;
    let mut r = Roff::new();
    r.control("SH", ["JSON OUTPUT"]);
    r.text([
        roman("With "),
        bold("--output json"),
        roman(" (or "),
        bold("--json"),
        roman(format!(
            "): {} One JSON object on standard output; progress and hints go to standard \
             error. Every field below is always present: when it has no value it is null \
             (its type says so). Times are RFC 3339 in UTC, whole seconds; durations are \
             whole seconds. Array elements are shown as name[].field.",
            s.doc
        )),
    ]);
    for (path, ty, doc) in s.rows() {
        r.control("TP", []);
        r.text([bold(path), roman(" ("), italic(ty), roman(")")]);
        r.text([roman(doc)]);
    }
    Some(r)
}
