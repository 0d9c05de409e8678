//! The ingest service: accepts documents, extracts text (`extract`), cuts it into
//! token-aware overlapping chunks (`chunk`), stores documents, chunks and outbox jobs in one
//! PostgreSQL transaction (`store`), and runs the workers that index every change into both
//! search legs with retries and a dead-letter state (`worker`). `service` is the gRPC surface.

#![forbid(unsafe_code)]

mod acl;
mod chunk;
mod config;
mod error;
mod extract;
mod outage;
mod recovery;
mod redact;
mod service;
mod status;
mod store;
mod worker;

/// The narrowest entry points the `cargo fuzz` targets (`fuzz/`) need; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::chunk::{BasicTokenizer, Tokenize, chunk_spans};
    pub use crate::extract::{Extracted, Mime, extract};
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use braid_core::auth::internal::InternalAuth;
use braid_core::host::Host;
use braid_core::metrics::{Family, Gauge, Metrics};
use braid_core::server::{Guard, Listeners};
use braid_proto::service_names;
use braid_proto::v1::embedding_service_client::EmbeddingServiceClient;
use braid_proto::v1::ingest_service_server::IngestServiceServer;
use braid_proto::v1::text_search_service_client::TextSearchServiceClient;
use braid_proto::v1::vector_search_service_client::VectorSearchServiceClient;
use tokio::sync::Notify;

pub use config::{ChunkingConfig, IngestConfig, LimitsConfig, RecoveryConfig, WorkerConfig};
pub use error::IngestError;
pub use redact::RedactionConfig;

/// Runs the ingest service (gRPC API and job workers) until `shutdown` resolves.
pub async fn run(
    config: IngestConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut host = Host::new(service_names::INGEST, "ingest", &config.server);
    let store = store::Store::connect(&config.database)?;
    {
        let store = store.clone();
        host.metrics().register_pool(move || store.pool_sample());
    }
    if config.database.migrate {
        store.migrate().await.context("running ingest migrations")?;
    }
    let tokenizer: Arc<dyn chunk::Tokenize> = match &config.chunking.tokenizer_file {
        Some(path) => Arc::new(chunk::ModelTokenizer::load(path)?),
        None => Arc::new(chunk::BasicTokenizer),
    };
    let internal =
        InternalAuth::from_config(&config.internal_auth, "ingest").map_err(anyhow::Error::msg)?;
    let connector = braid_core::client::Connector::new(
        internal.token_source(),
        config.breaker.to_config(),
        host.metrics(),
        braid_core::balance::system(),
    );
    let channel = |name, c| connector.channel(name, c);
    let (embedding, _) = channel("embedding", &config.embedding)?;
    let (vector, _) = channel("vector-search", &config.vector_search)?;
    let (text, _) = channel("text-search", &config.text_search)?;
    let max = config.server.max_message_bytes;
    let downstream = worker::Downstream {
        embedding: EmbeddingServiceClient::new(embedding)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        vector: VectorSearchServiceClient::new(vector).max_encoding_message_size(max),
        text: TextSearchServiceClient::new(text).max_encoding_message_size(max),
    };
    let jobs_total = host.metrics().counter_family(
        "ingest_jobs_total",
        "indexing jobs processed, by leg, op and outcome",
        &[
            ("leg", &["vector", "text"]),
            ("op", &["upsert", "delete"]),
            ("outcome", &["done", "error", "retry", "dead", "outage"]),
        ],
    );
    let wake = Arc::new(Notify::new());
    let progress = Arc::new(Notify::new());
    let workers = Arc::new(worker::Workers {
        store: store.clone(),
        downstream: downstream.clone(),
        outages: outage::LegOutages::new(
            Duration::from_millis(config.worker.outage_grace_ms),
            Duration::from_millis(config.worker.outage_retry_max_ms),
        ),
        config: config.worker.clone(),
        wake: wake.clone(),
        progress: progress.clone(),
        jobs_total,
    });
    // Workers finish the job in hand within the grace period; after it they are aborted and
    // their jobs are re-claimed by any instance once the lease expires.
    host.workers(workers.spawn(host.stopping()));
    {
        let store = store.clone();
        host.probe(move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        });
    }
    let gauges = QueueGauges::new(host.metrics())?;
    // The status view: queues and indexes (see `status`).
    {
        let (metrics, store) = (host.metrics().clone(), store.clone());
        let recovery = recovery::store::RecoveryStore::new(store.db().clone());
        host.status_hook(move || status::part(metrics.clone(), store.clone(), recovery.clone()));
    }
    host.task(tokio::spawn(housekeeping(
        store.clone(),
        gauges,
        Duration::from_millis(config.worker.keep_done_ms),
    )));
    let recovery = recovery::Recovery {
        store: recovery::store::RecoveryStore::new(store.db().clone()),
        downstream: downstream.clone(),
        config: config.recovery.clone(),
        wake: wake.clone(),
    };
    match recovery.store.fail_interrupted().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            runs = n,
            "reindex runs interrupted by a restart marked failed"
        ),
        Err(e) => tracing::warn!(error = %e, "marking interrupted reindex runs failed"),
    }
    host.task(recovery::spawn_text_index_watch(recovery.clone()));
    let api = service::IngestApi {
        recovery,
        store,
        rules: service::Rules {
            limits: config.limits.clone(),
            chunking: config.chunking.clone(),
            redaction: Arc::new(
                redact::Redactor::new(&config.redaction).map_err(anyhow::Error::msg)?,
            ),
            tokenizer,
            metadata_types: Arc::new(config.metadata_types.clone()),
        },
        wake,
        progress,
        downstream,
    };
    host.add_service(
        IngestServiceServer::new(api)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    );
    host.serve(Guard::Internal(internal), listeners, shutdown)
        .await
}

/// Queue and document gauges, refreshed by the housekeeping task.
struct QueueGauges {
    queue_depth: Gauge,
    dead_jobs: Gauge,
    oldest_pending: Gauge,
    documents: Family<Gauge>,
    chunks: Gauge,
}

/// The `status` label values of `braid_ingest_documents`.
const DOCUMENT_STATUSES: &[&str] = &[
    "pending", "indexing", "ready", "partial", "failed", "deleting",
];

impl QueueGauges {
    fn new(metrics: &Metrics) -> anyhow::Result<Self> {
        Ok(Self {
            queue_depth: metrics.gauge("ingest_queue_depth", "pending + running indexing jobs"),
            dead_jobs: metrics.gauge("ingest_dead_jobs", "jobs in the dead-letter queue"),
            oldest_pending: metrics.gauge(
                "ingest_oldest_pending_job_age_seconds",
                "age of the oldest pending indexing job",
            ),
            documents: metrics.gauge_family(
                "ingest_documents",
                "documents by status",
                &[("status", DOCUMENT_STATUSES)],
            ),
            chunks: metrics.gauge("ingest_chunks", "chunks of live documents"),
        })
    }
}

/// Every 5 s: refresh the queue gauges; every 10 min: purge expired idempotency keys and old
/// finished jobs.
async fn housekeeping(store: store::Store, gauges: QueueGauges, keep_done: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        match store.stats(None).await {
            Ok(s) => {
                gauges.queue_depth.set(s.queue_depth as f64);
                gauges.dead_jobs.set(s.dead as f64);
                gauges.oldest_pending.set(s.oldest_pending_seconds);
                gauges.chunks.set(s.chunks as f64);
                for status in DOCUMENT_STATUSES {
                    gauges
                        .documents
                        .get(&[status])
                        .set(s.by_status.get(*status).copied().unwrap_or(0) as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "refreshing queue gauges failed"),
        }
        if n.is_multiple_of(120)
            && let Err(e) = store.purge(keep_done).await
        {
            tracing::warn!(error = %e, "housekeeping purge failed");
        }
        n += 1;
    }
}
