//! Records `braid_grpc_requests_total{method,code}` and the latency histogram for every
//! request that reaches the server. The `method` label comes from a closed set: the gRPC
//! methods Braid's servers can serve (every method of the `braid.v1` services, health and
//! reflection); any other path, however many a client invents, is counted as `unknown`.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use super::header_grpc_status;
use crate::metrics::Metrics;

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

/// Every `/package.Service/Method` path of the route table, read once from the descriptor set.
static KNOWN_METHODS: LazyLock<Arc<HashSet<String>>> = LazyLock::new(|| {
    use braid_proto::prost::Message;
    let mut known = HashSet::new();
    if let Ok(set) =
        braid_proto::prost_types::FileDescriptorSet::decode(braid_proto::FILE_DESCRIPTOR_SET)
    {
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    known.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    for (service, methods) in STANDARD_SERVICES {
        for method in *methods {
            known.insert(format!("/{service}/{method}"));
        }
    }
    Arc::new(known)
});

/// The `method` label for a request path: the path itself when it names a known method,
/// otherwise [`UNKNOWN_METHOD`].
pub fn method_label(path: &str) -> String {
    if KNOWN_METHODS.contains(path) {
        path.to_string()
    } else {
        UNKNOWN_METHOD.to_string()
    }
}

#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
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
    metrics: Metrics,
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
        let method = method_label(request.uri().path());
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
            metrics
                .grpc_requests
                .with_label_values(&[method.as_str(), &format!("{code:?}")])
                .inc();
            metrics
                .grpc_latency
                .with_label_values(&[method.as_str()])
                .observe(started.elapsed().as_secs_f64());
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
}
