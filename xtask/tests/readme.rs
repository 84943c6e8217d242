//! The generated parts of `README.md` are what the code generates.

use xtask::readme::{EXIT_STATUS_MARKERS, between, exit_status_table};

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).expect("README.md")
}

#[test]
fn readme_exit_status_table_is_the_clis_table() {
    let text = readme();
    let found = between(&text, EXIT_STATUS_MARKERS).expect("the exit-status markers in README.md");
    let want = exit_status_table();
    assert!(
        found == want,
        "README.md's exit-status table is not the CLI's (breakglass_cli::error::EXIT_STATUSES): \
         run `cargo run -p xtask -- readme`; it should be:\n{want}"
    );
    assert_eq!(xtask::readme::update(&text).as_deref(), Some(text.as_str()));
}

#[test]
fn every_client_page_has_the_exit_status_section_and_no_daemon_page_does() {
    let client = xtask::man::clap_pages(xtask::man::breakglass_command(), "1", &[]);
    let daemon = xtask::man::clap_pages(xtask::man::breakglass_ca_command(), "8", &[]);
    for page in &client {
        assert!(page.roff.contains(".SH \"EXIT STATUS\""), "{}", page.file);
        for e in breakglass_cli::error::EXIT_STATUSES {
            assert!(
                page.roff
                    .contains(&format!("\\fB{}\\fR ({})", e.code, e.name)),
                "{} lacks exit status {}:\n{}",
                page.file,
                e.code,
                page.roff
            );
        }
    }
    for page in &daemon {
        assert!(!page.roff.contains("EXIT STATUS"), "{}", page.file);
    }
}
