//! `[[identities]]` and `[[admin_users]]`: who the callers are (client certificate SANs,
//! and local users of the admin socket) and their groups; the identity grammar, and the
//! `unix:` namespace that only the admin socket's callers have.

use std::collections::BTreeSet;
use std::path::Path;

use breakglass_proto::names;
use serde::Deserialize;

use super::field::{ConfigError, check_word};

/// Prefix of the identities of admin-socket callers (`unix:<user>`).
pub const ADMIN_SOCKET_NAMESPACE: &str = "unix:";

/// True when `id` is in the `unix:` namespace (any letter case, as URI schemes are),
/// which only callers of the admin socket may have.
pub fn is_admin_socket_identity(id: &str) -> bool {
    id.get(..ADMIN_SOCKET_NAMESPACE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(ADMIN_SOCKET_NAMESPACE))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    id: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    ssh_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdminUser {
    user: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// A known caller identity (`[[identities]]`): someone or something with a client certificate.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The SAN (URI or e-mail) of the client certificate; never in the `unix:` namespace.
    pub id: String,
    /// Groups the identity belongs to.
    pub groups: Vec<String>,
    /// The person behind the identity (several identities may share one owner).
    pub owner: Option<String>,
    /// SSH public keys that log it in with `breakglass login --ssh-key`.
    pub ssh_keys: Vec<ssh_key::PublicKey>,
}

/// A local user of the admin socket (`[[admin_users]]`), identified by `SO_PEERCRED`
/// as `unix:<user>`.
#[derive(Debug, Clone)]
pub struct AdminUser {
    /// The Unix user name (without `unix:`).
    pub user: String,
    /// Groups the user has on the admin socket.
    pub groups: Vec<String>,
}

/// Validates `[[identities]]`.
pub(super) fn parse_identities(
    raw: Vec<RawIdentity>,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<Identity>, ConfigError> {
    let mut seen = BTreeSet::new();
    let mut identities = Vec::new();
    for (i, id) in raw.into_iter().enumerate() {
        let field = format!("identities[{i}]");
        check_identity(&id.id).map_err(|r| err(&format!("{field}.id"), r))?;
        if is_admin_socket_identity(&id.id) {
            return Err(err(
                &format!("{field}.id"),
                admin_socket_identity_in_identities(&id.id, &id.groups),
            ));
        }
        if !seen.insert(id.id.clone()) {
            return Err(err(
                &format!("{field}.id"),
                format!("identity {:?} is listed twice", id.id),
            ));
        }
        for g in &id.groups {
            check_word(g).map_err(|r| err(&format!("{field}.groups"), r))?;
        }
        let mut ssh_keys = Vec::new();
        for (k, line) in id.ssh_keys.iter().enumerate() {
            let at = format!("{field}.ssh_keys[{k}]");
            let key = breakglass_proto::ssh_login::parse_key(line).map_err(|r| err(&at, r))?;
            let other = identities
                .iter()
                .find(|i: &&Identity| i.ssh_keys.iter().any(|x| x.key_data() == key.key_data()))
                .map(|i| i.id.clone())
                .or_else(|| {
                    ssh_keys
                        .iter()
                        .any(|x: &ssh_key::PublicKey| x.key_data() == key.key_data())
                        .then(|| id.id.clone())
                });
            if let Some(other) = other {
                return Err(err(
                    &at,
                    format!(
                        "the key is listed already for {other:?}: a key logs in one identity, listed once"
                    ),
                ));
            }
            ssh_keys.push(key);
        }
        identities.push(Identity {
            id: id.id,
            groups: id.groups,
            owner: id.owner,
            ssh_keys,
        });
    }

    Ok(identities)
}

/// Validates `[[admin_users]]` (`admin_socket`: whether `[server]` sets one).
pub(super) fn parse_admin_users(
    raw: Vec<RawAdminUser>,
    admin_socket: Option<&Path>,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<AdminUser>, ConfigError> {
    let mut admin_users = Vec::new();
    for (i, u) in raw.into_iter().enumerate() {
        let field = format!("admin_users[{i}]");
        if admin_socket.is_none() {
            return Err(err(
                &format!("{field}.user"),
                "[server] admin_socket is not set, so no local user can connect; \
                 set admin_socket or remove [[admin_users]]"
                    .into(),
            ));
        }
        if let Some(bare) = u.user.strip_prefix(ADMIN_SOCKET_NAMESPACE) {
            return Err(err(
                &format!("{field}.user"),
                format!("write the Unix user name without the unix: prefix: user = {bare:?}"),
            ));
        }
        names::check_principal(&u.user).map_err(|r| {
            err(
                &format!("{field}.user"),
                format!("{r} (user is a local Unix user name, like \"root\")"),
            )
        })?;
        if admin_users.iter().any(|a: &AdminUser| a.user == u.user) {
            return Err(err(
                &format!("{field}.user"),
                format!("user {:?} is listed twice", u.user),
            ));
        }
        for g in &u.groups {
            check_word(g).map_err(|r| err(&format!("{field}.groups"), r))?;
        }
        admin_users.push(AdminUser {
            user: u.user,
            groups: u.groups,
        });
    }

    Ok(admin_users)
}

/// The error for a `unix:` id in `[[identities]]`: where admin-socket users get groups now.
fn admin_socket_identity_in_identities(id: &str, groups: &[String]) -> String {
    let user = id.get(ADMIN_SOCKET_NAMESPACE.len()..).unwrap_or_default();
    let groups = groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{id:?}: the unix: namespace is reserved for local users of the admin socket \
         (identified by SO_PEERCRED), and no client certificate may claim it; \
         give the local user its groups under [[admin_users]] instead: \
         [[admin_users]] user = {user:?} groups = [{groups}]"
    )
}

/// Identities are SANs (e-mail or URI) or `unix:<user>`: one token, no hazard
/// ([`breakglass_proto::text::check_identity`]).
pub fn check_identity(id: &str) -> Result<(), String> {
    breakglass_proto::text::check_identity(id).map_err(|e| format!("identity {id:?} {e}"))
}
