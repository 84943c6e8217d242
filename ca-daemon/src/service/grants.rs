//! Grants: the certificate of a request is signed and recorded here, and only here; and
//! produced again, identically, from its recorded `GrantIssued` event. Both sign what one
//! `GrantIssued` says ([`Service::sign`]), so the certificate says what the log records.

use std::time::{Duration, Instant, SystemTime};

use breakglass_proto::audit::event::{GrantIssued, RequestCreated, RequestDenied};
use breakglass_proto::audit::{Actor, Event, EventKind, RequestId};
use breakglass_proto::profile::EXT_SESSION_RECORDING;
use breakglass_proto::recording::{DEFAULT_RECORDER, RecorderCommand};
use breakglass_proto::v1::RequestCertificateResponse;
use ssh_key::{HashAlg, PublicKey};

use super::{Service, now};
use crate::certificate::{CertSpec, CertificateAuthority, Issued};
use crate::error::Error;
use crate::notify::NoticeKind;
use crate::state::RequestStatus;

/// How a grant's certificate is signed.
#[derive(Clone, Copy, Debug)]
enum Signing {
    /// Anew, valid from `now` (backdated) for `ttl`, with a fresh serial.
    New { now: SystemTime, ttl: Duration },
    /// Again, with the recorded serial and validity.
    Again,
}

impl Service {
    /// Signs and records the certificate of a pending request, from what its
    /// `RequestCreated` event recorded. Callers hold the transition lock.
    pub(super) async fn issue(
        &self,
        id: RequestId,
        actor: Actor,
    ) -> Result<RequestCertificateResponse, Error> {
        let (created, approvers, disabled) = {
            let st = self.state();
            let r = st.request(id).ok_or(Error::NoRequest(id))?;
            if r.status != RequestStatus::Pending {
                return Err(Error::NotPending(id));
            }
            let disabled = st.identities.disabled.get(&r.created.requester).cloned();
            (r.created.clone(), self.approvers(&r), disabled)
        };
        if let Some(d) = disabled {
            // Approved after its requester was disabled: denied on the record, not issued.
            return Err(self.deny_disabled(id, &created.requester, d).await);
        }
        let started = Instant::now();
        let key = PublicKey::from_openssh(&created.public_key)
            .map_err(|e| Error::Internal(format!("recorded public key: {e}")))?;
        let (t, at) = now();
        let (grant, signed) = self.sign_grant(id, &created, &key, approvers, t)?;
        // The certificate leaves the daemon only after its grant is durable in
        // the audit log; if the log cannot be written, nothing is issued.
        let index = self
            .record(Event::new(
                at,
                actor.clone(),
                EventKind::GrantIssued(Box::new(grant.clone())),
            ))
            .await?;
        self.metrics.issued_in(started.elapsed());
        self.issued(&created, &grant, &signed, index, &actor)
    }

    /// Creates and issues at once a request that needs no approval: signed first, then
    /// its `RequestCreated` and `GrantIssued` recorded as one unit (one write, one
    /// checkpoint; after a crash the log holds both or neither), so the certificate waits
    /// for one durable commit, not two.
    pub(super) async fn create_issued(
        &self,
        created: RequestCreated,
        key: &PublicKey,
        actor: Actor,
    ) -> Result<RequestCertificateResponse, Error> {
        let started = Instant::now();
        let (t, at) = now();
        let id = created.request_id;
        let (grant, signed) = self.sign_grant(id, &created, key, Vec::new(), t)?;
        // The events own the request and the grant (no copies); what follows reads them
        // back from there.
        let events = [
            Event::new(at, actor.clone(), EventKind::RequestCreated(created)),
            Event::new(at, actor.clone(), EventKind::GrantIssued(Box::new(grant))),
        ];
        let first = self.record_all(&events).await?;
        self.metrics.issued_in(started.elapsed());
        let [created, grant] = &events;
        match (&created.kind, &grant.kind) {
            (EventKind::RequestCreated(created), EventKind::GrantIssued(grant)) => {
                self.issued(created, grant, &signed, first + 1, &actor)
            }
            _ => Err(Error::Internal(
                "the events of an issuance changed kind".into(),
            )),
        }
    }

    /// Signs the certificate of request `id` as `created` describes it, for `key`: the
    /// grant to record (serial, key id and validity from the signing) and the certificate.
    fn sign_grant(
        &self,
        id: RequestId,
        created: &RequestCreated,
        key: &PublicKey,
        approvers: Vec<String>,
        t: SystemTime,
    ) -> Result<(GrantIssued, Issued), Error> {
        // The one place a certificate is signed: nothing is issued from a log found rolled
        // back or forked until an administrator acknowledges it.
        self.check_not_halted()?;
        // Revoked while the request waited for approvals.
        let key_fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        self.refuse_revoked_fingerprint(&key_fingerprint)?;
        let mut extensions = created.extensions.clone();
        if self
            .policy()
            .tier(&created.tier)
            .is_some_and(|t| t.session_recording)
        {
            // sshd runs ~/.ssh/rc before the force-command: it would run unrecorded.
            extensions.retain(|e| e != "permit-user-rc");
            extensions.push(EXT_SESSION_RECORDING.to_owned());
        }
        let mut grant = GrantIssued {
            request_id: id,
            grant_id: CertificateAuthority::new_grant_id(),
            serial: 0,
            key_id: String::new(),
            ca_fingerprint: self.ca.signing_fingerprint(),
            key_fingerprint,
            principals: created.principals.clone(),
            hosts: created.hosts.clone(),
            command: created.command.clone(),
            source_addresses: created.source_addresses.clone(),
            extensions,
            valid_after: 0,
            valid_before: 0,
            requester: created.requester.clone(),
            approvers,
            rule: created.rule.clone(),
            tier: created.tier.clone(),
            emergency: created.emergency && created.approvals_required == 0,
        };
        let ttl = Duration::from_secs(created.ttl_seconds);
        let issued = self.sign(&grant, key, Signing::New { now: t, ttl })?;
        grant.serial = issued.serial;
        grant.key_id.clone_from(&issued.key_id);
        grant.valid_after = issued.valid_after;
        grant.valid_before = issued.valid_before;
        Ok((grant, issued))
    }

    /// What follows a grant made durable at `index`: the log line, the certificate kept
    /// for `Fetch` and watchers, and the notice. Returns the answer.
    fn issued(
        &self,
        created: &RequestCreated,
        grant: &GrantIssued,
        signed: &Issued,
        index: u64,
        actor: &Actor,
    ) -> Result<RequestCertificateResponse, Error> {
        let id = grant.request_id;
        let certificate = signed
            .certificate
            .to_openssh()
            .map_err(|e| Error::Internal(format!("encoding certificate: {e}")))?;
        // The audit log (and its syslog line) records the issuance; this line repeats it
        // for the journal, at info level only when asked (`[log] issuance_lines`): its
        // formatting and write are a noticeable part of the CPU per certificate.
        macro_rules! issued_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    request = %id,
                    grant = %grant.grant_id,
                    serial = grant.serial,
                    key_id = %grant.key_id,
                    requester = %grant.requester,
                    principals = %grant.principals.join(","),
                    hosts = %grant.hosts.join(","),
                    ttl_s = created.ttl_seconds,
                    rule = %grant.rule,
                    tier = %grant.tier,
                    approvers = %grant.approvers.join(","),
                    emergency = grant.emergency,
                    reason = %created.reason,
                    audit_index = index,
                    "certificate issued"
                )
            };
        }
        if self.live.load().issuance_lines {
            issued_line!(tracing::Level::INFO);
        } else {
            issued_line!(tracing::Level::DEBUG);
        }
        let response = response(grant, certificate);
        let kind = if grant.emergency {
            NoticeKind::Emergency
        } else {
            NoticeKind::Issued
        };
        // Skip building a notice nobody receives (the zero-approval fast path).
        let wanted = self.notifier.syslog_enabled()
            || self
                .policy()
                .tier(&grant.tier)
                .is_some_and(|t| !t.webhooks.is_empty());
        if wanted {
            self.notify_request(id, kind, actor, Some(grant.grant_id), None);
        }
        Ok(response)
    }

    /// The certificate of an issued request, signed again, identically, from its recorded
    /// `GrantIssued` event and the public key its `RequestCreated` event recorded: no
    /// certificate text is kept in memory (it would cost more than the rest of a live
    /// grant), and signing again costs one signature. `None` when it was not issued or the
    /// CA key that signed it is no longer the signing key.
    pub(super) fn certificate_of(&self, id: RequestId) -> Option<RequestCertificateResponse> {
        let r = self.request_anytime(id)?;
        let RequestStatus::Issued(g) = r.status else {
            return None;
        };
        let grant = self.grant_anytime(g)?.0.issued;
        let public_key = r.created.public_key;
        if grant.ca_fingerprint != self.ca.signing_fingerprint() {
            return None;
        }
        let key = PublicKey::from_openssh(&public_key).ok()?;
        if key.fingerprint(HashAlg::Sha256).to_string() != grant.key_fingerprint {
            return None;
        }
        let rebuilt = self
            .sign(&grant, &key, Signing::Again)
            .map_err(
                |e| tracing::error!(request = %id, error = %e, "rebuilding a certificate failed"),
            )
            .ok()?;
        if rebuilt.key_id != grant.key_id {
            return None;
        }
        Some(response(&grant, rebuilt.certificate.to_openssh().ok()?))
    }

    /// Refuses `key` if it was revoked for good (`revoke --public-key`): a certificate for
    /// it would be refused by every host's KRL anyway.
    pub(super) fn refuse_revoked_key(&self, key: &PublicKey) -> Result<(), Error> {
        self.refuse_revoked_fingerprint(&key.fingerprint(HashAlg::Sha256).to_string())
    }

    /// [`refuse_revoked_key`](Self::refuse_revoked_key) by the key's `SHA256:` fingerprint.
    fn refuse_revoked_fingerprint(&self, fingerprint: &str) -> Result<(), Error> {
        match self.state().revoked_keys.get(fingerprint) {
            None => Ok(()),
            Some(r) => Err(Error::KeyRevoked {
                fingerprint: fingerprint.to_owned(),
                by: r.by.clone(),
                at: r.at,
                reason: r.reason.clone(),
            }),
        }
    }

    /// The certificate's force-command: the grant's approved command, or for a recording
    /// grant (the session-recording extension) the recorder of its tier running it, so that
    /// sshd runs nothing else (`RecorderCommand`). A tier gone from the configuration since
    /// keeps its recorder at the default path.
    fn force_command(&self, grant: &GrantIssued) -> Option<String> {
        if !grant.extensions.iter().any(|e| e == EXT_SESSION_RECORDING) {
            return grant.command.clone();
        }
        let policy = self.policy();
        let tier = policy.tier(&grant.tier);
        Some(
            RecorderCommand {
                recorder: tier.map_or_else(|| DEFAULT_RECORDER.to_owned(), |t| t.recorder.clone()),
                grant: grant.grant_id.to_string(),
                input: tier.is_some_and(|t| t.record_input),
                command: grant.command.clone(),
            }
            .to_force_command(),
        )
    }

    /// Signs the certificate `grant` describes for `key`: the one place a [`CertSpec`] is
    /// made, for a new certificate and for one produced again.
    /// Denies request `id` of the disabled `requester` (a `request_denied` by the daemon);
    /// returns the refusal of the issuance.
    async fn deny_disabled(
        &self,
        id: RequestId,
        requester: &str,
        d: crate::state::identities::Disabled,
    ) -> Error {
        let (_, at) = now();
        let reason = format!("the requester {requester} is disabled: {}", d.reason);
        let recorded = self
            .record(Event::new(
                at,
                Actor::Daemon,
                EventKind::RequestDenied(RequestDenied {
                    request_id: id,
                    reason,
                }),
            ))
            .await;
        match recorded {
            Ok(_) => d.refusal(requester).into(),
            Err(e) => e,
        }
    }

    fn sign(&self, grant: &GrantIssued, key: &PublicKey, how: Signing) -> Result<Issued, Error> {
        let force_command = self.force_command(grant);
        let sources = grant
            .source_addresses
            .iter()
            .map(|s| crate::config::parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("recorded source address: {e}")))?;
        let ttl = match how {
            Signing::New { ttl, .. } => ttl,
            Signing::Again => {
                Duration::from_secs(grant.valid_before.saturating_sub(grant.valid_after))
            }
        };
        let spec = CertSpec {
            grant_id: grant.grant_id,
            requester: &grant.requester,
            subject: key,
            principals: &grant.principals,
            hosts: &grant.hosts,
            tier: &grant.tier,
            ttl,
            force_command: force_command.as_deref(),
            source_addresses: &sources,
            extensions: &grant.extensions,
        };
        match how {
            Signing::New { now, .. } => self.ca.issue(&spec, now),
            Signing::Again => {
                self.ca
                    .rebuild(&spec, grant.serial, grant.valid_after, grant.valid_before)
            }
        }
    }
}

/// The answer carrying a grant's certificate.
fn response(grant: &GrantIssued, certificate: String) -> RequestCertificateResponse {
    RequestCertificateResponse {
        certificate,
        grant_id: grant.grant_id.to_string(),
        serial: grant.serial,
        key_id: grant.key_id.clone(),
        valid_after: grant.valid_after as i64,
        valid_before: grant.valid_before as i64,
        rule: grant.rule.clone(),
        tier: grant.tier.clone(),
        principals: grant.principals.clone(),
        extensions: grant.extensions.clone(),
        request_id: grant.request_id.to_string(),
        emergency: grant.emergency,
        approvers: grant.approvers.clone(),
    }
}
