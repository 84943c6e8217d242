//! `breakglass host doctor` against a real host set-up in a temporary directory: a real
//! daemon over mTLS (the host's `host://localhost` identity), a real `sshd -T` on a
//! config naming the CA keys and the KRL fetched from that daemon, a PAM service file with
//! the absolute path of the built `pam_breakglass.so` (loaded with dlopen), the built
//! guard and a spool. The complete set-up passes; each fault is named by its exact line
//! and fails the run (exit 78).
//!
//! Needs root (`sshd -T` reads the host key; the file checks expect root-owned files).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use breakglass_cli::commands;
use breakglass_cli::host::doctor::{self, DoctorArgs, EXIT_PROBLEMS, Level, Report};
use breakglass_cli::host::krl_sync::{self, SyncKrlArgs};
use breakglass_cli::revoke;
use breakglass_cli::settings::{Overrides, Target};
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::{self, ADMIN, revoke_request};
use breakglass_tests::sshd::{pam_artifacts, require_root};
use breakglass_tests::{can_run, ssh_keygen};

const SECURITY: &str = "/lib/x86_64-linux-gnu/security";
const SSHD: &str = "/usr/sbin/sshd";

/// A host set-up in a temporary directory, as the demo builds it (pam_wrapper layout).
struct Host {
    dir: tempfile::TempDir,
    daemon: TestDaemon,
    host: Target,
    sshd: PathBuf,
    sshd_config: PathBuf,
    pam_service: PathBuf,
    trusted: PathBuf,
    krl: PathBuf,
    spool: PathBuf,
}

fn overrides(t: &Target) -> Overrides {
    match t {
        Target::Tls {
            url,
            fallbacks,
            ca_cert,
            cert,
            key,
            server_name,
        } => Overrides {
            config: None,
            server: Some(url.clone()),
            fallbacks: fallbacks.clone(),
            ca_cert: Some(ca_cert.clone()),
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            server_name: server_name.clone(),
        },
        Target::Unix(p) => Overrides {
            server: Some(format!("unix://{}", p.display())),
            ..Default::default()
        },
    }
}

fn runnable(test: &str) -> bool {
    require_root(test)
        && can_run("OpenSSH server (/usr/sbin/sshd)", Path::new(SSHD).exists())
        && can_run(
            "PAM modules in /lib/x86_64-linux-gnu/security",
            Path::new(SECURITY).join("pam_loginuid.so").exists(),
        )
}

impl Host {
    /// The host set-up, or `None` (after a loud SKIPPED line) when `test` cannot run here.
    async fn for_test(test: &str) -> Option<Self> {
        if runnable(test) {
            Some(Self::new().await)
        } else {
            None
        }
    }

    async fn new() -> Self {
        let artifacts = tokio::task::spawn_blocking(pam_artifacts).await.unwrap();
        let daemon = revocation::daemon().await;
        let host = daemon.target("host");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all("/run/sshd").unwrap();
        std::fs::create_dir(d.join("pam")).unwrap();
        let spool = d.join("spool");
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
        let sshd = d.join("sshd-doctor");
        std::fs::copy(SSHD, &sshd).unwrap();
        ssh_keygen(d, "host_key", &["-t", "ed25519"]);
        let trusted = d.join("ca.pub");
        let keys = commands::ca_keys(&host).await.unwrap();
        std::fs::write(&trusted, format!("{}\n", keys.join("\n"))).unwrap();
        let krl = d.join("revoked.krl");
        let h = Self {
            sshd_config: d.join("sshd_config"),
            pam_service: d.join("pam/sshd-doctor"),
            dir,
            daemon,
            host,
            sshd,
            trusted,
            krl,
            spool,
        };
        h.sync_krl().await;
        h.write_sshd_config(&h.trusted);
        h.write_pam(&h.pam_lines(&artifacts.module, &artifacts.guard).join("\n"));
        h
    }

    fn write_sshd_config(&self, trusted: &Path) {
        let d = self.dir.path();
        std::fs::write(
            &self.sshd_config,
            format!(
                "Port 2\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM yes\n\
                 TrustedUserCAKeys {}\nRevokedKeys {}\nAuthorizedKeysFile none\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                d.join("host_key").display(),
                d.join("sshd.pid").display(),
                trusted.display(),
                self.krl.display()
            ),
        )
        .unwrap();
    }

    /// The full stack of the demo's PAM service, the module after pam_loginuid.
    fn pam_lines(&self, module: &Path, guard: &Path) -> Vec<String> {
        vec![
            format!("auth required {SECURITY}/pam_deny.so"),
            format!("account required {SECURITY}/pam_unix.so"),
            format!("session required {SECURITY}/pam_loginuid.so"),
            format!(
                "session required {} ca_keys={} krl={} guard={} spool={}",
                module.display(),
                self.trusted.display(),
                self.krl.display(),
                guard.display(),
                self.spool.display()
            ),
            format!("session required {SECURITY}/pam_unix.so"),
            format!("session required {SECURITY}/pam_env.so"),
        ]
    }

    fn write_pam(&self, text: &str) {
        std::fs::write(&self.pam_service, format!("{text}\n")).unwrap();
    }

    /// Rewrites the PAM service: the full stack with `edit` applied to its lines.
    fn edit_pam(&self, edit: impl FnOnce(&mut Vec<String>)) {
        let a = pam_artifacts();
        let mut lines = self.pam_lines(&a.module, &a.guard);
        edit(&mut lines);
        self.write_pam(&lines.join("\n"));
    }

    async fn sync_krl(&self) {
        krl_sync::sync(
            &self.host,
            &SyncKrlArgs {
                out: self.krl.clone(),
                ca_keys: Some(self.trusted.clone()),
                state: None,
                witness: self.daemon.witness_args("host", None),
            },
        )
        .await
        .expect("KRL synced");
    }

    fn args(&self) -> DoctorArgs {
        DoctorArgs {
            sshd: self.sshd.clone(),
            sshd_config: self.sshd_config.clone(),
            pam_service: Some(self.pam_service.clone()),
            module_dir: vec![],
            krl_max_age: None,
            guard: None,
            spool: None,
            witness: self.daemon.witness_args("host", None),
        }
    }

    async fn doctor_with(&self, args: &DoctorArgs) -> Report {
        doctor::check(args, &overrides(&self.host)).await
    }

    async fn doctor(&self) -> Report {
        self.doctor_with(&self.args()).await
    }
}

/// Asserts the run fails (exit 78) and that the first line starting with `start` is
/// `expected`.
fn assert_fails_exactly(r: &Report, start: &str, expected: &str) {
    assert_eq!(assert_fails_with(r, start), expected);
}

/// Asserts that the report names `fix`.
fn assert_fix(r: &Report, fix: &str) {
    assert!(
        r.render().contains(fix),
        "{fix:?} missing from:\n{}",
        r.render()
    );
}

/// Asserts the run fails (exit 78) and that one FAIL line starts with `start`; returns it.
fn assert_fails_with(r: &Report, start: &str) -> String {
    assert_eq!(r.exit_code(), EXIT_PROBLEMS, "{}", r.render());
    let e = r.clone().into_result().unwrap_err();
    assert_eq!(e.exit_code(), EXIT_PROBLEMS);
    r.lines()
        .into_iter()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{}", r.render()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_complete_host_setup() {
    let Some(h) = Host::for_test("doctor_passes_on_a_complete_host_setup").await else {
        return;
    };
    let r = h.doctor().await;
    let text = r.render();
    assert_eq!(r.exit_code(), 0, "{text}");
    assert!(r.clone().into_result().is_ok());
    assert!(
        r.findings.iter().all(|f| f.level == Level::Ok),
        "not every line is ok:\n{text}"
    );
    for needle in [
        "ok   daemon breakglass-ca at https://127.0.0.1:",
        "reachable as host://localhost (via mtls)",
        "within its 120s backdating window",
        "ok   sshd   UsePAM yes",
        &format!(
            "ok   sshd   TrustedUserCAKeys {} holds the CA's 1 current key(s)",
            h.trusted.display()
        ),
        &format!(
            "ok   sshd   RevokedKeys {} is a valid KRL, version",
            h.krl.display()
        ),
        &format!(
            "ok   pam    PAM line {}:4: after pam_loginuid.so, before pam_env.so",
            h.pam_service.display()
        ),
        "ok   pam    module options parse (4 given)",
        "loads and exports pam_sm_open_session",
        &format!(
            "ok   pam    ca_keys= {} holds the CA's 1 current key(s)",
            h.trusted.display()
        ),
        "ok   pam    module krl= is sshd's RevokedKeys",
        "is executable and root-owned",
        &format!(
            "ok   pam    spool {} is writable, mode 0700",
            h.spool.display()
        ),
        "ok   witness the CA's audit log extends the checkpoint this host saw",
        "open session(s) registered in /run/breakglass/sessions, each with a live guard",
        "host doctor: 14 ok, 0 WARN, 0 FAIL",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    // The writability probe leaves nothing behind.
    assert_eq!(std::fs::read_dir(&h.spool).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_the_recorders_group_passes_through_is_fine_and_a_listable_one_is_not() {
    let Some(h) = Host::for_test("a_spool_the_recorders_group_passes_through_is_fine").await else {
        return;
    };
    // The packaged layout for session recording: root:breakglass-rec 0710 (here group root).
    std::fs::set_permissions(&h.spool, std::fs::Permissions::from_mode(0o710)).unwrap();
    let r = h.doctor().await;
    let text = r.render();
    assert!(
        text.contains(&format!(
            "ok   pam    spool {} is writable, mode 0710: group root may only pass through it (the layout for session recording)",
            h.spool.display()
        )),
        "{text}"
    );
    assert_eq!(r.count(Level::Warn), 0, "{text}");
    std::fs::set_permissions(&h.spool, std::fs::Permissions::from_mode(0o750)).unwrap();
    let r = h.doctor().await;
    let text = r.render();
    assert!(
        text.contains(&format!(
            "WARN pam    spool {} has mode 0750: session records are readable by others",
            h.spool.display()
        )),
        "{text}"
    );
    assert_eq!(r.count(Level::Warn), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pam_line_missing_is_named() {
    let Some(h) = Host::for_test("pam_line_missing_is_named").await else {
        return;
    };
    h.edit_pam(|lines| {
        lines.remove(3);
    });
    let r = h.doctor().await;
    assert_fails_exactly(
        &r,
        "FAIL pam    PAM line missing: ",
        &format!(
            "FAIL pam    PAM line missing: no `session ... pam_breakglass.so` line in {}: breakglass sessions are not re-checked, recorded or ended at expiry",
            h.pam_service.display()
        ),
    );
    assert_fix(&r, "fix: breakglass host enable-pam");
    assert_eq!(r.count(Level::Fail), 1, "{}", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pam_line_after_pam_env_is_named() {
    let Some(h) = Host::for_test("pam_line_after_pam_env_is_named").await else {
        return;
    };
    h.edit_pam(|lines| {
        let env = lines.remove(5);
        lines.insert(3, env);
    });
    let r = h.doctor().await;
    assert_fails_exactly(
        &r,
        "FAIL pam    PAM line after pam_env: ",
        &format!(
            "FAIL pam    PAM line after pam_env: pam_breakglass.so (line 5 of {}) comes after pam_env.so (line 4): a user's ~/.pam_environment can then replace the certificate the module checks",
            h.pam_service.display()
        ),
    );
    assert_eq!(r.count(Level::Fail), 1, "{}", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krl_missing_is_named() {
    let Some(h) = Host::for_test("krl_missing_is_named").await else {
        return;
    };
    std::fs::remove_file(&h.krl).unwrap();
    let r = h.doctor().await;
    assert_fails_exactly(
        &r,
        "FAIL sshd   KRL missing: ",
        &format!(
            "FAIL sshd   KRL missing: {} (RevokedKeys) does not exist; sshd refuses every public-key login while its RevokedKeys file is missing",
            h.krl.display()
        ),
    );
    assert_fix(
        &r,
        &format!(
            "fix: breakglass host sync-krl --out {} --ca-keys {}",
            h.krl.display(),
            h.trusted.display()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krl_older_than_the_daemons_is_stale_until_synced() {
    let Some(h) = Host::for_test("krl_older_than_the_daemons_is_stale_until_synced").await else {
        return;
    };
    let installed = breakglass_proto::krl::Krl::parse(&std::fs::read(&h.krl).unwrap())
        .unwrap()
        .version;
    // A revocation after the sync: the daemon now serves a newer KRL.
    let keys = tempfile::tempdir().unwrap();
    let g = revocation::issue(
        &h.daemon.target("sre"),
        keys.path(),
        "k",
        "alice",
        "localhost",
        600,
    )
    .await;
    let admin = h.daemon.new_client("admin", ADMIN);
    let selector = Selector::GrantId(g.grant_id.clone());
    revoke::revoke(&admin, revoke_request(selector, "INC-7 doctor test"))
        .await
        .unwrap();
    let served = krl_sync::fetch(&h.host).await.unwrap().version;
    assert!(served > installed);
    let r = h.doctor().await;
    assert_fails_exactly(
        &r,
        "FAIL sshd   KRL stale: ",
        &format!(
            "FAIL sshd   KRL stale: {} (RevokedKeys) is version {installed}, the CA serves version {served}: revocations since are not enforced here",
            h.krl.display()
        ),
    );
    // The fix it names works.
    h.sync_krl().await;
    let r = h.doctor().await;
    assert_eq!(r.exit_code(), 0, "{}", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krl_not_synced_for_too_long_is_stale() {
    let Some(h) = Host::for_test("krl_not_synced_for_too_long_is_stale").await else {
        return;
    };
    std::fs::File::options()
        .write(true)
        .open(&h.krl)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 3600 + 5))
        .unwrap();
    let r = h.doctor().await;
    assert_fails_exactly(
        &r,
        "FAIL sshd   KRL stale: ",
        &format!(
            "FAIL sshd   KRL stale: {} (RevokedKeys) was last synced 2h 5s ago, more than the 1h allowed (--krl-max-age, or the module's krl_max_age=)",
            h.krl.display()
        ),
    );
    // A longer limit accepts it.
    let mut args = h.args();
    args.krl_max_age = Some(Duration::from_secs(3 * 3600));
    let r = h.doctor_with(&args).await;
    assert_eq!(r.exit_code(), 0, "{}", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_key_not_trusted_by_sshd_is_named() {
    let Some(h) = Host::for_test("ca_key_not_trusted_by_sshd_is_named").await else {
        return;
    };
    let other = ssh_keygen(h.dir.path(), "other_ca", &["-t", "ed25519"]);
    h.write_sshd_config(&other);
    let signing = commands::ca_keys(&h.host).await.unwrap()[0].clone();
    let fp = ssh_key::PublicKey::from_openssh(&signing)
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let r = h.doctor().await;
    assert_fails_exactly(
        &r,
        "FAIL sshd   CA key not trusted by sshd: ",
        &format!(
            "FAIL sshd   CA key not trusted by sshd: {fp} (signing key of the CA) is not in {} (TrustedUserCAKeys)",
            other.display()
        ),
    );
    assert_fix(
        &r,
        &format!("fix: breakglass ca-keys --out {}", other.display()),
    );
    // The module's own ca_keys= still holds the key: only sshd's file is named.
    assert_eq!(r.count(Level::Fail), 1, "{}", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_identity_is_not_a_host_identity() {
    let Some(h) = Host::for_test("a_persons_identity_is_not_a_host_identity").await else {
        return;
    };
    let r = doctor::check(&h.args(), &overrides(&h.daemon.target("sre"))).await;
    let line = assert_fails_with(&r, "FAIL daemon ");
    assert!(
        line.contains("sees this host as \"sre@example.com\", a person's or admin identity"),
        "{line}"
    );
}
