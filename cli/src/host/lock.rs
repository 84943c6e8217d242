//! Lock files of the host commands: the spool's (one shipper at a time), the witness
//! state's (one check of the CA's log at a time) and the KRL install's (one install at a
//! time). The kernel drops an `flock` when its holder dies, so a crashed command never
//! leaves a lock behind; a waiting command tries again until its deadline.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How long a waiting command sleeps between two tries.
const RETRY: Duration = Duration::from_millis(50);

/// Takes an exclusive `flock` on `path` (created with mode 0600 if missing, never opened
/// through a symlink), trying again until `wait` has passed. `Ok(None)`: another process
/// held it all that time.
pub async fn exclusive(path: &Path, wait: Duration) -> std::io::Result<Option<Flock<File>>> {
    let deadline = Instant::now() + wait;
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(lock)),
            Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                tokio::time::sleep(RETRY.min(deadline - Instant::now())).await;
            }
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_is_waited_for_until_the_deadline_then_taken_once_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = exclusive(&path, Duration::ZERO).await.unwrap();
        assert!(first.is_some());
        assert!(
            exclusive(&path, Duration::from_millis(200))
                .await
                .unwrap()
                .is_none()
        );
        drop(first);
        assert!(exclusive(&path, Duration::ZERO).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let link = dir.path().join("x.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = exclusive(&link, Duration::ZERO).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ELOOP), "{e}");
        assert!(!target.exists());
    }
}
