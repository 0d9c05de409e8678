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
