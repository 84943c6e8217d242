//! OpenSSH key revocation lists (the binary format of OpenSSH's `PROTOCOL.krl`): an
//! encoder the CA uses to publish revocations to sshd (`RevokedKeys`), and a parser the
//! PAM module and the host tools use to ask "is this certificate revoked".
//!
//! Both sides live here so that they cannot disagree. Primitives are read and written
//! with `ssh-encoding`; length-prefixed blocks are split by hand because a KRL section
//! may exceed `ssh-encoding`'s 1 MiB limit on a single string.
//!
//! What the parser cannot fully evaluate (SHA-1 fingerprint sections, signature
//! sections, critical extensions, unknown section types) is an error, so a reader of a
//! KRL it does not understand refuses instead of passing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ssh_encoding::{Decode, Encode};
use ssh_key::public::KeyData;
use ssh_key::{Certificate, Fingerprint, HashAlg};

/// The first eight bytes of every KRL.
pub const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
/// The only KRL format version OpenSSH defines.
pub const FORMAT_VERSION: u32 = 1;
/// SSHSIG namespace of the CA's signature over a published KRL.
pub const SIGNATURE_NAMESPACE: &str = "breakglass-krl@breakglass.dev";

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

/// Runs of at least this many consecutive serials are written as one range
/// (16 bytes) instead of a list entry per serial (8 bytes each).
const MIN_RANGE_RUN: u64 = 3;

/// Why a KRL could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    /// The data ends in the middle of a field.
    #[error("KRL is truncated ({0})")]
    Truncated(&'static str),
    /// The file does not start with the KRL magic.
    #[error(
        "not an OpenSSH KRL (bad magic); build it with `ssh-keygen -k` or `breakglass host sync-krl`"
    )]
    BadMagic,
    /// A format version other than 1.
    #[error("unsupported KRL format version {0}")]
    FormatVersion(u32),
    /// Something this reader cannot evaluate, so it refuses rather than pass.
    #[error("KRL {0}")]
    Unsupported(String),
    /// A field holds a value the format forbids.
    #[error("KRL is malformed: {0}")]
    Malformed(String),
    /// A revocation that OpenSSH cannot express (e.g. serial 0).
    #[error("{0}")]
    Invalid(String),
}

impl From<ssh_encoding::Error> for KrlError {
    fn from(e: ssh_encoding::Error) -> Self {
        match e {
            ssh_encoding::Error::Length => KrlError::Truncated("field"),
            other => KrlError::Malformed(other.to_string()),
        }
    }
}

/// Revocations of certificates signed by one CA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct CertRevocations {
    serials: BTreeSet<u64>,
    ranges: Vec<(u64, u64)>,
    bitmaps: Vec<(u64, Vec<u8>)>,
    key_ids: BTreeSet<String>,
}

impl CertRevocations {
    fn is_empty(&self) -> bool {
        self.serials.is_empty()
            && self.ranges.is_empty()
            && self.bitmaps.is_empty()
            && self.key_ids.is_empty()
    }

    fn has_serial(&self, serial: u64) -> bool {
        self.serials.contains(&serial)
            || self
                .ranges
                .iter()
                .any(|&(lo, hi)| lo <= serial && serial <= hi)
            || self
                .bitmaps
                .iter()
                .any(|(offset, bits)| bitmap_has(*offset, bits, serial))
    }
}

/// A key revocation list: header fields plus revoked certificates (per CA: serials
/// and key ids), explicit keys and SHA-256 key fingerprints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Krl {
    /// Increasing version number of this list (`krl_version`).
    pub version: u64,
    /// When it was generated (Unix seconds).
    pub generated: u64,
    /// Free-text comment.
    pub comment: String,
    /// Certificate revocations by CA key blob (empty blob = any CA).
    certs: BTreeMap<Vec<u8>, CertRevocations>,
    /// Revoked plain keys (wire blobs); also revokes every certificate of the key.
    keys: BTreeSet<Vec<u8>>,
    /// Revoked SHA-256 key fingerprints (raw 32 bytes).
    sha256: BTreeSet<Vec<u8>>,
}

/// The SSH wire encoding of a public key (what KRLs store and compare).
pub fn key_blob(key: &KeyData) -> Result<Vec<u8>, KrlError> {
    let mut out = Vec::new();
    key.encode(&mut out)
        .map_err(|e| KrlError::Invalid(format!("cannot encode key: {e}")))?;
    Ok(out)
}

impl Krl {
    /// An empty list with this version and generation time.
    #[must_use]
    pub fn new(version: u64, generated: u64) -> Self {
        Self {
            version,
            generated,
            ..Self::default()
        }
    }

    fn ca_section(&mut self, ca: Option<&KeyData>) -> Result<&mut CertRevocations, KrlError> {
        let blob = match ca {
            Some(k) => key_blob(k)?,
            None => Vec::new(),
        };
        Ok(self.certs.entry(blob).or_default())
    }

    /// Revokes the certificate with `serial` signed by `ca`. OpenSSH cannot revoke
    /// serial 0 by serial: revoke such a certificate by key id or key instead.
    pub fn revoke_serial(&mut self, ca: &KeyData, serial: u64) -> Result<(), KrlError> {
        if serial == 0 {
            return Err(KrlError::Invalid(
                "serial 0 cannot be revoked by serial in an OpenSSH KRL; revoke it by key id or key"
                    .into(),
            ));
        }
        self.ca_section(Some(ca))?.serials.insert(serial);
        Ok(())
    }

    /// Revokes every certificate of `ca` with a serial in `lo..=hi` (`lo >= 1`).
    pub fn revoke_serial_range(&mut self, ca: &KeyData, lo: u64, hi: u64) -> Result<(), KrlError> {
        if lo == 0 || lo > hi {
            return Err(KrlError::Invalid(format!(
                "serial range {lo}-{hi} is empty or starts at 0"
            )));
        }
        self.ca_section(Some(ca))?.ranges.push((lo, hi));
        Ok(())
    }

    /// Revokes certificates with this key id, signed by `ca` (or by any CA for `None`).
    pub fn revoke_key_id(&mut self, ca: Option<&KeyData>, key_id: &str) -> Result<(), KrlError> {
        self.ca_section(ca)?.key_ids.insert(key_id.to_owned());
        Ok(())
    }

    /// Revokes a key: logins with it, and every certificate of it or signed by it.
    pub fn revoke_key(&mut self, key: &KeyData) -> Result<(), KrlError> {
        self.keys.insert(key_blob(key)?);
        Ok(())
    }

    /// Revokes a key by its SHA-256 fingerprint.
    pub fn revoke_sha256(&mut self, key: &KeyData) {
        self.sha256
            .insert(key.fingerprint(HashAlg::Sha256).as_bytes().to_vec());
    }

    /// Revokes a key known only by its SHA-256 fingerprint (`SHA256:…`, as
    /// `ssh-keygen -l` prints it): logins with it and every certificate of it.
    pub fn revoke_fingerprint(&mut self, fingerprint: &Fingerprint) -> Result<(), KrlError> {
        if fingerprint.algorithm() != HashAlg::Sha256 {
            return Err(KrlError::Invalid(format!(
                "fingerprint {fingerprint}: an OpenSSH KRL holds SHA256 fingerprints only"
            )));
        }
        self.sha256.insert(fingerprint.as_bytes().to_vec());
        Ok(())
    }

    /// Number of revoked serials (listed, in ranges and in bitmaps), over all CAs.
    #[must_use]
    pub fn serial_count(&self) -> u64 {
        self.certs
            .values()
            .map(|c| {
                let ranges: u64 = c
                    .ranges
                    .iter()
                    .map(|&(lo, hi)| (hi - lo).saturating_add(1))
                    .fold(0, u64::saturating_add);
                let bits: u64 = c
                    .bitmaps
                    .iter()
                    .map(|(_, b)| b.iter().map(|x| u64::from(x.count_ones())).sum::<u64>())
                    .sum();
                (c.serials.len() as u64)
                    .saturating_add(ranges)
                    .saturating_add(bits)
            })
            .fold(0, u64::saturating_add)
    }

    /// True when nothing is revoked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.certs.values().all(CertRevocations::is_empty)
            && self.keys.is_empty()
            && self.sha256.is_empty()
    }

    /// The binary KRL, as `ssh-keygen -k` would write it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, KrlError> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        FORMAT_VERSION.encode(&mut out)?;
        self.version.encode(&mut out)?;
        self.generated.encode(&mut out)?;
        0u64.encode(&mut out)?; // flags
        put_string(&mut out, b"")?; // reserved
        put_string(&mut out, self.comment.as_bytes())?;
        for (ca, revs) in &self.certs {
            if revs.is_empty() {
                continue;
            }
            let mut section = Vec::new();
            put_string(&mut section, ca)?;
            put_string(&mut section, b"")?; // reserved
            encode_serials(&mut section, revs)?;
            if !revs.key_ids.is_empty() {
                let mut ids = Vec::new();
                for id in &revs.key_ids {
                    put_string(&mut ids, id.as_bytes())?;
                }
                CERT_KEY_ID.encode(&mut section)?;
                put_string(&mut section, &ids)?;
            }
            SECTION_CERTIFICATES.encode(&mut out)?;
            put_string(&mut out, &section)?;
        }
        for (kind, set) in [
            (SECTION_EXPLICIT_KEY, &self.keys),
            (SECTION_FINGERPRINT_SHA256, &self.sha256),
        ] {
            if set.is_empty() {
                continue;
            }
            let mut section = Vec::new();
            for blob in set {
                put_string(&mut section, blob)?;
            }
            kind.encode(&mut out)?;
            put_string(&mut out, &section)?;
        }
        Ok(out)
    }

    /// Parses a binary KRL. Like sshd, an empty or garbage file is an error.
    pub fn parse(data: &[u8]) -> Result<Self, KrlError> {
        let mut r = data;
        let mut magic = [0u8; 8];
        ssh_encoding::Reader::read(&mut r, &mut magic).map_err(|_| KrlError::BadMagic)?;
        if &magic != MAGIC {
            return Err(KrlError::BadMagic);
        }
        let format = u32::decode(&mut r).map_err(|_| KrlError::Truncated("header"))?;
        if format != FORMAT_VERSION {
            return Err(KrlError::FormatVersion(format));
        }
        let version = u64::decode(&mut r).map_err(|_| KrlError::Truncated("header"))?;
        let generated = u64::decode(&mut r).map_err(|_| KrlError::Truncated("header"))?;
        let _flags = u64::decode(&mut r).map_err(|_| KrlError::Truncated("header"))?;
        let _reserved = take_string(&mut r, "header")?;
        let comment = String::from_utf8_lossy(take_string(&mut r, "header")?).into_owned();
        let mut krl = Krl {
            version,
            generated,
            comment,
            ..Krl::default()
        };
        while !r.is_empty() {
            let kind = u8::decode(&mut r)?;
            let mut s = take_string(&mut r, "section")?;
            match kind {
                SECTION_CERTIFICATES => krl.parse_cert_section(s)?,
                SECTION_EXPLICIT_KEY | SECTION_FINGERPRINT_SHA256 => {
                    while !s.is_empty() {
                        let blob = take_string(&mut s, "key")?.to_vec();
                        if kind == SECTION_EXPLICIT_KEY {
                            krl.keys.insert(blob);
                        } else {
                            if blob.len() != 32 {
                                return Err(KrlError::Malformed(format!(
                                    "SHA-256 fingerprint of {} bytes",
                                    blob.len()
                                )));
                            }
                            krl.sha256.insert(blob);
                        }
                    }
                }
                SECTION_FINGERPRINT_SHA1 => {
                    return Err(KrlError::Unsupported(
                        "has a SHA-1 fingerprint section, which breakglass cannot evaluate; revoke by serial, key id, key or sha256 instead".into(),
                    ));
                }
                SECTION_SIGNATURE => {
                    return Err(KrlError::Unsupported(
                        "has a signature section; OpenSSH no longer supports them, rebuild it without"
                            .into(),
                    ));
                }
                SECTION_EXTENSION => check_extension(s, "extension")?,
                other => {
                    return Err(KrlError::Unsupported(format!(
                        "has unknown section type {other}"
                    )));
                }
            }
        }
        Ok(krl)
    }

    fn parse_cert_section(&mut self, mut r: &[u8]) -> Result<(), KrlError> {
        let ca = take_string(&mut r, "certificate section")?.to_vec();
        let _reserved = take_string(&mut r, "certificate section")?;
        let out = self.certs.entry(ca).or_default();
        while !r.is_empty() {
            let kind = u8::decode(&mut r)?;
            let mut s = take_string(&mut r, "certificate subsection")?;
            match kind {
                CERT_SERIAL_LIST => {
                    while !s.is_empty() {
                        out.serials.insert(u64::decode(&mut s)?);
                    }
                }
                CERT_SERIAL_RANGE => {
                    let lo = u64::decode(&mut s)?;
                    let hi = u64::decode(&mut s)?;
                    if lo > hi {
                        return Err(KrlError::Malformed(format!("serial range {lo}-{hi}")));
                    }
                    out.ranges.push((lo, hi));
                }
                CERT_SERIAL_BITMAP => {
                    let offset = u64::decode(&mut s)?;
                    let bits = take_string(&mut s, "serial bitmap")?.to_vec();
                    out.bitmaps.push((offset, bits));
                }
                CERT_KEY_ID => {
                    while !s.is_empty() {
                        let id = take_string(&mut s, "key id")?;
                        out.key_ids.insert(String::from_utf8_lossy(id).into_owned());
                    }
                }
                CERT_EXTENSION => check_extension(s, "certificate extension")?,
                other => {
                    return Err(KrlError::Unsupported(format!(
                        "certificate section has unknown subsection {other:#x}"
                    )));
                }
            }
            if !s.is_empty() && kind != CERT_EXTENSION {
                return Err(KrlError::Malformed(format!(
                    "{} trailing bytes in certificate subsection {kind:#x}",
                    s.len()
                )));
            }
        }
        Ok(())
    }

    /// True when the certificate signed by `ca` with `serial` is revoked by serial.
    #[must_use]
    pub fn revokes_serial(&self, ca: &KeyData, serial: u64) -> bool {
        let Ok(blob) = key_blob(ca) else {
            return false;
        };
        [blob, Vec::new()]
            .iter()
            .filter_map(|b| self.certs.get(b))
            .any(|c| c.has_serial(serial))
    }

    /// Returns why `cert` is revoked, or `None`: its serial or key id (for its CA or
    /// any CA), its key or its CA's key (explicitly or by SHA-256 fingerprint).
    #[must_use]
    pub fn revoked(&self, cert: &Certificate) -> Option<String> {
        let ca_blob = key_blob(cert.signature_key()).ok();
        let serial = cert.serial();
        for (ca, section) in &self.certs {
            if !ca.is_empty() && Some(ca) != ca_blob.as_ref() {
                continue;
            }
            if section.has_serial(serial) {
                return Some(format!("serial {serial} is revoked"));
            }
            if section.key_ids.contains(cert.key_id()) {
                return Some(format!("key id {} is revoked", cert.key_id()));
            }
        }
        for (what, key) in [
            ("certificate key", cert.public_key()),
            ("CA key", cert.signature_key()),
        ] {
            if let Ok(blob) = key_blob(key)
                && self.keys.contains(&blob)
            {
                return Some(format!("the {what} is revoked"));
            }
            let fp = key.fingerprint(HashAlg::Sha256);
            if self.sha256.contains(fp.as_bytes()) {
                return Some(format!("the {what} ({fp}) is revoked"));
            }
        }
        None
    }
}

impl fmt::Display for Krl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KRL version {} ({} serials, {} CA sections, {} keys, {} fingerprints)",
            self.version,
            self.serial_count(),
            self.certs.len(),
            self.keys.len(),
            self.sha256.len()
        )
    }
}

/// Writes the serials of one CA: runs as ranges, the rest as one sorted list.
fn encode_serials(section: &mut Vec<u8>, revs: &CertRevocations) -> Result<(), KrlError> {
    let mut list = Vec::new();
    let mut ranges: Vec<(u64, u64)> = revs.ranges.clone();
    let mut iter = revs.serials.iter().copied().peekable();
    while let Some(lo) = iter.next() {
        let mut hi = lo;
        while iter.peek() == Some(&(hi.wrapping_add(1))) && hi != u64::MAX {
            hi += 1;
            iter.next();
        }
        if hi - lo + 1 >= MIN_RANGE_RUN {
            ranges.push((lo, hi));
        } else {
            for s in lo..=hi {
                s.encode(&mut list)?;
            }
        }
    }
    if !list.is_empty() {
        CERT_SERIAL_LIST.encode(section)?;
        put_string(section, &list)?;
    }
    ranges.sort_unstable();
    for (lo, hi) in ranges {
        let mut r = Vec::with_capacity(16);
        lo.encode(&mut r)?;
        hi.encode(&mut r)?;
        CERT_SERIAL_RANGE.encode(section)?;
        put_string(section, &r)?;
    }
    for (offset, bits) in &revs.bitmaps {
        let mut b = Vec::new();
        offset.encode(&mut b)?;
        put_string(&mut b, bits)?;
        CERT_SERIAL_BITMAP.encode(section)?;
        put_string(section, &b)?;
    }
    Ok(())
}

/// A KRL extension: `string name, boolean critical, string contents`. Critical ones
/// are refused (OpenSSH refuses them too); others are skipped.
fn check_extension(mut s: &[u8], what: &str) -> Result<(), KrlError> {
    let name = String::from_utf8_lossy(take_string(&mut s, "extension")?).into_owned();
    let critical = u8::decode(&mut s)? != 0;
    if critical {
        return Err(KrlError::Unsupported(format!(
            "has a critical {what} `{name}` that breakglass does not understand"
        )));
    }
    Ok(())
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), KrlError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| KrlError::Invalid("KRL section larger than 4 GiB".into()))?;
    len.encode(out)?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Splits off one `string` (u32 length + bytes) without a size limit beyond the input.
fn take_string<'a>(r: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], KrlError> {
    let len = u32::decode(r).map_err(|_| KrlError::Truncated(what))?;
    let len = usize::try_from(len).map_err(|_| KrlError::Truncated(what))?;
    if r.len() < len {
        return Err(KrlError::Truncated(what));
    }
    let (head, tail) = r.split_at(len);
    *r = tail;
    Ok(head)
}

/// Bit `serial - offset` of a big-endian bitmap (bit 0 is the last byte's lowest bit).
fn bitmap_has(offset: u64, bits: &[u8], serial: u64) -> bool {
    let Some(bit) = serial.checked_sub(offset) else {
        return false;
    };
    let Ok(bit) = usize::try_from(bit) else {
        return false;
    };
    let byte_from_end = bit / 8;
    if byte_from_end >= bits.len() {
        return false;
    }
    bits[bits.len() - 1 - byte_from_end] & (1 << (bit % 8)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::{Algorithm, PrivateKey, certificate};

    fn key() -> PrivateKey {
        PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).unwrap()
    }

    fn cert(ca: &PrivateKey, serial: u64, id: &str) -> (PrivateKey, Certificate) {
        let k = key();
        let mut b = certificate::Builder::new_with_random_nonce(
            &mut ssh_key::rand_core::OsRng,
            k.public_key().key_data().clone(),
            0,
            u64::from(u32::MAX),
        )
        .unwrap();
        b.serial(serial).unwrap();
        b.key_id(id).unwrap();
        b.valid_principal("alice").unwrap();
        let c = b.sign(ca).unwrap();
        (k, c)
    }

    #[test]
    fn bitmap_bits_count_from_the_end() {
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

    #[test]
    fn encoded_krl_round_trips_and_answers() {
        let ca = key();
        let other_ca = key();
        let mut krl = Krl::new(7, 1_700_000_000);
        krl.comment = "test".into();
        for s in [5, 6, 7, 8, 42, 1000] {
            krl.revoke_serial(ca.public_key().key_data(), s).unwrap();
        }
        krl.revoke_key_id(Some(ca.public_key().key_data()), "breakglass/x")
            .unwrap();
        let (_, by_key) = cert(&ca, 77, "k");
        krl.revoke_key(by_key.public_key()).unwrap();
        let bytes = krl.to_bytes().unwrap();
        let back = Krl::parse(&bytes).unwrap();
        assert_eq!(back.version, 7);
        assert_eq!(back.generated, 1_700_000_000);
        assert_eq!(back.comment, "test");
        assert_eq!(back.serial_count(), 6);
        let section = back.certs.values().next().unwrap();
        assert_eq!(section.serials.len(), 2, "5..=8 became a range");
        assert_eq!(section.ranges, vec![(5, 8)]);
        for (serial, id, revoked) in [
            (5, "a", true),
            (8, "a", true),
            (9, "a", false),
            (42, "a", true),
            (43, "breakglass/x", true),
            (44, "breakglass/y", false),
        ] {
            let (_, c) = cert(&ca, serial, id);
            assert_eq!(back.revoked(&c).is_some(), revoked, "{serial} {id}");
            let (_, foreign) = cert(&other_ca, serial, id);
            assert!(back.revoked(&foreign).is_none(), "other CA {serial}");
        }
        assert!(back.revoked(&by_key).is_some());
        assert!(back.revokes_serial(ca.public_key().key_data(), 1000));
        assert!(!back.revokes_serial(other_ca.public_key().key_data(), 1000));
    }

    #[test]
    fn serial_zero_is_refused() {
        let ca = key();
        let mut krl = Krl::new(1, 0);
        assert!(krl.revoke_serial(ca.public_key().key_data(), 0).is_err());
        assert!(
            krl.revoke_serial_range(ca.public_key().key_data(), 0, 5)
                .is_err()
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let ca = key();
        let mut krl = Krl::new(3, 9);
        krl.revoke_serial(ca.public_key().key_data(), 12).unwrap();
        krl.revoke_key_id(None, "id").unwrap();
        let bytes = krl.to_bytes().unwrap();
        for n in 0..bytes.len() {
            // A cut at a section boundary is a shorter, valid KRL (re-encoding gives
            // exactly the cut bytes); any other cut must fail.
            if let Ok(k) = Krl::parse(&bytes[..n]) {
                assert_eq!(k.to_bytes().unwrap(), &bytes[..n], "cut at {n}");
            }
        }
        assert!(Krl::parse(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn critical_extensions_are_refused_and_others_skipped() {
        let mut base = Krl::new(1, 0).to_bytes().unwrap();
        let mut ext = Vec::new();
        put_string(&mut ext, b"x@example.com").unwrap();
        ext.push(0);
        put_string(&mut ext, b"").unwrap();
        let mut ok = base.clone();
        ok.push(SECTION_EXTENSION);
        put_string(&mut ok, &ext).unwrap();
        assert!(Krl::parse(&ok).is_ok());
        ext[4 + 13] = 1;
        base.push(SECTION_EXTENSION);
        put_string(&mut base, &ext).unwrap();
        assert!(Krl::parse(&base).is_err());
    }

    proptest::proptest! {
        /// Encoding then parsing gives back exactly the revoked serials and key ids.
        #[test]
        fn encode_parse_round_trips(
            serials in proptest::collection::btree_set(1u64..5000, 0..200),
            ids in proptest::collection::btree_set("[a-z/@.-]{1,20}", 0..5),
            version in 0u64..u64::MAX,
        ) {
            let ca = KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([7u8; 32]));
            let mut krl = Krl::new(version, 5);
            for s in &serials {
                krl.revoke_serial(&ca, *s).unwrap();
            }
            for id in &ids {
                krl.revoke_key_id(Some(&ca), id).unwrap();
            }
            let back = Krl::parse(&krl.to_bytes().unwrap()).unwrap();
            proptest::prop_assert_eq!(back.version, version);
            proptest::prop_assert_eq!(back.serial_count(), serials.len() as u64);
            for s in 1u64..5001 {
                proptest::prop_assert_eq!(back.revokes_serial(&ca, s), serials.contains(&s));
            }
            let section = back.certs.values().next();
            let got: BTreeSet<String> = section.map(|c| c.key_ids.clone()).unwrap_or_default();
            proptest::prop_assert_eq!(got, ids);
        }

        /// Garbage and damaged KRLs are errors, never panics.
        #[test]
        fn damaged_krls_never_panic(
            flips in proptest::collection::vec((0usize..400, 0u8..=255), 0..8),
            cut in 0usize..400,
            garbage in proptest::collection::vec(0u8..=255, 0..64),
        ) {
            let ca = KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([9u8; 32]));
            let mut krl = Krl::new(1, 2);
            for s in [3, 4, 5, 9, 77] {
                krl.revoke_serial(&ca, s).unwrap();
            }
            krl.revoke_key_id(None, "breakglass/g-1/x").unwrap();
            let mut bytes = krl.to_bytes().unwrap();
            for (i, v) in flips {
                let n = bytes.len();
                bytes[i % n] = v;
            }
            bytes.truncate(cut.min(bytes.len()));
            bytes.extend_from_slice(&garbage);
            let _ = Krl::parse(&bytes);
            let _ = Krl::parse(&garbage);
        }
    }
}
