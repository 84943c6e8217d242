//! What `host doctor` found: one [`Finding`] per check, each problem with its fix, and
//! the printed [`Report`].
#![forbid(unsafe_code)]

use crate::error::CliError;
use crate::settings::Overrides;

/// Exit status when a check FAILs (sysexits EX_CONFIG).
pub const EXIT_PROBLEMS: i32 = crate::error::ExitStatus::CONFIG.code;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works, but should be fixed.
    Warn,
    /// Broken: breakglass access or its enforcement does not work here.
    Fail,
}

/// One result of a check.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// Which part: `daemon`, `sshd` or `pam`.
    pub area: &'static str,
    /// What was found.
    pub message: String,
    /// The command or config line that fixes it.
    pub fix: Option<String>,
}

impl Finding {
    /// The finding's line, e.g. `FAIL pam    PAM line missing: ...`.
    #[must_use]
    pub fn line(&self) -> String {
        let tag = match self.level {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        format!("{tag:<4} {:<6} {}", self.area, self.message)
    }
}

/// Everything `host doctor` found, in order.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    pub(super) fn push(
        &mut self,
        level: Level,
        area: &'static str,
        message: String,
        fix: Option<String>,
    ) {
        self.findings.push(Finding {
            level,
            area,
            message,
            fix,
        });
    }

    pub(super) fn ok(&mut self, area: &'static str, message: String) {
        self.push(Level::Ok, area, message, None);
    }

    pub(super) fn warn(
        &mut self,
        area: &'static str,
        message: String,
        fix: impl Into<Option<String>>,
    ) {
        self.push(Level::Warn, area, message, fix.into());
    }

    pub(super) fn fail(
        &mut self,
        area: &'static str,
        message: String,
        fix: impl Into<Option<String>>,
    ) {
        self.push(Level::Fail, area, message, fix.into());
    }

    /// How many findings have `level`.
    #[must_use]
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// The finding lines (without fixes).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.findings.iter().map(Finding::line).collect()
    }

    /// The whole report as printed: each finding, its fix indented below it, a summary.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.line());
            out.push('\n');
            if let Some(fix) = &f.fix {
                for (i, l) in fix.lines().enumerate() {
                    out.push_str(if i == 0 {
                        "            fix: "
                    } else {
                        "                 "
                    });
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// `host doctor: 14 ok, 1 WARN, 2 FAIL`.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "host doctor: {} ok, {} WARN, {} FAIL",
            self.count(Level::Ok),
            self.count(Level::Warn),
            self.count(Level::Fail)
        )
    }

    /// 0 when nothing FAILed, else [`EXIT_PROBLEMS`].
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.count(Level::Fail) == 0 {
            0
        } else {
            EXIT_PROBLEMS
        }
    }

    /// `Err` (exit 78) when anything FAILed.
    pub fn into_result(self) -> Result<(), CliError> {
        match self.count(Level::Fail) {
            0 => Ok(()),
            n => Err(CliError::Misconfigured(format!(
                "host doctor found {n} problem(s) (the FAIL lines above, each with its fix)"
            ))),
        }
    }

    /// The FAIL lines, for tests.
    #[cfg(test)]
    pub(super) fn fails(&self) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.level == Level::Fail)
            .map(Finding::line)
            .collect()
    }
}

/// How fixes spell the `breakglass` command (with the `--config` given, if any).
pub(super) fn bg_cmd(overrides: &Overrides) -> String {
    match &overrides.config {
        Some(c) => format!("breakglass --config {}", c.display()),
        None => "breakglass".into(),
    }
}
