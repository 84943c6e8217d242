//! The shipped module exports only the PAM entry points and links no async runtime.

use std::process::Command;

use breakglass_test_support::{output_text, pam_artifacts};

#[test]
fn only_pam_sm_symbols_are_exported() {
    let so = pam_artifacts().module.clone();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .unwrap();
    assert!(out.status.success(), "nm failed: {}", output_text(&out));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "pam_sm_acct_mgmt",
            "pam_sm_authenticate",
            "pam_sm_chauthtok",
            "pam_sm_close_session",
            "pam_sm_open_session",
            "pam_sm_setcred"
        ],
        "{}",
        so.display()
    );
}

#[test]
fn module_links_no_tokio_tonic_or_prost() {
    // Dependency graph: what cargo would link into the cdylib.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "pam-breakglass",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        output_text(&out)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("breakglass-proto"), "{tree}");
    for banned in ["tokio ", "tonic", "prost", "hyper", "mio "] {
        assert!(
            !tree.contains(banned),
            "pam-breakglass depends on {banned}:\n{tree}"
        );
    }
    // And the binary itself: no symbol from those crates.
    let so = pam_artifacts().module.clone();
    let out = Command::new("nm").arg(&so).output().unwrap();
    let syms = String::from_utf8_lossy(&out.stdout);
    assert!(
        syms.contains("pam_sm_open_session"),
        "nm produced no symbols"
    );
    for banned in ["tokio", "tonic", "prost"] {
        assert!(
            !syms.contains(banned),
            "{} contains {banned} symbols",
            so.display()
        );
    }
    let out = Command::new("ldd").arg(&so).output().unwrap();
    let ldd = String::from_utf8_lossy(&out.stdout);
    assert!(ldd.contains("libpam.so"), "{ldd}");
}

#[test]
fn no_profile_aborts_on_panic() {
    // pam-bindings and the module catch panics and deny; `panic = "abort"` in any
    // profile would turn a bug into an abort of sshd's session process instead.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let offending: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l: String = l
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            l.starts_with("panic=") && l.contains("abort")
        })
        .collect();
    assert!(offending.is_empty(), "{manifest}: {offending:?}");
}
