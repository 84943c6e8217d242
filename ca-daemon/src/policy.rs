//! Where access is decided: which identities and groups may get which
//! principals on which hosts, with which forced commands, source addresses,
//! lifetime, `permit-*` extensions and at which time of day. Deny by default;
//! deny rules win. Each allow rule names a risk [`Tier`]; when several allow
//! rules match, the one with the most restrictive tier wins (tiers are ranked
//! in configuration order, least restrictive first).
//!
//! Pure logic over an already validated [`AccessRequest`]: the time is a
//! parameter, no I/O.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use breakglass_proto::names::host_matches;
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
    /// Principal globs.
    pub principals: Vec<String>,
    /// Host globs.
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
            if rule.applies_to(caller, true) && rule.in_hours(minute) && rule.deny_matches(req) {
                return Decision::Deny(Denial {
                    kind: RefusalKind::DenyRule,
                    rule: Some(rule.name.clone()),
                    message: format!(
                        "denied by policy rule `{}` for {}@{}",
                        rule.name,
                        req.principals.join(","),
                        req.hosts.join(",")
                    ),
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

    /// A deny rule matches when every dimension it names touches the request.
    fn deny_matches(&self, req: &AccessRequest) -> bool {
        let principal = self.principals.is_empty()
            || req
                .principals
                .iter()
                .any(|p| self.principals.iter().any(|pat| glob_matches(pat, p)));
        let host = self.hosts.is_empty() || req.hosts.iter().any(|h| self.host_covers(h));
        let command = self.commands.is_empty()
            || req
                .force_command
                .as_ref()
                .is_some_and(|c| self.commands.contains(c));
        principal && host && command
    }

    /// A requested host is covered by a pattern that matches it, or that it
    /// repeats verbatim (a request may ask for a whole pattern the rule names).
    fn host_covers(&self, host: &str) -> bool {
        self.hosts
            .iter()
            .any(|pat| pat.eq_ignore_ascii_case(host) || host_matches(pat, host))
    }

    fn scope(&self, req: &AccessRequest) -> String {
        format!("{}@{}", req.principals.join(","), self.hosts.join(","))
    }

    /// Checks an allow rule dimension by dimension. On refusal, returns how
    /// many dimensions matched (to pick the most relevant message) and why.
    fn check(&self, req: &AccessRequest, minute: u16) -> Result<Vec<String>, (usize, String)> {
        if let Some(p) = req
            .principals
            .iter()
            .find(|p| !self.principals.iter().any(|pat| glob_matches(pat, p)))
        {
            return Err((
                0,
                format!(
                    "principal {p} is not allowed by rule `{}` (it allows: {})",
                    self.name,
                    self.principals.join(", ")
                ),
            ));
        }
        if let Some(h) = req.hosts.iter().find(|h| !self.host_covers(h)) {
            return Err((
                1,
                format!(
                    "host {h} is not allowed for {} by rule `{}` (it allows hosts: {})",
                    req.principals.join(","),
                    self.name,
                    self.hosts.join(", ")
                ),
            ));
        }
        match &req.force_command {
            None if !self.interactive => {
                return Err((
                    2,
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
                    2,
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
                    3,
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
                    3,
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
                4,
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
                        6,
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
const TTL_DEPTH: usize = 5;

fn glob_matches(pattern: &str, value: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(value))
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
        // A wider pattern than the rule's is not covered by it.
        r.hosts = vec!["*".into()];
        denied(p.decide(&sre(), &r, noon()));
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
