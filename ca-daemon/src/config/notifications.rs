//! `[notifications]` and `[refusals]`: how webhooks and syslog lines about requests are
//! delivered, and how refusals by policy are recorded and alerted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::field::{ConfigError, duration_field};
use crate::policy::Tier;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifications {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    queue: Option<usize>,
    #[serde(default)]
    syslog: Option<bool>,
    #[serde(default)]
    syslog_socket: Option<PathBuf>,
    #[serde(default)]
    ca_bundle: Option<PathBuf>,
    #[serde(default)]
    client_config: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRefusals {
    #[serde(default)]
    per_identity_per_hour: Option<u32>,
    #[serde(default)]
    alert_threshold: Option<u32>,
    #[serde(default)]
    webhooks: Option<Vec<String>>,
}

/// One `[[webhooks]]` entry: the body format of a webhook URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: String,
    #[serde(default)]
    format: Option<String>,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// The JSON notice (`crate::notify::Notice`), for programs.
    #[default]
    Json,
    /// A Slack / Mattermost incoming-webhook body: `text` and Block Kit `blocks`.
    Slack,
}

impl WebhookFormat {
    /// Its name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// How refusals by policy are recorded and alerted (`[refusals]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSettings {
    /// Refusals recorded one by one per identity and hour; beyond, they are still refused
    /// but only one `refusals_limited` event records that the limit was hit.
    pub per_identity_per_hour: u32,
    /// The refusal of an identity within one hour that sends the alert webhook (0 = never).
    pub alert_threshold: u32,
    /// Where that alert goes (by default, every webhook of every tier).
    pub webhooks: Vec<String>,
}

impl Default for RefusalSettings {
    fn default() -> Self {
        Self {
            per_identity_per_hour: 60,
            alert_threshold: 10,
            webhooks: Vec::new(),
        }
    }
}

/// How notifications (webhooks, syslog) are delivered.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Longest one webhook POST may take (connect + answer).
    pub timeout: Duration,
    /// Further attempts after a failed POST.
    pub retries: u32,
    /// Delay before the first retry (doubled for each further one).
    pub retry_delay: Duration,
    /// Notifications queued before new ones are dropped (issuance never waits).
    pub queue: usize,
    /// Also write one syslog line per notification.
    pub syslog: bool,
    /// The syslog socket.
    pub syslog_socket: PathBuf,
    /// PEM roots for `https://` webhooks.
    pub ca_bundle: PathBuf,
    /// `--config` argument shown in the approve command of notifications.
    pub client_config: Option<String>,
    /// Webhooks that get another body than the JSON notice (`[[webhooks]]`).
    pub formats: Vec<(String, WebhookFormat)>,
}

impl NotifySettings {
    /// The body format of the webhook at `url`.
    #[must_use]
    pub fn format_of(&self, url: &str) -> WebhookFormat {
        self.formats
            .iter()
            .find(|(u, _)| u == url)
            .map_or(WebhookFormat::Json, |(_, f)| *f)
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retries: 3,
            retry_delay: Duration::from_secs(1),
            queue: 1024,
            syslog: false,
            syslog_socket: PathBuf::from("/dev/log"),
            ca_bundle: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            client_config: None,
            formats: Vec::new(),
        }
    }
}

/// Checks a webhook URL: `http://` or `https://`, with a host.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "{url:?}: only http:// and https:// webhooks are supported"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// A webhook URL as logs show it: scheme, host and port only. The path and query of
/// chat webhooks (Slack, Mattermost) are their secret.
#[must_use]
pub fn shown_url(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            (Some(s), Some(a)) => {
                let path = u.path_and_query().map_or("", |p| p.as_str());
                format!("{s}://{a}{}", if path.len() > 1 { "/…" } else { "" })
            }
            _ => "(a webhook URL that does not parse)".to_owned(),
        },
        Err(_) => "(a webhook URL that does not parse)".to_owned(),
    }
}

/// Most refusals per identity and hour the configuration may ask to record one by one.
pub const MAX_REFUSALS_PER_HOUR: u32 = 100_000;

/// Validates `[notifications]`.
pub(super) fn parse_notifications(
    raw: Option<RawNotifications>,
    resolve: &impl Fn(&Path) -> PathBuf,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<NotifySettings, ConfigError> {
    let notifications = match raw {
        None => NotifySettings::default(),
        Some(n) => {
            let d = NotifySettings::default();
            let queue = n.queue.unwrap_or(d.queue);
            if !(1..=1_000_000).contains(&queue) {
                return Err(err(
                    "notifications.queue",
                    format!("{queue} is outside 1 to 1000000"),
                ));
            }
            let retries = n.retries.unwrap_or(d.retries);
            if retries > 20 {
                return Err(err(
                    "notifications.retries",
                    format!("{retries} is more than 20"),
                ));
            }
            NotifySettings {
                timeout: duration_field(
                    n.timeout.as_deref(),
                    d.timeout,
                    (Duration::from_millis(100), Duration::from_secs(120)),
                )
                .map_err(|r| err("notifications.timeout", r))?,
                retries,
                retry_delay: duration_field(
                    n.retry_delay.as_deref(),
                    d.retry_delay,
                    (Duration::from_millis(10), Duration::from_secs(600)),
                )
                .map_err(|r| err("notifications.retry_delay", r))?,
                queue,
                syslog: n.syslog.unwrap_or(d.syslog),
                syslog_socket: n.syslog_socket.map_or(d.syslog_socket, |p| resolve(&p)),
                ca_bundle: n.ca_bundle.map_or(d.ca_bundle, |p| resolve(&p)),
                client_config: n.client_config,
                formats: Vec::new(),
            }
        }
    };

    Ok(notifications)
}

/// Validates `[refusals]`. Without `webhooks`, the alert goes to every distinct webhook
/// of the tiers (whoever hears of break-glass use hears of repeated refusals);
/// `webhooks = []` sends none.
pub(super) fn parse_refusals(
    raw: RawRefusals,
    tiers: &[Tier],
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<RefusalSettings, ConfigError> {
    let d = RefusalSettings::default();
    let limit = raw.per_identity_per_hour.unwrap_or(d.per_identity_per_hour);
    if !(1..=MAX_REFUSALS_PER_HOUR).contains(&limit) {
        return Err(err(
            "refusals.per_identity_per_hour",
            format!(
                "{limit} is outside 1 to {MAX_REFUSALS_PER_HOUR} (refusals recorded one by one per identity and hour)"
            ),
        ));
    }
    let threshold = raw.alert_threshold.unwrap_or(d.alert_threshold.min(limit));
    if threshold > limit {
        return Err(err(
            "refusals.alert_threshold",
            format!(
                "{threshold} is more than refusals.per_identity_per_hour ({limit}): refusals beyond that limit are not recorded one by one, so they cannot be counted towards the alert; lower alert_threshold or raise the limit (0 turns the alert off)"
            ),
        ));
    }
    let webhooks = match raw.webhooks {
        Some(list) => {
            for w in &list {
                check_webhook_url(w).map_err(|e| err("refusals.webhooks", e))?;
            }
            list
        }
        None => {
            let mut all: Vec<String> = Vec::new();
            for w in tiers.iter().flat_map(|t| &t.webhooks) {
                if !all.contains(w) {
                    all.push(w.clone());
                }
            }
            all
        }
    };
    Ok(RefusalSettings {
        per_identity_per_hour: limit,
        alert_threshold: threshold,
        webhooks,
    })
}

/// Validates `[[webhooks]]`: each URL once, named by a tier's `webhooks` or by
/// `[refusals] webhooks` (an entry for a URL nothing sends to is a mistake), with a known
/// format.
pub(super) fn parse_webhooks(
    raw: Vec<RawWebhook>,
    tiers: &[Tier],
    refusals: &RefusalSettings,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<(String, WebhookFormat)>, ConfigError> {
    let mut out: Vec<(String, WebhookFormat)> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let field = |k: &str| format!("webhooks[{i}].{k}");
        check_webhook_url(&w.url).map_err(|e| err(&field("url"), e))?;
        let named =
            tiers.iter().any(|t| t.webhooks.contains(&w.url)) || refusals.webhooks.contains(&w.url);
        if !named {
            return Err(err(
                &field("url"),
                format!(
                    "{:?} is not a webhook of any tier nor of [refusals]: nothing would be sent to it; add it to the webhooks of a [[tiers]] entry (or of [refusals]), or remove this entry",
                    shown_url(&w.url)
                ),
            ));
        }
        if out.iter().any(|(u, _)| *u == w.url) {
            return Err(err(
                &field("url"),
                format!(
                    "{:?} has an earlier [[webhooks]] entry: give each webhook one",
                    shown_url(&w.url)
                ),
            ));
        }
        let format = match w.format.as_deref() {
            None | Some("json") => WebhookFormat::Json,
            Some("slack") => WebhookFormat::Slack,
            Some(other) => {
                return Err(err(
                    &field("format"),
                    format!(
                        "{other:?} is not a webhook format: \"json\" (the JSON notice) or \"slack\" (Slack / Mattermost incoming webhooks)"
                    ),
                ));
            }
        };
        out.push((w.url, format));
    }
    Ok(out)
}
