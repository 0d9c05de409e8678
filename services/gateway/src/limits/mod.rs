//! Fair limits per caller: rate budgets per subject and tenant (`rate`), caps on concurrent
//! long calls per subject (`long_calls`), an idle timeout and size budget on IngestStream
//! (`stream`), and caps on request list fields (`fields`).

pub mod config;
pub mod fields;
mod long_calls;
mod rate;
mod redis_gcra;
pub mod stream;

use std::time::Duration;

use braid_core::auth::Principal;

pub use long_calls::LongCallPermit;
pub use rate::Class;

use crate::error::GatewayError;
use config::LimitsConfig;
use long_calls::{LongCallRefused, LongCalls};
use rate::{RateLimits, RateMetrics};

pub struct Limits {
    pub config: LimitsConfig,
    rate: RateLimits,
    long_calls: LongCalls,
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
        })
    }

    /// Takes one call of `class` from the caller's and its tenant's budgets.
    pub async fn admit(
        &self,
        class: Class,
        caller: &Principal,
        requested_tenant: &str,
    ) -> Result<(), GatewayError> {
        // A request naming a tenant the caller may not use is refused by authorization; its
        // budget is still the one of the tenant it named.
        let tenant = caller
            .tenant_for(requested_tenant)
            .unwrap_or_else(|_| requested_tenant.to_string());
        self.rate
            .check(class, &caller.subject, &tenant)
            .await
            .map_err(|over| GatewayError::RateLimited {
                class: over.class.as_str(),
                scope: over.scope.as_str(),
                retry_after: over.retry_after,
            })
    }

    /// A slot for one long call of the caller, refused at once when it holds its cap.
    pub fn long_call(&self, caller: &Principal) -> Result<LongCallPermit, GatewayError> {
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
