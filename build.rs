//! Build script. The admin API's protobuf definitions will be compiled here from `proto/` with
//! a pure-Rust protobuf front end (no system `protoc`); until then it only tracks the folder.

fn main() {
    println!("cargo:rerun-if-changed=proto");
}
