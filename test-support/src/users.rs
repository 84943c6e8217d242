//! Throw-away local users, and their processes.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::process::run_ok;
use crate::process::{cmdline, processes_where, sigkill, uid_of};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (of this or a parallel test process) uses: `prefix`, the pid and
/// a counter.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A throw-away local user (`useradd -m`), removed with its home on drop after its
/// processes are killed.
#[derive(Debug)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
}

impl TestUser {
    /// Creates a user with a unique name.
    pub fn create() -> Self {
        let name = unique("bgt");
        run_ok(
            Command::new("useradd")
                .args(["-m", "-s", "/bin/bash"])
                .arg(&name),
        );
        let uid = run_ok(Command::new("id").arg("-u").arg(&name))
            .trim()
            .parse()
            .expect("uid");
        Self { name, uid }
    }

    /// Pids of live processes running as this user.
    pub fn processes(&self) -> Vec<u32> {
        processes_where(|pid| uid_of(pid) == Some(self.uid))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for pid in self.processes() {
            let _ = sigkill(pid);
        }
        let _ = Command::new("userdel")
            .args(["-r", "-f"])
            .arg(&self.name)
            .output();
    }
}

/// Pids of processes of `user` whose command line contains `needle`.
pub fn user_processes_matching(user: &TestUser, needle: &str) -> Vec<u32> {
    let found: BTreeSet<u32> = user
        .processes()
        .into_iter()
        .filter(|&p| cmdline(p).contains(needle))
        .collect();
    found.into_iter().collect()
}
