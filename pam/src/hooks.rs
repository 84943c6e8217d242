//! The top floor: the `pam_sm_*` entry points libpam calls (through pam-bindings'
//! `pam_hooks!`), and [`Pam`] over the real libpam handle, with the one libpam call
//! pam-bindings lacks (`pam_getenv`). With [`crate::system`] (the bottom floor, the OS)
//! this is the only place of `unsafe` in the crate. Everything here is a thin
//! translation; the decisions are made in [`crate::module`], and the real operating
//! system it works on is [`RealHost`].
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::ops::Deref;
use std::time::SystemTime;

use pam::constants::{PAM_ERROR_MSG, PAM_TEXT_INFO, PamFlag, PamResultCode};
use pam::conv::Conv;
use pam::items::{Item, RHost, Service, Tty};
use pam::module::{PamHandle, PamHooks};

use crate::host::RealHost;
use crate::module::{self, Host, Outcome, Pam, PamItem};
use crate::record::OpenSession;

/// Key under which the verified session is kept between open and close.
const DATA_KEY: &str = "pam_breakglass.session";

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> std::ffi::c_int;
}

/// The PAM hooks of `pam_breakglass.so`.
#[derive(Debug)]
pub struct Breakglass;

pam::pam_hooks!(Breakglass);

impl PamHooks for Breakglass {
    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        session_hook(pamh, &args, module::open_session)
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        session_hook(pamh, &args, module::close_session)
    }
}

/// A session hook of [`crate::module`] (`open_session` or `close_session`).
type SessionHook = fn(&mut dyn Pam, &dyn Host, &[String], SystemTime) -> Outcome;

/// Runs `hook` on the real handle and host at the current time, a panic becoming a
/// denial, and maps its outcome to the PAM code.
fn session_hook(pamh: &mut PamHandle, args: &[&CStr], hook: SessionHook) -> PamResultCode {
    let now = SystemTime::now();
    let args = utf8_args(args);
    let outcome = module::catch_panics(&args, || {
        let mut pam = RealPam { pamh };
        hook(&mut pam, &RealHost, &args, now)
    });
    outcome.session_code()
}

/// Module arguments as strings; a non-UTF-8 argument becomes a marker that the option
/// parser rejects as unknown (with the bytes shown escaped).
pub fn utf8_args(args: &[&CStr]) -> Vec<String> {
    args.iter()
        .map(|a| match a.to_str() {
            Ok(s) => s.to_owned(),
            Err(_) => format!("<non-UTF-8 {:?}>", a.to_bytes().escape_ascii().to_string()),
        })
        .collect()
}

/// [`Pam`] over a real libpam handle.
struct RealPam<'a> {
    pamh: &'a mut PamHandle,
}

/// A string item of the handle, if set.
fn string_item<'a, T>(pamh: &'a PamHandle) -> Option<String>
where
    T: Item<'a> + Deref<Target = &'a CStr>,
{
    let item = pamh.get_item::<T>().ok().flatten()?;
    Some(item.to_string_lossy().into_owned())
}

impl Pam for RealPam<'_> {
    fn user(&mut self) -> Result<String, String> {
        self.pamh
            .get_user(None)
            .map_err(|code| format!("pam_get_user failed ({code:?})"))
    }

    fn item(&self, item: PamItem) -> Option<String> {
        match item {
            PamItem::Service => string_item::<Service<'_>>(self.pamh),
            PamItem::RHost => string_item::<RHost<'_>>(self.pamh),
            PamItem::Tty => string_item::<Tty<'_>>(self.pamh),
        }
    }

    fn env(&mut self, name: &str) -> Option<Vec<u8>> {
        let name = CString::new(name).ok()?;
        let pamh: *mut PamHandle = &mut *self.pamh;
        // SAFETY: `pamh` is the live handle libpam passed to this hook; `name` is a valid
        // NUL-terminated string. pam_getenv returns NULL or a pointer into the handle's
        // environment, valid until the next pam_putenv; it is copied before returning.
        let value = unsafe { pam_getenv(pamh, name.as_ptr()) };
        if value.is_null() {
            return None;
        }
        // SAFETY: non-null results of pam_getenv point to a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(value) }.to_bytes().to_vec())
    }

    fn set_env(&mut self, name: &str, value: &str) -> Result<(), String> {
        let pair = CString::new(format!("{name}={value}"))
            .map_err(|_| format!("{name}: a NUL byte in the value"))?;
        let pamh: *mut PamHandle = &mut *self.pamh;
        // SAFETY: `pamh` is the live handle libpam passed to this hook; `pair` is a valid
        // NUL-terminated string that pam_putenv copies.
        let rc = unsafe { pam_putenv(pamh, pair.as_ptr()) };
        if rc != 0 {
            return Err(format!("pam_putenv({name}) failed (code {rc})"));
        }
        Ok(())
    }

    fn set_session(&mut self, session: OpenSession) -> Result<(), String> {
        self.pamh
            .set_data(DATA_KEY, Box::new(session))
            .map_err(|code| format!("pam_set_data failed ({code:?})"))
    }

    fn session(&self) -> Option<OpenSession> {
        // SAFETY: only this module stores data under DATA_KEY, and always an OpenSession
        // (set_session above); the reference is cloned before the handle changes.
        let data = unsafe { self.pamh.get_data::<OpenSession>(DATA_KEY) };
        data.ok().cloned()
    }

    fn tell_user(&self, error: bool, message: &str) {
        if let Ok(Some(conv)) = self.pamh.get_item::<Conv>() {
            let style = if error { PAM_ERROR_MSG } else { PAM_TEXT_INFO };
            let _ = conv.send(style, message);
        }
    }
}
