//! Where access is decided: which identities and groups may get which
//! principals on which hosts, with which forced commands, source addresses,
//! lifetime, `permit-*` extensions and at which time of day. Deny by default;
//! deny rules win. Each allow rule names a risk [`Tier`]; when several allow
//! rules match, the one with the most restrictive tier wins (tiers are ranked
//! in configuration order, least restrictive first).
//!
//! Requested hosts may be patterns. An allow rule grants a pattern only when
//! every host name it can match is matched by one of the rule's host patterns
//! (language containment, [`breakglass_proto::patterns::covers`]); a deny rule refuses it when
//! any host name it can match is one the deny rule names (overlap,
//! [`breakglass_proto::patterns::common_name`]). Both are decided against the matcher hosts
//! apply to the certificate's scope, so a certificate never admits a host the
//! rules would not grant by name. Principals are the same (requests name them
//! literally), and a deny rule naming commands also refuses an interactive
//! shell, which can run them.
//!
//! Pure logic over an already validated [`AccessRequest`]: the time is a
//! parameter, no I/O.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use breakglass_proto::audit::event::RefusalKind;

use crate::error::ReasonProblem;
use crate::request::AccessRequest;

pub use crate::error::Denial;

mod admit;
mod rule;

use rule::TTL_DEPTH;

pub use admit::{Admission, Admitted, EMERGENCY_WINDOW, Refused};

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
    /// with a ticket reference when the tier wants one.
    pub fn check_reason(&self, reason: &str) -> Result<(), ReasonProblem> {
        let len = reason.chars().count();
        if self.reason_required && len == 0 {
            return Err(ReasonProblem::Missing);
        }
        if len > 0 && len < self.reason_min_length {
            return Err(ReasonProblem::TooShort {
                min: self.reason_min_length,
                got: len,
            });
        }
        if let Some(re) = &self.ticket
            && !re.is_match(reason)
        {
            return Err(ReasonProblem::NoTicket {
                pattern: re.as_str().to_owned(),
            });
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

#[cfg(test)]
mod tests;
