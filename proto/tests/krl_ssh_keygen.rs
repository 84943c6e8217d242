//! The KRL encoder and parser against OpenSSH's own: `ssh-keygen -Q` must read our
//! KRLs exactly as we mean them, and our parser must read the KRLs `ssh-keygen -k`
//! writes exactly as `ssh-keygen -Q` does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use breakglass_proto::krl::Krl;
use breakglass_test_support::cert::{CertSpec, empty_krl, new_key as key, sign_for};
use breakglass_test_support::{can_run, have, ssh_keygen_revoked as keygen_says_revoked};
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Certificate, PrivateKey};

fn have_ssh_keygen() -> bool {
    can_run("ssh-keygen (openssh-client)", have("ssh-keygen"))
}

/// A user certificate for `subject` signed by `ca`, valid for a long time, with
/// `serial` and key id `id`.
fn cert(ca: &PrivateKey, subject: &PrivateKey, serial: u64, id: &str) -> Certificate {
    let spec = CertSpec {
        serial,
        key_id: Some(id.into()),
        valid_after: 0,
        valid_before: u64::from(u32::MAX) * 2,
        ..CertSpec::default()
    };
    sign_for(ca, subject, &spec)
}

fn write_cert(dir: &Path, name: &str, c: &Certificate) -> PathBuf {
    let p = dir.join(format!("{name}-cert.pub"));
    std::fs::write(&p, c.to_openssh().unwrap() + "\n").unwrap();
    p
}

/// Two CAs, a compromised key and an innocent one, and a directory for the files.
struct Keys {
    dir: tempfile::TempDir,
    ca: PrivateKey,
    other_ca: PrivateKey,
    compromised: PrivateKey,
    innocent: PrivateKey,
}

impl Keys {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca: key(),
            other_ca: key(),
            compromised: key(),
            innocent: key(),
        }
    }
}

/// A certificate case: its CA, its key, serial and key id, and whether it is revoked.
type Case<'a> = (&'a PrivateKey, &'a PrivateKey, u64, &'a str, bool);

/// Writes `krl` to `dir/k.krl` and checks that ssh-keygen and our parser agree with each
/// case, and that both find the plain key `revoked_key` revoked; returns the KRL file.
fn check_cases(dir: &Path, krl: &Krl, cases: &[Case], revoked_key: &PrivateKey) -> PathBuf {
    let path = dir.join("k.krl");
    std::fs::write(&path, krl.to_bytes().unwrap()).unwrap();
    let back = Krl::parse(&std::fs::read(&path).unwrap()).unwrap();
    for (i, &(ca, subject, serial, id, revoked)) in cases.iter().enumerate() {
        let c = cert(ca, subject, serial, id);
        let file = write_cert(dir, &format!("c{i}"), &c);
        assert_eq!(keygen_says_revoked(&path, &file), revoked, "case {i}");
        assert_eq!(back.revoked(&c).is_some(), revoked, "our parser, case {i}");
    }
    // The plain key itself is revoked too.
    let plain = dir.join("plain.pub");
    revoked_key.public_key().write_openssh_file(&plain).unwrap();
    assert!(keygen_says_revoked(&path, &plain));
    path
}

fn random_serials(n: usize) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    while set.len() < n {
        let s = OsRng.next_u64();
        if s != 0 {
            set.insert(s);
        }
    }
    set
}

fn check_serials(serials: &BTreeSet<u64>, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ca = key();
    let other_ca = key();
    let mut krl = Krl::new(serials.len() as u64 + 1, 1_750_000_000);
    for &s in serials {
        krl.revoke_serial(ca.public_key().key_data(), s).unwrap();
    }
    let path = dir.path().join("revoked.krl");
    let bytes = krl.to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    // Our own parser reads back what we wrote.
    let back = Krl::parse(&bytes).unwrap();
    assert_eq!(back.version, krl.version);

    let subject = key();
    let mut probes: Vec<(u64, bool)> = Vec::new();
    let list: Vec<u64> = serials.iter().copied().collect();
    for i in [0, list.len() / 2, list.len().saturating_sub(1)] {
        if let Some(&s) = list.get(i) {
            probes.push((s, true));
        }
    }
    // Serials next to revoked ones, and far away.
    for &s in list.iter().take(2) {
        for n in [s.wrapping_sub(1), s.wrapping_add(1)] {
            if n != 0 && !serials.contains(&n) {
                probes.push((n, false));
            }
        }
    }
    let mut far = OsRng.next_u64() | 1;
    while serials.contains(&far) {
        far = OsRng.next_u64() | 1;
    }
    probes.push((far, false));
    probes.sort_unstable();
    probes.dedup();
    for (i, (serial, revoked)) in probes.iter().enumerate() {
        let c = cert(&ca, &subject, *serial, &format!("probe-{i}"));
        let file = write_cert(dir.path(), &format!("p{i}"), &c);
        assert_eq!(
            keygen_says_revoked(&path, &file),
            *revoked,
            "{label}: ssh-keygen on serial {serial}"
        );
        assert_eq!(
            back.revoked(&c).is_some(),
            *revoked,
            "{label}: our parser on serial {serial}"
        );
        // The same serial from another CA is never revoked: serials are scoped to our CA.
        let foreign = cert(&other_ca, &subject, *serial, "foreign");
        let file = write_cert(dir.path(), &format!("f{i}"), &foreign);
        assert!(
            !keygen_says_revoked(&path, &file),
            "{label}: foreign CA serial {serial}"
        );
    }
}

#[test]
fn ssh_keygen_reads_our_krl_with_no_serials() {
    if have_ssh_keygen() {
        check_serials(&BTreeSet::new(), "0 serials");
    }
}

#[test]
fn ssh_keygen_reads_our_krl_with_one_serial() {
    if have_ssh_keygen() {
        check_serials(&random_serials(1), "1 serial");
    }
}

#[test]
fn ssh_keygen_reads_our_krl_with_1000_serials() {
    if have_ssh_keygen() {
        check_serials(&random_serials(1000), "1,000 serials");
    }
}

#[test]
fn ssh_keygen_reads_our_krl_with_100000_serials() {
    if have_ssh_keygen() {
        check_serials(&random_serials(100_000), "100,000 random serials");
        // Consecutive serials are written as ranges.
        let mut set: BTreeSet<u64> = (1..=50_000).collect();
        set.extend((1_000_000..1_050_000).step_by(2));
        check_serials(&set, "100,000 serials in runs and gaps");
    }
}

#[test]
fn ssh_keygen_reads_our_key_ids_and_explicit_keys() {
    if !have_ssh_keygen() {
        return;
    }
    let k = Keys::new();
    let mut krl = Krl::new(3, 0);
    krl.revoke_key_id(
        Some(k.ca.public_key().key_data()),
        "breakglass/g-1/alice@example.com",
    )
    .unwrap();
    krl.revoke_key_id(None, "anyone/any-ca").unwrap();
    krl.revoke_key(k.compromised.public_key().key_data())
        .unwrap();
    let cases: [Case; 5] = [
        (
            &k.ca,
            &k.innocent,
            5,
            "breakglass/g-1/alice@example.com",
            true,
        ),
        (
            &k.other_ca,
            &k.innocent,
            5,
            "breakglass/g-1/alice@example.com",
            false,
        ),
        (&k.other_ca, &k.innocent, 6, "anyone/any-ca", true),
        (
            &k.ca,
            &k.innocent,
            7,
            "breakglass/g-2/alice@example.com",
            false,
        ),
        (&k.ca, &k.compromised, 8, "fine-id", true),
    ];
    check_cases(k.dir.path(), &krl, &cases, &k.compromised);
}

/// What `revoke --public-key` adds: the key by its SHA256 fingerprint (all the daemon
/// records of a certified key). ssh-keygen (sshd's own KRL code) then refuses every
/// certificate of that key, whatever its serial, key id or CA, and lists the hash.
#[test]
fn ssh_keygen_revokes_every_certificate_of_a_key_our_krl_names_by_fingerprint() {
    if !have_ssh_keygen() {
        return;
    }
    let k = Keys::new();
    let fp = k
        .compromised
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256);
    let mut krl = Krl::new(4, 0);
    krl.revoke_serial(k.ca.public_key().key_data(), 7).unwrap();
    krl.revoke_fingerprint(&fp).unwrap();
    assert!(
        krl.revoke_fingerprint(
            &k.compromised
                .public_key()
                .fingerprint(ssh_key::HashAlg::Sha512)
        )
        .is_err(),
        "a KRL holds SHA256 fingerprints only"
    );
    let cases: [Case; 5] = [
        (
            &k.ca,
            &k.compromised,
            8,
            "breakglass/g-1/a@example.com",
            true,
        ),
        (
            &k.ca,
            &k.compromised,
            9,
            "breakglass/g-2/a@example.com",
            true,
        ),
        (&k.other_ca, &k.compromised, 10, "offline", true),
        (&k.ca, &k.innocent, 8, "breakglass/g-3/a@example.com", false),
        (&k.ca, &k.innocent, 7, "breakglass/g-4/a@example.com", true),
    ];
    let path = check_cases(k.dir.path(), &krl, &cases, &k.compromised);
    // `ssh-keygen -Q -l` lists it (as a hex SHA256 hash).
    let out = Command::new("ssh-keygen")
        .args(["-Q", "-l", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let hex: String = fp.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        listing.contains(&format!("hash: SHA256:{hex}")),
        "ssh-keygen -Q -l: {listing}"
    );
}

#[test]
fn our_parser_reads_krls_written_by_ssh_keygen() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = key();
    let ca_pub = dir.path().join("ca.pub");
    ca.public_key().write_openssh_file(&ca_pub).unwrap();
    let compromised = key();
    let compromised_pub = dir.path().join("bad.pub");
    compromised
        .public_key()
        .write_openssh_file(&compromised_pub)
        .unwrap();
    let hashed = key();
    let hashed_pub = dir.path().join("hashed.pub");
    hashed.public_key().write_openssh_file(&hashed_pub).unwrap();
    // A list, a range, a dense set (ssh-keygen writes a bitmap), ids, a key, a sha256.
    let mut spec = String::from("serial: 4242\nserial: 5000-5999\n");
    for s in (10_000..10_400).step_by(3) {
        spec.push_str(&format!("serial: {s}\n"));
    }
    spec.push_str(&format!(
        "id: breakglass/g-9/bob@example.com\nkey: {}\nsha256: {}\n",
        compromised.public_key().to_openssh().unwrap(),
        hashed.public_key().to_openssh().unwrap(),
    ));
    let spec_file = dir.path().join("spec");
    std::fs::write(&spec_file, spec).unwrap();
    let krl_path = dir.path().join("theirs.krl");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-k", "-z", "12", "-f"])
        .arg(&krl_path)
        .arg("-s")
        .arg(&ca_pub)
        .arg(&spec_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen -k: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = Krl::parse(&std::fs::read(&krl_path).unwrap()).unwrap();
    assert_eq!(theirs.version, 12);
    let innocent = key();
    let mut cases = Vec::new();
    for s in [4241, 4242, 4243, 4999, 5000, 5500, 5999, 6000, 9999] {
        cases.push(cert(&ca, &innocent, s, "x"));
    }
    for s in 10_000..10_020 {
        cases.push(cert(&ca, &innocent, s, "x"));
    }
    cases.push(cert(&ca, &innocent, 77, "breakglass/g-9/bob@example.com"));
    cases.push(cert(&ca, &innocent, 78, "breakglass/g-8/bob@example.com"));
    cases.push(cert(&ca, &compromised, 79, "y"));
    cases.push(cert(&ca, &hashed, 80, "z"));
    cases.push(cert(&key(), &innocent, 4242, "x"));
    for (i, c) in cases.iter().enumerate() {
        let file = write_cert(dir.path(), &format!("t{i}"), c);
        assert_eq!(
            theirs.revoked(c).is_some(),
            keygen_says_revoked(&krl_path, &file),
            "serial {} id {}",
            c.serial(),
            c.key_id()
        );
    }
    // An empty KRL from ssh-keygen parses and revokes nothing.
    let empty = dir.path().join("empty.krl");
    empty_krl(&empty);
    let e = Krl::parse(&std::fs::read(&empty).unwrap()).unwrap();
    assert!(e.is_empty());
    assert!(e.revoked(&cases[1]).is_none());
}
