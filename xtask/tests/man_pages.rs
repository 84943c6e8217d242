//! The man pages agree with `--help` and with the PAM module's option table.

use std::collections::BTreeSet;
use std::process::Command as Process;

use xtask::check::{self, Item};
use xtask::man::{self, Page};

/// Every command path of `root` (`[]`, `["host"]`, `["host", "ship"]`, …), without
/// clap's built-in `help` subcommand.
fn command_paths(root: &clap::Command) -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let mut p = path.clone();
            p.push(sub.get_name().to_owned());
            walk(sub, p, out);
        }
        out.push(path);
    }
    let mut out = Vec::new();
    walk(root, Vec::new(), &mut out);
    out.sort();
    out
}

fn page_file(root: &clap::Command, path: &[String], section: &str) -> String {
    let mut name = root.get_name().to_owned();
    for p in path {
        name.push('-');
        name.push_str(p);
    }
    format!("{name}.{section}")
}

fn programs() -> [(clap::Command, &'static str); 2] {
    [
        (man::breakglass_command(), "1"),
        (man::breakglass_ca_command(), "8"),
    ]
}

fn page<'a>(pages: &'a [Page], file: &str) -> &'a Page {
    pages
        .iter()
        .find(|p| p.file == file)
        .unwrap_or_else(|| panic!("no page {file}"))
}

#[test]
fn every_command_and_subcommand_has_a_page_and_nothing_else_does() {
    let pages = man::render_all();
    let produced: BTreeSet<&str> = pages.iter().map(|p| p.file.as_str()).collect();
    let mut expected = BTreeSet::from([
        "pam_breakglass.8".to_owned(),
        "breakglass-ca.toml.5".to_owned(),
    ]);
    for (root, section) in programs() {
        for path in command_paths(&root) {
            expected.insert(page_file(&root, &path, section));
        }
    }
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(produced, expected);
    // The nesting is really walked (host -> ship; audit -> verify).
    for f in [
        "breakglass.1",
        "breakglass-host-ship.1",
        "breakglass-audit-verify.1",
        "breakglass-ca.8",
        "breakglass-ca-serve.8",
    ] {
        assert!(produced.contains(f), "{f} missing from {produced:?}");
    }
}

#[test]
fn help_of_every_subcommand_and_the_man_pages_agree() {
    let pages = man::render_all();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (root, section) in programs() {
        for path in command_paths(&root) {
            let args: Vec<&str> = path.iter().map(String::as_str).collect();
            let help = check::help_text(&root, &args).unwrap();
            let items = check::help_items(&help);
            // Every command has at least -h/--help: an empty list means the help parser
            // broke, which must not pass as agreement.
            assert!(
                items.contains(&Item::Long("help".into())) && items.contains(&Item::Short('h')),
                "{} {}: no --help found in:\n{help}",
                root.get_name(),
                args.join(" ")
            );
            let file = page_file(&root, &path, section);
            let p = page(&pages, &file);
            let missing = check::missing_from_page(&help, &p.roff, p.stem(), p.section());
            checked += items.len();
            if !missing.is_empty() {
                failures.push(format!(
                    "{file}: missing {}",
                    missing
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Both CLIs together show well over a hundred items; a handful would mean the
    // parser found next to nothing.
    assert!(checked > 100, "only {checked} help items checked");
}

#[test]
fn help_items_cover_every_kind_of_entry() {
    let request = check::help_text(&man::breakglass_command(), &["request"]).unwrap();
    let items = check::help_items(&request);
    for want in [
        Item::Long("ttl".into()),
        Item::Long("config".into()),
        Item::Short('h'),
        Item::Value("DURATION".into()),
        Item::Env("BREAKGLASS_CONFIG".into()),
    ] {
        assert!(items.contains(&want), "{want:?} not in {items:?}");
    }
    let root = check::help_text(&man::breakglass_command(), &[]).unwrap();
    let items = check::help_items(&root);
    assert!(items.contains(&Item::Subcommand("host".into())));
    assert!(items.contains(&Item::Short('V')));
    let fetch = check::help_text(&man::breakglass_command(), &["fetch"]).unwrap();
    assert!(check::help_items(&fetch).contains(&Item::Value("ID".into())));
    let init = check::help_text(&man::breakglass_ca_command(), &["init"]).unwrap();
    assert!(check::help_items(&init).contains(&Item::Default("127.0.0.1:7443".into())));
    // Possible values, both forms clap prints.
    let synthetic = "About\n\nUsage: x [OPTIONS]\n\nOptions:\n      --mode <MODE>\n          \
        How\n\n          Possible values:\n          - open:   Admit\n          - closed: Deny\n\n      \
        --color <WHEN>  When [possible values: auto,\n          always, never]\n  -h, --help  Print help\n";
    let items = check::help_items(synthetic);
    for v in ["open", "closed", "auto", "always", "never"] {
        assert!(
            items.contains(&Item::PossibleValue(v.into())),
            "{v} not in {items:?}"
        );
    }
}

/// Removes the `.TP` entry whose header line contains `needle`.
fn without_entry(roff: &str, needle: &str) -> String {
    let lines: Vec<&str> = roff.lines().collect();
    let at = (1..lines.len())
        .find(|&i| lines[i - 1] == ".TP" && lines[i].contains(needle))
        .unwrap_or_else(|| panic!("no entry {needle} in page"));
    let end = (at + 1..lines.len())
        .find(|&i| lines[i].starts_with(".TP") || lines[i].starts_with(".SH"))
        .unwrap_or(lines.len());
    let mut out: Vec<&str> = lines[..at - 1].to_vec();
    out.extend(&lines[end..]);
    out.join("\n")
}

#[test]
fn the_checker_fails_when_an_option_or_subcommand_is_missing_from_a_page() {
    let pages = man::render_all();
    let request = page(&pages, "breakglass-request.1");
    let help = check::help_text(&man::breakglass_command(), &["request"]).unwrap();
    assert_eq!(
        check::missing_from_page(&help, &request.roff, "breakglass-request", "1"),
        vec![]
    );
    let cut = without_entry(&request.roff, r"\fB\-\-ttl\fR");
    let missing = check::missing_from_page(&help, &cut, "breakglass-request", "1");
    assert!(missing.contains(&Item::Long("ttl".into())), "{missing:?}");
    assert!(
        missing.contains(&Item::Value("DURATION".into())),
        "{missing:?}"
    );

    let cut = without_entry(&request.roff, r"\fB\-h\fR, \fB\-\-help\fR");
    let missing = check::missing_from_page(&help, &cut, "breakglass-request", "1");
    assert!(missing.contains(&Item::Short('h')), "{missing:?}");

    let root = page(&pages, "breakglass.1");
    let help = check::help_text(&man::breakglass_command(), &[]).unwrap();
    let cut = without_entry(&root.roff, r"breakglass\-host(1)");
    let missing = check::missing_from_page(&help, &cut, "breakglass", "1");
    assert_eq!(missing, vec![Item::Subcommand("host".into())]);

    let init = page(&pages, "breakglass-ca-init.8");
    let help = check::help_text(&man::breakglass_ca_command(), &["init"]).unwrap();
    let cut = init.roff.replace("[default: 127.0.0.1:7443]", "");
    let missing = check::missing_from_page(&help, &cut, "breakglass-ca-init", "8");
    assert_eq!(missing, vec![Item::Default("127.0.0.1:7443".into())]);
}

#[test]
fn pam_page_documents_every_module_option() {
    let pages = man::render_all();
    let pam = page(&pages, "pam_breakglass.8");
    assert_eq!(check::pam_options_missing(&pam.roff), Vec::<String>::new());
    let text = check::plain_text(&pam.roff);
    for needle in [
        "session required pam_breakglass.so ca_keys=FILE [options]",
        "after session required pam_loginuid.so",
        "before @include common-session and every pam_env.so line",
        "never in common-session",
        "sshd_config(5), pam.d(5), breakglass(1), breakglass-ca(8)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(text.lines().any(|l| l == section), "no {section} section");
    }
}

#[test]
fn the_pam_checker_fails_when_an_option_is_missing() {
    let pam = man::pam_page();
    for o in breakglass_proto::pam_options::OPTIONS {
        let header = match o.value {
            Some(v) => format!(r"\fB{}=\fR\fI{v}\fR", o.name.replace('-', r"\-")),
            None => format!(r"\fB{}\fR", o.name),
        };
        let cut = without_entry(&pam.roff, &header);
        let missing = check::pam_options_missing(&cut);
        assert!(
            missing.iter().any(|m| m.contains(&format!("`{}", o.name))),
            "removing {} went unnoticed: {missing:?}",
            o.name
        );
    }
}

#[test]
fn pam_page_examples_are_accepted_by_the_module() {
    for (what, args) in man::EXAMPLES {
        if let Err(e) = breakglass_proto::pam_options::PamOptions::parse(args) {
            panic!("example {what:?} is rejected by the module: {e}");
        }
        let text = check::plain_text(&man::pam_page().roff);
        assert!(text.contains(&man::example_line(args)));
    }
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(man::render_all(), man::render_all());
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let wa = man::write_all(a.path()).unwrap();
    let wb = man::write_all(b.path()).unwrap();
    assert_eq!(wa.len(), wb.len());
    for (pa, pb) in wa.iter().zip(&wb) {
        assert_eq!(pa.file_name(), pb.file_name());
        assert_eq!(std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
    }
    // No build date or host detail sneaks in unless SOURCE_DATE_EPOCH asks for a date.
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        for p in man::render_all() {
            let th = p.roff.lines().find(|l| l.starts_with(".TH ")).unwrap();
            assert!(th.contains(r#" "" "#), "{}: {th}", p.file);
        }
    }
}

#[test]
fn source_date_epoch_becomes_a_calendar_date() {
    assert_eq!(man::date_of_epoch(0), "1970-01-01");
    assert_eq!(man::date_of_epoch(951_782_400), "2000-02-29");
    assert_eq!(man::date_of_epoch(1_796_000_000), "2026-11-30");
    assert_eq!(man::date_of_epoch(1_709_251_199), "2024-02-29");
}

#[test]
fn writing_replaces_stale_pages_and_leaves_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("breakglass-removed-subcommand.1"), "old").unwrap();
    std::fs::write(dir.path().join("README"), "keep").unwrap();
    let written = man::write_all(dir.path()).unwrap();
    assert!(!dir.path().join("breakglass-removed-subcommand.1").exists());
    assert!(dir.path().join("README").exists());
    let mut on_disk: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "README"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, written);
}

#[test]
fn groff_renders_every_page_without_warnings() {
    if Process::new("groff").arg("--version").output().is_err() {
        eprintln!("SKIPPED groff_renders_every_page_without_warnings: groff is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for path in man::write_all(dir.path()).unwrap() {
        let out = Process::new("groff")
            // -k: preconv, as man(1) does, for the UTF-8 in help texts (`r-…`).
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{}: {stderr}",
            path.display()
        );
    }
}

#[test]
fn every_json_schema_is_documented_in_its_commands_page_and_only_there() {
    use breakglass_cli::output::schema::SCHEMAS;
    let pages = man::render_all();
    let root = man::breakglass_command();
    for s in SCHEMAS {
        // The schema names a real command.
        let path: Vec<String> = s.command.split(' ').map(str::to_owned).collect();
        assert!(
            command_paths(&root).contains(&path),
            "schema of {:?}: no such command",
            s.command
        );
        let p = page(&pages, &format!("{}.1", s.page()));
        let (_, section) = p
            .roff
            .split_once(".SH \"JSON OUTPUT\"")
            .unwrap_or_else(|| panic!("{}: no JSON OUTPUT section", p.file));
        let section = section.split("\n.SH").next().unwrap_or_default();
        for (field, _, _) in s.rows() {
            assert!(
                section.contains(&format!("\\fB{}\\fR", field.replace('-', "\\-"))),
                "{}: field {field} missing from JSON OUTPUT",
                p.file
            );
        }
    }
    let with_json: BTreeSet<String> = SCHEMAS.iter().map(|s| format!("{}.1", s.page())).collect();
    for p in &pages {
        assert_eq!(
            p.roff.contains(".SH \"JSON OUTPUT\""),
            with_json.contains(&p.file),
            "{}: a JSON OUTPUT section only where a schema is",
            p.file
        );
    }
}
