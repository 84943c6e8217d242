//! `breakglass drill` end to end, with the real pieces: the real `breakglass` binary,
//! an in-process daemon over mTLS on the dev config (its drill tier and rule, with a
//! webhook receiver on loopback as the tier's alert hook), a real `sshd` with
//! `pam_breakglass.so` shipping its records at once (`ship=`/`ship_config=` with the
//! host's client identity), and the system `ssh`.
//!
//! The drill passes and prints both times; the audit log holds the drill grant, its
//! session's open and close and the passed report. With the module line removed from
//! sshd's PAM stack the login still works, but no session record arrives: the drill
//! fails with the step and what to check, exits 1, the failed report is in the log,
//! and the webhook receiver gets the alert.

use std::process::{Command, Output};
use std::time::Duration;

use breakglass_proto::audit::event::DrillReported;
use breakglass_proto::audit::{Event, EventKind};
use breakglass_tests::audit::{all_events, session_counts};
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::sshd::{TestUser, require_root};
use breakglass_tests::webhook::{Answer, Hook};
use breakglass_tests::{breakglass_bin_built, can_run, have};

/// The grant id printed on the PASS line or the `ok request` progress line.
fn grant_of(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("g-") && w.len() == 18)
        .unwrap_or_else(|| panic!("no grant id in:\n{stdout}"))
        .to_owned()
}

/// The value printed after `label`, e.g. "0.412s" or "not reached".
fn shown(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
        .trim()
        .to_owned()
}

fn is_seconds(v: &str) -> bool {
    v.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n > 0.0)
}

fn drill_report<'a>(events: &'a [Event], grant: &str) -> Vec<&'a DrillReported> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::DrillReported(r) if r.grant_id.to_string() == grant => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drill_passes_with_both_times_and_fails_clearly_without_the_pam_module() {
    if !require_root("a real sshd, a test user and /etc/pam.d") {
        return;
    }
    if !can_run("ssh and ssh-keygen", have("ssh") && have("ssh-keygen")) {
        return;
    }
    let bin = breakglass_bin_built().await;
    let hook = Hook::start(Answer::Ok).await;
    let pager = "# webhooks = [\"https://pager.example.com/hooks/breakglass\"]";
    let url = hook.url.clone();
    let d = TestDaemon::start_with(move |c| {
        assert!(
            c.contains(pager),
            "the dev config's drill tier names no pager hook"
        );
        c.replace(pager, &format!("webhooks = [{url:?}]"))
    })
    .await;

    // Client settings with the daemon's real port: the sample SRE runs the drill, the
    // host ships its records as host://localhost.
    let sre = d.client_config("sre-drill", "sre");
    let host = d.client_config("host-drill", "host");

    let sshd = d.start_sshd(Some("localhost")).await;
    sshd.ship_with(&bin, &host);
    let user = tokio::task::spawn_blocking(TestUser::create).await.unwrap();
    // The host's key, so that the drill checks it (BatchMode: no prompt, no guessing).
    let host_key = std::fs::read_to_string(sshd.dir.path().join("host_ed25519.pub")).unwrap();
    let mut parts = host_key.split_whitespace();
    let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[localhost]:{p},[127.0.0.1]:{p} {kind} {key}\n",
            p = sshd.port
        ),
    )
    .unwrap();
    // The drill's private temporary directory goes here, to see that it is removed.
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();

    let drill = |timeout: &str| -> Output {
        Command::new(&bin)
            .arg("--config")
            .arg(&sre)
            .args(["drill", "--host", "localhost", "--as", &user.name, "--port"])
            .arg(sshd.port.to_string())
            .args(["--ssh-option", "HostName=127.0.0.1", "--known-hosts"])
            .arg(&known_hosts)
            .args(["--timeout", timeout])
            .env("TMPDIR", &tmp)
            .output()
            .expect("breakglass drill runs")
    };

    // 1. Everything in place: PASS with both times.
    let out = tokio::task::block_in_place(|| drill("30s"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- breakglass drill:\n{stdout}{stderr}");
    assert!(
        out.status.success(),
        "drill failed ({}):\n{stdout}\n{stderr}\nsshd log:\n{}",
        out.status,
        sshd.log()
    );
    assert!(
        stdout.contains("PASS: break-glass drill on localhost as"),
        "{stdout}"
    );
    let to_shell = shown(&stdout, "request to shell:");
    let to_audit = shown(&stdout, "logout to audit record:");
    assert!(is_seconds(&to_shell), "{to_shell:?} in\n{stdout}");
    assert!(is_seconds(&to_audit), "{to_audit:?} in\n{stdout}");
    let passed = grant_of(&stdout);
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "the drill key was left behind in {}",
        tmp.display()
    );

    let events = all_events(&d).await;
    let issued = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::GrantIssued(g) if g.grant_id.to_string() == passed => Some(g),
            _ => None,
        })
        .expect("the drill grant is in the audit log");
    assert_eq!(issued.tier, "drill");
    assert_eq!(issued.rule, "sre-drill-local");
    assert_eq!(issued.command.as_deref(), Some("echo breakglass-drill"));
    assert!(issued.approvers.is_empty() && !issued.emergency);
    assert_eq!(session_counts(&events, &passed, None), (1, 1));
    let report = drill_report(&events, &passed);
    assert_eq!(report.len(), 1, "one report");
    assert!(report[0].passed && report[0].failed_step.is_empty());
    assert!(report[0].request_to_shell_ms > 0 && report[0].logout_to_audit_ms > 0);

    // 2. The module line is gone from sshd's PAM stack: the login still works, but no
    // session is recorded. The drill says so, exits 1, and the failure is alerted.
    sshd.remove_module_from_pam_stack();
    let out = tokio::task::block_in_place(|| drill("8s"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- breakglass drill:\n{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let user_at = format!("break-glass drill on localhost as {}", user.name);
    assert!(
        stdout.contains(&format!(
            "FAIL: {user_at} failed at step session-open: no session-open record of grant"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "check: is pam_breakglass in sshd's PAM stack on localhost? run `breakglass host doctor` on localhost"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("reported to breakglass-ca (audit event"),
        "{stdout}"
    );
    assert!(is_seconds(&shown(&stdout, "request to shell:")), "{stdout}");
    assert_eq!(shown(&stdout, "logout to audit record:"), "not reached");
    assert!(
        stderr.contains("breakglass: drill failed at step session-open"),
        "{stderr}"
    );
    let failed = grant_of(&stdout);
    assert_ne!(failed, passed);

    let events = all_events(&d).await;
    let report = drill_report(&events, &failed);
    assert_eq!(report.len(), 1, "one report");
    assert!(!report[0].passed);
    assert_eq!(report[0].failed_step, "session-open");
    assert!(
        report[0].detail.contains("pam_breakglass"),
        "{:?}",
        report[0]
    );
    assert!(report[0].request_to_shell_ms > 0);
    assert_eq!(report[0].logout_to_audit_ms, 0);
    assert!(
        !events.iter().any(|e| e
            .kind
            .session()
            .is_some_and(|s| s.grant_id.to_string() == failed)),
        "no session record without the module"
    );
    let alert = hook
        .wait_for("drill_failed", "grant_id", &failed, Duration::from_secs(15))
        .await;
    assert_eq!(alert["tier"], "drill");
    assert!(
        alert["detail"]
            .as_str()
            .is_some_and(|s| s.contains("failed at step session-open")),
        "{alert}"
    );
    assert!(
        !hook
            .events()
            .iter()
            .any(|v| v["event"] == "drill_failed" && v["grant_id"] == passed.as_str()),
        "the passed drill raised no alert"
    );

    // A report is recorded once per grant, only by the requester, only for drill grants.
    let mut sre_client = breakglass_cli::connect::client(&d.target("sre")).unwrap();
    let again = sre_client
        .report_drill(breakglass_proto::v1::ReportDrillRequest {
            grant_id: failed.clone(),
            passed: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(again.message().contains("already reported"), "{again}");
    let mut approver = breakglass_cli::connect::client(&d.target("approver")).unwrap();
    let other = approver
        .get_grant_sessions(breakglass_proto::v1::GrantRef {
            grant_id: passed.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other}");
    drop(sshd);
    drop(user);
    d.stop().await;
}
