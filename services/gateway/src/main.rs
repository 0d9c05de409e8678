fn main() -> anyhow::Result<()> {
    braid_core::entry::main("gateway", "braid-gateway", braid_gateway::run)
}
