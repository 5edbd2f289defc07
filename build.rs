//! Generates the rkt API's protobuf messages and gRPC client and server (`src/rkt/v1alpha/api.proto`) with the
//! pure-Rust `protox` compiler, so a build needs no `protoc` on the machine.

const PROTO_DIR: &str = "src/rkt/v1alpha";
const PROTO: &str = "src/rkt/v1alpha/api.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Only the .proto decides what is generated; without this line every source change would rerun the script.
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], [PROTO_DIR])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
