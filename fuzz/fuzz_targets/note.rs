//! Signed notes and checkpoints (C2SP `signed-note`, `tlog-checkpoint`) as an auditor or a
//! host reads them: verifier key text (`log.pub`), checkpoint bodies, and notes verified
//! with the seeds' audit key.
//!
//! Properties: key text and checkpoint bodies parse only from their canonical form (they
//! print back to the same value or text); a note that verifies stops verifying once any
//! byte of its signed body changes; what the signer signs, the verifier accepts.
#![no_main]

use breakglass_fuzz::{AUDIT_ORIGIN, audit_signer, audit_verifier, pick};
use breakglass_proto::audit::note::{Checkpoint, NoteVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = NoteVerifier::parse(text) {
        assert_eq!(NoteVerifier::parse(&v.to_string()), Ok(v));
    }
    if let Ok(cp) = Checkpoint::parse(text) {
        assert_eq!(cp.to_body(), text, "checkpoint body is not canonical");
        if cp.origin == AUDIT_ORIGIN {
            let note = audit_signer()
                .sign_checkpoint(&cp)
                .expect("a parsed checkpoint signs");
            assert_eq!(audit_verifier().verify_checkpoint(&note), Ok(cp));
        }
    }
    let verifier = audit_verifier();
    if let Ok(body) = verifier.verify(text) {
        let _ = verifier.verify_checkpoint(text);
        let mut changed = text.as_bytes().to_vec();
        let at = pick(data, body.len());
        changed[at] ^= 1 << (data.len() % 8);
        if let Ok(changed) = String::from_utf8(changed) {
            assert!(
                verifier.verify(&changed).is_err(),
                "a note with body byte {at} changed still verifies"
            );
        }
    }
    if let Ok(note) = audit_signer().sign(text) {
        assert_eq!(
            verifier.verify(&note),
            Ok(text),
            "a note the signer made does not verify"
        );
    }
});
