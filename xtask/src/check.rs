//! Agreement between `--help` and the man pages: everything a command's `--help` shows
//! (flags, value names, positionals, possible values, defaults, environment variables,
//! subcommands) must appear in that command's page.

use std::fmt;

/// One thing `--help` shows that the page must show too.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// `--name`.
    Long(String),
    /// `-x`.
    Short(char),
    /// `<FILE>` of an option, or the name of a positional (`ID`).
    Value(String),
    /// One of `[possible values: a, b]` or a `- a: help` line.
    PossibleValue(String),
    /// `[default: X]`.
    Default(String),
    /// `[env: NAME=…]`.
    Env(String),
    /// A subcommand listed under `Commands:`.
    Subcommand(String),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Long(l) => write!(f, "option --{l}"),
            Self::Short(s) => write!(f, "option -{s}"),
            Self::Value(v) => write!(f, "value name {v}"),
            Self::PossibleValue(v) => write!(f, "possible value `{v}`"),
            Self::Default(d) => write!(f, "[default: {d}]"),
            Self::Env(e) => write!(f, "environment variable {e}"),
            Self::Subcommand(s) => write!(f, "subcommand {s}"),
        }
    }
}

/// The `--help` text of `root`'s subcommand at `path` (empty: `root` itself), exactly
/// as the binary prints it.
pub fn help_text(root: &clap::Command, path: &[&str]) -> Result<String, String> {
    let argv = std::iter::once(root.get_name())
        .chain(path.iter().copied())
        .chain(["--help"]);
    match root.clone().try_get_matches_from(argv) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Ok(e.render().to_string()),
        Err(e) => Err(format!(
            "{} {} --help: {e}",
            root.get_name(),
            path.join(" ")
        )),
        Ok(_) => Err(format!(
            "{} {} --help printed no help",
            root.get_name(),
            path.join(" ")
        )),
    }
}

/// What a `--help` text shows. clap's help is: the about text, `Usage: …`, then
/// sections (`Commands:`, `Arguments:`, `Options:`, custom headings), each a header
/// line without indentation followed by indented entries.
#[must_use]
pub fn help_items(help: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut section: Option<&str> = None;
    let mut section_text = String::new();
    let mut in_possible_values = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            if section.is_some() {
                bracket_items(&section_text, &mut items);
            }
            section_text.clear();
            in_possible_values = false;
            // `Options:`, `Commands:`, or a custom heading such as `Connection (…):`.
            section = line
                .strip_suffix(':')
                .filter(|_| !line.starts_with("Usage:"));
            continue;
        }
        let Some(name) = section else { continue };
        section_text.push_str(line);
        section_text.push('\n');
        let indent = line.len() - line.trim_start().len();
        let entry = line.trim_start();
        if entry.is_empty() {
            in_possible_values = false;
        }
        if entry == "Possible values:" {
            in_possible_values = true;
        } else if name == "Commands" {
            // `  name  about`; wrapped about lines are indented further.
            if let Some(sub) = entry.split_whitespace().next().filter(|_| indent == 2) {
                items.push(Item::Subcommand(sub.to_owned()));
            }
        } else if indent <= 6 && (entry.starts_with('-') || entry.starts_with(['<', '['])) {
            // An entry header: `-h, --help`, `--config <FILE>`, `<ID>`, `[PATH]...`;
            // help may follow after two spaces on the same line.
            let spec = entry.split("  ").next().unwrap_or(entry);
            spec_items(spec, &mut items);
        } else if let Some(value) = entry.strip_prefix("- ").filter(|_| in_possible_values) {
            // Long help lists possible values with their help: `- open: log and admit`.
            let value = value.split(':').next().unwrap_or(value).trim();
            items.push(Item::PossibleValue(value.to_owned()));
        }
    }
    if section.is_some() {
        bracket_items(&section_text, &mut items);
    }
    items.sort();
    items.dedup();
    items
}

fn spec_items(spec: &str, items: &mut Vec<Item>) {
    for word in spec.split([' ', ',']).filter(|w| !w.is_empty()) {
        let word = word.trim_end_matches("...");
        if let Some(long) = word.strip_prefix("--") {
            let (long, value) = match long.split_once('=') {
                Some((l, v)) => (l, Some(v)),
                None => (long, None),
            };
            items.push(Item::Long(long.to_owned()));
            if let Some(v) = value {
                push_value(v, items);
            }
        } else if let Some(short) = word.strip_prefix('-') {
            if let Some(c) = short.chars().next() {
                items.push(Item::Short(c));
            }
        } else {
            push_value(word, items);
        }
    }
}

fn push_value(word: &str, items: &mut Vec<Item>) {
    let v = word.trim_matches(['<', '>', '[', ']']);
    if !v.is_empty() {
        items.push(Item::Value(v.to_owned()));
    }
}

/// `[default: …]`, `[env: NAME=…]` and `[possible values: a, b]` anywhere in a
/// section (they may wrap across lines).
fn bracket_items(text: &str, items: &mut Vec<Item>) {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for (tag, kind) in [("[default: ", 0), ("[env: ", 1), ("[possible values: ", 2)] {
        let mut rest = flat.as_str();
        while let Some(start) = rest.find(tag) {
            let after = &rest[start + tag.len()..];
            let Some(end) = after.find(']') else { break };
            let body = &after[..end];
            match kind {
                0 => items.push(Item::Default(body.to_owned())),
                1 => {
                    let name = body.split('=').next().unwrap_or(body);
                    items.push(Item::Env(name.to_owned()));
                }
                _ => items.extend(
                    body.split(", ")
                        .map(|v| Item::PossibleValue(v.trim().to_owned())),
                ),
            }
            rest = &after[end..];
        }
    }
}

/// The text a reader sees in a roff page, close enough to search: escapes resolved,
/// font changes removed, control lines reduced to their arguments.
#[must_use]
pub fn plain_text(roff: &str) -> String {
    let mut out = String::new();
    for line in roff.lines() {
        let line = match line.strip_prefix('.') {
            Some(control) => {
                // `.SH "SEE ALSO"` -> `SEE ALSO`; `.TP` -> ``; skip string definitions.
                if control.starts_with("ie ") || control.starts_with("el ") {
                    continue;
                }
                control
                    .split_once(' ')
                    .map_or(String::new(), |(_, args)| args.replace('"', ""))
            }
            None => line.to_owned(),
        };
        out.push_str(&unescape(&line));
        out.push('\n');
    }
    out
}

fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('\\' | 'e') => out.push('\\'),
            Some('&') => {}
            // Font changes: \fB \fI \fR \fP.
            Some('f') => {
                chars.next();
            }
            // \*(Aq is the apostrophe; \(bu a bullet.
            Some('*') => {
                let name: String = [chars.next(), chars.next(), chars.next()]
                    .into_iter()
                    .flatten()
                    .collect();
                out.push(if name == "(Aq" { '\'' } else { '?' });
            }
            Some('(') => {
                let name: String = [chars.next(), chars.next()].into_iter().flatten().collect();
                out.push_str(if name == "bu" { "*" } else { "?" });
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Whether `word` occurs in `text` as a whole word: not preceded or followed by a
/// letter, digit, `-` or `_` (so `-h` is not found inside `--help`).
#[must_use]
pub fn contains_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The items of `help` that the page `stem`.`section` (roff source) does not show.
/// Options, value names, defaults and subcommands must be in an entry of the page (the
/// line after a `.TP`), not just mentioned in its synopsis or prose. clap's built-in
/// `help` subcommand (`breakglass help X` = `breakglass X --help`) needs no entry.
#[must_use]
pub fn missing_from_page(help: &str, roff: &str, stem: &str, section: &str) -> Vec<Item> {
    let text = plain_text(roff);
    let headers = entry_headers(roff);
    help_items(help)
        .into_iter()
        .filter(|item| *item != Item::Subcommand("help".into()))
        .filter(|item| !page_shows(&text, &headers, item, stem, section))
        .collect()
}

/// The plain text of every entry header (the line after each `.TP`), one a line.
#[must_use]
pub fn entry_headers(roff: &str) -> String {
    let lines: Vec<&str> = roff.lines().collect();
    let mut out = String::new();
    for pair in lines.windows(2) {
        if pair[0] == ".TP" {
            out.push_str(&unescape(pair[1]));
            out.push('\n');
        }
    }
    out
}

fn page_shows(text: &str, headers: &str, item: &Item, stem: &str, section: &str) -> bool {
    match item {
        Item::Long(l) => contains_word(headers, &format!("--{l}")),
        Item::Short(s) => contains_word(headers, &format!("-{s}")),
        Item::Value(v) => contains_word(headers, v),
        // clap's help quotes an empty or spaced default (`[default: ""]`), clap_mangen
        // does not. Some "defaults" are prose in the help text, so anywhere will do.
        Item::Default(d) => {
            let bare = d
                .strip_prefix('"')
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or(d);
            text.contains(&format!("[default: {d}]"))
                || text.contains(&format!("[default: {bare}]"))
        }
        Item::PossibleValue(v) => contains_word(text, v),
        Item::Env(e) => contains_word(text, e),
        // The page lists it as a reference to its own page.
        Item::Subcommand(s) => headers.contains(&format!("{stem}-{s}({section})")),
    }
}

/// The module options of [`breakglass_proto::pam_options::OPTIONS`] that the roff page `roff`
/// does not document: each needs its `name=VALUE` (or flag) entry in OPTIONS, its
/// description and its default.
#[must_use]
pub fn pam_options_missing(roff: &str) -> Vec<String> {
    let text = plain_text(roff);
    let options_section: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "OPTIONS")
        .skip(1)
        .take_while(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_uppercase() || c == ' '))
        .collect();
    let section = options_section.join("\n");
    let headers = entry_headers(roff);
    let mut missing = Vec::new();
    for o in breakglass_proto::pam_options::OPTIONS {
        let header = match o.value {
            Some(v) => format!("{}={v}", o.name),
            None => o.name.to_owned(),
        };
        if !headers.lines().any(|l| l == header) {
            missing.push(format!("option entry `{header}`"));
        }
        if !section.contains(o.description) {
            missing.push(format!("description of `{}`", o.name));
        }
        if let Some(d) = o.default
            && !section.contains(&format!("Default: {d}."))
        {
            missing.push(format!("default of `{}` ({d})", o.name));
        }
    }
    missing
}
