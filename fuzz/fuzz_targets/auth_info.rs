//! `SSH_AUTH_INFO_0` as the PAM module reads it at session open: the line parser and the
//! whole certificate verification (trusted CA, signature, validity, principal, critical
//! options, breakglass profile, host scope, KRL), against the fuzz CA.
//!
//! Properties: a `Verified` verdict agrees with the checks (principal, window, scope, KRL),
//! and no longer holds once any signed byte of the certificate is changed.
#![no_main]

use breakglass_fuzz::{HOST, NOW, USER, assert_signed_bytes_bind, checks, fixture_revokes};
use libfuzzer_sys::fuzz_target;
use pam_breakglass::verify::{AuthInfo, Verdict, parse_auth_info, verify};
use ssh_key::Certificate;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_auth_info(data);
    let verdict = verify(Some(data), &checks());
    let Verdict::Verified(v) = verdict else {
        return;
    };
    assert_eq!(v.principal(), USER);
    assert!(v.valid_after() <= NOW && NOW < v.valid_before(), "{v:?}");
    assert!(v.profile().allows_host(HOST), "{v:?}");
    assert!(
        !fixture_revokes(v.serial(), v.key_id()),
        "revoked yet verified: {v:?}"
    );
    let Ok(AuthInfo::Certificate(keytype, b64)) = parsed else {
        panic!("verified, but the line parser found no certificate: {parsed:?}");
    };
    let cert = Certificate::from_openssh(&format!("{keytype} {b64}")).expect("it verified");
    assert_eq!(cert.serial(), v.serial());
    assert_signed_bytes_bind(&cert, data);
});
