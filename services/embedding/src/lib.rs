//! The embedding service: turns texts into L2-normalised sentence vectors. The default
//! provider is all-MiniLM-L6-v2 in-process on CPU (`model`: ONNX Runtime or candle;
//! `batcher`: a dedicated model thread merging concurrent requests into length-sorted
//! batches); `openai` calls any OpenAI-compatible `/v1/embeddings` instead, and serves that
//! endpoint itself on the admin port. `local` loads the model copies (document threads at a
//! lower OS priority, `braid_core::priority`; optionally int8 query copies) and starts the batcher. `cache` keeps vectors in memory and Redis, `embedder`
//! ties limits, cache and provider together for both the gRPC surface (`service`) and HTTP.

#![forbid(unsafe_code)]

mod batcher;
mod cache;
mod config;
mod embedder;
mod error;
mod local;
mod model;
mod openai;
mod service;
mod throttle;

use std::future::Future;
use std::sync::Arc;

use braid_core::auth::internal::InternalAuth;
use braid_core::host::Host;
use braid_core::server::{Guard, Listeners};
use braid_proto::service_names;
use braid_proto::v1::embedding_service_server::EmbeddingServiceServer;

pub use cache::CacheConfig;
pub use config::{
    EmbeddingConfig, LimitsConfig, ModelConfig, Oversize, ProviderConfig, ProviderKind,
};
pub use error::EmbeddingError;
pub use model::{Engine, Gelu, INT8_REVISION_SUFFIX, Model, ModelError, ModelOptions, TokenBatch};
pub use openai::{Fault, OpenAiConfig, OpenAiServerConfig};

use embedder::{Embedder, Provider};

/// Runs the embedding service on `listeners` until `shutdown` resolves.
pub async fn run(
    config: EmbeddingConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut host = Host::new(service_names::EMBEDDING, "embedding", &config.server);

    let (provider, model_id, dimensions) = match config.provider.kind {
        ProviderKind::Local => {
            let local = local::start(
                &config.model,
                config.limits.queue_capacity,
                batcher::BatcherMetrics::new(host.metrics()),
            )
            .await?;
            (
                Provider::Local(local.batcher),
                local.model_id,
                local.dimensions,
            )
        }
        ProviderKind::Openai => {
            let client = openai::OpenAiProvider::new(&config.provider.openai, host.metrics())?;
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
        cache: cache::EmbeddingCache::new(&config.cache, &model_id, host.metrics())?,
        provider,
        limits: config.limits.clone(),
        model: model_id.clone().into(),
        dimensions,
        query_prefix: config.model.query_prefix.as_str().into(),
        document_prefix: config.model.document_prefix.as_str().into(),
        query_cache_variant: config.model.query_cache_variant().map(Into::into),
    };
    {
        let embedder = embedder.clone();
        let health = host.health().clone();
        host.probe(move || {
            let embedder = embedder.clone();
            let health = health.clone();
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
        });
    }
    // The status view: the cache's hit rates per layer and its Redis pool.
    {
        let (embedder, metrics) = (embedder.clone(), host.metrics().clone());
        host.status_hook(move || {
            let lookups = |layer, result| {
                metrics
                    .value(
                        "braid_embedding_cache_lookups_total",
                        &[("layer", layer), ("result", result)],
                    )
                    .unwrap_or(0.0)
            };
            let mut caches = vec![braid_core::status::cache(
                "embedding-cache:l1",
                lookups("l1", "hit"),
                lookups("l1", "miss"),
            )];
            let pool = embedder.cache.redis_pool();
            if pool.is_some() {
                caches.push(braid_core::status::cache(
                    "embedding-cache:redis",
                    lookups("redis", "hit"),
                    lookups("redis", "miss") + lookups("redis", "error"),
                ));
            }
            let report = braid_proto::v1::ServiceStatusReport {
                caches,
                pools: pool.into_iter().collect(),
                ..Default::default()
            };
            async move { report }
        });
    }
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
    host.add_admin_routes(openai::routes(
        &config.openai_server,
        http_embed,
        model_id,
        dimensions,
    )?);
    let api = service::EmbeddingApi {
        embedder,
        max_tokens: config.model.max_tokens,
    };
    host.add_service(
        EmbeddingServiceServer::new(api)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes),
    );
    let internal = InternalAuth::from_config(&config.internal_auth, "embedding")
        .map_err(anyhow::Error::msg)?;
    host.serve(Guard::Internal(internal), listeners, shutdown)
        .await
}
