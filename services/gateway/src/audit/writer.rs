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
    /// Records refused on their own (see [`store_batch`]).
    pub rejected: Counter,
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
            if migrated {
                store_batch(&store, &batch, &metrics).await;
            } else {
                metrics.dropped.increment(batch.len() as u64);
                tracing::warn!(
                    records = batch.len(),
                    "audit records not stored: the audit schema is not migrated"
                );
            }
            batch.clear();
        }
    })
}

/// Stores one batch in one INSERT. When the database refuses it for another reason than being
/// unreachable (a record it will not take: one bad row fails the whole statement), each record
/// is retried alone, so only a record the database refuses by itself is lost (counted in
/// `rejected` and `dropped`). An unreachable database costs the batch, as retrying row by row
/// would only wait longer.
async fn store_batch(store: &AuditStore, batch: &[Record], metrics: &WriterMetrics) {
    let e = match store.insert(batch).await {
        Ok(()) => {
            metrics.written.increment(batch.len() as u64);
            return;
        }
        Err(e) => e,
    };
    if braid_core::db::is_unavailable(&e) || batch.len() == 1 {
        metrics.dropped.increment(batch.len() as u64);
        if batch.len() == 1 && !braid_core::db::is_unavailable(&e) {
            metrics.rejected.increment(1);
        }
        tracing::warn!(error = %e, records = batch.len(), "audit records not stored");
        return;
    }
    tracing::warn!(error = %e, records = batch.len(), "audit batch refused; storing its records one by one");
    for record in batch {
        match store.insert(std::slice::from_ref(record)).await {
            Ok(()) => metrics.written.increment(1),
            Err(e) => {
                metrics.dropped.increment(1);
                if !braid_core::db::is_unavailable(&e) {
                    metrics.rejected.increment(1);
                }
                tracing::warn!(error = %e, rpc = record.rpc, at_ms = record.at_ms, "audit record not stored");
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: &str) -> Record {
        Record {
            at_ms: 1_700_000_000_000,
            subject: subject.into(),
            tenant: "acme".into(),
            role: "reader".into(),
            client_addr: "127.0.0.1:1".into(),
            rpc: "Search",
            code: "Ok".into(),
            latency_ms: 1.0,
            result_count: 0,
            document_ids: Vec::new(),
            trace_id: String::new(),
            query: String::new(),
            calls: 1,
        }
    }

    /// Issue 23: a NUL byte in one record made PostgreSQL refuse the whole batched INSERT, so
    /// every call of that window vanished from `audit.records`. Now only that record is lost
    /// (counted). The record is built here as it could never be built by the layer (which
    /// escapes every field), to prove the second wall on its own.
    #[tokio::test]
    async fn one_bad_record_costs_only_itself() {
        let scratch = braid_core::db::ScratchDatabase::create("braid_audit_test").await;
        let store = AuditStore::connect(&scratch.config).unwrap();
        store.migrate().await.unwrap();
        let registry = braid_core::metrics::Metrics::new("test");
        let metrics = WriterMetrics {
            dropped: registry.counter("dropped", "test"),
            written: registry.counter("written", "test"),
            rejected: registry.counter("rejected", "test"),
            queue_depth: registry.gauge("depth", "test"),
        };
        let batch = [record("alice"), record("mallory\u{0}"), record("bob")];
        store_batch(&store, &batch, &metrics).await;
        let subjects: Vec<String> =
            sqlx::query_scalar("SELECT subject FROM audit.records ORDER BY id")
                .fetch_all(store.db())
                .await
                .unwrap();
        assert_eq!(subjects, ["alice", "bob"]);
        assert_eq!(registry.value("braid_written", &[]), Some(2.0));
        assert_eq!(registry.value("braid_rejected", &[]), Some(1.0));
        assert_eq!(registry.value("braid_dropped", &[]), Some(1.0));
        store.close().await;
        scratch.drop().await;
    }
}
