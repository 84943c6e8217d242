//! Notifications: a JSON document POSTed to each webhook of the request's
//! tier (and, when configured, one syslog line) on new pending requests,
//! approvals, denials, issuance, emergency use and revocation; the refusal
//! alert ([`RefusalAlert`]) to the `[refusals] webhooks`; and to every configured
//! webhook when the audit log is found rolled back or forked ([`log_notice`]).
//!
//! Issuance never waits for a notification: [`Notifier::send`] only puts the
//! notice on a bounded queue (`try_send`; when full, the notice is dropped and
//! counted). A background task delivers each notice to each URL in its own
//! task, with a per-attempt timeout and retries with doubling delays, so a
//! webhook that hangs or fails delays nothing but its own retries.
//!
//! A webhook gets the JSON [`Notice`] (or [`RefusalAlert`]) by default, or with
//! `format = "slack"` in its `[[webhooks]]` entry a Slack / Mattermost incoming-webhook
//! body (`slack.rs`). Logs show a webhook's scheme, host and port only
//! ([`shown_url`]).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use breakglass_proto::audit::Timestamp;
use breakglass_proto::text;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use crate::config::NotifySettings;
use crate::config::notifications::{WebhookFormat, shown_url};

mod slack;
use slack::Message as ChatMessage;

/// Most webhook deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 64;

/// What happened, as named in the JSON `event` field and the syslog line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A request waits for approvals.
    Pending,
    /// An approver approved (more may be needed).
    Approval,
    /// An approver denied the request.
    Denied,
    /// A certificate was issued.
    Issued,
    /// A certificate was issued as a declared emergency, without approval.
    Emergency,
    /// A grant was revoked.
    Revoked,
    /// A pending request timed out.
    Expired,
    /// The requester withdrew the request.
    Cancelled,
    /// A break-glass drill failed: alerted like an emergency.
    DrillFailed,
    /// An identity reached `[refusals] alert_threshold` refusals within the hour.
    RefusalThreshold,
    /// A host showed a checkpoint the audit log does not extend (rolled back or forked):
    /// issuance is stopped. Not about one request: sent to every webhook.
    LogConsistencyFailed,
    /// An administrator acknowledged the log fork: issuance resumes.
    LogForkAcknowledged,
}

impl NoticeKind {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::Pending => "pending",
            NoticeKind::Approval => "approval",
            NoticeKind::Denied => "denied",
            NoticeKind::Issued => "issued",
            NoticeKind::Emergency => "emergency",
            NoticeKind::Revoked => "revoked",
            NoticeKind::Expired => "expired",
            NoticeKind::Cancelled => "cancelled",
            NoticeKind::DrillFailed => "drill_failed",
            NoticeKind::RefusalThreshold => "refusal_threshold",
            NoticeKind::LogConsistencyFailed => "log_consistency_failed",
            NoticeKind::LogForkAcknowledged => "log_fork_acknowledged",
        }
    }

    /// The `event=` of its syslog line: `request_<name>` for notices about a request, the
    /// name itself for notices about the log.
    pub fn syslog_event(self) -> String {
        match self {
            NoticeKind::LogConsistencyFailed | NoticeKind::LogForkAcknowledged => {
                self.name().to_owned()
            }
            _ => format!("request_{}", self.name()),
        }
    }

    fn severity(self) -> bg_syslog::Severity {
        match self {
            NoticeKind::LogConsistencyFailed => bg_syslog::Severity::Critical,
            NoticeKind::Emergency
            | NoticeKind::Revoked
            | NoticeKind::DrillFailed
            | NoticeKind::LogForkAcknowledged => bg_syslog::Severity::Warning,
            _ => bg_syslog::Severity::Notice,
        }
    }
}

/// The JSON document sent to webhooks.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    /// What happened.
    pub event: NoticeKind,
    /// `r-…`.
    pub request_id: String,
    /// Identity of the requester.
    pub requester: String,
    /// Unix accounts, comma-separated (also as the list `principals`).
    pub principal: String,
    /// Unix accounts.
    pub principals: Vec<String>,
    /// Host scope.
    pub hosts: Vec<String>,
    /// Forced command, if any.
    pub command: Option<String>,
    /// The requester's reason.
    pub reason: String,
    /// Risk tier.
    pub tier: String,
    /// A declared emergency.
    pub emergency: bool,
    /// Distinct approvals the request needs.
    pub approvals_required: u32,
    /// Identities that approved so far.
    pub approvers: Vec<String>,
    /// The command an approver runs to approve.
    pub approve_command: String,
    /// Who caused this notice (`user:…`, `uid:…`, `daemon`).
    pub actor: String,
    /// Grant id, once issued.
    pub grant_id: Option<String>,
    /// Denial, cancellation or revocation reason.
    pub detail: Option<String>,
    /// Unix milliseconds.
    pub time: u64,
}

impl Notice {
    /// The notice as webhooks receive it: every text [escaped](text::escape), since chat
    /// and paging tools show these fields to people. The audit log keeps the exact text.
    #[must_use]
    pub fn escaped(&self) -> Notice {
        let e = |s: &String| text::escape(s).into_owned();
        let all = |v: &Vec<String>| v.iter().map(e).collect();
        Notice {
            event: self.event,
            request_id: e(&self.request_id),
            requester: e(&self.requester),
            principal: e(&self.principal),
            principals: all(&self.principals),
            hosts: all(&self.hosts),
            command: self.command.as_ref().map(e),
            reason: e(&self.reason),
            tier: e(&self.tier),
            emergency: self.emergency,
            approvals_required: self.approvals_required,
            approvers: all(&self.approvers),
            approve_command: e(&self.approve_command),
            actor: e(&self.actor),
            grant_id: self.grant_id.as_ref().map(e),
            detail: self.detail.as_ref().map(e),
            time: self.time,
        }
    }
}

impl RefusalAlert {
    /// The alert as webhooks receive it: every text [escaped](text::escape).
    #[must_use]
    pub fn escaped(&self) -> RefusalAlert {
        let e = |s: &String| text::escape(s).into_owned();
        RefusalAlert {
            summary: e(&self.summary),
            identity: e(&self.identity),
            kind: e(&self.kind),
            action: e(&self.action),
            reason: e(&self.reason),
            ..self.clone()
        }
    }
}

/// The JSON document sent to the refusal alert webhooks (`[refusals] webhooks`) when an
/// identity reaches the alert threshold: once per identity and hour.
#[derive(Clone, Debug, Serialize)]
pub struct RefusalAlert {
    /// Always [`NoticeKind::RefusalThreshold`].
    pub event: NoticeKind,
    /// One line for people: who, how often, the latest refusal.
    pub summary: String,
    /// The identity refused.
    pub identity: String,
    /// Its refusals recorded in the window so far (the threshold).
    pub refusals: u32,
    /// `[refusals] alert_threshold`.
    pub threshold: u32,
    /// `[refusals] per_identity_per_hour`: refusals beyond are no longer recorded one by one.
    pub limit: u32,
    /// Start of the window (RFC 3339, UTC).
    pub window_start: String,
    /// End of the window (RFC 3339, UTC).
    pub window_end: String,
    /// Kind of the latest refusal (`deny_rule`, `not_approver`, …).
    pub kind: String,
    /// What was refused: `request`, or the call (`approve`, `revoke`, …).
    pub action: String,
    /// The latest refusal as the caller was told it.
    pub reason: String,
    /// Audit log index of the latest refusal's event.
    pub audit_index: u64,
    /// Unix milliseconds.
    pub time: u64,
}

/// What a webhook receives.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Payload {
    Request(Notice),
    Refusals(RefusalAlert),
}

impl Payload {
    /// The payload as webhooks receive it: every text escaped.
    fn escaped(&self) -> Payload {
        match self {
            Payload::Request(n) => Payload::Request(n.escaped()),
            Payload::Refusals(a) => Payload::Refusals(a.escaped()),
        }
    }

    fn event(&self) -> NoticeKind {
        match self {
            Payload::Request(n) => n.event,
            Payload::Refusals(a) => a.event,
        }
    }
}

#[derive(Debug)]
struct Job {
    urls: Vec<String>,
    payload: Payload,
}

/// Delivery counters (for tests and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Notices accepted on the queue.
    pub queued: AtomicU64,
    /// Notices dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Successful POSTs.
    pub delivered: AtomicU64,
    /// Failed POST attempts (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Deliveries given up after the last retry.
    pub given_up: AtomicU64,
}

/// The notification queue and its delivery settings.
#[derive(Debug)]
pub struct Notifier {
    tx: mpsc::Sender<Job>,
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    /// Read once per delivery; a reload replaces them ([`Notifier::replace_settings`]).
    settings: Arc<ArcSwap<NotifySettings>>,
    syslog: Option<bg_syslog::Syslog>,
    counters: Arc<Counters>,
}

impl Notifier {
    /// A notifier whose queue holds `settings.queue` notices. Nothing is
    /// delivered until [`Notifier::start`] runs inside the runtime.
    pub fn new(settings: NotifySettings) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue);
        let syslog = settings
            .syslog
            .then(|| bg_syslog::Syslog::new("breakglass-ca", settings.syslog_socket.clone()));
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            syslog,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Puts the delivery settings of a reloaded configuration in force (timeout, retries,
    /// retry delay, client configuration) for deliveries that start from now on. The queue,
    /// the syslog socket and the CA bundle stay as they were at start-up
    /// ([`crate::reload`] refuses a change to them).
    pub(crate) fn replace_settings(&self, settings: NotifySettings) {
        self.settings.store(Arc::new(settings));
    }

    /// True when every notice also goes to syslog.
    pub fn syslog_enabled(&self) -> bool {
        self.syslog.is_some()
    }

    /// Delivery counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Queues a notice for `urls` and writes its syslog line. Never waits.
    pub fn send(&self, urls: &[String], notice: Notice) {
        if let Some(log) = &self.syslog {
            let approvers = notice.approvers.join(",");
            let hosts = notice.hosts.join(",");
            let grant = notice.grant_id.as_deref().unwrap_or("-");
            let detail = notice.detail.as_deref().unwrap_or("-");
            log.send(
                notice.event.severity(),
                &[
                    ("event", &notice.event.syslog_event()),
                    ("request", &notice.request_id),
                    ("requester", &notice.requester),
                    ("principal", &notice.principal),
                    ("hosts", &hosts),
                    ("tier", &notice.tier),
                    ("approvers", &approvers),
                    ("actor", &notice.actor),
                    ("reason", &notice.reason),
                    ("grant", grant),
                    ("detail", detail),
                ],
            );
        }
        self.queue(urls, Payload::Request(notice));
    }

    /// Queues a refusal alert for `urls` and writes its syslog line. Never waits.
    pub fn alert_refusals(&self, urls: &[String], alert: RefusalAlert) {
        if let Some(log) = &self.syslog {
            log.send(
                bg_syslog::Severity::Warning,
                &[
                    ("event", alert.event.name()),
                    ("identity", &alert.identity),
                    ("refusals", &alert.refusals.to_string()),
                    ("window_start", &alert.window_start),
                    ("refusal", &alert.kind),
                    ("action", &alert.action),
                    ("reason", &alert.reason),
                ],
            );
        }
        self.queue(urls, Payload::Refusals(alert));
    }

    fn queue(&self, urls: &[String], payload: Payload) {
        if urls.is_empty() {
            return;
        }
        let job = Job {
            urls: urls.to_vec(),
            payload,
        };
        match self.tx.try_send(job) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "notification queue full or closed; notice dropped");
            }
        }
    }

    /// Starts the delivery task (once; later calls do nothing).
    pub fn start(&self) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let settings = self.settings.clone();
        let counters = self.counters.clone();
        let tls = Arc::new(tls_connector(&settings.load().ca_bundle));
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            while let Some(job) = rx.recv().await {
                // Each format's body once per notice, for every URL of that format.
                let (mut json, mut slack) = (None, None);
                for url in job.urls {
                    let format = settings.load().format_of(&url);
                    let slot: &mut Option<Bytes> = match format {
                        WebhookFormat::Json => &mut json,
                        WebhookFormat::Slack => &mut slack,
                    };
                    let body = match slot {
                        Some(b) => b.clone(),
                        None => match render(&job.payload, format) {
                            Ok(b) => slot.insert(b).clone(),
                            Err(e) => {
                                tracing::error!(error = %e, "notice does not serialise");
                                continue;
                            }
                        },
                    };
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (settings, counters, tls, body) = (
                        settings.load_full(),
                        counters.clone(),
                        tls.clone(),
                        body.clone(),
                    );
                    let event = job.payload.event();
                    tokio::spawn(async move {
                        deliver(&url, body, event, &settings, &counters, &tls).await;
                        drop(permit);
                    });
                }
            }
        });
    }
}

/// The body a webhook of `format` receives.
fn render(payload: &Payload, format: WebhookFormat) -> Result<Bytes, serde_json::Error> {
    match format {
        WebhookFormat::Json => serde_json::to_vec(&payload.escaped()),
        WebhookFormat::Slack => serde_json::to_vec(&slack::body(&chat_message(payload))),
    }
    .map(Bytes::from)
}

/// What a chat message (`format = "slack"`) says about a payload, from its text escaped
/// for people (the Slack body escapes it again for mrkdwn).
fn chat_message(payload: &Payload) -> ChatMessage {
    match payload.escaped() {
        Payload::Request(n) => request_message(&n),
        Payload::Refusals(a) => ChatMessage {
            headline: format!(
                ":warning: {} was refused {} times within the hour",
                a.identity, a.refusals
            ),
            facts: vec![
                ("Identity", a.identity.clone()),
                (
                    "Refusals",
                    format!("{} (alert at {})", a.refusals, a.threshold),
                ),
                ("Latest action", a.action.clone()),
                ("Kind", a.kind.clone()),
                ("Window", format!("{} to {}", a.window_start, a.window_end)),
            ],
            paragraphs: vec![
                ("Summary", a.summary.clone()),
                ("Latest reason", a.reason.clone()),
            ],
            command: None,
            context: format!(
                "breakglass-ca · {} · audit entry {}",
                a.event.name(),
                a.audit_index
            ),
        },
    }
}

fn request_message(n: &Notice) -> ChatMessage {
    let (id, who, actor) = (&n.request_id, &n.requester, &n.actor);
    let grant = n.grant_id.as_deref().unwrap_or("-");
    let headline = match n.event {
        NoticeKind::Pending => format!(
            "Request {id} by {who} waits for {} approval(s)",
            n.approvals_required
        ),
        NoticeKind::Approval => format!(
            "Request {id} by {who} approved by {actor} ({}/{})",
            n.approvers.len(),
            n.approvals_required
        ),
        NoticeKind::Denied => format!("Request {id} by {who} denied by {actor}"),
        NoticeKind::Issued => format!("Request {id} by {who} issued: grant {grant}"),
        NoticeKind::Emergency => format!(
            ":rotating_light: EMERGENCY: {who} took access without approval (request {id}, grant {grant}); the grant must be reviewed"
        ),
        NoticeKind::Revoked => format!("Grant {grant} of {who} revoked by {actor}"),
        NoticeKind::Expired => format!("Request {id} by {who} expired without enough approvals"),
        NoticeKind::Cancelled => format!("Request {id} by {who} cancelled by {actor}"),
        NoticeKind::DrillFailed => {
            format!(":rotating_light: Break-glass drill {id} by {who} failed")
        }
        NoticeKind::RefusalThreshold => format!("Refusals of {who}"),
        NoticeKind::LogConsistencyFailed => {
            ":rotating_light: The audit log was rolled back or forked: issuance is stopped"
                .to_owned()
        }
        NoticeKind::LogForkAcknowledged => {
            format!("The audit log fork was acknowledged by {actor}: issuance resumes")
        }
    };
    let about_request = !id.is_empty();
    let facts = if about_request {
        vec![
            ("Request", id.clone()),
            ("Requester", who.clone()),
            ("Access", format!("{}@{}", n.principal, n.hosts.join(","))),
            ("Tier", n.tier.clone()),
            (
                "Approvals",
                format!("{}/{}", n.approvers.len(), n.approvals_required),
            ),
            ("Command", n.command.clone().unwrap_or_default()),
        ]
    } else {
        Vec::new()
    };
    let mut paragraphs = Vec::new();
    if about_request {
        paragraphs.push(("Reason", n.reason.clone()));
    }
    paragraphs.push(("Detail", n.detail.clone().unwrap_or_default()));
    // The approve command while approvals are missing: what the channel is asked to do.
    let wants_approval = matches!(n.event, NoticeKind::Pending | NoticeKind::Approval)
        && n.approvers.len() < n.approvals_required as usize
        && !n.approve_command.is_empty();
    ChatMessage {
        headline,
        facts,
        paragraphs,
        command: wants_approval.then(|| ("Approve with", n.approve_command.clone())),
        context: format!(
            "breakglass-ca · {} · by {actor} · {}",
            n.event.name(),
            breakglass_proto::audit::fields::rfc3339(n.time / 1000)
        ),
    }
}

/// POSTs with retries; logs the outcome.
async fn deliver(
    url: &str,
    body: Bytes,
    event: NoticeKind,
    settings: &NotifySettings,
    counters: &Counters,
    tls: &Option<tokio_rustls::TlsConnector>,
) {
    let mut delay = settings.retry_delay;
    for attempt in 0..=settings.retries {
        let result = tokio::time::timeout(settings.timeout, post(url, body.clone(), tls)).await;
        let why = match result {
            Ok(Ok(())) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(url = %shown_url(url), event = event.name(), attempt, "webhook delivered");
                return;
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {}", crate::fmt_duration(settings.timeout)),
        };
        counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(url = %shown_url(url), event = event.name(), attempt, error = %why, "webhook failed");
        if attempt < settings.retries {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(300));
        }
    }
    counters.given_up.fetch_add(1, Ordering::Relaxed);
    tracing::error!(url = %shown_url(url), event = event.name(), "webhook given up after retries");
}

fn tls_connector(bundle: &std::path::Path) -> Option<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(bundle).ok()?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One HTTP/1.1 POST of a JSON body; any 2xx answer is success.
async fn post(
    url: &str,
    body: Bytes,
    tls: &Option<tokio_rustls::TlsConnector>,
) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let connect_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = TcpStream::connect((connect_host.as_str(), port))
        .await
        .map_err(|e| format!("connect {connect_host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "breakglass-ca")
        .body(Full::new(body))
        .map_err(|e| format!("building request: {e}"))?;
    let status = if https {
        let tls = tls
            .as_ref()
            .ok_or("https webhook but no CA bundle could be read (notifications.ca_bundle)")?;
        let name = rustls::pki_types::ServerName::try_from(connect_host.clone())
            .map_err(|e| format!("server name {connect_host}: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(hyper_util::rt::TokioIo::new(stream), req).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

async fn send<T>(io: T, req: hyper::Request<Full<Bytes>>) -> Result<hyper::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"));
    let status = match resp {
        Ok(r) => {
            let status = r.status();
            // Read (and drop) the body so the exchange completes cleanly.
            let _ = r.into_body().collect().await;
            Ok(status)
        }
        Err(e) => Err(e),
    };
    conn.abort();
    status
}

/// Builds a notice about the audit log itself (no request): `detail` says what happened
/// and what to do; the request fields are empty.
pub fn log_notice(
    event: NoticeKind,
    actor: &breakglass_proto::audit::Actor,
    detail: String,
    at: Timestamp,
) -> Notice {
    Notice {
        event,
        request_id: String::new(),
        requester: String::new(),
        principal: String::new(),
        principals: Vec::new(),
        hosts: Vec::new(),
        command: None,
        reason: String::new(),
        tier: String::new(),
        emergency: false,
        approvals_required: 0,
        approvers: Vec::new(),
        approve_command: String::new(),
        actor: actor.to_string(),
        grant_id: None,
        detail: Some(detail),
        time: at.0,
    }
}

/// The command an approver runs to approve request `id` (with the client config the
/// notifications name, if any).
pub fn approve_command(
    client_config: Option<&str>,
    id: breakglass_proto::audit::RequestId,
) -> String {
    match client_config {
        Some(c) => format!("breakglass --config {c} approve {id}"),
        None => format!("breakglass approve {id}"),
    }
}

/// Builds the notice for a request from its recorded creation event.
pub fn notice(
    event: NoticeKind,
    created: &breakglass_proto::audit::event::RequestCreated,
    approvers: Vec<String>,
    actor: &breakglass_proto::audit::Actor,
    client_config: Option<&str>,
    at: Timestamp,
) -> Notice {
    let approve_command = approve_command(client_config, created.request_id);
    Notice {
        event,
        request_id: created.request_id.to_string(),
        requester: created.requester.clone(),
        principal: created.principals.join(","),
        principals: created.principals.clone(),
        hosts: created.hosts.clone(),
        command: created.command.clone(),
        reason: created.reason.clone(),
        tier: created.tier.clone(),
        emergency: created.emergency,
        approvals_required: created.approvals_required,
        approvers,
        approve_command,
        actor: actor.to_string(),
        grant_id: None,
        detail: None,
        time: at.0,
    }
}

#[cfg(test)]
mod tests;
