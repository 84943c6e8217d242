//! `--output json` / `--json` and `breakglass status`, with the real `breakglass`
//! binary against the in-process daemon over real mTLS sockets: each command's standard
//! output is one JSON object with exactly the fields and types its man page documents
//! (`breakglass_cli::output::schema`, the source of the JSON OUTPUT sections), and
//! `status` lists the caller's own live grants and never anyone else's.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use breakglass_cli::output::schema;
use breakglass_cli::status;
use breakglass_tests::daemon::TestDaemon;
use breakglass_tests::revocation::request_args;
use breakglass_tests::{breakglass_bin_built, ssh_keygen};
use serde_json::Value;

const STAGING: &str = "web-1.staging.example";

/// How many JSON commands ran, to alternate between `--json` and `--output json`.
static FORM: AtomicUsize = AtomicUsize::new(0);

/// The dev daemon with a second SRE (another person) and client settings for each
/// sample client the CLI runs as.
async fn daemon() -> TestDaemon {
    let d = TestDaemon::start_with(|c| {
        format!(
            "{c}\n[[identities]]\nid = \"sre2@example.com\"\ngroups = [\"sre\"]\nowner = \"sample-sre-2\"\n"
        )
    })
    .await;
    d.new_client("sre2", "sre2@example.com");
    for name in ["sre", "sre2", "approver", "auditor", "host"] {
        d.client_config(name, name);
    }
    d
}

/// `breakglass ARGS` as `name`, with the JSON flag (`--json`, or `--output json` when
/// `long`).
async fn run(d: &TestDaemon, name: &str, long: bool, args: &[&str]) -> Output {
    let mut c = d.cli(name);
    if long {
        c.args(["--output", "json"]);
    } else {
        c.arg("--json");
    }
    c.args(args).output().await.expect("breakglass runs")
}

/// The JSON `breakglass ARGS` prints as `name` (it must succeed), checked against the
/// schema of `command`.
async fn json(d: &TestDaemon, name: &str, command: &str, args: &[&str]) -> Value {
    // Both spellings of the flag, alternately.
    let long = FORM.fetch_add(1, Ordering::Relaxed) % 2 == 1;
    let out = run(d, name, long, args).await;
    assert!(
        out.status.success(),
        "breakglass {args:?} as {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    checked(command, &out)
}

/// Standard output is one JSON value (nothing else on it) matching `command`'s schema.
fn checked(command: &str, out: &Output) -> Value {
    let stdout = String::from_utf8(out.stdout.clone()).expect("UTF-8");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "`{command}` printed something other than one JSON value ({e}):\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let s = schema::schema(command).unwrap_or_else(|| panic!("no schema for {command}"));
    if let Err(e) = s.check(&v) {
        panic!("`{command}` does not match its documented schema: {e}\n{stdout}");
    }
    v
}

fn key(dir: &Path) -> String {
    ssh_keygen(dir, "id_ed25519", &["-t", "ed25519"]);
    dir.join("id_ed25519.pub").display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_data_command_prints_json_that_matches_its_documented_schema() {
    // Built before the daemon starts (the CLI runs as a child process below).
    breakglass_bin_built().await;
    let d = daemon().await;
    let keys = tempfile::tempdir().unwrap();
    let pubkey = key(keys.path());
    let mut covered = Vec::new();
    let mut cover = |c: &'static str| covered.push(c);

    let who = json(&d, "sre", "whoami", &["whoami"]).await;
    cover("whoami");
    assert_eq!(who["identity"], "sre@example.com");
    assert_eq!(who["transport"], "mtls");
    assert_eq!(who["groups"], serde_json::json!(["sre"]));

    let ca = json(&d, "sre", "ca-keys", &["ca-keys"]).await;
    assert_eq!(ca["keys"][0]["signing"], true, "{ca}");
    assert!(
        ca["keys"][0]["public_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-")
    );
    assert_eq!(ca["written_to"], Value::Null);
    let out_file = keys.path().join("ca.pub");
    let out_s = out_file.display().to_string();
    let ca = json(&d, "sre", "ca-keys", &["ca-keys", "--out", &out_s]).await;
    cover("ca-keys");
    assert_eq!(ca["written_to"], out_s.as_str());
    assert!(
        std::fs::read_to_string(&out_file)
            .unwrap()
            .starts_with("ssh-")
    );

    // Issued at once (tier low).
    let req = [
        "request",
        "--host",
        "localhost",
        "--as",
        "bgdemo",
        "--ttl",
        "10m",
        "--reason",
        "json output test",
        "--command",
        "/usr/bin/id",
        "--public-key",
        &pubkey,
    ];
    let issued = json(&d, "sre", "request", &req).await;
    assert_eq!(issued["state"], "issued", "{issued}");
    assert_eq!(issued["request"], Value::Null);
    let cert = &issued["certificate"];
    let low_grant = cert["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(cert["principals"], serde_json::json!(["bgdemo"]));
    assert!(Path::new(cert["certificate_file"].as_str().unwrap()).exists());
    let left = cert["expires_in_seconds"].as_i64().unwrap();
    assert!((540..=600).contains(&left), "{cert}");

    // Waiting for approval (tier elevated), without waiting.
    let wait = [
        "request",
        "--host",
        STAGING,
        "--as",
        "bgdemo",
        "--ttl",
        "10m",
        "--reason",
        "json output test",
        "--public-key",
        &pubkey,
        "--no-wait",
    ];
    let pending = json(&d, "sre", "request", &wait).await;
    cover("request");
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["certificate"], Value::Null);
    assert_eq!(pending["request"]["state"], "pending");
    let rid = pending["request_id"].as_str().unwrap().to_owned();
    assert_eq!(pending["request"]["request_id"], rid.as_str());

    let list = json(&d, "approver", "pending", &["pending"]).await;
    cover("pending");
    let mine = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == rid.as_str())
        .expect("the approver sees the request");
    assert_eq!(mine["can_approve"], true);
    assert_eq!(mine["command"], Value::Null);
    assert_eq!(mine["grant_id"], Value::Null);

    let st = json(&d, "sre", "status", &["status"]).await;
    assert_eq!(st["identity"], "sre@example.com");
    let grants = st["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{st}");
    assert_eq!(grants[0]["grant_id"], low_grant.as_str());
    assert_eq!(grants[0]["hosts"], serde_json::json!(["localhost"]));
    assert_eq!(grants[0]["command"], "/usr/bin/id");
    assert_eq!(st["pending"][0]["request_id"], rid.as_str());
    assert!(
        st["credential"]["expires_in_seconds"].as_i64().unwrap() > 0,
        "{st}"
    );
    let ast = json(&d, "approver", "status", &["status"]).await;
    cover("status");
    assert_eq!(ast["grants"], serde_json::json!([]));
    assert_eq!(ast["awaiting_my_approval"][0]["request_id"], rid.as_str());

    let shown = json(&d, "sre", "show", &["show", &rid]).await;
    cover("show");
    assert_eq!(shown["state"], "pending");
    let approved = json(
        &d,
        "approver",
        "approve",
        &["approve", &rid, "--comment", "ok"],
    )
    .await;
    cover("approve");
    assert_eq!(approved["approvals"][0]["approver"], "approver@example.com");
    let fetched = json(
        &d,
        "sre",
        "fetch",
        &["fetch", &rid, "--public-key", &pubkey],
    )
    .await;
    cover("fetch");
    assert_eq!(fetched["request_id"], rid.as_str());
    assert_eq!(
        fetched["approvers"],
        serde_json::json!(["approver@example.com"])
    );

    // Withdrawn and denied requests.
    let again = json(&d, "sre", "request", &wait).await["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = json(
        &d,
        "sre",
        "cancel",
        &["cancel", &again, "--reason", "not needed"],
    )
    .await;
    cover("cancel");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["decision_reason"], "not needed");
    let again = json(&d, "sre", "request", &wait).await["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = json(
        &d,
        "approver",
        "deny",
        &["deny", &again, "--reason", "use staging-2"],
    )
    .await;
    cover("deny");
    assert_eq!(denied["state"], "denied");
    // As the daemon names actors (`user:…`).
    assert!(
        denied["decided_by"]
            .as_str()
            .unwrap()
            .ends_with("approver@example.com"),
        "{denied}"
    );

    // An emergency grant, reviewed.
    let mut emergency = wait.to_vec();
    emergency.retain(|a| *a != "--no-wait");
    emergency.push("--emergency");
    let e = json(&d, "sre", "request", &emergency).await;
    assert_eq!(e["certificate"]["emergency"], true, "{e}");
    let egrant = e["certificate"]["grant_id"].as_str().unwrap().to_owned();
    let reviews = json(&d, "auditor", "review list", &["review", "list"]).await;
    cover("review list");
    let item = reviews["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grant_id"] == egrant.as_str())
        .expect("the emergency grant awaits review");
    assert_eq!(item["review"], Value::Null);
    assert_eq!(item["sessions"], serde_json::json!([]));
    let verdict = [
        "review",
        &egrant,
        "--verdict",
        "ok",
        "--note",
        "checked the incident",
    ];
    let reviewed = json(&d, "auditor", "review", &verdict).await;
    cover("review");
    assert_eq!(reviewed["review"]["verdict"], "ok");
    assert_eq!(reviewed["review"]["reviewer"], "auditor@example.com");

    let revoked = json(
        &d,
        "sre",
        "revoke",
        &["revoke", "--grant", &low_grant, "--reason", "done"],
    )
    .await;
    cover("revoke");
    assert_eq!(revoked["revoked"][0]["grant_id"], low_grant.as_str());
    assert_eq!(revoked["krl_published"], true);
    assert_eq!(revoked["revoked_key_fingerprint"], Value::Null);
    let st = json(&d, "sre", "status", &["status"]).await;
    let live: Vec<&str> = st["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    assert!(
        !live.contains(&low_grant.as_str()),
        "a revoked grant is not live: {st}"
    );

    // host doctor prints its findings as JSON whether or not a check fails (exit 78).
    let out = run(&d, "host", true, &["host", "doctor"]).await;
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 78)),
        "host doctor: {code:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = checked("host doctor", &out);
    cover("host doctor");
    assert_eq!(doc["passed"], code == Some(0));
    assert!(!doc["findings"].as_array().unwrap().is_empty());
    assert!(
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["area"] == "daemon"),
        "{doc}"
    );

    // Every documented schema was exercised.
    let mut documented: Vec<&str> = schema::SCHEMAS.iter().map(|s| s.command).collect();
    documented.sort_unstable();
    covered.sort_unstable();
    assert_eq!(covered, documented);

    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_is_refused_where_a_command_prints_no_data_and_audit_show_keeps_its_lines() {
    breakglass_bin_built().await;
    let d = daemon().await;
    // A command without JSON output says so (exit 64) and prints nothing on stdout.
    let out = run(&d, "sre", true, &["audit", "verify", "--remote"]).await;
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no JSON output") && err.contains("status"),
        "{err}"
    );
    // Refused before anything is done or any daemon is asked.
    let out = tokio::process::Command::new(breakglass_tests::breakglass_bin())
        .args(["--server", "https://127.0.0.1:1", "--json", "host", "ship"])
        .env_remove("BREAKGLASS_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(out.stdout.is_empty());

    // `audit show --json` (now the global flag): one JSON object per event per line.
    let keys = tempfile::tempdir().unwrap();
    let public = Path::new(&key(keys.path())).to_owned();
    let args = request_args(&public, "bgdemo", "localhost", 600, "audit json test");
    breakglass_cli::commands::request(&d.target("sre"), &args)
        .await
        .unwrap();
    for long in [false, true] {
        let out = run(&d, "auditor", long, &["audit", "show"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.lines().count() > 0);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("one JSON object per line");
            assert!(v["index"].is_u64() && v["event"].is_string(), "{line}");
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_lists_my_own_live_grants_and_never_another_persons() {
    breakglass_bin_built().await;
    let d = daemon().await;
    let keys = tempfile::tempdir().unwrap();
    let public = Path::new(&key(keys.path())).to_owned();
    let (sre, sre2) = (d.target("sre"), d.target("sre2"));
    let mine = breakglass_cli::commands::request(
        &sre,
        &request_args(&public, "bgdemo", "localhost", 600, "status test"),
    )
    .await
    .unwrap();
    let theirs = breakglass_cli::commands::request(
        &sre2,
        &request_args(&public, "bgdemo", "db-1.dev.example", 300, "status test"),
    )
    .await
    .unwrap();

    let s = status::status(&sre).await.unwrap();
    let ids: Vec<&str> = s.grants.iter().map(|g| g.grant_id.as_str()).collect();
    assert_eq!(ids, [mine.response.grant_id.as_str()]);
    assert_eq!(s.grants[0].requester, "sre@example.com");
    let s2 = status::status(&sre2).await.unwrap();
    let ids2: Vec<&str> = s2.grants.iter().map(|g| g.grant_id.as_str()).collect();
    assert_eq!(ids2, [theirs.response.grant_id.as_str()]);
    // The approver, who may approve both people's requests, holds no grant of theirs.
    let a = status::status(&d.target("approver")).await.unwrap();
    assert!(a.grants.is_empty(), "{:?}", a.grants);

    // An identity the daemon does not list gets no list at all.
    let mallory = d.new_client("mallory", "mallory@example.com");
    let mut client = breakglass_cli::connect::client(&mallory).unwrap();
    let refused = client
        .list_my_grants(breakglass_proto::v1::ListMyGrantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // The text form names the grant, its host, account and time left.
    let text = d.cli_ok("sre", &["status"]).await;
    assert!(text.contains(&mine.response.grant_id), "{text}");
    assert!(text.contains("bgdemo@localhost"), "{text}");
    assert!(!text.contains(&theirs.response.grant_id), "{text}");
    assert!(text.contains("credential   client certificate"), "{text}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_waits_shows_progress_on_stderr_and_only_its_json_on_stdout() {
    breakglass_bin_built().await;
    let d = daemon().await;
    let keys = tempfile::tempdir().unwrap();
    let pubkey = key(keys.path());
    let child = d
        .cli("sre")
        .arg("--json")
        .args([
            "request",
            "--host",
            STAGING,
            "--as",
            "bgdemo",
            "--ttl",
            "10m",
            "--reason",
            "json wait test",
            "--public-key",
            &pubkey,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("breakglass runs");
    // The approver approves once the request is there (a bounded wait).
    let approver = d.target("approver");
    let mut id = None;
    for _ in 0..200 {
        let pending = breakglass_cli::approvals::pending(&approver).await.unwrap();
        if let Some(r) = pending.iter().find(|r| r.requester == "sre@example.com") {
            id = Some(r.request_id.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = id.expect("the request reached the approver within 20 s");
    breakglass_cli::approvals::approve(&approver, &id, "go")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let v = checked("request", &out);
    assert_eq!(v["state"], "issued", "{v}");
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(
        v["certificate"]["approvers"],
        serde_json::json!(["approver@example.com"])
    );
    // The wait was shown, on stderr.
    assert!(
        stderr.contains(&format!("{id} pending: tier elevated")),
        "{stderr}"
    );
    d.stop().await;
}
