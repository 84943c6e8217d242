//! `breakglass host enable-pam` / `disable-pam`: put `pam_breakglass.so` into sshd's PAM
//! session stack (`/etc/pam.d/sshd`) and take it out again.
//!
//! Where the line goes, and why:
//! - **after** `session ... pam_loginuid.so`: the module needs the audit session id
//!   pam_loginuid assigns (the guard finds every process of the session by it);
//! - **before** `@include common-session` (or any other session include) and before
//!   every `session ... pam_env.so` line: `pam_env user_readenv=1` lets a user's
//!   `~/.pam_environment` overwrite `SSH_AUTH_INFO_0`, where the module reads the
//!   certificate.
//!
//! The line is inserted directly after the pam_loginuid line. The module is never put into
//! `common-session`: every `su`, `cron` and `sudo` session would run it.
//!
//! Files are changed atomically (temporary file in the same directory, fsync, rename) with
//! the original's mode and owner, after a copy of the original is written to
//! `<file>.breakglass-bak` (one fixed name: it always holds the file as it was before the
//! last change; the package's prerm uses the same name).
//!
//! [`rules`] is the CLI's one reader of PAM rule lines (comments, `\` continuations,
//! `[...]` controls); [`Rule`] knows which rules run pam_loginuid, pam_env or a session
//! include, and [`Placement::judge`] is the one judgement of where the module's line sits.
//! [`inspect`] is the pure part of enable-pam (text in, [`StackReport`] out); `host doctor`
//! builds its session stack (following includes) on [`rules`] too.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::CliError;

/// sshd's PAM service file on Debian.
pub const DEFAULT_PAM_FILE: &str = "/etc/pam.d/sshd";
/// The module as named in a PAM rule (PAM looks it up in the multiarch security directory).
pub const DEFAULT_MODULE: &str = "pam_breakglass.so";
/// Module options: the files the sshd_config.d snippet names (packaging/sshd/breakglass.conf).
pub const DEFAULT_OPTIONS: &str =
    "ca_keys=/etc/ssh/breakglass_user_ca.pub krl=/etc/ssh/breakglass_revoked.krl";
/// Suffix of the backup written before every change.
pub const BACKUP_SUFFIX: &str = ".breakglass-bak";
/// Largest PAM file read.
const MAX_PAM_FILE: u64 = 256 * 1024;

/// Where the module's session line sits in a PAM file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// No active session rule names the module.
    Missing,
    /// After pam_loginuid and before common-session and every pam_env line.
    Correct,
    /// After a `session ... pam_env.so` line: users can spoof `SSH_AUTH_INFO_0` there.
    AfterPamEnv,
    /// After `@include common-session` (or another session include).
    AfterCommonSession,
    /// Before pam_loginuid, or the file has no pam_loginuid line: no audit session id.
    NoLoginuidBefore,
}

impl Placement {
    /// What is wrong, for a human; `None` when nothing is.
    #[must_use]
    pub fn problem(self) -> Option<&'static str> {
        match self {
            Placement::Correct => None,
            Placement::Missing => Some("pam_breakglass.so is not in sshd's PAM session stack"),
            Placement::AfterPamEnv => Some(
                "pam_breakglass.so comes after pam_env.so in sshd's session stack: pam_env user_readenv=1 lets users overwrite SSH_AUTH_INFO_0 before the module reads it",
            ),
            Placement::AfterCommonSession => Some(
                "pam_breakglass.so comes after @include common-session in sshd's session stack; it must come before it",
            ),
            Placement::NoLoginuidBefore => Some(
                "pam_breakglass.so does not come after pam_loginuid.so in sshd's session stack: without the audit session id the module denies every breakglass session",
            ),
        }
    }
}

/// The module that sets the audit session id the module needs.
pub const LOGINUID_MODULE: &str = "pam_loginuid.so";
/// The module that lets users set environment variables (`user_readenv=1`).
pub const PAM_ENV_MODULE: &str = "pam_env.so";

/// One active (uncommented) PAM rule of a file: one logical line, which `\` at the end of
/// a line continues on the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 0-based index of the rule's first line in the file.
    pub index: usize,
    /// 0-based index of its last line (> `index` when `\` continues it).
    pub last: usize,
    /// Rule type without a leading `-` (`auth`, `account`, `session`, `password`), or
    /// `@include`.
    pub kind: String,
    /// Control field (`required`, `[success=ok default=bad]`, `include`, …); empty for
    /// `@include`.
    pub control: String,
    /// Module path or name (`pam_env.so`, `/lib/.../pam_unix.so`); the included file for
    /// `@include` and `include`/`substack` controls.
    pub module: String,
    /// Module arguments (`[...]` arguments kept whole).
    pub args: Vec<String>,
}

/// The file name of a module as a rule writes it (a name or a path).
#[must_use]
pub fn module_name(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

impl Rule {
    /// True when the rule runs `module` (by name, or by a path ending in `/module`).
    #[must_use]
    pub fn runs(&self, module: &str) -> bool {
        if self.included_file().is_some() || self.is_include_control() {
            return false;
        }
        !self.module.is_empty()
            && (self.module == module || module_name(&self.module) == module_name(module))
    }

    fn is_include_control(&self) -> bool {
        matches!(self.control.as_str(), "include" | "substack")
    }

    /// The module's file name ([`module_name`]).
    #[must_use]
    pub fn module_name(&self) -> &str {
        module_name(&self.module)
    }

    /// True for a `session` rule that runs a module (not an include).
    #[must_use]
    pub fn is_session_module(&self) -> bool {
        self.kind == "session" && !self.is_include_control() && !self.module.is_empty()
    }

    /// True for `session ... pam_loginuid.so`.
    #[must_use]
    pub fn is_loginuid(&self) -> bool {
        self.kind == "session" && self.runs(LOGINUID_MODULE)
    }

    /// True for `session ... pam_env.so`.
    #[must_use]
    pub fn is_pam_env(&self) -> bool {
        self.kind == "session" && self.runs(PAM_ENV_MODULE)
    }

    /// True for `@include common-session*` and `session include|substack ...`: the
    /// module's line must come before them (they also run for su, cron and sudo, and may
    /// run pam_env).
    #[must_use]
    pub fn is_session_include(&self) -> bool {
        (self.kind == "@include" && self.module.starts_with("common-session"))
            || (self.kind == "session" && self.is_include_control() && !self.module.is_empty())
    }

    /// The file a rule includes into the session stack: `@include FILE` (every type) and
    /// `session include|substack FILE`.
    #[must_use]
    pub fn included_file(&self) -> Option<&str> {
        let includes =
            self.kind == "@include" || (self.kind == "session" && self.is_include_control());
        (includes && !self.module.is_empty()).then_some(self.module.as_str())
    }

    /// An include as written, in one line (`@include common-session`,
    /// `session substack postlogin`).
    #[must_use]
    pub fn include_text(&self) -> String {
        if self.kind == "@include" {
            format!("@include {}", self.module)
        } else {
            format!("{} {} {}", self.kind, self.control, self.module)
        }
    }

    /// The rule's text in `text` (its file), in one line: each line trimmed, a
    /// continuation's `\` dropped.
    #[must_use]
    pub fn text_in(&self, text: &str) -> String {
        let lines: Vec<&str> = text
            .lines()
            .skip(self.index)
            .take(self.last + 1 - self.index)
            .map(|l| {
                let l = l.trim();
                l.strip_suffix('\\').map_or(l, str::trim_end)
            })
            .collect();
        lines.join(" ")
    }
}

/// What [`inspect`] found in a PAM file. Line numbers are 0-based indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackReport {
    /// Active rules of any type naming the module, in file order.
    pub module_rules: Vec<Rule>,
    /// The first active `session ... pam_loginuid.so` rule.
    pub loginuid: Option<Rule>,
    /// The first `@include common-session` or `session include|substack` rule.
    pub common_session: Option<usize>,
    /// The first active `session ... pam_env.so` rule.
    pub pam_env: Option<usize>,
    /// Number of active session rules (any module).
    pub session_rules: usize,
    /// Where the first session rule naming the module sits.
    pub placement: Placement,
}

impl StackReport {
    /// The module's session rules.
    pub fn module_session_rules(&self) -> impl Iterator<Item = &Rule> {
        self.module_rules.iter().filter(|r| r.kind == "session")
    }

    /// The first index the module's line must come before: the first session include or
    /// pam_env rule.
    #[must_use]
    pub fn barrier(&self) -> Option<usize> {
        match (self.common_session, self.pam_env) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Placement {
    /// The one judgement of a module line's place, from what runs before it in the session
    /// stack: a pam_env rule (in the file, or in a file it includes), a session include
    /// (`@include common-session`, `session include|substack`), a pam_loginuid rule.
    #[must_use]
    pub fn judge(pam_env_before: bool, include_before: bool, loginuid_before: bool) -> Self {
        if pam_env_before {
            Placement::AfterPamEnv
        } else if include_before {
            Placement::AfterCommonSession
        } else if !loginuid_before {
            Placement::NoLoginuidBefore
        } else {
            Placement::Correct
        }
    }
}

/// Splits a rule line into fields; `[...]` fields (with spaces inside) stay whole.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' if depth > 0 => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A line without its comment: `#` starts one anywhere on a line (Debian's file has
/// `pam_env.so # [1]`).
fn code(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

fn rule_of(index: usize, last: usize, f: &[String]) -> Option<Rule> {
    let first = f.first()?;
    if first == "@include" {
        return Some(Rule {
            index,
            last,
            kind: "@include".into(),
            control: String::new(),
            module: f.get(1).cloned().unwrap_or_default(),
            args: Vec::new(),
        });
    }
    Some(Rule {
        index,
        last,
        kind: first.trim_start_matches('-').to_ascii_lowercase(),
        control: f.get(1).cloned().unwrap_or_default(),
        module: f.get(2).cloned().unwrap_or_default(),
        args: f.iter().skip(3).cloned().collect(),
    })
}

/// Parses one line into a rule; `None` for blank lines and comments.
#[must_use]
pub fn parse_rule(index: usize, line: &str) -> Option<Rule> {
    rule_of(index, index, &fields(code(line)))
}

/// The active rules of a PAM file, in order: comments cut, a line ending in `\` joined
/// with the next (as libpam reads them).
#[must_use]
pub fn rules(text: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = None;
    let mut last = 0;
    for (i, raw) in text.lines().enumerate() {
        let start_i = *start.get_or_insert(i);
        last = i;
        let line = code(raw);
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        out.extend(rule_of(start_i, i, &fields(&pending)));
        pending.clear();
        start = None;
    }
    // A continuation on the last line continues nothing.
    if let Some(start_i) = start {
        out.extend(rule_of(start_i, last, &fields(&pending)));
    }
    out
}

/// Finds `module` in the PAM file `text` and where it sits relative to pam_loginuid,
/// common-session and pam_env. Pure: no file access, so included files are not read: a
/// session include counts as a barrier whatever it holds.
#[must_use]
pub fn inspect(text: &str, module: &str) -> StackReport {
    let rules = rules(text);
    let mut report = StackReport {
        module_rules: rules.iter().filter(|r| r.runs(module)).cloned().collect(),
        loginuid: rules.iter().find(|r| r.is_loginuid()).cloned(),
        common_session: rules
            .iter()
            .find(|r| r.is_session_include())
            .map(|r| r.index),
        pam_env: rules.iter().find(|r| r.is_pam_env()).map(|r| r.index),
        session_rules: rules.iter().filter(|r| r.kind == "session").count(),
        placement: Placement::Missing,
    };
    let first = report.module_session_rules().next().map(|r| r.index);
    if let Some(i) = first {
        report.placement = Placement::judge(
            report.pam_env.is_some_and(|e| e < i),
            report.common_session.is_some_and(|c| c < i),
            report.loginuid.as_ref().is_some_and(|l| l.index < i),
        );
    }
    report
}

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

/// `breakglass host enable-pam`.
#[derive(Debug, Args, Clone)]
pub struct EnablePamArgs {
    /// sshd's PAM service file
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PAM_FILE)]
    pub pam_file: PathBuf,
    /// The module, as PAM rules name it
    #[arg(long, value_name = "MODULE", default_value = DEFAULT_MODULE)]
    pub module: String,
    /// Module options (one string; see pam_breakglass(8))
    #[arg(long, value_name = "OPTIONS", default_value = DEFAULT_OPTIONS, allow_hyphen_values = true)]
    pub options: String,
    /// Show the change as a diff and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `breakglass host disable-pam`.
#[derive(Debug, Args, Clone)]
pub struct DisablePamArgs {
    /// sshd's PAM service file
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PAM_FILE)]
    pub pam_file: PathBuf,
    /// The module, as PAM rules name it
    #[arg(long, value_name = "MODULE", default_value = DEFAULT_MODULE)]
    pub module: String,
    /// Show the change as a diff and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Reads a PAM file: a regular file (not a symlink, which an atomic rename would replace),
/// of sane size.
fn read_pam_file(path: &Path) -> Result<(String, std::fs::Metadata), CliError> {
    let p = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        CliError::Io(format!(
            "cannot read {p}: {e}; give sshd's PAM file with --pam-file"
        ))
    })?;
    if meta.file_type().is_symlink() {
        return Err(CliError::Usage(format!(
            "{p} is a symlink; run again with --pam-file set to the file it points to"
        )));
    }
    if !meta.is_file() {
        return Err(CliError::Usage(format!("{p} is not a regular file")));
    }
    if meta.len() > MAX_PAM_FILE {
        return Err(CliError::Usage(format!(
            "{p} is {} bytes, larger than any PAM file should be; check it",
            meta.len()
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::Io(format!("cannot read {p}: {e}")))?;
    Ok((text, meta))
}

/// Writes `bytes` to `path` atomically with `meta`'s mode and owner.
fn write_like(path: &Path, bytes: &[u8], meta: &std::fs::Metadata) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.breakglass-tmp{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // Owner first: chown clears set-id bits, chmod then sets the exact mode.
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
        f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The backup path of `file`.
#[must_use]
pub fn backup_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

/// Applies `plan` to `file` (backup, then atomic write) or prints its diff; returns what
/// to print.
fn apply(
    file: &Path,
    text: &str,
    meta: &std::fs::Metadata,
    plan: Plan,
    dry_run: bool,
) -> Result<String, CliError> {
    let Some(new_text) = plan.new_text else {
        return Ok(plan.message);
    };
    let p = file.display();
    if dry_run {
        return Ok(format!(
            "{}dry run, nothing written; would be {}",
            unified_diff(text, &new_text, &p.to_string()),
            plan.message
        ));
    }
    let backup = backup_path(file);
    write_like(&backup, text.as_bytes(), meta).map_err(|e| {
        CliError::Io(format!(
            "cannot write the backup {}: {e}; {p} was not changed",
            backup.display()
        ))
    })?;
    write_like(file, new_text.as_bytes(), meta)
        .map_err(|e| CliError::Io(format!("cannot write {p}: {e}; it was not changed")))?;
    Ok(format!("{} (backup: {})", plan.message, backup.display()))
}

/// Largest CA keys file read by [`check_module_files`].
const MAX_CA_KEYS_FILE: u64 = 1024 * 1024;

/// Checks the files a module line's options name the way the module does at every session:
/// a CA keys file that is missing, holds no key, is a symlink, is writable by group or
/// others, or (when run as root) is not owned by root makes the module deny EVERY session,
/// plain logins included, and so does such a KRL. `enable-pam` refuses to add a line that
/// would do that.
pub fn check_module_files(options: &str) -> Result<(), String> {
    let mut ca_keys = None;
    let mut krl = None;
    for o in options.split_whitespace() {
        if let Some(p) = o.strip_prefix("ca_keys=") {
            ca_keys = Some(PathBuf::from(p));
        } else if let Some(p) = o.strip_prefix("krl=") {
            krl = Some(PathBuf::from(p));
        }
    }
    let Some(ca_keys) = ca_keys else {
        return Err(format!(
            "the module options `{options}` name no ca_keys=PATH, which pam_breakglass requires (it would deny every session); add ca_keys=/etc/ssh/breakglass_user_ca.pub"
        ));
    };
    let fix_ca = format!(
        "install the CA's keys first (breakglass --config /etc/breakglass/host.toml ca-keys --out {}), then run enable-pam again",
        ca_keys.display()
    );
    check_trusted_file(&ca_keys, "CA keys file", &fix_ca)?;
    let text = std::fs::read(&ca_keys)
        .map_err(|e| format!("cannot read the CA keys file {}: {e}", ca_keys.display()))?;
    if text.len() as u64 > MAX_CA_KEYS_FILE {
        return Err(format!(
            "the CA keys file {} is larger than 1 MiB; check it",
            ca_keys.display()
        ));
    }
    let has_key = String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#'));
    if !has_key {
        return Err(format!(
            "the CA keys file {} holds no key: with pam_breakglass.so in the stack every session would be denied; {fix_ca}",
            ca_keys.display()
        ));
    }
    if let Some(krl) = krl {
        let fix_krl = format!(
            "create an empty one (ssh-keygen -k -f {}) or let `breakglass host sync-krl` fetch the CA's, then run enable-pam again",
            krl.display()
        );
        check_trusted_file(&krl, "KRL", &fix_krl)?;
    }
    Ok(())
}

/// A file the module trusts: regular, not a symlink, not writable by group or others,
/// owned by root (checked when running as root).
fn check_trusted_file(path: &Path, what: &str, fix: &str) -> Result<(), String> {
    let p = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        format!("the {what} {p} cannot be read ({e}): with pam_breakglass.so in the stack every session would be denied; {fix}")
    })?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "the {what} {p} is not a regular file (the module opens it without following symlinks and would deny every session); put the file itself there"
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the {what} {p} is writable by group or others; the module refuses it and would deny every session: chmod go-w {p}"
        ));
    }
    if nix::unistd::geteuid().is_root() && meta.uid() != 0 {
        return Err(format!(
            "the {what} {p} is not owned by root; the module refuses it and would deny every session: chown root {p}"
        ));
    }
    Ok(())
}

/// Runs `enable-pam`; returns the message to print.
pub fn enable(a: &EnablePamArgs) -> Result<String, CliError> {
    let (text, meta) = read_pam_file(&a.pam_file)?;
    let plan = plan_enable(&text, &a.pam_file, &a.module, &a.options).map_err(CliError::Usage)?;
    if plan.new_text.is_some() {
        // The options of the line that will be in the file (a moved line keeps its own).
        let written = plan
            .new_text
            .as_deref()
            .map(|t| inspect(t, &a.module))
            .and_then(|r| r.module_session_rules().next().cloned())
            .map(|r| r.args.join(" "))
            .unwrap_or_default();
        check_module_files(&written).map_err(|e| {
            CliError::Usage(format!("{e}. {} was not changed", a.pam_file.display()))
        })?;
    }
    apply(&a.pam_file, &text, &meta, plan, a.dry_run)
}

/// Runs `disable-pam`; returns the message to print.
pub fn disable(a: &DisablePamArgs) -> Result<String, CliError> {
    let (text, meta) = read_pam_file(&a.pam_file)?;
    let plan = plan_disable(&text, &a.pam_file, &a.module);
    apply(&a.pam_file, &text, &meta, plan, a.dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's stock /etc/pam.d/sshd (openssh-server 1:9.2p1-2+deb12u*).
    const DEBIAN12: &str = include_str!("../tests/data/debian12-pam.d-sshd");

    fn file() -> &'static Path {
        Path::new("/etc/pam.d/sshd")
    }

    fn line_no(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle) && !l.trim_start().starts_with('#'))
            .unwrap_or_else(|| panic!("no {needle}"))
    }

    #[test]
    fn stock_debian12_file_has_no_module_and_the_expected_anchors() {
        let r = inspect(DEBIAN12, DEFAULT_MODULE);
        assert_eq!(r.placement, Placement::Missing);
        assert_eq!(
            r.loginuid.as_ref().map(|l| l.index),
            Some(line_no(DEBIAN12, "pam_loginuid.so"))
        );
        assert_eq!(
            r.common_session,
            Some(line_no(DEBIAN12, "@include common-session"))
        );
        assert_eq!(r.pam_env, Some(line_no(DEBIAN12, "pam_env.so")));
        assert!(
            r.loginuid.as_ref().map(|l| l.index) < r.common_session && r.common_session < r.pam_env
        );
    }

    #[test]
    fn enable_on_debian12_inserts_right_after_pam_loginuid() {
        let plan = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
        let new = plan.new_text.unwrap();
        let lines: Vec<&str> = new.lines().collect();
        let l = line_no(&new, "pam_loginuid.so");
        assert_eq!(lines[l + 1], session_line(DEFAULT_MODULE, DEFAULT_OPTIONS));
        assert_eq!(lines.len(), DEBIAN12.lines().count() + 1);
        let r = inspect(&new, DEFAULT_MODULE);
        assert_eq!(r.placement, Placement::Correct);
        assert!(
            plan.message
                .starts_with("enabled: added to /etc/pam.d/sshd at line ")
        );
        // Everything else is unchanged, including the final newline.
        assert_eq!(
            plan_disable(&new, file(), DEFAULT_MODULE).new_text.unwrap(),
            DEBIAN12
        );
    }

    #[test]
    fn enable_twice_is_a_no_op_that_says_so() {
        let once = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
            .unwrap()
            .new_text
            .unwrap();
        let again = plan_enable(&once, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
        assert_eq!(again.new_text, None);
        assert!(
            again
                .message
                .starts_with("already enabled: /etc/pam.d/sshd line "),
            "{}",
            again.message
        );
        let other = plan_enable(&once, file(), DEFAULT_MODULE, "ca_keys=/x require").unwrap();
        assert_eq!(other.new_text, None);
        assert!(
            other.message.contains("with its own options"),
            "{}",
            other.message
        );
    }

    #[test]
    fn a_line_after_pam_env_is_moved_before_it_keeping_its_options() {
        let bad = DEBIAN12.replace(
            "session    required     pam_env.so # [1]\n",
            "session    required     pam_env.so # [1]\nsession required pam_breakglass.so ca_keys=/k require\n",
        );
        assert_eq!(
            inspect(&bad, DEFAULT_MODULE).placement,
            Placement::AfterPamEnv
        );
        let plan = plan_enable(&bad, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
        assert!(plan.message.starts_with("moved: "), "{}", plan.message);
        assert!(
            plan.message.contains("it came after pam_env.so"),
            "{}",
            plan.message
        );
        let new = plan.new_text.unwrap();
        let r = inspect(&new, DEFAULT_MODULE);
        assert_eq!(r.placement, Placement::Correct);
        assert_eq!(r.module_rules.len(), 1);
        assert_eq!(r.module_rules[0].args, ["ca_keys=/k", "require"]);
        assert_eq!(r.module_rules[0].index, r.loginuid.unwrap().index + 1);
    }

    #[test]
    fn a_line_after_common_session_or_before_loginuid_is_reported_and_moved() {
        let after_cs = DEBIAN12.replace(
            "@include common-session\n",
            "@include common-session\nsession required pam_breakglass.so\n",
        );
        assert_eq!(
            inspect(&after_cs, DEFAULT_MODULE).placement,
            Placement::AfterCommonSession
        );
        let before = DEBIAN12.replace(
            "session    required     pam_loginuid.so\n",
            "session required /usr/lib/x86_64-linux-gnu/security/pam_breakglass.so\nsession    required     pam_loginuid.so\n",
        );
        let r = inspect(&before, DEFAULT_MODULE);
        assert_eq!(r.placement, Placement::NoLoginuidBefore);
        let new = plan_enable(&before, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
            .unwrap()
            .new_text
            .unwrap();
        assert_eq!(inspect(&new, DEFAULT_MODULE).placement, Placement::Correct);
        for p in [
            Placement::AfterPamEnv,
            Placement::AfterCommonSession,
            Placement::NoLoginuidBefore,
            Placement::Missing,
        ] {
            assert!(p.problem().is_some());
        }
        assert_eq!(Placement::Correct.problem(), None);
    }

    #[test]
    fn duplicates_are_folded_into_one_line() {
        let once = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
            .unwrap()
            .new_text
            .unwrap();
        let twice = once.replace(
            "@include common-session\n",
            "@include common-session\nsession required pam_breakglass.so ca_keys=/other\n",
        );
        let plan = plan_enable(&twice, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
        let new = plan.new_text.unwrap();
        assert_eq!(new, once);
    }

    #[test]
    fn refuses_files_without_pam_loginuid_or_session_rules() {
        let no_loginuid: String = DEBIAN12
            .lines()
            .filter(|l| !l.contains("pam_loginuid"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = plan_enable(&no_loginuid, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap_err();
        assert!(
            e.contains("has no `session required pam_loginuid.so` line"),
            "{e}"
        );
        let commented = DEBIAN12.replace(
            "session    required     pam_loginuid.so",
            "#session required pam_loginuid.so",
        );
        assert!(plan_enable(&commented, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).is_err());
        for odd in [
            "",
            "\n\n# only comments\n",
            "auth required pam_unix.so\n",
            "\u{0}\u{1}garbage",
        ] {
            let e = plan_enable(odd, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap_err();
            assert!(
                e.contains("does not look like sshd's PAM file"),
                "{odd:?}: {e}"
            );
        }
        let late = "session required pam_env.so\nsession required pam_loginuid.so\n";
        let e = plan_enable(late, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap_err();
        assert!(e.contains("is unfamiliar"), "{e}");
    }

    #[test]
    fn disable_removes_exactly_the_module_lines_and_is_idempotent() {
        let with = DEBIAN12.replace(
            "session    required     pam_loginuid.so\n",
            "session    required     pam_loginuid.so\nsession required pam_breakglass.so ca_keys=/k\n-session optional /lib/x86_64-linux-gnu/security/pam_breakglass.so\n# session required pam_breakglass.so (a comment stays)\n",
        );
        let plan = plan_disable(&with, file(), DEFAULT_MODULE);
        assert!(
            plan.message
                .starts_with("disabled: removed pam_breakglass.so from /etc/pam.d/sshd (line "),
            "{}",
            plan.message
        );
        let new = plan.new_text.unwrap();
        assert_eq!(new.lines().count(), DEBIAN12.lines().count() + 1);
        assert!(new.contains("# session required pam_breakglass.so (a comment stays)"));
        assert_eq!(inspect(&new, DEFAULT_MODULE).placement, Placement::Missing);
        let again = plan_disable(&new, file(), DEFAULT_MODULE);
        assert_eq!(again.new_text, None);
        assert!(again.message.starts_with("already disabled: "));
    }

    #[test]
    fn other_modules_with_similar_names_are_not_ours() {
        let text = "session required pam_loginuid.so\nsession required /tmp/x/libpam_breakglass.so\nsession required pam_breakglass.so.bak\n";
        assert_eq!(inspect(text, DEFAULT_MODULE).placement, Placement::Missing);
        assert!(
            plan_disable(text, file(), DEFAULT_MODULE)
                .new_text
                .is_none()
        );
    }

    #[test]
    fn bracketed_controls_and_trailing_comments_parse() {
        let r = parse_rule(0, "session [success=ok ignore=ignore module_unknown=ignore default=bad]  pam_selinux.so close # x").unwrap();
        assert_eq!(r.kind, "session");
        assert_eq!(
            r.control,
            "[success=ok ignore=ignore module_unknown=ignore default=bad]"
        );
        assert_eq!(r.module, "pam_selinux.so");
        assert_eq!(r.args, ["close"]);
        assert_eq!(parse_rule(0, "   # comment"), None);
        assert_eq!(
            parse_rule(0, "@include common-session").unwrap().module,
            "common-session"
        );
    }

    #[test]
    fn continued_rules_are_one_rule_and_move_or_go_whole() {
        let text = "session required \\\n    pam_loginuid.so # audit id\nsession required pam_env.so\nsession required pam_breakglass.so \\\n  ca_keys=/k \\\n  krl=/r\nsession required pam_unix.so\n";
        let read = rules(text);
        let spans: Vec<(usize, usize, &str)> = read
            .iter()
            .map(|r| (r.index, r.last, r.module_name()))
            .collect();
        assert_eq!(
            spans,
            [
                (0, 1, "pam_loginuid.so"),
                (2, 2, "pam_env.so"),
                (3, 5, "pam_breakglass.so"),
                (6, 6, "pam_unix.so")
            ]
        );
        assert_eq!(read[2].args, ["ca_keys=/k", "krl=/r"]);
        assert_eq!(
            read[2].text_in(text),
            "session required pam_breakglass.so ca_keys=/k krl=/r"
        );
        let r = inspect(text, DEFAULT_MODULE);
        assert_eq!(r.placement, Placement::AfterPamEnv);
        // enable-pam moves the continued rule whole, as one line, after the continued
        // pam_loginuid rule (not into the middle of it).
        let plan = plan_enable(text, file(), DEFAULT_MODULE, "ca_keys=/k krl=/r").unwrap();
        assert_eq!(
            plan.new_text.as_deref(),
            Some(
                "session required \\\n    pam_loginuid.so # audit id\nsession required pam_breakglass.so ca_keys=/k krl=/r\nsession required pam_env.so\nsession required pam_unix.so\n"
            )
        );
        assert_eq!(
            plan.message,
            "moved: /etc/pam.d/sshd line 4 is now line 3, after pam_loginuid.so and before common-session and pam_env.so (it came after pam_env.so): session required pam_breakglass.so ca_keys=/k krl=/r"
        );
        let moved = plan.new_text.unwrap();
        assert_eq!(
            inspect(&moved, DEFAULT_MODULE).placement,
            Placement::Correct
        );
        // A new line also goes after the continuation's last line.
        let without = plan_disable(text, file(), DEFAULT_MODULE);
        assert_eq!(
            without.message,
            "disabled: removed pam_breakglass.so from /etc/pam.d/sshd (line 4)"
        );
        let without = without.new_text.unwrap();
        assert_eq!(
            without,
            "session required \\\n    pam_loginuid.so # audit id\nsession required pam_env.so\nsession required pam_unix.so\n"
        );
        let added = plan_enable(&without, file(), DEFAULT_MODULE, "").unwrap();
        assert_eq!(
            added.new_text.unwrap().lines().nth(2),
            Some("session    required     pam_breakglass.so")
        );
        assert!(added.message.contains("at line 3,"), "{}", added.message);
        // A comment ends a line before its `\`; a `\` on the last line continues nothing.
        let r = rules(
            "session required pam_env.so # not continued \\\nsession required pam_unix.so \\",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[1].index, r[1].last, r[1].module.as_str()),
            (1, 1, "pam_unix.so")
        );
        // Includes and other types are no module rules.
        let r = rules(
            "@include common-session\n-session substack postlogin\nauth include x\n@include\n",
        );
        assert!(r[0].is_session_include() && r[1].is_session_include());
        assert_eq!(r[1].include_text(), "session substack postlogin");
        assert_eq!(r[1].included_file(), Some("postlogin"));
        assert_eq!(r[2].included_file(), None);
        assert_eq!(r[3].included_file(), None);
        assert!(
            !r.iter()
                .any(|r| r.is_session_module() || r.runs("postlogin"))
        );
    }

    #[test]
    fn file_without_final_newline_keeps_its_shape() {
        let text = "session required pam_loginuid.so\nsession required pam_env.so";
        let new = plan_enable(text, file(), DEFAULT_MODULE, "")
            .unwrap()
            .new_text
            .unwrap();
        assert_eq!(
            new,
            "session required pam_loginuid.so\nsession    required     pam_breakglass.so\nsession required pam_env.so\n"
        );
    }

    #[test]
    fn diff_shows_the_added_line_with_context() {
        let new = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
            .unwrap()
            .new_text
            .unwrap();
        let d = unified_diff(DEBIAN12, &new, "/etc/pam.d/sshd");
        let added: Vec<&str> = d
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .collect();
        assert_eq!(
            added,
            [format!(
                "+{}",
                session_line(DEFAULT_MODULE, DEFAULT_OPTIONS)
            )]
        );
        assert!(
            !d.lines()
                .any(|l| l.starts_with('-') && !l.starts_with("---"))
        );
        assert!(
            d.contains(" session    required     pam_loginuid.so\n"),
            "{d}"
        );
        let l = line_no(DEBIAN12, "pam_loginuid.so") + 1;
        assert!(d.contains(&format!("@@ -{},", l - 2)), "{d}");
        assert_eq!(unified_diff("a\n", "a\n", "f"), "--- f\n+++ f (new)\n");
    }

    #[test]
    fn files_are_written_atomically_with_mode_and_backup() {
        let dir = tempfile::tempdir().unwrap();
        let pam = dir.path().join("sshd");
        std::fs::write(&pam, DEBIAN12).unwrap();
        std::fs::set_permissions(&pam, std::fs::Permissions::from_mode(0o640)).unwrap();
        let files = tempfile::tempdir().unwrap();
        let (ca, krl) = (
            files.path().join("ca.pub"),
            files.path().join("revoked.krl"),
        );
        std::fs::write(
            &ca,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDWVeVvcVgD8bpzyRUNdXXcGBoTqJ7gVIUfP6MPYBAS5 ca\n",
        )
        .unwrap();
        std::fs::write(&krl, b"SSHKRL\n\0").unwrap();
        for f in [&ca, &krl] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let args = EnablePamArgs {
            pam_file: pam.clone(),
            module: DEFAULT_MODULE.into(),
            options: format!("ca_keys={} krl={}", ca.display(), krl.display()),
            dry_run: true,
        };
        let out = enable(&args).unwrap();
        assert!(out.contains("dry run, nothing written"), "{out}");
        assert_eq!(std::fs::read_to_string(&pam).unwrap(), DEBIAN12);
        assert!(!backup_path(&pam).exists());
        let out = enable(&EnablePamArgs {
            dry_run: false,
            ..args.clone()
        })
        .unwrap();
        assert!(
            out.ends_with(&format!("(backup: {})", backup_path(&pam).display())),
            "{out}"
        );
        assert_eq!(
            std::fs::read_to_string(backup_path(&pam)).unwrap(),
            DEBIAN12
        );
        let meta = std::fs::metadata(&pam).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(
            inspect(&std::fs::read_to_string(&pam).unwrap(), DEFAULT_MODULE).placement,
            Placement::Correct
        );
        assert!(enable(&args).unwrap().starts_with("already enabled"));
        let d = DisablePamArgs {
            pam_file: pam.clone(),
            module: DEFAULT_MODULE.into(),
            dry_run: false,
        };
        assert!(disable(&d).unwrap().starts_with("disabled: "));
        assert_eq!(std::fs::read_to_string(&pam).unwrap(), DEBIAN12);
        assert!(disable(&d).unwrap().starts_with("already disabled"));
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn symlinks_and_missing_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, DEBIAN12).unwrap();
        let link = dir.path().join("sshd");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let d = DisablePamArgs {
            pam_file: link,
            module: DEFAULT_MODULE.into(),
            dry_run: false,
        };
        let e = disable(&d).unwrap_err().to_string();
        assert!(e.contains("is a symlink; run again with --pam-file"), "{e}");
        let d = DisablePamArgs {
            pam_file: dir.path().join("none"),
            ..d
        };
        let e = disable(&d).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("--pam-file"), "{e}");
    }

    #[test]
    fn enable_refuses_options_that_would_deny_every_session() {
        let files = tempfile::tempdir().unwrap();
        let ca = files.path().join("ca.pub");
        let missing = check_module_files(&format!("ca_keys={}", ca.display())).unwrap_err();
        assert!(
            missing.contains("cannot be read") && missing.contains("ca-keys --out"),
            "{missing}"
        );
        std::fs::write(&ca, "# no breakglass CA public keys yet\n\n").unwrap();
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
        let empty = check_module_files(&format!("ca_keys={}", ca.display())).unwrap_err();
        assert!(
            empty.contains(
                "holds no key: with pam_breakglass.so in the stack every session would be denied"
            ),
            "{empty}"
        );
        std::fs::write(&ca, "ssh-ed25519 AAAA ca\n").unwrap();
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o664)).unwrap();
        let writable = check_module_files(&format!("ca_keys={}", ca.display())).unwrap_err();
        assert!(
            writable.contains("writable by group or others") && writable.contains("chmod go-w"),
            "{writable}"
        );
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_module_files(&format!("ca_keys={} require", ca.display())).unwrap();
        let krl = files.path().join("none.krl");
        let no_krl = check_module_files(&format!("ca_keys={} krl={}", ca.display(), krl.display()))
            .unwrap_err();
        assert!(no_krl.contains("ssh-keygen -k -f"), "{no_krl}");
        let link = files.path().join("link.pub");
        std::os::unix::fs::symlink(&ca, &link).unwrap();
        let l = check_module_files(&format!("ca_keys={}", link.display())).unwrap_err();
        assert!(l.contains("not a regular file"), "{l}");
        let none = check_module_files("krl=/x").unwrap_err();
        assert!(none.contains("name no ca_keys=PATH"), "{none}");

        // enable() checks before writing anything.
        let dir = tempfile::tempdir().unwrap();
        let pam = dir.path().join("sshd");
        std::fs::write(&pam, DEBIAN12).unwrap();
        std::fs::write(&ca, "# nothing\n").unwrap();
        let args = EnablePamArgs {
            pam_file: pam.clone(),
            module: DEFAULT_MODULE.into(),
            options: format!("ca_keys={}", ca.display()),
            dry_run: false,
        };
        let e = enable(&args).unwrap_err().to_string();
        assert!(
            e.ends_with(&format!("{} was not changed", pam.display())),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&pam).unwrap(), DEBIAN12);
        assert!(!backup_path(&pam).exists());
    }
}
