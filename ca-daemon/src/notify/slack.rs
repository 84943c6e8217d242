//! The Slack / Mattermost incoming-webhook body of a notice (`format = "slack"` of a
//! `[[webhooks]]` entry): a `text` that says it all (the notification preview, and what
//! Mattermost shows) and Block Kit `blocks` that lay it out (Slack).
//!
//! Every text the daemon does not write itself (requester, reason, command, actor, …)
//! is first escaped for people ([`super::Notice::escaped`]: control characters and
//! look-alikes) and then for Slack's mrkdwn: `&`, `<` and `>`, so that a reason cannot
//! make a link, mention a channel (`<!channel>`) or a user. No secret is in a notice.

use breakglass_proto::audit::fields::rfc3339;
use serde_json::{Value, json};

use super::{Notice, NoticeKind, Payload, RefusalAlert};

/// Longest text of one section (Slack refuses more than 3000 characters).
const MAX_SECTION: usize = 2900;
/// Longest text of one field (Slack refuses more than 2000 characters).
const MAX_FIELD: usize = 1900;

/// `text` escaped for Slack mrkdwn (`&`, `<`, `>`; the only characters it interprets as
/// markup that links or mentions).
#[must_use]
pub fn mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}})
}

fn fields(pairs: &[(&str, String)]) -> Value {
    let fields: Vec<Value> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{v}"), MAX_FIELD)}))
        .collect();
    json!({"type": "section", "fields": fields})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION)}]})
}

/// The Slack body of a payload, from its people-escaped form.
pub(super) fn body(payload: &Payload) -> Value {
    match payload.escaped() {
        Payload::Request(n) => notice(&n),
        Payload::Refusals(a) => refusals(&a),
    }
}

/// What happened, in one line (mrkdwn, escaped).
fn headline(n: &Notice) -> String {
    let id = mrkdwn(&n.request_id);
    let who = mrkdwn(&n.requester);
    let actor = mrkdwn(&n.actor);
    let grant = mrkdwn(n.grant_id.as_deref().unwrap_or("-"));
    match n.event {
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
    }
}

/// The approve command, when an approval is what the notice asks for.
fn approve_command(n: &Notice) -> Option<String> {
    let wants = matches!(n.event, NoticeKind::Pending | NoticeKind::Approval)
        && (n.approvers.len() as u64) < u64::from(n.approvals_required)
        && !n.approve_command.is_empty();
    wants.then(|| mrkdwn(&n.approve_command))
}

fn notice(n: &Notice) -> Value {
    let head = headline(n);
    let time = rfc3339(n.time / 1000);
    let about_request = !n.request_id.is_empty();
    let access = if about_request {
        format!("{}@{}", mrkdwn(&n.principal), mrkdwn(&n.hosts.join(",")))
    } else {
        String::new()
    };
    let approve = approve_command(n);
    let detail = n.detail.as_deref().map(mrkdwn).unwrap_or_default();

    // The text alone says everything (previews, Mattermost, clients without blocks).
    let mut text = format!("breakglass: {head}");
    if about_request {
        text.push_str(&format!(
            "\nRequester: {}; access: {access}; tier: {}",
            mrkdwn(&n.requester),
            mrkdwn(&n.tier)
        ));
        if let Some(c) = &n.command {
            text.push_str(&format!("; command: {}", mrkdwn(c)));
        }
        text.push_str(&format!("\nReason: {}", mrkdwn(&n.reason)));
    }
    if !detail.is_empty() {
        text.push_str(&format!("\n{detail}"));
    }
    if let Some(cmd) = &approve {
        text.push_str(&format!("\nApprove with: `{cmd}`"));
    }

    let mut blocks = vec![section(&format!("*{head}*"))];
    if about_request {
        blocks.push(fields(&[
            ("Request", mrkdwn(&n.request_id)),
            ("Requester", mrkdwn(&n.requester)),
            ("Access", access),
            ("Tier", mrkdwn(&n.tier)),
            (
                "Approvals",
                format!("{}/{}", n.approvers.len(), n.approvals_required),
            ),
            (
                "Command",
                n.command.as_deref().map(mrkdwn).unwrap_or_default(),
            ),
        ]));
        blocks.push(section(&format!("*Reason*\n{}", mrkdwn(&n.reason))));
    }
    if !detail.is_empty() {
        blocks.push(section(&detail));
    }
    if let Some(cmd) = &approve {
        blocks.push(section(&format!("Approve with:\n```{cmd}```")));
    }
    blocks.push(context(&format!(
        "breakglass-ca · {} · by {} · {time}",
        n.event.name(),
        mrkdwn(&n.actor)
    )));
    json!({"text": clip(&text, 39_000), "blocks": blocks})
}

fn refusals(a: &RefusalAlert) -> Value {
    let head = format!(
        ":warning: {} was refused {} times within the hour",
        mrkdwn(&a.identity),
        a.refusals
    );
    let text = format!(
        "breakglass: {head}\n{}\nLatest: {} ({}): {}",
        mrkdwn(&a.summary),
        mrkdwn(&a.action),
        mrkdwn(&a.kind),
        mrkdwn(&a.reason)
    );
    let blocks = vec![
        section(&format!("*{head}*")),
        fields(&[
            ("Identity", mrkdwn(&a.identity)),
            (
                "Refusals",
                format!("{} (alert at {})", a.refusals, a.threshold),
            ),
            ("Latest action", mrkdwn(&a.action)),
            ("Kind", mrkdwn(&a.kind)),
            (
                "Window",
                format!("{} to {}", mrkdwn(&a.window_start), mrkdwn(&a.window_end)),
            ),
        ]),
        section(&format!("*Latest reason*\n{}", mrkdwn(&a.reason))),
        context(&format!(
            "breakglass-ca · {} · audit entry {}",
            a.event.name(),
            a.audit_index
        )),
    ];
    json!({"text": clip(&text, 39_000), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(reason: &str) -> Notice {
        Notice {
            event: NoticeKind::Pending,
            request_id: "r-00000000000000ab".into(),
            requester: "alice@example.com".into(),
            principal: "postgres".into(),
            principals: vec!["postgres".into()],
            hosts: vec!["db-7".into(), "db-8".into()],
            command: None,
            reason: reason.into(),
            tier: "critical".into(),
            emergency: false,
            approvals_required: 2,
            approvers: vec![],
            approve_command: "breakglass approve r-00000000000000ab".into(),
            actor: "user:alice@example.com".into(),
            grant_id: None,
            detail: None,
            time: 1_700_000_000_000,
        }
    }

    #[test]
    fn mrkdwn_escapes_the_three_markup_characters_only() {
        assert_eq!(
            mrkdwn("<!channel> a&b <https://x|y> *ok*"),
            "&lt;!channel&gt; a&amp;b &lt;https://x|y&gt; *ok*"
        );
    }

    #[test]
    fn a_pending_notice_says_who_what_where_and_how_to_approve() {
        let b = body(&Payload::Request(pending(
            "INC-1 <!channel> & <https://evil|click>",
        )));
        let text = b["text"].as_str().unwrap();
        for part in [
            "r-00000000000000ab",
            "alice@example.com",
            "postgres@db-7,db-8",
            "tier: critical",
            "`breakglass approve r-00000000000000ab`",
            "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        let all = b.to_string();
        assert!(
            !all.contains("<!channel>") && !all.contains("<https://evil"),
            "{all}"
        );
        let blocks = b["blocks"].as_array().unwrap();
        assert!(blocks.iter().all(|b| b["type"].is_string()));
        assert!(
            blocks.iter().any(|b| b["text"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("```breakglass approve r-00000000000000ab```"))),
            "{all}"
        );
    }

    #[test]
    fn no_approve_command_once_nothing_waits_for_approval_and_long_text_is_clipped() {
        let mut n = pending(&"x".repeat(10_000));
        n.event = NoticeKind::Issued;
        n.grant_id = Some("g-0000000000000001".into());
        let b = body(&Payload::Request(n));
        assert!(!b.to_string().contains("Approve with"), "{b}");
        for block in b["blocks"].as_array().unwrap() {
            if let Some(t) = block["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000);
            }
        }
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .contains("grant g-0000000000000001")
        );
    }
}
