//! Tower layers shared by Braid's servers and clients, one file per layer.
//!
//! Server stack (outermost first), assembled in `server::serve` (run by [`crate::host::Host`]):
//! 1. [`GrpcMetricsLayer`] — counts every request by method and status, including shed ones;
//! 2. [`AdmissionLayer`] — a concurrency limit across all connections with a bounded FIFO
//!    queue behind it; sheds with RESOURCE_EXHAUSTED only when the queue is full or the
//!    request's deadline passes while queued; publishes the deadline ([`deadline`]);
//! 3. tonic's own request timeout (DEADLINE_EXCEEDED-style cancellation), then the routes.
//!
//! Client stack (outermost first), assembled in [`crate::client`]:
//! 1. [`CircuitBreakerLayer`] — fails fast with UNAVAILABLE while a downstream is failing
//!    (it sees each call's final outcome, after retries);
//! 2. [`RetryLayer`] — `tower::retry` with a budget, for idempotent calls that failed before
//!    reaching a working server;
//! 3. [`TraceContextLayer`] — injects W3C `traceparent` into outgoing requests;
//! 4. the service token, then [`crate::balance::Balanced`] — one tonic channel per replica,
//!    each with connect timeout and per-call deadline (why this order: [`crate::client`]).

mod admission;
mod circuit_breaker;
pub mod deadline;
mod grpc_metrics;
mod retry;
mod trace_context;

pub use admission::{AdmissionConfig, AdmissionLayer};
pub use circuit_breaker::{BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer};
pub use grpc_metrics::{GrpcMetricsLayer, UNKNOWN_METHOD, grpc_method};
pub use retry::RetryLayer;
pub use trace_context::TraceContextLayer;

/// Service types produced by the layers, for naming channel types.
pub mod circuit_breaker_service {
    pub use super::circuit_breaker::CircuitBreakerService;
}
/// Service types produced by the layers, for naming channel types.
pub mod retry_service {
    pub use super::retry::RetryService;
}
/// Service types produced by the layers, for naming channel types.
pub mod trace_context_service {
    pub use super::trace_context::TraceContext;
}

/// The `grpc-status` of a response that carries it in its headers (trailers-only responses,
/// which is how tonic sends every error of a unary call); `None` means "look at trailers",
/// i.e. the call proceeded normally.
pub(crate) fn header_grpc_status<B>(response: &http::Response<B>) -> Option<tonic::Code> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}
