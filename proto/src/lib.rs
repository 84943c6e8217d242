//! The breakglass contract: the gRPC wire types, the certificate profile
//! (key id format, our extensions and how to read them back) and the rules
//! both sides of the system must agree on.
//!
//! The default build is synchronous and pulls in no async runtime, so the
//! PAM module can depend on it; the tonic stubs sit behind the `grpc` feature.
#![forbid(unsafe_code)]

pub mod audit;
#[cfg(feature = "grpc")]
pub mod codec;
pub mod enrollment;
pub mod krl;
pub mod names;
pub mod oidc;
pub mod pam_options;
pub mod patterns;
pub mod profile;
pub mod recording;
pub mod sessions;
pub mod spool;
pub mod ssh_login;
pub mod status;
pub mod text;

/// Protobuf messages and (with the `grpc` feature) tonic stubs of `breakglass.v1`.
#[cfg(feature = "wire")]
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/breakglass.v1.rs"));
    #[cfg(feature = "grpc")]
    include!(concat!(env!("OUT_DIR"), "/clients/breakglass.v1.rs"));

    /// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/breakglass_descriptor.bin"));
}
