//! The text-search service: the BM25 leg of hybrid search. `index` defines the backend trait,
//! `tantivy` implements it on an embedded Tantivy index (the default; an Elasticsearch
//! backend implements the same trait) with the English analysis of `analysis`, the
//! configurable BM25 of `bm25` and document entries built by `document_text`; `managed` keeps
//! the index directory recoverable (which index serves, faults for a lost or corrupt one,
//! rebuilding into a new one and switching); `service` and `recovery` are the gRPC surface.

#![forbid(unsafe_code)]

mod analysis;
mod bm25;
mod config;
mod document_text;
mod error;
mod filter;
mod index;
mod managed;
mod recovery;
mod service;
mod tantivy;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use braid_core::metrics::Metrics;
use braid_core::server::{self, Listeners};
use braid_proto::service_names;
use braid_proto::tonic::service::Routes;
use braid_proto::v1::text_search_service_server::TextSearchServiceServer;

pub use self::tantivy::TantivyIndex;
pub use config::{Backend, IndexConfig, SearchConfig, TextSearchConfig};
pub use error::TextError;
pub use index::{TextIndex, TextQuery};

/// Runs the text-search service on `listeners` until `shutdown` resolves.
pub async fn run(
    config: TextSearchConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Metrics::new("text_search");
    let (health, health_service) = server::health(service_names::TEXT_SEARCH);
    let index = match config.backend {
        Backend::Tantivy => {
            let c = config.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    managed::ManagedIndex::open(&c.index, &c.search)
                })
                .await?
                .with_context(|| {
                    format!(
                        "opening the text index directory {}",
                        config.index.dir.display()
                    )
                })?,
            )
        }
    };
    let probe = {
        let index = index.clone();
        server::spawn_probe(
            health.clone(),
            config.server.health_probe_interval(),
            move || {
                let index = index.clone();
                async move { index.check().await.map_err(|e| e.to_string()) }
            },
        )
    };
    let api = service::TextApi {
        managed: index.clone(),
        index,
        max_top_k: config.search.max_top_k,
        max_query_bytes: config.search.max_query_bytes,
    };
    let routes = Routes::new(health_service).add_service(
        TextSearchServiceServer::new(api)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes),
    );
    let internal =
        braid_core::auth::internal::InternalAuth::from_config(&config.internal_auth, "text-search")
            .map_err(anyhow::Error::msg)?;
    let result = server::serve(
        &config.server,
        metrics,
        health,
        server::Guard::Internal(internal).over(routes),
        listeners,
        shutdown,
    )
    .await;
    probe.abort();
    result
}
