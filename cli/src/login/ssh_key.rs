//! `breakglass login --ssh-key FILE`: the break-glass login, which needs no OpenID
//! provider. The daemon's challenge (naming the daemon by the fingerprint of the TLS CA
//! this CLI verified it against, and the daemon's one-time nonce) is signed by
//! `ssh-keygen -Y sign` in the fixed namespace ([`breakglass_proto::ssh_login`]), so the
//! key may be a file, held by ssh-agent (FILE is then its `.pub`), or a FIDO2 `sk-` key
//! (ssh-keygen asks for the touch).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use breakglass_proto::enrollment::ca_fingerprint;
use breakglass_proto::ssh_login::{SSH_LOGIN_NAMESPACE, challenge};

use crate::error::CliError;

/// The challenge for the daemon whose TLS CA is `ca_pem` (its first certificate) and
/// its `nonce`.
pub fn challenge_for(ca_pem: &str, nonce: &str) -> Result<String, CliError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|e| CliError::Config(format!("the daemon's CA is not PEM: {e}")))?;
    Ok(challenge(&ca_fingerprint(&pem.contents), nonce))
}

/// Signs `message` with the key of `key_file` (a private key, or a public key whose
/// private key ssh-agent holds) in `namespace`, with `ssh-keygen -Y sign`; the armored
/// SSHSIG signature. ssh-keygen's prompts (passphrase, security-key touch) reach the
/// terminal.
pub fn sign(key_file: &Path, namespace: &str, message: &str) -> Result<String, CliError> {
    if !key_file.exists() {
        return Err(CliError::Usage(format!(
            "--ssh-key {}: no such file (give the private key, or the .pub of a key in ssh-agent)",
            key_file.display()
        )));
    }
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CliError::Io(format!(
                "cannot run ssh-keygen ({e}): install OpenSSH's client tools"
            ))
        })?;
    child
        .stdin
        .take()
        .ok_or_else(|| CliError::Io("ssh-keygen's stdin".into()))?
        .write_all(message.as_bytes())
        .map_err(|e| CliError::Io(format!("writing the challenge to ssh-keygen: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| CliError::Io(format!("waiting for ssh-keygen: {e}")))?;
    let sig = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !sig.contains("BEGIN SSH SIGNATURE") {
        return Err(CliError::Usage(format!(
            "ssh-keygen could not sign with {} ({}): give the private key file, or the .pub of a \
             key that ssh-agent holds (ssh-add -l lists them)",
            key_file.display(),
            out.status
        )));
    }
    Ok(sig)
}

/// Signs the login challenge of the daemon (TLS CA `ca_pem`) for `nonce` with `key_file`.
pub fn sign_login(key_file: &Path, ca_pem: &str, nonce: &str) -> Result<String, CliError> {
    sign(
        key_file,
        SSH_LOGIN_NAMESPACE,
        &challenge_for(ca_pem, nonce)?,
    )
}
