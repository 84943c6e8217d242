//! The OpenSSH key revocation list reader of the contract crate
//! ([`breakglass_proto::krl`]), seen through the small API the module uses: parse a
//! KRL, ask whether a certificate is revoked. The format lives in one place so that
//! the CA that writes KRLs and the module that reads them cannot disagree. What the
//! reader cannot fully evaluate (SHA-1 sections, signature sections, critical
//! extensions, unknown sections) is an error, so such a KRL denies instead of passing.
#![forbid(unsafe_code)]

use ssh_key::Certificate;

/// A parsed KRL.
#[derive(Debug, Default)]
pub struct Krl(breakglass_proto::krl::Krl);

impl Krl {
    /// Parses a binary KRL (as written by `ssh-keygen -k` or the breakglass CA). Like
    /// sshd, an empty or garbage file is an error.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        breakglass_proto::krl::Krl::parse(data)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// Returns why `cert` is revoked, or `None`.
    #[must_use]
    pub fn revoked(&self, cert: &Certificate) -> Option<String> {
        self.0.revoked(cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused() {
        assert!(Krl::parse(b"").is_err());
        assert!(Krl::parse(b"SSHKRL\n\0\0\0\0\x01").is_err());
        assert!(Krl::parse(&[0u8; 100]).is_err());
        let e = Krl::parse(b"garbage!garbage!").unwrap_err();
        assert!(e.contains("not an OpenSSH KRL"), "{e}");
    }
}
