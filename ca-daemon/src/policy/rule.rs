//! Policy rules, and one rule against one request: whether a deny rule matches, and how far an allow rule
//! admits it (dimension by dimension, so that a refusal names what to change).

use std::collections::BTreeSet;
use std::time::Duration;

use breakglass_proto::patterns::{self, Case, Coverage};
use ipnet::IpNet;

use super::caller::Caller;
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

fn fmt_minute(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl Rule {
    /// Is `minute` (of the day, UTC) within the rule's hours?
    pub(super) fn in_hours(&self, minute: u16) -> bool {
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
    pub(super) fn applies_to(&self, caller: &Caller, empty_means_all: bool) -> bool {
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
    pub(super) fn deny_matches(&self, req: &AccessRequest) -> Option<Vec<String>> {
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
    pub(super) fn check(
        &self,
        req: &AccessRequest,
        minute: u16,
    ) -> Result<Vec<String>, (usize, String)> {
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
pub(super) const TTL_DEPTH: usize = 6;

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
