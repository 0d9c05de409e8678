//! Prometheus metrics: one registry per service instance, with the gRPC request metrics every
//! server records; services register their own collectors into the same registry.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Cheap to clone; all clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub grpc_requests: IntCounterVec,
    pub grpc_latency: HistogramVec,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let labels =
            std::collections::HashMap::from([("service".to_string(), service.to_string())]);
        let registry = Registry::new_custom(Some("braid".into()), Some(labels))
            .expect("static registry prefix is valid");
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "grpc_requests_total",
                "gRPC requests handled, by method and status code",
            ),
            &["method", "code"],
        )
        .expect("static metric definition is valid");
        let grpc_latency = HistogramVec::new(
            HistogramOpts::new("grpc_request_duration_seconds", "gRPC request latency")
                .buckets(latency_buckets()),
            &["method"],
        )
        .expect("static metric definition is valid");
        let metrics = Self {
            registry,
            grpc_requests,
            grpc_latency,
        };
        metrics.register(Box::new(metrics.grpc_requests.clone()));
        metrics.register(Box::new(metrics.grpc_latency.clone()));
        metrics
    }

    /// Registers a collector; a duplicate registration is a programming error and panics.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(collector)
            .expect("metric registered twice");
    }

    /// Text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Buckets from 0.5 ms to 30 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

/// One reading of a connection pool, taken when `/metrics` is scraped.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolSample {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// `braid_db_pool_connections{state="in_use"|"idle"}` and `braid_db_pool_max_connections`,
/// read from the pool at scrape time (no background task, never stale).
struct PoolCollector<F> {
    connections: prometheus::IntGaugeVec,
    max: prometheus::IntGauge,
    sample: F,
}

impl<F: Fn() -> PoolSample + Send + Sync> prometheus::core::Collector for PoolCollector<F> {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.connections.desc();
        descs.extend(self.max.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let s = (self.sample)();
        self.connections
            .with_label_values(&["in_use"])
            .set(i64::from(s.in_use));
        self.connections
            .with_label_values(&["idle"])
            .set(i64::from(s.idle));
        self.max.set(i64::from(s.max));
        let mut families = self.connections.collect();
        families.extend(self.max.collect());
        families
    }
}

impl Metrics {
    /// Registers the database pool gauges; `sample` must be cheap (it runs on every scrape).
    pub fn register_pool(&self, sample: impl Fn() -> PoolSample + Send + Sync + 'static) {
        let connections = prometheus::IntGaugeVec::new(
            Opts::new("db_pool_connections", "database pool connections by state"),
            &["state"],
        )
        .expect("static metric definition is valid");
        let max = prometheus::IntGauge::new(
            "db_pool_max_connections",
            "database pool size limit (max_connections)",
        )
        .expect("static metric definition is valid");
        self.register(Box::new(PoolCollector {
            connections,
            max,
            sample,
        }));
    }
}
