//! The CLI's one use of `unsafe`: loading a PAM module as libpam would, for `host doctor`.
//! Every other module of the crate starts with `#![forbid(unsafe_code)]`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Loads a PAM module as libpam would (`dlopen` + `dlsym`) to prove it can be loaded.
pub fn dlopen_check(path: &Path, symbol: &str) -> Result<(), String> {
    use nix::libc;
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "the path contains a NUL byte".to_owned())?;
    let c_symbol = CString::new(symbol).map_err(|_| "bad symbol name".to_owned())?;
    // SAFETY: both arguments are NUL-terminated strings that outlive the calls; the text
    // dlerror returns is copied before any other dl* call. Loading runs the module's
    // initialisers, as sshd's libpam does. The handle is deliberately never closed:
    // unloading a Rust cdylib with thread-local destructors is not safe, and the process
    // exits soon after.
    unsafe {
        let last_error = || {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_owned()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(last_error());
        }
        libc::dlerror();
        if libc::dlsym(handle, c_symbol.as_ptr()).is_null() {
            return Err(format!("no symbol {symbol}: {}", last_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_a_library_that_is_not_a_module_fails() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.so");
        std::fs::write(&junk, "not an ELF file").unwrap();
        assert!(dlopen_check(&junk, "pam_sm_open_session").is_err());
        // libc loads but is no PAM module.
        let e = dlopen_check(Path::new("libc.so.6"), "pam_sm_open_session").unwrap_err();
        assert!(e.contains("no symbol pam_sm_open_session"), "{e}");
    }
}
