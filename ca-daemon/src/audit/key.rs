//! The dedicated Ed25519 audit key (not the SSH CA key) that signs checkpoints.
//!
//! Stored as an unencrypted PKCS#8 PEM file (`openssl pkey -in audit.key -pubout` reads it),
//! mode 0600, owned by the daemon's user. `log.pub` beside it holds the verifier key text
//! auditors need.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use breakglass_proto::audit::ed25519_dalek::SigningKey;
use breakglass_proto::audit::ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use breakglass_proto::audit::ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use breakglass_proto::audit::segment::PUBLIC_KEY_FILE;
use breakglass_proto::audit::{NoteSigner, NoteVerifier};
use ssh_key::rand_core::{OsRng, RngCore};

use super::base::AuditError;
use crate::keyfile::{Secrecy, read_checked, write_new};

/// Largest key file accepted.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Where `log.pub` goes for a key file: the same directory.
#[must_use]
pub fn public_key_path(key_path: &Path) -> PathBuf {
    key_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(PUBLIC_KEY_FILE)
}

/// Creates a new audit key at `key_path` (mode 0600, refuses to overwrite) for the log named
/// `origin`, and writes `log.pub` beside it. Returns the verifier.
pub fn generate_audit_key(key_path: &Path, origin: &str) -> Result<NoteVerifier, AuditError> {
    let mut seed = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| AuditError::Key(format!("no randomness for a new key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let signer = NoteSigner::new(origin, key.clone())
        .map_err(|e| AuditError::Key(format!("origin {origin:?}: {e}")))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| AuditError::Key(format!("cannot encode the key: {e}")))?;
    write_new(key_path, pem.as_bytes(), 0o600).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            AuditError::Key(format!(
                "{} already exists; refusing to replace an audit key (the log's checkpoints are \
                 signed with it)",
                key_path.display()
            ))
        } else {
            AuditError::io(key_path, e)
        }
    })?;
    let verifier = signer.verifier();
    write_public_key(&public_key_path(key_path), &verifier)?;
    Ok(verifier)
}

/// Loads the audit key for the log named `origin`. Refuses a file that is not a regular file,
/// a symlink, not owned by the effective uid, or readable by group or others.
pub fn load_audit_key(key_path: &Path, origin: &str) -> Result<NoteSigner, AuditError> {
    let bytes = read_checked(key_path, MAX_KEY_FILE, Secrecy::Secret)
        .map_err(|e| AuditError::Key(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        AuditError::Key(format!(
            "{}: not a PEM file (expected an Ed25519 PKCS#8 private key)",
            key_path.display()
        ))
    })?;
    let key = SigningKey::from_pkcs8_pem(text).map_err(|e| {
        AuditError::Key(format!(
            "{}: not an Ed25519 PKCS#8 private key: {e}",
            key_path.display()
        ))
    })?;
    NoteSigner::new(origin, key).map_err(|e| AuditError::Key(format!("origin {origin:?}: {e}")))
}

/// Writes `log.pub` (verifier key text and a newline) atomically, mode 0644.
pub(crate) fn write_public_key(path: &Path, verifier: &NoteVerifier) -> Result<(), AuditError> {
    let tmp = path.with_extension("pub.tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        writeln!(f, "{verifier}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        AuditError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_key_loads_and_matches_log_pub() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.key");
        let v = generate_audit_key(&p, "ca.test/audit/v1").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(d.path().join("log.pub")).unwrap();
        assert_eq!(NoteVerifier::parse(&text).unwrap(), v);
        assert!(text.starts_with("ca.test/audit/v1+"));
        let s = load_audit_key(&p, "ca.test/audit/v1").unwrap();
        assert_eq!(s.verifier(), v);
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        // Debug never shows the secret.
        assert!(!format!("{s:?}").contains("BEGIN"));
        let err = generate_audit_key(&p, "ca.test/audit/v1").unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn unsafe_key_files_are_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.key");
        generate_audit_key(&p, "log").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_audit_key(&p, "log").unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = d.path().join("link.key");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let err = load_audit_key(&link, "log").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let err = load_audit_key(&p, "log").unwrap_err().to_string();
            assert!(err.contains("owned by uid 65534"), "{err}");
        } else {
            eprintln!("owner check not exercised: needs root to chown the key file");
        }
        let junk = d.path().join("junk.key");
        write_new(&junk, b"not a key", 0o600).unwrap();
        let err = load_audit_key(&junk, "log").unwrap_err().to_string();
        assert!(err.contains("not an Ed25519 PKCS#8"), "{err}");
        assert!(load_audit_key(&p, "bad name").is_err());
    }
}
