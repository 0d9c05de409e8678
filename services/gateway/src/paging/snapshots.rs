//! Ranking snapshots of paged walks: the whole ranking a first page was cut from, kept under a
//! random 128-bit id for `search.page_snapshot_ttl_ms`, so every later page of the walk is cut
//! from it (Elasticsearch's point in time, for one search).
//!
//! Stored in process (moka, bounded in bytes by `search.page_snapshot_memory_bytes`) and, when
//! `query_cache.redis_url` is set, in Redis too (`braid:p:<id>`, with the same TTL), so any
//! gateway replica serves the next page. This store does not depend on the query cache being
//! enabled or bypassed. A snapshot is read from process memory first, then from Redis; found
//! in neither, it expired (or was evicted), and the walk must start again. A Redis error
//! while storing leaves the snapshot in this process only (counted); a Redis error while
//! reading a snapshot this process does not hold is an error, never a guess.

use std::sync::Arc;
use std::time::Duration;

use braid_core::metrics::{Counter, Family};
use braid_proto::prost::Message;
use braid_proto::v1::SearchResponse;

use crate::cache::RedisLayer;
use crate::config::{QueryCacheConfig, SearchConfig};
use crate::error::GatewayError;

/// A snapshot's id: 128 random bits.
pub type SnapshotId = [u8; 16];

/// The `event` label values of `page_snapshots_total`.
const EVENTS: &[&str] = &[
    "stored",
    "store_failed",
    "hit",
    "redis_hit",
    "expired",
    "unavailable",
];

pub struct Snapshots {
    local: moka::future::Cache<SnapshotId, Arc<SearchResponse>>,
    redis: Option<RedisLayer>,
    ttl: Duration,
    events: Family<Counter>,
    dropped: Counter,
}

/// A new snapshot id.
pub fn new_id() -> SnapshotId {
    rand::random()
}

fn hex(id: &SnapshotId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Snapshots {
    pub fn new(
        search: &SearchConfig,
        cache: &QueryCacheConfig,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let ttl = Duration::from_millis(search.page_snapshot_ttl_ms);
        let redis = if cache.redis_url.is_empty() {
            None
        } else {
            Some(RedisLayer::with(cache, "braid:p:", ttl)?)
        };
        Ok(Self {
            local: moka::future::Cache::builder()
                .max_capacity(search.page_snapshot_memory_bytes)
                .weigher(|_, s: &Arc<SearchResponse>| {
                    u32::try_from(s.encoded_len()).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            redis,
            ttl,
            events: metrics.counter_family(
                "page_snapshots_total",
                "ranking snapshots of paged searches: stored (by a first page), store_failed \
                 (Redis write failed; held in this process only), hit (read in process), \
                 redis_hit, expired (a later page found none: start again), unavailable \
                 (Redis could not be read)",
                &[("event", EVENTS)],
            ),
            dropped: metrics.counter(
                "page_snapshot_hits_dropped_total",
                "hits of a snapshot left out of a later page: deleted or no longer readable \
                 by the caller since the first page",
            ),
        })
    }

    /// How long a snapshot is kept after its first page.
    /// The snapshots' Redis pool, when there is one (for the status view).
    pub fn redis_pool(&self) -> Option<braid_proto::v1::PoolStatus> {
        self.redis
            .as_ref()
            .map(|r| r.pool_status("redis:page-snapshots"))
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn count(&self, event: &str) {
        self.events.get(&[event]).increment(1);
    }

    /// Counts hits left out of a later page.
    pub fn count_dropped(&self, n: usize) {
        if n > 0 {
            self.dropped.increment(n as u64);
        }
    }

    /// Keeps `ranking` under `id` (in process, and in Redis when configured).
    pub async fn store(&self, id: SnapshotId, ranking: &SearchResponse) {
        self.local.insert(id, Arc::new(ranking.clone())).await;
        if let Some(redis) = &self.redis
            && let Err(e) = redis.put(&hex(&id), ranking).await
        {
            tracing::warn!(error = %e, "page snapshot: redis write failed; held in this process only");
            self.count("store_failed");
        }
        self.count("stored");
    }

    /// The snapshot under `id`; `None` when it expired (or was evicted).
    pub async fn load(&self, id: &SnapshotId) -> Result<Option<Arc<SearchResponse>>, GatewayError> {
        if let Some(found) = self.local.get(id).await {
            self.count("hit");
            return Ok(Some(found));
        }
        let Some(redis) = &self.redis else {
            self.count("expired");
            return Ok(None);
        };
        match redis.get(&hex(id)).await {
            Ok(Some(found)) => {
                self.count("redis_hit");
                Ok(Some(Arc::new(found)))
            }
            Ok(None) => {
                self.count("expired");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "page snapshot: redis read failed");
                self.count("unavailable");
                Err(GatewayError::StoreUnavailable("the page snapshot store"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(n: usize) -> SearchResponse {
        SearchResponse {
            hits: (0..n)
                .map(|i| braid_proto::v1::SearchHit {
                    document_id: i.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn snapshots_are_kept_for_their_ttl_only() {
        let metrics = braid_core::metrics::Metrics::new("gateway");
        let search = SearchConfig {
            page_snapshot_ttl_ms: 200,
            ..SearchConfig::default()
        };
        let snapshots = Snapshots::new(&search, &QueryCacheConfig::default(), &metrics).unwrap();
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        snapshots.store(a, &ranking(3)).await;
        let found = snapshots.load(&a).await.unwrap().unwrap();
        assert_eq!(found.hits.len(), 3);
        assert!(snapshots.load(&b).await.unwrap().is_none(), "never stored");
        let expired = || async { snapshots.load(&a).await.unwrap().is_none() };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !expired().await {
            assert!(
                std::time::Instant::now() < deadline,
                "still held after its TTL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let count = |event: &str| {
            metrics
                .value("braid_page_snapshots_total", &[("event", event)])
                .unwrap_or(0.0)
        };
        assert_eq!(count("stored"), 1.0);
        assert!(count("hit") >= 1.0);
        assert!(count("expired") >= 2.0);
    }
}
