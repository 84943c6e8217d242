//! Compiles `breakglass/v1/*.proto` with protox (pure Rust: no `protoc` needed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every .proto file of the API: each service area has its own file.
    let mut protos: Vec<String> = std::fs::read_dir("breakglass/v1")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .map(|p| p.display().to_string())
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=breakglass/v1");
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_WIRE").is_none() {
        return Ok(());
    }
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("breakglass_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Messages and servers. A server answers a request that is not valid protobuf with
    // INVALID_ARGUMENT (`codec::RequestCodec`), not INTERNAL.
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(false)
        .codec_path("crate::codec::RequestCodec")
        .compile_fds(fds.clone())?;
    // Clients, in a file of their own over the same messages, keep tonic's prost codec:
    // for a client, a reply that does not decode is the server's fault (INTERNAL).
    if grpc {
        let clients = out.join("clients");
        std::fs::create_dir_all(&clients)?;
        tonic_prost_build::configure()
            .build_server(false)
            .build_client(true)
            .out_dir(&clients)
            .extern_path(".breakglass.v1", "crate::v1")
            .compile_fds(fds)?;
    }
    Ok(())
}
