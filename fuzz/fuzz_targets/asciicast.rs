//! A stored recording (asciicast v2) as `breakglass audit play` replays it:
//! `breakglass_cli::audit::replay`, the player itself, with the pauses recorded instead of
//! slept. (`audit recording` and `audit verify` parse nothing of the file: they hash it,
//! which `recording_upload` covers.)
//!
//! Input: byte 0 picks the speed (0.1 to 100, what `--speed` accepts), byte 1 the idle
//! limit (none, or 0.5 s to 127.5 s as `--idle-limit` would give); the rest is the file.
//!
//! Properties: no panic; the player ends (it reads each byte once); it writes no more than
//! the file holds (event data only, each JSON escape at least as long as what it stands
//! for); it pauses at most once per line, each pause a finite duration, within the idle
//! limit when there is one (divided by the speed).
//!
//! The same bytes, as session output the recorder writes (UTF-8, invalid sequences
//! replaced as the recorder replaces them), through the recorder's JSON string writer
//! (`pam_breakglass::recorder::json_string`): byte for byte what `serde_json` writes, and
//! read back as the text itself.
#![no_main]

use std::time::Duration;

use breakglass_cli::audit::replay;
use libfuzzer_sys::fuzz_target;
use pam_breakglass::recorder::json_string;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut written = Vec::new();
    json_string(&mut written, &text);
    assert_eq!(
        written,
        serde_json::to_vec(&text).unwrap(),
        "the recorder's JSON string differs from serde_json's"
    );
    let back: String = serde_json::from_slice(&written).expect("the recorder wrote bad JSON");
    assert_eq!(back, text);
    let [speed, idle, file @ ..] = data else {
        return;
    };
    let speed = [0.1, 0.5, 1.0, 2.0, 100.0][usize::from(*speed) % 5];
    let idle = (*idle > 0).then(|| f64::from(*idle) / 2.0);
    let mut out = Vec::new();
    let mut waits: Vec<Duration> = Vec::new();
    let _ = replay(file, &mut out, speed, idle, |d| waits.push(d));
    assert!(
        out.len() <= file.len(),
        "{} bytes played from a file of {}",
        out.len(),
        file.len()
    );
    let lines = file.iter().filter(|b| **b == b'\n').count() + 1;
    assert!(
        waits.len() <= lines,
        "{} pauses for {lines} lines",
        waits.len()
    );
    if let Some(limit) = idle {
        let most = Duration::from_secs_f64(limit / speed);
        for w in &waits {
            // Float rounding of limit/speed: a nanosecond of slack.
            assert!(
                *w <= most + Duration::from_nanos(1),
                "a pause of {w:?} over the idle limit {most:?}"
            );
        }
    }
});
