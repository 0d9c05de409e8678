//! The audit trail: every Gateway call, allowed or denied, becomes one record (who, tenant,
//! role, from where, which RPC, outcome code, latency, result count, the first document ids,
//! trace id, the query as `audit.query_text` says) in the append-only `audit.records` table
//! and a JSON log line (target `audit`). Records leave the request path through a bounded
//! queue; `audit.on_failure` decides what a full queue means for the call. Calls refused
//! before authentication are counted per peer and written once per window (`anonymous`).
//! Every caller-influenced text is escaped and capped when it is recorded
//! (`record::escape_field`), and a batch the database refuses is retried row by row, so one
//! bad record never costs the others (`writer`).

pub mod anonymous;
pub mod config;
pub mod layer;
mod list;
pub mod record;
pub mod store;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use braid_core::metrics::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use anonymous::Anonymous;
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
    /// Refusals before authentication, counted per peer until the window's end.
    anonymous: Arc<Anonymous>,
}

/// A running audit trail: the auditor for the layer, the store for `ListAudit`, and the
/// background tasks.
pub struct AuditTrail {
    pub auditor: Arc<Auditor>,
    pub store: AuditStore,
    writer: JoinHandle<()>,
    purge: JoinHandle<()>,
    anonymous: JoinHandle<()>,
}

impl Auditor {
    /// Queues the window's counts of refusals before authentication.
    fn flush_anonymous(&self) {
        for record in self.anonymous.take() {
            if self.tx.try_send(record).is_err() {
                self.dropped.increment(1);
            }
        }
    }
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
        let rejected = metrics.counter(
            "gateway_audit_rejected_total",
            "audit records the database refused on their own (retried alone after their batch failed); also in dropped",
        );
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
                rejected,
                queue_depth,
            },
        );
        let purge = writer::spawn_purge(
            store.clone(),
            config.retention_days,
            Duration::from_millis(config.purge_interval_ms),
        );
        let anonymous = Arc::new(Anonymous::new(config.max_anonymous_peers));
        let auditor = Arc::new(Auditor {
            tx,
            on_failure: config.on_failure,
            query_text: config.query_text,
            dropped,
            anonymous,
        });
        let window = Duration::from_millis(config.anonymous_window_ms);
        let flush = {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + window, window);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    auditor.flush_anonymous();
                }
            })
        };
        Ok(Some(Self {
            auditor,
            store,
            writer,
            purge,
            anonymous: flush,
        }))
    }

    /// Writes what is queued (within `grace`) once the server stopped taking calls.
    pub async fn finish(self, grace: Duration) {
        self.purge.abort();
        self.anonymous.abort();
        self.auditor.flush_anonymous();
        drop(self.auditor);
        if tokio::time::timeout(grace, self.writer).await.is_err() {
            tracing::warn!("audit records still queued at shutdown were not written");
        }
    }
}
