//! The host snippets in packaging/ are what the tests run: the PAM line parses with the
//! module's option parser and the sshd_config snippet passes `sshd -t`.

mod common;

use std::path::Path;
use std::process::Command;

use pam_breakglass::config::Config;

fn packaging() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging"))
}

#[test]
fn pam_snippet_line_is_valid_and_placed_after_pam_loginuid() {
    let text = std::fs::read_to_string(packaging().join("pam/sshd.breakglass")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one PAM line: {lines:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&fields[..3], ["session", "required", "pam_breakglass.so"]);
    let cfg = Config::parse(&fields[3..]).unwrap();
    assert_eq!(cfg.ca_keys, Path::new("/etc/ssh/breakglass_user_ca.pub"));
    // The documented stack order.
    let stack = &text[text.find("stock stack").unwrap()..];
    let loginuid = stack.find("required     pam_loginuid.so").unwrap();
    let ours = stack.find("pam_breakglass.so ca_keys").unwrap();
    let env = stack.find("required     pam_env.so").unwrap();
    assert!(loginuid < ours && ours < env);
    // The example options in HOST-SETUP.md are the same line.
    let setup = std::fs::read_to_string(packaging().join("HOST-SETUP.md")).unwrap();
    assert!(
        setup.contains(lines[0]),
        "HOST-SETUP.md shows a different PAM line"
    );
}

#[test]
fn sshd_snippet_passes_sshd_t() {
    let snippet = std::fs::read_to_string(packaging().join("sshd/breakglass.conf")).unwrap();
    for needle in ["TrustedUserCAKeys", "RevokedKeys", "UsePAM yes"] {
        assert!(snippet.contains(needle), "{needle}");
    }
    if !Path::new("/usr/sbin/sshd").exists() {
        assert!(std::env::var_os("CI").is_none(), "sshd missing in CI");
        eprintln!("SKIPPED (needs openssh-server): sshd_snippet_passes_sshd_t");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = common::new_key();
    std::fs::write(
        d.join("ca.pub"),
        ca.public_key().to_openssh().unwrap() + "\n",
    )
    .unwrap();
    assert!(
        Command::new("ssh-keygen")
            .arg("-q")
            .args(["-k", "-f"])
            .arg(d.join("r.krl"))
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("hk"))
            .status()
            .unwrap()
            .success()
    );
    let snippet = snippet
        .replace(
            "/etc/ssh/breakglass_user_ca.pub",
            &d.join("ca.pub").display().to_string(),
        )
        .replace(
            "/etc/ssh/breakglass_revoked.krl",
            &d.join("r.krl").display().to_string(),
        );
    let config = format!(
        "HostKey {}\nPidFile {}/p\n{snippet}",
        d.join("hk").display(),
        d.display()
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let out = Command::new("/usr/sbin/sshd")
        .arg("-t")
        .arg("-f")
        .arg(d.join("sshd_config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
}
