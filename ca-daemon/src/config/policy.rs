//! `[[tiers]]` and `[[rules]]`: the risk tiers and the rules of the policy, validated and
//! compiled into [`Policy`](crate::policy::Policy) types.

use std::collections::BTreeSet;
use std::time::Duration;

use breakglass_proto::recording::DEFAULT_RECORDER;
use breakglass_proto::{names, profile::PERMIT_EXTENSIONS};
use ipnet::IpNet;
use serde::Deserialize;

use super::field::{ConfigError, check_word, duration_field};
use super::identities::check_identity;
use super::notifications::check_webhook_url;
use super::server::CaConfig;
use crate::policy::{Effect, Emergency, Rule, SshKeyLogin, Tier};
use crate::request::{check_command, parse_cidr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    name: String,
    #[serde(default)]
    approvals: u32,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    reviewers: Option<Vec<String>>,
    #[serde(default)]
    reason_required: Option<bool>,
    #[serde(default)]
    reason_min_length: usize,
    #[serde(default)]
    ticket_required: bool,
    #[serde(default)]
    ticket_pattern: Option<String>,
    max_ttl: String,
    #[serde(default)]
    max_wait: Option<String>,
    #[serde(default)]
    emergency: bool,
    #[serde(default)]
    emergency_ttl: Option<String>,
    #[serde(default)]
    emergency_per_day: Option<u32>,
    #[serde(default)]
    session_recording: bool,
    #[serde(default)]
    webhooks: Vec<String>,
    #[serde(default)]
    drill: bool,
    #[serde(default)]
    recorder: Option<String>,
    #[serde(default)]
    record_input: bool,
    #[serde(default)]
    ssh_key_login: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: String,
    #[serde(default)]
    effect: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    interactive: bool,
    #[serde(default)]
    source_addresses: Option<Vec<String>>,
    #[serde(default)]
    max_ttl: Option<String>,
    #[serde(default)]
    extensions: Vec<String>,
    #[serde(default)]
    hours: Vec<String>,
}

/// Tier of rules that name none.
pub const DEFAULT_TIER: &str = "standard";
/// Most approvals a tier may require.
pub const MAX_APPROVALS: u32 = 10;

/// Validates the `[[tiers]]`, listed from least to most restrictive. Without
/// any, one tier [`DEFAULT_TIER`] exists: no approval, no emergency.
pub(super) fn parse_tiers(
    raw: Vec<RawTier>,
    ca: &CaConfig,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<Tier>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![Tier {
            name: DEFAULT_TIER.to_owned(),
            rank: 0,
            approvals: 0,
            approver_groups: Vec::new(),
            reviewer_groups: Vec::new(),
            reason_required: true,
            reason_min_length: 0,
            ticket: None,
            max_ttl: ca.max_ttl,
            max_wait: Duration::from_secs(900),
            emergency: None,
            session_recording: false,
            webhooks: Vec::new(),
            drill: false,
            recorder: DEFAULT_RECORDER.to_owned(),
            record_input: false,
            ssh_key_login: SshKeyLogin::default(),
        }]);
    }
    let mut tiers: Vec<Tier> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("tiers[{i}].{f}");
        check_word(&t.name).map_err(|e| err(&field("name"), e))?;
        if tiers.iter().any(|x| x.name == t.name) {
            return Err(err(
                &field("name"),
                format!("tier {:?} is defined twice", t.name),
            ));
        }
        if t.approvals > MAX_APPROVALS {
            return Err(err(
                &field("approvals"),
                format!("{} is more than {MAX_APPROVALS}", t.approvals),
            ));
        }
        for g in t.approvers.iter().chain(t.reviewers.iter().flatten()) {
            check_word(g).map_err(|e| err(&field("approvers"), e))?;
        }
        if t.approvals > 0 && t.approvers.is_empty() {
            return Err(err(
                &field("approvers"),
                format!(
                    "tier {:?} needs {} approval(s): name the groups that may approve (approvers = [\"oncall-leads\"])",
                    t.name, t.approvals
                ),
            ));
        }
        let ticket = match (t.ticket_required, t.ticket_pattern) {
            (false, None) => None,
            (true, None) => {
                return Err(err(
                    &field("ticket_pattern"),
                    "ticket_required = true needs a ticket_pattern (for example \"(INC|CHG)-[0-9]+\")".into(),
                ));
            }
            (required, Some(p)) => {
                let re = regex::Regex::new(&p).map_err(|e| {
                    err(
                        &field("ticket_pattern"),
                        format!("{p:?} is not a regular expression: {e}"),
                    )
                })?;
                required.then_some(re)
            }
        };
        if t.reason_min_length > 1024 {
            return Err(err(
                &field("reason_min_length"),
                format!(
                    "{} is longer than a reason may be (1024)",
                    t.reason_min_length
                ),
            ));
        }
        let max_ttl = duration_field(
            Some(&t.max_ttl),
            ca.max_ttl,
            (Duration::from_secs(1), ca.max_ttl),
        )
        .map_err(|e| err(&field("max_ttl"), format!("{e} (ca.max_ttl)")))?;
        let max_wait = duration_field(
            t.max_wait.as_deref(),
            Duration::from_secs(900),
            (Duration::from_secs(1), Duration::from_secs(7 * 86400)),
        )
        .map_err(|e| err(&field("max_wait"), e))?;
        let emergency = if t.emergency {
            let ttl = duration_field(
                t.emergency_ttl.as_deref(),
                max_ttl,
                (Duration::from_secs(1), max_ttl),
            )
            .map_err(|e| err(&field("emergency_ttl"), format!("{e} (the tier's max_ttl)")))?;
            Some(Emergency {
                ttl,
                per_day: t.emergency_per_day.unwrap_or(3),
            })
        } else {
            if t.emergency_ttl.is_some() || t.emergency_per_day.is_some() {
                return Err(err(
                    &field("emergency"),
                    "emergency_ttl or emergency_per_day is set but emergency = false; set emergency = true or remove them".into(),
                ));
            }
            None
        };
        for w in &t.webhooks {
            check_webhook_url(w).map_err(|e| err(&field("webhooks"), e))?;
        }
        // A drill runs from a timer: it cannot wait for a person, and it is no emergency.
        if t.drill && t.approvals > 0 {
            return Err(err(
                &field("approvals"),
                format!(
                    "tier {:?} is a drill tier (drill = true): drill grants are issued without approval, so set approvals = 0",
                    t.name
                ),
            ));
        }
        if t.drill && emergency.is_some() {
            return Err(err(
                &field("emergency"),
                format!(
                    "tier {:?} is a drill tier (drill = true): drills are not emergencies, so set emergency = false",
                    t.name
                ),
            ));
        }
        let recorder = t.recorder.unwrap_or_else(|| DEFAULT_RECORDER.to_owned());
        check_recorder(&recorder).map_err(|e| err(&field("recorder"), e))?;
        if t.record_input && !t.session_recording {
            return Err(err(
                &field("record_input"),
                format!(
                    "tier {:?} records input but not sessions: set session_recording = true, or drop record_input",
                    t.name
                ),
            ));
        }
        let ssh_key_login = match t.ssh_key_login.as_deref() {
            None => SshKeyLogin::default(),
            Some(v) => SshKeyLogin::parse(v).map_err(|e| err(&field("ssh_key_login"), e))?,
        };
        tiers.push(Tier {
            rank: i,
            reviewer_groups: t.reviewers.unwrap_or_else(|| t.approvers.clone()),
            name: t.name,
            approvals: t.approvals,
            approver_groups: t.approvers,
            reason_required: t.reason_required.unwrap_or(true),
            reason_min_length: t.reason_min_length,
            ticket,
            max_ttl,
            max_wait,
            emergency,
            session_recording: t.session_recording,
            webhooks: t.webhooks,
            drill: t.drill,
            recorder,
            record_input: t.record_input,
            ssh_key_login,
        });
    }
    Ok(tiers)
}

/// A recorder path goes into certificates as the start of a shell command: an absolute
/// path of plain characters, nothing the shell would read otherwise.
fn check_recorder(path: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._+-".contains(c);
    if !path.starts_with('/') || !path.chars().all(plain) || path.contains("/../") {
        return Err(format!(
            "recorder {path:?} must be an absolute path of letters, digits and / . _ + - (it is run by the user's shell as the certificate's force-command)"
        ));
    }
    Ok(())
}

/// Validates `[[rules]]` against the tiers.
pub(super) fn parse_rules(
    raw: Vec<RawRule>,
    tiers: &[Tier],
    ca: &CaConfig,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<Rule>, ConfigError> {
    let mut names_seen = BTreeSet::new();
    let mut rules = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("rules[{i}].{f}");
        check_word(&r.name).map_err(|e| err(&field("name"), e))?;
        if !names_seen.insert(r.name.clone()) {
            return Err(err(
                &field("name"),
                format!("rule name {:?} is used twice", r.name),
            ));
        }
        let effect = match r.effect.as_deref() {
            None | Some("allow") => Effect::Allow,
            Some("deny") => Effect::Deny,
            Some(other) => {
                return Err(err(
                    &field("effect"),
                    format!("{other:?} is not \"allow\" or \"deny\""),
                ));
            }
        };
        for id in &r.identities {
            if id != "*" {
                check_identity(id).map_err(|e| err(&field("identities"), e))?;
            }
        }
        for g in &r.groups {
            check_word(g).map_err(|e| err(&field("groups"), e))?;
        }
        for p in &r.principals {
            check_pattern(p, names::check_principal).map_err(|e| err(&field("principals"), e))?;
        }
        for h in &r.hosts {
            names::check_host_pattern(h).map_err(|e| err(&field("hosts"), e))?;
        }
        for c in &r.commands {
            check_command(c).map_err(|e| err(&field("commands"), e))?;
        }
        let source_addresses = match &r.source_addresses {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|s| parse_cidr(s))
                    .collect::<Result<Vec<IpNet>, String>>()
                    .map_err(|e| err(&field("source_addresses"), e))?,
            ),
        };
        for x in &r.extensions {
            if !PERMIT_EXTENSIONS.contains(&x.as_str()) {
                return Err(err(
                    &field("extensions"),
                    format!("{x:?} is not one of {}", PERMIT_EXTENSIONS.join(", ")),
                ));
            }
        }
        let max_ttl = match (&effect, r.max_ttl.as_deref()) {
            (Effect::Allow, None) => {
                return Err(err(
                    &field("max_ttl"),
                    "an allow rule needs max_ttl (for example \"30m\")".into(),
                ));
            }
            (_, s) => duration_field(s, ca.max_ttl, (Duration::from_secs(1), ca.max_ttl))
                .map_err(|e| err(&field("max_ttl"), format!("{e} (ca.max_ttl)")))?,
        };
        if effect == Effect::Allow {
            if r.identities.is_empty() && r.groups.is_empty() {
                return Err(err(
                    &field("groups"),
                    "an allow rule must name identities or groups (use identities = [\"*\"] for everyone)".into(),
                ));
            }
            if r.principals.is_empty() {
                return Err(err(
                    &field("principals"),
                    "an allow rule must name at least one principal".into(),
                ));
            }
            if r.hosts.is_empty() {
                return Err(err(
                    &field("hosts"),
                    "an allow rule must name at least one host".into(),
                ));
            }
            if r.commands.is_empty() && !r.interactive {
                return Err(err(
                    &field("commands"),
                    "an allow rule must list commands or set interactive = true".into(),
                ));
            }
        }
        // A deny rule needs no tier; an allow rule's tier must exist.
        let deny_without_tier = effect == Effect::Deny && r.tier.is_none();
        let tier = r.tier.unwrap_or_else(|| DEFAULT_TIER.to_owned());
        check_word(&tier).map_err(|e| err(&field("tier"), e))?;
        let found = tiers.iter().find(|t| t.name == tier);
        let Some(t) = found.or(if deny_without_tier {
            tiers.first()
        } else {
            None
        }) else {
            return Err(err(
                &field("tier"),
                format!(
                    "tier {tier:?} is not defined; [[tiers]] defines {}",
                    tiers
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        // A drill tier issues without approval: its rules may grant nothing but the
        // drill's harmless command, never a shell or a permit-* extension.
        if effect == Effect::Allow && t.drill {
            let drill = breakglass_proto::profile::DRILL_COMMAND;
            if r.interactive {
                return Err(err(
                    &field("interactive"),
                    format!(
                        "rule of drill tier {:?}: drill grants need no shell (set interactive = false)",
                        t.name
                    ),
                ));
            }
            if r.commands.iter().any(|c| c != drill) {
                return Err(err(
                    &field("commands"),
                    format!(
                        "rule of drill tier {:?}: drill grants run only {drill:?} (commands = [{drill:?}])",
                        t.name
                    ),
                ));
            }
            if !r.extensions.is_empty() {
                return Err(err(
                    &field("extensions"),
                    format!(
                        "rule of drill tier {:?}: drill grants carry no permit-* extensions",
                        t.name
                    ),
                ));
            }
        }
        if effect == Effect::Allow && max_ttl > t.max_ttl {
            return Err(err(
                &field("max_ttl"),
                format!(
                    "{} exceeds the {} max_ttl of tier {:?}",
                    crate::fmt_duration(max_ttl),
                    crate::fmt_duration(t.max_ttl),
                    t.name
                ),
            ));
        }
        let hours = r
            .hours
            .iter()
            .map(|h| parse_hours(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&field("hours"), e))?;
        rules.push(Rule {
            name: r.name,
            effect,
            tier,
            identities: r.identities,
            groups: r.groups,
            principals: r.principals,
            hosts: r.hosts,
            commands: r.commands,
            interactive: r.interactive,
            source_addresses,
            max_ttl,
            extensions: r.extensions.into_iter().collect(),
            hours,
        });
    }
    Ok(rules)
}

/// Parses a UTC time-of-day window `HH:MM-HH:MM` into minutes of the day
/// `[start, end)`; a window may wrap midnight (`22:00-06:00`).
fn parse_hours(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a UTC time window like \"08:00-18:00\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let minute = |t: &str| -> Result<u16, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (minute(a)?, minute(b)?);
    if start == end {
        return Err(format!("{s:?} is an empty window"));
    }
    Ok((start, end))
}

/// A principal pattern: a valid name where `*` and `?` may stand for characters
/// (the grammar of [`breakglass_proto::patterns`]).
fn check_pattern(p: &str, check: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    let literal: String = p
        .chars()
        .map(|c| {
            if breakglass_proto::patterns::is_wildcard(c) {
                'x'
            } else {
                c
            }
        })
        .collect();
    check(&literal).map_err(|e| format!("pattern {p:?}: {e}"))
}
