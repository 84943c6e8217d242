//! What a verified login is: who, in which policy groups, for how long.

use std::time::Duration;

/// The identity an ID token proves, as breakglass sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentity {
    /// The identity (the `identity_claim`, e.g. `alice@example.com`, its domain in lower
    /// case): the e-mail SAN of the client certificate it gets.
    pub id: String,
    /// Its policy groups (`group_map` of its provider groups), sorted, without repeats.
    pub groups: Vec<String>,
    /// How long its client certificate may be valid (`login_ttl`, `group_login_ttl`).
    pub lifetime: Duration,
    /// The provider's subject identifier (`sub`), for the record.
    pub subject: String,
}
