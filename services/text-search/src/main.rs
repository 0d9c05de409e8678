fn main() -> anyhow::Result<()> {
    braid_core::entry::main("text-search", "braid-text-search", braid_text_search::run)
}
