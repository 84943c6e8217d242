//! Certificate verification past the signature: mutated certificates never carry a valid
//! signature, so this target signs certificates with fuzzed fields (key id, principals,
//! validity, critical options, extensions, serial, type) with the fuzz CA, or another CA,
//! and runs the PAM module's verification of the `SSH_AUTH_INFO_0` line sshd would write.
//!
//! Properties: the verdict follows the profile: a `Verified` certificate is a user
//! certificate of the trusted CA for the PAM user, inside its window, with only known
//! critical options, a key id and extensions that agree on the grant, a host scope that
//! covers this host, and not revoked by the KRL; and it stops verifying once any signed
//! byte changes.
#![no_main]

use breakglass_fuzz::{HOST, NOW, USER, assert_signed_bytes_bind, ca_key, checks, fixture_revokes};
use breakglass_proto::profile::{
    CRITICAL_FORCE_COMMAND, CRITICAL_SOURCE_ADDRESS, EXT_GRANT_ID, EXT_HOSTS, EXT_TIER, GrantId,
    key_id,
};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pam_breakglass::verify::{Verdict, verify};
use ssh_key::PrivateKey;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;

/// A string that is usually one of the values the profile cares about.
#[derive(Arbitrary, Debug)]
enum Text {
    User,
    Host,
    HostGlob,
    Grant(u8),
    Requester,
    Raw(String),
}

impl Text {
    fn get(&self) -> String {
        match self {
            Text::User => USER.into(),
            Text::Host => HOST.into(),
            Text::HostGlob => "*.dev.example".into(),
            Text::Grant(g) => GrantId(u64::from(*g)).to_string(),
            Text::Requester => "sre@example.com".into(),
            Text::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum KeyId {
    Ours(u8, Text),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    other_ca: bool,
    host_cert: bool,
    serial: u64,
    key_id: KeyId,
    principals: Vec<Text>,
    /// Offsets from `NOW`, in seconds.
    valid_after: i32,
    valid_before: i32,
    force_command: Option<Text>,
    source_address: Option<Text>,
    other_critical: Option<(String, String)>,
    grant_ext: Option<Text>,
    hosts_ext: Option<Vec<Text>>,
    tier_ext: Option<Text>,
    other_ext: Vec<(String, String)>,
    user_key: [u8; 32],
}

fn at(offset: i32) -> u64 {
    NOW.saturating_add_signed(i64::from(offset))
}

fuzz_target!(|input: Input| {
    let user = PrivateKey::from(Ed25519Keypair::from_seed(&input.user_key));
    let other = PrivateKey::from(Ed25519Keypair::from_seed(&[3; 32]));
    let ca = if input.other_ca { &other } else { ca_key() };
    let Ok(mut b) = Builder::new(
        input.user_key.to_vec(),
        user.public_key().key_data().clone(),
        at(input.valid_after),
        at(input.valid_before),
    ) else {
        return;
    };
    let key_id = match &input.key_id {
        KeyId::Ours(g, who) => key_id(GrantId(u64::from(*g)), &who.get()),
        KeyId::Raw(s) => s.clone(),
    };
    let cert_type = if input.host_cert {
        CertType::Host
    } else {
        CertType::User
    };
    let mut critical = vec![];
    if let Some(c) = &input.force_command {
        critical.push((CRITICAL_FORCE_COMMAND.to_owned(), c.get()));
    }
    if let Some(s) = &input.source_address {
        critical.push((CRITICAL_SOURCE_ADDRESS.to_owned(), s.get()));
    }
    critical.extend(input.other_critical.clone());
    let mut extensions = input.other_ext.clone();
    if let Some(g) = &input.grant_ext {
        extensions.push((EXT_GRANT_ID.to_owned(), g.get()));
    }
    if let Some(h) = &input.hosts_ext {
        let hosts: Vec<String> = h.iter().map(Text::get).collect();
        extensions.push((EXT_HOSTS.to_owned(), hosts.join(",")));
    }
    if let Some(t) = &input.tier_ext {
        extensions.push((EXT_TIER.to_owned(), t.get()));
    }
    let built = (|| {
        b.serial(input.serial)?;
        b.key_id(key_id.clone())?;
        b.cert_type(cert_type)?;
        for p in &input.principals {
            b.valid_principal(p.get())?;
        }
        for (k, v) in &critical {
            b.critical_option(k.clone(), v.clone())?;
        }
        for (k, v) in &extensions {
            b.extension(k.clone(), v.clone())?;
        }
        b.sign(ca)
    })();
    let Ok(cert) = built else {
        return;
    };
    let Some(line) = breakglass_fuzz::auth_info_line(&cert) else {
        return;
    };
    let Verdict::Verified(v) = verify(Some(line.as_bytes()), &checks()) else {
        return;
    };
    assert!(!input.other_ca, "verified a certificate of an untrusted CA");
    assert!(!input.host_cert, "verified a host certificate");
    assert!(cert.valid_principals().iter().any(|p| p == USER));
    assert!(cert.valid_after() <= NOW && NOW < cert.valid_before());
    assert!(
        cert.critical_options()
            .keys()
            .all(|k| k == CRITICAL_FORCE_COMMAND || k == CRITICAL_SOURCE_ADDRESS)
    );
    let grant = breakglass_proto::profile::parse_key_id(&key_id)
        .expect("key id of ours")
        .0;
    assert_eq!(v.profile().grant_id, grant);
    assert_eq!(
        cert.extensions().get(EXT_GRANT_ID).map(String::as_str),
        Some(grant.to_string().as_str())
    );
    assert!(v.profile().allows_host(HOST));
    assert!(
        !fixture_revokes(input.serial, &key_id),
        "revoked yet verified"
    );
    assert_eq!(
        v.force_command(),
        cert.critical_options()
            .get(CRITICAL_FORCE_COMMAND)
            .map(String::as_str)
    );
    assert_signed_bytes_bind(&cert, line.as_bytes());
});
