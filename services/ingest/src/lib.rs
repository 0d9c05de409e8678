//! The ingest service: accepts documents, extracts text (`extract`), cuts it into
//! token-aware overlapping chunks (`chunk`), stores documents, chunks and outbox jobs in one
//! PostgreSQL transaction (`store`), and runs the workers that index every change into both
//! search legs with retries and a dead-letter state (`worker`). `service` is the gRPC surface.

#![forbid(unsafe_code)]

mod chunk;
mod config;
mod error;
mod extract;
mod service;
mod store;
mod worker;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use braid_core::metrics::Metrics;
use braid_core::resilience::BreakerConfig;
use braid_core::server::{self, Listeners};
use braid_proto::service_names;
use braid_proto::tonic::service::Routes;
use braid_proto::v1::embedding_service_client::EmbeddingServiceClient;
use braid_proto::v1::ingest_service_server::IngestServiceServer;
use braid_proto::v1::text_search_service_client::TextSearchServiceClient;
use braid_proto::v1::vector_search_service_client::VectorSearchServiceClient;
use prometheus::{IntCounterVec, Opts};
use tokio::sync::Notify;

pub use config::{ChunkingConfig, DatabaseConfig, IngestConfig, LimitsConfig, WorkerConfig};
pub use error::IngestError;

/// Runs the ingest service (gRPC API and job workers) until `shutdown` resolves.
pub async fn run(
    config: IngestConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("ingest");
    let (health, health_service) = server::health(service_names::INGEST);
    let store = store::Store::connect(&config.database)?;
    if config.database.migrate {
        store.migrate().await.context("running ingest migrations")?;
    }
    let tokenizer: Arc<dyn chunk::Tokenize> = match &config.chunking.tokenizer_file {
        Some(path) => Arc::new(chunk::ModelTokenizer::load(path)?),
        None => Arc::new(chunk::BasicTokenizer),
    };
    let breaker = BreakerConfig::default();
    let (embedding, _) = braid_core::client::channel("embedding", &config.embedding, breaker)?;
    let (vector, _) = braid_core::client::channel("vector-search", &config.vector_search, breaker)?;
    let (text, _) = braid_core::client::channel("text-search", &config.text_search, breaker)?;
    let max = config.server.max_message_bytes;
    let downstream = worker::Downstream {
        embedding: EmbeddingServiceClient::new(embedding)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        vector: VectorSearchServiceClient::new(vector).max_encoding_message_size(max),
        text: TextSearchServiceClient::new(text).max_encoding_message_size(max),
    };
    let jobs_total = IntCounterVec::new(
        Opts::new(
            "ingest_jobs_total",
            "indexing jobs processed, by leg, op and outcome",
        ),
        &["leg", "op", "outcome"],
    )?;
    metrics.register(Box::new(jobs_total.clone()));
    let wake = Arc::new(Notify::new());
    let progress = Arc::new(Notify::new());
    let workers = Arc::new(worker::Workers {
        store: store.clone(),
        downstream,
        config: config.worker.clone(),
        wake: wake.clone(),
        progress: progress.clone(),
        jobs_total,
    });
    let (stop, stopping) = braid_core::shutdown::stop_channel();
    let worker_tasks = workers.spawn(stopping);

    let probe = {
        let store = store.clone();
        server::spawn_probe(
            health.clone(),
            config.server.health_probe_interval(),
            move || {
                let store = store.clone();
                async move { store.ping().await.map_err(|e| e.to_string()) }
            },
        )
    };
    let api = service::IngestApi {
        store,
        limits: config.limits.clone(),
        chunking: config.chunking.clone(),
        tokenizer,
        wake,
        progress,
    };
    let routes = Routes::new(health_service).add_service(
        IngestServiceServer::new(api)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    );
    let result = server::serve(&config.server, metrics, health, routes, listeners, shutdown).await;
    probe.abort();
    // Workers finish the job in hand; an abandoned job is re-claimed after its lease.
    stop.stop();
    let grace = config.server.shutdown_grace();
    if tokio::time::timeout(grace, futures::future::join_all(worker_tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            "workers did not stop within the grace period; their jobs will be re-claimed"
        );
    }
    result
}
