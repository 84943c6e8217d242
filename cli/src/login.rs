//! `breakglass login`: getting a client certificate without one. [`oidc`]: the
//! organisation's OpenID Connect provider (device flow, or code + PKCE), which gives the
//! ID token the daemon's `Login` call checks; [`http`]: the provider's HTTP; [`ssh_key`]:
//! the break-glass login with an enrolled SSH key, when the provider is down.
#![forbid(unsafe_code)]

pub mod http;
pub mod oidc;
pub mod session;
pub mod ssh_key;
