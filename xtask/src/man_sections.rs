//! The sections of the `breakglass(1)` and `breakglass-ca(8)` pages beyond what
//! clap_mangen renders from `--help` (ENVIRONMENT, FILES, EXAMPLES), and the page of the
//! daemon's configuration file, `breakglass-ca.toml(5)`.
//!
//! Each comes from where the program defines it: ENVIRONMENT from the clap `env =`
//! attributes, EXAMPLES and FILES from `breakglass_cli::manual` and
//! `breakglass_ca::cli`, the configuration keys from `breakglass_ca::config::keys`, the
//! table the daemon's validation uses.

use breakglass_ca::config::keys::{Absent, KEYS, Key, SECTIONS, keys_of};
use roff::{Roff, bold, italic, roman};

use crate::man::page::{MANUAL, Page, th_date};

/// An example: what it does, and the arguments after the program name.
pub type Example = (&'static str, &'static [&'static str]);

/// A file: its path, and what it is.
pub type File = (&'static str, &'static str);

/// The program a page belongs to, by its section: `breakglass` pages are in section 1,
/// `breakglass-ca` pages in section 8.
fn program(section: &str) -> Option<(clap::Command, &'static [Example], &'static [File])> {
    match section {
        "1" => Some((
            crate::man::page::breakglass_command(),
            breakglass_cli::manual::EXAMPLES,
            breakglass_cli::manual::FILES,
        )),
        "8" => Some((
            crate::man::page::breakglass_ca_command(),
            breakglass_ca::cli::EXAMPLES,
            breakglass_ca::cli::FILES,
        )),
        _ => None,
    }
}

/// The subcommand path of `cmd` (`["host", "ship"]`), from its bin name.
fn path_of(cmd: &clap::Command) -> Vec<String> {
    cmd.get_bin_name()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// The subcommand path an example runs: its words that name subcommands, skipping the
/// values of options.
#[must_use]
pub fn example_path(root: &clap::Command, args: &[&str]) -> Vec<String> {
    let mut cmd = root;
    let mut path = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if let Some(long) = word.strip_prefix("--") {
            let takes_value = !long.contains('=')
                && cmd
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .is_some_and(|a| a.get_action().takes_values());
            if takes_value {
                words.next();
            }
        } else if let Some(sub) = cmd.find_subcommand(word) {
            path.push((*word).to_owned());
            cmd = sub;
        }
    }
    path
}

/// A word as it is typed into a shell.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%~".contains(c));
    if plain {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// An example's command line as typed.
#[must_use]
pub fn example_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| shell_word(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// ENVIRONMENT, FILES and EXAMPLES of the page of `cmd` (built, as in
/// [`crate::man::clap_pages`]) in `section`, rendered without the preamble; empty when
/// the page has none of them.
#[must_use]
pub fn sections(cmd: &clap::Command, section: &str) -> String {
    let Some((mut root, examples, files)) = program(section) else {
        return String::new();
    };
    root.build();
    let path = path_of(cmd);
    let mut r = Roff::new();
    environment(&mut r, cmd);
    if path.is_empty() {
        files_section(&mut r, files);
    }
    let name = root.get_name().to_owned();
    let mine: Vec<&Example> = examples
        .iter()
        .filter(|(_, args)| example_path(&root, args).starts_with(&path))
        .collect();
    if !mine.is_empty() {
        r.control("SH", ["EXAMPLES"]);
        for (what, args) in mine {
            if !what.is_empty() {
                r.control("PP", []);
                r.text([roman(*what)]);
            }
            r.control("PP", []);
            r.control("nf", []);
            r.control("RS", ["4"]);
            r.text([roman(example_line(&name, args))]);
            r.control("RE", []);
            r.control("fi", []);
        }
    }
    crate::man::page::without_preamble(&r.render())
}

/// ENVIRONMENT: every variable an option of `cmd` reads (clap `env =`), in option order.
fn environment(r: &mut Roff, cmd: &clap::Command) {
    let vars: Vec<(String, &clap::Arg)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| Some((a.get_env()?.to_string_lossy().into_owned(), a)))
        .collect();
    if vars.is_empty() {
        return;
    }
    r.control("SH", ["ENVIRONMENT"]);
    r.text([roman(
        "Each variable stands for an option; the option wins over the variable, the variable \
         over the client config file.",
    )]);
    for (var, arg) in vars {
        r.control("TP", []);
        r.text([bold(var)]);
        let long = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        r.text([roman("As "), bold(long), roman(format!(": {help}"))]);
    }
}

fn files_section(r: &mut Roff, files: &[(&str, &str)]) {
    if files.is_empty() {
        return;
    }
    r.control("SH", ["FILES"]);
    for (path, what) in files {
        r.control("TP", []);
        r.text([italic(*path)]);
        r.text([roman(*what)]);
    }
}

/// The default a key has when absent, as the page says it.
fn absent_text(k: &Key) -> String {
    match k.default {
        Absent::Required => "Required.".to_owned(),
        Absent::Value(v) => format!("Default: {v}."),
        Absent::Derived(d) => format!("Default: {d}."),
    }
}

/// A small configuration for the page's EXAMPLES (parsed by the daemon in the tests).
pub const CONFIG_EXAMPLE: &str = r#"version = 1

[server]
listen = "0.0.0.0:7443"
admin_socket = "/run/breakglass-ca/admin.sock"
tls_cert = "tls/server.pem"
tls_key = "tls/server.key"
client_ca = "tls/client-ca.pem"

[ca]
signing_key = "ssh_ca"
max_ttl = "8h"

[audit]
dir = "/var/lib/breakglass-ca/audit"
key = "audit_key.pem"

[[identities]]
id = "alice@example.com"
groups = ["sre"]

[[identities]]
id = "bob@example.com"
groups = ["oncall-leads"]

[[tiers]]
name = "production"
approvals = 1
approvers = ["oncall-leads"]
max_ttl = "1h"
emergency = true
emergency_ttl = "30m"

[[rules]]
name = "sre-prod"
tier = "production"
groups = ["sre"]
principals = ["deploy"]
hosts = ["*.prod.example.com"]
interactive = true
max_ttl = "1h"
extensions = ["permit-pty"]
"#;

/// `breakglass-ca.toml(5)`, from the key table the daemon validates with.
#[must_use]
pub fn config_page() -> Page {
    let version = env!("CARGO_PKG_VERSION");
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "BREAKGLASS-CA.TOML",
            "5",
            &th_date(),
            &format!("breakglass-ca {version}"),
            MANUAL,
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman(
        "breakglass-ca.toml - configuration file of the breakglass certificate authority daemon",
    )]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([italic("/etc/breakglass-ca/breakglass-ca.toml")]);
    r.control("SH", ["DESCRIPTION"]);
    for para in [
        "breakglass-ca(8) reads one TOML file, given by serve --config or check-config --config. \
         It is parsed and validated as a whole before any socket is bound or certificate \
         signed; an invalid file stops the daemon with exit status 64 and a message naming \
         the key (server.listen, rules[2].max_ttl) and what is wrong with it.",
        "Every key is listed below, with its type and what its absence means. A key or \
         section not listed is refused, and the message names the keys its section has; a \
         required key that is missing is named. Relative paths are resolved against the \
         directory of the file. Durations are strings like \"90s\", \"15m\" or \"2h\".",
        "Check a file, and the files it names, before a restart: breakglass-ca check-config \
         --config FILE.",
    ] {
        r.control("PP", []);
        r.text([roman(para)]);
    }
    r.control("SH", ["KEYS"]);
    for s in SECTIONS {
        r.control("SS", [s.header().as_str()]);
        let mut about = s.meaning.to_owned();
        if s.array {
            about.push_str(" May be repeated.");
        } else if !s.required {
            about.push_str(" Optional.");
        }
        r.text([roman(about)]);
        for k in keys_of(s.name) {
            r.control("TP", []);
            r.text([bold(k.name), roman(" ("), italic(k.kind), roman(")")]);
            r.text([roman(format!("{} {}", k.meaning, absent_text(k)))]);
        }
    }
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/breakglass-ca/breakglass-ca.toml",
            "The file the packaged unit runs with.",
        ),
        (
            "/usr/share/doc/breakglass-ca/examples/breakglass-ca.example.toml",
            "A commented production example: four tiers, emergencies, drills, notifications.",
        ),
    ] {
        r.control("TP", []);
        r.text([italic(path)]);
        r.text([roman(what)]);
    }
    r.control("SH", ["EXAMPLES"]);
    r.text([roman(
        "One tier that needs an on-call lead's approval and allows emergencies, and one rule \
         that lets the sre group log in as deploy on production hosts:",
    )]);
    r.control("PP", []);
    r.control("nf", []);
    r.control("RS", ["4"]);
    for line in CONFIG_EXAMPLE.lines() {
        r.text([roman(line)]);
    }
    r.control("RE", []);
    r.control("fi", []);
    r.control("SH", ["SEE ALSO"]);
    r.text(crate::man::page::see_also_inlines(&[
        "breakglass-ca(8)",
        "breakglass-ca-check-config(8)",
        "breakglass(1)",
        "pam_breakglass(8)",
    ]));
    Page {
        file: "breakglass-ca.toml.5".to_owned(),
        roff: r.render(),
    }
}

/// Every key of the page, `section.key` (`.key` for the top level), for the tests.
#[must_use]
pub fn documented_keys() -> Vec<String> {
    KEYS.iter()
        .map(|k| format!("{}.{}", k.section, k.name))
        .collect()
}
