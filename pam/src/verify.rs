//! Independent verification of the certificate sshd accepted: parse `SSH_AUTH_INFO_0`,
//! check the signature against the pinned CA keys and every rule of the breakglass
//! profile. Time is a parameter; nothing here reads the clock.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use breakglass_proto::names;
use breakglass_proto::profile::{
    CRITICAL_FORCE_COMMAND, CRITICAL_SOURCE_ADDRESS, KEY_ID_PREFIX, Profile,
};
use ssh_key::certificate::CertType;
use ssh_key::{Certificate, Fingerprint, HashAlg, PublicKey};

use crate::error::Error;
use crate::krl::Krl;

/// Longest `SSH_AUTH_INFO_0` accepted (a certificate line is about 1 KiB).
pub const MAX_AUTH_INFO_LEN: usize = 16 * 1024;
/// Most lines (completed authentication methods) accepted in `SSH_AUTH_INFO_0`.
pub const MAX_AUTH_INFO_LINES: usize = 8;
/// Largest trusted CA keys file read.
pub const MAX_CA_FILE_LEN: u64 = 256 * 1024;
/// Largest KRL read.
pub const MAX_KRL_LEN: u64 = 16 * 1024 * 1024;
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";
const OUR_EXT_SUFFIX: &str = "@breakglass.dev";
/// Authentication method names sshd writes into `SSH_AUTH_INFO_0`.
const SSH_METHODS: [&str; 6] = [
    "publickey",
    "password",
    "keyboard-interactive",
    "hostbased",
    "gssapi-with-mic",
    "gssapi-keyex",
];

/// The CA keys the module trusts, by SHA-256 fingerprint.
#[derive(Clone, Debug)]
pub struct TrustedCas {
    fingerprints: Vec<Fingerprint>,
}

impl TrustedCas {
    /// Parses a `TrustedUserCAKeys`-style file: one OpenSSH public key per line, `#`
    /// comments and blank lines allowed. Any other line is an error.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let mut fingerprints = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = PublicKey::from_openssh(line).map_err(|e| {
                Error::File(format!(
                    "trusted CA keys file {origin} line {}: not an OpenSSH public key ({e})",
                    n + 1
                ))
            })?;
            fingerprints.push(key.fingerprint(HashAlg::Sha256));
        }
        if fingerprints.is_empty() {
            return Err(Error::File(format!(
                "trusted CA keys file {origin} holds no key; put the breakglass CA public key in it"
            )));
        }
        Ok(Self { fingerprints })
    }

    fn contains(&self, fp: &Fingerprint) -> bool {
        self.fingerprints.contains(fp)
    }
}

/// What a certificate line in `SSH_AUTH_INFO_0` looks like before parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthInfo<'a> {
    /// No certificate was used (the methods are listed for the log).
    NoCertificate(String),
    /// `"<keytype> <base64>"` of the one certificate used.
    Certificate(String, &'a str),
}

/// Splits `SSH_AUTH_INFO_0` into lines and finds the one certificate, refusing anything
/// sshd would not have written.
pub fn parse_auth_info(raw: &[u8]) -> Result<AuthInfo<'_>, Error> {
    if raw.is_empty() {
        return Err(Error::AuthInfo("it is empty".into()));
    }
    if raw.len() > MAX_AUTH_INFO_LEN {
        return Err(Error::AuthInfo(format!(
            "it is {} bytes long; the limit is {MAX_AUTH_INFO_LEN}",
            raw.len()
        )));
    }
    let text =
        std::str::from_utf8(raw).map_err(|_| Error::AuthInfo("it is not valid UTF-8".into()))?;
    if let Some(c) = text
        .chars()
        .find(|c| (c.is_control() && *c != '\n') || !c.is_ascii())
    {
        return Err(Error::AuthInfo(format!("it contains the character {c:?}")));
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() > MAX_AUTH_INFO_LINES {
        return Err(Error::AuthInfo(format!(
            "it has {} lines; sshd writes one per authentication method",
            lines.len()
        )));
    }
    let mut methods = Vec::new();
    let mut cert = None;
    for (i, line) in lines.iter().enumerate() {
        let mut fields = line.split(' ');
        let method = fields.next().unwrap_or_default();
        let base = method.split_once('/').map_or(method, |(m, _)| m);
        if !SSH_METHODS.contains(&base) {
            return Err(Error::AuthInfo(format!(
                "line {} does not start with an sshd authentication method ({})",
                i + 1,
                SSH_METHODS.join(", ")
            )));
        }
        methods.push(method);
        if method != "publickey" {
            continue;
        }
        let (Some(keytype), Some(b64)) = (fields.next(), fields.next()) else {
            return Err(Error::AuthInfo(format!(
                "line {} is `publickey` without a key type and key",
                i + 1
            )));
        };
        if !keytype.ends_with(CERT_SUFFIX) {
            continue;
        }
        if cert.is_some() {
            return Err(Error::AuthInfo("it lists more than one certificate".into()));
        }
        cert = Some((keytype, b64));
    }
    match cert {
        Some((keytype, b64)) => Ok(AuthInfo::Certificate(keytype.to_owned(), b64)),
        None => Ok(AuthInfo::NoCertificate(methods.join(","))),
    }
}

/// A certificate that passed every check. Only [`verify`] constructs it (its fields are
/// private), so holding one means the checks ran.
#[derive(Clone, Debug)]
pub struct VerifiedCertificate {
    profile: Profile,
    serial: u64,
    key_id: String,
    principal: String,
    valid_after: u64,
    valid_before: u64,
    ca_fingerprint: String,
    force_command: Option<String>,
    recording: bool,
    user_rc: bool,
}

impl VerifiedCertificate {
    /// Grant id, requester, host scope and tier.
    #[must_use]
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
    /// Certificate serial.
    #[must_use]
    pub fn serial(&self) -> u64 {
        self.serial
    }
    /// Certificate key id.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    /// The principal (PAM user) it was checked for.
    #[must_use]
    pub fn principal(&self) -> &str {
        &self.principal
    }
    /// Start of validity (Unix seconds).
    #[must_use]
    pub fn valid_after(&self) -> u64 {
        self.valid_after
    }
    /// End of validity (Unix seconds, exclusive): the session ends here.
    #[must_use]
    pub fn valid_before(&self) -> u64 {
        self.valid_before
    }
    /// SHA-256 fingerprint of the CA key that signed it.
    #[must_use]
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }
    /// The `force-command` critical option, if any.
    #[must_use]
    pub fn force_command(&self) -> Option<&str> {
        self.force_command.as_deref()
    }
    /// The grant's sessions must be recorded (extension `session-recording@breakglass.dev`).
    #[must_use]
    pub fn recording(&self) -> bool {
        self.recording
    }
    /// The certificate lets sshd run the user's `~/.ssh/rc` (extension `permit-user-rc`).
    #[must_use]
    pub fn permits_user_rc(&self) -> bool {
        self.user_rc
    }
}

/// Result of verifying a login.
#[must_use]
#[derive(Debug)]
pub enum Verdict {
    /// Not a breakglass certificate login (the reason is for debug logs).
    NotOurs(String),
    /// A breakglass certificate that passed every check.
    Verified(Box<VerifiedCertificate>),
    /// Deny.
    Rejected(Error),
}

/// Everything [`verify`] checks against.
#[derive(Debug)]
pub struct Checks<'a> {
    /// CA keys trusted by the module.
    pub trusted: &'a TrustedCas,
    /// Optional revocation list.
    pub krl: Option<&'a Krl>,
    /// The PAM user.
    pub user: &'a str,
    /// This host's name.
    pub host: &'a str,
    /// Current time, Unix seconds.
    pub now: u64,
}

/// Verifies the login described by `SSH_AUTH_INFO_0` (`None` when the variable is unset):
/// [`parse`], then [`Candidate::verify`].
pub fn verify(auth_info: Option<&[u8]>, checks: &Checks<'_>) -> Verdict {
    match parse(auth_info, checks.trusted) {
        Ok(candidate) => candidate.verify(checks),
        Err(verdict) => verdict,
    }
}

/// A certificate from `SSH_AUTH_INFO_0` in canonical encoding, whose signing CA is one of
/// the trusted keys: a breakglass login by its claim, **not verified yet** (signature,
/// validity, principal, profile, scope and revocation are [`Candidate::verify`]'s).
#[derive(Debug)]
pub struct Candidate {
    cert: Certificate,
    ca_fp: Fingerprint,
}

/// The cheap first half of [`verify`]: finds and parses the certificate and checks that a
/// trusted CA claims to have signed it. `Err` is the verdict already reached: not ours, or
/// rejected (malformed, or claiming the breakglass profile from an untrusted CA).
pub fn parse(auth_info: Option<&[u8]>, trusted: &TrustedCas) -> Result<Candidate, Verdict> {
    let Some(raw) = auth_info else {
        return Err(Verdict::NotOurs(
            "SSH_AUTH_INFO_0 is not set (not an sshd login)".into(),
        ));
    };
    let (keytype, b64) = match parse_auth_info(raw) {
        Err(e) => return Err(Verdict::Rejected(e)),
        Ok(AuthInfo::NoCertificate(methods)) => {
            return Err(Verdict::NotOurs(format!(
                "no certificate used (methods: {methods})"
            )));
        }
        Ok(AuthInfo::Certificate(t, b)) => (t, b),
    };
    let cert = match Certificate::from_openssh(&format!("{keytype} {b64}")) {
        Ok(c) => c,
        Err(e) => {
            return Err(Verdict::Rejected(Error::AuthInfo(format!(
                "the {keytype} certificate does not parse ({e})"
            ))));
        }
    };
    // ssh-key checks the CA signature over its own encoding of the fields it parsed, and
    // its decoder lets some malformed lengths through (an extension value longer than its
    // section): only a certificate that is exactly that encoding was signed as sent.
    if cert
        .to_openssh()
        .ok()
        .as_deref()
        .and_then(|l| l.split(' ').nth(1))
        != Some(b64)
    {
        return Err(Verdict::Rejected(Error::AuthInfo(format!(
            "the {keytype} certificate is not in canonical encoding (malformed lengths)"
        ))));
    }
    let ca_fp = cert.signature_key().fingerprint(HashAlg::Sha256);
    if !trusted.contains(&ca_fp) {
        let claims_profile = cert.key_id().starts_with(&format!("{KEY_ID_PREFIX}/"))
            || cert
                .extensions()
                .keys()
                .any(|k| k.ends_with(OUR_EXT_SUFFIX));
        if claims_profile {
            return Err(Verdict::Rejected(Error::UntrustedCa(format!(
                "certificate {:?} claims to be a breakglass certificate but is signed by CA {ca_fp}, which is not in the module's trusted CA keys file",
                cert.key_id()
            ))));
        }
        return Err(Verdict::NotOurs(format!(
            "certificate {:?} from CA {ca_fp} is not a breakglass certificate",
            cert.key_id(),
        )));
    }
    Ok(Candidate { cert, ca_fp })
}

impl Candidate {
    /// The grant id the certificate's profile names, unverified: only for naming what is
    /// started before the checks end (the session guard's command line). `None` when the
    /// profile does not parse ([`Candidate::verify`] then rejects it).
    #[must_use]
    pub fn claimed_grant(&self) -> Option<String> {
        Profile::from_certificate(&self.cert)
            .ok()
            .map(|p| p.grant_id.to_string())
    }

    /// The second half of [`verify`]: every check of the signature and the profile.
    pub fn verify(&self, checks: &Checks<'_>) -> Verdict {
        match verify_certificate(&self.cert, &self.ca_fp, checks) {
            Ok(v) => Verdict::Verified(Box::new(v)),
            Err(e) => Verdict::Rejected(e),
        }
    }
}

/// Every check of a certificate whose CA (`ca_fp`) is trusted.
fn verify_certificate(
    cert: &Certificate,
    ca_fp: &Fingerprint,
    c: &Checks<'_>,
) -> Result<VerifiedCertificate, Error> {
    let reject = Error::Certificate;
    if cert.validate_at(c.now, [ca_fp]).is_err() {
        // validate_at checks signature and window; say which failed.
        if cert.valid_before() <= c.now {
            return Err(reject(format!(
                "expired at {} (now {})",
                fmt_time(cert.valid_before()),
                fmt_time(c.now)
            )));
        }
        if c.now < cert.valid_after() {
            return Err(reject(format!(
                "not valid before {}",
                fmt_time(cert.valid_after())
            )));
        }
        return Err(reject("bad signature".into()));
    }
    if cert.cert_type() != CertType::User {
        return Err(reject(
            "it is a host certificate, not a user certificate".into(),
        ));
    }
    if let Err(e) = names::check_principal(c.user) {
        return Err(reject(format!("PAM user: {e}")));
    }
    if !cert.valid_principals().iter().any(|p| p == c.user) {
        return Err(reject(format!(
            "it is for {:?}, not for the login user {:?}",
            cert.valid_principals(),
            c.user
        )));
    }
    let known: BTreeSet<&str> = [CRITICAL_FORCE_COMMAND, CRITICAL_SOURCE_ADDRESS].into();
    if let Some(unknown) = cert
        .critical_options()
        .keys()
        .find(|k| !known.contains(k.as_str()))
    {
        return Err(reject(format!("unknown critical option {unknown:?}")));
    }
    let profile = Profile::from_certificate(cert).map_err(|e| reject(e.to_string()))?;
    if !profile.allows_host(c.host) {
        return Err(Error::Scope(format!(
            "grant {} is scoped to hosts {:?}; this host is {:?}",
            profile.grant_id,
            profile.hosts.join(","),
            c.host
        )));
    }
    if let Some(krl) = c.krl
        && let Some(why) = krl.revoked(cert)
    {
        return Err(Error::Revoked(format!(
            "grant {} is revoked: {why}",
            profile.grant_id
        )));
    }
    Ok(VerifiedCertificate {
        profile,
        serial: cert.serial(),
        key_id: cert.key_id().to_owned(),
        principal: c.user.to_owned(),
        valid_after: cert.valid_after(),
        valid_before: cert.valid_before(),
        ca_fingerprint: ca_fp.to_string(),
        force_command: cert.critical_options().get(CRITICAL_FORCE_COMMAND).cloned(),
        recording: cert
            .extensions()
            .contains_key(breakglass_proto::profile::EXT_SESSION_RECORDING),
        user_rc: cert.extensions().contains_key("permit-user-rc"),
    })
}

/// RFC 3339 UTC, seconds precision.
#[must_use]
pub fn fmt_time(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.min(253_402_300_799));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{CertSpec, NOW, auth_info, key, sign};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    /// The canonical-encoding check must not refuse what OpenSSH writes: certificates of
    /// Ed25519, ECDSA and RSA user keys made by `ssh-keygen -s` verify.
    #[test]
    fn ssh_keygen_certificates_of_every_key_type_verify() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let st = Command::new("ssh-keygen")
                .args(args)
                .current_dir(dir.path())
                .status();
            assert!(st.unwrap().success(), "ssh-keygen {args:?}");
        };
        run(&["-q", "-t", "ed25519", "-N", "", "-f", "ca"]);
        let ca = std::fs::read_to_string(dir.path().join("ca.pub")).unwrap();
        let trusted = TrustedCas::parse(&ca, "test").unwrap();
        for (kind, bits) in [("ed25519", "256"), ("ecdsa", "256"), ("rsa", "3072")] {
            run(&["-q", "-t", kind, "-b", bits, "-N", "", "-f", kind]);
            run(&[
                "-q",
                "-s",
                "ca",
                "-I",
                "breakglass/g-00000000000000aa/sre@example.com",
                "-n",
                "postgres",
                "-V",
                "20260101:20360101",
                "-z",
                "7",
                "-O",
                "extension:grant-id@breakglass.dev=g-00000000000000aa",
                "-O",
                "extension:hosts@breakglass.dev=db-*",
                "-O",
                "force-command=/usr/bin/id",
                &format!("{kind}.pub"),
            ]);
            let line =
                std::fs::read_to_string(dir.path().join(format!("{kind}-cert.pub"))).unwrap();
            let mut f = line.split(' ');
            let info = format!("publickey {} {}\n", f.next().unwrap(), f.next().unwrap());
            let checks = Checks {
                trusted: &trusted,
                krl: None,
                user: "postgres",
                host: "db-1",
                now: 1_893_456_000,
            };
            match verify(Some(info.as_bytes()), &checks) {
                Verdict::Verified(v) => assert_eq!(v.force_command(), Some("/usr/bin/id")),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    /// Found by the `auth_info` fuzz target: a certificate whose `tier@breakglass.dev`
    /// value length was changed (a signed byte) still verified, because ssh-key decoded
    /// it leniently and checked the signature over its own re-encoding.
    #[test]
    fn certificate_with_a_changed_length_byte_is_rejected() {
        let ca = key();
        let trusted = TrustedCas::parse(&ca.public_key().to_openssh().unwrap(), "test").unwrap();
        let checks = Checks {
            trusted: &trusted,
            krl: None,
            user: "alice",
            host: "db-1",
            now: NOW,
        };
        let info = auth_info(&sign(&ca, &CertSpec::default()));
        assert!(matches!(
            verify(Some(info.as_bytes()), &checks),
            Verdict::Verified(_)
        ));
        let mut fields = info.trim_end().split(' ');
        let (_, keytype, b64) = (
            fields.next(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        let mut blob = B64.decode(b64).unwrap();
        let name = breakglass_proto::profile::EXT_TIER.as_bytes();
        let at = blob.windows(name.len()).position(|w| w == name).unwrap() + name.len();
        // The value's length (4 bytes, big-endian) says 16 bytes more than there are.
        blob[at + 3] += 0x10;
        let changed = format!("publickey {keytype} {}\n", B64.encode(&blob));
        match verify(Some(changed.as_bytes()), &checks) {
            Verdict::Rejected(Error::AuthInfo(m)) => assert!(m.contains("canonical"), "{m}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}
