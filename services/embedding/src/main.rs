fn main() -> anyhow::Result<()> {
    braid_core::entry::main("embedding", "braid-embedding", braid_embedding::run)
}
