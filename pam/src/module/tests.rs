//! `open_session` and `close_session` against a scripted libpam and a recording host.

use super::*;
use crate::guard::GuardMode;
use crate::testutil::*;
use ssh_key::certificate::CertType;
use std::process::Command;

struct World {
    dir: tempfile::TempDir,
    ca: ssh_key::PrivateKey,
    args: Vec<String>,
    host: FakeHost,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = key();
        let ca_path = ca_file(dir.path(), &[&ca]);
        let args = vec![
            format!("ca_keys={}", ca_path.display()),
            format!("spool={}", dir.path().join("spool").display()),
            format!("guard={}", dir.path().join("guard").display()),
            format!("syslog={}", dir.path().join("log.sock").display()),
            format!("sessions={}", dir.path().join("sessions").display()),
        ];
        Self {
            dir,
            ca,
            args,
            host: FakeHost::default(),
        }
    }
    fn open(&self, pam: &mut ScriptedPam) -> Outcome {
        open_session(
            pam,
            &self.host,
            &self.args,
            UNIX_EPOCH + Duration::from_secs(NOW),
        )
    }
    fn open_info(&self, info: Option<&str>) -> Outcome {
        self.open(&mut ScriptedPam::with_info("alice", info))
    }
    fn cert_info(&self, spec: &CertSpec) -> String {
        auth_info(&sign(&self.ca, spec))
    }
    fn spool_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("spool"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn denied(o: Outcome) -> Error {
    match o {
        Outcome::Deny(e) => e,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn valid_certificate_opens_session_with_guard_record_and_log() {
    let w = World::new();
    let info = w.cert_info(&CertSpec::default());
    let mut pam = ScriptedPam::with_info("alice", Some(&info));
    assert!(matches!(w.open(&mut pam), Outcome::Success));

    let guards = w.host.guards.borrow();
    assert_eq!(guards.len(), 1);
    let g = &guards[0];
    assert_eq!(g.mode, GuardMode::Expire);
    assert_eq!(g.end_at_ms, (NOW + 600) * 1000);
    assert_eq!(g.warn_at, Some(NOW + 600 - 120));
    assert_eq!(g.audit_session, Some(17));
    assert_eq!(g.record.grant.as_deref(), Some("g-00000000000000ff"));

    let files = w.spool_files();
    assert_eq!(
        files,
        vec![format!("db-7-g-00000000000000ff-4242-{NOW}000-open.json")]
    );
    let rec: SessionRecord =
        serde_json::from_slice(&std::fs::read(w.dir.path().join("spool").join(&files[0])).unwrap())
            .unwrap();
    assert_eq!(rec.serial, Some(4242));
    assert_eq!(rec.user, "alice");
    assert_eq!(rec.rhost.as_deref(), Some("192.0.2.7"));
    assert_eq!(rec.expires, Some(NOW + 600));

    let log = w.host.log_text();
    assert!(
        log.contains("event=session_open grant=g-00000000000000ff serial=4242"),
        "{log}"
    );
    assert!(pam.told.borrow()[0].1.contains("until"));

    // close_session uses the pam data, not the environment.
    pam.env.clear();
    let closed = close_session(
        &mut pam,
        &w.host,
        &w.args,
        UNIX_EPOCH + Duration::from_secs(NOW + 90),
    );
    assert!(matches!(closed, Outcome::Success));
    assert!(
        w.host
            .log_text()
            .contains("event=session_close grant=g-00000000000000ff")
    );
    assert!(w.host.log_text().contains("duration=90"));
    assert_eq!(w.spool_files().len(), 2);
}

#[test]
fn nasty_user_rhost_and_details_reach_terminal_syslog_and_spool_escaped() {
    for nasty in text::NASTY_SAMPLES {
        let w = World::new();
        let info = w.cert_info(&CertSpec::default());
        let mut pam = ScriptedPam::with_info(&format!("alice{nasty}"), Some(&info));
        pam.items.insert("rhost", format!("192.0.2.7{nasty}"));
        denied(w.open(&mut pam));
        for (_, told) in pam.told.borrow().iter() {
            assert!(!told.chars().any(text::is_hazard), "{told:?}");
        }
        let log = w.host.log_text();
        assert!(log.lines().count() >= 1, "{log}");
        for line in log.lines() {
            assert!(!line.chars().any(text::is_hazard), "{line:?}");
        }
        assert!(
            log.contains(&format!(
                "rhost={}",
                text::quote(&format!("192.0.2.7{nasty}"))
            )),
            "{log}"
        );
        for f in w.spool_files() {
            let rec: SessionRecord = serde_json::from_slice(
                &std::fs::read(w.dir.path().join("spool").join(&f)).unwrap(),
            )
            .unwrap();
            let detail = rec.detail.unwrap_or_default();
            text::check_free_text(&detail, text::MAX_DETAIL_BYTES).unwrap();
        }
    }
}

#[test]
fn close_without_open_is_ignored() {
    let w = World::new();
    let mut pam = ScriptedPam::with_info("alice", None);
    assert!(matches!(
        close_session(&mut pam, &w.host, &w.args, SystemTime::now()),
        Outcome::Ignore
    ));
}

#[test]
fn non_certificate_logins_are_ignored_unless_required() {
    let w = World::new();
    let plain = format!("publickey {}\n", key().public_key().to_openssh().unwrap());
    for info in [
        None,
        Some(plain.as_str()),
        Some("password\n"),
        Some("keyboard-interactive/pam\n"),
    ] {
        assert!(matches!(w.open_info(info), Outcome::Ignore), "{info:?}");
    }
    assert!(w.host.guards.borrow().is_empty());

    let mut w = World::new();
    w.args.push("require".into());
    for info in [None, Some(plain.as_str())] {
        let e = denied(w.open_info(info));
        assert_eq!(e.code(), "certificate_required");
    }
    // sshd denial: a guard is started to end the connection.
    let guards = w.host.guards.borrow();
    assert_eq!(guards.len(), 2);
    assert!(guards.iter().all(|g| g.mode == GuardMode::Deny));
    assert!(w.host.log_text().contains("reason=certificate_required"));
}

#[test]
fn hostile_auth_info_is_denied_with_a_reason() {
    let w = World::new();
    let good = w.cert_info(&CertSpec::default());
    let other_user = w.cert_info(&CertSpec {
        principals: vec!["bob".into()],
        ..CertSpec::default()
    });
    let (kt, b64) = {
        let mut p = good.trim_end().split(' ').skip(1);
        (p.next().unwrap().to_owned(), p.next().unwrap().to_owned())
    };
    let huge = "A".repeat(1 << 20);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "bad_auth_info"),
        (format!("{good}{good}"), "bad_auth_info"),
        (
            format!("{good}garbage line here\n"),
            "bad_certificate_or_info",
        ),
        (format!("{good}\n\n"), "bad_auth_info"),
        (
            format!("publickey ssh-rsa-cert-v01@openssh.com {b64}\n"),
            "bad_auth_info",
        ),
        (
            format!("publickey {kt} {}\n", &b64[..b64.len() / 2]),
            "bad_auth_info",
        ),
        (format!("publickey {kt} !!!notbase64!!!\n"), "bad_auth_info"),
        (other_user, "bad_certificate"),
        (format!("publickey {kt} {huge}\n"), "bad_auth_info"),
        (format!("publickey {kt} {b64}\0\n"), "bad_auth_info"),
        ("publickey\n".to_owned(), "bad_auth_info"),
        ("\u{1b}[31m\n".to_owned(), "bad_auth_info"),
    ];
    for (info, code) in cases {
        let e = denied(w.open_info(Some(&info)));
        if code == "bad_certificate_or_info" {
            assert!(
                ["bad_auth_info", "bad_certificate"].contains(&e.code()),
                "{e}"
            );
        } else {
            assert_eq!(e.code(), code, "{:.80}: {e}", info.escape_debug());
        }
    }
    assert!(
        w.host
            .guards
            .borrow()
            .iter()
            .all(|g| g.mode == GuardMode::Deny)
    );
    let log = w.host.log_text();
    assert_eq!(log.matches("event=session_denied").count(), 12, "{log}");
    assert!(
        log.len() < 12 * 2048,
        "log lines must stay short: {}",
        log.len()
    );
}

#[test]
fn certificate_rule_violations_are_denied() {
    let w = World::new();
    let cases: Vec<(CertSpec, &str, &str)> = vec![
        (
            CertSpec {
                hosts: Some("web-*".into()),
                ..CertSpec::default()
            },
            "host_scope",
            "this host is \"db-7\"",
        ),
        (
            CertSpec {
                valid_before: NOW - 1,
                valid_after: NOW - 100,
                ..CertSpec::default()
            },
            "bad_certificate",
            "expired",
        ),
        (
            CertSpec {
                valid_after: NOW + 10,
                ..CertSpec::default()
            },
            "bad_certificate",
            "not valid before",
        ),
        (
            CertSpec {
                cert_type: CertType::Host,
                ..CertSpec::default()
            },
            "bad_certificate",
            "host certificate",
        ),
        (
            CertSpec {
                critical: vec![("verify-required".into(), String::new())],
                ..CertSpec::default()
            },
            "bad_certificate",
            "unknown critical option",
        ),
        (
            CertSpec {
                hosts: None,
                ..CertSpec::default()
            },
            "bad_certificate",
            "hosts@breakglass.dev",
        ),
        (
            CertSpec {
                key_id: Some("alice".into()),
                ..CertSpec::default()
            },
            "bad_certificate",
            "key id",
        ),
    ];
    for (spec, code, needle) in cases {
        let e = denied(w.open_info(Some(&w.cert_info(&spec))));
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
    // force-command and source-address are known critical options.
    let ok = CertSpec {
        critical: vec![
            ("force-command".into(), "/bin/true".into()),
            ("source-address".into(), "192.0.2.0/24".into()),
        ],
        ..CertSpec::default()
    };
    assert!(matches!(
        w.open_info(Some(&w.cert_info(&ok))),
        Outcome::Success
    ));
}

#[test]
fn other_ca_is_denied_when_claiming_the_profile_and_ignored_otherwise() {
    let w = World::new();
    let other = key();
    let e = denied(w.open_info(Some(&auth_info(&sign(&other, &CertSpec::default())))));
    assert_eq!(e.code(), "untrusted_ca");
    // A certificate of some other system (not our key id, no extensions of ours) is not ours.
    let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
        &mut ssh_key::rand_core::OsRng,
        key().public_key().key_data().clone(),
        NOW - 10,
        NOW + 10,
    )
    .unwrap();
    b.key_id("corp-ldap-alice").unwrap();
    b.valid_principal("alice").unwrap();
    let foreign = b.sign(&other).unwrap();
    assert!(matches!(
        w.open_info(Some(&auth_info(&foreign))),
        Outcome::Ignore
    ));
}

#[test]
fn bad_options_deny_and_name_the_option() {
    let mut w = World::new();
    w.args.push("frobnicate=yes".into());
    let e = denied(w.open_info(Some(&w.cert_info(&CertSpec::default()))));
    assert_eq!(e.code(), "bad_option");
    let log = w.host.log_text();
    assert!(log.contains("reason=bad_option"), "{log}");
    assert!(log.contains("frobnicate=yes"), "{log}");
    // Even a plain login is denied: a broken configuration must be visible.
    assert!(matches!(w.open_info(None), Outcome::Deny(_)));
}

#[test]
fn broken_files_deny() {
    let w = World::new();
    std::fs::write(w.dir.path().join("ca.pub"), "not a key\n").unwrap();
    let e = denied(w.open_info(None));
    assert_eq!(e.code(), "bad_file");
    assert!(e.to_string().contains("line 1"), "{e}");
    std::fs::write(w.dir.path().join("ca.pub"), "# only comments\n").unwrap();
    assert!(
        denied(w.open_info(None))
            .to_string()
            .contains("holds no key")
    );
    std::fs::remove_file(w.dir.path().join("ca.pub")).unwrap();
    assert!(
        denied(w.open_info(None))
            .to_string()
            .contains("cannot open trusted CA keys file")
    );
}

#[test]
fn session_needs_audit_id_guard_and_spool() {
    let mut w = World::new();
    let info = w.cert_info(&CertSpec::default());
    w.host.audit_session = None;
    assert_eq!(denied(w.open_info(Some(&info))).code(), "no_audit_session");
    w.host.audit_session = Some(3);
    w.host.guard_result = Err("boom".into());
    let e = denied(w.open_info(Some(&info)));
    assert_eq!(e.code(), "guard_error");
    assert!(e.to_string().contains("boom"));
    w.host.guard_result = Ok(());
    std::fs::remove_dir_all(w.dir.path().join("spool")).unwrap();
    std::fs::write(w.dir.path().join("spool"), "a file").unwrap();
    w.host.guards.borrow_mut().clear();
    assert_eq!(denied(w.open_info(Some(&info))).code(), "spool_error");
    // The guard launched for the session never got its spec; only the guard that ends
    // the denied connection did.
    let modes: Vec<GuardMode> = w.host.guards.borrow().iter().map(|g| g.mode).collect();
    assert_eq!(modes, [GuardMode::Deny]);
}

#[test]
fn denial_outside_sshd_starts_no_guard() {
    let mut w = World::new();
    w.host.sshd = false;
    let _ = denied(w.open_info(Some("garbage\u{7f}")));
    assert!(w.host.guards.borrow().is_empty());
}

#[test]
fn host_option_overrides_hostname() {
    let mut w = World::new();
    w.args.push("host=web-1".into());
    let e = denied(w.open_info(Some(&w.cert_info(&CertSpec::default()))));
    assert_eq!(e.code(), "host_scope");
    let info = w.cert_info(&CertSpec {
        hosts: Some("db-9,web-1".into()),
        ..CertSpec::default()
    });
    assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
}

#[test]
fn panics_become_denials() {
    let o = catch_panics(&[], || panic!("boom"));
    assert!(matches!(&o, Outcome::Deny(Error::Internal(m)) if m == "boom"));
    assert_eq!(o.session_code(), PamResultCode::PAM_SESSION_ERR);
    assert_eq!(Outcome::Ignore.session_code(), PamResultCode::PAM_IGNORE);
    assert_eq!(Outcome::Success.session_code(), PamResultCode::PAM_SUCCESS);
}

#[test]
fn revoked_certificates_are_denied() {
    let mut w = World::new();
    let ca_pub = w.dir.path().join("ca.pub");
    let spec_file = w.dir.path().join("krl.spec");
    let krl = w.dir.path().join("revoked.krl");
    std::fs::write(
        &spec_file,
        "serial: 4242\nserial: 9000-9100\nid: breakglass/g-0000000000000077/eve\n",
    )
    .unwrap();
    let st = Command::new("ssh-keygen")
        .args(["-q", "-k", "-f"])
        .arg(&krl)
        .arg("-s")
        .arg(&ca_pub)
        .arg(&spec_file)
        .status()
        .unwrap();
    assert!(st.success());
    w.args.push(format!("krl={}", krl.display()));
    let cases = [
        (CertSpec::default(), Some("serial 4242")),
        (
            CertSpec {
                serial: 9050,
                ..CertSpec::default()
            },
            Some("serial 9050"),
        ),
        (
            CertSpec {
                serial: 9101,
                ..CertSpec::default()
            },
            None,
        ),
        (
            CertSpec {
                serial: 1,
                grant: 0x77,
                requester: "eve".into(),
                ..CertSpec::default()
            },
            Some("key id"),
        ),
    ];
    for (spec, revoked) in cases {
        let o = w.open_info(Some(&w.cert_info(&spec)));
        match revoked {
            Some(needle) => {
                let e = denied(o);
                assert_eq!(e.code(), "revoked");
                assert!(e.to_string().contains(needle), "{e}");
            }
            None => assert!(matches!(o, Outcome::Success), "{o:?}"),
        }
    }
    // A garbage KRL fails closed, like sshd's RevokedKeys.
    std::fs::write(&krl, "garbage").unwrap();
    assert_eq!(denied(w.open_info(None)).code(), "bad_file");
}

#[test]
fn a_grant_the_watcher_marked_revoked_is_denied_while_the_krl_still_admits_it() {
    use breakglass_proto::sessions::{RevocationMarker, RevokedGrant, grant_marker_path};
    let mut w = World::new();
    // A current KRL that does not list the grant yet.
    let krl = w.dir.path().join("revoked.krl");
    std::fs::write(
        &krl,
        breakglass_proto::krl::Krl::new(3, 0).to_bytes().unwrap(),
    )
    .unwrap();
    w.args.push(format!("krl={}", krl.display()));
    let info = w.cert_info(&CertSpec::default());
    // No registry directory (no watcher on this host): the KRL decides.
    assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
    let sessions = w.dir.path().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
    // The watcher marks the grant: denied, saying who revoked it and why.
    let marker = grant_marker_path(&sessions, "g-00000000000000ff").unwrap();
    let g = RevokedGrant {
        marker: RevocationMarker {
            grant: "g-00000000000000ff".into(),
            revoked_by: "user:admin@example.com".into(),
            reason: "INC-9 key exposed".into(),
            version: 12,
        },
        expires: NOW + 600,
    };
    std::fs::write(&marker, g.to_text()).unwrap();
    let e = denied(w.open_info(Some(&info)));
    assert_eq!(e.code(), "revoked");
    assert!(
        e.to_string().contains("admin@example.com") && e.to_string().contains("INC-9"),
        "{e}"
    );
    // Another grant of the same holder is not affected.
    let other = w.cert_info(&CertSpec {
        grant: 0x100,
        serial: 4243,
        ..CertSpec::default()
    });
    assert!(matches!(w.open_info(Some(&other)), Outcome::Success));
    // A marker that cannot be parsed still denies.
    std::fs::write(&marker, "torn").unwrap();
    assert_eq!(denied(w.open_info(Some(&info))).code(), "revoked");
    // A registry that cannot be checked denies (a revocation cannot be ruled out).
    std::fs::remove_file(&marker).unwrap();
    std::fs::remove_dir(&sessions).unwrap();
    std::fs::write(&sessions, "not a directory").unwrap();
    let e = denied(w.open_info(Some(&info)));
    assert_eq!(e.code(), "bad_file");
    assert!(e.to_string().contains("sessions="), "{e}");
}

#[test]
fn stale_krl_fails_closed_or_open_as_configured() {
    let mut w = World::new();
    let krl = w.dir.path().join("revoked.krl");
    std::fs::write(
        &krl,
        breakglass_proto::krl::Krl::new(1, 0).to_bytes().unwrap(),
    )
    .unwrap();
    let set_age = |secs: u64| {
        std::fs::File::options()
            .write(true)
            .open(&krl)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(NOW - secs))
            .unwrap();
    };
    let base = w.args.clone();
    let info = w.cert_info(&CertSpec::default());
    w.args
        .extend([format!("krl={}", krl.display()), "krl_max_age=1h".into()]);
    set_age(60);
    assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
    set_age(7200);
    let e = denied(w.open_info(Some(&info)));
    assert!(
        e.to_string().contains("krl_max_age=3600") && e.to_string().contains("krl_fail=closed"),
        "{e}"
    );
    w.args = base;
    w.args.extend([
        format!("krl={}", krl.display()),
        "krl_max_age=1h".into(),
        "krl_fail=open".into(),
    ]);
    assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
    assert!(
        w.host.log_text().contains("event=krl_stale"),
        "{}",
        w.host.log_text()
    );
}

/// A world whose module has a recorder (`recorder=`) and, with `dir`, a recordings
/// directory; returns the recorder's path.
fn recording_world(w: &mut World, dir: bool) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let recorder = w.dir.path().join("breakglass-record");
    std::fs::write(&recorder, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).unwrap();
    if dir {
        let rec = w.dir.path().join("spool").join("recordings");
        std::fs::create_dir_all(&rec).unwrap();
        std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o2770)).unwrap();
    }
    w.args.push(format!("recorder={}", recorder.display()));
    recorder
}

#[test]
fn recording_session_is_told_its_file_and_the_close_record_carries_its_digest() {
    let mut w = World::new();
    let recorder = recording_world(&mut w, true);
    let spec = CertSpec::default().with_recording(&recorder.to_string_lossy(), None, false);
    let mut pam = ScriptedPam::with_info("alice", Some(&w.cert_info(&spec)));
    assert!(
        matches!(w.open(&mut pam), Outcome::Success),
        "{:?}",
        w.host.logs
    );
    let open = pam.data.clone().unwrap();
    let cast = open.recording.clone().unwrap();
    assert_eq!(
        cast,
        w.dir
            .path()
            .join("spool/recordings")
            .join(format!("{}.cast", open.record.session))
    );
    assert_eq!(
        pam.env
            .get(RECORDING_ENV)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        Some(cast.to_string_lossy().into_owned())
    );
    assert_eq!(w.host.guards.borrow()[0].recording.as_ref(), Some(&cast));
    // The shell that starts the recorder skips the user's start-up files.
    let env = |k: &str| {
        pam.env
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(env("SHLVL").as_deref(), Some("1"));
    assert_eq!(
        env("ZDOTDIR").as_deref(),
        Some(breakglass_proto::recording::NO_ZDOTDIR)
    );
    // The recorder ran and ended; the close record commits to the file's bytes.
    std::fs::write(&cast, b"abc").unwrap();
    std::fs::write(
        breakglass_proto::recording::end_path(&cast),
        "ended: command exited (exit status: 0)      \n",
    )
    .unwrap();
    let out = close_session(
        &mut pam,
        &w.host,
        &w.args,
        UNIX_EPOCH + Duration::from_secs(NOW + 5),
    );
    assert!(matches!(out, Outcome::Success));
    let name = w
        .spool_files()
        .into_iter()
        .find(|f| f.ends_with("-close.json"))
        .unwrap();
    let close =
        SessionRecord::from_json(&std::fs::read(w.dir.path().join("spool").join(name)).unwrap())
            .unwrap();
    let (sha, _) = breakglass_proto::recording::chain_of(&b"abc"[..]).unwrap();
    assert_eq!(
        close.recording_sha256,
        Some(breakglass_proto::recording::format_sha256(&sha))
    );
    assert_eq!(
        (close.recording_bytes, close.recording_duration_ms),
        (Some(3), Some(5000))
    );
    assert!(
        close
            .detail
            .unwrap()
            .contains("recorder ended: command exited")
    );
}

#[test]
fn recording_certificate_whose_force_command_is_not_the_recorder_is_denied() {
    let mut w = World::new();
    recording_world(&mut w, true);
    let mut spec = CertSpec::default().with_force_command("/bin/bash");
    spec.permits
        .push(breakglass_proto::profile::EXT_SESSION_RECORDING.into());
    let e = denied(w.open_info(Some(&w.cert_info(&spec))));
    assert_eq!(e.code(), "recording_not_forced", "{e}");
    // The recorder of another path is not this host's recorder either.
    let spec = CertSpec::default().with_recording("/opt/other/breakglass-record", None, false);
    let e = denied(w.open_info(Some(&w.cert_info(&spec))));
    assert_eq!(e.code(), "recording_not_forced", "{e}");
}

#[test]
fn recording_session_without_a_recordings_directory_or_recorder_is_denied() {
    let mut w = World::new();
    let recorder = recording_world(&mut w, false);
    let spec = CertSpec::default().with_recording(&recorder.to_string_lossy(), None, false);
    let e = denied(w.open_info(Some(&w.cert_info(&spec))));
    assert_eq!(e.code(), "recording_unavailable");
    assert!(e.to_string().contains("recordings directory"), "{e}");
    std::fs::remove_file(&recorder).unwrap();
    let e = denied(w.open_info(Some(&w.cert_info(&spec))));
    assert!(e.to_string().contains("is missing"), "{e}");
    assert!(w.spool_files().iter().any(|f| f.ends_with("-deny.json")));
}

#[test]
fn recording_session_of_a_login_shell_that_reads_start_up_files_or_with_user_rc_is_denied() {
    let mut w = World::new();
    let recorder = recording_world(&mut w, true);
    let spec = CertSpec::default().with_recording(&recorder.to_string_lossy(), None, false);
    for shell in ["/usr/bin/fish", "/bin/tcsh"] {
        w.host.shell = Some(shell.into());
        let e = denied(w.open_info(Some(&w.cert_info(&spec))));
        assert_eq!(e.code(), "recording_unavailable", "{e}");
        assert!(
            e.to_string().contains(&format!("login shell {shell}")),
            "{e}"
        );
    }
    w.host.shell = None;
    let e = denied(w.open_info(Some(&w.cert_info(&spec))));
    assert!(e.to_string().contains("no login shell"), "{e}");
    // A supported shell, but the certificate lets sshd run ~/.ssh/rc first.
    w.host.shell = Some("/usr/bin/zsh".into());
    let mut spec = spec;
    spec.permits.push("permit-user-rc".into());
    let e = denied(w.open_info(Some(&w.cert_info(&spec))));
    assert_eq!(e.code(), "recording_not_forced", "{e}");
    assert!(e.to_string().contains("~/.ssh/rc"), "{e}");
}

#[test]
fn two_sessions_opened_by_one_process_in_one_millisecond_get_two_ids() {
    let ms = 1_700_000_000_123;
    let (a, b) = (super::unique_ms(ms), super::unique_ms(ms));
    assert!(b > a, "{a} then {b}");
    assert_ne!(
        session_id("db-7", Some("g-1"), 42, a),
        session_id("db-7", Some("g-1"), 42, b)
    );
}

#[test]
fn the_guard_starts_before_the_checks_end_and_a_denied_login_kills_it() {
    let mut w = World::new();
    // Admitted: one guard, started for the session it is then given the spec of.
    let info = w.cert_info(&CertSpec::default());
    assert!(matches!(w.open_info(Some(&info)), Outcome::Success));
    let session = format!("db-7-g-00000000000000ff-4242-{NOW}000");
    assert_eq!(*w.host.launched.borrow(), std::slice::from_ref(&session));
    assert!(w.host.killed.borrow().is_empty());
    assert_eq!(w.host.guards.borrow()[0].record.session, session);

    // Signed by the trusted CA but failing a check after the guard started (expired,
    // out of scope): that guard is killed without a spec, no open record is written,
    // and only the guard that ends the denied connection runs.
    for (spec, code) in [
        (
            CertSpec {
                valid_before: NOW - 1,
                valid_after: NOW - 100,
                ..CertSpec::default()
            },
            "bad_certificate",
        ),
        (
            CertSpec {
                hosts: Some("web-*".into()),
                ..CertSpec::default()
            },
            "host_scope",
        ),
    ] {
        let w2 = World::new();
        let info = w2.cert_info(&spec);
        assert_eq!(denied(w2.open_info(Some(&info))).code(), code);
        let launched = w2.host.launched.borrow();
        assert_eq!(launched.len(), 2, "{launched:?}");
        assert_eq!(*w2.host.killed.borrow(), [launched[0].clone()]);
        let modes: Vec<GuardMode> = w2.host.guards.borrow().iter().map(|g| g.mode).collect();
        assert_eq!(modes, [GuardMode::Deny]);
        let files = w2.spool_files();
        assert!(
            files.iter().all(|f| !f.ends_with("-open.json")),
            "{files:?}"
        );
    }

    // Nothing is started for a login that is not a breakglass certificate's, one whose
    // certificate claims the profile from another CA, or one without an audit session.
    let mut w3 = World::new();
    // (Outside sshd: no guard either to end the denied connection.)
    w3.host.sshd = false;
    let other_ca = key();
    let foreign = auth_info(&sign(&other_ca, &CertSpec::default()));
    assert_eq!(denied(w3.open_info(Some(&foreign))).code(), "untrusted_ca");
    assert!(matches!(
        w3.open_info(Some("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")),
        Outcome::Ignore
    ));
    assert!(w3.host.launched.borrow().is_empty());
    w.host.audit_session = None;
    w.host.launched.borrow_mut().clear();
    assert_eq!(denied(w.open_info(Some(&info))).code(), "no_audit_session");
    // Only the guard that ends the denied connection.
    assert_eq!(w.host.launched.borrow().len(), 1);
    assert!(w.host.killed.borrow().is_empty());
}
