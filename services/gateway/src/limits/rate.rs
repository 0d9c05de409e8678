//! GCRA rate budgets keyed by subject and by tenant, one pair per class of RPCs: in this
//! process with `governor`, or shared between replicas through Redis (`redis_gcra.rs`) with
//! the local limiter deciding whenever Redis does not answer in time.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use braid_core::metrics::{Counter, Family};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::config::{Budget, ClassBudget, LimitsConfig};
use super::redis_gcra::RedisGcra;

/// The budget classes: every Gateway RPC belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Search,
    Ingest,
    Admin,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Search => "search",
            Class::Ingest => "ingest",
            Class::Admin => "admin",
        }
    }
}

/// Whose budget: the calling subject's or its tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Subject,
    Tenant,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Subject => "subject",
            Scope::Tenant => "tenant",
        }
    }
}

/// A refused call: which budget ran out and when the next call fits.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub class: Class,
    pub scope: Scope,
    pub retry_after: Duration,
}

/// Governor's clock on tokio time: real time in production, paused time in tests.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

type Keyed = RateLimiter<String, DashMapStateStore<String>, TokioClock, NoOpMiddleware<Nanos>>;

/// Key used by every new caller once `max_tracked_keys` callers are tracked and none is idle.
const OVERFLOW_KEY: &str = "\u{0}overflow";

/// One budget in this process, holding at most `max_keys` keys.
pub(super) struct LocalBudget {
    limiter: Keyed,
    clock: TokioClock,
    max_keys: usize,
    burst: u32,
    period: Duration,
}

impl LocalBudget {
    pub(super) fn new(budget: Budget, max_keys: usize, clock: TokioClock) -> Self {
        let (quota, period) = quota(budget);
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            max_keys,
            burst: quota.burst_size().get(),
            period,
        }
    }

    /// Takes `tokens` (at most the burst: a call costing more than the whole burst still fits
    /// into a full bucket): `Ok(())` or the wait until they fit; `overflowed` when the key had
    /// no room.
    pub(super) fn check(&self, key: &str, tokens: u32) -> (Result<(), Duration>, bool) {
        let mut key = key.to_string();
        let mut overflowed = false;
        if self.limiter.len() >= self.max_keys {
            // Idle keys hold no state worth keeping: a fresh bucket is the same.
            self.limiter.retain_recent();
            if self.limiter.len() >= self.max_keys {
                key = OVERFLOW_KEY.to_string();
                overflowed = true;
            }
        }
        let n = NonZeroU32::new(tokens.clamp(1, self.burst)).unwrap_or(NonZeroU32::MIN);
        let outcome = match self.limiter.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            // Not reached (n <= burst); a full bucket's refill time is the honest answer.
            Err(_) => Err(self.period * self.burst),
        };
        (outcome, overflowed)
    }
}

/// The quota of a budget and the time one token takes to come back.
fn quota(budget: Budget) -> (Quota, Duration) {
    // Validated positive; the clamps only keep odd values from panicking.
    let period = Duration::from_secs_f64(1.0 / budget.rate_per_second.max(1e-9))
        .max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(budget.burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    (quota, quota.replenish_interval())
}

/// The six budgets (3 classes x subject/tenant).
pub struct RateLimits {
    local: [[LocalBudget; 2]; 3],
    budgets: [[Budget; 2]; 3],
    redis: Option<RedisGcra>,
    /// Redis checks the local limiter answered instead, by reason (closed set).
    fallback: Arc<Family<Counter>>,
    /// Calls refused, by class and scope.
    refused: [[Counter; 2]; 3],
    overflow: [Counter; 3],
}

impl RateLimits {
    /// The shared limiter's Redis pool, when limits are shared (for the status view).
    pub fn redis_pool(&self) -> Option<braid_proto::v1::PoolStatus> {
        self.redis.as_ref().map(RedisGcra::pool_status)
    }

    pub fn new(config: &LimitsConfig, redis: Option<RedisGcra>, metrics: &RateMetrics) -> Self {
        let clock = TokioClock::new();
        let pair = |c: &ClassBudget| {
            [
                LocalBudget::new(c.per_subject, config.max_tracked_keys, clock.clone()),
                LocalBudget::new(c.per_tenant, config.max_tracked_keys, clock.clone()),
            ]
        };
        let budgets = |c: &ClassBudget| [c.per_subject, c.per_tenant];
        Self {
            local: [
                pair(&config.search),
                pair(&config.ingest),
                pair(&config.admin),
            ],
            budgets: [
                budgets(&config.search),
                budgets(&config.ingest),
                budgets(&config.admin),
            ],
            redis,
            fallback: metrics.fallback.clone(),
            refused: metrics.refused.clone(),
            overflow: metrics.overflow.clone(),
        }
    }

    /// Takes `tokens` from the caller's budget, then from its tenant's (`None`: a call that
    /// acts in no one tenant, charged to the caller only).
    pub async fn check(
        &self,
        class: Class,
        subject: &str,
        tenant: Option<&str>,
        tokens: u32,
    ) -> Result<(), OverBudget> {
        let scopes = [(Scope::Subject, Some(subject)), (Scope::Tenant, tenant)];
        for (scope, key) in scopes {
            let Some(key) = key else { continue };
            if let Err(retry_after) = self.check_one(class, scope, key, tokens).await {
                self.refused[class as usize][scope as usize].increment(1);
                return Err(OverBudget {
                    class,
                    scope,
                    retry_after,
                });
            }
        }
        Ok(())
    }

    async fn check_one(
        &self,
        class: Class,
        scope: Scope,
        key: &str,
        tokens: u32,
    ) -> Result<(), Duration> {
        let (c, s) = (class as usize, scope as usize);
        if let Some(redis) = &self.redis {
            let redis_key = format!("{}:{}:{key}", class.as_str(), scope.as_str());
            match redis.check(&redis_key, self.budgets[c][s], tokens).await {
                Ok(outcome) => return outcome,
                Err(reason) => self.fallback.get(&[reason]).increment(1),
            }
        }
        let (outcome, overflowed) = self.local[c][s].check(key, tokens);
        if overflowed {
            self.overflow[class as usize].increment(1);
        }
        outcome
    }
}

/// The rate limiter's metrics, registered once per gateway.
pub struct RateMetrics {
    fallback: Arc<Family<Counter>>,
    refused: [[Counter; 2]; 3],
    overflow: [Counter; 3],
}

impl RateMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> anyhow::Result<Self> {
        const CLASSES: [Class; 3] = [Class::Search, Class::Ingest, Class::Admin];
        let fallback = metrics.counter_family(
            "gateway_rate_limit_local_fallback_total",
            "rate checks decided locally because Redis did not answer (timeout, error)",
            &[("reason", &["timeout", "error"])],
        );
        let refused = CLASSES.map(|class| {
            [Scope::Subject, Scope::Tenant].map(|scope| {
                metrics.counter_with(
                    "gateway_rate_limited_total",
                    "calls refused by a rate budget, by class and scope",
                    &[("class", class.as_str()), ("scope", scope.as_str())],
                )
            })
        });
        let overflow = CLASSES.map(|class| {
            metrics.counter_with(
                "gateway_rate_limit_key_overflow_total",
                "rate checks put on the shared overflow key because max_tracked_keys was reached",
                &[("class", class.as_str())],
            )
        });
        Ok(Self {
            fallback: Arc::new(fallback),
            refused,
            overflow,
        })
    }

    #[cfg(test)]
    pub fn for_tests() -> Self {
        Self::new(&braid_core::metrics::Metrics::new("test")).expect("static metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subject: Budget, tenant: Budget, max_keys: usize) -> LimitsConfig {
        LimitsConfig {
            search: ClassBudget {
                per_subject: subject,
                per_tenant: tenant,
            },
            max_tracked_keys: max_keys,
            ..LimitsConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn subjects_have_separate_budgets_and_recover() {
        let metrics = RateMetrics::for_tests();
        let limits = RateLimits::new(
            &config(Budget::new(1.0, 2), Budget::new(1000.0, 1000), 100),
            None,
            &metrics,
        );
        assert!(
            limits
                .check(Class::Search, "alice", Some("acme"), 1)
                .await
                .is_ok()
        );
        assert!(
            limits
                .check(Class::Search, "alice", Some("acme"), 1)
                .await
                .is_ok()
        );
        let over = limits
            .check(Class::Search, "alice", Some("acme"), 1)
            .await
            .unwrap_err();
        assert_eq!(over.scope, Scope::Subject);
        assert!(over.retry_after > Duration::ZERO && over.retry_after <= Duration::from_secs(1));
        // Bob, same tenant, still has his whole budget.
        assert!(
            limits
                .check(Class::Search, "bob", Some("acme"), 1)
                .await
                .is_ok()
        );
        // Another class is a separate budget.
        assert!(
            limits
                .check(Class::Ingest, "alice", Some("acme"), 1)
                .await
                .is_ok()
        );
        tokio::time::advance(over.retry_after).await;
        assert!(
            limits
                .check(Class::Search, "alice", Some("acme"), 1)
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_budget_caps_all_its_subjects() {
        let metrics = RateMetrics::for_tests();
        let limits = RateLimits::new(
            &config(Budget::new(1000.0, 1000), Budget::new(1.0, 3), 100),
            None,
            &metrics,
        );
        for subject in ["a", "b", "c"] {
            assert!(
                limits
                    .check(Class::Search, subject, Some("acme"), 1)
                    .await
                    .is_ok()
            );
        }
        let over = limits
            .check(Class::Search, "d", Some("acme"), 1)
            .await
            .unwrap_err();
        assert_eq!(over.scope, Scope::Tenant);
        // Another tenant is not affected.
        assert!(
            limits
                .check(Class::Search, "d", Some("other"), 1)
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_cost_their_tokens_up_to_the_burst() {
        let metrics = RateMetrics::for_tests();
        let limits = RateLimits::new(
            &config(Budget::new(1.0, 10), Budget::new(1000.0, 1000), 100),
            None,
            &metrics,
        );
        // A 4-token call and a 6-token call empty a burst of 10...
        assert!(limits.check(Class::Search, "a", Some("t"), 4).await.is_ok());
        assert!(limits.check(Class::Search, "a", Some("t"), 6).await.is_ok());
        let over = limits
            .check(Class::Search, "a", Some("t"), 1)
            .await
            .unwrap_err();
        assert_eq!(over.scope, Scope::Subject);
        // ...and a call costing more than the burst takes a full bucket, no more.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            limits
                .check(Class::Search, "a", Some("t"), 50)
                .await
                .is_ok()
        );
        let over = limits
            .check(Class::Search, "a", Some("t"), 1)
            .await
            .unwrap_err();
        assert!(over.retry_after <= Duration::from_secs(1));
        // No tenant: the caller's budget only.
        assert!(limits.check(Class::Search, "b", None, 1).await.is_ok());
        assert_eq!(
            limits.local[0][1].limiter.len(),
            1,
            "only tenant t is tracked"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tracked_keys_are_bounded() {
        let metrics = RateMetrics::for_tests();
        let limits = RateLimits::new(
            &config(Budget::new(1.0, 1), Budget::new(1000.0, 1000), 2),
            None,
            &metrics,
        );
        assert!(limits.check(Class::Search, "a", Some("t"), 1).await.is_ok());
        assert!(limits.check(Class::Search, "b", Some("t"), 1).await.is_ok());
        // No room and nobody idle: newcomers share the overflow budget.
        assert!(limits.check(Class::Search, "c", Some("t"), 1).await.is_ok());
        assert!(
            limits
                .check(Class::Search, "d", Some("t"), 1)
                .await
                .is_err()
        );
        assert!(limits.local[0][0].limiter.len() <= 3);
        // Once a and b are idle their entries are evicted to make room.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(limits.check(Class::Search, "e", Some("t"), 1).await.is_ok());
        assert!(limits.local[0][0].limiter.len() <= 2);
    }
}
