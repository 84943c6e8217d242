//! Reading PAM files: [`rules`] is the CLI's one reader of PAM rule lines (comments, `\`
//! continuations, `[...]` controls); [`Rule`] knows which rules run pam_loginuid, pam_env
//! or a session include, [`Placement::judge`] is the one judgement of where the module's
//! line sits, and [`inspect`] applies it to one file.
#![forbid(unsafe_code)]

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
