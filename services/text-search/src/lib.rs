//! The text-search service: the BM25 leg of hybrid search. `index` defines the backend trait,
//! `tantivy` implements it on an embedded Tantivy index (the default; an Elasticsearch
//! backend implements the same trait) with the per-language analysis of `analysis` (the
//! languages and their detection in `language`), the configurable BM25 of `bm25` and
//! document entries built by `document_text`; `managed` keeps the index directory
//! recoverable (which index serves, faults for a lost or corrupt one, rebuilding into a new
//! one and switching); `es` (cargo feature `elasticsearch`) implements both traits on an
//! Elasticsearch cluster; `service` and `recovery` are the gRPC surface.

#![forbid(unsafe_code)]

mod analysis;
mod bm25;
mod config;
mod document_text;
mod error;
#[cfg(feature = "elasticsearch")]
mod es;
mod filter;
mod index;
mod language;
mod managed;
mod recovery;
mod service;
mod tantivy;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use braid_core::auth::internal::InternalAuth;
use braid_core::host::Host;
use braid_core::server::{Guard, Listeners};
use braid_proto::service_names;
use braid_proto::v1::text_search_service_server::TextSearchServiceServer;

pub use self::tantivy::TantivyIndex;
pub use config::{
    Backend, ElasticsearchConfig, IndexConfig, Layout, SearchConfig, TextSearchConfig,
};
pub use error::TextError;
#[cfg(feature = "elasticsearch")]
pub use es::EsIndex;
pub use index::{IndexAdmin, IndexStatus, TextIndex, TextQuery};
pub use managed::ManagedIndex;

/// Runs the text-search service on `listeners` until `shutdown` resolves.
pub async fn run(
    config: TextSearchConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut host = Host::new(service_names::TEXT_SEARCH, "text_search", &config.server);
    let (index, admin): (Arc<dyn TextIndex>, Arc<dyn IndexAdmin>) = match config.index.backend {
        Backend::Tantivy => {
            let c = config.clone();
            let managed = Arc::new(
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
            );
            let cached = host.metrics().gauge(
                "text_index_id_column_segments",
                "segments of the serving Tantivy index whose id columns are cached (one per \
                 live segment)",
            );
            let by_searches = host.metrics().counter(
                "text_index_columns_built_by_searches_total",
                "segments whose id columns a search had to build on its own path (each commit \
                 builds them before searches see the segment; a merge landing in between is \
                 left to the searches), over every index this process opened",
            );
            let serving = Arc::downgrade(&managed);
            host.metrics().on_scrape(move || {
                if let Some(m) = serving.upgrade() {
                    cached.set(m.id_column_segments() as f64);
                    by_searches.absolute(tantivy::built_by_searches_in_process());
                }
            });
            (managed.clone(), managed)
        }
        #[cfg(feature = "elasticsearch")]
        Backend::Elasticsearch => {
            // Unreachable nodes are not an error here: the health probe reports NOT_SERVING
            // and sets the index up once the cluster answers.
            let es = Arc::new(
                EsIndex::new(&config.index.elasticsearch, &config.search)
                    .context("configuring the Elasticsearch client")?,
            );
            (es.clone(), es)
        }
        #[cfg(not(feature = "elasticsearch"))]
        Backend::Elasticsearch => anyhow::bail!(
            "index.backend = \"elasticsearch\" needs a text-search built with the \
             `elasticsearch` feature"
        ),
    };
    {
        let index = index.clone();
        host.probe(move || {
            let index = index.clone();
            async move { index.check().await.map_err(|e| e.to_string()) }
        });
    }
    // The status view: the serving index's identity and fault, and a rebuild under way.
    {
        let admin = admin.clone();
        host.status_hook(move || {
            let admin = admin.clone();
            async move {
                let indexes = match admin.status("").await {
                    Ok(s) => {
                        let mut indexes = vec![braid_proto::v1::IndexStatus {
                            name: "text".into(),
                            generation: s.index_id,
                            fault: s.fault.unwrap_or_default(),
                            detail: String::new(),
                        }];
                        if let Some((id, written)) = s.rebuild {
                            indexes.push(braid_proto::v1::IndexStatus {
                                name: "text-rebuild".into(),
                                generation: id,
                                fault: String::new(),
                                detail: format!("{written} documents written"),
                            });
                        }
                        indexes
                    }
                    Err(e) => vec![braid_proto::v1::IndexStatus {
                        name: "text".into(),
                        fault: format!("status unavailable: {e}"),
                        ..Default::default()
                    }],
                };
                braid_proto::v1::ServiceStatusReport {
                    indexes,
                    ..Default::default()
                }
            }
        });
    }
    let api = service::TextApi {
        admin,
        index,
        max_top_k: config.search.max_top_k,
        max_query_bytes: config.search.max_query_bytes,
    };
    host.add_service(
        TextSearchServiceServer::new(api)
            .max_decoding_message_size(config.server.max_message_bytes)
            .max_encoding_message_size(config.server.max_message_bytes),
    );
    let internal = InternalAuth::from_config(&config.internal_auth, "text-search")
        .map_err(anyhow::Error::msg)?;
    host.serve(Guard::Internal(internal), listeners, shutdown)
        .await
}
