//! Where access is decided: which identities and groups may get which
//! principals on which hosts, with which forced commands, source addresses,
//! lifetime, `permit-*` extensions and at which time of day. Deny by default;
//! deny rules win. Each allow rule names a risk [`Tier`]; when several allow
//! rules match, the one with the most restrictive tier wins (tiers are ranked
//! in configuration order, least restrictive first).
//!
//! Requested hosts may be patterns. An allow rule grants a pattern only when
//! every host name it can match is matched by one of the rule's host patterns
//! (language containment, [`patterns::covers`]); a deny rule refuses it when
//! any host name it can match is one the deny rule names (overlap,
//! [`patterns::common_name`]). Both are decided against the matcher hosts
//! apply to the certificate's scope, so a certificate never admits a host the
//! rules would not grant by name. Principals are the same (requests name them
//! literally), and a deny rule naming commands also refuses an interactive
//! shell, which can run them.
//!
//! Pure logic over an already validated [`AccessRequest`]: the time is a
//! parameter, no I/O.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::patterns::{self, Case, Coverage};
use ipnet::IpNet;

use breakglass_proto::audit::event::RefusalKind;

use crate::fmt_duration;
use crate::request::AccessRequest;

/// Whether a rule grants or forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants what it matches, within its limits.
    Allow,
    /// Forbids what it matches, whatever allow rules say.
    Deny,
}

/// One policy rule (validated by the config loader).
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique name, shown in decisions.
    pub name: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Risk tier, carried in the certificate.
    pub tier: String,
    /// Identities the rule applies to (`*` = everyone).
    pub identities: Vec<String>,
    /// Groups the rule applies to.
    pub groups: Vec<String>,
    /// Principal patterns (`*`, `?`; case-sensitive).
    pub principals: Vec<String>,
    /// Host patterns (`*`, `?`; ASCII case-insensitive).
    pub hosts: Vec<String>,
    /// Exact forced commands allowed.
    pub commands: Vec<String>,
    /// Whether an interactive shell (no forced command) is allowed.
    pub interactive: bool,
    /// CIDR blocks a `source-address` must lie within; `None` = no restriction.
    pub source_addresses: Option<Vec<IpNet>>,
    /// Longest TTL.
    pub max_ttl: Duration,
    /// `permit-*` extensions that may be granted.
    pub extensions: BTreeSet<String>,
    /// UTC time-of-day windows (minutes `[start, end)`, may wrap midnight)
    /// in which the rule applies; empty = always.
    pub hours: Vec<(u16, u16)>,
}

/// What emergency self-service a tier allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emergency {
    /// Longest TTL of an emergency grant (requests asking more are capped).
    pub ttl: Duration,
    /// Emergency grants per requester within 24 hours; beyond, emergency
    /// requests need the tier's normal approvals.
    pub per_day: u32,
}

/// A risk tier: what a request matched to it needs before it is issued.
#[derive(Clone, Debug)]
pub struct Tier {
    /// Name, carried in the certificate.
    pub name: String,
    /// Position in the configuration: higher is more restrictive.
    pub rank: usize,
    /// Distinct approvals needed (0 = issued at once).
    pub approvals: u32,
    /// Groups whose members may approve or deny.
    pub approver_groups: Vec<String>,
    /// Groups whose members may review grants of this tier.
    pub reviewer_groups: Vec<String>,
    /// Whether a reason must be given.
    pub reason_required: bool,
    /// Shortest reason accepted, in characters.
    pub reason_min_length: usize,
    /// A ticket reference matching this pattern must appear in the reason.
    pub ticket: Option<regex::Regex>,
    /// Longest TTL.
    pub max_ttl: Duration,
    /// How long a request may wait for approvals before it expires.
    pub max_wait: Duration,
    /// Emergency self-service, if allowed.
    pub emergency: Option<Emergency>,
    /// Sessions must be recorded (carried in the certificate).
    pub session_recording: bool,
    /// Webhook URLs notified of this tier's requests (and of failed drills of a drill tier).
    pub webhooks: Vec<String>,
    /// A drill tier: its rules match only drill requests (`breakglass drill`), and drill
    /// requests match only its rules. Never needs approval (checked by the config loader).
    pub drill: bool,
}

impl Tier {
    /// True when `caller` is in one of the groups that may approve.
    pub fn may_approve(&self, caller: &Caller) -> bool {
        self.approver_groups
            .iter()
            .any(|g| caller.groups.contains(g))
    }

    /// True when `caller` is in one of the groups that may review.
    pub fn may_review(&self, caller: &Caller) -> bool {
        self.reviewer_groups
            .iter()
            .any(|g| caller.groups.contains(g))
    }

    /// Checks the request's reason against the tier: present, long enough,
    /// with a ticket reference when the tier wants one. A refusal is
    /// [`RefusalKind::Reason`] or [`RefusalKind::Ticket`], with its message.
    pub fn check_reason(&self, reason: &str) -> Result<(), (RefusalKind, String)> {
        let len = reason.chars().count();
        if self.reason_required && len == 0 {
            return Err((
                RefusalKind::Reason,
                format!(
                    "reason: say why you need access (--reason \"INC-4411 primary down\"); tier `{}` requires a reason",
                    self.name
                ),
            ));
        }
        if len > 0 && len < self.reason_min_length {
            return Err((
                RefusalKind::Reason,
                format!(
                    "reason: tier `{}` requires a reason of at least {} characters (got {len})",
                    self.name, self.reason_min_length
                ),
            ));
        }
        if let Some(re) = &self.ticket
            && !re.is_match(reason)
        {
            return Err((
                RefusalKind::Ticket,
                format!(
                    "reason: tier `{}` requires a ticket reference matching `{}` in the reason",
                    self.name,
                    re.as_str()
                ),
            ));
        }
        Ok(())
    }
}

/// Who is asking, as authenticated by the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// SAN of the client certificate, or `unix:<user>` on the admin socket.
    pub identity: String,
    /// Groups from the configuration.
    pub groups: Vec<String>,
    /// The person behind the identity, if the configuration names one.
    pub owner: Option<String>,
    /// `mtls` or `unix`.
    pub transport: &'static str,
    /// The peer's uid on the admin socket.
    pub uid: Option<u32>,
}

impl Caller {
    /// The actor recorded in audit events for this caller.
    pub fn actor(&self) -> breakglass_proto::audit::Actor {
        match self.uid {
            Some(uid) => breakglass_proto::audit::Actor::LocalUid(uid),
            None => breakglass_proto::audit::Actor::User(self.identity.clone()),
        }
    }
}

/// The policy's answer.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `rule`, with these extensions.
    Allow(Grant),
    /// Refused: why, for the requester and for the audit log.
    Deny(Denial),
}

/// Why the policy refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The kind of refusal, as recorded in the audit log.
    pub kind: RefusalKind,
    /// The deny rule that matched, or the allow rule that came closest; `None` when no rule
    /// concerns the caller.
    pub rule: Option<String>,
    /// The message for the requester: what was refused and why.
    pub message: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What an allow decision grants beyond the request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The rule that allowed it.
    pub rule: String,
    /// Its tier (see [`Policy::tier`]).
    pub tier: String,
    /// `permit-*` extensions to put in the certificate.
    pub extensions: Vec<String>,
}

/// The compiled rule set and its risk tiers.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    tiers: Vec<Tier>,
}

impl Policy {
    /// Builds a policy from validated rules and tiers (every rule's tier is
    /// among `tiers`, listed least restrictive first).
    pub fn new(rules: Vec<Rule>, tiers: Vec<Tier>) -> Self {
        Self { rules, tiers }
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The tiers, least restrictive first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier of that name.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    fn rank(&self, tier: &str) -> usize {
        self.tier(tier).map_or(usize::MAX, |t| t.rank)
    }

    /// Decides a request made at `at`.
    pub fn decide(&self, caller: &Caller, req: &AccessRequest, at: SystemTime) -> Decision {
        let minute = minute_of_day(at);
        for rule in self.rules.iter().filter(|r| r.effect == Effect::Deny) {
            if !(rule.applies_to(caller, true) && rule.in_hours(minute)) {
                continue;
            }
            if let Some(notes) = rule.deny_matches(req) {
                let mut why = format!(
                    "denied by policy rule `{}` for {}@{}",
                    rule.name,
                    req.principals.join(","),
                    req.hosts.join(",")
                );
                if !notes.is_empty() {
                    why.push_str(": ");
                    why.push_str(&notes.join("; "));
                }
                return Decision::Deny(Denial {
                    kind: RefusalKind::DenyRule,
                    rule: Some(rule.name.clone()),
                    message: why,
                });
            }
        }
        // Among the allow rules that apply to the caller and allow everything,
        // the one with the most restrictive tier wins (the first of equals);
        // when none does, report why the closest one refused.
        let mut best: Option<(usize, RefusalKind, &str, String)> = None;
        let mut chosen: Option<Grant> = None;
        // Drill requests and drill tiers belong together: a drill tier's
        // approval-free rules never grant ordinary access, and a drill never
        // borrows an ordinary rule.
        let mut drill_rules = 0usize;
        for rule in self.rules.iter().filter(|r| r.effect == Effect::Allow) {
            if self.tier(&rule.tier).is_some_and(|t| t.drill) != req.drill {
                continue;
            }
            if !rule.applies_to(caller, false) {
                continue;
            }
            drill_rules += 1;
            match rule.check(req, minute) {
                Ok(extensions) => {
                    if chosen
                        .as_ref()
                        .is_none_or(|c| self.rank(&rule.tier) > self.rank(&c.tier))
                    {
                        chosen = Some(Grant {
                            rule: rule.name.clone(),
                            tier: rule.tier.clone(),
                            extensions,
                        });
                    }
                }
                Err((depth, why)) => {
                    if best.as_ref().is_none_or(|(d, ..)| depth > *d) {
                        let kind = if depth == TTL_DEPTH {
                            RefusalKind::Ttl
                        } else {
                            RefusalKind::NoRule
                        };
                        best = Some((depth, kind, &rule.name, why));
                    }
                }
            }
        }
        if let Some(g) = chosen {
            return Decision::Allow(g);
        }
        if req.drill && drill_rules == 0 {
            return Decision::Deny(Denial {
                kind: RefusalKind::NoRule,
                rule: None,
                message: format!(
                    "no drill rule lets {} run a drill as {} on {}: add a [[tiers]] entry with drill = true and a rule of that tier for this account and host",
                    caller.identity,
                    req.principals.join(","),
                    req.hosts.join(",")
                ),
            });
        }
        match best {
            Some((_, kind, rule, message)) => Decision::Deny(Denial {
                kind,
                rule: Some(rule.to_owned()),
                message,
            }),
            None => Decision::Deny(Denial {
                kind: RefusalKind::NoRule,
                rule: None,
                message: format!(
                    "no policy rule lets {} request certificates (groups: {})",
                    caller.identity,
                    if caller.groups.is_empty() {
                        "none".to_owned()
                    } else {
                        caller.groups.join(", ")
                    }
                ),
            }),
        }
    }
}

/// Minutes since midnight UTC.
pub fn minute_of_day(at: SystemTime) -> u16 {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ((secs % 86_400) / 60) as u16
}

fn fmt_minute(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl Rule {
    /// Is `minute` (of the day, UTC) within the rule's hours?
    fn in_hours(&self, minute: u16) -> bool {
        self.hours.is_empty()
            || self.hours.iter().any(|&(start, end)| {
                if start < end {
                    (start..end).contains(&minute)
                } else {
                    minute >= start || minute < end
                }
            })
    }

    /// Does the rule concern this caller? An empty deny rule concerns everyone.
    fn applies_to(&self, caller: &Caller, empty_means_all: bool) -> bool {
        if empty_means_all && self.identities.is_empty() && self.groups.is_empty() {
            return true;
        }
        self.identities
            .iter()
            .any(|i| i == "*" || *i == caller.identity)
            || self.groups.iter().any(|g| caller.groups.contains(g))
    }

    /// A deny rule matches when every dimension it names touches the request:
    /// one of the principals, one host name a requested host (pattern) can
    /// match, the forced command or an interactive shell (which can run any
    /// command). `Some` holds what the request would have admitted that the
    /// rule forbids, where that is not plain from the request itself.
    fn deny_matches(&self, req: &AccessRequest) -> Option<Vec<String>> {
        let mut notes = Vec::new();
        if !self.principals.is_empty() {
            let (p, name) = first_overlap(&self.principals, &req.principals, Case::Sensitive)?;
            if patterns::is_pattern(p) {
                notes.push(format!(
                    "principal pattern {p} also matches {name}, which this rule denies"
                ));
            }
        }
        if !self.hosts.is_empty() {
            let (h, name) = first_overlap(&self.hosts, &req.hosts, Case::Insensitive)?;
            if patterns::is_pattern(h) {
                notes.push(format!(
                    "host pattern {h} also matches {name}, which this rule denies"
                ));
            }
        }
        if !self.commands.is_empty() {
            match &req.force_command {
                Some(c) if self.commands.contains(c) => {}
                Some(_) => return None,
                None => notes.push(format!(
                    "an interactive shell can run {}, which this rule denies",
                    self.commands.join(" | ")
                )),
            }
        }
        Some(notes)
    }

    /// The principal and host dimensions of an allow rule: every name a requested
    /// principal or host (pattern) can match must match one of the rule's patterns.
    fn scope_check(&self, req: &AccessRequest) -> Result<(), (usize, String)> {
        for p in &req.principals {
            if covers(&self.principals, p, Case::Sensitive).is_err() {
                return Err((
                    0,
                    format!(
                        "principal {p} is not allowed by rule `{}` (it allows: {})",
                        self.name,
                        self.principals.join(", ")
                    ),
                ));
            }
        }
        for h in &req.hosts {
            let refused = match covers(&self.hosts, h, Case::Insensitive) {
                Ok(()) => continue,
                Err(_) if !patterns::is_pattern(h) => format!(
                    "host {h} is not allowed for {} by rule `{}` (it allows hosts: {})",
                    req.principals.join(","),
                    self.name,
                    self.hosts.join(", ")
                ),
                Err(Some(name)) => {
                    let why = format!(
                        "host pattern {h} is not allowed for {} by rule `{}`: it also matches {name}, which the rule's hosts ({}) do not; ask for host names, or a pattern that matches only hosts the rule allows",
                        req.principals.join(","),
                        self.name,
                        self.hosts.join(", ")
                    );
                    // A rule that allows part of the pattern explains the refusal best.
                    let partly =
                        first_overlap(&self.hosts, std::slice::from_ref(h), Case::Insensitive);
                    return Err((if partly.is_some() { 2 } else { 1 }, why));
                }
                Err(None) => format!(
                    "host pattern {h} is too complex to check against the hosts of rule `{}` ({}); ask for host names, or one of the rule's patterns as written",
                    self.name,
                    self.hosts.join(", ")
                ),
            };
            return Err((1, refused));
        }
        Ok(())
    }

    fn scope(&self, req: &AccessRequest) -> String {
        format!("{}@{}", req.principals.join(","), self.hosts.join(","))
    }

    /// Checks an allow rule dimension by dimension. On refusal, returns how far
    /// the request got (to pick the most relevant message: principals 0, hosts 1
    /// or 2 when the rule allows part of a requested pattern, then command,
    /// source addresses, hours, TTL, extensions) and why.
    fn check(&self, req: &AccessRequest, minute: u16) -> Result<Vec<String>, (usize, String)> {
        self.scope_check(req)?;
        match &req.force_command {
            None if !self.interactive => {
                return Err((
                    3,
                    format!(
                        "an interactive shell is not allowed for {}; rule `{}` allows only --command {}",
                        self.scope(req),
                        self.name,
                        self.commands.join(" | ")
                    ),
                ));
            }
            Some(c) if !self.commands.contains(c) => {
                let allowed = if self.commands.is_empty() {
                    "none (interactive only)".to_owned()
                } else {
                    self.commands.join(" | ")
                };
                return Err((
                    3,
                    format!(
                        "forced command {c:?} is not allowed for {} by rule `{}` (allowed: {allowed})",
                        self.scope(req),
                        self.name
                    ),
                ));
            }
            _ => {}
        }
        if let Some(nets) = &self.source_addresses {
            let shown = || {
                nets.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if req.source_addresses.is_empty() {
                return Err((
                    4,
                    format!(
                        "rule `{}` requires --source-address within {} for {}",
                        self.name,
                        shown(),
                        self.scope(req)
                    ),
                ));
            }
            if let Some(a) = req
                .source_addresses
                .iter()
                .find(|a| !nets.iter().any(|n| n.contains(*a)))
            {
                return Err((
                    4,
                    format!(
                        "source address {a} is outside what rule `{}` allows for {} ({})",
                        self.name,
                        self.scope(req),
                        shown()
                    ),
                ));
            }
        }
        if !self.in_hours(minute) {
            return Err((
                5,
                format!(
                    "rule `{}` allows {} only between {} UTC (it is {} UTC)",
                    self.name,
                    self.scope(req),
                    self.hours
                        .iter()
                        .map(|&(a, b)| format!("{}-{}", fmt_minute(a), fmt_minute(b)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    fmt_minute(minute)
                ),
            ));
        }
        if req.ttl > self.max_ttl {
            return Err((
                TTL_DEPTH,
                format!(
                    "TTL {} exceeds the {} maximum allowed for {} (rule `{}`)",
                    fmt_duration(req.ttl),
                    fmt_duration(self.max_ttl),
                    self.scope(req),
                    self.name
                ),
            ));
        }
        let extensions = match &req.extensions {
            None if req.force_command.is_none() && self.extensions.contains("permit-pty") => {
                vec!["permit-pty".to_owned()]
            }
            None => Vec::new(),
            Some(asked) => {
                if let Some(x) = asked.iter().find(|x| !self.extensions.contains(*x)) {
                    return Err((
                        7,
                        format!(
                            "extension {x} is not allowed for {} by rule `{}` (allowed: {})",
                            self.scope(req),
                            self.name,
                            if self.extensions.is_empty() {
                                "none".to_owned()
                            } else {
                                self.extensions
                                    .iter()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    ));
                }
                asked.clone()
            }
        };
        Ok(extensions)
    }
}

/// How many dimensions of a rule matched when only the TTL is refused.
const TTL_DEPTH: usize = 6;

/// Whether every name `asked` can match is matched by one of `allowed`: `Ok`, or
/// `Err` with such a name (`None` when too complex to decide, which refuses too).
fn covers(allowed: &[String], asked: &str, case: Case) -> Result<(), Option<String>> {
    match patterns::covers(allowed, asked, case) {
        Coverage::Covered => Ok(()),
        Coverage::NotCovered(name) => Err(Some(name)),
        Coverage::TooComplex => Err(None),
    }
}

/// The first of `asked` that can match a name one of `denied` matches, with that name.
fn first_overlap<'a>(
    denied: &[String],
    asked: &'a [String],
    case: Case,
) -> Option<(&'a str, String)> {
    asked.iter().find_map(|a| {
        denied
            .iter()
            .find_map(|d| patterns::common_name(d, a, case))
            .map(|name| (a.as_str(), name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = r#"
version = 1
[server]
listen = "127.0.0.1:0"
tls_cert = "c"
tls_key = "k"
client_ca = "ca"
[ca]
signing_key = "s"
[audit]
dir = "audit"
key = "audit_key.pem"
"#;

    fn policy(rules: &str) -> Policy {
        Config::parse(
            std::path::Path::new("/t/cfg.toml"),
            &format!("{BASE}{rules}"),
        )
        .expect("config parses")
        .policy
    }

    /// 12:00 UTC on some day.
    fn noon() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 12 * 3600)
    }

    fn sre() -> Caller {
        Caller {
            identity: "alice@example.com".into(),
            groups: vec!["sre".into()],
            owner: None,
            transport: "mtls",
            uid: None,
        }
    }

    fn req() -> AccessRequest {
        AccessRequest {
            principals: vec!["postgres".into()],
            hosts: vec!["db-7".into()],
            ttl: Duration::from_secs(600),
            reason: "INC-1".into(),
            force_command: Some("/usr/bin/psql".into()),
            source_addresses: vec!["10.1.2.0/24".parse().unwrap()],
            extensions: None,
            drill: false,
        }
    }

    const RULE: &str = r#"
[[rules]]
name = "db"
groups = ["sre"]
principals = ["postgres", "app-*"]
hosts = ["db-*"]
commands = ["/usr/bin/psql"]
source_addresses = ["10.0.0.0/8"]
max_ttl = "30m"
extensions = ["permit-pty", "permit-port-forwarding"]
"#;

    const DRILL: &str = r#"
[[tiers]]
name = "standard"
max_ttl = "1h"

[[tiers]]
name = "drill"
drill = true
max_ttl = "10m"

[[rules]]
name = "db"
groups = ["sre"]
principals = ["postgres"]
hosts = ["db-*"]
interactive = true
commands = ["echo breakglass-drill"]
max_ttl = "30m"

[[rules]]
name = "db-drill"
tier = "drill"
groups = ["sre"]
principals = ["postgres"]
hosts = ["db-7"]
commands = ["echo breakglass-drill"]
max_ttl = "10m"
"#;

    #[test]
    fn drill_requests_match_only_drill_tiers_and_drill_tiers_only_drills() {
        let p = policy(DRILL);
        let drill = AccessRequest {
            force_command: Some("echo breakglass-drill".into()),
            source_addresses: vec![],
            drill: true,
            ..req()
        };
        let g = allowed(p.decide(&sre(), &drill, noon()));
        assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-drill", "drill"));
        // The same request, not as a drill, gets the ordinary rule, never the drill tier.
        let plain = AccessRequest {
            drill: false,
            ..drill.clone()
        };
        assert_eq!(allowed(p.decide(&sre(), &plain, noon())).tier, "standard");
        // A drill outside the drill rule's scope does not borrow the ordinary rule.
        let elsewhere = AccessRequest {
            hosts: vec!["db-8".into()],
            ..drill.clone()
        };
        let why = denied(p.decide(&sre(), &elsewhere, noon()));
        assert!(why.contains("rule `db-drill`"), "{why}");
        // Without any drill rule for the caller, the message says what to add.
        let why = denied(policy(RULE).decide(&sre(), &drill, noon()));
        assert!(
            why.starts_with("no drill rule lets alice@example.com"),
            "{why}"
        );
        assert!(why.contains("drill = true"), "{why}");
    }

    fn allowed(d: Decision) -> Grant {
        match d {
            Decision::Allow(g) => g,
            Decision::Deny(why) => panic!("denied: {why}"),
        }
    }

    fn denied(d: Decision) -> String {
        match d {
            Decision::Allow(g) => panic!("allowed by {}", g.rule),
            Decision::Deny(why) => why.message,
        }
    }

    fn denial(d: Decision) -> Denial {
        match d {
            Decision::Allow(g) => panic!("allowed by {}", g.rule),
            Decision::Deny(why) => why,
        }
    }

    #[test]
    fn a_denial_says_its_kind_and_rule() {
        let p = policy(&format!(
            "{RULE}[[rules]]\nname = \"no-root\"\neffect = \"deny\"\nprincipals = [\"root\"]\n"
        ));
        let mut r = req();
        r.principals = vec!["root".into()];
        let d = denial(p.decide(&sre(), &r, noon()));
        assert_eq!(
            (d.kind, d.rule.as_deref()),
            (RefusalKind::DenyRule, Some("no-root"))
        );
        let mut r = req();
        r.ttl = Duration::from_secs(7200);
        let d = denial(p.decide(&sre(), &r, noon()));
        assert_eq!((d.kind, d.rule.as_deref()), (RefusalKind::Ttl, Some("db")));
        assert_eq!(d.to_string(), d.message);
        let mut r = req();
        r.hosts = vec!["web-1".into()];
        let d = denial(p.decide(&sre(), &r, noon()));
        assert_eq!(
            (d.kind, d.rule.as_deref()),
            (RefusalKind::NoRule, Some("db"))
        );
        let stranger = Caller {
            identity: "mallory@example.com".into(),
            groups: vec![],
            ..sre()
        };
        let d = denial(p.decide(&stranger, &req(), noon()));
        assert_eq!((d.kind, d.rule), (RefusalKind::NoRule, None));
    }

    #[test]
    fn nothing_is_allowed_without_rules() {
        let why = denied(policy("").decide(&sre(), &req(), noon()));
        assert!(
            why.contains("no policy rule lets alice@example.com"),
            "{why}"
        );
    }

    #[test]
    fn requester_dimension() {
        let p = policy(RULE);
        assert_eq!(allowed(p.decide(&sre(), &req(), noon())).rule, "db");
        let other = Caller {
            groups: vec!["web".into()],
            ..sre()
        };
        assert!(denied(p.decide(&other, &req(), noon())).contains("no policy rule"));
        let by_id =
            policy(&RULE.replace("groups = [\"sre\"]", "identities = [\"alice@example.com\"]"));
        allowed(by_id.decide(&other, &req(), noon()));
    }

    #[test]
    fn principal_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.principals = vec!["app-api".into()];
        allowed(p.decide(&sre(), &r, noon()));
        r.principals = vec!["postgres".into(), "root".into()];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(why.contains("principal root is not allowed"), "{why}");
    }

    #[test]
    fn host_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.hosts = vec!["DB-12".into(), "db-*".into()];
        allowed(p.decide(&sre(), &r, noon()));
        r.hosts = vec!["web-1".into()];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(
            why.contains("host web-1 is not allowed for postgres"),
            "{why}"
        );
        // A wider pattern than the rule's is not covered by it; the message shows a host
        // it would have admitted.
        r.hosts = vec!["*".into()];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(
            why.starts_with("host pattern * is not allowed for postgres by rule `db`: it also matches x, which the rule's hosts (db-*) do not"),
            "{why}"
        );
        // A narrower one is.
        r.hosts = vec!["db-1*".into(), "DB-??".into()];
        allowed(p.decide(&sre(), &r, noon()));
    }

    /// The rules of the two examples in the hardening issue, and the dev config's.
    const PATTERNS: &str = r#"
[[rules]]
name = "dev"
groups = ["sre"]
principals = ["postgres"]
hosts = ["*.dev.example"]
interactive = true
max_ttl = "30m"

[[rules]]
name = "q"
groups = ["sre"]
principals = ["postgres"]
hosts = ["app-?.q.example"]
interactive = true
max_ttl = "30m"

[[rules]]
name = "no-secrets"
effect = "deny"
hosts = ["secret-*.dev.example"]
"#;

    fn shell_on(hosts: &[&str]) -> AccessRequest {
        AccessRequest {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            force_command: None,
            source_addresses: vec![],
            ..req()
        }
    }

    #[test]
    fn a_requested_pattern_reaching_a_denied_host_is_denied() {
        let p = policy(PATTERNS);
        let why = denied(p.decide(&sre(), &shell_on(&["*.dev.example"]), noon()));
        assert_eq!(
            why,
            "denied by policy rule `no-secrets` for postgres@*.dev.example: host pattern *.dev.example also matches secret-y.dev.example, which this rule denies"
        );
        // Also through `?`, upper case, or among other hosts.
        for hosts in [
            &["s?cret-1.dev.example"][..],
            &["SECRET-*"],
            &["web-1.dev.example", "*t-*.dev.example"],
        ] {
            let why = denied(p.decide(&sre(), &shell_on(hosts), noon()));
            assert!(
                why.starts_with("denied by policy rule `no-secrets`"),
                "{why}"
            );
        }
        // A narrower pattern that stays clear of the denied hosts is granted.
        let g = allowed(p.decide(&sre(), &shell_on(&["web-*.dev.example"]), noon()));
        assert_eq!(g.rule, "dev");
    }

    #[test]
    fn a_question_mark_in_a_rule_does_not_grant_a_star() {
        let p = policy(PATTERNS);
        let why = denied(p.decide(&sre(), &shell_on(&["app-*.q.example"]), noon()));
        assert_eq!(
            why,
            "host pattern app-*.q.example is not allowed for postgres by rule `q`: it also matches app-yy.q.example, which the rule's hosts (app-?.q.example) do not; ask for host names, or a pattern that matches only hosts the rule allows"
        );
        denied(p.decide(&sre(), &shell_on(&["app-??.q.example"]), noon()));
        // The rule's pattern repeated, in any case, and the names it matches are granted.
        for hosts in [
            &["app-?.q.example"][..],
            &["APP-?.Q.EXAMPLE"],
            &["app-1.q.example", "app-2.q.example"],
        ] {
            assert_eq!(
                allowed(p.decide(&sre(), &shell_on(hosts), noon())).rule,
                "q"
            );
        }
    }

    #[test]
    fn a_deny_rule_naming_commands_also_denies_a_shell() {
        let deny =
            "[[rules]]\nname = \"no-psql\"\neffect = \"deny\"\ncommands = [\"/usr/bin/psql\"]\n";
        let p = policy(&format!(
            "{}{deny}",
            RULE.replace(
                "commands = [\"/usr/bin/psql\"]",
                "commands = [\"/usr/bin/psql\", \"/usr/bin/id\"]\ninteractive = true"
            )
        ));
        let why = denied(p.decide(&sre(), &req(), noon()));
        assert!(why.starts_with("denied by policy rule `no-psql`"), "{why}");
        let shell = AccessRequest {
            force_command: None,
            ..req()
        };
        let why = denied(p.decide(&sre(), &shell, noon()));
        assert!(
            why.ends_with(": an interactive shell can run /usr/bin/psql, which this rule denies"),
            "{why}"
        );
        let id = AccessRequest {
            force_command: Some("/usr/bin/id".into()),
            ..req()
        };
        allowed(p.decide(&sre(), &id, noon()));
    }

    #[test]
    fn principal_patterns_are_case_sensitive_and_deny_overlaps() {
        let p = policy(&format!(
            "{RULE}[[rules]]\nname = \"no-app-admin\"\neffect = \"deny\"\nprincipals = [\"app-adm?n\"]\n"
        ));
        let mut r = req();
        r.principals = vec!["App-api".into()];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(why.contains("principal App-api is not allowed"), "{why}");
        r.principals = vec!["app-api".into(), "app-admin".into()];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(
            why.starts_with("denied by policy rule `no-app-admin`"),
            "{why}"
        );
    }

    /// One allow rule and one deny rule over a small alphabet, so that patterns meet.
    fn host_pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(prop::sample::select(vec!['a', 'B', '-', '*', '?']), 1..=5)
            .prop_map(|v| v.into_iter().collect())
    }

    /// Every host name of up to 5 characters over `a`, `b`, `-` and `x` (which the
    /// patterns never name): with patterns of up to 5 characters, every way a name can
    /// meet them.
    fn short_names() -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|s| ['a', 'b', '-', 'x'].map(|c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    proptest::proptest! {
        /// An allowed pattern: every host name it matches is allowed by the same rule
        /// and matched by no deny rule.
        #[test]
        fn an_allowed_pattern_allows_only_names_the_rules_allow(
            allow in proptest::collection::vec(host_pattern(), 1..3),
            deny in host_pattern(),
            asked in host_pattern(),
        ) {
            let quoted = |v: &[String]| v.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
            let p = policy(&format!(
                "[[rules]]\nname = \"a\"\ngroups = [\"sre\"]\nprincipals = [\"postgres\"]\nhosts = [{}]\ninteractive = true\nmax_ttl = \"30m\"\n\
                 [[rules]]\nname = \"d\"\neffect = \"deny\"\nhosts = [{}]\n",
                quoted(&allow),
                quoted(std::slice::from_ref(&deny)),
            ));
            let Decision::Allow(g) = p.decide(&sre(), &shell_on(&[asked.as_str()]), noon()) else {
                return Ok(());
            };
            proptest::prop_assert_eq!(&g.rule, "a");
            for name in short_names() {
                if !patterns::matches(&asked, &name, Case::Insensitive) {
                    continue;
                }
                proptest::prop_assert!(!patterns::matches(&deny, &name, Case::Insensitive), "{} reaches denied {}", asked, name);
                match p.decide(&sre(), &shell_on(&[name.as_str()]), noon()) {
                    Decision::Allow(by_name) => proptest::prop_assert_eq!(&by_name.rule, &g.rule),
                    Decision::Deny(why) => proptest::prop_assert!(false, "{} granted but its name {} is not: {}", asked, name, why),
                }
            }
        }
    }

    #[test]
    fn command_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.force_command = Some("/bin/sh".into());
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(
            why.contains("forced command \"/bin/sh\" is not allowed"),
            "{why}"
        );
        r.force_command = None;
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(why.contains("interactive shell is not allowed"), "{why}");
        let inter = policy(&RULE.replace("commands = [\"/usr/bin/psql\"]", "interactive = true"));
        let g = allowed(inter.decide(&sre(), &r, noon()));
        assert_eq!(
            g.extensions,
            ["permit-pty"],
            "interactive grants get a pty by default"
        );
        r.force_command = Some("/usr/bin/psql".into());
        denied(inter.decide(&sre(), &r, noon()));
    }

    #[test]
    fn source_address_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.source_addresses = vec!["192.168.0.0/16".parse().unwrap()];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(
            why.contains("source address 192.168.0.0/16 is outside"),
            "{why}"
        );
        r.source_addresses = vec![];
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(why.contains("requires --source-address"), "{why}");
        r.source_addresses = vec![
            "10.9.9.9/32".parse().unwrap(),
            "10.2.0.0/16".parse().unwrap(),
        ];
        allowed(p.decide(&sre(), &r, noon()));
        let open = policy(&RULE.replace("source_addresses = [\"10.0.0.0/8\"]\n", ""));
        r.source_addresses = vec![];
        allowed(open.decide(&sre(), &r, noon()));
    }

    #[test]
    fn ttl_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.ttl = Duration::from_secs(1800);
        allowed(p.decide(&sre(), &r, noon()));
        r.ttl = Duration::from_secs(7200);
        let why = denied(p.decide(&sre(), &r, noon()));
        assert_eq!(
            why,
            "TTL 2h exceeds the 30m maximum allowed for postgres@db-* (rule `db`)"
        );
    }

    #[test]
    fn extension_dimension() {
        let p = policy(RULE);
        let mut r = req();
        assert!(
            allowed(p.decide(&sre(), &r, noon())).extensions.is_empty(),
            "commands get no pty by default"
        );
        r.extensions = Some(vec!["permit-port-forwarding".into()]);
        assert_eq!(
            allowed(p.decide(&sre(), &r, noon())).extensions,
            ["permit-port-forwarding"]
        );
        r.extensions = Some(vec!["permit-agent-forwarding".into()]);
        let why = denied(p.decide(&sre(), &r, noon()));
        assert!(
            why.contains("extension permit-agent-forwarding is not allowed"),
            "{why}"
        );
    }

    #[test]
    fn explicit_deny_beats_allow() {
        let deny = r#"
[[rules]]
name = "no-prod-db-7"
effect = "deny"
hosts = ["db-7"]
"#;
        let p = policy(&format!("{RULE}{deny}"));
        let why = denied(p.decide(&sre(), &req(), noon()));
        assert!(
            why.contains("denied by policy rule `no-prod-db-7`"),
            "{why}"
        );
        let mut r = req();
        r.hosts = vec!["db-8".into()];
        allowed(p.decide(&sre(), &r, noon()));
        // A deny rule scoped to a group spares other groups.
        let scoped = policy(&format!(
            "{RULE}{}",
            deny.replace(
                "effect = \"deny\"",
                "effect = \"deny\"\ngroups = [\"contractors\"]"
            )
        ));
        allowed(scoped.decide(&sre(), &req(), noon()));
    }

    const TIERS: &str = r#"
[[tiers]]
name = "standard"
max_ttl = "8h"

[[tiers]]
name = "high"
approvals = 1
approvers = ["leads"]
max_ttl = "8h"
"#;

    #[test]
    fn most_restrictive_matching_rule_wins_and_carries_its_tier() {
        let p = policy(&format!(
            "{TIERS}{RULE}{}",
            RULE.replace("name = \"db\"", "name = \"db-long\"\ntier = \"high\"")
                .replace("max_ttl = \"30m\"", "max_ttl = \"4h\"")
        ));
        // Both rules match a 10-minute request: the `high` tier is more restrictive.
        let g = allowed(p.decide(&sre(), &req(), noon()));
        assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-long", "high"));
        let mut r = req();
        r.ttl = Duration::from_secs(7200);
        let g = allowed(p.decide(&sre(), &r, noon()));
        assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-long", "high"));
        // Order in the file does not matter, only the tier's rank.
        let p = policy(&format!(
            "{TIERS}{}{RULE}",
            RULE.replace("name = \"db\"", "name = \"db-long\"\ntier = \"high\"")
        ));
        assert_eq!(allowed(p.decide(&sre(), &req(), noon())).tier, "high");
        // Among rules of the same tier, the first wins.
        let p = policy(&format!(
            "{RULE}{}",
            RULE.replace("name = \"db\"", "name = \"db-2\"")
        ));
        assert_eq!(allowed(p.decide(&sre(), &req(), noon())).rule, "db");
    }

    #[test]
    fn time_of_day_dimension() {
        let p = policy(&format!(
            "{TIERS}{}{}",
            RULE.replace("max_ttl", "hours = [\"08:00-18:00\"]\nmax_ttl"),
            RULE.replace("name = \"db\"", "name = \"db-night\"\ntier = \"high\"")
                .replace("max_ttl", "hours = [\"18:00-08:00\"]\nmax_ttl")
        ));
        let at = |h: u64, m: u64| {
            noon() - Duration::from_secs(12 * 3600) + Duration::from_secs(h * 3600 + m * 60)
        };
        assert_eq!(allowed(p.decide(&sre(), &req(), at(9, 0))).rule, "db");
        assert_eq!(allowed(p.decide(&sre(), &req(), at(17, 59))).rule, "db");
        assert_eq!(
            allowed(p.decide(&sre(), &req(), at(18, 0))).rule,
            "db-night"
        );
        assert_eq!(
            allowed(p.decide(&sre(), &req(), at(3, 30))).rule,
            "db-night"
        );
        let only_day = policy(&RULE.replace("max_ttl", "hours = [\"08:00-18:00\"]\nmax_ttl"));
        let why = denied(only_day.decide(&sre(), &req(), at(23, 0)));
        assert!(
            why.contains("only between 08:00-18:00 UTC (it is 23:00 UTC)"),
            "{why}"
        );
        // A deny rule with hours applies only within them.
        let freeze = policy(&format!(
            "{RULE}[[rules]]\nname = \"freeze\"\neffect = \"deny\"\nhosts = [\"db-*\"]\nhours = [\"22:00-23:00\"]\n"
        ));
        allowed(freeze.decide(&sre(), &req(), at(21, 59)));
        let why = denied(freeze.decide(&sre(), &req(), at(22, 30)));
        assert!(why.contains("`freeze`"), "{why}");
    }

    #[test]
    fn tiers_check_reasons_and_tickets() {
        let p = policy(&format!(
            "{}{RULE}",
            TIERS.replace(
                "approvers = [\"leads\"]",
                "approvers = [\"leads\"]\nreason_min_length = 10\nticket_required = true\nticket_pattern = \"(INC|CHG)-[0-9]+\""
            )
        ));
        let high = p.tier("high").unwrap();
        let (kind, e) = high.check_reason("").unwrap_err();
        assert_eq!(kind, RefusalKind::Reason);
        assert!(e.contains("requires a reason"), "{e}");
        let (kind, e) = high.check_reason("INC-1").unwrap_err();
        assert_eq!(kind, RefusalKind::Reason);
        assert!(e.contains("at least 10 characters"), "{e}");
        let (kind, e) = high.check_reason("database is down again").unwrap_err();
        assert_eq!(kind, RefusalKind::Ticket);
        assert!(
            e.contains("ticket reference matching `(INC|CHG)-[0-9]+`"),
            "{e}"
        );
        high.check_reason("CHG-42 planned failover").unwrap();
        p.tier("standard").unwrap().check_reason("x").unwrap();
        assert!(p.tier("high").unwrap().rank > p.tier("standard").unwrap().rank);
    }
}
