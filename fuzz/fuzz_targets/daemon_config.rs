//! The daemon's TOML configuration: `Config::parse` (TOML, then every field's validation:
//! addresses, durations, identities, groups, rules, tiers, patterns, CIDRs, webhooks).
//!
//! Property: an accepted configuration resolves every file it names to an absolute path
//! (relative ones against the file's directory) and parses to the same value again.
#![no_main]

use std::path::Path;

use breakglass_ca::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/breakglass-ca/breakglass-ca.toml");
    let Ok(cfg) = Config::parse(path, text) else {
        return;
    };
    for p in [
        &cfg.ca.signing_key,
        &cfg.server.tls_cert,
        &cfg.server.tls_key,
        &cfg.server.client_ca,
        &cfg.audit.dir,
        &cfg.audit.key,
    ]
    .into_iter()
    .chain(&cfg.ca.extra_public_keys)
    .chain(&cfg.server.admin_socket)
    {
        assert!(p.is_absolute(), "{p:?}");
    }
    let again = Config::parse(path, text).expect("parsed once");
    assert_eq!(format!("{again:?}"), format!("{cfg:?}"));
});
