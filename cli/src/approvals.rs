//! Requests that wait for approval, and the approver's and reviewer's
//! commands: `request` (live), `fetch`, `pending`, `show`, `approve`, `deny`,
//! `cancel`, `review list`, `review ID`.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use breakglass_proto::v1::{
    ApproveRequest, CancelRequest, DenyRequest, ListPendingRequest, ListReviewsRequest,
    RequestInfo, RequestRef, RequestState, ReviewItem, ReviewRequest,
};

use breakglass_proto::text::escaped as esc;

use crate::commands::{self, RequestArgs, RequestOutcome};
use crate::connect::{self, Answer};
use crate::error::CliError;
use crate::settings::Target;

/// How `breakglass request` behaves beyond [`RequestArgs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMode {
    /// Declare an emergency.
    pub emergency: bool,
    /// Return the request id instead of waiting for approval.
    pub no_wait: bool,
}

/// What `breakglass request` ended with.
#[derive(Debug)]
pub enum RequestResult {
    /// The certificate was issued and written.
    Issued(Box<RequestOutcome>),
    /// The request waits for approval (`--no-wait`).
    Pending(Box<RequestInfo>),
}

fn state_of(info: &RequestInfo) -> RequestState {
    RequestState::try_from(info.state).unwrap_or(RequestState::Unspecified)
}

/// The state name shown to people.
pub fn state_name(info: &RequestInfo) -> &'static str {
    match state_of(info) {
        RequestState::Pending => "pending",
        RequestState::Approved => "approved",
        RequestState::Issued => "issued",
        RequestState::Denied => "denied",
        RequestState::Expired => "expired",
        RequestState::Cancelled => "cancelled",
        RequestState::Unspecified => "unknown",
    }
}

fn approved_by(info: &RequestInfo) -> String {
    if info.approvals.is_empty() {
        "nobody yet".to_owned()
    } else {
        info.approvals
            .iter()
            .map(|a| esc(&a.approver).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One line about a waiting request: who must approve, who did, time left.
pub fn progress_line(info: &RequestInfo) -> String {
    progress_line_at(info, info.seconds_left)
}

/// [`progress_line`] with `seconds_left` in place of the time left the daemon last sent
/// (the live wait counts down between updates).
pub fn progress_line_at(info: &RequestInfo, seconds_left: i64) -> String {
    match state_of(info) {
        RequestState::Pending => format!(
            "{id} pending: tier {tier} needs {n} approval(s) from {groups}; approved by {who} ({got}/{n}); {left} left",
            id = esc(&info.request_id),
            tier = esc(&info.tier),
            n = info.approvals_required,
            groups = if info.approver_groups.is_empty() {
                "nobody".to_owned()
            } else {
                esc(&info.approver_groups.join(", ")).to_string()
            },
            who = approved_by(info),
            got = info.approvals.len(),
            left = humantime::format_duration(Duration::from_secs(seconds_left.max(0) as u64)),
        ),
        RequestState::Approved => format!(
            "{} approved by {}; issuing",
            esc(&info.request_id),
            approved_by(info)
        ),
        _ => format!("{} {}", esc(&info.request_id), state_name(info)),
    }
}

fn final_error(info: &RequestInfo) -> CliError {
    let id = esc(&info.request_id);
    match state_of(info) {
        RequestState::Denied => CliError::Denied(format!(
            "request {id} was denied by {}: {}",
            esc(&info.decided_by),
            esc(&info.decision_reason)
        )),
        RequestState::Expired => CliError::NotIssued(format!(
            "request {id} expired: it did not get {} approval(s) from {} in time; ask again or page an approver",
            info.approvals_required,
            esc(&info.approver_groups.join(", "))
        )),
        RequestState::Cancelled => CliError::NotIssued(format!(
            "request {id} was cancelled by {}",
            esc(&info.decided_by)
        )),
        RequestState::Issued => CliError::NotIssued(format!(
            "request {id} was issued (grant {}), but the daemon cannot produce its certificate any more (the CA key changed); ask again",
            esc(&info.grant_id)
        )),
        _ => CliError::NotIssued(format!("request {id} is {}", state_name(info))),
    }
}

/// Creates a request; when it must wait, streams its state to `on_update`
/// until it ends, then writes the certificate next to the key. A lost connection is
/// resumed as [`request_live_noting`] does, its notes on stderr.
pub async fn request_live(
    target: &Target,
    args: &RequestArgs,
    mode: RequestMode,
    on_update: impl FnMut(&RequestInfo),
) -> Result<RequestResult, CliError> {
    request_live_noting(target, args, mode, on_update, |note| {
        eprintln!("breakglass: {note}");
    })
    .await
}

/// [`request_live`], with what the wait says about its connection (lost, reconnected)
/// going to `on_note`: when the connection to the daemon drops (a restart, a network
/// failure), the wait reconnects with backoff ([`RECONNECT_FIRST`] doubling to
/// [`RECONNECT_MAX`]) until the request's own expiry, and resumes by request id.
pub async fn request_live_noting(
    target: &Target,
    args: &RequestArgs,
    mode: RequestMode,
    mut on_update: impl FnMut(&RequestInfo),
    mut on_note: impl FnMut(&str),
) -> Result<RequestResult, CliError> {
    let (paths, public_key) = commands::read_public_key(args.public_key.as_deref())?;
    let mut client = connect::client(target)?;
    let created = client
        .create_request(commands::wire_request(args, public_key, mode.emergency))
        .await
        .answer(target)?;
    if let Some(cert) = created.certificate {
        let outcome = commands::save_certificate(paths, cert, args.add_to_agent.as_deref())?;
        return Ok(RequestResult::Issued(Box::new(outcome)));
    }
    let info = created
        .request
        .ok_or_else(|| CliError::Unavailable("the daemon answered without the request".into()))?;
    on_update(&info);
    if mode.no_wait {
        return Ok(RequestResult::Pending(Box::new(info)));
    }
    let mut wait = Wait::new(info);
    let mut stream = match client.watch_request(wait.request_ref()).await {
        Ok(r) => Some(r.into_inner()),
        Err(s) if connection_lost(&s) => {
            wait.lost(target, &why(&s), &mut on_note);
            None
        }
        Err(s) => return Err(connect::failure(target, s)),
    };
    loop {
        let Some(open) = stream.as_mut() else {
            stream = Some(wait.reconnect(target, &mut on_note).await?);
            continue;
        };
        let why = match tokio::time::timeout(WATCH_SILENCE, open.message()).await {
            Ok(Ok(Some(update))) => {
                if let Some(info) = &update.request {
                    wait.resumed(info, &mut on_note);
                }
                if let Some(cert) = update.certificate {
                    let outcome =
                        commands::save_certificate(paths, cert, args.add_to_agent.as_deref())?;
                    return Ok(RequestResult::Issued(Box::new(outcome)));
                }
                if let Some(info) = update.request {
                    on_update(&info);
                    wait.seen(info);
                }
                continue;
            }
            Ok(Ok(None)) if !wait.waiting() => return Err(final_error(&wait.last)),
            Ok(Ok(None)) => "the daemon ended the stream while the request waits".to_owned(),
            Ok(Err(s)) if connection_lost(&s) => why(&s),
            Ok(Err(s)) => return Err(connect::failure(target, s)),
            Err(_) => format!(
                "nothing heard for {}",
                humantime::format_duration(WATCH_SILENCE)
            ),
        };
        wait.lost(target, &why, &mut on_note);
        stream = None;
    }
}

/// First wait before reconnecting after the connection to the daemon dropped.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How long after the request's expiry the wait still tries to learn its final state.
const RECONNECT_GRACE: Duration = Duration::from_secs(5);
/// The daemon refreshes a watched request every few seconds: a stream silent this long
/// is dead (a network that drops packets without closing the connection).
const WATCH_SILENCE: Duration = Duration::from_secs(30);

/// A failure of the watch that a new connection may cure: the connection failed or
/// died (the daemon restarting, the network), or the daemon was briefly unavailable.
/// The daemon's own refusals (not found, permission denied, …) end the wait.
fn connection_lost(s: &tonic::Status) -> bool {
    use tonic::Code;
    CliError::is_transport(s)
        || matches!(
            s.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        )
}

/// Why a connection was lost, in a few words: the status's message (its Display adds
/// the code and the whole chain of causes).
fn why(s: &tonic::Status) -> String {
    if s.message().is_empty() {
        s.code().description().to_owned()
    } else {
        s.message().to_owned()
    }
}

/// The live wait for one request: its last known state, and the connection outage the
/// wait is in, if any.
struct Wait {
    last: RequestInfo,
    /// When `last` arrived (its `seconds_left` counts from then).
    last_at: std::time::Instant,
    /// Since when, and why, the connection is lost (`None`: connected).
    outage: Option<(std::time::Instant, String)>,
    /// The outage ended with a new watch, whose first update is not seen yet.
    resuming: bool,
}

impl Wait {
    fn new(info: RequestInfo) -> Self {
        Self {
            last: info,
            last_at: std::time::Instant::now(),
            outage: None,
            resuming: false,
        }
    }

    fn request_ref(&self) -> RequestRef {
        RequestRef {
            request_id: self.last.request_id.clone(),
        }
    }

    /// The request may still change: pending, or approved and being issued.
    fn waiting(&self) -> bool {
        matches!(
            state_of(&self.last),
            RequestState::Pending | RequestState::Approved
        )
    }

    fn seen(&mut self, info: RequestInfo) {
        self.last = info;
        self.last_at = std::time::Instant::now();
    }

    /// When the request expires, by the last word of the daemon (plus a grace to learn
    /// its final state).
    fn expires(&self) -> std::time::Instant {
        self.last_at
            + Duration::from_secs(u64::try_from(self.last.seconds_left).unwrap_or(0))
            + RECONNECT_GRACE
    }

    /// The connection is lost: says so, once per outage.
    fn lost(&mut self, target: &Target, why: &str, on_note: &mut impl FnMut(&str)) {
        self.resuming = false;
        if self.outage.is_none() {
            let left = (self.expires() - RECONNECT_GRACE)
                .saturating_duration_since(std::time::Instant::now());
            on_note(&format!(
                "lost the connection to breakglass-ca at {} ({}); retrying until request {} expires ({} left)",
                target.shown(),
                esc(why),
                esc(&self.last.request_id),
                humantime::format_duration(Duration::from_secs(left.as_secs())),
            ));
        }
        self.outage
            .get_or_insert_with(|| (std::time::Instant::now(), String::new()))
            .1 = why.to_owned();
    }

    /// The first update after a reconnect: says so, once, with the request's state.
    fn resumed(&mut self, info: &RequestInfo, on_note: &mut impl FnMut(&str)) {
        if !self.resuming {
            return;
        }
        self.resuming = false;
        if let Some((since, _)) = self.outage.take() {
            let state = match state_of(info) {
                RequestState::Pending => "still pending",
                _ => state_name(info),
            };
            on_note(&format!(
                "reconnected after {}; request {} {state}",
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                esc(&info.request_id),
            ));
        }
    }

    /// Opens a new watch of the request, with backoff, until it expires.
    async fn reconnect(
        &mut self,
        target: &Target,
        on_note: &mut impl FnMut(&str),
    ) -> Result<tonic::Streaming<breakglass_proto::v1::RequestUpdate>, CliError> {
        let mut delay = RECONNECT_FIRST;
        // Bounded: every attempt waits at least RECONNECT_FIRST, until the expiry.
        loop {
            let now = std::time::Instant::now();
            let deadline = self.expires();
            if now >= deadline {
                let why = self.outage.as_ref().map_or("", |(_, w)| w.as_str());
                return Err(CliError::Unavailable(format!(
                    "lost the connection to breakglass-ca at {} and could not reconnect before request {id} expired (last error: {why}); see what became of it with `breakglass show {id}` once the daemon answers, or ask again",
                    target.shown(),
                    id = esc(&self.last.request_id),
                    why = esc(why),
                )));
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(RECONNECT_MAX);
            let mut client = connect::client(target)?;
            match client.watch_request(self.request_ref()).await {
                Ok(r) => {
                    self.resuming = true;
                    return Ok(r.into_inner());
                }
                Err(s) if connection_lost(&s) => self.lost(target, &why(&s), on_note),
                Err(s) => return Err(connect::failure(target, s)),
            }
        }
    }
}

/// `breakglass fetch ID`: the certificate of an issued request, written next to the key.
pub async fn fetch(
    target: &Target,
    request_id: &str,
    public_key: Option<&Path>,
) -> Result<RequestOutcome, CliError> {
    let (paths, _) = commands::read_public_key(public_key)?;
    let mut client = connect::client(target)?;
    let response = client
        .fetch(RequestRef {
            request_id: request_id.to_owned(),
        })
        .await
        .answer(target)?;
    commands::save_certificate(paths, response, None)
}

/// `breakglass pending`.
pub async fn pending(target: &Target) -> Result<Vec<RequestInfo>, CliError> {
    let mut client = connect::client(target)?;
    Ok(client
        .list_pending(ListPendingRequest {})
        .await
        .answer(target)?
        .requests)
}

/// `breakglass show ID`.
pub async fn show(target: &Target, request_id: &str) -> Result<RequestInfo, CliError> {
    let mut client = connect::client(target)?;
    client
        .get_request(RequestRef {
            request_id: request_id.to_owned(),
        })
        .await
        .answer(target)
}

/// `breakglass approve ID [--comment]`.
pub async fn approve(
    target: &Target,
    request_id: &str,
    comment: &str,
) -> Result<RequestInfo, CliError> {
    let mut client = connect::client(target)?;
    client
        .approve(ApproveRequest {
            request_id: request_id.to_owned(),
            comment: comment.to_owned(),
        })
        .await
        .answer(target)
}

/// `breakglass deny ID --reason`.
pub async fn deny(
    target: &Target,
    request_id: &str,
    reason: &str,
) -> Result<RequestInfo, CliError> {
    let mut client = connect::client(target)?;
    client
        .deny(DenyRequest {
            request_id: request_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .answer(target)
}

/// `breakglass cancel ID`.
pub async fn cancel(
    target: &Target,
    request_id: &str,
    reason: &str,
) -> Result<RequestInfo, CliError> {
    let mut client = connect::client(target)?;
    client
        .cancel(CancelRequest {
            request_id: request_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .answer(target)
}

/// `breakglass review list [--all]`.
pub async fn review_list(target: &Target, all: bool) -> Result<Vec<ReviewItem>, CliError> {
    let mut client = connect::client(target)?;
    Ok(client
        .list_reviews(ListReviewsRequest {
            include_reviewed: all,
        })
        .await
        .answer(target)?
        .items)
}

/// `breakglass review ID --verdict ok|misuse --note TEXT`.
pub async fn review(
    target: &Target,
    grant_id: &str,
    verdict: &str,
    note: &str,
) -> Result<ReviewItem, CliError> {
    let mut client = connect::client(target)?;
    client
        .review(ReviewRequest {
            grant_id: grant_id.to_owned(),
            verdict: verdict.to_owned(),
            note: note.to_owned(),
        })
        .await
        .answer(target)
}

fn time(secs: i64) -> String {
    if secs <= 0 {
        return "-".to_owned();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs as u64)).to_string()
}

/// A request in full, for `show`, `approve`, `deny` and `cancel`.
pub fn describe_request(info: &RequestInfo) -> String {
    let mut s = format!(
        "{id}  {state}{emergency}\n  requester  {req}\n  access     {p}@{h}  command {cmd}  ttl {ttl}\n  reason     {reason}\n  tier       {tier} (rule {rule}): {n} approval(s) from {groups}\n  created    {created}  expires {expires}\n",
        id = esc(&info.request_id),
        state = state_name(info),
        emergency = if info.emergency { "  EMERGENCY" } else { "" },
        req = esc(&info.requester),
        p = esc(&info.principals.join(",")),
        h = esc(&info.hosts.join(",")),
        cmd = if info.command.is_empty() {
            "(interactive)".to_owned()
        } else {
            esc(&info.command).to_string()
        },
        ttl = humantime::format_duration(Duration::from_secs(info.ttl_seconds.max(0) as u64)),
        reason = esc(&info.reason),
        tier = esc(&info.tier),
        rule = esc(&info.rule),
        n = info.approvals_required,
        groups = if info.approver_groups.is_empty() {
            "-".to_owned()
        } else {
            esc(&info.approver_groups.join(", ")).to_string()
        },
        created = time(info.created_at),
        expires = time(info.expires_at),
    );
    for a in &info.approvals {
        s.push_str(&format!(
            "  approved   by {} at {}{}\n",
            esc(&a.approver),
            time(a.at),
            if a.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&a.comment))
            }
        ));
    }
    if !info.grant_id.is_empty() {
        s.push_str(&format!("  grant      {}\n", esc(&info.grant_id)));
    }
    if !info.decided_by.is_empty() {
        s.push_str(&format!(
            "  {} by {}{}\n",
            state_name(info),
            esc(&info.decided_by),
            if info.decision_reason.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&info.decision_reason))
            }
        ));
    }
    if info.can_approve {
        s.push_str(&format!("  approve with: {}\n", esc(&info.approve_command)));
    }
    s
}

/// One line per pending request, for `pending`.
pub fn describe_pending(list: &[RequestInfo]) -> String {
    if list.is_empty() {
        return "No pending requests.\n".to_owned();
    }
    let mut s = String::new();
    for i in list {
        s.push_str(&format!(
            "{id}  {req}  {p}@{h}  tier {tier}  {got}/{n} approvals  {left} left{mine}\n    reason: {reason}\n",
            id = esc(&i.request_id),
            req = esc(&i.requester),
            p = esc(&i.principals.join(",")),
            h = esc(&i.hosts.join(",")),
            tier = esc(&i.tier),
            got = i.approvals.len(),
            n = i.approvals_required,
            left = humantime::format_duration(Duration::from_secs(i.seconds_left.max(0) as u64)),
            mine = if i.can_approve { "  (you may approve)" } else { "" },
            reason = esc(&i.reason),
        ));
    }
    s
}

/// Review items, for `review list` and `review ID`.
pub fn describe_reviews(items: &[ReviewItem]) -> String {
    if items.is_empty() {
        return "No emergency grants awaiting review.\n".to_owned();
    }
    let mut s = String::new();
    for g in items {
        s.push_str(&format!(
            "{grant}  {req}  {p}@{h}  tier {tier}  serial {serial}  {status}\n    request {rid}: {reason}\n    valid {from} to {to}\n",
            grant = esc(&g.grant_id),
            req = esc(&g.requester),
            p = esc(&g.principals.join(",")),
            h = esc(&g.hosts.join(",")),
            tier = esc(&g.tier),
            serial = g.serial,
            status = if g.verdict.is_empty() {
                "UNREVIEWED".to_owned()
            } else {
                format!(
                    "reviewed {} by {}: {}",
                    esc(&g.verdict),
                    esc(&g.reviewer),
                    esc(&g.note)
                )
            },
            rid = esc(&g.request_id),
            reason = esc(&g.reason),
            from = time(g.valid_after),
            to = time(g.valid_before),
        ));
        if g.sessions.is_empty() {
            s.push_str("    no sessions reported\n");
        }
        for x in &g.sessions {
            s.push_str(&format!(
                "    session {host}/{sid} as {user} from {addr}: opened {open}, closed {close}{ended}\n",
                host = esc(&x.host),
                sid = esc(&x.session_id),
                user = esc(&x.principal),
                addr = if x.remote_addr.is_empty() {
                    "?".to_owned()
                } else {
                    esc(&x.remote_addr).to_string()
                },
                open = time(x.opened_at),
                close = time(x.closed_at),
                ended = if x.ended.is_empty() {
                    String::new()
                } else {
                    format!(", ended by breakglass ({})", esc(&x.ended))
                },
            ));
            if !x.recording.is_empty() {
                s.push_str(&format!(
                    "      recording {state}: {sha}, {bytes} bytes, {secs}s{hint}\n",
                    state = esc(&x.recording),
                    sha = esc(&x.recording_sha256),
                    bytes = x.recording_bytes,
                    secs = x.recording_duration_ms / 1000,
                    hint = if x.recording == "stored" {
                        format!(" (breakglass audit play {})", esc(&x.session_id))
                    } else {
                        String::new()
                    },
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(seconds_left: i64) -> RequestInfo {
        RequestInfo {
            request_id: "r-0123456789abcdef".into(),
            state: RequestState::Pending as i32,
            seconds_left,
            ..RequestInfo::default()
        }
    }

    #[test]
    fn a_dead_connection_is_retried_and_the_daemons_refusals_are_not() {
        assert!(connection_lost(&tonic::Status::unavailable("")));
        assert!(connection_lost(&tonic::Status::unknown(
            "h2 protocol error: error reading a body from connection"
        )));
        assert!(connection_lost(&tonic::Status::cancelled("")));
        assert!(!connection_lost(&tonic::Status::not_found(
            "no request r-1"
        )));
        assert!(!connection_lost(&tonic::Status::permission_denied(
            "only the requester may watch"
        )));
    }

    #[test]
    fn the_reason_shown_is_the_status_message() {
        assert_eq!(
            why(&tonic::Status::unknown(
                "h2 protocol error: error reading a body"
            )),
            "h2 protocol error: error reading a body"
        );
        assert_eq!(
            why(&tonic::Status::unavailable("")),
            tonic::Code::Unavailable.description()
        );
    }

    #[test]
    fn the_loss_and_the_return_are_said_once_per_outage() {
        let target = Target::Unix("/run/breakglass/admin.sock".into());
        let mut notes = Vec::new();
        let mut w = Wait::new(pending(600));
        let mut note = |n: &str| notes.push(n.to_owned());
        // A first update without an outage says nothing.
        w.resumed(&pending(600), &mut note);
        w.lost(&target, "transport error", &mut note);
        w.lost(&target, "connection refused", &mut note);
        w.resuming = true;
        w.resumed(&pending(590), &mut note);
        w.resumed(&pending(585), &mut note);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("lost the connection to breakglass-ca at ")
                && notes[0].contains(
                    "(transport error); retrying until request r-0123456789abcdef expires ("
                ),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("reconnected after ")
                && notes[1].ends_with("; request r-0123456789abcdef still pending"),
            "{notes:?}"
        );
        assert!(w.outage.is_none());
    }

    #[tokio::test]
    async fn the_wait_gives_up_when_the_request_has_expired() {
        let target = Target::Unix("/nonexistent/breakglass-test/admin.sock".into());
        let mut w = Wait::new(pending(0));
        w.last_at -= RECONNECT_GRACE;
        let mut notes = Vec::new();
        w.lost(&target, "transport error", &mut |n: &str| {
            notes.push(n.to_owned())
        });
        let e = w
            .reconnect(&target, &mut |n: &str| notes.push(n.to_owned()))
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 69, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("could not reconnect before request r-0123456789abcdef expired")
                && text.contains("breakglass show r-0123456789abcdef"),
            "{text}"
        );
    }
}
