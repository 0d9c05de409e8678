//! The audit trail: every Gateway call, allowed or denied, becomes one record (who, tenant,
//! role, from where, which RPC, outcome code, latency, result count, the first document ids,
//! trace id, the query as `audit.query_text` says) in the append-only `audit.records` table
//! and a JSON log line (target `audit`). Records leave the request path through a bounded
//! queue; `audit.on_failure` decides what a full queue means for the call.

pub mod config;
pub mod layer;
mod list;
pub mod record;
pub mod store;
mod writer;

use std::time::Duration;

use braid_core::metrics::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use config::{AuditConfig, OnFailure, QueryText};
use record::Record;
use store::AuditStore;

pub use list::list;
pub use record::AuditSlot;

/// The audit queue's sending side, shared by every call.
pub struct Auditor {
    tx: mpsc::Sender<Record>,
    on_failure: OnFailure,
    query_text: QueryText,
    dropped: Counter,
}

/// A running audit trail: the auditor for the layer, the store for `ListAudit`, and the
/// background tasks.
pub struct AuditTrail {
    pub auditor: std::sync::Arc<Auditor>,
    pub store: AuditStore,
    writer: JoinHandle<()>,
    purge: JoinHandle<()>,
}

impl AuditTrail {
    /// `None` when audit is off (`audit.enabled = false` or no database configured).
    pub fn start(
        config: &AuditConfig,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Option<Self>> {
        if !config.active() {
            return Ok(None);
        }
        let dropped = metrics.counter(
            "gateway_audit_dropped_total",
            "audit records lost: queue full (best_effort) or not stored",
        );
        let written = metrics.counter("gateway_audit_written_total", "audit records stored");
        let queue_depth = metrics.gauge(
            "gateway_audit_queue_depth",
            "audit records waiting to be written",
        );
        let store = AuditStore::connect(&config.database)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let writer = writer::spawn_writer(
            store.clone(),
            rx,
            config.batch_size,
            Duration::from_millis(config.flush_interval_ms),
            writer::WriterMetrics {
                dropped: dropped.clone(),
                written,
                queue_depth,
            },
        );
        let purge = writer::spawn_purge(
            store.clone(),
            config.retention_days,
            Duration::from_millis(config.purge_interval_ms),
        );
        Ok(Some(Self {
            auditor: std::sync::Arc::new(Auditor {
                tx,
                on_failure: config.on_failure,
                query_text: config.query_text,
                dropped,
            }),
            store,
            writer,
            purge,
        }))
    }

    /// Writes what is queued (within `grace`) once the server stopped taking calls.
    pub async fn finish(self, grace: Duration) {
        self.purge.abort();
        drop(self.auditor);
        if tokio::time::timeout(grace, self.writer).await.is_err() {
            tracing::warn!("audit records still queued at shutdown were not written");
        }
    }
}
