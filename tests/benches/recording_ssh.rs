//! What session recording costs a real SSH session: `cat` of a file (100 MB; `BENCH_MB` to
//! change) in an `ssh -tt` session through a real sshd with `pam_breakglass.so`, once with
//! a certificate of a recording tier (the set-gid recorder forced, its own pty, the
//! asciicast file written, its chain computed at close) and once with an ordinary one,
//! alternating, on the same sshd, host and user. Prints the best and median of each and
//! their ratio (issue goal: recorded >= 80 % of unrecorded). `pam/benches/recorder.rs`
//! measures the recorder alone on bare ptys (no sshd), where its second pty is a larger
//! share of the work.
//!
//! ```sh
//! cargo bench -p breakglass-tests --bench recording_ssh -- --runs 5     # as root
//! ```
//!
//! Under `cargo test` (no `--bench`) it only says how to run.

use std::io::Read;
use std::process::Stdio;
use std::time::Instant;

use breakglass_tests::bench::BenchArgs;
use breakglass_tests::recording::RecordingHost;
use breakglass_tests::sshd::{CertSpec, ClientKey};

/// Seconds and bytes for the whole output of `ssh -tt … cat FILE` with `key`.
fn cat_over_ssh(h: &RecordingHost, key: &ClientKey, file: &str) -> (f64, u64) {
    let start = Instant::now();
    let mut child = h
        .sshd
        .ssh(&h.user.name, key, &["-tt"])
        .arg(format!("cat {file}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    let _ = child.wait();
    (start.elapsed().as_secs_f64(), total)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(runs) = (BenchArgs {
        bench: "recording_ssh",
        what: "session recording benchmark",
        flag: "--runs",
        default: 3,
        example: 5,
        max: 50,
    })
    .rounds() else {
        return;
    };
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // The recorder as shipped: optimised (the tests' side build of the PAM crate is a
    // debug build, several times slower at encoding and hashing).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "pam-breakglass",
            "--bin",
            "breakglass-record",
        ])
        .current_dir(breakglass_test_support::artifacts::workspace())
        .status()
        .expect("cargo runs");
    assert!(
        built.success(),
        "cargo build --release of the recorder failed"
    );
    let recorder = breakglass_test_support::artifacts::target_dir().join("breakglass-record");
    let h = RecordingHost::start_with(&recorder);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let data = dir.path().join("data.txt");
    let line: Vec<u8> = (0..99u8).map(|i| b'!' + (i % 90)).chain([b'\n']).collect();
    std::fs::write(&data, line.repeat(mb * 1_000_000 / line.len())).expect("write data");
    let file = data.to_string_lossy().into_owned();
    let plain = h.key("plain", &CertSpec::new(0x3f0, &h.user.name, 3600));
    let spec = CertSpec::new(0x3f1, &h.user.name, 3600).with_recording(
        &h.recorder.to_string_lossy(),
        None,
        false,
    );
    let recorded = h.key("recorded", &spec);
    println!(
        "session recording through sshd: ssh -tt 127.0.0.1 cat ({mb} MB), {runs} runs each, alternating"
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut shown = (0, 0);
    for _ in 0..runs {
        let (t, n) = cat_over_ssh(&h, &plain, &file);
        a.push(t);
        shown.0 = n;
        let (t, n) = cat_over_ssh(&h, &recorded, &file);
        b.push(t);
        shown.1 = n;
        for cast in h.casts() {
            let _ = std::fs::remove_file(&cast);
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    let (ba, bb) = (best(&a), best(&b));
    let (ma, mb_) = (median(&mut a), median(&mut b));
    let rate = |bytes: u64, t: f64| bytes as f64 / t / 1e6;
    println!(
        "  unrecorded: best {ba:.3} s ({:.1} MB/s), median {ma:.3} s; {} bytes shown",
        rate(shown.0, ba),
        shown.0
    );
    println!(
        "  recorded:   best {bb:.3} s ({:.1} MB/s), median {mb_:.3} s; {} bytes shown",
        rate(shown.1, bb),
        shown.1
    );
    println!(
        "  recorded / unrecorded: best {:.1} %, median {:.1} % (goal >= 80 %)",
        100.0 * ba / bb,
        100.0 * ma / mb_
    );
}
