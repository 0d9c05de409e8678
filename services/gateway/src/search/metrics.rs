//! The search metrics (per-leg latency and queueing, degraded answers) and the bounded
//! concurrency of each leg.

use std::sync::Arc;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::Semaphore;

use crate::config::SearchConfig;

pub struct SearchMetrics {
    pub(super) leg_latency: HistogramVec,
    pub(super) degraded: IntCounterVec,
    pub(super) leg_queued: IntGaugeVec,
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
        let leg_latency = HistogramVec::new(
            HistogramOpts::new("search_leg_duration_seconds", "latency of each search leg")
                .buckets(braid_core::metrics::latency_buckets()),
            &["leg", "outcome"],
        )?;
        let degraded = IntCounterVec::new(
            Opts::new("search_degraded_total", "searches answered without one leg"),
            &["leg"],
        )?;
        let leg_queued = IntGaugeVec::new(
            Opts::new(
                "search_leg_queued",
                "leg calls waiting for one of the leg's concurrency slots",
            ),
            &["leg"],
        )?;
        metrics.register(Box::new(leg_latency.clone()));
        metrics.register(Box::new(degraded.clone()));
        metrics.register(Box::new(leg_queued.clone()));
        Ok(Self {
            leg_latency,
            degraded,
            leg_queued,
        })
    }
}
