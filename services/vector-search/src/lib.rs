//! The vector-search service: the dense leg of hybrid search. Chunk vectors live in
//! PostgreSQL (`vectors` schema) with a pgvector HNSW cosine index; `store` holds the SQL,
//! `replica` decides whether searches read from the streaming replica or the primary,
//! `service` is the gRPC surface with validation, `status` its part of the status view,
//! `config` its settings.

#![forbid(unsafe_code)]

mod config;
mod error;
mod filter;
mod replica;
mod service;
mod status;
mod store;

use std::future::Future;

use anyhow::Context;
use braid_core::auth::internal::InternalAuth;
use braid_core::host::Host;
use braid_core::server::{Guard, Listeners};
use braid_proto::service_names;
use braid_proto::v1::vector_search_service_server::VectorSearchServiceServer;

pub use config::{SearchConfig, VectorSearchConfig};
pub use error::VectorError;
/// The store on its own, for the `vector_cost` example (CPU per search).
pub use store::{Query, Store};

/// Runs the vector-search service on `listeners` until `shutdown` resolves.
pub async fn run(
    config: VectorSearchConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut host = Host::new(
        service_names::VECTOR_SEARCH,
        "vector_search",
        &config.server,
    );
    let store = store::Store::connect(&config.database, &config.search, host.metrics())?;
    {
        let store = store.clone();
        host.metrics().register_pool(move || store.pool_sample());
    }
    if config.database.migrate {
        store
            .migrate()
            .await
            .context("running vectors migrations")?;
    }
    let dims = store.column_dimensions().await?;
    anyhow::ensure!(
        dims == config.search.dimensions,
        "search.dimensions is {} but vectors.chunks.embedding is vector({dims})",
        config.search.dimensions
    );
    let (ef_search, iterative_scan) = store.search_settings().await?;
    anyhow::ensure!(
        ef_search == config.search.ef_search.to_string() && iterative_scan == store::ITERATIVE_SCAN,
        "the database did not take the HNSW settings: hnsw.ef_search = {ef_search}, \
         hnsw.iterative_scan = {iterative_scan}"
    );
    if let Some(watch) = store.spawn_replica_watch() {
        host.task(watch);
    }
    {
        let store = store.clone();
        host.probe(move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        });
    }
    {
        let store = store.clone();
        host.status_hook(move || status::part(store.clone()));
    }
    let api = service::VectorApi {
        store,
        dimensions: config.search.dimensions,
        max_top_k: config.search.max_top_k,
    };
    host.add_service(
        VectorSearchServiceServer::new(api)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes),
    );
    let internal = InternalAuth::from_config(&config.internal_auth, "vector-search")
        .map_err(anyhow::Error::msg)?;
    host.serve(Guard::Internal(internal), listeners, shutdown)
        .await
}
