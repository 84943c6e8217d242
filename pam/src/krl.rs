//! A reader for OpenSSH key revocation lists (PROTOCOL.krl), enough to ask "is this
//! certificate revoked": certificate serials (list, range, bitmap) and key ids per CA,
//! explicit keys and SHA-256 fingerprints (of the certificate's key or of its CA).
//! Unknown or unsupported sections are an error, so a KRL this module cannot fully
//! evaluate denies instead of passing.
#![forbid(unsafe_code)]

use ssh_key::{Certificate, HashAlg, PublicKey, public::KeyData};

const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// Revocations for certificates of one CA (or of every CA when `ca_key` is empty).
#[derive(Debug, Default)]
struct CertRevocations {
    ca_key: Vec<u8>,
    serials: Vec<u64>,
    ranges: Vec<(u64, u64)>,
    bitmaps: Vec<(u64, Vec<u8>)>,
    key_ids: Vec<String>,
}

/// A parsed KRL.
#[derive(Debug, Default)]
pub struct Krl {
    certs: Vec<CertRevocations>,
    keys: Vec<Vec<u8>>,
    sha256: Vec<Vec<u8>>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.u32()?).map_err(|_| "length overflow".to_string())?;
        self.take(n)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Krl {
    /// Parses a binary KRL (as written by `ssh-keygen -k`). Like sshd, an empty or
    /// garbage file is an error.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let mut r = Reader(data);
        if r.take(8)? != MAGIC {
            return Err("not an OpenSSH KRL (bad magic); build it with `ssh-keygen -k`".into());
        }
        let version = r.u32()?;
        if version != 1 {
            return Err(format!("unsupported KRL format version {version}"));
        }
        let _krl_version = r.u64()?;
        let _generated = r.u64()?;
        let _flags = r.u64()?;
        let _reserved = r.string()?;
        let _comment = r.string()?;
        let mut krl = Krl::default();
        while !r.is_empty() {
            let kind = r.u8()?;
            let data = r.string()?;
            match kind {
                SECTION_CERTIFICATES => krl.certs.push(parse_cert_section(data)?),
                SECTION_EXPLICIT_KEY => {
                    let mut s = Reader(data);
                    while !s.is_empty() {
                        krl.keys.push(s.string()?.to_vec());
                    }
                }
                SECTION_FINGERPRINT_SHA256 => {
                    let mut s = Reader(data);
                    while !s.is_empty() {
                        krl.sha256.push(s.string()?.to_vec());
                    }
                }
                SECTION_FINGERPRINT_SHA1 => {
                    return Err(
                        "KRL has a SHA-1 fingerprint section, which pam_breakglass cannot evaluate; revoke by serial, id, key or sha256 instead".into(),
                    );
                }
                SECTION_SIGNATURE => {
                    return Err("KRL has a signature section; OpenSSH no longer supports them, rebuild it without".into());
                }
                SECTION_EXTENSION => {
                    return Err(
                        "KRL has an extension section pam_breakglass does not understand".into(),
                    );
                }
                other => return Err(format!("KRL has unknown section type {other}")),
            }
        }
        Ok(krl)
    }

    /// Returns why `cert` is revoked, or `None`.
    #[must_use]
    pub fn revoked(&self, cert: &Certificate) -> Option<String> {
        let ca_blob = key_blob(cert.signature_key());
        let serial = cert.serial();
        for section in &self.certs {
            if !section.ca_key.is_empty() && Some(&section.ca_key) != ca_blob.as_ref() {
                continue;
            }
            if section.serials.contains(&serial)
                || section
                    .ranges
                    .iter()
                    .any(|&(lo, hi)| lo <= serial && serial <= hi)
                || section
                    .bitmaps
                    .iter()
                    .any(|(offset, bits)| bitmap_has(*offset, bits, serial))
            {
                return Some(format!("serial {serial} is revoked"));
            }
            if section.key_ids.iter().any(|id| id == cert.key_id()) {
                return Some(format!("key id {} is revoked", cert.key_id()));
            }
        }
        for (what, key) in [
            ("certificate key", cert.public_key()),
            ("CA key", cert.signature_key()),
        ] {
            if let Some(blob) = key_blob(key)
                && self.keys.contains(&blob)
            {
                return Some(format!("the {what} is revoked"));
            }
            let fp = key.fingerprint(HashAlg::Sha256);
            if self.sha256.iter().any(|h| h.as_slice() == fp.as_bytes()) {
                return Some(format!("the {what} ({fp}) is revoked"));
            }
        }
        None
    }
}

fn key_blob(key: &KeyData) -> Option<Vec<u8>> {
    PublicKey::from(key.clone()).to_bytes().ok()
}

fn bitmap_has(offset: u64, mpint: &[u8], serial: u64) -> bool {
    let Some(bit) = serial.checked_sub(offset) else {
        return false;
    };
    let Ok(bit) = usize::try_from(bit) else {
        return false;
    };
    let byte_from_end = bit / 8;
    if byte_from_end >= mpint.len() {
        return false;
    }
    let byte = mpint[mpint.len() - 1 - byte_from_end];
    byte & (1 << (bit % 8)) != 0
}

fn parse_cert_section(data: &[u8]) -> Result<CertRevocations, String> {
    let mut r = Reader(data);
    let mut out = CertRevocations {
        ca_key: r.string()?.to_vec(),
        ..CertRevocations::default()
    };
    let _reserved = r.string()?;
    while !r.is_empty() {
        let kind = r.u8()?;
        let mut s = Reader(r.string()?);
        match kind {
            CERT_SERIAL_LIST => {
                while !s.is_empty() {
                    out.serials.push(s.u64()?);
                }
            }
            CERT_SERIAL_RANGE => {
                let lo = s.u64()?;
                let hi = s.u64()?;
                out.ranges.push((lo, hi));
            }
            CERT_SERIAL_BITMAP => {
                let offset = s.u64()?;
                out.bitmaps.push((offset, s.string()?.to_vec()));
            }
            CERT_KEY_ID => {
                while !s.is_empty() {
                    let id = s.string()?;
                    out.key_ids.push(String::from_utf8_lossy(id).into_owned());
                }
            }
            CERT_EXTENSION => {
                return Err(
                    "KRL certificate section has an extension pam_breakglass does not understand"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "KRL certificate section has unknown subsection {other:#x}"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_bits_count_from_the_end() {
        // mpint 0x01 0x02: bit 1 (value 2) and bit 8 (value 0x100) set.
        assert!(bitmap_has(100, &[0x01, 0x02], 101));
        assert!(bitmap_has(100, &[0x01, 0x02], 108));
        assert!(!bitmap_has(100, &[0x01, 0x02], 100));
        assert!(!bitmap_has(100, &[0x01, 0x02], 99));
        assert!(!bitmap_has(100, &[0x01, 0x02], 200));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Krl::parse(b"").is_err());
        assert!(Krl::parse(b"SSHKRL\n\0\0\0\0\x01").is_err());
        assert!(Krl::parse(&[0u8; 100]).is_err());
    }
}
