//! Who is asking, as the transport authenticated them.

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
    /// Its client certificate came from a login with an SSH key (the break-glass login;
    /// the client CA marks such certificates): tiers take it as their `ssh_key_login` says.
    pub ssh_key_login: bool,
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
