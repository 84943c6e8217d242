//! How fast a revocation refuses new logins on a host that follows the revocation
//! stream: `breakglass revoke` → the host's KRL file refuses the certificate (installed
//! by the real `breakglass host watch-revocations --krl`, no sync timer) and → the
//! grant marker the PAM module checks. Each run is checked with a real `ssh` login
//! that sshd must refuse. Prints p50 and max over the runs.
//!
//! ```sh
//! cargo bench -p breakglass-tests --bench revocation -- --runs 20     # as root
//! ```
//!
//! The daemon runs in-process over mTLS on loopback, sshd and the watcher are real
//! processes (see `tests/src`). Under `cargo test` (no `--bench`) it only says how to run.

use std::path::Path;
use std::time::{Duration, Instant};

use breakglass_cli::revoke;
use breakglass_proto::krl::Krl;
use breakglass_proto::sessions::{GrantState, grant_state};
use breakglass_proto::v1::revoke_request::Target as Selector;
use breakglass_tests::bench::BenchArgs;
use breakglass_tests::revocation::{self, ADMIN, issue, revoke_request};
use breakglass_tests::sshd::TestUser;
use breakglass_tests::watcher::WatchedHost;

/// Most runs accepted (each issues a grant and makes two logins).
const MAX_RUNS: usize = 500;
/// Longest wait for one revocation to reach the host before the run fails.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let Some(runs) = (BenchArgs {
        bench: "revocation",
        what: "revocation benchmark",
        flag: "--runs",
        default: 10,
        example: 20,
        max: MAX_RUNS,
    })
    .rounds() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(runs));
}

/// Milliseconds from the start of `revoke` to each point, per run.
#[derive(Default)]
struct Samples {
    answered: Vec<f64>,
    marked: Vec<f64>,
    krl: Vec<f64>,
    refused_login: Vec<f64>,
}

async fn run(runs: usize) {
    let d = revocation::daemon().await;
    let host = WatchedHost::start(&d, true).await;
    let (dir, krl) = (host.sessions_dir(), host.krl());
    let user = TestUser::create();
    let keys = tempfile::tempdir().unwrap();
    let sre = d.target("sre");
    let admin = d.new_client("admin", ADMIN);
    let mut s = Samples::default();
    println!(
        "revoke -> new logins refused on a host following the stream ({runs} runs; daemon in-process over mTLS, real sshd, real watcher)"
    );
    for i in 0..runs {
        let g = issue(&sre, keys.path(), &format!("k{i}"), &user.name, "db-7", 600).await;
        let cert = ssh_key::Certificate::read_file(g.key.cert_path.as_deref().unwrap()).unwrap();
        host.assert_login_works(&user.name, &g.key).await;

        let t0 = Instant::now();
        // Watch the host's files from the moment the revocation is sent.
        let (dir2, krl2, grant) = (dir.clone(), krl.clone(), g.grant_id.clone());
        let host_side =
            tokio::task::spawn_blocking(move || observe(&dir2, &krl2, &grant, &cert, t0));
        let selector = Selector::GrantId(g.grant_id.clone());
        revoke::revoke(&admin, revoke_request(selector, &format!("bench run {i}")))
            .await
            .expect("revoke");
        let answered = ms(t0.elapsed());
        let (marked, krl_at) = host_side.await.unwrap().unwrap_or_else(|| {
            panic!(
                "run {i}: the revocation did not reach the host within {REACH_TIMEOUT:?}: {}",
                host.watcher.output()
            )
        });
        let (code, _) = host.login(&user.name, &g.key).await;
        let refused = ms(t0.elapsed());
        assert_eq!(
            code,
            Some(255),
            "run {i}: sshd must refuse the revoked certificate"
        );
        s.answered.push(answered);
        s.marked.push(marked);
        s.krl.push(krl_at);
        s.refused_login.push(refused);
    }
    assert!(
        host.sshd.log().matches("revoked by file").count() >= runs,
        "sshd did not refuse by the KRL every time"
    );
    println!(
        "{:<52} {:>9} {:>9}",
        "from the start of `revoke` to", "p50 ms", "max ms"
    );
    for (what, v) in [
        (
            "the revoke call answered (audit fsync, KRL published)",
            &mut s.answered,
        ),
        ("the grant marker on the host (PAM denies)", &mut s.marked),
        ("the host's KRL file refusing it (sshd refuses)", &mut s.krl),
        (
            "a real ssh login refused, handshake included",
            &mut s.refused_login,
        ),
    ] {
        let (p50, max) = p50_max(v);
        println!("{what:<52} {p50:>9.1} {max:>9.1}");
    }
}

/// Polls (every 1 ms, bounded) until the grant is marked and the KRL file refuses
/// `cert`; returns both times in ms since `t0`.
fn observe(
    dir: &Path,
    krl: &Path,
    grant: &str,
    cert: &ssh_key::Certificate,
    t0: Instant,
) -> Option<(f64, f64)> {
    let (mut marked, mut installed) = (None, None);
    while t0.elapsed() < REACH_TIMEOUT {
        if marked.is_none() && matches!(grant_state(dir, grant), GrantState::Revoked(_)) {
            marked = Some(ms(t0.elapsed()));
        }
        if installed.is_none()
            && std::fs::read(krl)
                .ok()
                .and_then(|b| Krl::parse(&b).ok())
                .is_some_and(|k| k.revoked(cert).is_some())
        {
            installed = Some(ms(t0.elapsed()));
        }
        if let (Some(m), Some(k)) = (marked, installed) {
            return Some((m, k));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn p50_max(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}
