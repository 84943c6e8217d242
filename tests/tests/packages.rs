//! The Debian packages on this machine: `scripts/build-debs` builds breakglass-ca,
//! breakglass and libpam-breakglass; `dpkg -i` installs them cleanly; the sshd_config.d
//! snippet is in place with a valid empty KRL, `sshd -t` passes, and a real sshd started
//! from the system configuration still accepts a plain-key login; `breakglass host
//! enable-pam` / `disable-pam` round-trip on a copy of /etc/pam.d/sshd; `dpkg -r` leaves
//! sshd able to accept logins; `dpkg -P` leaves the machine as it was.
//! Also by the book: lintian reports no error on any .deb (every warning is one
//! `packaging/deb/README.md` justifies); md5sums, changelog.Debian.gz and a DEP-5 copyright
//! generated from the crates compiled in; no host-wide sshd setting changed; the daemon run
//! as its user, then purge keeps its data with a note and the user owning it (no file of a
//! deleted user), and removes both once the data is gone.
//!
//! Root only (dpkg, useradd, sshd). The packages are purged on every exit path (a Drop
//! guard), and /etc/pam.d/sshd is restored should anything have changed it.
//! `BREAKGLASS_DEB_DIR=<dir>` installs the .debs found there instead of building them.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use breakglass_test_support::fs::file_names;
use breakglass_tests::sshd::{ClientKey, TestUser, require_root, ssh_command};
use breakglass_tests::{can_run, have, workspace};

const PACKAGES: [&str; 3] = ["libpam-breakglass", "breakglass", "breakglass-ca"];
const SNIPPET: &str = "/etc/ssh/sshd_config.d/breakglass.conf";
const KRL: &str = "/etc/ssh/breakglass_revoked.krl";
const CA_KEYS: &str = "/etc/ssh/breakglass_user_ca.pub";
const PAM_SSHD: &str = "/etc/pam.d/sshd";
/// The daemon's state directory (systemd's StateDirectory=; the test makes it as systemd would).
const CA_STATE: &str = "/var/lib/breakglass-ca";
/// A PAM service file the test creates (and removes) to check prerm's refusal.
const OTHER_PAM_SERVICE: &str = "/etc/pam.d/breakglass-e2e-other";

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}",
        o.status,
        text(&o)
    );
    text(&o)
}

/// Unpacked and configured (whatever dpkg's selection says).
fn installed(pkg: &str) -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", pkg])).stdout
        == b"installed"
}

fn known_to_dpkg(pkg: &str) -> bool {
    let o = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]));
    o.status.success() && !o.stdout.ends_with(b"not-installed")
}

fn mode(p: &str) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn owner(p: &str) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    (m.uid(), m.gid())
}

fn listing(dir: &str) -> Vec<String> {
    file_names(Path::new(dir))
}

/// Purges the packages and restores /etc/pam.d/sshd on every exit path.
struct Restore {
    pam_sshd: Vec<u8>,
    /// Whether /var/spool/breakglass existed before (records of a failed run are removed).
    spool_before: bool,
    /// Whether the recorder's group existed before (purge keeps the group it made).
    rec_group_before: bool,
}

fn group_exists(name: &str) -> bool {
    run(Command::new("getent").args(["group", name]))
        .status
        .success()
}

impl Drop for Restore {
    fn drop(&mut self) {
        // First: prerm refuses to remove the module while another service names it.
        let _ = std::fs::remove_file(OTHER_PAM_SERVICE);
        let left: Vec<&str> = PACKAGES.into_iter().filter(|p| known_to_dpkg(p)).collect();
        if !left.is_empty() {
            let o = Command::new("dpkg").arg("-P").args(&left).output();
            if let Ok(o) = o
                && !o.status.success()
            {
                eprintln!("cleanup: dpkg -P failed:\n{}", text(&o));
            }
        }
        if !self.spool_before {
            let _ = std::fs::remove_dir_all("/var/spool/breakglass");
        }
        // The daemon's data of this run (purge keeps it, and the user owning it).
        let _ = std::fs::remove_dir_all(CA_STATE);
        let _ = std::fs::remove_dir_all("/etc/breakglass-ca");
        if run(Command::new("getent").args(["passwd", "breakglass-ca"]))
            .status
            .success()
        {
            let _ = Command::new("deluser")
                .args(["--quiet", "--system", "breakglass-ca"])
                .output();
        }
        if run(Command::new("getent").args(["group", "breakglass-ca"]))
            .status
            .success()
        {
            let _ = Command::new("delgroup")
                .args(["--quiet", "--system", "breakglass-ca"])
                .output();
        }
        if !self.rec_group_before && group_exists("breakglass-rec") {
            let _ = Command::new("delgroup")
                .args(["--quiet", "--system", "breakglass-rec"])
                .output();
        }
        if std::fs::read(PAM_SSHD).ok().as_deref() != Some(self.pam_sshd.as_slice()) {
            eprintln!("cleanup: restoring {PAM_SSHD}");
            let _ = std::fs::write(PAM_SSHD, &self.pam_sshd);
        }
    }
}

/// sshd started from the system configuration on a loopback port; killed on drop.
struct SystemSshd {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl SystemSshd {
    fn start(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let log = dir.join(format!("{name}.log"));
            let child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-f", "/etc/ssh/sshd_config", "-o"])
                .arg(format!("Port={port}"))
                .args(["-o", "ListenAddress=127.0.0.1", "-o"])
                .arg(format!(
                    "PidFile={}",
                    dir.join(format!("{name}.pid")).display()
                ))
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start /usr/sbin/sshd");
            let mut s = SystemSshd { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return s;
                }
                if let Ok(Some(_)) = s.child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            last = s.log();
            drop(s);
        }
        panic!("sshd from /etc/ssh/sshd_config did not start:\n{last}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Logs in as `user` with `key` and runs `echo`; returns the output and whether it worked.
    fn login(&self, user: &str, key: &ClientKey) -> (bool, String) {
        let o = run(ssh_command(self.port, key)
            .arg(format!("{user}@127.0.0.1"))
            .args(["echo", "login-ok"]));
        let out = text(&o);
        (o.status.success() && out.contains("login-ok"), out)
    }

    fn assert_login(&self, user: &TestUser, key: &ClientKey, when: &str) {
        let (worked, out) = self.login(&user.name, key);
        assert!(
            worked,
            "{when}: a plain-key login to the system sshd failed:\n{out}\nsshd log:\n{}",
            self.log()
        );
    }
}

impl Drop for SystemSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the packages (or takes them from BREAKGLASS_DEB_DIR): paths of the three .debs.
fn debs() -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = if let Some(dir) = std::env::var_os("BREAKGLASS_DEB_DIR") {
        std::fs::read_dir(&dir)
            .expect("BREAKGLASS_DEB_DIR")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect()
    } else {
        // Its own target directory: the running `cargo test` holds the lock of target/.
        let target = workspace().join("target/deb-e2e");
        let out_dir = target.join("debs");
        let _ = std::fs::remove_dir_all(&out_dir);
        let out = ok(Command::new(workspace().join("scripts/build-debs"))
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(workspace())
            .stderr(Stdio::inherit()));
        out.lines()
            .map(str::trim)
            .filter(|l| l.ends_with(".deb"))
            .map(PathBuf::from)
            .collect()
    };
    for pkg in PACKAGES {
        assert_eq!(
            paths
                .iter()
                .filter(|p| p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_"))))
                .count(),
            1,
            "exactly one {pkg}_*.deb expected in {paths:?}"
        );
    }
    assert_eq!(paths.len(), 3, "{paths:?}");
    paths
}

fn sshd_t(when: &str) {
    let o = run(Command::new("/usr/sbin/sshd").arg("-t"));
    assert!(o.status.success(), "{when}: sshd -t fails:\n{}", text(&o));
}

fn effective_sshd_config() -> String {
    ok(Command::new("/usr/sbin/sshd").arg("-T"))
}

/// Runs lintian on each .deb; fails on any error, and on any warning whose tag
/// `packaging/deb/README.md` does not name (listed and justified there). Returns the output.
fn lintian(debs: &[PathBuf]) -> String {
    let readme = std::fs::read_to_string(workspace().join("packaging/deb/README.md"))
        .expect("packaging/deb/README.md");
    let mut all = String::new();
    for deb in debs {
        let o = run(Command::new("lintian")
            .args(["--no-tag-display-limit", "--display-level", ">=warning"])
            .arg(deb));
        let out = text(&o);
        eprintln!("lintian {}:\n{out}", deb.display());
        // lintian exits 2 when it could not check at all.
        assert_ne!(
            o.status.code(),
            Some(2),
            "lintian could not check {}:\n{out}",
            deb.display()
        );
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E: ")).collect();
        assert!(
            errors.is_empty(),
            "lintian errors in {}:\n{}",
            deb.display(),
            errors.join("\n")
        );
        for w in out.lines().filter(|l| l.starts_with("W: ")) {
            let tag = w.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                readme.contains(&format!("`{tag}`")),
                "lintian warning not justified in packaging/deb/README.md (name `{tag}` there and say why, or fix it):\n{w}"
            );
        }
        all.push_str(&out);
    }
    let errors = all.lines().filter(|l| l.starts_with("E: ")).count();
    let warnings = all.lines().filter(|l| l.starts_with("W: ")).count();
    eprintln!(
        "lintian: {} packages, {errors} errors, {warnings} warnings",
        debs.len()
    );
    all
}

/// Files under `dirs` whose owner has no passwd entry (left by a deleted user).
fn orphaned_files(dirs: &[&str]) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return;
        };
        let uid = m.uid().to_string();
        let gid = m.gid().to_string();
        let known = |db: &str, id: &str| {
            Command::new("getent")
                .args([db, id])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !known("passwd", &uid) || !known("group", &gid) {
            out.push(p.to_owned());
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(Path::new(d), &mut out);
    }
    out
}

/// Runs the installed daemon as its system user with a dev setup in its state directory
/// (as systemd would: StateDirectory= owned by the user, mode 0700) until it listens, then
/// stops it with SIGTERM. It leaves CA keys and an audit log owned by breakglass-ca.
fn run_daemon_as_its_user(dir: &Path) {
    let pw = ok(Command::new("getent").args(["passwd", "breakglass-ca"]));
    let fields: Vec<&str> = pw.trim().split(':').collect();
    let (uid, gid): (u32, u32) = (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    );
    ok(Command::new("install").args([
        "-d",
        "-o",
        "breakglass-ca",
        "-g",
        "breakglass-ca",
        "-m",
        "0700",
        CA_STATE,
    ]));
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = dir.join("daemon.log");
    let mut child = Command::new("/usr/bin/breakglass-ca")
        .args(["serve", "--dev", &format!("{CA_STATE}/dev"), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(CA_STATE)
        .env("HOME", CA_STATE)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("daemon log"))
        .spawn()
        .expect("start /usr/bin/breakglass-ca");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut up = false;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().expect("wait for the daemon");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        up,
        "the installed daemon did not listen as breakglass-ca:\n{log}"
    );
    assert!(
        status.success(),
        "the daemon exited with {status} on SIGTERM:\n{log}"
    );
    assert_eq!(owner(CA_STATE).0, uid);
}

#[test]
fn debian_packages_install_keep_sshd_working_and_remove_cleanly() {
    if !require_root("debian_packages_install_keep_sshd_working_and_remove_cleanly") {
        return;
    }
    let cargo_deb = have("cargo-deb")
        || std::env::var_os("HOME")
            .is_some_and(|h| Path::new(&h).join(".cargo/bin/cargo-deb").exists());
    if !can_run(
        "dpkg, dpkg-architecture, sshd, ssh and cargo-deb (scripts/install-deps)",
        have("dpkg") && have("dpkg-architecture") && have("ssh") && cargo_deb,
    ) {
        return;
    }
    // Never touch a real installation: this test purges what it installs.
    for p in PACKAGES {
        assert!(
            !known_to_dpkg(p),
            "{p} is already installed on this machine; this test installs and purges the breakglass packages, so run it elsewhere (or dpkg -P {p} first)"
        );
    }
    assert!(
        !run(Command::new("getent").args(["passwd", "breakglass-ca"]))
            .status
            .success(),
        "the user breakglass-ca exists already; this test removes it"
    );
    for f in [SNIPPET, KRL, CA_KEYS, CA_STATE, "/etc/breakglass-ca"] {
        assert!(
            !Path::new(f).exists(),
            "{f} already exists; this test would remove it when it purges the packages"
        );
    }
    let before_etc_ssh = listing("/etc/ssh");
    let before_sshd_d = listing("/etc/ssh/sshd_config.d");
    let before_pam_d = listing("/etc/pam.d");
    let spool_before = Path::new("/var/spool/breakglass").exists();
    let rec_group_before = group_exists("breakglass-rec");
    let pam_sshd = std::fs::read(PAM_SSHD).expect("read /etc/pam.d/sshd");
    let sshd_before = effective_sshd_config();
    let debs = debs();
    if can_run("lintian (scripts/install-deps)", have("lintian")) {
        lintian(&debs);
    }
    // md5sums: one line per regular file in the package, checked again after install.
    for deb in &debs {
        let sums = ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("md5sums"));
        assert!(
            sums.lines().count() > 3,
            "{}: md5sums:\n{sums}",
            deb.display()
        );
        assert!(
            sums.lines()
                .all(|l| l.len() > 34 && l.as_bytes()[32] == b' '),
            "{sums}"
        );
    }
    let _restore = Restore {
        pam_sshd: pam_sshd.clone(),
        spool_before,
        rec_group_before,
    };
    let dir = tempfile::tempdir().expect("tempdir");

    // --- install -------------------------------------------------------------------
    let out = ok(Command::new("dpkg").arg("-i").args(&debs));
    let install_out = out.clone();
    eprintln!("dpkg -i:\n{out}");
    for p in PACKAGES {
        assert!(installed(p), "{p} is not installed after dpkg -i:\n{out}");
    }
    assert!(!out.contains("warning"), "dpkg -i warned:\n{out}");
    assert!(
        out.contains("libpam-breakglass: created an empty revocation list"),
        "{out}"
    );
    assert!(out.contains("breakglass host enable-pam"), "{out}");

    let triplet = ok(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"))
        .trim()
        .to_owned();
    let module = format!("/usr/lib/{triplet}/security/pam_breakglass.so");
    for (path, want) in [
        ("/usr/bin/breakglass", 0o755),
        ("/usr/bin/breakglass-ca", 0o755),
        ("/usr/libexec/breakglass/breakglass-guard", 0o755),
        ("/usr/libexec/breakglass/breakglass-record", 0o2755),
        (module.as_str(), 0o644),
        ("/usr/lib/systemd/system/breakglass-ca.service", 0o644),
        ("/usr/lib/systemd/system/breakglass-krl-sync.timer", 0o644),
        ("/usr/lib/systemd/system/breakglass-krl-sync.service", 0o644),
        ("/usr/lib/systemd/system/breakglass-ship.timer", 0o644),
        ("/usr/lib/systemd/system/breakglass-renew.timer", 0o644),
        ("/usr/lib/systemd/system/breakglass-renew.service", 0o644),
        ("/usr/lib/tmpfiles.d/breakglass-revocation.conf", 0o644),
        ("/usr/share/man/man1/breakglass.1.gz", 0o644),
        ("/usr/share/man/man8/breakglass-ca.8.gz", 0o644),
        ("/usr/share/man/man8/pam_breakglass.8.gz", 0o644),
        ("/usr/share/man/man5/breakglass-ca.toml.5.gz", 0o644),
        ("/usr/share/man/man1/breakglass-ca-keys.1.gz", 0o644),
        ("/usr/share/bash-completion/completions/breakglass", 0o644),
        ("/usr/share/zsh/vendor-completions/_breakglass", 0o644),
        (
            "/usr/share/fish/vendor_completions.d/breakglass.fish",
            0o644,
        ),
        (
            "/usr/share/doc/breakglass-ca/examples/breakglass-ca.example.toml",
            0o644,
        ),
        (SNIPPET, 0o644),
        (KRL, 0o644),
        (CA_KEYS, 0o644),
        ("/var/spool/breakglass", 0o710),
        ("/var/spool/breakglass/recordings", 0o2770),
        ("/etc/breakglass-ca", 0o750),
    ] {
        assert_eq!(mode(path), want, "mode of {path}");
        // The recorder and the recordings are the recorder group's (set-gid, see
        // pam/src/recorder.rs); everything else outside /etc/breakglass-ca is root's.
        if path.ends_with("breakglass-record") || path.starts_with("/var/spool/breakglass") {
            let group = nix::unistd::Group::from_name("breakglass-rec")
                .unwrap()
                .expect("the package created the group breakglass-rec");
            assert_eq!(owner(path), (0, group.gid.as_raw()), "owner of {path}");
        } else if !path.starts_with("/etc/breakglass-ca") {
            assert_eq!(owner(path), (0, 0), "owner of {path}");
        }
    }
    // The module is an ELF shared object exporting the PAM entry points.
    let nm = ok(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&module));
    assert!(nm.contains("pam_sm_open_session"), "{nm}");
    // The snippet is the packaged one, and sshd reads it.
    assert_eq!(
        std::fs::read_to_string(SNIPPET).expect("snippet"),
        std::fs::read_to_string(workspace().join("packaging/sshd/breakglass.conf")).expect("src")
    );
    let effective = effective_sshd_config();
    assert!(
        effective.contains(&format!("revokedkeys {KRL}\n")),
        "{effective}"
    );
    assert!(
        effective.contains(&format!("trustedusercakeys {CA_KEYS}\n")),
        "{effective}"
    );
    // An empty but valid KRL.
    let krl = ok(Command::new("ssh-keygen").args(["-Q", "-l", "-f", KRL]));
    assert!(krl.contains("# KRL version"), "{krl}");
    // The daemon's system user.
    let pw = ok(Command::new("getent").args(["passwd", "breakglass-ca"]));
    let fields: Vec<&str> = pw.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "breakglass-ca is not a system user: {pw}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{pw}");
    assert_eq!(owner("/etc/breakglass-ca").0, 0);
    // The client command's page is in section 1, with the client; none in section 8.
    assert!(!Path::new("/usr/share/man/man8/breakglass-ca-keys.8.gz").exists());
    // The installed bash completion is the binary's and loads as bash-completion loads it.
    let out = ok(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/breakglass && complete -p breakglass",
    ]));
    assert!(out.contains("-F _breakglass breakglass"), "{out}");
    sshd_t("after dpkg -i");
    // No host-wide sshd setting changed: the effective configuration differs only in the
    // snippet's two files (UsePAM is already Debian's default).
    let sshd_after = effective_sshd_config();
    let after: Vec<&str> = sshd_after.lines().collect();
    let before: Vec<&str> = sshd_before.lines().collect();
    let changed: Vec<&&str> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        changed.iter().all(|l| l.starts_with("revokedkeys ")
            || l.starts_with("trustedusercakeys ")
            || l.starts_with("usepam ")),
        "the package changed host-wide sshd settings: {changed:?}"
    );
    // dpkg --verify: every installed file matches the package's md5sums.
    let verify = ok(Command::new("dpkg").arg("--verify").args(PACKAGES));
    assert!(verify.trim().is_empty(), "dpkg --verify:\n{verify}");
    for p in PACKAGES {
        let version = ok(Command::new("dpkg-query").args(["-W", "-f=${Version}", p]));
        // changelog.Debian.gz: gzipped, its latest entry is this version.
        let changelog = format!("/usr/share/doc/{p}/changelog.Debian.gz");
        assert_eq!(mode(&changelog), 0o644, "{changelog}");
        let top = ok(Command::new("zcat").arg(&changelog));
        assert!(
            top.starts_with(&format!("{p} ({version}) ")),
            "{changelog} does not start with this version ({version}):\n{top}"
        );
        // A DEP-5 copyright file generated from the crates compiled in.
        let copyright =
            std::fs::read_to_string(format!("/usr/share/doc/{p}/copyright")).expect("copyright");
        assert!(
            copyright.starts_with(
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            ),
            "{copyright}"
        );
        assert!(copyright.contains(
            "\nFiles: *\nCopyright: 2026, breakglass contributors\nLicense: Apache-2.0\n"
        ));
        assert!(
            copyright.contains("\nFiles: vendor/ssh-key-"),
            "{p}: {copyright}"
        );
        assert!(
            copyright.contains("\nLicense: MIT\n Permission is hereby granted"),
            "{p}"
        );
        // Only what is compiled in: the PAM module and its guard link no tokio.
        assert_eq!(
            copyright.contains("\nFiles: vendor/tokio-"),
            p != "libpam-breakglass",
            "{p}: tokio in its copyright file"
        );
        // cargo-deb's systemd snippets went into the maintainer scripts.
        for script in ["postinst", "prerm", "postrm"] {
            let body = std::fs::read_to_string(format!("/var/lib/dpkg/info/{p}.{script}"))
                .unwrap_or_default();
            assert!(
                !body.contains("#DEBHELPER#"),
                "{p}.{script} kept #DEBHELPER#"
            );
        }
    }
    let postinst =
        std::fs::read_to_string("/var/lib/dpkg/info/breakglass-ca.postinst").expect("postinst");
    assert!(
        postinst.contains("deb-systemd-helper enable breakglass-ca.service"),
        "{postinst}"
    );
    let postinst =
        std::fs::read_to_string("/var/lib/dpkg/info/libpam-breakglass.postinst").expect("postinst");
    assert!(
        postinst.contains("deb-systemd-helper update-state breakglass-krl-sync.timer"),
        "{postinst}"
    );
    // Enabled: the daemon's unit (idle until configured); not enabled: the host units.
    let wants = |unit: &str| -> Vec<PathBuf> {
        std::fs::read_dir("/etc/systemd/system")
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join(unit))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect()
    };
    assert_eq!(
        wants("breakglass-ca.service").len(),
        1,
        "breakglass-ca.service not enabled"
    );
    for unit in [
        "breakglass-krl-sync.timer",
        "breakglass-ship.timer",
        "breakglass-watch-revocations.service",
        "breakglass-renew.timer",
    ] {
        assert_eq!(
            wants(unit),
            Vec::<PathBuf>::new(),
            "{unit} enabled by the package"
        );
    }
    // The host.toml example, named by postinst.
    assert_eq!(
        mode("/usr/share/doc/libpam-breakglass/examples/host.toml"),
        0o644
    );
    assert!(
        install_out.contains("/usr/share/doc/libpam-breakglass/examples/host.toml"),
        "{install_out}"
    );

    // --- the daemon runs as its user and leaves data in its state directory ----------
    run_daemon_as_its_user(dir.path());

    // --- sshd from the system configuration still accepts logins -------------------
    let user = TestUser::create();
    let (key, public) = ClientKey::plain(dir.path(), "plain");
    let home = PathBuf::from(format!("/home/{}", user.name));
    let ssh_dir = home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).expect("mkdir .ssh");
    std::fs::write(ssh_dir.join("authorized_keys"), format!("{public}\n"))
        .expect("write authorized_keys");
    ok(Command::new("chown")
        .arg("-R")
        .arg(format!("{0}:{0}", user.name))
        .arg(&ssh_dir));
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    {
        let sshd = SystemSshd::start(dir.path(), "installed");
        sshd.assert_login(&user, &key, "with the snippet and the empty KRL");
        // A missing TrustedUserCAKeys file only means no CA is trusted: sshd does not
        // refuse other logins (the package still creates a placeholder).
        let aside = dir.path().join("ca.pub.aside");
        std::fs::rename(CA_KEYS, &aside).expect("move CA keys aside");
        let (worked, out) = sshd.login(&user.name, &key);
        std::fs::rename(&aside, CA_KEYS).expect("move CA keys back");
        assert!(worked, "without {CA_KEYS}:\n{out}\n{}", sshd.log());
    }

    // --- enable-pam / disable-pam on a copy of /etc/pam.d/sshd ----------------------
    let copy = dir.path().join("sshd");
    std::fs::write(&copy, &pam_sshd).expect("copy pam file");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let bg = |args: &[&str]| {
        ok(Command::new("/usr/bin/breakglass")
            .args(["host"])
            .args(args)
            .arg("--pam-file")
            .arg(&copy))
    };
    // With the placeholder CA keys file the module would deny every session: refused.
    let o = run(Command::new("/usr/bin/breakglass").args(["host", "enable-pam"]));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(
        out.contains(&format!("the CA keys file {CA_KEYS} holds no key")),
        "{out}"
    );
    assert!(out.contains("/etc/pam.d/sshd was not changed"), "{out}");
    assert_eq!(std::fs::read(PAM_SSHD).expect("pam"), pam_sshd);
    // A CA key in place (as `breakglass ca-keys --out` would write it), then enable.
    let ca_pub = breakglass_tests::ssh_keygen(dir.path(), "ca", &["-t", "ed25519"]);
    std::fs::copy(&ca_pub, CA_KEYS).expect("install CA key");
    std::fs::set_permissions(CA_KEYS, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let dry = bg(&["enable-pam", "--dry-run"]);
    assert!(dry.contains("+session    required     pam_breakglass.so ca_keys=/etc/ssh/breakglass_user_ca.pub krl=/etc/ssh/breakglass_revoked.krl"), "{dry}");
    assert!(dry.contains("dry run, nothing written"), "{dry}");
    assert_eq!(std::fs::read(&copy).expect("copy"), pam_sshd);
    let enabled = bg(&["enable-pam"]);
    eprintln!("enable-pam: {enabled}");
    assert!(enabled.starts_with("enabled: added to "), "{enabled}");
    let now = std::fs::read_to_string(&copy).expect("copy");
    let lines: Vec<&str> = now.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("pam_breakglass.so"))
        .expect("module line");
    assert!(lines[at - 1].contains("pam_loginuid.so"), "{now}");
    let env = lines
        .iter()
        .position(|l| l.contains("pam_env.so") && !l.starts_with('#'))
        .expect("pam_env");
    let cs = lines
        .iter()
        .position(|l| l.starts_with("@include common-session"))
        .expect("common-session");
    assert!(at < cs && at < env, "{now}");
    assert_eq!(mode(copy.to_str().expect("utf-8")), 0o644);
    let again = bg(&["enable-pam"]);
    assert!(again.starts_with("already enabled: "), "{again}");
    let disabled = bg(&["disable-pam"]);
    eprintln!("disable-pam: {disabled}");
    assert!(
        disabled.starts_with("disabled: removed pam_breakglass.so from "),
        "{disabled}"
    );
    assert_eq!(std::fs::read(&copy).expect("copy"), pam_sshd);
    let backup = dir.path().join("sshd.breakglass-bak");
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), now);
    assert!(bg(&["disable-pam"]).starts_with("already disabled: "));
    assert_eq!(
        std::fs::read(PAM_SSHD).expect("pam"),
        pam_sshd,
        "{PAM_SSHD} changed"
    );

    // --- postinst: a snippet sshd rejects is taken out again ------------------------
    let src = "/usr/share/libpam-breakglass/breakglass.conf";
    let stamp = "/var/lib/libpam-breakglass/sshd-snippet.sha256";
    let good = std::fs::read(src).expect("packaged snippet");
    std::fs::remove_file(SNIPPET).expect("rm snippet");
    std::fs::remove_file(stamp).expect("rm stamp");
    let mut bad = good.clone();
    bad.extend_from_slice(b"NoSuchSshdKeyword yes\n");
    std::fs::write(src, &bad).expect("break the packaged snippet");
    let postinst = "/var/lib/dpkg/info/libpam-breakglass.postinst";
    let o = run(Command::new(postinst).args(["configure", ""]));
    std::fs::write(src, &good).expect("restore the packaged snippet");
    let out = text(&o);
    assert!(
        !o.status.success(),
        "postinst accepted a snippet sshd rejects:\n{out}"
    );
    assert!(
        out.contains(
            "sshd -t rejects the configuration with /etc/ssh/sshd_config.d/breakglass.conf"
        ),
        "{out}"
    );
    assert!(out.contains("the snippet was taken out again"), "{out}");
    assert!(!Path::new(SNIPPET).exists(), "the rejected snippet stayed");
    sshd_t("after the rolled-back snippet");
    // Configuring again (as on an upgrade) keeps the installed KRL: it may hold revocations.
    let synced = dir.path().join("synced.krl");
    ok(Command::new("ssh-keygen")
        .args(["-q", "-k", "-z", "7", "-f"])
        .arg(&synced));
    std::fs::copy(&synced, KRL).expect("install a KRL of version 7");
    let out = ok(Command::new(postinst).args(["configure", "0.1.0-1"]));
    assert!(
        out.contains("installed /etc/ssh/sshd_config.d/breakglass.conf"),
        "{out}"
    );
    assert!(Path::new(SNIPPET).exists());
    let krl = ok(Command::new("ssh-keygen").args(["-Q", "-l", "-f", KRL]));
    assert!(
        krl.contains("# KRL version 7"),
        "postinst replaced the KRL:\n{krl}"
    );

    // --- the module in the real sshd stack: plain-key logins still work, and dpkg -r
    //     takes it out of /etc/pam.d/sshd (a required line to a missing .so would fail
    //     every login) -----------------------------------------------------------------
    let enabled = ok(Command::new("/usr/bin/breakglass").args(["host", "enable-pam"]));
    assert!(
        enabled.starts_with("enabled: added to /etc/pam.d/sshd"),
        "{enabled}"
    );
    {
        let sshd = SystemSshd::start(dir.path(), "module");
        sshd.assert_login(&user, &key, "with pam_breakglass.so in /etc/pam.d/sshd");
    }
    // Another PAM service naming the module blocks the removal, with the file named.
    let other = OTHER_PAM_SERVICE;
    std::fs::write(other, "session optional pam_breakglass.so ca_keys=/x\n").expect("write other");
    let o = run(Command::new("dpkg").args(["-r", "libpam-breakglass"]));
    std::fs::remove_file(other).expect("rm other");
    let out = text(&o);
    assert!(
        !o.status.success(),
        "dpkg -r removed a module still in use:\n{out}"
    );
    assert!(
        out.contains(&format!("pam_breakglass.so is still used in: {other}")),
        "{out}"
    );
    assert!(installed("libpam-breakglass") && Path::new(&module).exists());

    // --- remove: the snippet goes, the KRL stays until purge, logins keep working ----
    let out = ok(Command::new("dpkg").arg("-r").args(PACKAGES));
    assert!(out.contains("removed pam_breakglass.so from /etc/pam.d/sshd (backup: /etc/pam.d/sshd.breakglass-bak)"), "{out}");
    assert_eq!(
        std::fs::read(PAM_SSHD).expect("pam"),
        pam_sshd,
        "prerm left {PAM_SSHD} changed"
    );
    eprintln!("dpkg -r:\n{out}");
    assert!(!Path::new(SNIPPET).exists(), "the snippet survived dpkg -r");
    assert!(!Path::new(&module).exists(), "the module survived dpkg -r");
    assert!(Path::new(KRL).exists(), "the KRL must stay until purge");
    sshd_t("after dpkg -r");
    assert!(!effective_sshd_config().contains("breakglass"));
    {
        let sshd = SystemSshd::start(dir.path(), "removed");
        sshd.assert_login(&user, &key, "after dpkg -r");
    }

    // --- purge: the machine is as before ----------------------------------------------
    // Every `breakglass host ship` run leaves its lock file in the spool: a spool with
    // only that holds no records, and purge removes it.
    std::fs::write("/var/spool/breakglass/.ship.lock", b"").expect("ship lock");
    let left: Vec<&str> = PACKAGES.into_iter().filter(|p| known_to_dpkg(p)).collect();
    let out = ok(Command::new("dpkg").arg("-P").args(&left));
    eprintln!("dpkg -P:\n{out}");
    for p in PACKAGES {
        assert!(!known_to_dpkg(p), "{p} still known to dpkg after purge");
    }
    assert_eq!(listing("/etc/ssh"), before_etc_ssh, "/etc/ssh after purge");
    assert_eq!(listing("/etc/ssh/sshd_config.d"), before_sshd_d);
    assert_eq!(listing("/etc/pam.d"), before_pam_d);
    assert_eq!(std::fs::read(PAM_SSHD).expect("pam"), pam_sshd);
    // The daemon's data is kept, said so, and so is the user owning it.
    assert!(
        out.contains(&format!("breakglass-ca: kept {CA_STATE} (it is not empty")),
        "{out}"
    );
    assert!(
        out.contains("breakglass-ca: kept the system user breakglass-ca: it owns files in /var/lib/breakglass-ca; after removing them: deluser --system breakglass-ca"),
        "{out}"
    );
    assert!(Path::new(&format!("{CA_STATE}/dev")).is_dir());
    let watched = [
        CA_STATE,
        "/etc/breakglass-ca",
        "/var/lib/breakglass",
        "/var/spool/breakglass",
    ];
    assert_eq!(
        orphaned_files(&watched),
        Vec::<PathBuf>::new(),
        "files of a deleted user after purge"
    );
    // Once the data is gone, purging again removes the user and group.
    std::fs::remove_dir_all(CA_STATE).expect("remove the kept data");
    let ca_deb = debs
        .iter()
        .find(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("breakglass-ca_"))
        })
        .expect("breakglass-ca .deb");
    ok(Command::new("dpkg").arg("-i").arg(ca_deb));
    let out = ok(Command::new("dpkg").args(["-P", "breakglass-ca"]));
    assert!(!out.contains("kept"), "{out}");
    assert_eq!(orphaned_files(&watched), Vec::<PathBuf>::new());
    for gone in [
        "/etc/breakglass-ca",
        "/var/lib/breakglass-ca",
        "/var/lib/libpam-breakglass",
        "/var/lib/breakglass",
        "/etc/systemd/system/multi-user.target.wants/breakglass-ca.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left behind by dpkg -P");
    }
    assert_eq!(
        Path::new("/var/spool/breakglass").exists(),
        spool_before,
        "/var/spool/breakglass after purge"
    );
    assert!(
        !run(Command::new("getent").args(["passwd", "breakglass-ca"]))
            .status
            .success(),
        "user breakglass-ca left behind"
    );
    assert!(
        !run(Command::new("getent").args(["group", "breakglass-ca"]))
            .status
            .success(),
        "group breakglass-ca left behind"
    );
    sshd_t("after dpkg -P");
    let sshd = SystemSshd::start(dir.path(), "purged");
    sshd.assert_login(&user, &key, "after dpkg -P");
}
