//! Man pages: `breakglass(1)` and `breakglass-ca(8)` with one page per (nested)
//! subcommand, rendered by clap_mangen from the same clap `Command` the binaries parse
//! with (so `--help` and the pages cannot drift), and `pam_breakglass(8)`, rendered from
//! the module's option table [`breakglass_proto::pam_options::OPTIONS`].
//!
//! The output is reproducible: no date, no host or build details, a fixed order.

use std::io;
use std::path::{Path, PathBuf};

use breakglass_proto::pam_options::{ModuleOption, OPTIONS};
use roff::{Roff, bold, italic, roman};

mod json;
pub mod page;

pub use page::{
    MANUAL, Page, breakglass_ca_command, breakglass_command, date_of_epoch, see_also_inlines,
    th_date, without_preamble,
};

/// Every page, sorted by file name.
#[must_use]
pub fn render_all() -> Vec<Page> {
    let mut pages = clap_pages(
        breakglass_command(),
        "1",
        &[
            "breakglass-ca(8)",
            "pam_breakglass(8)",
            "ssh(1)",
            "ssh-keygen(1)",
        ],
    );
    pages.extend(clap_pages(
        breakglass_ca_command(),
        "8",
        &[
            "breakglass(1)",
            "breakglass-ca.toml(5)",
            "breakglass-ca-keys(1)",
            "pam_breakglass(8)",
            "sshd_config(5)",
        ],
    ));
    pages.push(pam_page());
    pages.push(crate::man_sections::config_page());
    pages.sort_by(|a, b| a.file.cmp(&b.file));
    pages
}

/// Writes every page into `dir` (created if missing) and removes pages of ours that a
/// previous run left there but that no longer exist (a removed subcommand), so that
/// installing `dir/*.1 dir/*.5 dir/*.8` installs exactly the current set.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let pages = render_all();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = (name.starts_with("breakglass") || name.starts_with("pam_breakglass"))
            && (name.ends_with(".1") || name.ends_with(".5") || name.ends_with(".8"));
        if ours && !pages.iter().any(|p| p.file == name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    let mut written = Vec::with_capacity(pages.len());
    for page in &pages {
        let path = dir.join(&page.file);
        std::fs::write(&path, &page.roff)?;
        written.push(path);
    }
    Ok(written)
}

/// The page of `cmd` and of each of its nested subcommands, in `section`. The root page
/// refers to `see_also`; a subcommand page to its parents.
#[must_use]
pub fn clap_pages(cmd: clap::Command, section: &str, see_also: &[&str]) -> Vec<Page> {
    // `help` is clap's built-in subcommand: `breakglass help X` is `breakglass X --help`,
    // which is this page; it gets no page of its own.
    let mut cmd = cmd.disable_help_subcommand(true);
    // Sets every subcommand's display name (`breakglass-host-ship`) and bin name
    // (`breakglass host ship`), and propagates global options.
    cmd.build();
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    let refs: Vec<String> = see_also.iter().map(|s| (*s).to_owned()).collect();
    walk(&cmd, section, &source, refs, &mut pages);
    pages
}

fn walk(
    cmd: &clap::Command,
    section: &str,
    source: &str,
    see_also: Vec<String>,
    pages: &mut Vec<Page>,
) {
    let name = display_name(cmd);
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(section)
        .date(th_date())
        .source(source)
        .manual(MANUAL);
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail.
    if man.render(&mut buf).is_ok() {
        let mut roff = String::from_utf8_lossy(&buf).into_owned();
        roff.push_str(&crate::man_sections::sections(cmd, section));
        let mut extra = json::section(name, section).unwrap_or_default();
        if section == "1" {
            exit_status_section(&mut extra);
        }
        extra.control("SH", ["SEE ALSO"]);
        extra.text(see_also_inlines(&see_also));
        roff.push_str(&without_preamble(&extra.render()));
        pages.push(Page {
            file: format!("{name}.{section}"),
            roff,
        });
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // A subcommand page points up its chain: `breakglass-host(1), breakglass(1)`.
        let mut refs = vec![format!("{name}({section})")];
        refs.extend(
            see_also
                .iter()
                .filter(|r| is_parent_ref(r, name, section))
                .cloned(),
        );
        walk(sub, section, source, refs, pages);
    }
}

fn display_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// Whether `r` (`breakglass(1)`) names a page above `name` (`breakglass-host`).
fn is_parent_ref(r: &str, name: &str, section: &str) -> bool {
    r.strip_suffix(&format!("({section})"))
        .is_some_and(|stem| name.starts_with(&format!("{stem}-")))
}

/// `pam_breakglass(8)`, from the option table.
#[must_use]
pub fn pam_page() -> Page {
    let version = env!("CARGO_PKG_VERSION");
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "PAM_BREAKGLASS",
            "8",
            &th_date(),
            &format!("pam_breakglass {version}"),
            MANUAL,
        ],
    );

    r.control("SH", ["NAME"]);
    r.text([roman(
        "pam_breakglass - PAM session module for sshd that re-verifies breakglass SSH \
         certificates and ends sessions when they expire or are revoked",
    )]);

    r.control("SH", ["SYNOPSIS"]);
    let mut synopsis = vec![bold("session required pam_breakglass.so")];
    for o in OPTIONS.iter().filter(|o| o.required) {
        synopsis.push(roman(" "));
        synopsis.extend(option_inlines(o));
    }
    synopsis.push(roman(" [options]"));
    r.text(synopsis);

    r.control("SH", ["DESCRIPTION"]);
    for para in DESCRIPTION {
        r.control("PP", []);
        r.text([roman(*para)]);
    }

    r.control("SH", ["OPTIONS"]);
    r.text([roman(
        "Options are given as name=value (or a bare name for a flag) after the module path. \
         An unknown, repeated or malformed option is an error: the module logs it by name \
         and denies every session until it is fixed.",
    )]);
    for o in OPTIONS {
        r.control("TP", []);
        r.text(option_inlines(o));
        let mut body = o.description.to_owned();
        if o.required {
            body.push_str(" Required.");
        }
        if let Some(d) = o.default {
            body.push_str(&format!(" Default: {d}."));
        }
        r.text([roman(body)]);
    }

    r.control("SH", ["PLACEMENT"]);
    r.text([roman(
        "The module belongs in the session stack of sshd only, in /etc/pam.d/sshd: never in \
         common-session, where every su, sudo and cron session would run it. Put its line",
    )]);
    r.control("IP", ["\\(bu", "2"]);
    r.text([
        roman("after "),
        bold("session required pam_loginuid.so"),
        roman(
            ": the guard finds and ends every process of the session (nohup and setsid \
             children included) by the audit session id pam_loginuid assigns; without it \
             the module denies the session;",
        ),
    ]);
    r.control("IP", ["\\(bu", "2"]);
    r.text([
        roman("before "),
        bold("@include common-session"),
        roman(" and every "),
        bold("pam_env.so"),
        roman(
            " line: pam_env with user_readenv=1 lets a user's ~/.pam_environment overwrite \
             SSH_AUTH_INFO_0, where the module reads the certificate sshd accepted.",
        ),
    ]);
    r.control("PP", []);
    r.text([
        bold("breakglass host enable-pam"),
        roman(" inserts the line there (with a backup, and moves a misplaced one); "),
        bold("breakglass host disable-pam"),
        roman(" takes it out again; "),
        bold("breakglass host doctor"),
        roman(" checks the placement and the files the options name."),
    ]);
    r.control("PP", []);
    r.text([roman(
        "Use required, not requisite: a denial fails the session, and the guard also ends \
         the connection so that clients without a session channel (ssh -N) are \
         disconnected too. sshd must run the session stack (UsePAM yes) and trust the CA \
         (TrustedUserCAKeys); RevokedKeys should name the same KRL as krl.",
    )]);

    r.control("SH", ["FILES"]);
    for (path, what) in FILES {
        r.control("TP", []);
        r.text([italic(*path)]);
        r.text([roman(*what)]);
    }

    r.control("SH", ["EXAMPLES"]);
    for (what, args) in EXAMPLES {
        r.control("PP", []);
        r.text([roman(*what)]);
        r.control("PP", []);
        r.control("nf", []);
        r.control("RS", ["4"]);
        r.text([roman(example_line(args))]);
        r.control("RE", []);
        r.control("fi", []);
    }
    r.control("PP", []);
    r.text([roman(
        "The stock Debian /etc/pam.d/sshd session stack with the module in place (only the \
         third line is new):",
    )]);
    r.control("PP", []);
    r.control("nf", []);
    r.control("RS", ["4"]);
    for line in DEBIAN_STACK {
        r.text([roman(*line)]);
    }
    r.control("RE", []);
    r.control("fi", []);

    r.control("SH", ["SEE ALSO"]);
    r.text(see_also_inlines(&[
        "sshd_config(5)",
        "pam.d(5)",
        "breakglass(1)",
        "breakglass-ca(8)",
        "breakglass-host-sync-krl(1)",
        "breakglass-host-ship(1)",
        "breakglass-host-enable-pam(1)",
        "breakglass-host-doctor(1)",
    ]));

    Page {
        file: "pam_breakglass.8".to_owned(),
        roff: r.render(),
    }
}

/// `name=VALUE` (value in italics) or `name` for a flag.
fn option_inlines(o: &ModuleOption) -> Vec<roff::Inline> {
    match o.value {
        Some(v) => vec![bold(format!("{}=", o.name)), italic(v)],
        None => vec![bold(o.name)],
    }
}

/// A service line for `args` (the module arguments).
#[must_use]
pub fn example_line(args: &[&str]) -> String {
    format!(
        "session    required     pam_breakglass.so {}",
        args.join(" ")
    )
}

/// The DESCRIPTION section, one paragraph each.
const DESCRIPTION: &[&str] = &[
    "pam_breakglass is a PAM session module for sshd. At session open it re-verifies the \
     breakglass certificate the login used, as sshd reports it in SSH_AUTH_INFO_0: signed \
     by a CA key of ca_keys, a user certificate, the login user among its principals, \
     within its validity, scoped to this host, and not revoked by the KRL. It then \
     records the session (a durable spool record and a syslog line) and starts the \
     session guard.",
    "The guard warns the session's terminal warn_before the certificate expires and ends \
     the session, with every process it started, at expiry; it also ends the session \
     when the certificate is revoked while the session is open. At session close the \
     module records the end of the session. The records reach the CA's signed audit log \
     through breakglass host ship.",
    "When the session's record cannot be written to the spool (its file system full, an \
     I/O error), the session is denied (reason=spool_error) and its connection closed: no \
     breakglass session runs unrecorded. Logins work again as soon as the spool can be \
     written; breakglass host doctor FAILs on a spool it cannot write a record to. Syslog \
     is best effort: with the socket missing or never read, logins still complete and \
     their records still reach the spool; the module waits at most a quarter of a second \
     for each syslog line.",
    "Who watches the guard: the guard runs with oom_score_adj -1000, so the OOM killer \
     leaves it alone, and holds a lock on its registration in the sessions directory. \
     When a guard dies anyway (SIGKILL, a crash), breakglass host watch-revocations \
     (breakglass-watch-revocations.service) sees the lock gone within a second and \
     starts a replacement guard (breakglass-guard --resume), which takes the session \
     over and ends it at expiry, or at once when expiry has already passed; syslog shows \
     event=guard_replaced and the forced end names the dead guard (dead_guard=). Who \
     watches the watcher: systemd restarts it (Restart=always, OOMScoreAdjust=-1000). \
     Without the watcher running, a dead guard is not replaced and its session runs on \
     past expiry until the user logs out; breakglass host doctor reports such a session \
     as FAIL.",
    "A login that did not use a breakglass certificate is ignored (PAM_IGNORE), so other \
     access keeps working, unless require is given. A certificate that fails a check \
     denies the session, and the user is told why.",
];

/// The FILES section.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/pam.d/sshd",
        "The PAM stack of sshd; the only place for the module.",
    ),
    (
        "/etc/ssh/breakglass_user_ca.pub",
        "The CA public keys, usual value of ca_keys and of sshd's TrustedUserCAKeys \
         (written by breakglass ca-keys).",
    ),
    (
        "/etc/ssh/breakglass_revoked.krl",
        "The KRL, usual value of krl and of sshd's RevokedKeys (kept current by \
         breakglass host sync-krl).",
    ),
    (
        breakglass_proto::spool::DEFAULT_DIR,
        "Default spool of session records (spool).",
    ),
    (
        breakglass_proto::pam_options::DEFAULT_GUARD,
        "Default session guard (guard).",
    ),
    (
        breakglass_proto::sessions::DEFAULT_DIR,
        "Default registry of open sessions (sessions).",
    ),
];

/// The EXAMPLES section: what each line does, and its module arguments. Every example
/// is parsed by the module's parser in the tests.
pub const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "Verify breakglass certificates against the CA keys and the KRL that sshd also uses:",
        &[
            "ca_keys=/etc/ssh/breakglass_user_ca.pub",
            "krl=/etc/ssh/breakglass_revoked.krl",
        ],
    ),
    (
        "A host reachable only through break-glass access, which refuses a KRL older than \
         15 minutes and delivers each session record to the CA at once:",
        &[
            "ca_keys=/etc/ssh/breakglass_user_ca.pub",
            "krl=/etc/ssh/breakglass_revoked.krl",
            "krl_max_age=15m",
            "require",
            "ship=/usr/bin/breakglass",
            "ship_config=/etc/breakglass/host.toml",
        ],
    ),
];

/// Debian 12's sshd session stack with the module in place.
const DEBIAN_STACK: &[&str] = &[
    "session [success=ok ignore=ignore module_unknown=ignore default=bad] pam_selinux.so close",
    "session    required     pam_loginuid.so",
    "session    required     pam_breakglass.so ca_keys=/etc/ssh/breakglass_user_ca.pub",
    "session    optional     pam_keyinit.so force revoke",
    "@include common-session",
    "...",
    "session    required     pam_env.so",
    "session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale",
    "session [success=ok ignore=ignore module_unknown=ignore default=bad] pam_selinux.so open",
];

/// The EXIT STATUS section of the `breakglass` pages, from the CLI's one table
/// ([`breakglass_cli::error::EXIT_STATUSES`]).
pub fn exit_status_section(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(
        breakglass_cli::error::EXIT_STATUS_NOTE.replace('`', ""),
    )]);
    for e in breakglass_cli::error::EXIT_STATUSES {
        r.control("TP", []);
        r.text([bold(e.code.to_string()), roman(format!(" ({})", e.name))]);
        r.text([roman(e.meaning.replace('`', ""))]);
    }
}
