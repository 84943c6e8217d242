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

//!
//! The files: [`caller`] who asks; [`rule`] the rules and how one meets a request;
//! [`tier`] the risk tiers; [`decide`] the rules' decision; [`admit`] the one admission
//! step of a request, [`Policy::admit`].

mod admit;
mod caller;
mod decide;
mod rule;
mod tier;

pub use self::admit::{Admission, Admitted, EMERGENCY_WINDOW, Refused};
pub use self::caller::Caller;
pub use self::decide::{Decision, Grant, Policy, minute_of_day};
pub use self::rule::{Effect, Rule};
pub use self::tier::{Emergency, SshKeyLogin, Tier};
pub use crate::error::Denial;

#[cfg(test)]
mod tests;
