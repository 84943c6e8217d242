//! The rules' decision ([`Policy::decide`]): deny rules first, then the allow rule of the
//! most restrictive tier that admits the request, or why the closest one refused.

use std::time::{SystemTime, UNIX_EPOCH};

use breakglass_proto::audit::event::RefusalKind;

use super::caller::Caller;
use super::rule::{Effect, Rule, TTL_DEPTH};
use super::tier::Tier;
use crate::error::Denial;
use crate::request::AccessRequest;

/// The policy's answer.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `rule`, with these extensions.
    Allow(Grant),
    /// Refused: why, for the requester and for the audit log.
    Deny(Denial),
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
