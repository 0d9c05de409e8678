//! The GCRA shared between gateway replicas: one Lua script run atomically in Redis
//! (EVALSHA, loaded on first use), keyed `braid:rl:<class>:<scope>:<key>`, using Redis's
//! own clock so replicas with skewed clocks agree.

use std::time::Duration;

use redis::Script;

use super::config::Budget;

/// Takes ARGV[3] tokens (at most the burst ARGV[2]; one token comes back every ARGV[1] µs):
/// returns 0 when they fit (and takes them), else the wait in microseconds until they would.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = math.min(math.max(tonumber(ARGV[3]), 1), burst)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * n
local allow_at = new_tat - interval * burst
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

pub struct RedisGcra {
    pool: deadpool_redis::Pool,
    script: Script,
    timeout: Duration,
}

impl RedisGcra {
    /// A lazily connecting pool: a Redis that is down at start-up only means local decisions.
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let settings = braid_core::redis_pool::PoolSettings {
            max_size: 16,
            wait: timeout,
            create: timeout.max(Duration::from_millis(500)),
            recycle: timeout,
        };
        Ok(Self {
            pool: braid_core::redis_pool::pool(url, ca_file, settings)?,
            script: Script::new(GCRA_LUA),
            timeout,
        })
    }

    /// The limiter's connection pool for the status view.
    pub fn pool_status(&self) -> braid_proto::v1::PoolStatus {
        braid_core::redis_pool::status("redis:rate-limits", &self.pool)
    }

    /// `Ok(outcome)` when Redis decided; `Err(reason)` (a metric label) when it could not.
    pub async fn check(
        &self,
        key: &str,
        budget: Budget,
        tokens: u32,
    ) -> Result<Result<(), Duration>, &'static str> {
        let interval_us = ((1_000_000.0 / budget.rate_per_second).ceil() as u64).max(1);
        let call = async {
            let mut conn = self.pool.get().await.map_err(|_| "error")?;
            let wait_us: u64 = self
                .script
                .key(format!("braid:rl:{key}"))
                .arg(interval_us)
                .arg(budget.burst)
                .arg(tokens.max(1))
                .invoke_async(&mut conn)
                .await
                .map_err(|_| "error")?;
            Ok(if wait_us == 0 {
                Ok(())
            } else {
                Err(Duration::from_micros(wait_us))
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err("timeout"),
        }
    }
}
