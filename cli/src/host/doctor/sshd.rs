//! sshd's effective configuration (`sshd -T`): `UsePAM yes`, `TrustedUserCAKeys` holding
//! every current CA key, `RevokedKeys` naming a valid KRL that is as current as the CA's
//! and synced recently. The CA keys and KRL checks serve the module's `ca_keys=` and
//! `krl=` too.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use breakglass_proto::krl::Krl;

use super::args::DoctorArgs;
use super::daemon::DaemonView;
use super::files::{ownership_fix, ownership_problem, read_capped};
use super::report::Report;

/// Where the packages install the CA keys and the KRL (used in suggested fixes).
pub(super) const PACKAGED_CA_KEYS: &str = "/etc/ssh/breakglass_user_ca.pub";
pub(super) const PACKAGED_KRL: &str = "/etc/ssh/breakglass_revoked.krl";

/// Paths sshd uses, for the PAM checks.
#[derive(Debug, Default)]
pub(super) struct SshdPaths {
    pub(super) trusted: Option<PathBuf>,
    pub(super) revoked: Option<PathBuf>,
}

/// Parses `sshd -T` output: lower-case keyword → values (some keywords repeat).
fn parse_sshd_t(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.trim().to_owned());
    }
    map
}

fn sshd_effective(args: &DoctorArgs) -> Result<BTreeMap<String, Vec<String>>, String> {
    let shown = format!(
        "{} -T -f {}",
        args.sshd.display(),
        args.sshd_config.display()
    );
    let out = Command::new(&args.sshd)
        .arg("-T")
        .arg("-f")
        .arg(&args.sshd_config)
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            if err.is_empty() { "no message" } else { &err }
        ));
    }
    Ok(parse_sshd_t(&String::from_utf8_lossy(&out.stdout)))
}

fn first<'a>(map: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    map.get(key)
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "none")
}

pub(super) fn check_sshd(
    report: &mut Report,
    args: &DoctorArgs,
    daemon: &DaemonView,
    bg: &str,
    max_age: Duration,
) -> SshdPaths {
    const A: &str = "sshd";
    let cfg = args.sshd_config.display();
    let mut paths = SshdPaths::default();
    let map = match sshd_effective(args) {
        Ok(m) => m,
        Err(e) => {
            report.fail(
                A,
                format!("cannot read sshd's effective configuration: {e}"),
                format!(
                    "run host doctor as root, and fix what sshd reports (`{} -t -f {cfg}`)",
                    args.sshd.display()
                ),
            );
            return paths;
        }
    };
    match map.get("usepam").and_then(|v| v.first()).map(String::as_str) {
        Some("yes") => report.ok(A, "UsePAM yes".into()),
        other => report.fail(
            A,
            format!(
                "UsePAM is {}: sshd skips the PAM session stack, so pam_breakglass never runs",
                other.unwrap_or("not set")
            ),
            format!("set `UsePAM yes` in {cfg} (or install the breakglass sshd_config.d snippet) and reload sshd"),
        ),
    }

    match first(&map, "trustedusercakeys") {
        None => report.fail(
            A,
            "TrustedUserCAKeys is not set: sshd accepts no breakglass certificate".into(),
            format!(
                "{bg} ca-keys --out {PACKAGED_CA_KEYS}\nthen add `TrustedUserCAKeys {PACKAGED_CA_KEYS}` to {cfg} and reload sshd"
            ),
        ),
        Some(p) => {
            let p = PathBuf::from(p);
            check_ca_keys_file(report, A, "sshd", "TrustedUserCAKeys", &p, daemon, bg);
            paths.trusted = Some(p);
        }
    }

    match first(&map, "revokedkeys") {
        None => report.fail(
            A,
            "RevokedKeys is not set: sshd accepts revoked certificates until they expire".into(),
            format!(
                "{bg} host sync-krl --out {PACKAGED_KRL}{}\nthen add `RevokedKeys {PACKAGED_KRL}` to {cfg} and reload sshd",
                paths
                    .trusted
                    .as_ref()
                    .map_or(String::new(), |t| format!(" --ca-keys {}", t.display()))
            ),
        ),
        Some(p) => {
            let p = PathBuf::from(p);
            check_krl(
                report,
                A,
                "RevokedKeys",
                &p,
                paths.trusted.as_deref(),
                daemon,
                bg,
                max_age,
            );
            paths.revoked = Some(p);
        }
    }
    paths
}

/// Checks a file of CA keys (sshd's TrustedUserCAKeys or the module's ca_keys=) against
/// the CA's current keys.
pub(super) fn check_ca_keys_file(
    report: &mut Report,
    area: &'static str,
    who: &str,
    what: &str,
    path: &Path,
    daemon: &DaemonView,
    bg: &str,
) {
    let fix = format!("{bg} ca-keys --out {}", path.display());
    let text = match read_capped(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            report.fail(
                area,
                format!(
                    "CA key not trusted by {who}: {what} file {} cannot be read: {e}",
                    path.display()
                ),
                fix,
            );
            return;
        }
    };
    let keys = match crate::host::krl_sync::parse_ca_keys(&text, &path.display().to_string()) {
        Ok(k) => k,
        Err(e) => {
            report.fail(
                area,
                format!("CA key not trusted by {who}: the {what} file is not a list of keys: {e}"),
                fix,
            );
            return;
        }
    };
    if let Ok(meta) = std::fs::metadata(path)
        && let Some(p) = ownership_problem(&meta)
    {
        report.fail(
            area,
            format!("{what} file {} {p}", path.display()),
            ownership_fix(path),
        );
    }
    let Some(current) = &daemon.keys else {
        report.warn(
            area,
            format!(
                "{what} {} holds {} key(s); not compared with the CA's (daemon not reachable)",
                path.display(),
                keys.len()
            ),
            None,
        );
        return;
    };
    let mut missing = 0;
    for (key, fp, signing) in current {
        if !keys.iter().any(|k| k.key_data() == key.key_data()) {
            missing += 1;
            report.fail(
                area,
                format!(
                    "CA key not trusted by {who}: {fp} ({} key of the CA) is not in {} ({what})",
                    if *signing { "signing" } else { "published" },
                    path.display()
                ),
                fix.clone(),
            );
        }
    }
    if missing == 0 {
        report.ok(
            area,
            format!(
                "{what} {} holds the CA's {} current key(s)",
                path.display(),
                current.len()
            ),
        );
    }
}

/// Checks a KRL file: present, valid, root-owned, not older than the daemon's, synced
/// within `max_age`.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_krl(
    report: &mut Report,
    area: &'static str,
    what: &str,
    path: &Path,
    ca_keys: Option<&Path>,
    daemon: &DaemonView,
    bg: &str,
    max_age: Duration,
) {
    let fix = format!(
        "{bg} host sync-krl --out {}{}",
        path.display(),
        ca_keys.map_or(String::new(), |c| format!(" --ca-keys {}", c.display()))
    );
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.fail(
                area,
                format!(
                    "KRL missing: {} ({what}) does not exist; sshd refuses every public-key login while its RevokedKeys file is missing",
                    path.display()
                ),
                fix,
            );
            return;
        }
        Err(e) => {
            report.fail(
                area,
                format!("KRL missing: {} ({what}): {e}", path.display()),
                fix,
            );
            return;
        }
    };
    let krl = match read_capped(path)
        .map_err(|e| e.to_string())
        .and_then(|b| Krl::parse(&b).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => {
            report.fail(
                area,
                format!(
                    "KRL invalid: {} ({what}): {e}; sshd refuses every public-key login with it",
                    path.display()
                ),
                fix,
            );
            return;
        }
    };
    if let Some(p) = ownership_problem(&meta) {
        report.fail(
            area,
            format!("KRL {} ({what}) {p}", path.display()),
            ownership_fix(path),
        );
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    let age_shown = humantime::format_duration(Duration::from_secs(age.as_secs()));
    let mut fresh = true;
    if let Some(v) = daemon.krl_version
        && krl.version < v
    {
        fresh = false;
        report.fail(
            area,
            format!(
                "KRL stale: {} ({what}) is version {}, the CA serves version {v}: revocations since are not enforced here",
                path.display(),
                krl.version
            ),
            fix.clone(),
        );
    }
    if age > max_age {
        fresh = false;
        report.fail(
            area,
            format!(
                "KRL stale: {} ({what}) was last synced {age_shown} ago, more than the {} allowed (--krl-max-age, or the module's krl_max_age=)",
                path.display(),
                humantime::format_duration(max_age)
            ),
            format!("{fix}\nand check that breakglass-krl-sync.timer runs: systemctl status breakglass-krl-sync.timer"),
        );
    }
    if fresh {
        report.ok(
            area,
            format!(
                "{what} {} is a valid KRL, version {} ({} revoked serials){}, synced {age_shown} ago",
                path.display(),
                krl.version,
                krl.serial_count(),
                if daemon.krl_behind {
                    ", the newest the CA serves (which lacks revocations, see above)"
                } else if daemon.krl_version.is_some() {
                    ", as current as the CA's"
                } else {
                    ""
                }
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_t_output_parses() {
        let m = parse_sshd_t(
            "port 2222\nusepam yes\ntrustedusercakeys /etc/ssh/ca.pub\nrevokedkeys none\nhostkey /a\nhostkey /b\n",
        );
        assert_eq!(first(&m, "usepam"), Some("yes"));
        assert_eq!(first(&m, "trustedusercakeys"), Some("/etc/ssh/ca.pub"));
        assert_eq!(first(&m, "revokedkeys"), None);
        assert_eq!(m["hostkey"], ["/a", "/b"]);
    }
}
