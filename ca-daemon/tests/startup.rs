//! The `breakglass-ca` binary: refuses unsafe keys and bad configs before it
//! binds anything, and shuts down gracefully on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use breakglass_test_support::ca::{self, CONFIG_FILE, CaProcess};
use breakglass_test_support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_breakglass-ca");

fn init(dir: &Path, listen: &str) {
    let text = ca::init_dev(Path::new(BIN), dir, listen);
    assert!(text.contains("breakglass-ca serve --config"), "{text}");
    assert!(text.contains("request --host localhost"), "{text}");
}

fn serve(config: &Path) -> Output {
    ca::serve_output(Path::new(BIN), config)
}

/// A dev setup whose config has `from` replaced by `to` (which must change it).
fn dev_config_edited(from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "127.0.0.1:0");
    let cfg = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let edited = text.replace(from, to);
    assert_ne!(edited, text, "{from:?} is not in the dev config");
    std::fs::write(&cfg, edited).unwrap();
    (dir, cfg)
}

/// `breakglass-ca COMMAND --config CONFIG`, with no input.
fn with_config(command: &str, config: &Path) -> Output {
    Command::new(BIN)
        .args([command, "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("breakglass-ca runs")
}

#[test]
fn refuses_a_group_readable_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "127.0.0.1:0");
    let key = dir.path().join("ssh_ca");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve(&dir.path().join(CONFIG_FILE));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("has mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    // The TLS key too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tls_key = dir.path().join("tls/server-key.pem");
    std::fs::set_permissions(&tls_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = serve(&dir.path().join(CONFIG_FILE));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server-key.pem"));
}

#[test]
fn refuses_a_config_with_an_unknown_field_naming_it() {
    let (_dir, cfg) = dev_config_edited("[ca]\n", "[ca]\nsigning_algorithm = \"rsa\"\n");
    let out = serve(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("unknown field `signing_algorithm`"), "{err}");
    assert!(err.contains("line "), "{err}");
    let out = with_config("check-config", &cfg);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn refuses_a_config_giving_a_certificate_a_unix_identity_and_says_where_it_goes() {
    // What dev configs said before [[admin_users]]: root's groups as an identity.
    let (_dir, cfg) = dev_config_edited(
        "[[admin_users]]\nuser = \"root\"\n",
        "[[identities]]\nid = \"unix:root\"\n",
    );
    for cmd in ["serve", "check-config"] {
        let out = with_config(cmd, &cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{cmd}: {err}");
        assert!(
            err.contains("identities[5].id: \"unix:root\"")
                && err.contains("reserved for local users of the admin socket")
                && err.contains("[[admin_users]] user = \"root\" groups = [\"admins\"]"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn check_config_accepts_the_dev_setup() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "127.0.0.1:7443");
    let out = with_config("check-config", &dir.path().join(CONFIG_FILE));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // init refuses to overwrite an existing setup.
    let out = Command::new(BIN)
        .args(["init", "--dev"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn serve_dev_creates_the_setup_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    // Pick a free port for the dev config by initialising first.
    init(&dev, &format!("127.0.0.1:{}", free_port()));
    let sock = dev.join("admin.sock");
    let d = CaProcess::start(
        Command::new(BIN).args(["serve", "--dev"]).arg(&dev),
        Duration::from_secs(20),
        |_| sock.exists(),
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket must be private");
    d.stop();
    assert!(!sock.exists(), "admin socket left behind");
}
