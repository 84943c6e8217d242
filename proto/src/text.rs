//! Untrusted text: which characters each kind of field may hold, and the one escaping
//! function every human-readable printer uses.
//!
//! Strings reach people from many sources (requesters, approvers, reviewers, hosts, old
//! audit logs) and through many printers (CLI tables, syslog, webhooks, the PAM module's
//! messages to a terminal). Two rules keep them from forging output:
//!
//! * **Checked where they enter.** The daemon refuses a field that breaks its rule with
//!   `INVALID_ARGUMENT` naming the field. Unix user names ([`check_user_name`], and the
//!   stricter certificate principals of [`names::check_principal`](crate::names)), host
//!   names, remote addresses ([`check_remote_host`]) and stable codes ([`check_code`]) have
//!   grammars; identities ([`check_identity`]) are one token; free text ([`check_free_text`])
//!   may hold any printable character, but no [hazard](is_hazard).
//! * **Escaped where they are printed**, with [`escape`] (or [`escaped`], [`quote`] for
//!   `key=value` lines), because validation does not clean history: a log written before a
//!   rule existed still holds what it held.
//!
//! A hazard is a character that changes how a terminal or a log line shows the text
//! around it: C0 and C1 control characters and DEL (escape sequences, carriage return,
//! newline, U+0085 NEXT LINE, the one-byte CSI U+009B), the Unicode bidi controls (U+202E
//! RIGHT-TO-LEFT OVERRIDE reorders what follows) and the line and paragraph separators
//! U+2028 and U+2029.
//!
//! [`escape`] shows each hazard visibly and unambiguously: `\n`, `\r`, `\t`, `\x1b` (other
//! C0 controls and DEL), `\u{85}`, `\u{202e}` (C1 controls, bidi controls, separators),
//! and doubles the backslash, so that no input can forge an escape. Text with neither a
//! hazard nor a backslash (letters of any script, quotes, emoji) is shown unchanged.

use std::borrow::Cow;
use std::fmt;

/// Longest free-text field a person writes: reasons, comments, notes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Longest human-readable detail of a host session record (the PAM module cuts its own
/// details to this length).
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Longest identity (URI or e-mail SAN of a client certificate, `unix:<user>`).
pub const MAX_IDENTITY_BYTES: usize = 256;
/// Longest Unix user name in a host record (Linux `LOGIN_NAME_MAX`).
pub const MAX_USER_NAME_BYTES: usize = 256;
/// Longest remote address of a session (a DNS name at most).
pub const MAX_REMOTE_HOST_BYTES: usize = 253;
/// Longest stable code (a deny reason, a drill step).
pub const MAX_CODE_BYTES: usize = 64;

/// The Unicode bidi controls (property `Bidi_Control`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// True for a character that must never reach a terminal or a log line raw: a C0 or C1
/// control character or DEL, a bidi control, or the line or paragraph separator.
#[must_use]
pub fn is_hazard(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// How a hazard is named in an error message.
fn kind(c: char) -> &'static str {
    match c {
        '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => "a line break",
        c if is_bidi_control(c) => "a bidi control",
        _ => "a control character",
    }
}

/// Appends `c` as [`escape`] shows it.
fn push_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\\' => out.write_str("\\\\"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if u32::from(c) < 0x80 && is_hazard(c) => write!(out, "\\x{:02x}", u32::from(c)),
        c if is_hazard(c) => write!(out, "\\u{{{:x}}}", u32::from(c)),
        c => out.write_char(c),
    }
}

fn needs_escape(c: char) -> bool {
    c == '\\' || is_hazard(c)
}

fn write_escaped(out: &mut impl fmt::Write, s: &str, also: Option<char>) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(|c: char| needs_escape(c) || Some(c) == also) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        if Some(c) == also {
            out.write_char('\\')?;
            out.write_char(c)?;
        } else {
            push_escaped(out, c)?;
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `s` as it may be shown to a person: every [hazard](is_hazard) escaped (`\n`, `\x1b`,
/// `\u{202e}`), backslashes doubled, everything else unchanged (borrowed when nothing
/// needed escaping).
#[must_use]
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, s, None);
    Cow::Owned(out)
}

/// [`escape`] as a `Display` value, for `format!` without an allocation.
#[must_use]
pub fn escaped(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// Shows its text [escaped](escape); see [`escaped`].
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, None)
    }
}

/// True when `s` may stand bare as the value of a `key=value` token.
#[must_use]
pub fn is_bare_value(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+' | ',' | '*' | '?')
        })
}

/// `s` in double quotes, [escaped](escape), with `"` shown as `\"`.
#[must_use]
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let _ = write_escaped(&mut out, s, Some('"'));
    out.push('"');
    out
}

/// `s` as the value of a `key=value` token (syslog lines, `audit show`): bare when it
/// holds only letters, digits and `._-:/@+,*?`, otherwise [quoted](quote).
#[must_use]
pub fn kv_value(s: &str) -> Cow<'_, str> {
    if is_bare_value(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quote(s))
    }
}

/// `s` unchanged when it holds no hazard, otherwise [escaped](escape). For text that is
/// already written for people and quotes what it received escaped (an error message from
/// the daemon, a verifier's warning): its escapes are not doubled, and a raw hazard still
/// never passes. Data (a reason, a name) is shown with [`escape`], which is unambiguous.
#[must_use]
pub fn escape_hazards(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_hazard) {
        escape(s)
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` made fit for a free-text field of at most `max` bytes: [`escape_hazards`], then cut
/// (ending in `...`) when too long. For producers that put foreign text (error messages
/// quoting a certificate, a revocation reason) into a field the daemon checks with
/// [`check_free_text`].
#[must_use]
pub fn fit_free_text(s: &str, max: usize) -> String {
    let text = escape_hazards(s);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The first hazard of `s`, as an error message.
fn first_hazard(s: &str) -> Result<(), String> {
    match s.char_indices().find(|(_, c)| is_hazard(*c)) {
        None => Ok(()),
        Some((i, c)) => {
            let mut shown = String::new();
            let _ = push_escaped(&mut shown, c);
            Err(format!(
                "contains {} ({shown}) at byte {i}; write plain text on one line, without control characters, bidi controls or line separators",
                kind(c)
            ))
        }
    }
}

/// Free text (a reason, a comment, a note, a detail): at most `max` bytes, any printable
/// character of any script, no [hazard](is_hazard). Empty is allowed here; whether a
/// field may be empty is the caller's rule.
pub fn check_free_text(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!(
            "is {} bytes long; at most {max} are allowed",
            s.len()
        ));
    }
    first_hazard(s)
}

/// An identity: the URI or e-mail SAN of a client certificate (`host://db-7`,
/// `sre@example.com`) or `unix:<user>`: 1 to 256 bytes, no whitespace, no hazard.
pub fn check_identity(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_IDENTITY_BYTES {
        return Err(format!(
            "must be 1 to {MAX_IDENTITY_BYTES} bytes long, not {}",
            s.len()
        ));
    }
    first_hazard(s)?;
    if let Some((i, _)) = s.char_indices().find(|(_, c)| c.is_whitespace()) {
        return Err(format!(
            "contains whitespace at byte {i}; an identity is one token (a URI or an e-mail address)"
        ));
    }
    Ok(())
}

/// A Unix user name as a login on a host sees it (the user of a host session record):
/// 1 to 256 bytes of ASCII letters, digits, `_`, `.`, `-`, `@` (fully qualified names of
/// directory users) and `$` (machine accounts), not starting with `-`. Certificate
/// principals follow the stricter [`names::check_principal`](crate::names::check_principal).
pub fn check_user_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_USER_NAME_BYTES {
        return Err(format!(
            "must be 1 to {MAX_USER_NAME_BYTES} bytes long, not {}",
            s.len()
        ));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@' | '$')))
    {
        let mut shown = String::new();
        let _ = push_escaped(&mut shown, c);
        return Err(format!(
            "contains {shown:?} at byte {i}; a user name holds letters, digits, '_', '.', '-', '@' and '$' only"
        ));
    }
    if s.starts_with('-') {
        return Err("must not start with '-'".into());
    }
    Ok(())
}

/// The remote address of a session (`PAM_RHOST`): an IPv4 or IPv6 address (with a `%zone`)
/// or a DNS name: 1 to 253 bytes of ASCII letters, digits, `.`, `-`, `_`, `:` and `%`.
pub fn check_remote_host(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_REMOTE_HOST_BYTES {
        return Err(format!(
            "must be 1 to {MAX_REMOTE_HOST_BYTES} bytes long, not {}",
            s.len()
        ));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%')))
    {
        let mut shown = String::new();
        let _ = push_escaped(&mut shown, c);
        return Err(format!(
            "contains {shown:?} at byte {i}; a remote address is an IP address or a host name"
        ));
    }
    Ok(())
}

/// A stable code (a deny reason such as `host_scope`, a drill step such as
/// `session-open`): 1 to 64 bytes of ASCII letters, digits, `_`, `-` and `.`.
pub fn check_code(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_CODE_BYTES {
        return Err(format!(
            "must be 1 to {MAX_CODE_BYTES} bytes long, not {}",
            s.len()
        ));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        let mut shown = String::new();
        let _ = push_escaped(&mut shown, c);
        return Err(format!(
            "contains {shown:?} at byte {i}; a code holds letters, digits, '_', '-' and '.' only"
        ));
    }
    Ok(())
}

/// Strings holding every kind of hazard (terminal escapes, CR, LF, bidi overrides and
/// isolates, line and paragraph separators, NEXT LINE, the one-byte CSI, DEL, NUL): what the
/// tests of every printer and every checked field are fed.
pub const NASTY_SAMPLES: [&str; 9] = [
    "\u{1b}[2J\u{1b}[Hcleared",
    "forged\r2026-01-01 approved by ceo",
    "line\nsecond line",
    "evil\u{202e}txt.exe",
    "a\u{2028}b\u{2029}c",
    "next\u{85}line",
    "csi\u{9b}31m",
    "tab\there\u{7f}del\u{0}nul",
    "isolate\u{2066}x\u{2069}\u{200f}\u{61c}",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reverses [`escape`] (test oracle for unambiguity).
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('x') => {
                    let h: String = it.by_ref().take(2).collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap());
                }
                Some('u') => {
                    assert_eq!(it.next(), Some('{'));
                    let h: String = it.by_ref().take_while(|c| *c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap());
                }
                other => panic!("stray escape \\{other:?} in {s:?}"),
            }
        }
        out
    }

    #[test]
    fn hazards_are_shown_visibly() {
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("a\r\n\tb"), "a\\r\\n\\tb");
        assert_eq!(escape("evil\u{202e}txt"), "evil\\u{202e}txt");
        assert_eq!(
            escape("\u{2028}\u{2029}\u{85}\u{9b}"),
            "\\u{2028}\\u{2029}\\u{85}\\u{9b}"
        );
        assert_eq!(escape("\u{7f}\u{0}"), "\\x7f\\x00");
        assert_eq!(escape("C:\\new"), "C:\\\\new");
        assert_eq!(escaped("x\u{1b}y").to_string(), "x\\x1by");
    }

    #[test]
    fn ordinary_text_is_unchanged_and_borrowed() {
        for s in [
            "INC-4411 primary down",
            "café, naïve, 日本語, العربية, emoji 🚨 and \"quotes\" 'too'",
            "",
            "zero\u{200d}width joiner in 👩\u{200d}💻",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
            assert_eq!(escaped(s).to_string(), s);
        }
    }

    #[test]
    fn quoting_for_key_value_lines() {
        assert_eq!(kv_value("g-00ff"), "g-00ff");
        assert_eq!(kv_value(""), "\"\"");
        assert_eq!(kv_value("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
        assert_eq!(kv_value("x=y"), "\"x=y\"");
    }

    #[test]
    fn nasty_strings_escape_to_one_safe_line() {
        for s in NASTY_SAMPLES {
            let e = escape(s);
            assert!(!e.chars().any(is_hazard), "{s:?} -> {e:?}");
            assert_eq!(unescape(&e), s);
            assert!(check_free_text(s, MAX_TEXT_BYTES).is_err(), "{s:?}");
            assert!(check_free_text(&e, MAX_TEXT_BYTES).is_ok(), "{e:?}");
        }
    }

    #[test]
    fn free_text_rule_names_what_is_wrong() {
        assert!(check_free_text("INC-1: db «primary» down 🚨", MAX_TEXT_BYTES).is_ok());
        let e = check_free_text("ab\u{202e}c", MAX_TEXT_BYTES).unwrap_err();
        assert!(e.contains("a bidi control (\\u{202e}) at byte 2"), "{e}");
        let e = check_free_text("a\nb", MAX_TEXT_BYTES).unwrap_err();
        assert!(e.contains("a line break (\\n)"), "{e}");
        let e = check_free_text("a\u{1b}", MAX_TEXT_BYTES).unwrap_err();
        assert!(e.contains("a control character (\\x1b)"), "{e}");
        let e = check_free_text(&"x".repeat(1025), MAX_TEXT_BYTES).unwrap_err();
        assert!(e.contains("1025 bytes"), "{e}");
    }

    #[test]
    fn grammars() {
        for ok in ["postgres", "svc_app-1.x", "john@corp.example", "WS01$"] {
            assert!(check_user_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a\u{1b}", "a:b", "a/b", &"u".repeat(257)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["10.0.0.1", "fe80::1%eth0", "::1", "client-7.example.com"] {
            assert!(check_remote_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "10.0.0.1\n", "x\u{202e}", &"h".repeat(254)] {
            assert!(check_remote_host(bad).is_err(), "{bad:?}");
        }
        for ok in ["host_scope", "session-open", "bad_certificate"] {
            assert!(check_code(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x\u{9b}", &"c".repeat(65)] {
            assert!(check_code(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "host://db-7",
            "sre@example.com",
            "unix:root",
            "spiffe://corp/sre/ä",
        ] {
            assert!(check_identity(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a\u{202e}b",
            "a\u{2028}",
            "a\u{85}",
            &"i".repeat(257),
        ] {
            assert!(check_identity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_keep_their_escapes_unless_they_hold_a_hazard() {
        let m = "reason: contains a control character (\\x1b) at byte 3";
        assert!(matches!(escape_hazards(m), Cow::Borrowed(_)));
        assert_eq!(escape_hazards("raw\u{1b}[2J \\x"), "raw\\x1b[2J \\\\x");
    }

    #[test]
    fn fitting_free_text_escapes_only_when_needed() {
        assert_eq!(fit_free_text("C:\\data ok", 100), "C:\\data ok");
        let f = fit_free_text("bad\u{1b}[2J", 100);
        assert_eq!(f, "bad\\x1b[2J");
        assert!(check_free_text(&f, 100).is_ok());
        let f = fit_free_text(&"é".repeat(100), 51);
        assert!(f.len() <= 51 && f.ends_with("..."), "{f}");
        assert!(check_free_text(&f, 51).is_ok());
    }

    proptest! {
        #[test]
        fn escaped_output_never_holds_a_hazard_and_round_trips(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.chars().any(is_hazard));
            prop_assert_eq!(escaped(&s).to_string(), e.as_ref());
            prop_assert_eq!(unescape(&e), s.clone());
            let q = quote(&s);
            prop_assert!(!q.chars().any(is_hazard));
            prop_assert!(check_free_text(&fit_free_text(&s, 300), 300).is_ok());
        }

        #[test]
        fn text_without_hazards_or_backslashes_is_unchanged(s in "[^\\\\\\p{Cc}\u{2028}\u{2029}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\u{61c}]*") {
            prop_assert!(matches!(escape(&s), Cow::Borrowed(_)));
            prop_assert!(check_free_text(&s, usize::MAX).is_ok());
        }

        #[test]
        fn mixed_hazards_are_all_escaped(parts in proptest::collection::vec(
            prop_oneof![Just("\u{1b}"), Just("\r"), Just("\n"), Just("\u{202e}"), Just("\u{2028}"),
                        Just("\u{2029}"), Just("\u{85}"), Just("\u{9b}"), Just("\\"), Just("ok"), Just("ß")],
            0..20)) {
            let s: String = parts.concat();
            let e = escape(&s);
            prop_assert!(!e.chars().any(is_hazard));
            prop_assert_eq!(unescape(&e), s);
        }
    }
}
