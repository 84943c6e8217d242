//! The daemon's own log lines (issue 17): the real `breakglass-ca serve` as a child
//! process, its stderr piped (as under systemd or into a file), a certificate issued over
//! mTLS so that lines carry their fields.
//!
//! - `--log-format json`: every line is one JSON object with its fields at the top level;
//! - `[log] format` in the configuration, and the flag winning over it;
//! - text lines carry no ANSI escape when stderr is not a terminal, even without
//!   `NO_COLOR`, and no `Some(...)` around field values;
//! - an unknown format in the configuration is refused with the allowed ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use breakglass_cli::connect;
use breakglass_cli::settings::Target;
use breakglass_proto::v1::RequestCertificateRequest;
use breakglass_proto::v1::break_glass_client::BreakGlassClient;
use breakglass_test_support::ca::{self, CaProcess};
use breakglass_tests::{breakglass_ca_bin, can_run, have, ssh_keygen};

const START: Duration = Duration::from_secs(120);

/// An `init --dev` setup on free loopback ports.
struct Setup {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Setup {
    async fn new() -> Self {
        let bin = tokio::task::spawn_blocking(breakglass_ca_bin)
            .await
            .unwrap()
            .clone();
        let dir = tempfile::tempdir().unwrap();
        let port = breakglass_tests::sshd::free_port();
        ca::init_dev(&bin, &dir.path().join("ca"), &format!("127.0.0.1:{port}"));
        let s = Self { dir, bin, port };
        let config = std::fs::read_to_string(s.config()).unwrap();
        let config = config.replace(
            "syslog_socket = \"/dev/log\"",
            "syslog_socket = \"no-syslog.sock\"",
        );
        // The issuance line is at info level only when asked; more `[log]` keys follow.
        std::fs::write(
            s.config(),
            format!("{config}\n[log]\nissuance_lines = true\n"),
        )
        .unwrap();
        s
    }

    fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    fn config(&self) -> PathBuf {
        self.ca_dir().join(ca::CONFIG_FILE)
    }

    fn append_config(&self, text: &str) {
        let mut c = std::fs::read_to_string(self.config()).unwrap();
        c.push_str(text);
        std::fs::write(self.config(), c).unwrap();
    }

    /// `serve` with `args`, without `NO_COLOR`, stderr piped; started once it serves.
    fn start(&self, args: &[&str]) -> CaProcess {
        let mut cmd: Command = ca::serve_command(&self.bin, &self.config());
        cmd.args(args).env_remove("NO_COLOR");
        CaProcess::start(&mut cmd, START, |log| log.contains("breakglass-ca serving"))
    }

    /// Issues one certificate as the sample SRE, so that the log has a line with fields.
    async fn issue(&self) {
        let d = self.ca_dir();
        let target = Target::Tls {
            url: format!("https://127.0.0.1:{}", self.port),
            fallbacks: Vec::new(),
            ca_cert: d.join("tls/ca.pem"),
            cert: d.join("clients/sre.pem"),
            key: d.join("clients/sre-key.pem"),
            server_name: Some("localhost".into()),
        };
        let key = ssh_keygen(self.dir.path(), "id_log", &["-t", "ed25519"]);
        let _ = std::fs::remove_file(self.dir.path().join("id_log"));
        let mut c = BreakGlassClient::new(connect::channel(&target).unwrap());
        c.request_certificate(RequestCertificateRequest {
            public_key: std::fs::read_to_string(key).unwrap(),
            principals: vec!["bglog".into()],
            hosts: vec!["localhost".into()],
            ttl_seconds: 300,
            reason: "log format test".into(),
            ..Default::default()
        })
        .await
        .expect("issued");
    }
}

fn lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Every line parses as a JSON object with a timestamp, a level and a message; returns them.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    let all = lines(log);
    assert!(all.len() >= 4, "too few lines:\n{log}");
    all.iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\nwhole log:\n{log}"));
            for key in ["timestamp", "level", "message"] {
                assert!(v.get(key).is_some(), "no {key} in {l}");
            }
            v
        })
        .collect()
}

fn with_message<'a>(lines: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|v| v["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:#?}"))
}

fn assert_plain(log: &str) {
    assert!(!log.contains('\u{1b}'), "an ANSI escape in the log:\n{log}");
    assert!(
        !log.contains("Some("),
        "an Option's Debug in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_as_json_with_their_fields_at_the_top_level() {
    if !can_run("ssh-keygen (scripts/install-deps)", have("ssh-keygen")) {
        return;
    }
    let s = Setup::new().await;
    let p = s.start(&["--log-format", "json"]);
    s.issue().await;
    let log = p.stop();
    assert_plain(&log);
    let lines = json_lines(&log);
    let serving = with_message(&lines, "breakglass-ca serving");
    assert_eq!(serving["listen"], format!("127.0.0.1:{}", s.port));
    assert_eq!(
        serving["admin_socket"],
        s.ca_dir().join("admin.sock").display().to_string()
    );
    let issued = with_message(&lines, "certificate issued");
    assert_eq!(issued["principals"], "bglog");
    assert_eq!(issued["hosts"], "localhost");
    assert_eq!(issued["tier"], "low");
    assert_eq!(issued["level"], "INFO");
    with_message(&lines, "SIGTERM received");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_chooses_json_and_the_flag_wins_over_it() {
    if !can_run("ssh-keygen (scripts/install-deps)", have("ssh-keygen")) {
        return;
    }
    let s = Setup::new().await;
    s.append_config("format = \"json\"\n");
    let log = s.start(&[]).stop();
    json_lines(&log);

    let log = s.start(&["--log-format", "text"]).stop();
    assert_plain(&log);
    for l in lines(&log) {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_err(),
            "a JSON line although --log-format text: {l}"
        );
    }
    assert!(log.contains("breakglass-ca serving"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_piped_have_no_ansi_escapes_and_plain_values_without_no_color() {
    if !can_run("ssh-keygen (scripts/install-deps)", have("ssh-keygen")) {
        return;
    }
    let s = Setup::new().await;
    let p = s.start(&[]);
    s.issue().await;
    let log = p.stop();
    assert_plain(&log);
    let serving = lines(&log)
        .into_iter()
        .find(|l| l.contains("breakglass-ca serving"))
        .unwrap_or_else(|| panic!("no serving line:\n{log}"));
    assert!(
        serving.contains(&format!("listen=127.0.0.1:{}", s.port)),
        "{serving}"
    );
    let issued = lines(&log)
        .into_iter()
        .find(|l| l.contains("certificate issued"))
        .unwrap_or_else(|| panic!("no issuance line:\n{log}"));
    assert!(issued.contains("principals=bglog"), "{issued}");
    assert!(issued.contains("hosts=localhost"), "{issued}");
}

#[test]
fn an_unknown_log_format_in_the_config_is_refused_with_the_allowed_ones() {
    let bin = breakglass_ca_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = breakglass_tests::sshd::free_port();
    ca::init_dev(bin, &dir.path().join("ca"), &format!("127.0.0.1:{port}"));
    let config: &Path = &dir.path().join("ca").join(ca::CONFIG_FILE);
    let mut c = std::fs::read_to_string(config).unwrap();
    c.push_str("\n[log]\nformat = \"xml\"\n");
    std::fs::write(config, c).unwrap();
    let out = ca::serve_output(bin, config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("xml") && stderr.contains("text") && stderr.contains("json"),
        "{stderr}"
    );
}
