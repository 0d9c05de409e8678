//! Builds the one shared channel per downstream service: lazy connection, connect timeout,
//! per-call deadline, trace-context propagation, retries with a budget, a circuit breaker and
//! this service's credential (a service token on every call, see `auth::internal`).

use std::time::Duration;

use tonic::transport::Endpoint;
use tower::ServiceBuilder;

use crate::auth::internal::{ServiceToken, ServiceTokenLayer, WithServiceToken};
use crate::config::ClientConfig;
use crate::resilience::{
    BreakerConfig, CircuitBreaker, CircuitBreakerLayer, RetryLayer, TraceContextLayer,
    circuit_breaker_service, retry_service, trace_context_service,
};

/// The channel type every generated Braid client is instantiated with.
pub type Channel = circuit_breaker_service::CircuitBreakerService<
    retry_service::RetryService<
        trace_context_service::TraceContext<WithServiceToken<tonic::transport::Channel>>,
    >,
>;

/// Creates the channel for `name` (used in logs and breaker metrics). Connection happens on
/// first use, so a downstream that is not up yet does not stop this service from starting.
/// `token` authenticates every call (`ServiceToken::none()` when internal auth is disabled).
pub fn channel(
    name: &str,
    config: &ClientConfig,
    breaker: BreakerConfig,
    token: ServiceToken,
) -> Result<(Channel, CircuitBreaker), tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(config.endpoint.clone())?
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .timeout(Duration::from_millis(config.timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let breaker = CircuitBreaker::new(name, breaker);
    let channel = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .layer(RetryLayer::new())
        .layer(TraceContextLayer)
        .layer(ServiceTokenLayer::new(token))
        .service(endpoint.connect_lazy());
    Ok((channel, breaker))
}
