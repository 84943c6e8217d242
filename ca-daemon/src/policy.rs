//! Where access is decided: which identities and groups may get which
//! principals on which hosts, with which forced commands, source addresses,
//! lifetime and `permit-*` extensions. Deny by default; deny rules win.
//!
//! Pure logic over an already validated [`AccessRequest`]: no clock, no I/O.

use std::collections::BTreeSet;
use std::time::Duration;

use breakglass_proto::names::host_matches;
use ipnet::IpNet;

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
    /// Refused, with a message for the requester.
    Deny(String),
}

/// What an allow decision grants beyond the request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The rule that allowed it.
    pub rule: String,
    /// Its tier.
    pub tier: String,
    /// `permit-*` extensions to put in the certificate.
    pub extensions: Vec<String>,
}

/// The compiled rule set.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Builds a policy from validated rules (order matters among allow rules).
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Decides a request.
    pub fn decide(&self, caller: &Caller, req: &AccessRequest) -> Decision {
        for rule in self.rules.iter().filter(|r| r.effect == Effect::Deny) {
            if rule.applies_to(caller, true) && rule.deny_matches(req) {
                return Decision::Deny(format!(
                    "denied by policy rule `{}` for {}@{}",
                    rule.name,
                    req.principals.join(","),
                    req.hosts.join(",")
                ));
            }
        }
        // Among the allow rules that apply to the caller, the first that allows
        // everything wins; otherwise report why the closest one refused.
        let mut best: Option<(usize, String)> = None;
        for rule in self.rules.iter().filter(|r| r.effect == Effect::Allow) {
            if !rule.applies_to(caller, false) {
                continue;
            }
            match rule.check(req) {
                Ok(extensions) => {
                    return Decision::Allow(Grant {
                        rule: rule.name.clone(),
                        tier: rule.tier.clone(),
                        extensions,
                    });
                }
                Err((depth, why)) => {
                    if best.as_ref().is_none_or(|(d, _)| depth > *d) {
                        best = Some((depth, why));
                    }
                }
            }
        }
        match best {
            Some((_, why)) => Decision::Deny(why),
            None => Decision::Deny(format!(
                "no policy rule lets {} request certificates (groups: {})",
                caller.identity,
                if caller.groups.is_empty() {
                    "none".to_owned()
                } else {
                    caller.groups.join(", ")
                }
            )),
        }
    }
}

impl Rule {
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
    fn check(&self, req: &AccessRequest) -> Result<Vec<String>, (usize, String)> {
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
        if req.ttl > self.max_ttl {
            return Err((
                4,
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
                        5,
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

    fn allowed(d: Decision) -> Grant {
        match d {
            Decision::Allow(g) => g,
            Decision::Deny(why) => panic!("denied: {why}"),
        }
    }

    fn denied(d: Decision) -> String {
        match d {
            Decision::Allow(g) => panic!("allowed by {}", g.rule),
            Decision::Deny(why) => why,
        }
    }

    #[test]
    fn nothing_is_allowed_without_rules() {
        let why = denied(policy("").decide(&sre(), &req()));
        assert!(
            why.contains("no policy rule lets alice@example.com"),
            "{why}"
        );
    }

    #[test]
    fn requester_dimension() {
        let p = policy(RULE);
        assert_eq!(allowed(p.decide(&sre(), &req())).rule, "db");
        let other = Caller {
            groups: vec!["web".into()],
            ..sre()
        };
        assert!(denied(p.decide(&other, &req())).contains("no policy rule"));
        let by_id =
            policy(&RULE.replace("groups = [\"sre\"]", "identities = [\"alice@example.com\"]"));
        allowed(by_id.decide(&other, &req()));
    }

    #[test]
    fn principal_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.principals = vec!["app-api".into()];
        allowed(p.decide(&sre(), &r));
        r.principals = vec!["postgres".into(), "root".into()];
        let why = denied(p.decide(&sre(), &r));
        assert!(why.contains("principal root is not allowed"), "{why}");
    }

    #[test]
    fn host_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.hosts = vec!["DB-12".into(), "db-*".into()];
        allowed(p.decide(&sre(), &r));
        r.hosts = vec!["web-1".into()];
        let why = denied(p.decide(&sre(), &r));
        assert!(
            why.contains("host web-1 is not allowed for postgres"),
            "{why}"
        );
        // A wider pattern than the rule's is not covered by it.
        r.hosts = vec!["*".into()];
        denied(p.decide(&sre(), &r));
    }

    #[test]
    fn command_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.force_command = Some("/bin/sh".into());
        let why = denied(p.decide(&sre(), &r));
        assert!(
            why.contains("forced command \"/bin/sh\" is not allowed"),
            "{why}"
        );
        r.force_command = None;
        let why = denied(p.decide(&sre(), &r));
        assert!(why.contains("interactive shell is not allowed"), "{why}");
        let inter = policy(&RULE.replace("commands = [\"/usr/bin/psql\"]", "interactive = true"));
        let g = allowed(inter.decide(&sre(), &r));
        assert_eq!(
            g.extensions,
            ["permit-pty"],
            "interactive grants get a pty by default"
        );
        r.force_command = Some("/usr/bin/psql".into());
        denied(inter.decide(&sre(), &r));
    }

    #[test]
    fn source_address_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.source_addresses = vec!["192.168.0.0/16".parse().unwrap()];
        let why = denied(p.decide(&sre(), &r));
        assert!(
            why.contains("source address 192.168.0.0/16 is outside"),
            "{why}"
        );
        r.source_addresses = vec![];
        let why = denied(p.decide(&sre(), &r));
        assert!(why.contains("requires --source-address"), "{why}");
        r.source_addresses = vec![
            "10.9.9.9/32".parse().unwrap(),
            "10.2.0.0/16".parse().unwrap(),
        ];
        allowed(p.decide(&sre(), &r));
        let open = policy(&RULE.replace("source_addresses = [\"10.0.0.0/8\"]\n", ""));
        r.source_addresses = vec![];
        allowed(open.decide(&sre(), &r));
    }

    #[test]
    fn ttl_dimension() {
        let p = policy(RULE);
        let mut r = req();
        r.ttl = Duration::from_secs(1800);
        allowed(p.decide(&sre(), &r));
        r.ttl = Duration::from_secs(7200);
        let why = denied(p.decide(&sre(), &r));
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
            allowed(p.decide(&sre(), &r)).extensions.is_empty(),
            "commands get no pty by default"
        );
        r.extensions = Some(vec!["permit-port-forwarding".into()]);
        assert_eq!(
            allowed(p.decide(&sre(), &r)).extensions,
            ["permit-port-forwarding"]
        );
        r.extensions = Some(vec!["permit-agent-forwarding".into()]);
        let why = denied(p.decide(&sre(), &r));
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
        let why = denied(p.decide(&sre(), &req()));
        assert!(
            why.contains("denied by policy rule `no-prod-db-7`"),
            "{why}"
        );
        let mut r = req();
        r.hosts = vec!["db-8".into()];
        allowed(p.decide(&sre(), &r));
        // A deny rule scoped to a group spares other groups.
        let scoped = policy(&format!(
            "{RULE}{}",
            deny.replace(
                "effect = \"deny\"",
                "effect = \"deny\"\ngroups = [\"contractors\"]"
            )
        ));
        allowed(scoped.decide(&sre(), &req()));
    }

    #[test]
    fn first_fully_matching_allow_rule_wins_and_carries_its_tier() {
        let p = policy(&format!(
            "{RULE}{}",
            RULE.replace("name = \"db\"", "name = \"db-long\"\ntier = \"high\"")
                .replace("max_ttl = \"30m\"", "max_ttl = \"4h\"")
        ));
        assert_eq!(allowed(p.decide(&sre(), &req())).rule, "db");
        let mut r = req();
        r.ttl = Duration::from_secs(7200);
        let g = allowed(p.decide(&sre(), &r));
        assert_eq!((g.rule.as_str(), g.tier.as_str()), ("db-long", "high"));
    }
}
