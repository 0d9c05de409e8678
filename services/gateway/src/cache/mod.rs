//! Query result cache: whole search answers, in process (moka) and, when
//! `query_cache.redis_url` is set, in Redis shared by every gateway replica.
//!
//! **Key.** A hash of the tenant, the caller's access fingerprint, the normalised query,
//! mode, top_k, fusion parameters, the filter (sorted), chunk_level, the query model identity
//! and the tenant's index generation (`key.rs`).
//!
//! **Freshness.** The ingest service bumps a tenant's index generation in the same
//! transaction that records a leg sync (which is how a document becomes READY) or a
//! deletion (migration 2005). The gateway reads the generation with one cheap RPC per cached
//! search (`IngestService.IndexGeneration`: a primary-key lookup) instead of following a
//! watch stream. A watch stream would leave a window between the commit and the gateway
//! hearing of it, during which a client that has just seen READY (`WaitIndexed`, another
//! gateway replica, the ingest service directly) could get the old answer; bumping locally
//! on proxied responses would only close it for changes made through this replica. The read
//! happens after the change is committed, so an answer is never older than the last READY or
//! delete the caller could have observed. An answer computed while a change lands is stored
//! under the generation read before it, which no later request reads once the bump is
//! visible. When the generation cannot be read (ingest down or slow), the search is answered
//! uncached: the cache never turns an ingest outage into a stale answer or an error.
//!
//! **Model identity.** The query model is the one the embedding service last reported (each
//! query embedding refreshes it; the first cached search asks `ModelInfo`). A model switch is
//! followed by re-embedding jobs whose completion bumps the generation.
//!
//! **Failures.** Degraded answers (a leg failed) and errors are never cached. Redis errors
//! and timeouts count as misses and skipped stores (`query_cache_redis_total`), never as
//! failed searches. Concurrent identical misses wait for one computation (moka's entry API
//! coalesces them); they all get its answer, cached or not.

mod key;
mod redis;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use braid_core::metrics::{Counter, Family, Gauge};
use braid_proto::v1::SearchResponse;

pub use key::{KeyParts, key, normalise_query};
pub use redis::RedisLayer;

use crate::config::QueryCacheConfig;
use crate::error::GatewayError;

/// Why a computed answer was not stored.
enum Uncached {
    // Boxed: a response (with its `why` and explanations inline) dwarfs an error.
    Degraded(Box<SearchResponse>),
    Failed(GatewayError),
}

/// Where this caller's answer came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// In process: stored earlier, or computed by a concurrent identical request.
    Local,
    Redis,
    Computed,
}

pub struct QueryCache {
    local: moka::future::Cache<String, Arc<SearchResponse>>,
    redis: Option<redis::RedisLayer>,
    /// name@revision of the query model, as the embedding service last reported it.
    model: RwLock<Option<Arc<str>>>,
    pub generation_timeout: Duration,
    requests: Family<Counter>,
    redis_ops: RedisOps,
    entries: Gauge,
}

/// `braid_query_cache_redis_total{op,result}`, one handle per combination that happens.
struct RedisOps {
    get_hit: Counter,
    get_miss: Counter,
    get_error: Counter,
    set_ok: Counter,
    set_error: Counter,
}

impl QueryCache {
    /// `None` when `query_cache.enabled` is false.
    pub fn new(
        config: &QueryCacheConfig,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Option<Self>> {
        if !config.enabled {
            return Ok(None);
        }
        let requests = metrics.counter_family(
            "query_cache_requests_total",
            "searches by cache result: hit, redis_hit, miss, uncacheable (degraded or \
             failed), bypass (asked by the client), unavailable (generation unknown)",
            &[(
                "result",
                &[
                    "hit",
                    "redis_hit",
                    "miss",
                    "uncacheable",
                    "bypass",
                    "unavailable",
                ],
            )],
        );
        let redis_op = |op, result| {
            metrics.counter_with(
                "query_cache_redis_total",
                "query cache Redis operations by op (get, set) and result (hit, miss, ok, error)",
                &[("op", op), ("result", result)],
            )
        };
        let redis_ops = RedisOps {
            get_hit: redis_op("get", "hit"),
            get_miss: redis_op("get", "miss"),
            get_error: redis_op("get", "error"),
            set_ok: redis_op("set", "ok"),
            set_error: redis_op("set", "error"),
        };
        let entries = metrics.gauge("query_cache_entries", "answers held in process");
        let redis = if config.redis_url.is_empty() {
            None
        } else {
            Some(redis::RedisLayer::new(config)?)
        };
        Ok(Some(Self {
            local: moka::future::Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(Duration::from_secs(config.ttl_secs))
                .build(),
            redis,
            model: RwLock::new(None),
            generation_timeout: Duration::from_millis(config.generation_timeout_ms),
            requests,
            redis_ops,
            entries,
        }))
    }

    /// The shared layer's Redis pool, when there is one (for the status view).
    pub fn redis_pool(&self) -> Option<braid_proto::v1::PoolStatus> {
        self.redis
            .as_ref()
            .map(|r| r.pool_status("redis:query-cache"))
    }

    pub fn count(&self, result: &str) {
        self.requests.get(&[result]).increment(1);
    }

    pub fn model(&self) -> Option<Arc<str>> {
        self.model.read().ok().and_then(|m| m.clone())
    }

    /// Records the model the embedding service reported.
    pub fn observe_model(&self, model: &str) {
        if self.model().as_deref() == Some(model) {
            return;
        }
        if let Ok(mut m) = self.model.write() {
            *m = Some(model.into());
        }
    }

    /// The answer stored under `key`, or `compute`'s (stored unless degraded). Concurrent
    /// callers with the same key run one `compute`.
    pub async fn get_or_compute<F>(
        &self,
        key: String,
        compute: F,
    ) -> Result<SearchResponse, GatewayError>
    where
        F: Future<Output = Result<SearchResponse, GatewayError>>,
    {
        let mut source = Source::Local;
        let init = async {
            if let Some(redis) = &self.redis {
                match redis.get(&key).await {
                    Ok(Some(found)) => {
                        self.redis_ops.get_hit.increment(1);
                        source = Source::Redis;
                        return Ok(Arc::new(found));
                    }
                    Ok(None) => self.redis_ops.get_miss.increment(1),
                    Err(e) => {
                        tracing::warn!(error = %e, "query cache: redis read failed; computing");
                        self.redis_ops.get_error.increment(1);
                    }
                }
            }
            source = Source::Computed;
            let response = compute.await.map_err(Uncached::Failed)?;
            if response.degraded {
                return Err(Uncached::Degraded(Box::new(response)));
            }
            if let Some(redis) = &self.redis {
                let result = match redis.put(&key, &response).await {
                    Ok(()) => &self.redis_ops.set_ok,
                    Err(e) => {
                        tracing::warn!(error = %e, "query cache: redis write failed");
                        &self.redis_ops.set_error
                    }
                };
                result.increment(1);
            }
            Ok(Arc::new(response))
        };
        let outcome = self.local.entry(key.clone()).or_try_insert_with(init).await;
        self.entries.set(self.local.entry_count() as f64);
        match outcome {
            Ok(entry) => {
                let mut response = SearchResponse::clone(entry.value());
                response.cached = source != Source::Computed;
                self.count(match source {
                    Source::Local => "hit",
                    Source::Redis => "redis_hit",
                    Source::Computed => "miss",
                });
                Ok(response)
            }
            Err(shared) => {
                self.count("uncacheable");
                match &*shared {
                    Uncached::Degraded(response) => Ok(SearchResponse::clone(response)),
                    Uncached::Failed(e) => Err(duplicate(e)),
                }
            }
        }
    }
}

/// A copy of an error shared by coalesced callers.
fn duplicate(e: &GatewayError) -> GatewayError {
    e.clone()
}
