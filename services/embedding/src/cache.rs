//! Embedding cache: an in-process L1 (moka) in front of an optional shared Redis L2.
//!
//! Keys are `(model, revision, sha256(text))`, so a changed model never serves stale vectors.
//! The cache is an optimisation only: a Redis error, timeout or missing server counts as a
//! miss (and is logged and counted), never as a failed request. Writes to Redis happen off
//! the request path.

use std::sync::Arc;
use std::time::Duration;

use braid_core::metrics::Counter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `cache.*` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Vectors kept in process memory (0 disables the L1).
    pub l1_entries: u64,
    /// Time to live of a cached vector in both layers.
    pub ttl_secs: u64,
    /// `redis://host:port/db` (`rediss://` for TLS); empty = no shared cache.
    pub redis_url: String,
    /// TLS: PEM file of the CA that signs Redis' certificate; unset = the system trust store.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Connections to Redis (with `redis_url`).
    pub redis_pool_size: usize,
    /// Longest a request waits for Redis before treating it as a miss.
    pub redis_timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            l1_entries: 50_000,
            ttl_secs: 3_600,
            redis_url: String::new(),
            redis_ca_file: None,
            redis_pool_size: 8,
            redis_timeout_ms: 50,
        }
    }
}

impl CacheConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        braid_core::config::positive(errors, "cache.ttl_secs", self.ttl_secs);
        braid_core::config::positive(errors, "cache.redis_timeout_ms", self.redis_timeout_ms);
        braid_core::config::positive(errors, "cache.redis_pool_size", self.redis_pool_size as u64);
        braid_core::redis_pool::validate(
            "cache.redis_url",
            &self.redis_url,
            "cache.redis_ca_file",
            self.redis_ca_file.as_deref(),
            errors,
        );
    }
}

pub type Vector = Arc<Vec<f32>>;

#[derive(Clone)]
pub struct EmbeddingCache {
    l1: Option<moka::future::Cache<String, Vector>>,
    redis: Option<deadpool_redis::Pool>,
    /// `braid:emb:{model}@{revision}:`
    prefix: Arc<str>,
    ttl: Duration,
    redis_timeout: Duration,
    lookups: Arc<Lookups>,
}

/// `braid_embedding_cache_lookups_total{layer,result}`, one handle per combination that happens.
struct Lookups {
    l1_hit: Counter,
    l1_miss: Counter,
    redis_hit: Counter,
    redis_miss: Counter,
    redis_error: Counter,
    redis_write_error: Counter,
}

impl EmbeddingCache {
    pub fn new(
        config: &CacheConfig,
        model: &str,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let ttl = Duration::from_secs(config.ttl_secs);
        let l1 = (config.l1_entries > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.l1_entries)
                .time_to_live(ttl)
                .build()
        });
        let redis = if config.redis_url.is_empty() {
            None
        } else {
            let settings = braid_core::redis_pool::PoolSettings {
                max_size: config.redis_pool_size,
                wait: Duration::from_millis(config.redis_timeout_ms),
                create: Duration::from_millis(config.redis_timeout_ms.max(500)),
                recycle: Duration::from_millis(config.redis_timeout_ms),
            };
            Some(braid_core::redis_pool::pool(
                &config.redis_url,
                config.redis_ca_file.as_deref(),
                settings,
            )?)
        };
        let lookup = |layer, result| {
            metrics.counter_with(
                "embedding_cache_lookups_total",
                "cache lookups by layer (l1, redis) and result (hit, miss, error)",
                &[("layer", layer), ("result", result)],
            )
        };
        let lookups = Arc::new(Lookups {
            l1_hit: lookup("l1", "hit"),
            l1_miss: lookup("l1", "miss"),
            redis_hit: lookup("redis", "hit"),
            redis_miss: lookup("redis", "miss"),
            redis_error: lookup("redis", "error"),
            redis_write_error: lookup("redis", "write_error"),
        });
        Ok(Self {
            l1,
            redis,
            prefix: format!("braid:emb:{model}:").into(),
            ttl,
            redis_timeout: Duration::from_millis(config.redis_timeout_ms),
            lookups,
        })
    }

    pub fn key(&self, text: &str) -> String {
        format!(
            "{}{}",
            self.prefix,
            hex::encode(Sha256::digest(text.as_bytes()))
        )
    }

    /// A key in a namespace of its own under the same model: `int8q` holds query vectors
    /// from the int8 graph (`model.query_quantized`), which must never answer for a document
    /// with the same text.
    pub fn variant_key(&self, variant: &str, text: &str) -> String {
        format!(
            "{}{variant}:{}",
            self.prefix,
            hex::encode(Sha256::digest(text.as_bytes()))
        )
    }

    fn count(counter: &Counter, n: usize) {
        if n > 0 {
            counter.increment(n as u64);
        }
    }

    /// One entry per key: the cached vector or `None`.
    pub async fn get_many(&self, keys: &[String]) -> Vec<Option<Vector>> {
        let mut found: Vec<Option<Vector>> = vec![None; keys.len()];
        if let Some(l1) = &self.l1 {
            for (slot, key) in found.iter_mut().zip(keys) {
                *slot = l1.get(key).await;
            }
            let hits = found.iter().filter(|v| v.is_some()).count();
            Self::count(&self.lookups.l1_hit, hits);
            Self::count(&self.lookups.l1_miss, keys.len() - hits);
        }
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() || self.redis.is_none() {
            return found;
        }
        let wanted: Vec<&str> = missing.iter().map(|&i| keys[i].as_str()).collect();
        match tokio::time::timeout(self.redis_timeout, self.redis_mget(&wanted)).await {
            Ok(Ok(values)) => {
                let mut hits = 0;
                for (&i, raw) in missing.iter().zip(values) {
                    if let Some(vector) = raw.and_then(|b| decode(&b)) {
                        hits += 1;
                        if let Some(l1) = &self.l1 {
                            l1.insert(keys[i].clone(), vector.clone()).await;
                        }
                        found[i] = Some(vector);
                    }
                }
                Self::count(&self.lookups.redis_hit, hits);
                Self::count(&self.lookups.redis_miss, missing.len() - hits);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "embedding cache: redis read failed; embedding instead");
                Self::count(&self.lookups.redis_error, missing.len());
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.redis_timeout, "embedding cache: redis read timed out; embedding instead");
                Self::count(&self.lookups.redis_error, missing.len());
            }
        }
        found
    }

    async fn redis_mget(&self, keys: &[&str]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        let pool = self.redis.as_ref().expect("checked by caller");
        let mut conn = pool.get().await?;
        // MGET of one key returns a bulk string, not an array: ask for each key in a pipeline.
        let mut pipe = deadpool_redis::redis::pipe();
        for key in keys {
            pipe.get(*key);
        }
        Ok(pipe.query_async(&mut conn).await?)
    }

    /// Stores freshly computed vectors: L1 now, Redis in the background.
    pub async fn put_many(&self, entries: Vec<(String, Vector)>) {
        if entries.is_empty() {
            return;
        }
        if let Some(l1) = &self.l1 {
            for (key, vector) in &entries {
                l1.insert(key.clone(), vector.clone()).await;
            }
        }
        let Some(pool) = self.redis.clone() else {
            return;
        };
        let (ttl, timeout, lookups) =
            (self.ttl.as_secs(), self.redis_timeout, self.lookups.clone());
        tokio::spawn(async move {
            let write = async {
                let mut conn = pool.get().await?;
                let mut pipe = deadpool_redis::redis::pipe();
                for (key, vector) in &entries {
                    pipe.set_ex(key, encode(vector), ttl).ignore();
                }
                pipe.query_async::<()>(&mut conn).await?;
                anyhow::Ok(())
            };
            match tokio::time::timeout(timeout * 4, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "embedding cache: redis write failed");
                    lookups.redis_write_error.increment(1);
                }
                Err(_) => {
                    lookups.redis_write_error.increment(1);
                }
            }
        });
    }

    /// Whether Redis answers a PING (for health details; never gates serving).
    /// The Redis pool's use now, when there is one (for the status view).
    pub fn redis_pool(&self) -> Option<braid_proto::v1::PoolStatus> {
        let pool = self.redis.as_ref()?;
        Some(braid_core::redis_pool::status(
            "redis:embedding-cache",
            pool,
        ))
    }

    pub async fn redis_reachable(&self) -> Option<bool> {
        let pool = self.redis.as_ref()?;
        let ping = async {
            let mut conn = pool.get().await?;
            let _: String = deadpool_redis::redis::cmd("PING")
                .query_async(&mut conn)
                .await?;
            anyhow::Ok(())
        };
        Some(matches!(
            tokio::time::timeout(self.redis_timeout * 4, ping).await,
            Ok(Ok(()))
        ))
    }
}

fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Option<Vector> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(Arc::new(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_the_redis_encoding() {
        let v = vec![0.25f32, -1.5, 3.0e-7, f32::MIN_POSITIVE];
        assert_eq!(*decode(&encode(&v)).unwrap(), v);
        assert!(decode(&[1, 2, 3]).is_none());
        assert!(decode(&[]).is_none());
    }

    #[test]
    fn keys_depend_on_model_and_text() {
        let metrics = braid_core::metrics::Metrics::new("cache_test");
        let config = CacheConfig::default();
        let a = EmbeddingCache::new(&config, "m@1", &metrics).unwrap();
        let b = EmbeddingCache::new(
            &config,
            "m@2",
            &braid_core::metrics::Metrics::new("cache_test2"),
        )
        .unwrap();
        assert_ne!(a.key("x"), a.key("y"));
        assert_ne!(a.key("x"), b.key("x"));
        assert!(a.key("x").starts_with("braid:emb:m@1:"));
        let q = a.variant_key("int8q", "x");
        assert_ne!(q, a.key("x"));
        assert!(q.starts_with("braid:emb:m@1:int8q:"), "{q}");
    }
}
