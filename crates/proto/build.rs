//! Compiles `proto/braid/v1/*.proto` with the vendored `protoc` (no system install needed)
//! and writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not compile time (`env!`): a build script binary can be reused by
    // another checkout sharing the same target directory.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos: Vec<PathBuf> = [
        "common",
        "embedding",
        "vector_search",
        "text_search",
        "ingest",
        "status",
        "gateway",
    ]
    .iter()
    .map(|name| root.join(format!("braid/v1/{name}.proto")))
    .collect();
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("braid_descriptor.bin"))
        .compile_with_config(config, &protos, &[root.clone(), well_known])?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
