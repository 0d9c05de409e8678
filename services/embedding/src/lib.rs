//! The embedding service: turns texts into L2-normalised sentence vectors. The default
//! provider is all-MiniLM-L6-v2 in-process on CPU (`model`: ONNX Runtime or candle;
//! `batcher`: a dedicated model thread merging concurrent requests into length-sorted
//! batches); `openai` calls any OpenAI-compatible `/v1/embeddings` instead, and serves that
//! endpoint itself on the admin port. `cache` keeps vectors in memory and Redis, `embedder`
//! ties limits, cache and provider together for both the gRPC surface (`service`) and HTTP.

#![forbid(unsafe_code)]

mod batcher;
mod cache;
mod config;
mod embedder;
mod error;
mod model;
mod openai;
mod service;
mod throttle;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use braid_core::metrics::Metrics;
use braid_core::server::{self, Listeners};
use braid_proto::service_names;
use braid_proto::tonic::service::Routes;
use braid_proto::v1::embedding_service_server::EmbeddingServiceServer;

pub use cache::CacheConfig;
pub use config::{
    EmbeddingConfig, LimitsConfig, ModelConfig, Oversize, ProviderConfig, ProviderKind,
};
pub use error::EmbeddingError;
pub use model::{Engine, Gelu, Model, ModelError, ModelOptions, TokenBatch};
pub use openai::{Fault, OpenAiConfig, OpenAiServerConfig};

use embedder::{Embedder, Provider};

/// Runs the embedding service on `listeners` until `shutdown` resolves.
pub async fn run(
    config: EmbeddingConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("embedding");
    let (health, health_service) = server::health(service_names::EMBEDDING);

    let (provider, model_id, dimensions) = match config.provider.kind {
        ProviderKind::Local => {
            let model_config = config.model.clone();
            let (workers, threads) = model_config.parallelism();
            // 0 stays 0: the model then uses one thread per core.
            let query_threads = model_config.query_threads;
            let query_workers = model_config.query_workers;
            let lone_threads = model_config.lone_pass_threads();
            let (models, query_models, lone_model) = tokio::task::spawn_blocking(move || {
                // No spinning: on a shared 2-core machine, threads spinning for work doubled
                // the CPU per query and slowed batches (BENCHMARKS.md, engine settings).
                let load = |threads: usize| {
                    Model::load(
                        &model_config.dir,
                        ModelOptions {
                            max_tokens: model_config.max_tokens,
                            engine: model_config.engine,
                            gelu: model_config.gelu,
                            onnx_runtime: model_config.onnx_runtime.clone(),
                            threads,
                            spin: false,
                            quantized: model_config.quantized,
                        },
                    )
                };
                let models = (0..workers)
                    .map(|_| load(threads))
                    .collect::<Result<Vec<_>, _>>()?;
                let query_models = (0..query_workers)
                    .map(|_| load(query_threads))
                    .collect::<Result<Vec<_>, _>>()?;
                let lone_model = lone_threads.map(load).transpose()?;
                Ok::<_, model::ModelError>((models, query_models, lone_model))
            })
            .await?
            .with_context(|| format!("loading the model from {}", config.model.dir.display()))?;
            let model = &models[0];
            // The revision names the weights and, for the int8 graph, the quantisation.
            let model_id = format!("{}@{}", config.model.name, model.revision());
            let dimensions = model.dimensions();
            tracing::info!(model = %model_id, dimensions, engine = ?config.model.engine, workers, threads, query_workers, query_threads, ?lone_threads, "model loaded");
            let batcher = batcher::Batcher::start(
                models,
                query_models,
                lone_model,
                batcher::BatchLimits {
                    max_batch: config.model.max_batch,
                    max_batch_tokens: config.model.max_batch_tokens,
                    max_tokens: config.model.max_tokens,
                },
                config.limits.queue_capacity,
                batcher::BatcherMetrics::new(&metrics),
            );
            (Provider::Local(batcher), model_id, dimensions)
        }
        ProviderKind::Openai => {
            let client = openai::OpenAiProvider::new(&config.provider.openai, &metrics)?;
            match client.check_dimensions().await {
                Ok(()) => {}
                // Wrong vector size: refuse to start rather than store unusable vectors.
                Err(e @ EmbeddingError::Provider(_)) => return Err(e.into()),
                // Unreachable now: start anyway; every response is checked again.
                Err(e) => tracing::warn!(error = %e, "provider not reachable at start-up"),
            }
            let (id, dims) = (client.model_id(), client.dimensions());
            (Provider::OpenAi(client), id, dims)
        }
    };

    let embedder = Embedder {
        cache: cache::EmbeddingCache::new(&config.cache, &model_id, &metrics)?,
        provider,
        limits: config.limits.clone(),
        model: model_id.clone().into(),
        dimensions,
        query_prefix: config.model.query_prefix.as_str().into(),
        document_prefix: config.model.document_prefix.as_str().into(),
    };
    let probe = {
        let embedder = embedder.clone();
        let health_details = health.clone();
        server::spawn_probe(
            health.clone(),
            config.server.health_probe_interval(),
            move || {
                let embedder = embedder.clone();
                let health = health_details.clone();
                async move {
                    if let Some(up) = embedder.cache.redis_reachable().await {
                        health.set_detail("cache_redis", if up { "up" } else { "down" });
                    }
                    match &embedder.provider {
                        Provider::Local(batcher) if !batcher.is_alive() => {
                            Err("model thread stopped".to_string())
                        }
                        Provider::Local(_) => Ok(()),
                        Provider::OpenAi(client) => {
                            // An open breaker is reported, not a reason to leave the pool:
                            // requests fail fast and the breaker probes for recovery.
                            let state = service::breaker_label(client.breaker_state());
                            health.set_detail("provider_breaker", state);
                            Ok(())
                        }
                    }
                }
            },
        )
    };
    let http_embed: openai::EmbedFn = {
        let embedder = embedder.clone();
        Arc::new(move |texts| {
            let embedder = embedder.clone();
            // The OpenAI API has no input type: texts are embedded as documents.
            Box::pin(async move {
                embedder
                    .embed(texts, embedder::InputKind::Document)
                    .await
                    .map(|e| e.vectors)
            })
        })
    };
    let admin_routes = openai::routes(&config.openai_server, http_embed, model_id, dimensions)?;
    let internal =
        braid_core::auth::internal::InternalAuth::from_config(&config.internal_auth, "embedding")
            .map_err(anyhow::Error::msg)?;
    let api = service::EmbeddingApi {
        embedder,
        max_tokens: config.model.max_tokens,
    };
    let routes = Routes::new(health_service).add_service(
        EmbeddingServiceServer::new(api)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes),
    );
    let result = server::serve_with_admin(
        &config.server,
        metrics,
        health,
        server::Guard::Internal(internal).over(routes),
        admin_routes,
        listeners,
        shutdown,
    )
    .await;
    probe.abort();
    result
}
