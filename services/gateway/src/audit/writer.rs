//! Writes records off the request path: a bounded queue drained in batches into
//! `audit.records`, each record also logged as one JSON line (target `audit`); and the
//! periodic retention purge.

use std::time::Duration;

use braid_core::metrics::{Counter, Gauge};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::record::Record;
use super::store::AuditStore;

pub struct WriterMetrics {
    pub dropped: Counter,
    pub written: Counter,
    pub queue_depth: Gauge,
}

/// Drains `rx` until every sender is gone, then returns. A batch is written when it holds
/// `batch_size` records or `flush_interval` after its first record arrived (zero: at once),
/// so a steady trickle of calls costs one INSERT per interval, not one per call.
pub fn spawn_writer(
    store: AuditStore,
    mut rx: mpsc::Receiver<Record>,
    batch_size: usize,
    flush_interval: Duration,
    metrics: WriterMetrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut migrated = false;
        let mut batch = Vec::with_capacity(batch_size);
        while rx.recv_many(&mut batch, batch_size).await > 0 {
            let deadline = tokio::time::Instant::now() + flush_interval;
            while batch.len() < batch_size {
                let room = batch_size - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            metrics.queue_depth.set(rx.len() as f64);
            if tracing::enabled!(target: "audit", tracing::Level::INFO) {
                for record in &batch {
                    match serde_json::to_string(record) {
                        Ok(json) => tracing::info!(target: "audit", record = %json, "audit"),
                        Err(e) => tracing::warn!(error = %e, "audit record not serialisable"),
                    }
                }
            }
            if !migrated {
                match store.migrate().await {
                    Ok(()) => migrated = true,
                    Err(e) => tracing::warn!(error = %e, "audit schema migration failed"),
                }
            }
            let written = if migrated {
                store.insert(&batch).await.map_err(|e| e.to_string())
            } else {
                Err("the audit schema is not migrated".to_string())
            };
            match written {
                Ok(()) => metrics.written.increment(batch.len() as u64),
                Err(e) => {
                    metrics.dropped.increment(batch.len() as u64);
                    tracing::warn!(error = %e, records = batch.len(), "audit records not stored");
                }
            }
            batch.clear();
        }
    })
}

/// Deletes records past the retention period every `interval`.
pub fn spawn_purge(store: AuditStore, retention_days: u32, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut migrated = false;
        loop {
            ticker.tick().await;
            // The schema may not exist yet (no call recorded so far): create it first.
            if !migrated {
                match store.migrate().await {
                    Ok(()) => migrated = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "audit schema migration failed");
                        continue;
                    }
                }
            }
            match store.purge(retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, retention_days, "audit records purged"),
                Err(e) => tracing::warn!(error = %e, "audit purge failed"),
            }
        }
    })
}
