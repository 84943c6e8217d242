//! What a broken syslog costs a breakglass login: full logins (`ssh … true` through a real
//! sshd with `pam_breakglass.so` and its guard: authentication, session open with its
//! syslog line, the command, session close with its syslog line) while the module's
//! syslog socket works, is missing, or is never read and full. The three alternate, login
//! by login. Prints p50, p90 and max per case (RELIABILITY.md, "Host fault drills").
//!
//! ```sh
//! cargo bench -p breakglass-tests --bench syslog_drill -- --logins 30     # as root
//! ```
//!
//! Under `cargo test` (no `--bench`) it only says how to run.

use std::time::{Duration, Instant};

use breakglass_tests::bench::BenchArgs;
use breakglass_tests::faults::{SyslogFault, SyslogSwitch};
use breakglass_tests::sshd::{CertSpec, ClientKey, Sshd, SshdOptions, TestCa, TestUser};

/// Most logins accepted per case.
const MAX_LOGINS: usize = 1000;

fn main() {
    let Some(logins) = (BenchArgs {
        bench: "syslog_drill",
        what: "syslog drill benchmark",
        flag: "--logins",
        default: 20,
        example: 30,
        max: MAX_LOGINS,
    })
    .rounds() else {
        return;
    };
    let ca = TestCa::new();
    let sshd = Sshd::start(&SshdOptions::trusting(&ca));
    let user = TestUser::create();
    let keys = tempfile::tempdir().expect("tempdir");
    let key = ClientKey::with_cert(
        keys.path(),
        "k",
        &ca,
        &CertSpec::new(0x5d, &user.name, 3600),
    );
    let mut switch = SyslogSwitch::new(&sshd.syslog.path);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); SyslogFault::ALL.len()];
    // One warm-up login (page cache, sshd's first fork).
    login(&sshd, &user.name, &key);
    for _ in 0..logins {
        for (i, fault) in SyslogFault::ALL.into_iter().enumerate() {
            switch.set(fault);
            samples[i].push(login(&sshd, &user.name, &key).as_secs_f64() * 1000.0);
        }
    }
    switch.set(SyslogFault::Working);
    println!(
        "breakglass login (ssh, session open, `true`, session close) by syslog socket; {logins} logins each, alternating"
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9}",
        "syslog socket", "p50 ms", "p90 ms", "max ms"
    );
    for (fault, v) in SyslogFault::ALL.iter().zip(&mut samples) {
        v.sort_by(f64::total_cmp);
        println!(
            "{:<20} {:>9.1} {:>9.1} {:>9.1}",
            fault.name(),
            pct(v, 50),
            pct(v, 90),
            v[v.len() - 1]
        );
    }
}

/// One login running `true`; panics when it fails (a login that did not complete is
/// what this drill must not see).
fn login(sshd: &Sshd, user: &str, key: &ClientKey) -> Duration {
    let mut cmd = sshd.ssh(user, key, &[]);
    cmd.arg("true");
    let t = Instant::now();
    let out = cmd.output().expect("ssh runs");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "login failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    took
}

fn pct(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
