// Generates the tonic/prost code for proto/raft.proto with the vendored protoc, so the build
// needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=../proto/raft.proto");
    tonic_prost_build::configure().compile_protos(&["../proto/raft.proto"], &["../proto"])?;
    Ok(())
}
