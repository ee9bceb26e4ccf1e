// Generates the prost code for proto/log.proto with the vendored protoc, so the build
// needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/log.proto");
    prost_build::compile_protos(&["proto/log.proto"], &["proto"])?;
    Ok(())
}
