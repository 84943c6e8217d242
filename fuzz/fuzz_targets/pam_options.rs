//! The PAM module's arguments (`key=value` tokens of the PAM service line), as libpam
//! hands them over (C strings, so the input is split at NUL bytes) and the module's FFI
//! turns them into strings, then the option parser (the contract's, which `host doctor`
//! uses too) and the lenient hints used to log a bad configuration.
//!
//! Properties: an accepted configuration names only known options, its paths are
//! absolute, and the order of the arguments does not change it.
#![no_main]

use std::ffi::CString;

use breakglass_proto::pam_options::{OPTIONS, PamOptions};
use libfuzzer_sys::fuzz_target;
use pam_breakglass::hooks::utf8_args;

fuzz_target!(|data: &[u8]| {
    let cstrings: Vec<CString> = data
        .split(|b| *b == 0)
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let refs: Vec<&std::ffi::CStr> = cstrings.iter().map(CString::as_c_str).collect();
    let args = utf8_args(&refs);
    let _ = PamOptions::syslog_hint(&args);
    let _ = PamOptions::guard_hint(&args);
    let Ok(cfg) = PamOptions::parse(&args) else {
        return;
    };
    for a in &args {
        let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
        assert!(
            OPTIONS.iter().any(|o| o.name == key),
            "accepted unknown option {a:?}"
        );
    }
    for p in [
        &cfg.ca_keys,
        &cfg.spool,
        &cfg.guard,
        &cfg.syslog,
        &cfg.sessions,
    ] {
        assert!(p.is_absolute(), "{p:?}");
    }
    if let Some(k) = &cfg.krl {
        assert!(k.is_absolute(), "{k:?}");
    }
    let mut reversed = args.clone();
    reversed.reverse();
    assert_eq!(PamOptions::parse(&reversed).ok(), Some(cfg));
});
