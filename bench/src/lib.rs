//! breakglass benchmarks, each run by a binary of this crate (README "Benchmark"):
//! - [`issuance`] (`issue-bench`): certificate issuance over loopback mTLS gRPC against
//!   `ssh-keygen -s`;
//! - [`idle`] (`idle-bench`): a real client's issuance latency while idle TCP connections
//!   are held open against a `breakglass-ca` child process;
//! - [`fanout`] (`fanout-bench`): a revocation's fan-out to thousands of hosts holding
//!   `WatchRevocations` streams over mTLS, against a `breakglass-ca` child process;
//! - [`audit`] (`audit-bench`): the audit log's group commit, raw disk sync, recovery and
//!   replay;
//! - [`state_memory`] (`state-bench`): the daemon's memory while it issues many
//!   certificates, short- or long-lived;
//! - [`pg`] (`pg-bench`): issuance on the PostgreSQL audit backend, 1 and 3 daemons,
//!   beside the embedded log, and the cross-daemon approval latency;
//! - [`startup`] (`startup-bench`): time to serving and memory of the daemon with a long
//!   generated history (10 million events by default).
//!
//! They are apart from the daemon crate because they drive it with the CLI crate's client:
//! the daemon does not depend on the CLI.
#![forbid(unsafe_code)]

pub mod audit;
pub mod child;
pub mod fanout;
pub mod idle;
pub mod issuance;
pub mod pg;
pub mod startup;
pub mod state_memory;

/// The daemon a benchmark starts: `given` (`--daemon`), or `breakglass-ca` beside the
/// benchmark's own binary; `tool` names the benchmark in the error.
pub fn daemon_path(
    given: Option<std::path::PathBuf>,
    tool: &str,
) -> Result<std::path::PathBuf, String> {
    match given {
        Some(d) => Ok(d),
        None => std::env::current_exe()
            .map(|me| me.with_file_name("breakglass-ca"))
            .map_err(|e| {
                format!("{tool}: cannot find breakglass-ca beside this binary ({e}); give --daemon")
            }),
    }
}

/// The `p` quantile (0 to 1) of sorted values (the zero value when there are none).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
