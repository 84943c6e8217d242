//! What the session recorder costs a session, measured on real ptys:
//!
//! - throughput: `cat` of a file (100 MB; `BENCH_MB` to change) through a pty, straight,
//!   under `breakglass-record`, and under `script -qfc` (a pty relay that records nothing,
//!   for reference), alternating, `BENCH_RUNS` (15) times each, medians (goal: recorded
//!   ≥ 80 % of unrecorded);
//! - keystroke echo latency: one byte written to the pty and its echo read back by a
//!   program in raw mode (`stty raw -echo; cat`), straight and under the recorder
//!   (`BENCH_KEYS` keystrokes, 2000 by default); the recorder's share is the difference
//!   (goal: < 1 ms at p99).
//!
//! `cargo bench -p pam-breakglass --bench recorder` prints the figures. Needs no root: the
//! recorder runs without its set-gid bit and writes into a temporary directory.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use breakglass_proto::recording::RECORDING_ENV;
use pam_breakglass::system::pty;

const RECORDER: &str = env!("CARGO_BIN_EXE_breakglass-record");

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `shell` run on a new pty (as its controlling terminal), straight or under the recorder
/// writing to `cast`; returns the child and the master side.
fn on_pty(shell: &str, cast: Option<&Path>) -> (Child, File) {
    let (master, slave) = pty::open_pty().expect("openpty");
    pty::set_window_size(master.as_fd(), 120, 40).expect("winsize");
    let mut cmd = match cast {
        None => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(shell);
            c
        }
        Some(path) if path == Path::new("script") => {
            let mut c = Command::new("script");
            c.args(["-qfc", shell, "/dev/null"]);
            c
        }
        Some(path) => {
            let mut c = Command::new(RECORDER);
            c.args(["--grant", "g-00000000000000be", "--", shell])
                .env(RECORDING_ENV, path)
                .env("SHELL", "/bin/sh");
            c
        }
    };
    cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    let child = pty::spawn(&mut cmd, true).expect("spawn");
    (child, File::from(master))
}

/// Seconds and bytes to read everything `cat file` shows on a pty.
fn cat_through(file: &Path, cast: Option<&Path>) -> (f64, u64) {
    let (mut child, mut master) = on_pty(&format!("cat {}", file.display()), cast);
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = child.wait();
    (secs, total)
}

/// Echo round trips of `keys` single keystrokes, in microseconds, sorted.
fn echo_rtts(keys: usize, cast: Option<&Path>) -> Vec<f64> {
    let (mut child, mut master) = on_pty("stty raw -echo; exec cat", cast);
    let mut one = [0u8; 1];
    // Ready once a keystroke comes back; then nothing more is in flight (the pty may have
    // echoed it too before `stty` ran): drain until the pty is quiet for 300 ms, so that
    // each read below returns the echo of its own keystroke.
    master.write_all(b"x").expect("write");
    loop {
        master.read_exact(&mut one).expect("read");
        if one[0] == b'x' {
            break;
        }
    }
    let mut junk = [0u8; 4096];
    while pty::poll(&[(master.as_fd(), libc::POLLIN)], 300).expect("poll")[0] != 0 {
        let _ = master.read(&mut junk).expect("read");
    }
    let mut rtts = Vec::with_capacity(keys);
    for _ in 0..keys {
        let t = Instant::now();
        master.write_all(b"a").expect("write");
        master.read_exact(&mut one).expect("read");
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let _ = child.kill();
    let _ = child.wait();
    rtts.sort_by(f64::total_cmp);
    rtts
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let mb = env_num("BENCH_MB", 100);
    let keys = env_num("BENCH_KEYS", 2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data.txt");
    {
        let mut f = std::io::BufWriter::new(File::create(&data).expect("create"));
        let line: Vec<u8> = (0..99u8).map(|i| b'!' + (i % 90)).chain([b'\n']).collect();
        for _ in 0..(mb * 1_000_000 / line.len()) {
            f.write_all(&line).expect("write");
        }
    }
    // On a small VM, medians of 5 rounds of the same build differed by up to 20 points;
    // four medians of 15 came within 3 (BENCHMARKS.md, "Fifteen-round medians").
    let runs = env_num("BENCH_RUNS", 15).max(1);
    println!("breakglass-record benchmark ({RECORDER})");
    // Alternating, so that a machine that gets busier or quieter affects all three alike.
    let (mut plain_t, mut rec_t, mut script_t) = (Vec::new(), Vec::new(), Vec::new());
    let mut shown = 0;
    let mut cast_bytes = 0;
    for round in 0..runs {
        let (t, n) = cat_through(&data, None);
        plain_t.push(t);
        shown = n;
        let cast = dir.path().join(format!("cat-{round}.cast"));
        let (t, _) = cat_through(&data, Some(&cast));
        rec_t.push(t);
        cast_bytes = std::fs::metadata(&cast).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(&cast);
        let _ = std::fs::remove_file(breakglass_proto::recording::end_path(&cast));
        let (t, _) = cat_through(&data, Some(Path::new("script")));
        script_t.push(t);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, r, sc) = (
        median(&mut plain_t),
        median(&mut rec_t),
        median(&mut script_t),
    );
    let rate = |t: f64| shown as f64 / t / 1e6;
    println!(
        "throughput: cat of {mb} MB ({shown} bytes on the pty), median of {runs} runs each, alternating:"
    );
    println!("  unrecorded: {p:.3} s  {:.1} MB/s", rate(p));
    println!(
        "  recorded:   {r:.3} s  {:.1} MB/s  (recording {cast_bytes} bytes)",
        rate(r)
    );
    println!(
        "  script -qfc (a plain pty relay, no recorder, for reference): {sc:.3} s  {:.1} MB/s",
        rate(sc)
    );
    println!(
        "  recorded / unrecorded: {:.1} % (goal >= 80 %); script / unrecorded: {:.1} %",
        100.0 * p / r,
        100.0 * p / sc
    );
    let plain = echo_rtts(keys, None);
    let cast = dir.path().join("echo.cast");
    let recorded = echo_rtts(keys, Some(&cast));
    println!("keystroke echo round trip, {keys} keystrokes (stty raw -echo; cat), microseconds:");
    for (name, v) in [("unrecorded", &plain), ("recorded", &recorded)] {
        println!(
            "  {name:<10}  p50 {:8.1}  p99 {:8.1}  max {:8.1}",
            pct(v, 0.5),
            pct(v, 0.99),
            v[v.len() - 1]
        );
    }
    println!(
        "  added by the recorder: p50 {:.1} us, p99 {:.1} us (goal p99 < 1000 us)",
        pct(&recorded, 0.5) - pct(&plain, 0.5),
        pct(&recorded, 0.99) - pct(&plain, 0.99)
    );
}
