fn main() -> anyhow::Result<()> {
    braid_core::entry::main(
        "vector-search",
        "braid-vector-search",
        braid_vector_search::run,
    )
}
