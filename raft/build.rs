// Generates the tonic/prost code for proto/raft.proto with the vendored protoc, so the build
// needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=../proto/raft.proto");
    // Ordered maps: the membership's node map must encode the same way every time, or
    // the same record would have many encodings.
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_protos(&["../proto/raft.proto"], &["../proto"])?;
    Ok(())
}
