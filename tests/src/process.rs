//! Child processes whose output tests watch while they run.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A child's stdout and stderr, collected into one buffer by background threads.
#[derive(Clone, Debug)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Takes the child's piped stdout and stderr and collects both in the background.
    pub fn take(child: &mut Child) -> Self {
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&output);
            let mut stream = stream;
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            });
        }
        Self(output)
    }

    /// Everything printed so far (stdout and stderr).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// Waits up to `timeout` (looking every `every`) for the output to contain `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration, every: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            thread::sleep(every);
        }
        false
    }
}

/// Waits up to `timeout` (looking every `every`) for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration, every: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        thread::sleep(every);
    }
    None
}
