//! The status view of one service process: what `braid.v1.ServiceStatus/Status` answers and
//! the gateway's `Status` shows. The host fills what every service has the same way (health
//! and why, version, uptime, database pools, the `/healthz` detail lines); a service adds its
//! own parts (breakers, caches, queues, indexes) through a hook ([`crate::host::Host::status_hook`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use braid_proto::service_names;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::service_status_server::{ServiceStatus, ServiceStatusServer};
use braid_proto::v1::{
    CacheStatus, PoolStatus, ServiceStatusReport, ServiceStatusRequest, StatusDetail,
};

use crate::health::Health;
use crate::metrics::Metrics;

/// What a service's hook returns: a report with only its own parts filled.
pub type StatusFuture = Pin<Box<dyn Future<Output = ServiceStatusReport> + Send>>;

type Hook = Arc<dyn Fn() -> StatusFuture + Send + Sync>;

/// The crate version, plus " (<commit>)" when `BRAID_GIT_COMMIT` was set at build time.
pub fn version() -> String {
    match option_env!("BRAID_GIT_COMMIT") {
        Some(commit) if !commit.trim().is_empty() => {
            format!("{} ({})", env!("CARGO_PKG_VERSION"), commit.trim())
        }
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The short name a service goes by in the status view ("text-search"), from its gRPC name.
pub fn short_name(service: &str) -> &'static str {
    match service {
        service_names::GATEWAY => "gateway",
        service_names::INGEST => "ingest",
        service_names::EMBEDDING => "embedding",
        service_names::VECTOR_SEARCH => "vector-search",
        service_names::TEXT_SEARCH => "text-search",
        _ => "unknown",
    }
}

/// A cache's hit rate from its counters (0 before the first lookup).
pub fn cache(name: &str, hits: f64, misses: f64) -> CacheStatus {
    let (hits, misses) = (hits.max(0.0) as u64, misses.max(0.0) as u64);
    let total = hits + misses;
    CacheStatus {
        name: name.into(),
        hits,
        misses,
        hit_rate: if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        },
    }
}

/// One service process's status, cheap to clone; made by the host.
#[derive(Clone)]
pub struct StatusSource {
    health: Health,
    metrics: Metrics,
    started: Instant,
    hook: Arc<OnceLock<Hook>>,
}

impl StatusSource {
    pub(crate) fn new(health: Health, metrics: Metrics) -> Self {
        Self {
            health,
            metrics,
            started: Instant::now(),
            hook: Arc::new(OnceLock::new()),
        }
    }

    /// Sets the service's own part; a second hook is ignored (one per service).
    pub(crate) fn set_hook(&self, hook: Hook) {
        if self.hook.set(hook).is_err() {
            tracing::warn!(
                service = self.health.service(),
                "a second status hook was ignored"
            );
        }
    }

    /// The report of this process now.
    pub async fn report(&self) -> ServiceStatusReport {
        let mut report = match self.hook.get() {
            Some(hook) => hook().await,
            None => ServiceStatusReport::default(),
        };
        report.service = short_name(self.health.service()).into();
        report.reachable = true;
        report.serving = self.health.is_serving();
        report.reason = self.health.reason().unwrap_or_default();
        report.version = version();
        report.uptime_seconds = self.started.elapsed().as_secs();
        let pools = self.metrics.pool_samples().into_iter().map(|s| PoolStatus {
            name: "database".into(),
            max: s.max,
            idle: s.idle,
            in_use: s.in_use,
        });
        // The service's own pools (Redis) after the database.
        let own = std::mem::take(&mut report.pools);
        report.pools = pools.chain(own).collect();
        // The `/healthz` lines, then the service's own.
        let own = std::mem::take(&mut report.details);
        report.details = self
            .health
            .details()
            .into_iter()
            .map(|(key, value)| StatusDetail {
                key: key.into(),
                value,
            })
            .chain(own)
            .collect();
        report
    }

    /// The `braid.v1.ServiceStatus` gRPC service answering with [`StatusSource::report`].
    pub(crate) fn service(&self) -> ServiceStatusServer<StatusApi> {
        ServiceStatusServer::new(StatusApi {
            source: self.clone(),
        })
    }
}

/// `braid.v1.ServiceStatus` over a [`StatusSource`].
pub struct StatusApi {
    source: StatusSource,
}

#[tonic::async_trait]
impl ServiceStatus for StatusApi {
    async fn status(
        &self,
        _request: Request<ServiceStatusRequest>,
    ) -> Result<Response<ServiceStatusReport>, Status> {
        Ok(Response::new(self.source.report().await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rates_are_hits_over_lookups_and_zero_before_the_first() {
        let c = cache("query-cache", 3.0, 1.0);
        assert_eq!((c.hits, c.misses), (3, 1));
        assert!((c.hit_rate - 0.75).abs() < 1e-9, "{}", c.hit_rate);
        assert_eq!(cache("x", 0.0, 0.0).hit_rate, 0.0);
    }

    #[tokio::test]
    async fn a_report_says_why_it_is_not_serving_and_carries_the_hook_s_parts() {
        let (health, _server) = crate::health::health(service_names::TEXT_SEARCH);
        let source = StatusSource::new(health.clone(), Metrics::new("text_search"));
        source.set_hook(Arc::new(|| {
            Box::pin(async {
                ServiceStatusReport {
                    caches: vec![cache("c", 1.0, 1.0)],
                    details: vec![StatusDetail {
                        key: "reads".into(),
                        value: "replica (3 ms behind)".into(),
                    }],
                    ..Default::default()
                }
            })
        }));
        let r = source.report().await;
        assert_eq!(r.service, "text-search");
        assert!(r.reachable && !r.serving);
        assert!(r.reason.starts_with("starting"), "{}", r.reason);
        assert_eq!(r.version, version());
        assert_eq!(r.caches.len(), 1);
        // The service's own detail lines follow the `/healthz` ones, not replaced by them.
        health.set_detail("cache_redis", "up");
        let details: Vec<(String, String)> = source
            .report()
            .await
            .details
            .into_iter()
            .map(|d| (d.key, d.value))
            .collect();
        assert_eq!(
            details,
            [
                ("cache_redis".to_string(), "up".to_string()),
                ("reads".to_string(), "replica (3 ms behind)".to_string())
            ]
        );
        health.set_reason(Some("text index fault: disk full".into()));
        assert_eq!(source.report().await.reason, "text index fault: disk full");
        health.set_serving(true).await;
        assert_eq!(source.report().await.reason, "");
    }
}
