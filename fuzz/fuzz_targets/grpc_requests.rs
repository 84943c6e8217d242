//! Every gRPC request message, decoded from bytes and handled by a real daemon in-process
//! (`breakglass_ca::inproc`): the handlers' validation, the policy decision, issuance,
//! approvals, revocation, reviews, drill reports, host records and audit reads, with the
//! daemon's real audit log under them (a dev setup made by `init`, in a temporary
//! directory, renewed every few thousand events so memory stays bounded).
//!
//! Input: byte 0 picks the caller (an identity of the dev config, or an unknown one),
//! byte 1 the method ([`METHODS`]), the rest is the request message. A request or grant id
//! written `r-@@@@@@@@@@@@@@NN` / `g-@@@@@@@@@@@@@@NN` stands for the NN-th most recent one
//! the daemon holds, so that approvals, revocations and reviews can reach real objects.
//!
//! Properties: no call panics, hangs or fails with `Internal`; a call refused as
//! `InvalidArgument` records nothing.
#![no_main]

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use breakglass_ca::config::Config;
use breakglass_ca::inproc::{self, InProcess, METHODS};
use breakglass_ca::policy::Caller;
use breakglass_ca::server::Daemon;
use breakglass_proto::audit::event::EventCode;
use libfuzzer_sys::fuzz_target;
use tonic::Code;

const REQUEST_REF: &[u8] = b"r-@@@@@@@@@@@@@@";
const GRANT_REF: &[u8] = b"g-@@@@@@@@@@@@@@";
/// Events after which the daemon is replaced by a fresh one.
const RENEW_AFTER_EVENTS: u64 = 4000;
/// Longest a call may take before it counts as hung.
const HUNG: Duration = Duration::from_secs(30);

struct Harness {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    api: InProcess,
    callers: Vec<Caller>,
    _daemon: Daemon,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn harness(generation: u64) -> Harness {
    let dir = breakglass_fuzz::scratch_root().join(format!(
        "breakglass-fuzz-grpc-{}-{generation}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let setup = breakglass_ca::init::init_dev(&dir, "127.0.0.1:0".parse().expect("address"))
        .expect("init --dev");
    // 1 MiB segments (the smallest) so that reads cross segment files.
    let text = std::fs::read_to_string(&setup.config).expect("config");
    std::fs::write(
        &setup.config,
        text.replace("segment_max_mib = 64", "segment_max_mib = 1"),
    )
    .expect("config");
    let config = Config::load(&setup.config).expect("dev config loads");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let daemon = {
        let _in_runtime = rt.enter();
        Daemon::build(config).expect("daemon builds")
    };
    let api = InProcess::new(&daemon);
    let mut callers = inproc::callers(daemon.config());
    callers.push(Caller {
        identity: "mallory@example.com".into(),
        groups: Vec::new(),
        owner: None,
        transport: "mtls",
        uid: None,
        ssh_key_login: false,
    });
    Harness {
        dir,
        rt,
        api,
        callers,
        _daemon: daemon,
    }
}

/// Replaces id placeholders by the ids of the daemon's most recent requests and grants.
fn resolve<'a>(body: &'a [u8], api: &InProcess) -> Cow<'a, [u8]> {
    let has = |p: &[u8]| body.windows(p.len()).any(|w| w == p);
    if !has(REQUEST_REF) && !has(GRANT_REF) {
        return Cow::Borrowed(body);
    }
    let (requests, grants) = {
        let st = api.service().state();
        let mut r: Vec<_> = st
            .requests()
            .map(|r| (r.created_at, r.created.request_id))
            .collect();
        r.sort_unstable_by(|a, b| b.cmp(a));
        let mut g: Vec<_> = st.grants.iter().map(|(id, g)| (g.index, *id)).collect();
        g.sort_unstable_by(|a, b| b.cmp(a));
        (
            r.into_iter()
                .map(|(_, id)| id.to_string())
                .collect::<Vec<_>>(),
            g.into_iter()
                .map(|(_, id)| id.to_string())
                .collect::<Vec<_>>(),
        )
    };
    let mut out = body.to_vec();
    let mut i = 0;
    while i + REQUEST_REF.len() + 2 <= out.len() {
        let at = &out[i..i + REQUEST_REF.len()];
        let list = if at == REQUEST_REF {
            &requests
        } else if at == GRANT_REF {
            &grants
        } else {
            i += 1;
            continue;
        };
        let digits = &out[i + REQUEST_REF.len()..i + REQUEST_REF.len() + 2];
        if let Some(id) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
            .and_then(|n| list.get(n))
        {
            // Ids and placeholders are both 18 bytes: the message framing stays intact.
            out[i..i + id.len()].copy_from_slice(id.as_bytes());
        }
        i += REQUEST_REF.len() + 2;
    }
    Cow::Owned(out)
}

static HARNESS: Mutex<Option<(u64, Harness)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let [who, method, body @ ..] = data else {
        return;
    };
    let mut slot = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let renew = match &*slot {
        None => Some(0),
        Some((n, h)) if h.api.service().state().events > RENEW_AFTER_EVENTS => Some(n + 1),
        Some(_) => None,
    };
    if let Some(n) = renew {
        *slot = None;
        *slot = Some((n, harness(n)));
    }
    let Some((_, h)) = slot.as_ref() else {
        return;
    };
    let caller = &h.callers[usize::from(*who) % h.callers.len()];
    let method = METHODS[usize::from(*method) % METHODS.len()];
    let body = resolve(body, &h.api);
    let svc = h.api.service();
    // Work an earlier input left running (e.g. the issuance an approval starts) records on
    // its own time: let it settle first, so what this call records is counted alone.
    h.rt.block_on(async {
        for _ in 0..100 {
            let size = h.api.log_size();
            tokio::time::sleep(Duration::from_millis(2)).await;
            if h.api.log_size() == size {
                break;
            }
        }
    });
    let events_before = h.api.log_size();
    let pending_before = svc.state().pending.len();
    let started = Instant::now();
    let result = h.rt.block_on(async {
        let call = h.api.call(method, caller, &body);
        tokio::pin!(call);
        loop {
            tokio::select! {
                r = &mut call => return Some(r),
                () = tokio::time::sleep(Duration::from_millis(1)) => {
                    // RequestCertificate waits for approvals: once its request is pending,
                    // hang up as a client would.
                    if svc.state().pending.len() > pending_before {
                        return None;
                    }
                    assert!(started.elapsed() < HUNG, "{method} as {} hung", caller.identity);
                }
            }
        }
    });
    let Some(Err(status)) = result else {
        return;
    };
    assert_ne!(status.code(), Code::Internal, "{method}: {status}");
    if status.code() == Code::InvalidArgument {
        // A refusal changes nothing: what it may record is the refusal itself (issue 11).
        let after = h.api.log_size();
        let recorded = h
            .api
            .recorded(events_before, after)
            .expect("the log reads back");
        for event in &recorded {
            assert!(
                matches!(
                    event.code(),
                    EventCode::RequestRefused
                        | EventCode::ActionRefused
                        | EventCode::RefusalsLimited
                ),
                "{method} was refused as invalid ({}) but recorded {:?}",
                status.message(),
                event.code()
            );
        }
    }
});
