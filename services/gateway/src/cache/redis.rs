//! The shared layer: answers stored in Redis (prost-encoded) so gateway replicas share them
//! (the query cache's answers under `braid:q:`, page snapshots under `braid:p:`). Every call
//! is bounded by a timeout; an error or timeout is reported to the caller as `Err`, which the
//! query cache treats as a miss (read) or a skipped store (write).

use std::time::Duration;

use braid_proto::prost::Message;
use braid_proto::v1::SearchResponse;

use crate::config::QueryCacheConfig;

pub struct RedisLayer {
    pool: deadpool_redis::Pool,
    timeout: Duration,
    prefix: &'static str,
    ttl: Duration,
}

impl RedisLayer {
    /// The query cache's layer: answers under `braid:q:`, for `query_cache.ttl_secs`.
    pub fn new(config: &QueryCacheConfig) -> anyhow::Result<Self> {
        Self::with(config, "braid:q:", Duration::from_secs(config.ttl_secs))
    }

    /// A layer on the query cache's Redis storing entries under `prefix` for `ttl`.
    pub fn with(
        config: &QueryCacheConfig,
        prefix: &'static str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let settings = braid_core::redis_pool::PoolSettings {
            max_size: config.redis_pool_size,
            wait: timeout,
            create: timeout,
            recycle: timeout,
        };
        Ok(Self {
            pool: braid_core::redis_pool::pool(
                &config.redis_url,
                config.redis_ca_file.as_deref(),
                settings,
            )?,
            timeout,
            prefix,
            ttl,
        })
    }

    /// This layer's connection pool for the status view, under `name`.
    pub fn pool_status(&self, name: &str) -> braid_proto::v1::PoolStatus {
        braid_core::redis_pool::status(name, &self.pool)
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<SearchResponse>> {
        let read = async {
            let mut conn = self.pool.get().await?;
            let raw: Option<Vec<u8>> = deadpool_redis::redis::cmd("GET")
                .arg(format!("{}{key}", self.prefix))
                .query_async(&mut conn)
                .await?;
            anyhow::Ok(raw)
        };
        let raw = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {:?}", self.timeout))??;
        // An undecodable entry (another version's format) is a miss, not an error.
        Ok(raw.and_then(|b| SearchResponse::decode(b.as_slice()).ok()))
    }

    pub async fn put(&self, key: &str, response: &SearchResponse) -> anyhow::Result<()> {
        let write = async {
            let mut conn = self.pool.get().await?;
            deadpool_redis::redis::cmd("SET")
                .arg(format!("{}{key}", self.prefix))
                .arg(response.encode_to_vec())
                .arg("PX")
                .arg(self.ttl.as_millis().max(1) as u64)
                .query_async::<()>(&mut conn)
                .await?;
            anyhow::Ok(())
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {:?}", self.timeout))?
    }
}
