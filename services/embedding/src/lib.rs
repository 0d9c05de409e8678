//! The embedding service: turns texts into L2-normalised sentence vectors with
//! all-MiniLM-L6-v2 run in-process on CPU (candle). `model` is the forward pass, `batcher`
//! owns the model on a dedicated thread and merges concurrent requests into batches,
//! `service` is the gRPC surface, `config` its settings.

#![forbid(unsafe_code)]

mod batcher;
mod config;
mod error;
mod model;
mod service;

use std::future::Future;

use anyhow::Context;
use braid_core::metrics::Metrics;
use braid_core::server::{self, Listeners};
use braid_proto::service_names;
use braid_proto::tonic::service::Routes;
use braid_proto::v1::embedding_service_server::EmbeddingServiceServer;

pub use config::{EmbeddingConfig, LimitsConfig, ModelConfig};
pub use error::EmbeddingError;
pub use model::{Model, ModelError};

/// Runs the embedding service on `listeners` until `shutdown` resolves.
pub async fn run(
    config: EmbeddingConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("embedding");
    let (health, health_service) = server::health(service_names::EMBEDDING);

    let model_config = config.model.clone();
    let model = tokio::task::spawn_blocking(move || {
        Model::load(&model_config.dir, model_config.max_tokens)
    })
    .await?
    .with_context(|| format!("loading the model from {}", config.model.dir.display()))?;
    let model_id = format!("{}@{}", config.model.name, model.revision());
    let dimensions = model.dimensions();
    tracing::info!(model = %model_id, dimensions, "model loaded");

    let batcher = batcher::Batcher::start(
        model,
        config.model.max_batch,
        config.limits.queue_capacity,
        batcher::BatcherMetrics::new(&metrics),
    );
    let probe = {
        let batcher = batcher.clone();
        server::spawn_probe(
            health.clone(),
            config.server.health_probe_interval(),
            move || {
                let alive = batcher.is_alive();
                async move {
                    if alive {
                        Ok(())
                    } else {
                        Err("model thread stopped".to_string())
                    }
                }
            },
        )
    };
    let api = service::EmbeddingApi {
        batcher,
        limits: config.limits.clone(),
        model: model_id,
        dimensions,
        max_tokens: config.model.max_tokens,
    };
    let routes = Routes::new(health_service).add_service(
        EmbeddingServiceServer::new(api)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes),
    );
    let result = server::serve(&config.server, metrics, health, routes, listeners, shutdown).await;
    probe.abort();
    result
}
