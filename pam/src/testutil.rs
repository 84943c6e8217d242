//! Test helpers: a scripted [`Pam`] and a recording [`Host`]; certificates following the
//! breakglass profile come from the workspace's test harness.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use bg_syslog::Severity;

use crate::error::Error;
use crate::guard::GuardSpec;
use crate::module::{Host, Pam, PamItem, PendingGuard};
use crate::record::OpenSession;

pub use breakglass_test_support::cert::{CertSpec, NOW, auth_info, ca_file, new_key as key, sign};

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
    fn set_env(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.env.insert(name.into(), value.as_bytes().to_vec());
        Ok(())
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
    pub shell: Option<String>,
    pub guard_result: Result<(), String>,
    /// Specs given to guards (started guards that run on).
    pub guards: RefCell<Vec<GuardSpec>>,
    /// Session ids of every guard launched, in order.
    pub launched: RefCell<Vec<String>>,
    /// Session ids of launched guards dropped without a spec (killed and reaped).
    pub killed: RefCell<Vec<String>>,
    pub logs: RefCell<Vec<(Severity, String)>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            hostname: "db-7".into(),
            sshd: true,
            audit_session: Some(17),
            shell: Some("/bin/bash".into()),
            guard_result: Ok(()),
            guards: RefCell::default(),
            launched: RefCell::default(),
            killed: RefCell::default(),
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
    /// The time as given: the tests' sessions run in one process at one fixed time, and
    /// their expected ids name it.
    fn session_ms(&self, ms: u64) -> u64 {
        ms
    }
    fn audit_session_id(&self) -> Option<u32> {
        self.audit_session
    }
    fn login_shell(&self, _user: &str) -> Option<String> {
        self.shell.clone()
    }
    fn is_sshd(&self) -> bool {
        self.sshd
    }
    fn launch_guard(
        &self,
        _guard: &Path,
        session: &str,
    ) -> Result<Box<dyn PendingGuard + '_>, Error> {
        self.guard_result.clone().map_err(Error::Guard)?;
        self.launched.borrow_mut().push(session.to_owned());
        Ok(Box::new(FakeGuard {
            host: self,
            session: session.to_owned(),
            handed: false,
        }))
    }
    fn log(&self, _socket: &Path, severity: Severity, fields: &[(&str, &str)]) {
        self.logs
            .borrow_mut()
            .push((severity, bg_syslog::format_fields(fields)));
    }
}

/// A guard [`FakeHost`] launched: its spec counts (in `guards`) only once the session is
/// committed, after `meanwhile` succeeds, like the real one's; dropped without a commit
/// it counts as killed.
struct FakeGuard<'h> {
    host: &'h FakeHost,
    session: String,
    handed: bool,
}

impl PendingGuard for FakeGuard<'_> {
    fn session(&self) -> &str {
        &self.session
    }
    fn hand_over(
        mut self: Box<Self>,
        spec: &GuardSpec,
        meanwhile: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        meanwhile()?;
        assert_eq!(
            spec.record.session, self.session,
            "the guard's spec is for its session"
        );
        self.host.guards.borrow_mut().push(spec.clone());
        self.handed = true;
        Ok(())
    }
}

impl Drop for FakeGuard<'_> {
    fn drop(&mut self) {
        if !self.handed {
            self.host.killed.borrow_mut().push(self.session.clone());
        }
    }
}
