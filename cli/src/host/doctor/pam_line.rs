//! sshd's PAM service: the session stack with its includes followed, the
//! `pam_breakglass.so` line in it placed as `enable-pam` places it (after
//! `pam_loginuid.so`, before `pam_env.so` and any session include, not inside an included
//! file), and its options valid.
//!
//! The CLI does not link libpam, so the stack is read here: the rules with
//! [`crate::host::pam_stack::rules`], the reader `enable-pam` uses too, and judged with
//! [`Placement::judge`], so both agree where the line belongs; the options with the
//! module's own parser, [`PamOptions::parse`].
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use breakglass_proto::pam_options::PamOptions;

use super::args::{DEFAULT_SSHD, DoctorArgs};
use super::files::read_capped;
use super::report::Report;
use super::sshd::{PACKAGED_CA_KEYS, PACKAGED_KRL, SshdPaths};
use crate::host::pam_stack::{self, Placement, Rule};

/// File names the module goes by (installed, and as cargo builds it).
const MODULE_NAMES: [&str; 2] = ["pam_breakglass.so", "libpam_breakglass.so"];
/// Deepest `@include` nesting followed.
const MAX_INCLUDE_DEPTH: usize = 8;

/// One module line of a PAM session stack, after following includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamEntry {
    /// The rule as [`pam_stack::rules`] parsed it (control, module, arguments).
    pub rule: Rule,
    /// The file and line it is written in.
    pub file: PathBuf,
    /// Line number in `file` (its first line when `\` continues it).
    pub line: usize,
    /// The line of the service file it comes from (its own, or the include's).
    pub top_line: usize,
    /// The include it came through (`@include common-session`), if any.
    pub via: Option<String>,
}

impl PamEntry {
    pub(super) fn is_breakglass(&self) -> bool {
        MODULE_NAMES.iter().any(|m| self.rule.runs(m))
    }

    pub(super) fn place(&self) -> String {
        match &self.via {
            None => format!("line {}", self.line),
            Some(v) => format!(
                "line {} of {}, through `{v}` on line {}",
                self.line,
                self.file.display(),
                self.top_line
            ),
        }
    }
}

/// An include in the service file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamInclude {
    /// How it is written (`@include common-session`).
    pub text: String,
    /// Line number in the service file.
    pub line: usize,
    /// A session include the module's line must come before
    /// ([`Rule::is_session_include`]).
    pub session: bool,
}

/// A service's session stack, flattened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionStack {
    /// Module lines in the order PAM runs them.
    pub entries: Vec<PamEntry>,
    /// Includes written in the service file (session or all types).
    pub includes: Vec<PamInclude>,
    /// Included files that could not be read.
    pub problems: Vec<String>,
}

fn resolve_include(dir: &Path, name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// Reads `path`'s session stack, following `@include`, `include` and `substack` (relative
/// names are looked up beside the service file, as libpam does in /etc/pam.d).
pub fn read_session_stack(path: &Path) -> std::io::Result<SessionStack> {
    let text = String::from_utf8_lossy(&read_capped(path)?).into_owned();
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut stack = SessionStack::default();
    collect(&text, path, &dir, 0, None, &mut stack);
    Ok(stack)
}

fn collect(
    text: &str,
    file: &Path,
    dir: &Path,
    depth: usize,
    via: Option<(String, usize)>,
    stack: &mut SessionStack,
) {
    for rule in pam_stack::rules(text) {
        let line = rule.index + 1;
        let top_line = via.as_ref().map_or(line, |(_, l)| *l);
        let Some(name) = rule.included_file().map(str::to_owned) else {
            if rule.is_session_module() {
                stack.entries.push(PamEntry {
                    rule,
                    file: file.to_path_buf(),
                    line,
                    top_line,
                    via: via.as_ref().map(|(v, _)| v.clone()),
                });
            }
            continue;
        };
        let shown = rule.include_text();
        if via.is_none() {
            stack.includes.push(PamInclude {
                text: shown.clone(),
                line,
                session: rule.is_session_include(),
            });
        }
        if depth >= MAX_INCLUDE_DEPTH {
            stack.problems.push(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH} at `{shown}`"
            ));
            continue;
        }
        let inc = resolve_include(dir, &name);
        match read_capped(&inc) {
            Ok(b) => collect(
                &String::from_utf8_lossy(&b),
                &inc,
                dir,
                depth + 1,
                Some(via.clone().unwrap_or((shown, line))),
                stack,
            ),
            Err(e) => stack.problems.push(format!(
                "`{shown}` (line {top_line}): cannot read {}: {e}",
                inc.display()
            )),
        }
    }
}

/// The module line that was found and its options.
#[derive(Debug)]
pub(super) struct ModuleLine {
    pub(super) entry: PamEntry,
    pub(super) options: PamOptions,
    pub(super) service: PathBuf,
}

fn suggested_line(sshd: Option<&SshdPaths>) -> String {
    let ca = sshd
        .and_then(|s| s.trusted.as_ref())
        .map_or(PACKAGED_CA_KEYS.to_owned(), |p| p.display().to_string());
    let krl = sshd
        .and_then(|s| s.revoked.as_ref())
        .map_or(PACKAGED_KRL.to_owned(), |p| p.display().to_string());
    format!("session required pam_breakglass.so ca_keys={ca} krl={krl}")
}

/// Finds and places the module line; `None` when there is none usable.
pub(super) fn check_pam_line(
    report: &mut Report,
    service: &Path,
    args: &DoctorArgs,
    sshd: &SshdPaths,
) -> Option<ModuleLine> {
    const A: &str = "pam";
    let svc = service.display();
    let enable = if args.pam_service.is_none() && args.sshd == Path::new(DEFAULT_SSHD) {
        "breakglass host enable-pam".to_owned()
    } else {
        format!("breakglass host enable-pam --pam-file {svc}")
    };
    let stack = match read_session_stack(service) {
        Ok(s) => s,
        Err(e) => {
            report.fail(
                A,
                format!("PAM line missing: sshd's PAM service file {svc} cannot be read: {e}"),
                format!(
                    "check --pam-service (sshd uses /etc/pam.d/<its file name>), then {enable}"
                ),
            );
            return None;
        }
    };
    for p in &stack.problems {
        report.warn(A, format!("{svc}: {p}"), None);
    }
    let found: Vec<&PamEntry> = stack.entries.iter().filter(|e| e.is_breakglass()).collect();
    let Some(entry) = found.first().copied() else {
        report.fail(
            A,
            format!(
                "PAM line missing: no `session ... pam_breakglass.so` line in {svc}: breakglass sessions are not re-checked, recorded or ended at expiry"
            ),
            format!(
                "{enable}\nor add after `session required pam_loginuid.so` in {svc}:\n  {}",
                suggested_line(Some(sshd))
            ),
        );
        return None;
    };
    if found.len() > 1 {
        report.fail(
            A,
            format!(
                "pam_breakglass.so is in sshd's session stack {} times ({}): every session runs it twice",
                found.len(),
                found.iter().map(|e| e.place()).collect::<Vec<_>>().join("; ")
            ),
            format!("{enable} (keeps one line, in the right place)"),
        );
    }
    let pos = stack
        .entries
        .iter()
        .position(|e| std::ptr::eq(e, entry))
        .unwrap_or_default();
    let before = &stack.entries[..pos];
    if let Some(via) = &entry.via {
        report.fail(
            A,
            format!(
                "pam_breakglass.so is in {} (line {}), included by `{via}` on line {} of {svc}: it belongs in sshd's stack only (included files also run for su, cron and sudo)",
                entry.file.display(),
                entry.line,
                entry.top_line
            ),
            format!("remove line {} of {} and run {enable}", entry.line, entry.file.display()),
        );
    }
    let loginuid_before = before.iter().any(|e| e.rule.is_loginuid());
    let pam_env = before.iter().find(|e| e.rule.is_pam_env());
    let include = stack
        .includes
        .iter()
        .find(|i| i.line < entry.top_line && i.session);
    // The same judgement as enable-pam's (pam_stack::inspect), here over the stack with
    // its includes followed.
    let placement = Placement::judge(pam_env.is_some(), include.is_some(), loginuid_before);
    let placed = entry.via.is_none() && placement == Placement::Correct;
    if !loginuid_before {
        report.fail(
            A,
            format!(
                "pam_loginuid.so does not come before pam_breakglass.so ({} of {svc}): the module denies every session without the audit session id it sets",
                entry.place()
            ),
            format!(
                "add `session required pam_loginuid.so` above line {} of {svc}",
                entry.top_line
            ),
        );
    }
    if let Some(env) = pam_env {
        report.fail(
            A,
            format!(
                "PAM line after pam_env: pam_breakglass.so ({} of {svc}) comes after pam_env.so ({}): a user's ~/.pam_environment can then replace the certificate the module checks",
                entry.place(),
                env.place()
            ),
            format!(
                "{enable} (moves it before pam_env, with a backup)\nor move line {} of {svc} above line {}",
                entry.top_line, env.top_line
            ),
        );
    } else if let Some(inc) = include {
        report.warn(
            A,
            format!(
                "pam_breakglass.so (line {} of {svc}) comes after `{}` (line {}); it should come right after pam_loginuid.so, before it",
                entry.top_line, inc.text, inc.line
            ),
            format!("move line {} of {svc} above line {}", entry.top_line, inc.line),
        );
    }
    if matches!(entry.rule.control.as_str(), "optional" | "sufficient") {
        report.warn(
            A,
            format!(
                "pam_breakglass.so is `{}` ({} of {svc}): a session the module denies still opens",
                entry.rule.control,
                entry.place()
            ),
            format!(
                "use `session required {} ...` on that line",
                entry.rule.module
            ),
        );
    }
    if placed {
        report.ok(
            A,
            format!(
                "PAM line {svc}:{}: after pam_loginuid.so, before pam_env.so and common-session",
                entry.line
            ),
        );
    }
    match PamOptions::parse(&entry.rule.args) {
        Ok(options) => {
            report.ok(
                A,
                format!("module options parse ({} given)", entry.rule.args.len()),
            );
            Some(ModuleLine {
                entry: entry.clone(),
                options,
                service: service.to_path_buf(),
            })
        }
        Err(e) => {
            report.fail(
                A,
                format!(
                    "module options on {} of {svc}: {e}: the module denies every breakglass session",
                    entry.place()
                ),
                format!("fix the option on that line, e.g.\n  {}", suggested_line(Some(sshd))),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::DEFAULT_SSHD_CONFIG;
    use super::super::report::Level;
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const DEBIAN: &str = "\
# PAM configuration for the Secure Shell service
@include common-auth
account    required     pam_nologin.so
@include common-account
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close
session    required     pam_loginuid.so
session    optional     pam_keyinit.so force revoke
@include common-session
session    optional     pam_motd.so  motd=/run/motd.dynamic
session    required     pam_limits.so
session    required     pam_env.so # [1]
session    required     pam_env.so user_readenv=1 \\
    envfile=/etc/default/locale
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open
@include common-password
";

    fn report_for(service: &Path) -> (Report, Option<ModuleLine>) {
        let args = DoctorArgs {
            sshd: DEFAULT_SSHD.into(),
            sshd_config: DEFAULT_SSHD_CONFIG.into(),
            pam_service: Some(service.to_owned()),
            module_dir: vec![],
            krl_max_age: None,
            guard: None,
            spool: None,
            witness: crate::host::witness::WitnessArgs::default(),
        };
        let mut r = Report::default();
        let m = check_pam_line(&mut r, service, &args, &SshdPaths::default());
        (r, m)
    }

    #[test]
    fn debian_stack_is_flattened_with_includes_and_continuations() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session [default=1] pam_permit.so\nsession required pam_unix.so\n-session optional pam_systemd.so\n",
        );
        let svc = write(dir.path(), "sshd", DEBIAN);
        let s = read_session_stack(&svc).unwrap();
        let names: Vec<&str> = s.entries.iter().map(|e| e.rule.module_name()).collect();
        assert_eq!(
            names,
            [
                "pam_selinux.so",
                "pam_loginuid.so",
                "pam_keyinit.so",
                "pam_permit.so",
                "pam_unix.so",
                "pam_systemd.so",
                "pam_motd.so",
                "pam_limits.so",
                "pam_env.so",
                "pam_env.so",
                "pam_selinux.so"
            ]
        );
        let env = &s.entries[9];
        assert_eq!(
            env.rule.args,
            ["user_readenv=1", "envfile=/etc/default/locale"]
        );
        assert_eq!(env.line, 12);
        let systemd = &s.entries[5];
        assert_eq!(systemd.via.as_deref(), Some("@include common-session"));
        assert_eq!(systemd.top_line, 8);
        assert_eq!(
            s.entries[0].rule.control,
            "[success=ok ignore=ignore module_unknown=ignore default=bad]"
        );
        // common-auth, common-account and common-password are missing here.
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
        assert_eq!(s.includes.len(), 4);
    }

    #[test]
    fn missing_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let svc = write(dir.path(), "sshd", DEBIAN);
        let (r, m) = report_for(&svc);
        assert!(m.is_none());
        let f = r.fails();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("FAIL pam    PAM line missing: "), "{f:?}");
        assert!(r.render().contains("fix: breakglass host enable-pam"));
    }

    #[test]
    fn line_in_the_right_place_passes_and_its_options_parse() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let text = DEBIAN.replace(
            "session    required     pam_loginuid.so\n",
            "session    required     pam_loginuid.so\nsession required pam_breakglass.so ca_keys=/etc/ssh/ca.pub krl=/etc/ssh/r.krl krl_max_age=15m spool=/var/s\n",
        );
        let svc = write(dir.path(), "sshd", &text);
        let (r, m) = report_for(&svc);
        assert!(r.fails().is_empty(), "{}", r.render());
        assert_eq!(r.count(Level::Warn), 3, "{}", r.render()); // the missing includes
        let m = m.unwrap();
        assert_eq!(m.entry.line, 7);
        assert_eq!(m.options.ca_keys, Path::new("/etc/ssh/ca.pub"));
        assert_eq!(m.options.krl.as_deref(), Some(Path::new("/etc/ssh/r.krl")));
        assert_eq!(
            m.options.krl_max_age,
            Some(std::time::Duration::from_secs(900))
        );
        assert_eq!(m.options.spool, Path::new("/var/s"));
        assert_eq!(
            m.options.guard,
            Path::new(breakglass_proto::pam_options::DEFAULT_GUARD)
        );
        assert_eq!(
            m.options.sessions,
            Path::new(breakglass_proto::sessions::DEFAULT_DIR)
        );
    }

    #[test]
    fn doctor_and_enable_pam_judge_a_place_alike() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        write(dir.path(), "postlogin", "session optional pam_lastlog.so\n");
        let bg = "session required pam_breakglass.so ca_keys=/etc/ssh/ca.pub\n";
        let continued = "session required \\\n  pam_breakglass.so \\\n  ca_keys=/etc/ssh/ca.pub\n";
        let (uid, cs, env) = (
            "session required pam_loginuid.so\n",
            "@include common-session\n",
            "session required pam_env.so\n",
        );
        let post = "session substack postlogin\n";
        let cases = [
            ([uid, bg, cs, env].concat(), Placement::Correct),
            ([uid, continued, cs, env].concat(), Placement::Correct),
            ([bg, uid, cs, env].concat(), Placement::NoLoginuidBefore),
            ([uid, cs, bg, env].concat(), Placement::AfterCommonSession),
            ([uid, post, bg, env].concat(), Placement::AfterCommonSession),
            ([uid, env, bg, cs].concat(), Placement::AfterPamEnv),
            ([uid, cs, env, continued].concat(), Placement::AfterPamEnv),
        ];
        for (text, want) in cases {
            let svc = write(dir.path(), "sshd", &text);
            let (r, m) = report_for(&svc);
            let placement = pam_stack::inspect(&text, "pam_breakglass.so").placement;
            assert_eq!(placement, want, "{text}");
            let doctor_ok = r
                .lines()
                .iter()
                .any(|l| l.starts_with("ok   pam    PAM line "));
            assert_eq!(
                doctor_ok,
                placement == Placement::Correct,
                "{text}\n{}",
                r.render()
            );
            assert_eq!(m.unwrap().entry.rule.args, ["ca_keys=/etc/ssh/ca.pub"]);
            let named = match placement {
                Placement::Correct => None,
                Placement::NoLoginuidBefore => Some("pam_loginuid.so does not come before"),
                Placement::AfterCommonSession => Some("it should come right after pam_loginuid.so"),
                Placement::AfterPamEnv => Some("PAM line after pam_env: "),
                Placement::Missing => Some("PAM line missing: "),
            };
            if let Some(named) = named {
                assert!(
                    r.lines().iter().any(|l| l.contains(named)),
                    "{text}\n{}",
                    r.render()
                );
            }
        }
    }

    #[test]
    fn line_after_pam_env_is_named_also_through_an_include() {
        let dir = tempfile::tempdir().unwrap();
        // Directly after pam_env.
        let text = DEBIAN.replace(
            "session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open\n",
            "session required pam_breakglass.so ca_keys=/etc/ssh/ca.pub\n",
        );
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let svc = write(dir.path(), "sshd", &text);
        let (r, _) = report_for(&svc);
        let f = r.fails();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("FAIL pam    PAM line after pam_env: pam_breakglass.so (line 14 of "),
            "{f:?}"
        );
        assert!(f[0].contains("comes after pam_env.so (line 11)"), "{f:?}");

        // After an include whose file runs pam_env.
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\nsession required pam_env.so\n",
        );
        let text = DEBIAN.replace(
            "session    optional     pam_motd.so",
            "session required /x/libpam_breakglass.so ca_keys=/etc/ssh/ca.pub\nsession    optional     pam_motd.so",
        );
        let svc = write(dir.path(), "sshd", &text);
        let (r, _) = report_for(&svc);
        let f = r.fails();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("PAM line after pam_env"), "{f:?}");
        assert!(
            f[0].contains("through `@include common-session` on line 8"),
            "{f:?}"
        );

        // After a harmless common-session: a warning only.
        write(
            dir.path(),
            "common-session",
            "session required pam_unix.so\n",
        );
        let (r, _) = report_for(&svc);
        assert!(r.fails().is_empty(), "{}", r.render());
        assert!(
            r.lines().iter().any(|l| l.starts_with("WARN")
                && l.contains("comes after `@include common-session` (line 8)")),
            "{}",
            r.render()
        );
    }

    #[test]
    fn missing_loginuid_and_bad_options_fail() {
        let dir = tempfile::tempdir().unwrap();
        let svc = write(
            dir.path(),
            "svc",
            "session required pam_breakglass.so ca_keys=/etc/ssh/ca.pub colour=blue\nsession required pam_loginuid.so\n",
        );
        let (r, m) = report_for(&svc);
        assert!(m.is_none());
        let f = r.fails();
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].contains("pam_loginuid.so does not come before"),
            "{f:?}"
        );
        assert!(f[1].contains("unknown option `colour=blue`"), "{f:?}");
    }
}
