fn main() -> anyhow::Result<()> {
    braid_core::entry::main("ingest", "braid-ingest", braid_ingest::run)
}
