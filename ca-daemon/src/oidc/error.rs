//! Why an ID token is refused: each reason says what is wrong and what to do.

use std::time::Duration;

/// An ID token refused, or the provider not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Not a signed JWT (three base64url parts, a JSON header and body).
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    /// `alg: none`: no signature at all.
    #[error(
        "the ID token is unsigned (alg \"none\"): only tokens signed by the provider's keys are accepted"
    )]
    Unsigned,
    /// An HMAC algorithm (`HS256`, ...): a shared secret, which a public client cannot
    /// hold, and the classic way to forge a token with the provider's public key.
    #[error(
        "the ID token is signed with {0}, a shared-secret (HMAC) algorithm: only the provider's public-key signatures (RS256, ES256, ...) are accepted"
    )]
    SymmetricAlgorithm(String),
    /// An algorithm this daemon does not accept.
    #[error(
        "the ID token's algorithm {0:?} is not accepted (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA are)"
    )]
    UnsupportedAlgorithm(String),
    /// No key of the provider has the token's key id, even after fetching the keys anew.
    #[error(
        "no key of the provider {issuer} has the ID token's key id {kid}: it was signed by a key the provider does not publish (a forged token, or one from before a key rotation: log in again)"
    )]
    UnknownKey {
        /// The token's `kid` (or `(none)`).
        kid: String,
        /// The configured issuer.
        issuer: String,
    },
    /// The signature does not verify with the provider's key.
    #[error(
        "the ID token's signature does not verify with the provider's key {kid}: it was altered or forged"
    )]
    BadSignature {
        /// The key id used.
        kid: String,
    },
    /// `iss` is not the configured issuer.
    #[error(
        "the ID token was issued by {got:?}, not by the configured issuer {want:?} (oidc.issuer)"
    )]
    WrongIssuer {
        /// The token's `iss`.
        got: String,
        /// `oidc.issuer`.
        want: String,
    },
    /// `aud` does not name our client id.
    #[error(
        "the ID token is for {got:?}, not for breakglass's client id {want:?} (oidc.client_id): it was issued to another application"
    )]
    WrongAudience {
        /// The token's audiences.
        got: Vec<String>,
        /// `oidc.client_id`.
        want: String,
    },
    /// `azp` missing with several audiences, or not our client id.
    #[error("the ID token's authorized party is {got:?}, not breakglass's client id {want:?}")]
    WrongAuthorizedParty {
        /// The token's `azp` (empty: none).
        got: String,
        /// `oidc.client_id`.
        want: String,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("the ID token expired at {exp} (Unix time; now {now}, leeway {}): log in again", crate::fmt_duration(*leeway))]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The time of the check.
        now: u64,
        /// `oidc.leeway`.
        leeway: Duration,
    },
    /// `iat` or `nbf` in the future (beyond the leeway).
    #[error(
        "the ID token's {claim} is {at}, after now ({now}): check the clocks of this machine and the provider"
    )]
    NotYetValid {
        /// `iat` or `nbf`.
        claim: &'static str,
        /// Its value.
        at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The caller gave no nonce to check against (a bug of the caller).
    #[error("no nonce to check the ID token against: every login sends one")]
    NoNonceExpected,
    /// The token's nonce is not the login's.
    #[error(
        "the ID token's nonce is not the one this login sent: the token was obtained for another login (replayed?); log in again"
    )]
    WrongNonce,
    /// A claim that must be there is not.
    #[error(
        "the ID token has no {0:?} claim (check the scopes the client asks for and oidc.identity_claim)"
    )]
    MissingClaim(String),
    /// A claim has the wrong form.
    #[error("the ID token's {claim:?} claim {reason}")]
    BadClaim {
        /// The claim.
        claim: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `email_verified` is false.
    #[error(
        "the provider says the e-mail address {0} is not verified: verify it at the provider, then log in again"
    )]
    EmailNotVerified(String),
    /// The identity is not in an allowed domain.
    #[error("{identity} is not in an allowed domain ({}) (oidc.allowed_domains)", allowed.join(", "))]
    DomainNotAllowed {
        /// The identity.
        identity: String,
        /// `oidc.allowed_domains`.
        allowed: Vec<String>,
    },
    /// The provider's discovery document or keys could not be had or are unusable.
    #[error(
        "the OpenID provider {issuer} cannot be used: {reason} (breakglass login --ssh-key works without it)"
    )]
    Provider {
        /// The configured issuer.
        issuer: String,
        /// What failed.
        reason: String,
    },
}
