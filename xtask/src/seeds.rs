//! `xtask fuzz-seeds OUTDIR`: seed corpora for the fuzz targets (`fuzz/`), made by the real
//! code paths: a dev daemon (`init --dev`, the fuzz-only CA and audit keys) is driven
//! in-process through every RPC in a short scenario (requests of each tier, approval,
//! denial, cancellation, emergency and review, a drill, host records, revocations, audit
//! reads); the calls become `grpc_requests` seeds, and what the daemon wrote (its audit
//! segments and checkpoints, its KRL, its certificates, the state snapshot of its log) the
//! seeds of the parser targets.
//! `fuzz/make-seeds` adds what `ssh-keygen` makes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use breakglass_ca::audit::{AuditConfig, AuditLog, load_audit_key};
use breakglass_ca::config::Config;
use breakglass_ca::inproc::{self, InProcess, METHODS};
use breakglass_ca::policy::Caller;
use breakglass_ca::server::Daemon;
use breakglass_proto::audit::Event;
use breakglass_proto::audit::segment::{
    CHECKPOINT_FILE, Parsed, RecordKind, list_segments, parse_record,
};
use breakglass_proto::audit::verify::{ScanOptions, scan_log};
use breakglass_proto::sessions::{Registration, RevocationMarker};
use breakglass_proto::spool::{RECORD_VERSION, SessionEvent, SessionRecord, record_id, session_id};
use breakglass_proto::v1::{
    AppendHostRecordsRequest, ApproveRequest, CancelRequest, CreateRequestResponse, DenyRequest,
    GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest,
    GetRevocationListResponse, GrantRef, ListReviewsRequest, ReportDrillRequest,
    RequestCertificateRequest, RequestCertificateResponse, RequestRef, ReviewRequest,
    RevokeRequest, WatchRevocationsRequest, revoke_request::Target,
};
use prost::Message;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};

/// Where the fuzz-only keys are (`fuzz/fixtures`).
#[derive(Debug, Clone)]
pub struct SeedKeys {
    /// The SSH CA the PAM targets trust (OpenSSH private key).
    pub ca_key: PathBuf,
    /// The audit log key the audit targets verify with (PKCS#8 PEM).
    pub audit_key: PathBuf,
}

/// Placeholders the `grpc_requests` target replaces by the N-th most recent request or
/// grant of its daemon (same length as the ids, so the protobuf framing holds).
const REQUEST_REF: &str = "r-@@@@@@@@@@@@@@";
const GRANT_REF: &str = "g-@@@@@@@@@@@@@@";

struct Seeds {
    out: PathBuf,
    count: BTreeMap<&'static str, usize>,
}

impl Seeds {
    fn put(&mut self, target: &'static str, bytes: &[u8]) -> std::io::Result<()> {
        let n = self.count.entry(target).or_default();
        *n += 1;
        let dir = self.out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("xtask-{n:03}")), bytes)
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn copy_secret(from: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let bytes = std::fs::read(from).map_err(io(&from.display().to_string()))?;
    std::fs::write(to, bytes).map_err(io(&to.display().to_string()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))
        .map_err(io(&to.display().to_string()))
}

/// The daemon under the scenario, its callers, and the seeds its calls become.
struct Scenario<'a> {
    api: InProcess,
    callers: Vec<Caller>,
    seeds: &'a mut Seeds,
    certificates: Vec<String>,
    krl: Option<Vec<u8>>,
}

impl Scenario<'_> {
    fn caller(&self, identity: &str) -> usize {
        self.callers
            .iter()
            .position(|c| c.identity == identity)
            .unwrap_or(self.callers.len())
    }

    /// Request and grant ids in the body, replaced by the placeholders the fuzz target
    /// resolves (most recent first, as it counts).
    fn with_placeholders(&self, body: &[u8]) -> Vec<u8> {
        let st = self.api.service().state();
        let mut requests: Vec<_> = st
            .requests()
            .map(|r| (r.created_at, r.created.request_id))
            .collect();
        requests.sort_unstable_by(|a, b| b.cmp(a));
        let mut grants: Vec<_> = st.grants.iter().map(|(id, g)| (g.index, *id)).collect();
        grants.sort_unstable_by(|a, b| b.cmp(a));
        let mut ids: Vec<(String, String)> = Vec::new();
        for (n, (_, id)) in requests.iter().enumerate().take(100) {
            ids.push((id.to_string(), format!("{REQUEST_REF}{n:02}")));
        }
        for (n, (_, id)) in grants.iter().enumerate().take(100) {
            ids.push((id.to_string(), format!("{GRANT_REF}{n:02}")));
        }
        let mut out = body.to_vec();
        for (id, placeholder) in ids {
            let (id, placeholder) = (id.as_bytes(), placeholder.as_bytes());
            let mut i = 0;
            while i + id.len() <= out.len() {
                if &out[i..i + id.len()] == id {
                    out[i..i + id.len()].copy_from_slice(placeholder);
                    i += id.len();
                } else {
                    i += 1;
                }
            }
        }
        out
    }

    /// Calls `method` as `identity`, records the call as a seed, returns the answer.
    async fn call<M: Message>(&mut self, identity: &str, method: &str, msg: &M) -> Option<Vec<u8>> {
        let who = self.caller(identity);
        let m = METHODS
            .iter()
            .position(|x| x.ends_with(method))
            .unwrap_or(0);
        let body = msg.encode_to_vec();
        let mut seed = vec![u8::try_from(who).unwrap_or(0), u8::try_from(m).unwrap_or(0)];
        seed.extend(self.with_placeholders(&body));
        let _ = self.seeds.put("grpc_requests", &seed);
        let caller = self.callers.get(who).cloned().unwrap_or_else(|| Caller {
            identity: identity.to_owned(),
            groups: Vec::new(),
            owner: None,
            transport: "mtls",
            uid: None,
            ssh_key_login: false,
        });
        self.api.call(METHODS[m], &caller, &body).await.ok()
    }

    /// Sends a certificate request as the sample SRE; keeps any certificate; returns the
    /// request id.
    async fn request(&mut self, method: &str, req: &RequestCertificateRequest) -> Option<String> {
        let answer = self.call("sre@example.com", method, req).await?;
        let (certificate, id) = if method == "RequestCertificate" {
            let r = RequestCertificateResponse::decode(answer.as_slice()).ok()?;
            (Some(r.certificate), r.request_id)
        } else {
            let r = CreateRequestResponse::decode(answer.as_slice()).ok()?;
            (
                r.certificate.map(|c| c.certificate),
                r.request.map(|i| i.request_id).unwrap_or_default(),
            )
        };
        if let Some(c) = certificate.filter(|c| !c.is_empty()) {
            self.certificates.push(c);
        }
        Some(id)
    }

    async fn run(&mut self, user_key: &str) {
        let req = |hosts: &[&str], reason: &str| RequestCertificateRequest {
            public_key: user_key.to_owned(),
            principals: vec!["postgres".into()],
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ttl_seconds: 600,
            reason: reason.into(),
            ..Default::default()
        };
        let sre = "sre@example.com";
        // Issued at once (low tier), with a forced command, source address and extension.
        self.request(
            "RequestCertificate",
            &req(&["web-1.dev.example"], "INC-1 disk full"),
        )
        .await;
        let mut with_options = req(&["web-1.dev.example", "localhost"], "INC-2 check uptime");
        with_options.force_command = "/usr/bin/uptime".into();
        with_options.source_addresses = vec!["127.0.0.0/8".into()];
        with_options.extensions = vec!["permit-pty".into()];
        self.request("CreateRequest", &with_options).await;
        // One approval (elevated), approved.
        let id = self
            .request(
                "CreateRequest",
                &req(&["app-1.staging.example"], "INC-3 staging is down"),
            )
            .await
            .unwrap_or_default();
        self.call(
            sre,
            "WatchRequest",
            &RequestRef {
                request_id: id.clone(),
            },
        )
        .await;
        self.call(
            "approver@example.com",
            "ListPending",
            &breakglass_proto::v1::ListPendingRequest {},
        )
        .await;
        self.call(
            "approver@example.com",
            "GetRequest",
            &RequestRef {
                request_id: id.clone(),
            },
        )
        .await;
        self.call(
            "approver@example.com",
            "Approve",
            &ApproveRequest {
                request_id: id.clone(),
                comment: "ok, go".into(),
            },
        )
        .await;
        if let Some(a) = self
            .call(sre, "Fetch", &RequestRef { request_id: id })
            .await
            && let Ok(c) = RequestCertificateResponse::decode(a.as_slice())
        {
            self.certificates.push(c.certificate);
        }
        // Two approvals (critical, ticket required): denied, and cancelled.
        let id = self
            .request(
                "CreateRequest",
                &req(&["db-7.prod.example"], "INC-4 primary down"),
            )
            .await
            .unwrap_or_default();
        self.call(
            "approver2@example.com",
            "Deny",
            &DenyRequest {
                request_id: id,
                reason: "use the replica".into(),
            },
        )
        .await;
        let id = self
            .request(
                "CreateRequest",
                &req(&["db-8.prod.example"], "CHG-5 schema change"),
            )
            .await
            .unwrap_or_default();
        self.call(
            sre,
            "Cancel",
            &CancelRequest {
                request_id: id,
                reason: "not needed".into(),
            },
        )
        .await;
        // Refused by policy and by validation.
        let mut root = req(&["web-1.dev.example"], "INC-6 need root");
        root.principals = vec!["root".into()];
        self.request("CreateRequest", &root).await;
        let mut bad = req(&["web 1"], "INC-7\nforged line");
        bad.ttl_seconds = -1;
        self.request("CreateRequest", &bad).await;
        // A declared emergency, issued at once, then reviewed.
        let mut emergency = req(&["app-2.staging.example"], "INC-8 outage, approvers asleep");
        emergency.emergency = true;
        self.request("CreateRequest", &emergency).await;
        let grant = self
            .api
            .service()
            .state()
            .grants
            .iter()
            .max_by_key(|(_, g)| g.index)
            .map(|(id, _)| id.to_string())
            .unwrap_or_default();
        self.call(
            "auditor@example.com",
            "ListReviews",
            &ListReviewsRequest {
                include_reviewed: true,
            },
        )
        .await;
        self.call(
            "auditor@example.com",
            "Review",
            &ReviewRequest {
                grant_id: grant.clone(),
                verdict: "ok".into(),
                note: "postmortem PM-8".into(),
            },
        )
        .await;
        // A drill and its report.
        let mut drill = req(&["localhost"], "");
        drill.force_command = breakglass_proto::profile::DRILL_COMMAND.into();
        drill.drill = true;
        drill.ttl_seconds = 300;
        self.request("RequestCertificate", &drill).await;
        let drill_grant = self.latest_grant();
        self.call(
            sre,
            "ReportDrill",
            &ReportDrillRequest {
                grant_id: drill_grant,
                passed: true,
                request_to_shell_ms: 812,
                logout_to_audit_ms: 1500,
                ..Default::default()
            },
        )
        .await;
        // Host records of a session of the first grant, as the module and guard write them.
        let first = self.first_grant();
        let records = session_records(&first.0, first.1);
        self.call(
            "host://localhost",
            "AppendHostRecords",
            &AppendHostRecordsRequest {
                records: records.iter().map(|r| r.to_wire()).collect(),
            },
        )
        .await;
        self.call(
            sre,
            "GetGrantSessions",
            &GrantRef {
                grant_id: first.0.clone(),
            },
        )
        .await;
        // Revocations, the KRL, the watch stream.
        self.call(
            "unix:root",
            "Revoke",
            &RevokeRequest {
                target: Some(Target::GrantId(first.0)),
                reason: "INC-1 closed".into(),
            },
        )
        .await;
        self.call(
            sre,
            "Revoke",
            &RevokeRequest {
                target: Some(Target::Requester(sre.into())),
                reason: "rotating my key".into(),
            },
        )
        .await;
        if let Some(a) = self
            .call(
                "host://localhost",
                "GetRevocationList",
                &breakglass_proto::v1::GetRevocationListRequest {},
            )
            .await
            && let Ok(l) = GetRevocationListResponse::decode(a.as_slice())
        {
            self.krl = Some(l.krl);
        }
        self.call(
            "host://localhost",
            "WatchRevocations",
            &WatchRevocationsRequest { from_version: 0 },
        )
        .await;
        // Who am I, CA keys, audit reads.
        self.call(sre, "WhoAmI", &breakglass_proto::v1::WhoAmIRequest {})
            .await;
        self.call(
            sre,
            "ListMyGrants",
            &breakglass_proto::v1::ListMyGrantsRequest {},
        )
        .await;
        self.call(
            "host://localhost",
            "GetCaPublicKeys",
            &breakglass_proto::v1::GetCaPublicKeysRequest {},
        )
        .await;
        let auditor = "auditor@example.com";
        self.call(
            auditor,
            "GetCheckpoint",
            &breakglass_proto::v1::GetCheckpointRequest {},
        )
        .await;
        self.call(
            auditor,
            "GetEntries",
            &GetEntriesRequest {
                start: 0,
                end: 5,
                ..GetEntriesRequest::default()
            },
        )
        .await;
        self.call(
            auditor,
            "GetInclusionProof",
            &GetInclusionProofRequest {
                index: 3,
                tree_size: 10,
            },
        )
        .await;
        self.call(
            auditor,
            "GetConsistencyProof",
            &GetConsistencyProofRequest {
                old_size: 4,
                new_size: 12,
            },
        )
        .await;
    }

    fn latest_grant(&self) -> String {
        self.api
            .service()
            .state()
            .grants
            .iter()
            .max_by_key(|(_, g)| g.index)
            .map(|(id, _)| id.to_string())
            .unwrap_or_default()
    }

    fn first_grant(&self) -> (String, u64) {
        self.api
            .service()
            .state()
            .grants
            .iter()
            .min_by_key(|(_, g)| g.index)
            .map(|(id, g)| (id.to_string(), g.issued.serial))
            .unwrap_or_default()
    }
}

/// The spool records of one session (open, warn, close, forced end, and a denial), as the
/// PAM module builds them.
fn session_records(grant: &str, serial: u64) -> Vec<SessionRecord> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let session = session_id("localhost", Some(grant), 4242, now * 1000);
    let open = SessionRecord {
        version: RECORD_VERSION,
        record_id: record_id(&session, SessionEvent::Open),
        session: session.clone(),
        event: SessionEvent::Open,
        time: now,
        host: "localhost".into(),
        user: "postgres".into(),
        grant: Some(grant.into()),
        serial: Some(serial),
        key_id: Some(format!("breakglass/{grant}/sre@example.com")),
        requester: Some("sre@example.com".into()),
        tier: Some("low".into()),
        rhost: Some("127.0.0.1".into()),
        tty: Some("ssh".into()),
        service: Some("sshd".into()),
        pid: 4242,
        audit_session: Some(7),
        start: now,
        expires: Some(now + 600),
        reason: None,
        detail: None,
        duration: None,
        killed: None,
        recording_sha256: None,
        recording_bytes: None,
        recording_duration_ms: None,
    };
    let mut forced = open.for_event(SessionEvent::ForcedEnd, now + 600);
    forced.reason = Some("expired".into());
    forced.detail = Some("certificate expired".into());
    forced.killed = Some(2);
    let denied_session = session_id("localhost", None, 4343, now * 1000);
    let deny = SessionRecord {
        record_id: record_id(&denied_session, SessionEvent::Deny),
        session: denied_session,
        event: SessionEvent::Deny,
        grant: None,
        serial: None,
        key_id: None,
        reason: Some("untrusted_ca".into()),
        detail: Some("not signed by a trusted CA".into()),
        ..open.clone()
    };
    vec![
        open.clone(),
        open.for_event(SessionEvent::Warn, now + 480),
        open.for_event(SessionEvent::Close, now + 500),
        forced,
        deny,
    ]
}

/// Copies a log into seeds: each segment alone, all of them together, their checkpoints.
fn log_seeds(seeds: &mut Seeds, log_dir: &Path) -> Result<(), String> {
    let segments = list_segments(log_dir).map_err(io("listing segments"))?;
    let mut all = Vec::new();
    for (_, path) in &segments {
        let bytes = std::fs::read(path).map_err(io(&path.display().to_string()))?;
        seeds.put("audit_segment", &bytes).map_err(io("seed"))?;
        let mut pos = 0;
        while let Parsed::Record { kind, payload, len } = parse_record(&bytes[pos..]) {
            match kind {
                RecordKind::Checkpoint => seeds.put("note", payload).map_err(io("seed"))?,
                RecordKind::Event | RecordKind::Header => {}
            }
            pos += len;
        }
        all.extend(bytes);
    }
    for prefix in [[0u8, 0], [1, 2], [255, 1]] {
        let mut seed = prefix.to_vec();
        seed.extend(&all);
        seeds.put("audit_scan", &seed).map_err(io("seed"))?;
    }
    if let Ok(cp) = std::fs::read(log_dir.join(CHECKPOINT_FILE)) {
        seeds.put("note", &cp).map_err(io("seed"))?;
    }
    Ok(())
}

/// The state snapshot the daemon writes of `log` (its state from a full replay), whole and
/// cut short: `state_snapshot` seeds of its whole-file mode (byte 0 even).
fn snapshot_seeds(seeds: &mut Seeds, log: &AuditLog, empty_dir: &Path) -> Result<(), String> {
    use breakglass_ca::snapshot::{encode, load_state};
    let (state, _) = load_state(log, empty_dir).map_err(|e| e.to_string())?;
    let size = log.size();
    let root = log.root_at(size).map_err(|e| e.to_string())?;
    let bytes = encode(&state, size, &root, log)?;
    for cut in [bytes.len(), bytes.len() - 1, bytes.len() / 2] {
        let mut seed = vec![0u8];
        seed.extend(&bytes[..cut]);
        seeds.put("state_snapshot", &seed).map_err(io("seed"))?;
    }
    Ok(())
}

/// Writes the seeds into `out/<target>/`.
pub fn write(out: &Path, keys: &SeedKeys) -> Result<BTreeMap<&'static str, usize>, String> {
    let work = tempfile::tempdir().map_err(io("temporary directory"))?;
    let dev = work.path().join("dev");
    let setup = breakglass_ca::init::init_dev(&dev, "127.0.0.1:0".parse().expect("address"))
        .map_err(|e| format!("init --dev: {e}"))?;
    copy_secret(&keys.ca_key, &dev.join("ssh_ca"))?;
    std::fs::remove_file(dev.join("audit_key.pem")).map_err(io("audit key"))?;
    copy_secret(&keys.audit_key, &dev.join("audit_key.pem"))?;
    let config = Config::load(&setup.config).map_err(|e| e.to_string())?;
    let log_dir = config.audit.dir.clone();
    let origin = config.audit.origin.clone();
    let mut seeds = Seeds {
        out: out.to_owned(),
        count: BTreeMap::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("runtime"))?;
    let user_key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
        .and_then(|k| k.public_key().to_openssh())
        .map_err(|e| format!("user key: {e}"))?;
    let (certificates, krl) = {
        let _in_runtime = rt.enter();
        let daemon = Daemon::build(config).map_err(|e| e.to_string())?;
        let callers = inproc::callers(daemon.config());
        let mut s = Scenario {
            api: InProcess::new(&daemon),
            callers,
            seeds: &mut seeds,
            certificates: Vec::new(),
            krl: None,
        };
        rt.block_on(s.run(&user_key));
        (s.certificates, s.krl)
    };
    drop(rt);
    for c in &certificates {
        let mut parts = c.split(' ');
        if let (Some(t), Some(b)) = (parts.next(), parts.next()) {
            seeds
                .put("auth_info", format!("publickey {t} {b}\n").as_bytes())
                .map_err(io("seed"))?;
        }
    }
    if let Some(k) = krl {
        seeds.put("krl", &k).map_err(io("seed"))?;
    }
    log_seeds(&mut seeds, &log_dir)?;
    // The same events again, written by the log engine with small segments and one event
    // per batch, so that the log spans several segment files.
    let verifier = load_audit_key(&dev.join("audit_key.pem"), &origin)
        .map_err(|e| e.to_string())?
        .verifier();
    let mut leaves = Vec::new();
    scan_log(&log_dir, &verifier, &ScanOptions::default(), |e| {
        leaves.push(e.leaf.to_vec());
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let small_dir = work.path().join("small-segments");
    let mut engine = AuditConfig::new(&small_dir);
    engine.segment_max_bytes = 2048;
    let signer = load_audit_key(&dev.join("audit_key.pem"), &origin).map_err(|e| e.to_string())?;
    let small = AuditLog::open(engine, signer).map_err(|e| e.to_string())?;
    for leaf in &leaves {
        let event = Event::decode(leaf).map_err(|e| e.to_string())?;
        small.append_blocking(&event).map_err(|e| e.to_string())?;
    }
    snapshot_seeds(&mut seeds, &small, &work.path().join("no-snapshot"))?;
    small.shutdown_blocking();
    log_seeds(&mut seeds, &small_dir)?;
    if let Ok(text) =
        std::fs::read(log_dir.join("log.pub")).or_else(|_| std::fs::read(dev.join("log.pub")))
    {
        seeds.put("note", &text).map_err(io("seed"))?;
    }
    // Spool records (module and shipper JSON), wire records, registry files.
    let records = session_records("g-00000000000000aa", 42);
    for r in &records {
        let json = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        for which in [0u8, 1] {
            let mut seed = vec![which];
            seed.extend(&json);
            seeds.put("host_records", &seed).map_err(io("seed"))?;
        }
    }
    for r in &records {
        let mut seed = vec![2u8];
        seed.extend(r.to_wire().encode_to_vec());
        seeds.put("host_records", &seed).map_err(io("seed"))?;
    }
    let reg = Registration {
        session: records[0].session.clone(),
        grant: "g-00000000000000aa".into(),
        serial: 42,
        key_id: "breakglass/g-00000000000000aa/sre@example.com".into(),
        expires: records[0].start + 600,
        guard_pid: 4300,
        guard: Some("/usr/libexec/breakglass/breakglass-guard".into()),
    };
    let marker = RevocationMarker {
        grant: "g-00000000000000aa".into(),
        revoked_by: "user:approver@example.com".into(),
        reason: "INC-1 closed".into(),
        version: 3,
    };
    for (which, text) in [(3u8, reg.to_text()), (4, marker.to_text())] {
        let mut seed = vec![which];
        seed.extend(text.as_bytes());
        seeds.put("host_records", &seed).map_err(io("seed"))?;
    }
    // PAM module options: every option with its documented example, and each alone.
    let args: Vec<String> = breakglass_proto::pam_options::OPTIONS
        .iter()
        .map(|o| match o.example {
            Some(e) => format!("{}={e}", o.name),
            None => o.name.to_owned(),
        })
        .collect();
    seeds
        .put("pam_options", args.join("\0").as_bytes())
        .map_err(io("seed"))?;
    for a in &args[1..] {
        seeds
            .put("pam_options", format!("{}\0{a}", args[0]).as_bytes())
            .map_err(io("seed"))?;
    }
    seeds
        .put(
            "daemon_config",
            breakglass_ca::init::dev_config("127.0.0.1:7443".parse().expect("address")).as_bytes(),
        )
        .map_err(io("seed"))?;
    Ok(seeds.count)
}
