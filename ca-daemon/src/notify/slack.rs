//! The Slack / Mattermost incoming-webhook body of a message (`format = "slack"` of a
//! `[[webhooks]]` entry): a `text` that says it all (the notification preview, and what
//! Mattermost shows) and Block Kit `blocks` that lay it out (Slack).
//!
//! Every text of a [`Message`] is escaped here for Slack's mrkdwn: `&`, `<` and `>`, so
//! that a requester's reason cannot make a link or mention a channel (`<!channel>`) or a
//! user. What a notice says is chosen by the notifier (`super::chat_message`), from text
//! already escaped for people.

use serde_json::{Value, json};

/// Longest text of one section (Slack refuses more than 3000 characters).
const MAX_SECTION: usize = 2900;
/// Longest text of one field (Slack refuses more than 2000 characters).
const MAX_FIELD: usize = 1900;
/// Longest `text` (Slack cuts at 40000 characters).
const MAX_TEXT: usize = 39_000;

/// What one chat message says, as plain text (escaped by [`body`]).
#[derive(Debug, Default)]
pub struct Message {
    /// What happened, in one line (shown bold).
    pub headline: String,
    /// Short facts, shown side by side: (name, value); empty values are left out.
    pub facts: Vec<(&'static str, String)>,
    /// Longer texts under a title each (reason, detail); empty ones are left out.
    pub paragraphs: Vec<(&'static str, String)>,
    /// The command that acts on it (the approve command), shown as code.
    pub command: Option<(&'static str, String)>,
    /// Where it comes from, in small print.
    pub context: String,
}

/// `text` escaped for Slack mrkdwn (`&`, `<`, `>`: the only characters it reads as
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

/// The body POSTed to the webhook.
#[must_use]
pub fn body(m: &Message) -> Value {
    let head = mrkdwn(&m.headline);
    let facts: Vec<(&str, String)> = m
        .facts
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, mrkdwn(v)))
        .collect();
    let paragraphs: Vec<(&str, String)> = m
        .paragraphs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, mrkdwn(v)))
        .collect();
    let command = m.command.as_ref().map(|(k, c)| (*k, mrkdwn(c)));

    // The text alone says everything (previews, Mattermost, clients without blocks).
    let mut text = format!("breakglass: {head}");
    if !facts.is_empty() {
        let line: Vec<String> = facts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        text.push_str(&format!("\n{}", line.join("; ")));
    }
    for (k, v) in &paragraphs {
        text.push_str(&format!("\n{k}: {v}"));
    }
    if let Some((k, c)) = &command {
        text.push_str(&format!("\n{k}: `{c}`"));
    }

    let mut blocks = vec![section(&format!("*{head}*"))];
    if !facts.is_empty() {
        let fields: Vec<Value> = facts
            .iter()
            .map(
                |(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{v}"), MAX_FIELD)}),
            )
            .collect();
        // Slack shows at most 10 fields in a section.
        for chunk in fields.chunks(10) {
            blocks.push(json!({"type": "section", "fields": chunk}));
        }
    }
    for (k, v) in &paragraphs {
        blocks.push(section(&format!("*{k}*\n{v}")));
    }
    if let Some((k, c)) = &command {
        blocks.push(section(&format!("{k}:\n```{c}```")));
    }
    if !m.context.is_empty() {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": clip(&mrkdwn(&m.context), MAX_SECTION)}
        ]}));
    }
    json!({"text": clip(&text, MAX_TEXT), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrkdwn_escapes_the_three_markup_characters_only() {
        assert_eq!(
            mrkdwn("<!channel> a&b <https://x|y> *ok*"),
            "&lt;!channel&gt; a&amp;b &lt;https://x|y&gt; *ok*"
        );
    }

    #[test]
    fn every_text_is_escaped_empty_ones_are_left_out_and_long_ones_clipped() {
        let m = Message {
            headline: "Request r-1 <!here>".into(),
            facts: vec![("Requester", "a<b>".into()), ("Command", String::new())],
            paragraphs: vec![("Reason", "x".repeat(10_000)), ("Detail", String::new())],
            command: Some(("Approve with", "breakglass approve r-1 & more".into())),
            context: "breakglass-ca · pending · by <@U123>".into(),
        };
        let b = body(&m);
        let all = b.to_string();
        assert!(!all.contains('<') && !all.contains('>'), "{all}");
        assert!(!all.contains("Command") && !all.contains("Detail"), "{all}");
        let text = b["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "breakglass: Request r-1 &lt;!here&gt;\nRequester: a&lt;b&gt;\nReason: xxx"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\nApprove with: `breakglass approve r-1 &amp; more`"),
            "{text}"
        );
        for block in b["blocks"].as_array().unwrap() {
            assert!(block["type"].is_string(), "{block}");
            if let Some(t) = block["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000, "{}", t.len());
            }
        }
    }
}
