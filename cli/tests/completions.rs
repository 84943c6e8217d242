//! `breakglass completions SHELL`: the scripts load in the real shells.

use std::process::Command;

use breakglass_test_support::{can_run, have};

fn script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "breakglass completions {shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completion_loads_and_registers_breakglass() {
    // The README's line, as a user types it.
    let line = format!(
        "source <({} completions bash) && complete -p breakglass",
        env!("CARGO_BIN_EXE_breakglass")
    );
    let out = Command::new("bash").args(["-c", &line]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("-F _breakglass breakglass"),
        "complete -p: {stdout}"
    );
    // And it completes: `breakglass re<TAB>` offers request, revoke and review.
    let line = format!(
        "source <({} completions bash)\nCOMP_WORDS=(breakglass re); COMP_CWORD=1; COMP_LINE='breakglass re'; COMP_POINT=13\n_breakglass breakglass re breakglass\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        env!("CARGO_BIN_EXE_breakglass")
    );
    let out = Command::new("bash").args(["-c", &line]).output().unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    for want in ["request", "revoke", "review"] {
        assert!(
            offered.lines().any(|l| l == want),
            "`breakglass re<TAB>` does not offer {want}: {offered:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `shell` with `args` then the script's path parses it without running it.
fn parses(shell: &str, args: &[&str], file_name: &str) {
    if !can_run(shell, have(shell)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, script(shell)).unwrap();
    let out = Command::new(shell).args(args).arg(&path).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{shell} does not parse the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zsh_completion_parses() {
    parses("zsh", &["-n"], "_breakglass");
}

#[test]
fn fish_completion_parses() {
    parses("fish", &["--no-execute"], "breakglass.fish");
}
