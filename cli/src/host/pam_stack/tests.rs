//! Tests of `enable-pam` and `disable-pam`: parsing, planning and writing PAM files.
#![forbid(unsafe_code)]

use super::*;

/// Debian 12's stock /etc/pam.d/sshd (openssh-server 1:9.2p1-2+deb12u*).
const DEBIAN12: &str = include_str!("../../../tests/data/debian12-pam.d-sshd");

fn file() -> &'static Path {
    Path::new("/etc/pam.d/sshd")
}

fn line_no(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle) && !l.trim_start().starts_with('#'))
        .unwrap_or_else(|| panic!("no {needle}"))
}

#[test]
fn stock_debian12_file_has_no_module_and_the_expected_anchors() {
    let r = inspect(DEBIAN12, DEFAULT_MODULE);
    assert_eq!(r.placement, Placement::Missing);
    assert_eq!(
        r.loginuid.as_ref().map(|l| l.index),
        Some(line_no(DEBIAN12, "pam_loginuid.so"))
    );
    assert_eq!(
        r.common_session,
        Some(line_no(DEBIAN12, "@include common-session"))
    );
    assert_eq!(r.pam_env, Some(line_no(DEBIAN12, "pam_env.so")));
    assert!(
        r.loginuid.as_ref().map(|l| l.index) < r.common_session && r.common_session < r.pam_env
    );
}

#[test]
fn enable_on_debian12_inserts_right_after_pam_loginuid() {
    let plan = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
    let new = plan.new_text.unwrap();
    let lines: Vec<&str> = new.lines().collect();
    let l = line_no(&new, "pam_loginuid.so");
    assert_eq!(lines[l + 1], session_line(DEFAULT_MODULE, DEFAULT_OPTIONS));
    assert_eq!(lines.len(), DEBIAN12.lines().count() + 1);
    let r = inspect(&new, DEFAULT_MODULE);
    assert_eq!(r.placement, Placement::Correct);
    assert!(
        plan.message
            .starts_with("enabled: added to /etc/pam.d/sshd at line ")
    );
    // Everything else is unchanged, including the final newline.
    assert_eq!(
        plan_disable(&new, file(), DEFAULT_MODULE).new_text.unwrap(),
        DEBIAN12
    );
}

#[test]
fn enable_twice_is_a_no_op_that_says_so() {
    let once = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
        .unwrap()
        .new_text
        .unwrap();
    let again = plan_enable(&once, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
    assert_eq!(again.new_text, None);
    assert!(
        again
            .message
            .starts_with("already enabled: /etc/pam.d/sshd line "),
        "{}",
        again.message
    );
    let other = plan_enable(&once, file(), DEFAULT_MODULE, "ca_keys=/x require").unwrap();
    assert_eq!(other.new_text, None);
    assert!(
        other.message.contains("with its own options"),
        "{}",
        other.message
    );
}

#[test]
fn a_line_after_pam_env_is_moved_before_it_keeping_its_options() {
    let bad = DEBIAN12.replace(
        "session    required     pam_env.so # [1]\n",
        "session    required     pam_env.so # [1]\nsession required pam_breakglass.so ca_keys=/k require\n",
    );
    assert_eq!(
        inspect(&bad, DEFAULT_MODULE).placement,
        Placement::AfterPamEnv
    );
    let plan = plan_enable(&bad, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
    assert!(plan.message.starts_with("moved: "), "{}", plan.message);
    assert!(
        plan.message.contains("it came after pam_env.so"),
        "{}",
        plan.message
    );
    let new = plan.new_text.unwrap();
    let r = inspect(&new, DEFAULT_MODULE);
    assert_eq!(r.placement, Placement::Correct);
    assert_eq!(r.module_rules.len(), 1);
    assert_eq!(r.module_rules[0].args, ["ca_keys=/k", "require"]);
    assert_eq!(r.module_rules[0].index, r.loginuid.unwrap().index + 1);
}

#[test]
fn a_line_after_common_session_or_before_loginuid_is_reported_and_moved() {
    let after_cs = DEBIAN12.replace(
        "@include common-session\n",
        "@include common-session\nsession required pam_breakglass.so\n",
    );
    assert_eq!(
        inspect(&after_cs, DEFAULT_MODULE).placement,
        Placement::AfterCommonSession
    );
    let before = DEBIAN12.replace(
        "session    required     pam_loginuid.so\n",
        "session required /usr/lib/x86_64-linux-gnu/security/pam_breakglass.so\nsession    required     pam_loginuid.so\n",
    );
    let r = inspect(&before, DEFAULT_MODULE);
    assert_eq!(r.placement, Placement::NoLoginuidBefore);
    let new = plan_enable(&before, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
        .unwrap()
        .new_text
        .unwrap();
    assert_eq!(inspect(&new, DEFAULT_MODULE).placement, Placement::Correct);
    for p in [
        Placement::AfterPamEnv,
        Placement::AfterCommonSession,
        Placement::NoLoginuidBefore,
        Placement::Missing,
    ] {
        assert!(p.problem().is_some());
    }
    assert_eq!(Placement::Correct.problem(), None);
}

#[test]
fn duplicates_are_folded_into_one_line() {
    let once = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
        .unwrap()
        .new_text
        .unwrap();
    let twice = once.replace(
        "@include common-session\n",
        "@include common-session\nsession required pam_breakglass.so ca_keys=/other\n",
    );
    let plan = plan_enable(&twice, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap();
    let new = plan.new_text.unwrap();
    assert_eq!(new, once);
}

#[test]
fn refuses_files_without_pam_loginuid_or_session_rules() {
    let no_loginuid: String = DEBIAN12
        .lines()
        .filter(|l| !l.contains("pam_loginuid"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = plan_enable(&no_loginuid, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap_err();
    assert!(
        e.contains("has no `session required pam_loginuid.so` line"),
        "{e}"
    );
    let commented = DEBIAN12.replace(
        "session    required     pam_loginuid.so",
        "#session required pam_loginuid.so",
    );
    assert!(plan_enable(&commented, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).is_err());
    for odd in [
        "",
        "\n\n# only comments\n",
        "auth required pam_unix.so\n",
        "\u{0}\u{1}garbage",
    ] {
        let e = plan_enable(odd, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap_err();
        assert!(
            e.contains("does not look like sshd's PAM file"),
            "{odd:?}: {e}"
        );
    }
    let late = "session required pam_env.so\nsession required pam_loginuid.so\n";
    let e = plan_enable(late, file(), DEFAULT_MODULE, DEFAULT_OPTIONS).unwrap_err();
    assert!(e.contains("is unfamiliar"), "{e}");
}

#[test]
fn disable_removes_exactly_the_module_lines_and_is_idempotent() {
    let with = DEBIAN12.replace(
        "session    required     pam_loginuid.so\n",
        "session    required     pam_loginuid.so\nsession required pam_breakglass.so ca_keys=/k\n-session optional /lib/x86_64-linux-gnu/security/pam_breakglass.so\n# session required pam_breakglass.so (a comment stays)\n",
    );
    let plan = plan_disable(&with, file(), DEFAULT_MODULE);
    assert!(
        plan.message
            .starts_with("disabled: removed pam_breakglass.so from /etc/pam.d/sshd (line "),
        "{}",
        plan.message
    );
    let new = plan.new_text.unwrap();
    assert_eq!(new.lines().count(), DEBIAN12.lines().count() + 1);
    assert!(new.contains("# session required pam_breakglass.so (a comment stays)"));
    assert_eq!(inspect(&new, DEFAULT_MODULE).placement, Placement::Missing);
    let again = plan_disable(&new, file(), DEFAULT_MODULE);
    assert_eq!(again.new_text, None);
    assert!(again.message.starts_with("already disabled: "));
}

#[test]
fn other_modules_with_similar_names_are_not_ours() {
    let text = "session required pam_loginuid.so\nsession required /tmp/x/libpam_breakglass.so\nsession required pam_breakglass.so.bak\n";
    assert_eq!(inspect(text, DEFAULT_MODULE).placement, Placement::Missing);
    assert!(
        plan_disable(text, file(), DEFAULT_MODULE)
            .new_text
            .is_none()
    );
}

#[test]
fn bracketed_controls_and_trailing_comments_parse() {
    let r = parse_rule(0, "session [success=ok ignore=ignore module_unknown=ignore default=bad]  pam_selinux.so close # x").unwrap();
    assert_eq!(r.kind, "session");
    assert_eq!(
        r.control,
        "[success=ok ignore=ignore module_unknown=ignore default=bad]"
    );
    assert_eq!(r.module, "pam_selinux.so");
    assert_eq!(r.args, ["close"]);
    assert_eq!(parse_rule(0, "   # comment"), None);
    assert_eq!(
        parse_rule(0, "@include common-session").unwrap().module,
        "common-session"
    );
}

#[test]
fn continued_rules_are_one_rule_and_move_or_go_whole() {
    let text = "session required \\\n    pam_loginuid.so # audit id\nsession required pam_env.so\nsession required pam_breakglass.so \\\n  ca_keys=/k \\\n  krl=/r\nsession required pam_unix.so\n";
    let read = rules(text);
    let spans: Vec<(usize, usize, &str)> = read
        .iter()
        .map(|r| (r.index, r.last, r.module_name()))
        .collect();
    assert_eq!(
        spans,
        [
            (0, 1, "pam_loginuid.so"),
            (2, 2, "pam_env.so"),
            (3, 5, "pam_breakglass.so"),
            (6, 6, "pam_unix.so")
        ]
    );
    assert_eq!(read[2].args, ["ca_keys=/k", "krl=/r"]);
    assert_eq!(
        read[2].text_in(text),
        "session required pam_breakglass.so ca_keys=/k krl=/r"
    );
    let r = inspect(text, DEFAULT_MODULE);
    assert_eq!(r.placement, Placement::AfterPamEnv);
    // enable-pam moves the continued rule whole, as one line, after the continued
    // pam_loginuid rule (not into the middle of it).
    let plan = plan_enable(text, file(), DEFAULT_MODULE, "ca_keys=/k krl=/r").unwrap();
    assert_eq!(
        plan.new_text.as_deref(),
        Some(
            "session required \\\n    pam_loginuid.so # audit id\nsession required pam_breakglass.so ca_keys=/k krl=/r\nsession required pam_env.so\nsession required pam_unix.so\n"
        )
    );
    assert_eq!(
        plan.message,
        "moved: /etc/pam.d/sshd line 4 is now line 3, after pam_loginuid.so and before common-session and pam_env.so (it came after pam_env.so): session required pam_breakglass.so ca_keys=/k krl=/r"
    );
    let moved = plan.new_text.unwrap();
    assert_eq!(
        inspect(&moved, DEFAULT_MODULE).placement,
        Placement::Correct
    );
    // A new line also goes after the continuation's last line.
    let without = plan_disable(text, file(), DEFAULT_MODULE);
    assert_eq!(
        without.message,
        "disabled: removed pam_breakglass.so from /etc/pam.d/sshd (line 4)"
    );
    let without = without.new_text.unwrap();
    assert_eq!(
        without,
        "session required \\\n    pam_loginuid.so # audit id\nsession required pam_env.so\nsession required pam_unix.so\n"
    );
    let added = plan_enable(&without, file(), DEFAULT_MODULE, "").unwrap();
    assert_eq!(
        added.new_text.unwrap().lines().nth(2),
        Some("session    required     pam_breakglass.so")
    );
    assert!(added.message.contains("at line 3,"), "{}", added.message);
    // A comment ends a line before its `\`; a `\` on the last line continues nothing.
    let r =
        rules("session required pam_env.so # not continued \\\nsession required pam_unix.so \\");
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[1].index, r[1].last, r[1].module.as_str()),
        (1, 1, "pam_unix.so")
    );
    // Includes and other types are no module rules.
    let r =
        rules("@include common-session\n-session substack postlogin\nauth include x\n@include\n");
    assert!(r[0].is_session_include() && r[1].is_session_include());
    assert_eq!(r[1].include_text(), "session substack postlogin");
    assert_eq!(r[1].included_file(), Some("postlogin"));
    assert_eq!(r[2].included_file(), None);
    assert_eq!(r[3].included_file(), None);
    assert!(
        !r.iter()
            .any(|r| r.is_session_module() || r.runs("postlogin"))
    );
}

#[test]
fn file_without_final_newline_keeps_its_shape() {
    let text = "session required pam_loginuid.so\nsession required pam_env.so";
    let new = plan_enable(text, file(), DEFAULT_MODULE, "")
        .unwrap()
        .new_text
        .unwrap();
    assert_eq!(
        new,
        "session required pam_loginuid.so\nsession    required     pam_breakglass.so\nsession required pam_env.so\n"
    );
}

#[test]
fn diff_shows_the_added_line_with_context() {
    let new = plan_enable(DEBIAN12, file(), DEFAULT_MODULE, DEFAULT_OPTIONS)
        .unwrap()
        .new_text
        .unwrap();
    let d = unified_diff(DEBIAN12, &new, "/etc/pam.d/sshd");
    let added: Vec<&str> = d
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(
        added,
        [format!(
            "+{}",
            session_line(DEFAULT_MODULE, DEFAULT_OPTIONS)
        )]
    );
    assert!(
        !d.lines()
            .any(|l| l.starts_with('-') && !l.starts_with("---"))
    );
    assert!(
        d.contains(" session    required     pam_loginuid.so\n"),
        "{d}"
    );
    let l = line_no(DEBIAN12, "pam_loginuid.so") + 1;
    assert!(d.contains(&format!("@@ -{},", l - 2)), "{d}");
    assert_eq!(unified_diff("a\n", "a\n", "f"), "--- f\n+++ f (new)\n");
}

#[test]
fn files_are_written_atomically_with_mode_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let pam = dir.path().join("sshd");
    std::fs::write(&pam, DEBIAN12).unwrap();
    std::fs::set_permissions(&pam, std::fs::Permissions::from_mode(0o640)).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (ca, krl) = (
        files.path().join("ca.pub"),
        files.path().join("revoked.krl"),
    );
    std::fs::write(
        &ca,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDWVeVvcVgD8bpzyRUNdXXcGBoTqJ7gVIUfP6MPYBAS5 ca\n",
    )
    .unwrap();
    std::fs::write(&krl, b"SSHKRL\n\0").unwrap();
    for f in [&ca, &krl] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let args = EnablePamArgs {
        pam_file: pam.clone(),
        module: DEFAULT_MODULE.into(),
        options: format!("ca_keys={} krl={}", ca.display(), krl.display()),
        dry_run: true,
    };
    let out = enable(&args).unwrap();
    assert!(out.contains("dry run, nothing written"), "{out}");
    assert_eq!(std::fs::read_to_string(&pam).unwrap(), DEBIAN12);
    assert!(!backup_path(&pam).exists());
    let out = enable(&EnablePamArgs {
        dry_run: false,
        ..args.clone()
    })
    .unwrap();
    assert!(
        out.ends_with(&format!("(backup: {})", backup_path(&pam).display())),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(backup_path(&pam)).unwrap(),
        DEBIAN12
    );
    let meta = std::fs::metadata(&pam).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(
        inspect(&std::fs::read_to_string(&pam).unwrap(), DEFAULT_MODULE).placement,
        Placement::Correct
    );
    assert!(enable(&args).unwrap().starts_with("already enabled"));
    let d = DisablePamArgs {
        pam_file: pam.clone(),
        module: DEFAULT_MODULE.into(),
        dry_run: false,
    };
    assert!(disable(&d).unwrap().starts_with("disabled: "));
    assert_eq!(std::fs::read_to_string(&pam).unwrap(), DEBIAN12);
    assert!(disable(&d).unwrap().starts_with("already disabled"));
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn symlinks_and_missing_files_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::write(&real, DEBIAN12).unwrap();
    let link = dir.path().join("sshd");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let d = DisablePamArgs {
        pam_file: link,
        module: DEFAULT_MODULE.into(),
        dry_run: false,
    };
    let e = disable(&d).unwrap_err().to_string();
    assert!(e.contains("is a symlink; run again with --pam-file"), "{e}");
    let d = DisablePamArgs {
        pam_file: dir.path().join("none"),
        ..d
    };
    let e = disable(&d).unwrap_err().to_string();
    assert!(e.contains("cannot read") && e.contains("--pam-file"), "{e}");
}

#[test]
fn enable_refuses_options_that_would_deny_every_session() {
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pub");
    let missing = check_module_files(&format!("ca_keys={}", ca.display())).unwrap_err();
    assert!(
        missing.contains("cannot be read") && missing.contains("ca-keys --out"),
        "{missing}"
    );
    std::fs::write(&ca, "# no breakglass CA public keys yet\n\n").unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    let empty = check_module_files(&format!("ca_keys={}", ca.display())).unwrap_err();
    assert!(
        empty.contains(
            "holds no key: with pam_breakglass.so in the stack every session would be denied"
        ),
        "{empty}"
    );
    std::fs::write(&ca, "ssh-ed25519 AAAA ca\n").unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o664)).unwrap();
    let writable = check_module_files(&format!("ca_keys={}", ca.display())).unwrap_err();
    assert!(
        writable.contains("writable by group or others") && writable.contains("chmod go-w"),
        "{writable}"
    );
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    check_module_files(&format!("ca_keys={} require", ca.display())).unwrap();
    let krl = files.path().join("none.krl");
    let no_krl =
        check_module_files(&format!("ca_keys={} krl={}", ca.display(), krl.display())).unwrap_err();
    assert!(no_krl.contains("ssh-keygen -k -f"), "{no_krl}");
    let link = files.path().join("link.pub");
    std::os::unix::fs::symlink(&ca, &link).unwrap();
    let l = check_module_files(&format!("ca_keys={}", link.display())).unwrap_err();
    assert!(l.contains("not a regular file"), "{l}");
    let none = check_module_files("krl=/x").unwrap_err();
    assert!(none.contains("name no ca_keys=PATH"), "{none}");

    // enable() checks before writing anything.
    let dir = tempfile::tempdir().unwrap();
    let pam = dir.path().join("sshd");
    std::fs::write(&pam, DEBIAN12).unwrap();
    std::fs::write(&ca, "# nothing\n").unwrap();
    let args = EnablePamArgs {
        pam_file: pam.clone(),
        module: DEFAULT_MODULE.into(),
        options: format!("ca_keys={}", ca.display()),
        dry_run: false,
    };
    let e = enable(&args).unwrap_err().to_string();
    assert!(
        e.ends_with(&format!("{} was not changed", pam.display())),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&pam).unwrap(), DEBIAN12);
    assert!(!backup_path(&pam).exists());
}
