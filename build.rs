//! Build script: compiles the admin API's protobuf definitions (`proto/`) into Rust.
//!
//! `protox` parses the `.proto` files in pure Rust, so building needs no system `protoc`; its
//! descriptor set is handed to `tonic-prost-build`, which generates the messages, the server
//! trait and the client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["sessiongate/admin/v1/admin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
