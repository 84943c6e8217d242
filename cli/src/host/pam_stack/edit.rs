//! Planning `enable-pam` and `disable-pam`: the new text of a PAM file (text in, [`Plan`]
//! out, no file access) and the diff `--dry-run` shows.
#![forbid(unsafe_code)]

use std::path::Path;

use super::parse::{Placement, Rule, inspect};

/// The session line enable-pam adds.
#[must_use]
pub fn session_line(module: &str, options: &str) -> String {
    let options = options.split_whitespace().collect::<Vec<_>>().join(" ");
    if options.is_empty() {
        format!("session    required     {module}")
    } else {
        format!("session    required     {module} {options}")
    }
}

/// The outcome of planning a change: the new text (if it changes) and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The file's new text; `None` when nothing changes.
    pub new_text: Option<String>,
    /// One line for the user.
    pub message: String,
}

fn lines_of(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Every line index the rules take (a continued rule takes several).
fn lines_of_rules(rules: &[Rule]) -> Vec<usize> {
    rules.iter().flat_map(|r| r.index..=r.last).collect()
}

fn join(lines: &[String], had_final_newline: bool) -> String {
    let mut s = lines.join("\n");
    if had_final_newline || !s.is_empty() {
        s.push('\n');
    }
    s
}

/// Plans `enable-pam` on `text` (the file at `file`, named in messages).
pub fn plan_enable(text: &str, file: &Path, module: &str, options: &str) -> Result<Plan, String> {
    let f = file.display();
    let report = inspect(text, module);
    if report.session_rules == 0 {
        return Err(format!(
            "{f} has no session rules: it does not look like sshd's PAM file. Give the right file with --pam-file, or add the line by hand (see /usr/share/libpam-breakglass/sshd.breakglass)"
        ));
    }
    let Some(loginuid) = report.loginuid.clone() else {
        return Err(format!(
            "{f} has no `session required pam_loginuid.so` line; pam_breakglass needs the audit session id it sets. Add that line to the session stack first, then run enable-pam again"
        ));
    };
    if report.barrier().is_some_and(|b| b < loginuid.index) {
        return Err(format!(
            "{f} is unfamiliar: pam_loginuid.so (line {}) comes after @include common-session or pam_env.so (line {}); place `{}` by hand after pam_loginuid and before both",
            loginuid.index + 1,
            report.barrier().map_or(0, |b| b + 1),
            session_line(module, options)
        ));
    }
    let existing: Vec<Rule> = report.module_session_rules().cloned().collect();
    let wanted = session_line(module, options);
    if existing.len() == 1 && report.placement == Placement::Correct {
        let r = &existing[0];
        let line = r.text_in(text);
        let same_options =
            r.args.join(" ") == options.split_whitespace().collect::<Vec<_>>().join(" ");
        let note = if same_options {
            String::new()
        } else {
            format!(
                " (with its own options; to use `{}` instead, run disable-pam, then enable-pam)",
                options.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        };
        return Ok(Plan {
            new_text: None,
            message: format!("already enabled: {f} line {}: {line}{note}", r.index + 1),
        });
    }
    // Keep an existing line's text (its options) when moving it; a rule continued with
    // `\` moves as one line.
    let src = lines_of(text);
    let keep = existing
        .first()
        .map_or_else(|| wanted.clone(), |r| r.text_in(text));
    let remove = lines_of_rules(&existing);
    let mut out: Vec<String> = Vec::with_capacity(src.len() + 1);
    let mut inserted_at = 0;
    for (i, l) in src.iter().enumerate() {
        if remove.contains(&i) {
            continue;
        }
        out.push((*l).to_owned());
        if i == loginuid.last {
            out.push(keep.clone());
            inserted_at = out.len();
        }
    }
    let new_text = join(&out, text.ends_with('\n'));
    let message = if existing.is_empty() {
        format!(
            "enabled: added to {f} at line {inserted_at}, after pam_loginuid.so and before common-session and pam_env.so: {keep}"
        )
    } else {
        let why = match report.placement {
            Placement::AfterPamEnv => "it came after pam_env.so",
            Placement::AfterCommonSession => "it came after @include common-session",
            Placement::NoLoginuidBefore => "it came before pam_loginuid.so",
            Placement::Correct | Placement::Missing => "it was there more than once",
        };
        let from: Vec<String> = existing.iter().map(|r| (r.index + 1).to_string()).collect();
        format!(
            "moved: {f} line {} is now line {inserted_at}, after pam_loginuid.so and before common-session and pam_env.so ({why}): {keep}",
            from.join(", ")
        )
    };
    Ok(Plan {
        new_text: Some(new_text),
        message,
    })
}

/// Plans `disable-pam`: every active rule naming `module` goes.
#[must_use]
pub fn plan_disable(text: &str, file: &Path, module: &str) -> Plan {
    let f = file.display();
    let report = inspect(text, module);
    if report.module_rules.is_empty() {
        return Plan {
            new_text: None,
            message: format!("already disabled: {f} has no rule naming {module}"),
        };
    }
    let remove = lines_of_rules(&report.module_rules);
    let out: Vec<String> = lines_of(text)
        .iter()
        .enumerate()
        .filter(|(i, _)| !remove.contains(i))
        .map(|(_, l)| (*l).to_owned())
        .collect();
    let which: Vec<String> = report
        .module_rules
        .iter()
        .map(|r| (r.index + 1).to_string())
        .collect();
    Plan {
        new_text: Some(join(&out, text.ends_with('\n'))),
        message: format!(
            "disabled: removed {} from {f} (line {})",
            module,
            which.join(", ")
        ),
    }
}

/// A unified diff of two texts (3 lines of context), for `--dry-run`.
#[must_use]
pub fn unified_diff(old: &str, new: &str, name: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // LCS table; PAM files are short.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // Edit script: (' ' | '-' | '+', old index, new index, text).
    let mut ops: Vec<(char, usize, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, j, a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', i, j, b[j]));
            j += 1;
        } else {
            ops.push(('-', i, j, a[i]));
            i += 1;
        }
    }
    const CONTEXT: usize = 3;
    let mut out = format!("--- {name}\n+++ {name} (new)\n");
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let old_len = hunk.iter().filter(|o| o.0 != '+').count();
        let new_len = hunk.iter().filter(|o| o.0 != '-').count();
        let (o0, n0) = (hunk[0].1, hunk[0].2);
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            o0 + usize::from(old_len > 0),
            n0 + usize::from(new_len > 0)
        ));
        for (c, _, _, t) in hunk {
            out.push_str(&format!("{c}{t}\n"));
        }
    }
    out
}
