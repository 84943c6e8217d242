//! The shipping unit in packaging/hosts/ runs a command line this CLI accepts, on the
//! module's default spool, and its timer is installable.

use std::path::Path;

use breakglass_cli::cli::{Cli, Command};
use breakglass_cli::host::HostCmd;
use breakglass_proto::spool;
use clap::Parser;

fn packaging(p: &str) -> String {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging")).join(p);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn ship_unit_delivers_the_module_spool_and_gives_up_before_its_timeout() {
    let unit = packaging("hosts/breakglass-ship.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let argv: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/bin/breakglass");
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Host(HostCmd::Ship(a)) = cli.command else {
        panic!("not host ship");
    };
    assert_eq!(a.spool, Path::new(spool::DEFAULT_DIR));
    assert!(unit.contains(&format!("ReadWritePaths={}", spool::DEFAULT_DIR)));
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
    let timer = packaging("hosts/breakglass-ship.timer");
    assert!(timer.contains("OnUnitActiveSec=") && timer.contains("WantedBy=timers.target"));
}
