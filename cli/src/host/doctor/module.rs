//! The module and what it relies on: the `.so` file found and loadable (`dlopen`, through
//! [`crate::ffi`]), its `ca_keys=` and `krl=`, the session guard executable, the spool
//! writable, and every registered session with a live guard.
#![forbid(unsafe_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::DoctorArgs;
use super::daemon::DaemonView;
use super::files::{ownership_fix, ownership_problem};
use super::pam_line::ModuleLine;
use super::report::Report;
use super::sshd::{PACKAGED_KRL, SshdPaths, check_ca_keys_file, check_krl};

pub(super) fn check_module(
    report: &mut Report,
    m: &ModuleLine,
    args: &DoctorArgs,
    daemon: &DaemonView,
    bg: &str,
    max_age: Duration,
    sshd: &SshdPaths,
) {
    const A: &str = "pam";
    let svc = m.service.display();
    // The module file.
    let module = if m.entry.rule.module.starts_with('/') {
        Some(PathBuf::from(&m.entry.rule.module))
    } else {
        args.module_dirs()
            .iter()
            .map(|d| d.join(&m.entry.rule.module))
            .find(|p| p.exists())
    };
    match module {
        None => report.fail(
            A,
            format!(
                "module {} not found in {}",
                m.entry.rule.module,
                args.module_dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "install the libpam-breakglass package (it puts pam_breakglass.so in the multiarch security directory)".to_owned(),
        ),
        Some(path) => match std::fs::metadata(&path) {
            Err(e) => report.fail(
                A,
                format!("module {} (line {} of {svc}): {e}", path.display(), m.entry.top_line),
                "install the libpam-breakglass package, or fix the path on that line".to_owned(),
            ),
            Ok(meta) => {
                if let Some(p) = ownership_problem(&meta) {
                    report.fail(
                        A,
                        format!("module {} {p}: anyone who can write it owns every login", path.display()),
                        ownership_fix(&path),
                    );
                }
                match crate::ffi::dlopen_check(&path, "pam_sm_open_session") {
                    Ok(()) => report.ok(
                        A,
                        format!("module {} loads and exports pam_sm_open_session", path.display()),
                    ),
                    Err(e) => report.fail(
                        A,
                        format!("module {} cannot be loaded: {e}", path.display()),
                        format!(
                            "reinstall libpam-breakglass; `ldd {}` shows missing libraries",
                            path.display()
                        ),
                    ),
                }
            }
        },
    }

    // Its CA keys and KRL.
    check_ca_keys_file(
        report,
        A,
        "pam_breakglass",
        "ca_keys=",
        &m.options.ca_keys,
        daemon,
        bg,
    );
    match &m.options.krl {
        None => report.warn(
            A,
            format!(
                "module has no krl= (line {} of {svc}): it does not refuse revoked certificates itself",
                m.entry.top_line
            ),
            format!(
                "add krl={} to that line",
                sshd.revoked
                    .as_ref()
                    .map_or(PACKAGED_KRL.to_owned(), |p| p.display().to_string())
            ),
        ),
        Some(k) if sshd.revoked.as_ref() == Some(k) => report.ok(
            A,
            format!("module krl= is sshd's RevokedKeys {}", k.display()),
        ),
        Some(k) => check_krl(
            report,
            A,
            "module krl=",
            k,
            Some(&m.options.ca_keys),
            daemon,
            bg,
            max_age,
        ),
    }

    // The guard.
    let guard = args
        .guard
        .clone()
        .unwrap_or_else(|| m.options.guard.clone());
    let g = guard.display();
    match std::fs::metadata(&guard) {
        Err(e) => report.fail(
            A,
            format!("session guard {g}: {e}: the module denies every breakglass session"),
            format!("install the libpam-breakglass package (or `install -o root -g root -m 0755 -D breakglass-guard {g}`)"),
        ),
        Ok(meta) if !meta.is_file() => report.fail(
            A,
            format!("session guard {g} is not a regular file"),
            format!("install -o root -g root -m 0755 -D breakglass-guard {g}"),
        ),
        Ok(meta) => {
            let mut good = true;
            if meta.mode() & 0o111 == 0 {
                good = false;
                report.fail(
                    A,
                    format!("session guard {g} is not executable (mode {:04o})", meta.mode() & 0o7777),
                    format!("chmod 0755 {g}"),
                );
            }
            if let Some(p) = ownership_problem(&meta) {
                good = false;
                report.fail(A, format!("session guard {g} {p}"), ownership_fix(&guard));
            }
            if good {
                report.ok(A, format!("session guard {g} is executable and root-owned"));
            }
        }
    }

    // The spool.
    let spool = args
        .spool
        .clone()
        .unwrap_or_else(|| m.options.spool.clone());
    check_spool(report, &spool);
    check_slots(report, &spool, m.options.spool_slots);
    check_guards(report, &m.options.sessions);
}

/// Every open session has a live guard: one that died (SIGKILL, OOM killer) is replaced
/// by `host watch-revocations`; a session still without one means the watcher is not
/// running, and nothing ends that session at expiry.
fn check_guards(report: &mut Report, dir: &Path) {
    use crate::host::guard_sweep::{GuardState, guard_state};
    const A: &str = "pam";
    let regs = breakglass_proto::sessions::read_registrations(dir);
    let orphans: Vec<_> = regs
        .iter()
        .filter(|r| guard_state(dir, r) == GuardState::Gone)
        .collect();
    if orphans.is_empty() {
        report.ok(
            A,
            format!(
                "{} open session(s) registered in {}, each with a live guard",
                regs.len(),
                dir.display()
            ),
        );
        return;
    }
    for r in orphans {
        report.fail(
            A,
            format!(
                "session {} (grant {}) has no live guard (pid {} is gone): nothing ends it at expiry; \
                 host watch-revocations replaces dead guards within a second, so it is not running{}",
                r.session,
                r.grant,
                r.guard_pid,
                if r.guard.is_none() {
                    " (or this older guard cannot be replaced: end the session by hand)"
                } else {
                    ""
                }
            ),
            "systemctl enable --now breakglass-watch-revocations.service".to_owned(),
        );
    }
}

fn check_spool(report: &mut Report, spool: &Path) {
    const A: &str = "pam";
    let s = spool.display();
    let create = format!("install -o root -g root -m 0700 -d {s}");
    match std::fs::symlink_metadata(spool) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match spool.parent().map(std::fs::metadata) {
                Some(Ok(p)) if p.is_dir() => report.ok(
                    A,
                    format!("spool {s} does not exist yet; the module creates it (mode 0700) at the first session"),
                ),
                _ => report.fail(
                    A,
                    format!("spool {s} does not exist and neither does its parent: the module cannot record sessions and denies them"),
                    format!("install -o root -g root -m 0700 -D -d {s}"),
                ),
            }
        }
        Err(e) => report.fail(A, format!("spool {s}: {e}"), create),
        Ok(meta) if !meta.is_dir() => report.fail(
            A,
            format!("spool {s} is not a directory (symlinks are refused)"),
            format!("rm {s} && {create}"),
        ),
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            if let Some(p) = ownership_problem(&meta) {
                report.fail(
                    A,
                    format!("spool {s} {p}: the module denies every breakglass session"),
                    format!("chown root:root {s} && chmod 0700 {s}"),
                );
                return;
            }
            // A record's worth of data, synced: creating an empty file still works on a
            // full file system, where the module's record writes fail.
            let written = tempfile::Builder::new()
                .prefix(".doctor-")
                .tempfile_in(spool)
                .and_then(|mut f| {
                    use std::io::Write as _;
                    f.write_all(&[0u8; 4096])?;
                    f.as_file().sync_data()
                });
            if let Err(e) = written {
                report.fail(
                    A,
                    format!(
                        "spool {s} is not writable: {e}: the module denies every breakglass session"
                    ),
                    format!("free space on its file system, or `chmod 0700 {s}` (owner root)"),
                );
                return;
            }
            if mode == 0o700 {
                report.ok(A, format!("spool {s} is writable, mode 0700"));
            } else if mode == 0o710 {
                // The packaged layout for session recording: the recorder's group only
                // passes through to recordings/; the records themselves are 0600 root.
                let group = nix::unistd::Group::from_gid(meta.gid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| format!("gid {}", meta.gid()), |g| g.name);
                report.ok(
                    A,
                    format!("spool {s} is writable, mode 0710: group {group} may only pass through it (the layout for session recording)"),
                );
            } else {
                report.warn(
                    A,
                    format!(
                        "spool {s} has mode {mode:04o}: session records are readable by others"
                    ),
                    format!("chmod 0700 {s}"),
                );
            }
        }
    }
}

/// The spool's slot file (`spool_slots=`): usable, and how many of its slots wait to be
/// shipped.
fn check_slots(report: &mut Report, spool: &Path, configured: u32) {
    use crate::host::ship_slots::{SlotFile, Used};
    const A: &str = "pam";
    let path = spool.join(breakglass_proto::spool::slots::FILE_NAME);
    let p = path.display();
    let slots = match SlotFile::open(spool) {
        Ok(Some(s)) => s,
        Ok(None) if configured > 0 => {
            report.ok(
                A,
                format!("slot file {p} does not exist yet; the module creates it ({configured} slots) at the next session"),
            );
            return;
        }
        Ok(None) => return,
        Err(e) => {
            report.fail(
                A,
                format!("{e}: the module denies every breakglass session"),
                format!(
                    "breakglass host ship --spool {}; then, with logins stopped, mv {p} {p}.bad",
                    spool.display()
                ),
            );
            return;
        }
    };
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && let Some(problem) = ownership_problem(&meta)
    {
        report.fail(
            A,
            format!("slot file {p} {problem}: the module denies every breakglass session"),
            format!("chown root:root {p} && chmod 0600 {p}"),
        );
        return;
    }
    let total = std::fs::metadata(&path).map_or(0, |m| m.len())
        / breakglass_proto::spool::slots::SLOT_SIZE as u64;
    let used = match slots.used() {
        Ok(u) => u,
        Err(e) => {
            report.fail(
                A,
                format!("{e}"),
                format!("check the disk holding {}", spool.display()),
            );
            return;
        }
    };
    let damaged = used
        .iter()
        .filter(|(_, u)| matches!(u, Used::Damaged { .. }))
        .count();
    let ship = format!("breakglass host ship --spool {}", spool.display());
    if damaged > 0 {
        report.warn(
            A,
            format!("slot file {p}: {damaged} slot(s) hold no complete record (a write cut short); the shipper sets them aside"),
            ship,
        );
    } else if used.len() as u64 >= total {
        report.warn(
            A,
            format!("slot file {p}: all {total} slots wait to be shipped; new records fall back to one file each"),
            ship,
        );
    } else {
        report.ok(
            A,
            format!(
                "slot file {p}: {total} slots, {} waiting to be shipped",
                used.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_without_a_live_guard_fails_with_the_watcher_as_fix() {
        use breakglass_proto::sessions::Registration;
        let dir = tempfile::tempdir().unwrap();
        let reg = Registration {
            session: "db-7-g-1-42-1".into(),
            grant: "g-1".into(),
            serial: 1,
            key_id: "breakglass/g-1/sre@example.com".into(),
            expires: 1,
            guard_pid: 999_999_999,
            guard: Some("/usr/libexec/breakglass/breakglass-guard".into()),
        };
        let mut r = Report::default();
        check_guards(&mut r, dir.path());
        assert!(r.fails().is_empty(), "{}", r.render());
        std::fs::write(reg.path(dir.path()), reg.to_text()).unwrap();
        // Held by a live guard: fine.
        let held = nix::fcntl::Flock::lock(
            std::fs::File::open(reg.path(dir.path())).unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let mut r = Report::default();
        check_guards(&mut r, dir.path());
        assert!(r.fails().is_empty(), "{}", r.render());
        drop(held);
        let mut r = Report::default();
        check_guards(&mut r, dir.path());
        let text = r.render();
        assert_eq!(r.fails().len(), 1, "{text}");
        assert!(
            text.contains("db-7-g-1-42-1") && text.contains("no live guard"),
            "{text}"
        );
        assert!(text.contains("breakglass-watch-revocations"), "{text}");
    }

    #[test]
    fn slot_file_checks() {
        use breakglass_proto::spool::slots::{self, FILE_NAME, SLOT_SIZE};
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::default();
        check_slots(&mut r, dir.path(), 0);
        assert!(
            r.lines().is_empty(),
            "no slot file, none configured: nothing to say"
        );
        check_slots(&mut r, dir.path(), 8);
        let mut file = vec![0u8; 2 * SLOT_SIZE];
        let record = slots::encode(1, b"{}").unwrap();
        file[..SLOT_SIZE].copy_from_slice(&record);
        std::fs::write(dir.path().join(FILE_NAME), &file).unwrap();
        check_slots(&mut r, dir.path(), 8);
        file[SLOT_SIZE..].copy_from_slice(&record);
        std::fs::write(dir.path().join(FILE_NAME), &file).unwrap();
        check_slots(&mut r, dir.path(), 8);
        file[SLOT_SIZE + slots::HEADER_LEN] ^= 1;
        std::fs::write(dir.path().join(FILE_NAME), &file).unwrap();
        check_slots(&mut r, dir.path(), 8);
        std::fs::write(dir.path().join(FILE_NAME), b"short").unwrap();
        check_slots(&mut r, dir.path(), 8);
        let l = r.lines();
        assert!(
            l[0].starts_with("ok") && l[0].contains("creates it"),
            "{l:?}"
        );
        assert!(
            l[1].starts_with("ok") && l[1].contains("2 slots, 1 waiting"),
            "{l:?}"
        );
        assert!(
            l[2].starts_with("WARN") && l[2].contains("all 2 slots"),
            "{l:?}"
        );
        assert!(
            l[3].starts_with("WARN") && l[3].contains("cut short"),
            "{l:?}"
        );
        assert!(
            l[4].starts_with("FAIL") && l[4].contains("whole number"),
            "{l:?}"
        );
    }

    #[test]
    fn spool_checks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut r = Report::default();
        check_spool(&mut r, &spool);
        check_spool(&mut r, &dir.path().join("no/such/spool"));
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_spool(&mut r, &spool);
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
        check_spool(&mut r, &spool);
        let l = r.lines();
        assert!(
            l[0].starts_with("ok") && l[0].contains("creates it"),
            "{l:?}"
        );
        assert!(
            l[1].starts_with("FAIL") && l[1].contains("neither does its parent"),
            "{l:?}"
        );
        if nix::unistd::geteuid().is_root() {
            assert!(
                l[2].starts_with("WARN") && l[2].contains("mode 0755"),
                "{l:?}"
            );
            assert!(
                l[3].starts_with("FAIL") && l[3].contains("writable by group or others"),
                "{l:?}"
            );
        } else {
            assert!(l[2].contains("not root"), "{l:?}");
        }
    }
}
