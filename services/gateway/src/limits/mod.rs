//! Fair limits: a budget per peer address checked before authentication; after it, rate
//! budgets per subject and tenant (`rate`) charged by what a call costs (`cost`), for the
//! tenant the call acts in once that is checked (`admission`); caps on concurrent long calls
//! per subject (`long_calls`), an idle timeout and size budget on IngestStream (`stream`),
//! and caps on request list fields (`fields`).

pub mod admission;
pub mod config;
pub mod cost;
pub mod fields;
mod long_calls;
mod rate;
mod redis_gcra;
pub mod stream;

use std::net::IpAddr;
use std::time::Duration;

use braid_core::metrics::Counter;

pub use long_calls::LongCallPermit;
pub use rate::Class;

use crate::error::GatewayError;
use config::LimitsConfig;
use long_calls::{LongCallRefused, LongCalls};
use rate::{LocalBudget, RateLimits, RateMetrics, TokioClock};

pub struct Limits {
    pub config: LimitsConfig,
    rate: RateLimits,
    long_calls: LongCalls,
    /// `limits.per_peer`, keyed by IP address (in this process).
    peers: LocalBudget,
    peer_refused: Counter,
    /// IngestStream documents that waited for the ingest budget.
    stream_waits: Counter,
}

impl Limits {
    pub fn new(
        config: &LimitsConfig,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let redis = if config.redis_url.is_empty() {
            None
        } else {
            Some(redis_gcra::RedisGcra::new(
                &config.redis_url,
                config.redis_ca_file.as_deref(),
                Duration::from_millis(config.redis_timeout_ms),
            )?)
        };
        let rate = RateLimits::new(config, redis, &RateMetrics::new(metrics)?);
        let in_flight = metrics.gauge(
            "gateway_long_calls_in_flight",
            "long calls (WaitIndexed, IngestStream, waiting Ingest) in flight",
        );
        Ok(Self {
            config: config.clone(),
            rate,
            long_calls: LongCalls::new(
                config.long_calls.per_subject,
                config.long_calls.max_tracked_subjects,
                in_flight,
            ),
            peers: LocalBudget::new(config.per_peer, config.max_tracked_keys, TokioClock::new()),
            peer_refused: metrics.counter(
                "gateway_peer_limited_total",
                "calls refused by the per-peer budget before authentication",
            ),
            stream_waits: metrics.counter(
                "gateway_ingest_stream_budget_waits_total",
                "IngestStream documents that waited for the ingest budget",
            ),
        })
    }

    /// Takes one call from the budget of the peer at `ip`, before its credential is read.
    /// The shared limiter's Redis pool, when limits are shared (for the status view).
    pub fn redis_pool(&self) -> Option<braid_proto::v1::PoolStatus> {
        self.rate.redis_pool()
    }

    pub fn check_peer(&self, ip: IpAddr) -> Result<(), GatewayError> {
        let (outcome, _) = self.peers.check(&ip.to_string(), 1);
        outcome.map_err(|retry_after| {
            self.peer_refused.increment(1);
            GatewayError::RateLimited {
                class: "call",
                scope: "peer address",
                retry_after,
            }
        })
    }

    /// Takes `tokens` of `class` from the subject's budget and, when `tenant` is set, from
    /// that tenant's. The tenant must have been checked ([`admission::resolve_tenant`]).
    pub async fn charge(
        &self,
        class: Class,
        subject: &str,
        tenant: Option<&str>,
        tokens: u32,
    ) -> Result<(), GatewayError> {
        self.rate
            .check(class, subject, tenant, tokens)
            .await
            .map_err(|over| GatewayError::RateLimited {
                class: over.class.as_str(),
                scope: over.scope.as_str(),
                retry_after: over.retry_after,
            })
    }

    /// Like [`Limits::charge`], waiting while the budgets are used up (IngestStream documents:
    /// the upload slows down to the budget instead of failing).
    pub async fn charge_waiting(
        &self,
        class: Class,
        subject: &str,
        tenant: Option<&str>,
        tokens: u32,
    ) {
        loop {
            match self.rate.check(class, subject, tenant, tokens).await {
                Ok(()) => return,
                Err(over) => {
                    self.stream_waits.increment(1);
                    tokio::time::sleep(over.retry_after.max(Duration::from_millis(1))).await;
                }
            }
        }
    }

    /// A slot for one long call of the caller, refused at once when it holds its cap.
    pub fn long_call(
        &self,
        caller: &braid_core::auth::Principal,
    ) -> Result<LongCallPermit, GatewayError> {
        self.long_calls
            .acquire(&caller.subject)
            .map_err(|refused| match refused {
                LongCallRefused::PerSubject(n) => GatewayError::TooManyLongCalls(format!(
                    "at most {n} concurrent long calls (WaitIndexed, IngestStream, waiting Ingest) per caller (limits.long_calls.per_subject)"
                )),
                LongCallRefused::TooManySubjects(n) => GatewayError::TooManyLongCalls(format!(
                    "{n} callers hold long calls already (limits.long_calls.max_tracked_subjects)"
                )),
            })
    }
}
