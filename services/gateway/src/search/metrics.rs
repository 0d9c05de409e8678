//! The search metrics (searches by mode and result count, per-leg latency and queueing,
//! degraded answers) and the bounded concurrency of each leg.

use std::sync::Arc;

use braid_core::metrics::{Counter, Family, Gauge, Histogram};
use tokio::sync::Semaphore;

use crate::config::SearchConfig;

pub struct SearchMetrics {
    pub(super) leg_latency: Family<Histogram>,
    pub(super) degraded: Family<Counter>,
    pub(super) leg_queued: Family<Gauge>,
    /// `search_requests_total{mode, results}`.
    requests: Family<Counter>,
    /// `search_duration_seconds{mode}`.
    duration: Family<Histogram>,
}

/// The `leg` label values.
const LEGS: &[&str] = &["vector", "text"];

/// The `mode` label values.
const MODES: &[&str] = &["hybrid", "vector", "text"];

/// The `results` label values: how many hits the answer (the page) held, in three buckets,
/// or `error` for a search that failed.
const RESULTS: &[&str] = &["0", "1-9", "10+", "error"];

/// The `results` bucket of an answer with `hits` hits (`None`: the search failed).
pub fn results_bucket(hits: Option<usize>) -> &'static str {
    match hits {
        None => "error",
        Some(0) => "0",
        Some(1..=9) => "1-9",
        Some(_) => "10+",
    }
}

/// The bounded concurrency of each leg (FIFO: tokio's semaphore is fair).
pub struct LegLimits {
    pub(super) vector: Arc<Semaphore>,
    pub(super) text: Arc<Semaphore>,
}

impl LegLimits {
    pub fn new(config: &SearchConfig) -> Self {
        Self {
            vector: Arc::new(Semaphore::new(config.leg_concurrency)),
            text: Arc::new(Semaphore::new(config.leg_concurrency)),
        }
    }
}

impl SearchMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> anyhow::Result<Self> {
        let leg_latency = metrics.histogram_family(
            "search_leg_duration_seconds",
            "latency of each search leg",
            &[("leg", LEGS), ("outcome", &["ok", "error"])],
            &braid_core::metrics::latency_buckets(),
        );
        let degraded = metrics.counter_family(
            "search_degraded_total",
            "searches answered without one leg",
            &[("leg", LEGS)],
        );
        let leg_queued = metrics.gauge_family(
            "search_leg_queued",
            "leg calls waiting for one of the leg's concurrency slots",
            &[("leg", LEGS)],
        );
        let requests = metrics.counter_family(
            "search_requests_total",
            "searches by mode (hybrid, vector, text) and hits in the answer (0, 1-9, 10+, \
             error)",
            &[("mode", MODES), ("results", RESULTS)],
        );
        let duration = metrics.histogram_family(
            "search_duration_seconds",
            "latency of a whole search (validated, from cache or legs, fused, paged) by mode",
            &[("mode", MODES)],
            &braid_core::metrics::latency_buckets(),
        );
        Ok(Self {
            leg_latency,
            degraded,
            leg_queued,
            requests,
            duration,
        })
    }

    /// Counts one search in `mode` ("hybrid", "vector" or "text") that took `took` and
    /// answered `hits` hits (`None`: it failed).
    pub fn record_search(
        &self,
        mode: &'static str,
        took: std::time::Duration,
        hits: Option<usize>,
    ) {
        self.requests
            .get(&[mode, results_bucket(hits)])
            .increment(1);
        self.duration.get(&[mode]).record(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_are_counted_by_mode_and_result_bucket() {
        let m = braid_core::metrics::Metrics::new("gateway");
        let s = SearchMetrics::new(&m).unwrap();
        s.record_search("text", std::time::Duration::from_millis(3), Some(0));
        s.record_search("text", std::time::Duration::from_millis(3), Some(12));
        s.record_search("hybrid", std::time::Duration::from_millis(3), Some(9));
        s.record_search("vector", std::time::Duration::from_millis(3), None);
        let count = |mode, results| {
            m.value(
                "braid_search_requests_total",
                &[("mode", mode), ("results", results)],
            )
        };
        assert_eq!(count("text", "0"), Some(1.0));
        assert_eq!(count("text", "10+"), Some(1.0));
        assert_eq!(count("hybrid", "1-9"), Some(1.0));
        assert_eq!(count("vector", "error"), Some(1.0));
        assert_eq!(count("hybrid", "0"), Some(0.0));
        let buckets: Vec<_> = [Some(0), Some(1), Some(9), Some(10), None]
            .into_iter()
            .map(results_bucket)
            .collect();
        assert_eq!(buckets, ["0", "1-9", "1-9", "10+", "error"]);
    }
}
