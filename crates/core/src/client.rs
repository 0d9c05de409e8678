//! Builds the one shared channel per downstream service: every replica the endpoint names,
//! balanced per call, with a connect timeout, a per-call deadline, trace-context propagation,
//! retries with a budget, a circuit breaker and this service's credential (a service token on
//! every call, see `auth::internal`).
//!
//! The stack, outermost first, and why in this order:
//! 1. circuit breaker: judges the downstream as a whole by each call's final outcome, after
//!    retries; one failing replica among healthy ones is the balancer's business, not a
//!    reason to cut off the service;
//! 2. retry (idempotent calls, with a budget): above the balancer, so each attempt picks an
//!    endpoint afresh and a call that met a dead replica is resent to a live one;
//! 3. trace context and 4. service token: headers of the call, set once for all attempts
//!    (the retry layer resends the headers it was given);
//! 5. [`Balanced`]: picks a ready endpoint, takes a failing one out of the rotation;
//! 6. one tonic channel per endpoint: the connection, its connect timeout and the per-call
//!    deadline (`timeout_ms`, or the caller's tighter `grpc-timeout`), so every attempt gets
//!    the full deadline of a single call.

use std::sync::Arc;

use tower::ServiceBuilder;

use crate::auth::internal::{ServiceToken, ServiceTokenLayer, WithServiceToken};
use crate::balance::{Balanced, Resolve};
use crate::config::ClientConfig;
use crate::metrics::Metrics;
use crate::resilience::{
    BreakerConfig, CircuitBreaker, CircuitBreakerLayer, RetryLayer, TraceContextLayer,
    circuit_breaker_service, retry_service, trace_context_service,
};

/// The channel type every generated Braid client is instantiated with.
pub type Channel = circuit_breaker_service::CircuitBreakerService<
    retry_service::RetryService<trace_context_service::TraceContext<WithServiceToken<Balanced>>>,
>;

/// A client setting that cannot be dialled.
#[derive(Debug, thiserror::Error)]
#[error("{downstream}.endpoint: {reason}")]
pub struct ClientError {
    pub downstream: &'static str,
    pub reason: String,
}

/// What every channel of one service shares: its credential, breaker settings, metrics and
/// name resolution.
#[derive(Clone)]
pub struct Connector {
    token: ServiceToken,
    breaker: BreakerConfig,
    metrics: Metrics,
    resolver: Arc<dyn Resolve>,
}

impl Connector {
    /// `token` authenticates every call (`ServiceToken::none()` when internal auth is
    /// disabled); `resolver` turns endpoint names into addresses (`balance::system()`).
    pub fn new(
        token: ServiceToken,
        breaker: BreakerConfig,
        metrics: &Metrics,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        Self {
            token,
            breaker,
            metrics: metrics.clone(),
            resolver,
        }
    }

    /// Creates the channel for `name` (used in logs, breaker and balancing metrics).
    /// Connections happen on first use, so a downstream that is not up yet does not stop this
    /// service from starting. Must be called inside a tokio runtime (name resolution runs in
    /// a task).
    pub fn channel(
        &self,
        name: &'static str,
        config: &ClientConfig,
    ) -> Result<(Channel, CircuitBreaker), ClientError> {
        let balanced = Balanced::new(name, config, self.resolver.clone(), &self.metrics).map_err(
            |reason| ClientError {
                downstream: name,
                reason,
            },
        )?;
        let breaker = CircuitBreaker::new(name, self.breaker);
        let channel = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(breaker.clone()))
            .layer(RetryLayer::new())
            .layer(TraceContextLayer)
            .layer(ServiceTokenLayer::new(self.token.clone()))
            .service(balanced);
        Ok((channel, breaker))
    }
}
