//! Events of a grant: issued (the certificate), revoked, reviewed, and the drill report
//! on it.

use super::codec::{Codec, DecodeError, EncodeError, Reader, Writer, byte_enum, fields};
use super::ids::RequestId;
use crate::profile::GrantId;

fields! {
    /// A certificate was signed. The certificate is returned only after this event is durable.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct GrantIssued {
        /// The request this grant answers.
        pub request_id: RequestId,
        /// Id of the grant (in the key id and extensions of the certificate).
        pub grant_id: GrantId,
        /// Certificate serial.
        pub serial: u64,
        /// Certificate key id.
        pub key_id: String,
        /// `SHA256:` fingerprint of the CA key that signed.
        pub ca_fingerprint: String,
        /// `SHA256:` fingerprint of the certified public key.
        pub key_fingerprint: String,
        /// Principals in the certificate.
        pub principals: Vec<String>,
        /// Host scope in the certificate.
        pub hosts: Vec<String>,
        /// force-command, if any.
        pub command: Option<String>,
        /// source-address CIDR blocks, if any.
        pub source_addresses: Vec<String>,
        /// `permit-*` extensions granted.
        pub extensions: Vec<String>,
        /// Certificate `valid_after`, Unix seconds.
        pub valid_after: u64,
        /// Certificate `valid_before`, Unix seconds.
        pub valid_before: u64,
        /// Identity of the requester.
        pub requester: String,
        /// Identities of the approvers (empty when none were needed, or for an emergency).
        pub approvers: Vec<String>,
        /// Policy rule that allowed it.
        pub rule: String,
        /// Risk tier.
        pub tier: String,
        /// Issued as a declared emergency (needs review afterwards).
        pub emergency: bool,
    }
}

/// A grant was revoked; its serial goes into the KRL and its sessions are ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRevoked {
    /// The grant revoked.
    pub grant_id: GrantId,
    /// Its certificate serial.
    pub serial: u64,
    /// Why.
    pub reason: String,
    /// `SHA256:` fingerprint of the certified public key when the revocation named the
    /// key (`revoke --public-key`): the key itself is then revoked for good, so no
    /// certificate for it is accepted or issued again. Encoded after `reason` only when
    /// present, so events written before this field existed decode (as `None`) and
    /// re-encode to the same bytes.
    pub revoked_key: Option<String>,
}

/// `revoked_key` is a trailing string, present only when set (not an `option`): events
/// written before the field existed end after `reason`.
impl Codec for GrantRevoked {
    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        self.grant_id.encode(w)?;
        self.serial.encode(w)?;
        self.reason.encode(w)?;
        if let Some(k) = &self.revoked_key {
            k.encode(w)?;
        }
        Ok(())
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            grant_id: Codec::read(r)?,
            serial: Codec::read(r)?,
            reason: Codec::read(r)?,
            revoked_key: if r.has_more() {
                Some(Codec::read(r)?)
            } else {
                None
            },
        })
    }
}

/// A reviewer's verdict on a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReviewVerdict {
    /// The use of access was appropriate.
    Accepted,
    /// The use of access was not appropriate (follow-up needed).
    Rejected,
}

byte_enum!(ReviewVerdict, "review verdict" {
    Accepted = 1,
    Rejected = 2,
});

fields! {
    /// A reviewer recorded a verdict on a grant (the reviewer is the actor).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct GrantReviewed {
        /// The grant reviewed.
        pub grant_id: GrantId,
        /// The verdict.
        pub verdict: ReviewVerdict,
        /// Free-text comment.
        pub comment: String,
    }
}

fields! {
    /// The outcome of a break-glass drill (`breakglass drill`), reported by its requester (the
    /// actor) for one of their drill grants: the grant's tier is a drill tier.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct DrillReported {
        /// The drill grant.
        pub grant_id: GrantId,
        /// True when every step passed.
        pub passed: bool,
        /// The step that failed (`login`, `command`, `session-open`, `session-close`); empty when
        /// passed.
        pub failed_step: String,
        /// What went wrong and what to check; empty when passed.
        pub detail: String,
        /// Milliseconds from the request to the remote command's output; 0 when not reached.
        pub request_to_shell_ms: u64,
        /// Milliseconds from the end of the ssh session to both its open and close records being
        /// in the log; 0 when not reached.
        pub logout_to_audit_ms: u64,
    }
}
