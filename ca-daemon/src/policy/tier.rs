//! Risk tiers: what a request matched to one needs before it is issued (approvals, a
//! reason, a ticket, a TTL), whether it allows emergency self-service, and who approves
//! and reviews its requests.

use std::time::Duration;

use super::caller::Caller;
use crate::error::{Error, ReasonProblem};

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
    /// Absolute path of the session recorder on hosts: a recording tier's certificates run
    /// it as their force-command (`breakglass_proto::recording::RecorderCommand`).
    pub recorder: String,
    /// The recorder also records what the user types (asciicast `i` events).
    pub record_input: bool,
    /// What a login made with an SSH key may do in this tier (`ssh_key_login`).
    pub ssh_key_login: SshKeyLogin,
}

/// What a login made with an SSH key (`breakglass login --ssh-key`, the break-glass login)
/// may do in a tier. The default is [`SshKeyLogin::EmergencyOnly`]: the key login skips
/// what the organisation's provider enforces (its second factor, its offboarding,
/// its conditional access), so by default it only reaches declared emergencies, which
/// are issued at once but alerted, flagged for review and limited per day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SshKeyLogin {
    /// Only a declared emergency (`--emergency`) on a tier that allows one.
    #[default]
    EmergencyOnly,
    /// Anything an SSO login may do.
    Any,
    /// Nothing.
    Off,
}

impl SshKeyLogin {
    /// The value as written in the configuration.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmergencyOnly => "emergency-only",
            Self::Any => "any",
            Self::Off => "off",
        }
    }

    /// Parses `ssh_key_login`.
    pub fn parse(v: &str) -> Result<Self, String> {
        [Self::EmergencyOnly, Self::Any, Self::Off]
            .into_iter()
            .find(|x| x.as_str() == v)
            .ok_or_else(|| {
                format!("{v:?} is not one of \"emergency-only\" (the default), \"any\", \"off\"")
            })
    }

    /// Whether a login made with an SSH key may make a request in this tier, declared an
    /// emergency or not.
    #[must_use]
    pub fn allows(self, emergency: bool) -> bool {
        match self {
            Self::Any => true,
            Self::EmergencyOnly => emergency,
            Self::Off => false,
        }
    }
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

impl Tier {
    /// Refuses a caller outside the tier's approver groups (who would `verb` a request of
    /// it), saying who may.
    pub fn require_approver(&self, who: &Caller, verb: &'static str) -> Result<(), Error> {
        if self.may_approve(who) {
            return Ok(());
        }
        Err(Error::NotApprover {
            identity: who.identity.clone(),
            verb,
            tier: self.name.clone(),
            approver_groups: self.approver_groups.clone(),
            groups: who.groups.clone(),
        })
    }
}
