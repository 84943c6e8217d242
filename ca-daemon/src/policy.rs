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
