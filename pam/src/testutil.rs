//! Test helpers: certificates following the breakglass profile, a scripted [`Pam`]
//! and a recording [`Host`].
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bg_syslog::Severity;
use breakglass_proto::profile::{EXT_GRANT_ID, EXT_HOSTS, EXT_TIER, GrantId, key_id};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, PrivateKey};

use crate::guard::GuardSpec;
use crate::module::{Host, Pam, PamItem};
use crate::record::OpenSession;

pub const NOW: u64 = 1_800_000_000;

pub fn key() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
}

/// What goes into a test certificate.
pub struct CertSpec {
    pub grant: u64,
    pub requester: String,
    pub principals: Vec<String>,
    pub hosts: Option<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    pub cert_type: CertType,
    pub critical: Vec<(String, String)>,
    pub key_id: Option<String>,
    pub serial: u64,
}

impl Default for CertSpec {
    fn default() -> Self {
        Self {
            grant: 0xff,
            requester: "sre@example.com".into(),
            principals: vec!["alice".into()],
            hosts: Some("db-*".into()),
            valid_after: NOW - 60,
            valid_before: NOW + 600,
            cert_type: CertType::User,
            critical: vec![],
            key_id: None,
            serial: 4242,
        }
    }
}

pub fn sign(ca: &PrivateKey, spec: &CertSpec) -> Certificate {
    let user = key();
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        user.public_key().key_data().clone(),
        spec.valid_after,
        spec.valid_before,
    )
    .unwrap();
    let grant = GrantId(spec.grant);
    b.serial(spec.serial).unwrap();
    b.key_id(
        spec.key_id
            .clone()
            .unwrap_or_else(|| key_id(grant, &spec.requester)),
    )
    .unwrap();
    b.cert_type(spec.cert_type).unwrap();
    for p in &spec.principals {
        b.valid_principal(p.clone()).unwrap();
    }
    for (k, v) in &spec.critical {
        b.critical_option(k.clone(), v.clone()).unwrap();
    }
    b.extension(EXT_GRANT_ID, grant.to_string()).unwrap();
    if let Some(h) = &spec.hosts {
        b.extension(EXT_HOSTS, h.clone()).unwrap();
    }
    b.extension(EXT_TIER, "low").unwrap();
    b.extension("permit-pty", "").unwrap();
    b.sign(ca).unwrap()
}

/// `SSH_AUTH_INFO_0` as sshd writes it for a certificate login.
pub fn auth_info(cert: &Certificate) -> String {
    let line = cert.to_openssh().unwrap();
    let mut parts = line.split(' ');
    format!(
        "publickey {} {}\n",
        parts.next().unwrap(),
        parts.next().unwrap()
    )
}

pub fn ca_file(dir: &Path, cas: &[&PrivateKey]) -> PathBuf {
    let path = dir.join("ca.pub");
    let text: String = cas
        .iter()
        .map(|k| k.public_key().to_openssh().unwrap() + "\n")
        .collect();
    std::fs::write(&path, format!("# trusted\n{text}")).unwrap();
    path
}

#[derive(Default)]
pub struct ScriptedPam {
    pub user: String,
    pub env: BTreeMap<String, Vec<u8>>,
    pub items: BTreeMap<&'static str, String>,
    pub data: Option<OpenSession>,
    pub told: RefCell<Vec<(bool, String)>>,
}

impl ScriptedPam {
    pub fn with_info(user: &str, info: Option<&str>) -> Self {
        let mut p = Self {
            user: user.into(),
            ..Self::default()
        };
        if let Some(i) = info {
            p.env
                .insert("SSH_AUTH_INFO_0".into(), i.as_bytes().to_vec());
        }
        p.items.insert("rhost", "192.0.2.7".into());
        p.items.insert("tty", "ssh".into());
        p.items.insert("service", "sshd".into());
        p
    }
}

impl Pam for ScriptedPam {
    fn user(&mut self) -> Result<String, String> {
        Ok(self.user.clone())
    }
    fn item(&self, item: PamItem) -> Option<String> {
        let k = match item {
            PamItem::Service => "service",
            PamItem::RHost => "rhost",
            PamItem::Tty => "tty",
        };
        self.items.get(k).cloned()
    }
    fn env(&mut self, name: &str) -> Option<Vec<u8>> {
        self.env.get(name).cloned()
    }
    fn set_session(&mut self, session: OpenSession) -> Result<(), String> {
        self.data = Some(session);
        Ok(())
    }
    fn session(&self) -> Option<OpenSession> {
        self.data.clone()
    }
    fn tell_user(&self, error: bool, message: &str) {
        self.told.borrow_mut().push((error, message.into()));
    }
}

pub struct FakeHost {
    pub hostname: String,
    pub sshd: bool,
    pub audit_session: Option<u32>,
    pub guard_result: Result<(), String>,
    pub guards: RefCell<Vec<GuardSpec>>,
    pub logs: RefCell<Vec<(Severity, String)>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            hostname: "db-7".into(),
            sshd: true,
            audit_session: Some(17),
            guard_result: Ok(()),
            guards: RefCell::default(),
            logs: RefCell::default(),
        }
    }
}

impl FakeHost {
    pub fn log_text(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(_, l)| l.clone() + "\n")
            .collect()
    }
}

impl Host for FakeHost {
    fn hostname(&self) -> Result<String, String> {
        Ok(self.hostname.clone())
    }
    fn pid(&self) -> u32 {
        4242
    }
    fn audit_session_id(&self) -> Option<u32> {
        self.audit_session
    }
    fn is_sshd(&self) -> bool {
        self.sshd
    }
    fn start_guard(&self, _guard: &Path, spec: &GuardSpec) -> Result<(), String> {
        self.guards.borrow_mut().push(spec.clone());
        self.guard_result.clone()
    }
    fn log(&self, _socket: &Path, severity: Severity, fields: &[(&str, &str)]) {
        self.logs
            .borrow_mut()
            .push((severity, bg_syslog::format_fields(fields)));
    }
}
