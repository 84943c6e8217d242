//! Keys and certificates: breakglass profile certificates signed with ssh-key's builder
//! (the one builder of the tests), keys and certificates on disk for `ssh`, and
//! `ssh-keygen` for keys, KRL checks and what only OpenSSH should make.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_ok;
use breakglass_proto::profile::{
    CRITICAL_FORCE_COMMAND, EXT_GRANT_ID, EXT_HOSTS, EXT_TIER, GrantId, key_id,
};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey};

/// A fixed instant (Unix seconds) for tests that pass the time as a parameter.
pub const NOW: u64 = 1_800_000_000;

/// A fresh Ed25519 key.
pub fn new_key() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("random key")
}

/// A certificate authority key.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's private key.
    pub key: PrivateKey,
}

impl TestCa {
    /// A fresh Ed25519 CA.
    pub fn new() -> Self {
        Self { key: new_key() }
    }

    /// The public key line (`ssh-ed25519 AAAA...`).
    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().expect("encode CA key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// What a test certificate carries. [`CertSpec::new`] is a live certificate for an
/// end-to-end login; [`CertSpec::default`] one around the fixed instant [`NOW`].
/// Fields left alone follow the breakglass profile (key id
/// `breakglass/<grant>/<requester>`, grant id, host scope and tier extensions).
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// Grant id number.
    pub grant: u64,
    /// Requester, in the key id.
    pub requester: String,
    /// Principals (Unix accounts).
    pub principals: Vec<String>,
    /// Host scope (comma-separated patterns); `None` leaves the extension out.
    pub hosts: Option<String>,
    /// `valid_after`, Unix seconds.
    pub valid_after: u64,
    /// `valid_before`, Unix seconds.
    pub valid_before: u64,
    /// Certificate serial.
    pub serial: u64,
    /// User or host certificate.
    pub cert_type: CertType,
    /// A key id other than the profile's.
    pub key_id: Option<String>,
    /// Critical options (name, value), e.g. `force-command`.
    pub critical: Vec<(String, String)>,
    /// `permit-*` extensions granted (empty values).
    pub permits: Vec<String>,
}

impl CertSpec {
    /// A certificate for `principal` on hosts `db-*`, valid from a minute ago for
    /// `valid_for` seconds, serial 10000 + grant, with `permit-pty` and
    /// `permit-port-forwarding`.
    pub fn new(grant: u64, principal: &str, valid_for: u64) -> Self {
        let now = crate::machine::unix_now();
        Self {
            grant,
            principals: vec![principal.into()],
            valid_after: now - 60,
            valid_before: now + valid_for,
            serial: 10_000 + grant,
            permits: vec!["permit-pty".into(), "permit-port-forwarding".into()],
            ..Self::default()
        }
    }

    /// With the host scope `hosts`.
    pub fn with_hosts(mut self, hosts: &str) -> Self {
        self.hosts = Some(hosts.into());
        self
    }

    /// With the `force-command` critical option `command`.
    pub fn with_force_command(mut self, command: &str) -> Self {
        self.critical
            .push((CRITICAL_FORCE_COMMAND.into(), command.into()));
        self
    }

    /// Of a recording tier, as the CA signs it: the session-recording extension, and the
    /// recorder at `recorder` as force-command running `command` (`None`: the login shell
    /// or the client's command), recording input too with `input`.
    pub fn with_recording(mut self, recorder: &str, command: Option<&str>, input: bool) -> Self {
        let fc = breakglass_proto::recording::RecorderCommand {
            recorder: recorder.into(),
            grant: GrantId(self.grant).to_string(),
            input,
            command: command.map(str::to_owned),
        }
        .to_force_command();
        self.permits
            .push(breakglass_proto::profile::EXT_SESSION_RECORDING.into());
        self.with_force_command(&fc)
    }

    /// Without the `permit-*` extension `permit`.
    pub fn without_permit(mut self, permit: &str) -> Self {
        self.permits.retain(|p| p != permit);
        self
    }
}

impl Default for CertSpec {
    /// Grant 0xff for `alice` on `db-*`, valid from [`NOW`] - 60 to [`NOW`] + 600, serial
    /// 4242, `permit-pty`.
    fn default() -> Self {
        Self {
            grant: 0xff,
            requester: "sre@example.com".into(),
            principals: vec!["alice".into()],
            hosts: Some("db-*".into()),
            valid_after: NOW - 60,
            valid_before: NOW + 600,
            serial: 4242,
            cert_type: CertType::User,
            key_id: None,
            critical: vec![],
            permits: vec!["permit-pty".into()],
        }
    }
}

/// Signs a certificate for `subject` with `ca` as `spec` says, as the breakglass CA
/// would (tier `low`).
pub fn sign_for(ca: &PrivateKey, subject: &PrivateKey, spec: &CertSpec) -> Certificate {
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        subject.public_key().key_data().clone(),
        spec.valid_after,
        spec.valid_before,
    )
    .expect("builder");
    let grant = GrantId(spec.grant);
    b.serial(spec.serial).expect("serial");
    b.key_id(
        spec.key_id
            .clone()
            .unwrap_or_else(|| key_id(grant, &spec.requester)),
    )
    .expect("key id");
    b.cert_type(spec.cert_type).expect("type");
    for p in &spec.principals {
        b.valid_principal(p.clone()).expect("principal");
    }
    for (k, v) in &spec.critical {
        b.critical_option(k.clone(), v.clone())
            .expect("critical option");
    }
    b.extension(EXT_GRANT_ID, grant.to_string())
        .expect("grant ext");
    if let Some(h) = &spec.hosts {
        b.extension(EXT_HOSTS, h.clone()).expect("hosts ext");
    }
    b.extension(EXT_TIER, "low").expect("tier ext");
    for p in &spec.permits {
        b.extension(p.clone(), "").expect("permit ext");
    }
    b.sign(ca).expect("sign")
}

/// Signs a certificate for a fresh key with `ca`.
pub fn sign(ca: &PrivateKey, spec: &CertSpec) -> Certificate {
    sign_for(ca, &new_key(), spec)
}

/// Signs a certificate for `key` with the test CA `ca`.
pub fn sign_cert(ca: &TestCa, key: &PrivateKey, spec: &CertSpec) -> Certificate {
    sign_for(&ca.key, key, spec)
}

/// `SSH_AUTH_INFO_0` as sshd writes it for a certificate login.
pub fn auth_info(cert: &Certificate) -> String {
    let line = cert.to_openssh().expect("encode certificate");
    let mut parts = line.split(' ');
    format!(
        "publickey {} {}\n",
        parts.next().expect("key type"),
        parts.next().expect("base64")
    )
}

/// Writes `dir/ca.pub`: the public keys of `cas` after a comment line; returns its path.
pub fn ca_file(dir: &Path, cas: &[&PrivateKey]) -> PathBuf {
    let path = dir.join("ca.pub");
    let text: String = cas
        .iter()
        .map(|k| k.public_key().to_openssh().expect("encode key") + "\n")
        .collect();
    std::fs::write(&path, format!("# trusted\n{text}")).expect("write ca.pub");
    path
}

/// A client identity on disk: private key plus (optionally) a certificate.
#[derive(Debug)]
pub struct ClientKey {
    /// Private key file (mode 0600).
    pub key_path: PathBuf,
    /// Certificate file, if any.
    pub cert_path: Option<PathBuf>,
    /// The certificate's `valid_before`, if any.
    pub valid_before: Option<u64>,
}

impl ClientKey {
    /// Writes a fresh key and a certificate signed for it into `dir`.
    pub fn with_cert(dir: &Path, name: &str, ca: &TestCa, spec: &CertSpec) -> Self {
        let key = new_key();
        let cert = sign_cert(ca, &key, spec);
        let key_path = write_private_key(dir, name, &key);
        Self::certified(key_path, &cert, format!("{name}-cert.pub"))
    }

    /// The key at `key_path` with `cert` written beside it as `cert_name`.
    pub fn certified(key_path: PathBuf, cert: &Certificate, cert_name: String) -> Self {
        let cert_path = key_path.with_file_name(cert_name);
        std::fs::write(&cert_path, cert.to_openssh().expect("encode cert") + "\n")
            .expect("write cert");
        Self {
            key_path,
            cert_path: Some(cert_path),
            valid_before: Some(cert.valid_before()),
        }
    }

    /// Writes a plain key (no certificate) and returns it with its public line.
    pub fn plain(dir: &Path, name: &str) -> (Self, String) {
        let key = new_key();
        let key_path = write_private_key(dir, name, &key);
        let public = key.public_key().to_openssh().expect("encode key");
        (
            Self {
                key_path,
                cert_path: None,
                valid_before: None,
            },
            public,
        )
    }
}

/// Writes `key` to `dir/name` (OpenSSH format, mode 0600); returns its path.
pub fn write_private_key(dir: &Path, name: &str, key: &PrivateKey) -> PathBuf {
    let path = dir.join(name);
    key.write_openssh_file(&path, LineEnding::LF)
        .expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    path
}

/// Makes an SSH key pair `dir/name` with `ssh-keygen` (`args`: e.g. `-t ed25519`) and
/// returns the public key path.
pub fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-f"])
            .arg(&path)
            .args(args),
    );
    path.with_extension("pub")
}

/// Writes an empty KRL to `path` with `ssh-keygen -k`.
pub fn empty_krl(path: &Path) {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-k", "-f"])
            .arg(path),
    );
}

/// `ssh-keygen -Q -f krl file`: true when OpenSSH finds `file` (a key or certificate)
/// revoked (exit 1, `REVOKED`), false when not (exit 0, `ok`).
pub fn ssh_keygen_revoked(krl: &Path, file: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(file)
        .output()
        .expect("ssh-keygen runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(1) => {
            assert!(text.contains("REVOKED"), "rc 1 without REVOKED: {text}");
            true
        }
        Some(0) => {
            assert!(text.contains("ok"), "rc 0 without ok: {text}");
            false
        }
        other => panic!("ssh-keygen -Q failed ({other:?}): {text}"),
    }
}
