//! A syslog receiver: a Unix datagram socket the module, the guard or the daemon is
//! pointed at, keeping every line.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A Unix datagram socket collecting the lines sent to it.
#[derive(Debug)]
pub struct SyslogCapture {
    /// Socket path, for the module's `syslog=` option.
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SyslogCapture {
    /// Binds `dir/syslog.sock` and collects in a background thread.
    pub fn bind(dir: &Path) -> Self {
        Self::bind_at(dir.join("syslog.sock"))
    }

    /// Binds `path` and collects in a background thread.
    pub fn bind_at(path: PathBuf) -> Self {
        let sock = UnixDatagram::bind(&path)
            .unwrap_or_else(|e| panic!("bind syslog socket {}: {e}", path.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Self { path, lines }
    }

    /// Lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Waits up to `timeout` for a line containing every needle.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        crate::wait::poll(timeout, Duration::from_millis(20), || {
            self.lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
        })
    }

    /// The first line containing every needle, waiting up to `timeout`; panics with
    /// every line received when none came.
    pub fn expect(&self, needles: &[&str], timeout: Duration) -> String {
        self.wait_for(needles, timeout).unwrap_or_else(|| {
            panic!(
                "no syslog line with {needles:?} within {timeout:?}: {:#?}",
                self.lines()
            )
        })
    }

    /// Line number `index` (from 0) received, waiting up to `timeout` for it; panics
    /// with every line received when it did not come.
    pub fn nth(&self, index: usize, timeout: Duration) -> String {
        crate::wait::poll(timeout, Duration::from_millis(20), || {
            self.lines().get(index).cloned()
        })
        .unwrap_or_else(|| {
            panic!(
                "no syslog line {index} within {timeout:?}: {:#?}",
                self.lines()
            )
        })
    }
}
