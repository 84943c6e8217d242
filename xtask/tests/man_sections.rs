//! ENVIRONMENT, FILES and EXAMPLES of the program pages, `breakglass-ca.toml(5)`, and
//! `ca-keys` among the client's pages.

use std::path::Path;

use breakglass_ca::config::keys::{Absent, KEYS, SECTIONS};
use xtask::check::plain_text;
use xtask::man::{self, Page};
use xtask::man_sections;

fn page<'a>(pages: &'a [Page], file: &str) -> &'a Page {
    pages
        .iter()
        .find(|p| p.file == file)
        .unwrap_or_else(|| panic!("no page {file}"))
}

/// The plain text of section `name` of a page (up to the next `.SH`).
fn section(page: &Page, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in page.roff.lines() {
        if let Some(title) = line.strip_prefix(".SH ") {
            inside = title.trim_matches('"') == name;
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    plain_text(&out)
}

/// Every environment variable an option of `cmd` reads.
fn env_vars(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn environment_names_every_variable_the_options_read_and_no_other() {
    let pages = man::render_all();
    let mut root = man::breakglass_command();
    root.build();
    let vars = env_vars(&root);
    assert!(vars.len() >= 6, "{vars:?}");
    for file in [
        "breakglass.1",
        "breakglass-request.1",
        "breakglass-host-doctor.1",
    ] {
        let env = section(page(&pages, file), "ENVIRONMENT");
        for v in &vars {
            assert!(
                env.contains(v.as_str()),
                "{file}: {v} not in ENVIRONMENT:\n{env}"
            );
        }
        // Nothing but those: every BREAKGLASS_ word there is one of them.
        for word in env.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("BREAKGLASS_") {
                assert!(
                    vars.iter().any(|v| v == word),
                    "{file}: {word} is no option's variable"
                );
            }
        }
    }
    // A variable added to an option shows up without anyone listing it by hand.
    let cmd = clap::Command::new("x").arg(
        clap::Arg::new("zz")
            .long("zz")
            .env("BREAKGLASS_ZZ_TEST")
            .help("Zz"),
    );
    let mut cmd = cmd;
    cmd.build();
    let text = man_sections::sections(&cmd, "1");
    assert!(plain_text(&text).contains("BREAKGLASS_ZZ_TEST"), "{text}");
}

#[test]
fn the_program_pages_have_files_and_examples_and_each_example_is_on_its_command_page() {
    let pages = man::render_all();
    for file in ["breakglass.1", "breakglass-ca.8"] {
        for s in ["FILES", "EXAMPLES"] {
            assert!(
                !section(page(&pages, file), s).trim().is_empty(),
                "{file}: no {s}"
            );
        }
    }
    let files = section(page(&pages, "breakglass.1"), "FILES");
    for f in [
        "~/.config/breakglass/client.toml",
        "/etc/ssh/breakglass_user_ca.pub",
        "/usr/share/bash-completion/completions/breakglass",
    ] {
        assert!(files.contains(f), "{f} not in FILES:\n{files}");
    }
    for (program, section_no, examples) in [
        ("breakglass", "1", breakglass_cli::manual::EXAMPLES),
        ("breakglass-ca", "8", breakglass_ca::cli::EXAMPLES),
    ] {
        let mut root = if program == "breakglass" {
            man::breakglass_command()
        } else {
            man::breakglass_ca_command()
        };
        root.build();
        for (_, args) in examples {
            let line = man_sections::example_line(program, args);
            let path = man_sections::example_path(&root, args);
            assert!(!path.is_empty(), "{line}: names no subcommand");
            let own = format!("{program}-{}.{section_no}", path.join("-"));
            for file in [format!("{program}.{section_no}"), own] {
                let ex = section(page(&pages, &file), "EXAMPLES");
                assert!(
                    ex.contains(&line),
                    "{file}: {line:?} not in EXAMPLES:\n{ex}"
                );
            }
        }
    }
    // A page shows only its own command's examples.
    let whoami = section(page(&pages, "breakglass-whoami.1"), "EXAMPLES");
    assert!(
        whoami.contains("breakglass whoami") && !whoami.contains("request"),
        "{whoami}"
    );
    // Values of options are not taken for subcommands.
    let root = man::breakglass_command();
    assert_eq!(
        man_sections::example_path(&root, &["--config", "host", "whoami"]),
        ["whoami"]
    );
}

#[test]
fn the_config_page_documents_every_key_of_the_validation_table() {
    let pages = man::render_all();
    let p = page(&pages, "breakglass-ca.toml.5");
    let text = plain_text(&p.roff);
    let keys = section(p, "KEYS");
    for s in SECTIONS {
        assert!(keys.contains(&s.header()), "{} missing", s.header());
    }
    // Each key under its own section's heading, with its type and its default.
    let mut at = 0;
    for s in SECTIONS {
        let start = keys[at..]
            .find(&s.header())
            .map(|i| i + at)
            .unwrap_or_else(|| panic!("{} out of order", s.header()));
        at = start;
        for k in KEYS.iter().filter(|k| k.section == s.name) {
            let entry = format!("{} ({})", k.name, k.kind);
            let i = keys[at..]
                .find(&entry)
                .unwrap_or_else(|| panic!("{}: {entry} missing or out of order", s.header()));
            at += i;
            let says = match k.default {
                Absent::Required => "Required.".to_owned(),
                Absent::Value(v) | Absent::Derived(v) => format!("Default: {v}."),
            };
            let body: String = keys[at..]
                .split_whitespace()
                .take(200)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(body.contains(&says), "{entry}: {says} not in {body}");
        }
    }
    assert!(text.contains("breakglass-ca check-config"), "{text}");
    // The page's example is a configuration the daemon accepts.
    breakglass_ca::config::Config::parse(
        Path::new("/etc/breakglass-ca/breakglass-ca.toml"),
        man_sections::CONFIG_EXAMPLE,
    )
    .unwrap();
    assert!(text.contains("hosts = [\"*.prod.example.com\"]"), "{text}");
}

#[test]
fn ca_keys_is_documented_with_the_client_in_section_1() {
    let pages = man::render_all();
    let ca_keys = page(&pages, "breakglass-ca-keys.1");
    let text = plain_text(&ca_keys.roff);
    assert!(text.contains("breakglass ca-keys"), "{text}");
    assert!(text.contains("TrustedUserCAKeys"), "{text}");
    assert!(
        !pages
            .iter()
            .any(|p| p.stem() == "breakglass-ca-keys" && p.section() != "1")
    );
    // No daemon page presents it as a daemon command; the daemon's page points to it.
    for p in pages
        .iter()
        .filter(|p| p.section() == "8" && p.stem().starts_with("breakglass-ca"))
    {
        let t = plain_text(&p.roff);
        assert!(
            !t.contains("breakglass-ca ca-keys") && !t.contains("breakglass-ca keys"),
            "{}",
            p.file
        );
    }
    let daemon = plain_text(&page(&pages, "breakglass-ca.8").roff);
    assert!(daemon.contains("breakglass-ca-keys(1)"), "{daemon}");
    assert!(daemon.contains("breakglass-ca.toml(5)"), "{daemon}");
}
