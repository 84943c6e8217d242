//! OpenID Connect login against a real provider (node `oidc-provider`,
//! `tests/src/oidc.rs`): the CLI's device flow and code + PKCE flow, driven through the
//! provider's own pages by a browser over HTTP, give ID tokens that the daemon's verifier
//! (`breakglass_ca::oidc::Verifier`) accepts and maps to identity, groups and login
//! lifetime; and the tokens it must refuse are refused, each with its reason.

use std::time::Duration;

use base64::Engine as _;
use breakglass_ca::oidc::{OidcError, Verifier};
use breakglass_cli::error::CliError;
use breakglass_cli::login::oidc::random_token;
use breakglass_tests::oidc::{
    Browser, CLIENT, CLIENT_ES256, OTHER_CLIENT, Options, SigningKey, TestProvider,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The (unverified) header or payload of a compact JWS.
fn part(token: &str, i: usize) -> Value {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(i).expect("part"))
        .expect("base64url");
    serde_json::from_slice(&text).expect("JSON")
}

/// A token signed with one of the provider's own private keys, under `kid`.
fn forge(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let (alg, encoding) = match key.alg.as_str() {
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(key.pem.as_bytes()).expect("RSA key"),
        ),
        "ES256" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(key.pem.as_bytes()).expect("EC key"),
        ),
        other => panic!("unexpected key algorithm {other}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &encoding).expect("signing")
}

fn rsa_key(idp: &TestProvider) -> SigningKey {
    idp.signing_keys()
        .into_iter()
        .find(|k| k.alg == "RS256")
        .expect("the provider's RS256 key")
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_logins_are_verified_and_both_users_groups_mapped() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    let verifier = Verifier::new(idp.settings(CLIENT));

    let nonce = random_token();
    let token = idp.device_login(CLIENT, "alice", &nonce).await;
    assert_eq!(part(&token, 0)["alg"], "RS256");
    let alice = verifier
        .verify(&token, &nonce)
        .await
        .expect("alice's login");
    assert_eq!(alice.id, "alice@example.com");
    assert_eq!(alice.subject, "alice");
    assert_eq!(alice.groups, vec!["sre".to_owned()]);
    assert_eq!(alice.lifetime, Duration::from_secs(12 * 3600));

    let nonce = random_token();
    let token = idp.device_login(CLIENT, "bob", &nonce).await;
    let bob = verifier.verify(&token, &nonce).await.expect("bob's login");
    assert_eq!(bob.id, "bob@example.com");
    // idp-dba maps to dba; idp-unmapped gives nothing.
    assert_eq!(bob.groups, vec!["dba".to_owned()]);
    assert_eq!(
        bob.lifetime,
        Duration::from_secs(3600),
        "dba's login lifetime"
    );

    // carol is a user of the provider, but not of an allowed domain.
    let nonce = random_token();
    let token = idp.device_login(CLIENT, "carol", &nonce).await;
    let e = verifier.verify(&token, &nonce).await.unwrap_err();
    assert!(
        matches!(e, OidcError::DomainNotAllowed { ref identity, .. } if identity == "carol@elsewhere.example"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_with_pkce_on_a_loopback_redirect_is_verified() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    // The ES256 client: the other key type of the provider.
    let nonce = random_token();
    let token = idp.code_login(CLIENT_ES256, "bob", &nonce).await;
    assert_eq!(part(&token, 0)["alg"], "ES256");
    let verifier = Verifier::new(idp.settings(CLIENT_ES256));
    let bob = verifier.verify(&token, &nonce).await.expect("bob's login");
    assert_eq!(bob.id, "bob@example.com");
    assert_eq!(bob.groups, vec!["dba".to_owned()]);
    // The same token, another login's nonce.
    let e = verifier.verify(&token, &random_token()).await.unwrap_err();
    assert_eq!(e, OidcError::WrongNonce);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_tokens_say_what_is_wrong() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    let verifier = Verifier::new(idp.settings(CLIENT));
    let nonce = random_token();
    let token = idp.device_login(CLIENT, "alice", &nonce).await;
    verifier
        .verify(&token, &nonce)
        .await
        .expect("the genuine token");
    let claims = part(&token, 1);
    let key = rsa_key(&idp);
    let kid = part(&token, 0)["kid"].as_str().expect("kid").to_owned();
    assert_eq!(kid, key.kid, "the provider signed with its RS256 key");
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };

    // Wrong nonce: a token obtained for another login.
    let e = verifier.verify(&token, "another-login").await.unwrap_err();
    assert_eq!(e, OidcError::WrongNonce);
    assert!(e.to_string().contains("log in again"), "{e}");

    // Expired: the genuine token, checked one second after its exp (no leeway here).
    let exp = claims["exp"].as_u64().expect("exp");
    let e = verifier
        .verify_at(&token, &nonce, exp + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OidcError::Expired { exp: at, .. } if at == exp),
        "{e}"
    );
    assert!(verifier.verify_at(&token, &nonce, exp).await.is_ok());

    // Wrong audience: a genuine token of the same provider, issued to another application.
    let other_nonce = random_token();
    let other = idp.device_login(OTHER_CLIENT, "alice", &other_nonce).await;
    let e = verifier.verify(&other, &other_nonce).await.unwrap_err();
    assert!(
        matches!(e, OidcError::WrongAudience { ref got, ref want } if got == &vec![OTHER_CLIENT.to_owned()] && want == CLIENT),
        "{e}"
    );

    // Wrong issuer: signed by the provider's own key, naming another issuer.
    let forged = forge(&key, &kid, &with(json!({"iss": "http://127.0.0.1:1"})));
    let e = verifier.verify(&forged, &nonce).await.unwrap_err();
    assert!(
        matches!(e, OidcError::WrongIssuer { ref got, .. } if got == "http://127.0.0.1:1"),
        "{e}"
    );
    // The same forging with the right claims verifies: the refusal above is the issuer's.
    let reforged = forge(&key, &kid, &claims);
    verifier
        .verify(&reforged, &nonce)
        .await
        .expect("a faithful copy");

    // Unsigned: alg none, the genuine claims, no signature.
    let payload = token.split('.').nth(1).expect("payload");
    let unsigned = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(
        verifier.verify(&unsigned, &nonce).await.unwrap_err(),
        OidcError::Unsigned
    );

    // HMAC "signed" with the provider's public RSA modulus as the secret (the classic
    // key-confusion forgery).
    let jwks = breakglass_cli::login::http::Client::new(std::path::Path::new("/dev/null"))
        .get(&format!("{}/jwks", idp.issuer))
        .await
        .expect("JWKS")
        .json()
        .expect("JWKS JSON");
    let modulus = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .and_then(|k| k["n"].as_str())
        .expect("the RSA key's modulus")
        .to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hmac = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(modulus.as_bytes()),
    )
    .expect("HS256");
    assert_eq!(
        verifier.verify(&hmac, &nonce).await.unwrap_err(),
        OidcError::SymmetricAlgorithm("HS256".into())
    );

    // Signed by a key the provider does not publish (here: its key under another id).
    let unknown = forge(&key, "not-published", &claims);
    let e = verifier.verify(&unknown, &nonce).await.unwrap_err();
    assert!(
        matches!(e, OidcError::UnknownKey { ref kid, .. } if kid == "not-published"),
        "{e}"
    );

    // Altered after signing: alice's signature over bob's claims.
    let mut parts: Vec<&str> = token.split('.').collect();
    let altered_payload = b64(
        serde_json::to_string(&with(json!({"email": "bob@example.com"})))
            .expect("JSON")
            .as_bytes(),
    );
    parts[1] = &altered_payload;
    let e = verifier.verify(&parts.join("."), &nonce).await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature { .. }), "{e}");

    // A provider whose discovery document names another issuer than configured.
    let mut misconfigured = idp.settings(CLIENT);
    misconfigured.issuer.push('/');
    let e = Verifier::new(misconfigured)
        .verify(&token, &nonce)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OidcError::Provider { ref reason, .. } if reason.contains("names the issuer")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_are_fetched_and_tokens_of_retired_keys_refused() {
    let Some(mut idp) = TestProvider::start().await else {
        return;
    };
    let verifier = Verifier::new(idp.settings(CLIENT));
    // Fetches keys again for an unknown key id at most once an hour.
    let mut hourly = idp.settings(CLIENT);
    hourly.jwks_min_refresh = Duration::from_secs(3600);
    let hourly = Verifier::new(hourly);

    let before_nonce = random_token();
    let before = idp.device_login(CLIENT, "alice", &before_nonce).await;
    verifier
        .verify(&before, &before_nonce)
        .await
        .expect("before rotation");
    hourly
        .verify(&before, &before_nonce)
        .await
        .expect("before rotation");
    let old_kid = part(&before, 0)["kid"].clone();

    idp.rotate_keys().await;
    let after_nonce = random_token();
    let after = idp.device_login(CLIENT, "alice", &after_nonce).await;
    assert_ne!(
        part(&after, 0)["kid"],
        old_kid,
        "the provider signs with a new key"
    );

    // The new key id is unknown: the keys are fetched again and the token is accepted.
    let alice = verifier
        .verify(&after, &after_nonce)
        .await
        .expect("after rotation");
    assert_eq!(alice.id, "alice@example.com");
    // A token of the retired key is refused now: the provider no longer publishes it.
    let e = verifier.verify(&before, &before_nonce).await.unwrap_err();
    assert!(matches!(e, OidcError::UnknownKey { .. }), "{e}");

    // Fetches are rate-limited: the hourly verifier does not fetch again so soon...
    let e = hourly.verify(&after, &after_nonce).await.unwrap_err();
    assert!(matches!(e, OidcError::UnknownKey { .. }), "{e}");
    // ...until its keys are dropped.
    hourly.forget_keys().await;
    hourly
        .verify(&after, &after_nonce)
        .await
        .expect("after a fresh fetch");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_flow_nobody_finishes_ends_when_its_code_expires() {
    let Some(idp) = TestProvider::start_with_device_ttl(3).await else {
        return;
    };
    let client = idp.client(CLIENT).await;
    let login = client.start_device(&random_token()).await.expect("started");
    let shown = login.instructions();
    assert!(
        shown.contains(&login.user_code) && shown.contains(&login.verification_uri),
        "{shown}"
    );
    let e = client.finish_device(&login).await.unwrap_err();
    assert!(matches!(e, CliError::NotIssued(_)), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_flow_aborted_at_the_provider_is_refused() {
    let Some(idp) = TestProvider::start().await else {
        return;
    };
    let client = idp.client(CLIENT).await;
    let login = client.start_device(&random_token()).await.expect("started");
    let mut browser = Browser::new();
    browser
        .abort_device_flow(&login.verification_uri, &login.user_code)
        .await;
    let e = client.finish_device(&login).await.unwrap_err();
    assert!(matches!(e, CliError::Refused(_)), "{e}");
    assert!(
        e.to_string().contains("refused at the OpenID provider"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_provider_refuses_a_wrong_password_and_the_login_stays_pending() {
    let Some(idp) = TestProvider::start_with_device_ttl(4).await else {
        return;
    };
    let client = idp.client(CLIENT).await;
    let login = client.start_device(&random_token()).await.expect("started");
    let mut browser = Browser::new();
    let req = browser
        .enter_user_code(&login.verification_uri, &login.user_code)
        .await;
    let page = browser.log_in_with(req, "alice", "not-her-password").await;
    assert!(
        page.text().contains("Wrong user name or password"),
        "{}",
        page.text()
    );
    // Nobody logged in: the code runs out, no token.
    let e = client.finish_device(&login).await.unwrap_err();
    assert!(matches!(e, CliError::NotIssued(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_flow_backs_off_when_the_provider_says_slow_down() {
    // The provider advertises polling every second but answers slow_down to polls less
    // than 3 s apart: a client that did not add 5 s per slow_down would get slow_down
    // until the code expires (60 s), and one that gave up on it would fail.
    let Some(idp) = TestProvider::start_with(Options {
        device_ttl: 60,
        enforced_interval: Some(3),
    })
    .await
    else {
        return;
    };
    let nonce = random_token();
    let token = idp.device_login(CLIENT, "alice", &nonce).await;
    let alice = Verifier::new(idp.settings(CLIENT))
        .verify(&token, &nonce)
        .await
        .expect("alice's login");
    assert_eq!(alice.id, "alice@example.com");
    assert!(
        idp.output().contains("slow_down: a poll"),
        "the provider never said slow_down: {}",
        idp.output()
    );
}
