//! The host snippets in packaging/ are what the tests run: the PAM line parses with the
//! module's option parser and the sshd_config snippet passes `sshd -t`.

use std::path::Path;

use breakglass_test_support::cert::{ca_file, empty_krl, new_key, ssh_keygen};
use breakglass_test_support::sshd::check_config;
use breakglass_test_support::{can_run, packaging};
use pam_breakglass::config::Config;

#[test]
fn pam_snippet_line_is_valid_and_placed_after_pam_loginuid() {
    let text = packaging("pam/sshd.breakglass");
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
    let setup = packaging("HOST-SETUP.md");
    assert!(
        setup.contains(lines[0]),
        "HOST-SETUP.md shows a different PAM line"
    );
}

#[test]
fn sshd_snippet_passes_sshd_t() {
    let snippet = packaging("sshd/breakglass.conf");
    for needle in ["TrustedUserCAKeys", "RevokedKeys", "UsePAM yes"] {
        assert!(snippet.contains(needle), "{needle}");
    }
    if !can_run(
        "openssh-server (/usr/sbin/sshd)",
        Path::new("/usr/sbin/sshd").exists(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_pub = ca_file(d, &[&new_key()]);
    empty_krl(&d.join("r.krl"));
    ssh_keygen(d, "hk", &["-t", "ed25519"]);
    let snippet = snippet
        .replace(
            "/etc/ssh/breakglass_user_ca.pub",
            &ca_pub.display().to_string(),
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
    check_config(Path::new("/usr/sbin/sshd"), &d.join("sshd_config"));
}
