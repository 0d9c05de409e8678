//! Records `braid_grpc_requests_total{method,code}` and the latency histogram for every
//! request that reaches the server. The `method` label comes from a closed set: the gRPC
//! methods Braid's servers can serve (every method of the `braid.v1` services, health and
//! reflection); any other path, however many a client invents, is counted as `unknown`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use super::header_grpc_status;
use crate::metrics::{Counter, Histogram, Metrics, latency_buckets};

/// The label for any path that is not a known method.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Services served next to Braid's own by every server.
const STANDARD_SERVICES: &[(&str, &[&str])] = &[
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    (
        "grpc.reflection.v1.ServerReflection",
        &["ServerReflectionInfo"],
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        &["ServerReflectionInfo"],
    ),
];

/// Every `/package.Service/Method` path of the route table, read once from the descriptor set,
/// with its index in the per-method handle tables.
static KNOWN_METHODS: LazyLock<KnownMethods> = LazyLock::new(|| {
    use braid_proto::prost::Message;
    let mut paths = Vec::new();
    if let Ok(set) =
        braid_proto::prost_types::FileDescriptorSet::decode(braid_proto::FILE_DESCRIPTOR_SET)
    {
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    for (service, methods) in STANDARD_SERVICES {
        for method in *methods {
            paths.push(format!("/{service}/{method}"));
        }
    }
    paths.sort();
    paths.dedup();
    let index = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i))
        .collect();
    KnownMethods { paths, index }
});

struct KnownMethods {
    /// Label values; [`UNKNOWN_METHOD`] is index `paths.len()`.
    paths: Vec<String>,
    index: HashMap<String, usize>,
}

impl KnownMethods {
    fn slot(&self, path: &str) -> usize {
        self.index.get(path).copied().unwrap_or(self.paths.len())
    }

    fn label(&self, slot: usize) -> &str {
        self.paths.get(slot).map_or(UNKNOWN_METHOD, String::as_str)
    }
}

#[cfg(test)]
/// The `method` label for a request path: the path itself when it names a known method,
/// otherwise [`UNKNOWN_METHOD`].
pub fn method_label(path: &str) -> &'static str {
    let known = &*KNOWN_METHODS;
    known.label(known.slot(path))
}

/// `(package.Service, Method)` of a request path that names a known method, otherwise
/// `(UNKNOWN_METHOD, UNKNOWN_METHOD)`: for span names and attributes, a closed set too.
pub fn grpc_method(path: &str) -> (&'static str, &'static str) {
    let known: &'static KnownMethods = &KNOWN_METHODS;
    known
        .paths
        .get(known.slot(path))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.rsplit_once('/'))
        .unwrap_or((UNKNOWN_METHOD, UNKNOWN_METHOD))
}

/// The label of a status code, as tonic's `Debug` spells it (`Ok`, `InvalidArgument`, ...).
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Number of gRPC status codes (0..=16).
const CODES: usize = 17;

/// `braid_grpc_requests_total{method,code}` and `braid_grpc_request_duration_seconds{method}`:
/// a handle slot per known method (plus `unknown`) and code, registered on first use so only
/// the series that happened are exported; after that, recording is an index and an atomic add.
pub struct GrpcRequestMetrics {
    metrics: Metrics,
    requests: Box<[[OnceLock<Counter>; CODES]]>,
    latency: Box<[OnceLock<Histogram>]>,
}

impl GrpcRequestMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let slots = KNOWN_METHODS.paths.len() + 1;
        Self {
            metrics: metrics.clone(),
            requests: (0..slots)
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
            latency: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    fn record(&self, slot: usize, code: tonic::Code, seconds: f64) {
        let method = KNOWN_METHODS.label(slot);
        let counter = self.requests[slot][code as usize % CODES].get_or_init(|| {
            self.metrics.counter_with(
                "grpc_requests_total",
                "gRPC requests handled, by method and status code",
                &[("method", method), ("code", code_label(code))],
            )
        });
        counter.increment(1);
        let histogram = self.latency[slot].get_or_init(|| {
            self.metrics.histogram_with(
                "grpc_request_duration_seconds",
                "gRPC request latency",
                &[("method", method)],
                &latency_buckets(),
            )
        });
        histogram.record(seconds);
    }
}

#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<GrpcRequestMetrics>,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics: Arc::new(GrpcRequestMetrics::new(&metrics)),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<GrpcRequestMetrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let slot = KNOWN_METHODS.slot(request.uri().path());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => header_grpc_status(response).unwrap_or(tonic::Code::Ok),
                // Errors from inner layers (load shedding, timeouts) become statuses in tonic.
                Err(_) => tonic::Code::ResourceExhausted,
            };
            metrics.record(slot, code, started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_keep_their_name_and_anything_else_is_unknown() {
        for path in [
            "/braid.v1.Gateway/Search",
            "/braid.v1.IngestService/Ingest",
            "/braid.v1.TextSearchService/Search",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(method_label(path), path);
        }
        assert_eq!(
            grpc_method("/braid.v1.Gateway/Search"),
            ("braid.v1.Gateway", "Search")
        );
        assert_eq!(grpc_method("/x/y"), (UNKNOWN_METHOD, UNKNOWN_METHOD));
        for path in [
            "/braid.v1.Gateway/Nope",
            "/random/123",
            "/",
            "",
            "/braid.v1.Gateway/Search/extra",
        ] {
            assert_eq!(method_label(path), UNKNOWN_METHOD, "{path}");
        }
    }

    /// Calls `path` through the layer; the inner service answers UNIMPLEMENTED.
    async fn call(layer: &GrpcMetricsLayer, path: &str) {
        use tower::ServiceExt;
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("grpc-status", "12")
                    .body(())
                    .expect("static response"),
            )
        });
        let request = http::Request::builder()
            .uri(path)
            .body(())
            .expect("valid path");
        layer.layer(inner).oneshot(request).await.expect("answered");
    }

    #[tokio::test]
    async fn invented_paths_add_no_series() {
        let metrics = Metrics::new("test");
        let layer = GrpcMetricsLayer::new(metrics.clone());
        call(&layer, "/braid.v1.Gateway/Search").await;
        call(&layer, "/first.Invented/Path").await;
        let series = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("braid_grpc_") && !l.starts_with('#'))
                .count()
        };
        let before = series(&metrics.render());
        for i in 0..50 {
            call(&layer, &format!("/random.Service{i}/Method{i}")).await;
            call(&layer, &format!("/braid.v1.Gateway/NoSuchMethod{i}")).await;
        }
        let after = metrics.render();
        assert_eq!(series(&after), before, "{after}");
        assert!(!after.contains("random.Service"), "{after}");
        assert!(!after.contains("NoSuchMethod"), "{after}");
        let unknown = [("method", UNKNOWN_METHOD), ("code", "Unimplemented")];
        assert_eq!(
            metrics.value("braid_grpc_requests_total", &unknown),
            Some(101.0)
        );
        assert_eq!(
            metrics.value(
                "braid_grpc_request_duration_seconds_count",
                &[("method", "/braid.v1.Gateway/Search")]
            ),
            Some(1.0)
        );
    }
}
