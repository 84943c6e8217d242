//! The host units in packaging/hosts/ run command lines this CLI accepts, on the same
//! files the sshd and PAM snippets name; the shipping unit works on the module's default
//! spool and gives up before systemd would kill it; the timers are installable.

use std::path::Path;

use breakglass_cli::cli::{Cli, Command};
use breakglass_cli::host::HostCmd;
use breakglass_proto::spool::DEFAULT_DIR as DEFAULT_SPOOL;
use breakglass_test_support::packaging;
use clap::Parser;

fn exec_start(unit: &str) -> Cli {
    let text = packaging(unit);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let argv: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/bin/breakglass");
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{unit}: {e}"))
}

/// The timer repeats and `systemctl enable` can install it.
fn assert_installable_timer(timer: &str) {
    let text = packaging(timer);
    assert!(
        text.contains("OnUnitActiveSec=") && text.contains("WantedBy=timers.target"),
        "{timer}"
    );
}

/// The value after `key` on the one uncommented line that starts with `key`.
fn directive<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn krl_sync_unit_writes_the_file_sshd_and_the_module_read() {
    let Command::Host(HostCmd::SyncKrl(a)) =
        exec_start("hosts/breakglass-krl-sync.service").command
    else {
        panic!("not host sync-krl");
    };
    let sshd = packaging("sshd/breakglass.conf");
    assert_eq!(a.out, Path::new(directive(&sshd, "RevokedKeys ")));
    assert_eq!(
        a.ca_keys.as_deref(),
        Some(Path::new(directive(&sshd, "TrustedUserCAKeys ")))
    );
    let pam = packaging("pam/sshd.breakglass");
    assert!(
        pam.contains(&format!("krl={}", a.out.display())),
        "the PAM line reads another KRL"
    );
    assert_installable_timer("hosts/breakglass-krl-sync.timer");
}

#[test]
fn watcher_unit_watches_the_module_default_sessions_dir_which_tmpfiles_creates() {
    let Command::Host(HostCmd::WatchRevocations(a)) =
        exec_start("hosts/breakglass-watch-revocations.service").command
    else {
        panic!("not host watch-revocations");
    };
    assert_eq!(
        a.sessions,
        Path::new(breakglass_proto::sessions::DEFAULT_DIR)
    );
    // It keeps the KRL sshd and the module read, verified with the keys sshd trusts,
    // and may write there.
    let sshd = packaging("sshd/breakglass.conf");
    assert_eq!(
        a.krl.as_deref(),
        Some(Path::new(directive(&sshd, "RevokedKeys ")))
    );
    assert_eq!(
        a.ca_keys.as_deref(),
        Some(Path::new(directive(&sshd, "TrustedUserCAKeys ")))
    );
    let unit = packaging("hosts/breakglass-watch-revocations.service");
    let writable = directive(&unit, "ReadWritePaths=");
    let krl_dir = a.krl.as_deref().and_then(Path::parent).unwrap();
    assert!(
        writable.split_whitespace().any(|d| Path::new(d) == krl_dir),
        "ReadWritePaths={writable} lacks {}",
        krl_dir.display()
    );
    let tmpfiles = packaging("hosts/breakglass-revocation.tmpfiles.conf");
    assert!(tmpfiles.contains(&format!(
        "d {} 0700 root root",
        breakglass_proto::sessions::DEFAULT_DIR
    )));
    assert!(tmpfiles.contains("d /run/breakglass "));
    // Who watches the watcher (it replaces dead session guards): systemd, and the
    // replacements it starts survive its restarts and may write the spool.
    let unit = packaging("hosts/breakglass-watch-revocations.service");
    assert_eq!(directive(&unit, "Restart="), "always");
    assert_eq!(directive(&unit, "OOMScoreAdjust="), "-1000");
    assert_eq!(directive(&unit, "KillMode="), "process");
    assert!(
        directive(&unit, "ReadWritePaths=")
            .split_whitespace()
            .any(|p| p == DEFAULT_SPOOL),
        "replacement guards cannot write the spool"
    );
}

#[test]
fn host_units_that_witness_the_log_may_write_the_default_witness_state() {
    use breakglass_cli::host::witness::DEFAULT_STATE;
    let dir = Path::new(DEFAULT_STATE).parent().unwrap();
    assert_eq!(dir, Path::new("/var/lib/breakglass"));
    for unit in [
        "hosts/breakglass-krl-sync.service",
        "hosts/breakglass-ship.service",
        "hosts/breakglass-watch-revocations.service",
    ] {
        let witness = match exec_start(unit).command {
            Command::Host(HostCmd::SyncKrl(a)) => a.witness,
            Command::Host(HostCmd::Ship(a)) => a.witness,
            Command::Host(HostCmd::WatchRevocations(a)) => a.witness,
            _ => panic!("{unit}: not a host command that witnesses the log"),
        };
        // The default (or host.toml's witness_state): /var/lib/breakglass, which
        // StateDirectory= makes writable under ProtectSystem=strict.
        assert_eq!(witness.witness_state, None, "{unit}");
        assert_eq!(
            directive(&packaging(unit), "StateDirectory="),
            "breakglass",
            "{unit}"
        );
    }
}

#[test]
fn ship_unit_delivers_the_module_spool_and_gives_up_before_its_timeout() {
    let unit = packaging("hosts/breakglass-ship.service");
    let cli = exec_start("hosts/breakglass-ship.service");
    let Command::Host(HostCmd::Ship(a)) = cli.command else {
        panic!("not host ship");
    };
    assert_eq!(a.spool, Path::new(DEFAULT_SPOOL));
    assert!(unit.contains(&format!("ReadWritePaths={DEFAULT_SPOOL}")));
    // Waiting for another shipper and the retries end before systemd would kill the run.
    let timeout = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStartSec="))
        .map(|t| humantime::parse_duration(t).unwrap())
        .expect("TimeoutStartSec=");
    assert!(a.lock_wait + a.retry_for + std::time::Duration::from_secs(30) < timeout);
    // The PAM snippet tells how the module ships at once: this binary, this unit's config.
    let pam = packaging("pam/sshd.breakglass");
    let config = cli.conn.config.expect("--config in ExecStart");
    assert!(pam.contains("ship=/usr/bin/breakglass"), "{pam}");
    assert!(
        pam.contains(&format!("ship_config={}", config.display())),
        "{pam}"
    );
    assert_installable_timer("hosts/breakglass-ship.timer");
}

#[test]
fn renew_unit_renews_the_host_toml_certificate_and_may_write_its_directory() {
    use breakglass_cli::host::enroll::{DEFAULT_DIR, HOST_CONFIG};
    let unit = packaging("hosts/breakglass-renew.service");
    let cli = exec_start("hosts/breakglass-renew.service");
    let Command::Host(HostCmd::Renew(a)) = cli.command else {
        panic!("not host renew");
    };
    // Renewal when due, never forced by the timer.
    assert!(!a.force);
    // The config `host enroll` writes, in the directory the unit may write.
    let config = cli.conn.config.expect("--config in ExecStart");
    assert_eq!(config, Path::new(DEFAULT_DIR).join(HOST_CONFIG));
    assert_eq!(directive(&unit, "ReadWritePaths="), DEFAULT_DIR);
    assert_eq!(
        directive(&unit, "ConditionPathExists="),
        config.display().to_string()
    );
    assert_installable_timer("hosts/breakglass-renew.timer");
}
