//! The search metrics (per-leg latency and queueing, degraded answers) and the bounded
//! concurrency of each leg.

use std::sync::Arc;

use braid_core::metrics::{Counter, Family, Gauge, Histogram};
use tokio::sync::Semaphore;

use crate::config::SearchConfig;

pub struct SearchMetrics {
    pub(super) leg_latency: Family<Histogram>,
    pub(super) degraded: Family<Counter>,
    pub(super) leg_queued: Family<Gauge>,
}

/// The `leg` label values.
const LEGS: &[&str] = &["vector", "text"];

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
        Ok(Self {
            leg_latency,
            degraded,
            leg_queued,
        })
    }
}
