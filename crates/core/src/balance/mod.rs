//! Client-side balancing across a downstream's replicas, without a mesh.
//!
//! A client's `endpoint` names the downstream: a URL whose host resolves to every replica (a
//! headless Kubernetes Service: one address per ready pod), or a comma-separated list of URLs.
//! [`Balanced`] is the innermost service of the client stack (see [`crate::client`]): each
//! call goes to one ready endpoint picked in rotation (passing over one with a backlog of
//! requests in flight), an endpoint that fails at the transport level leaves the rotation and is
//! probed back, and names are re-resolved periodically and after a failure.
//!
//! Resolution is injectable ([`Resolve`]): production uses [`SystemResolver`], tests map one
//! name to several loopback addresses with [`FixedResolver`] and change it while running.

mod pool;
mod resolve;
mod target;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower::{Service, ServiceExt};

pub use resolve::{FixedResolver, Resolve, SystemResolver, system};

use crate::config::ClientConfig;
use crate::metrics::Metrics;
use pool::{Pool, Settings};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Checks a client `endpoint` setting (one URL or a comma-separated list).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    target::parse(endpoint).map(|_| ())
}

/// Every call to one downstream, spread over its ready endpoints. Cheap to clone; clones
/// share the endpoints.
#[derive(Clone)]
pub struct Balanced {
    pool: Arc<Pool>,
}

impl Balanced {
    /// Starts balancing over what `config.endpoint` names (resolution runs in a task of the
    /// current tokio runtime). `name` labels logs and metrics (`downstream`).
    pub fn new(
        name: &'static str,
        config: &ClientConfig,
        resolver: Arc<dyn Resolve>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let targets = target::parse(&config.endpoint)?;
        let tls = if targets.iter().any(|t| t.scheme == "https") {
            let defaults = crate::tls::ClientTlsConfig::default();
            let tls = crate::tls::ClientTls::start(config.tls.as_ref().unwrap_or(&defaults))
                .map_err(|e| format!("tls: {e}"))?;
            for t in &targets {
                tls.server_name(&t.host.to_string())?;
            }
            Some(tls)
        } else {
            None
        };
        let settings = Settings {
            tls,
            connect_timeout: std::time::Duration::from_millis(config.connect_timeout_ms),
            timeout: std::time::Duration::from_millis(config.timeout_ms),
            resolve_interval: std::time::Duration::from_millis(config.resolve_interval_ms),
            probe_backoff: std::time::Duration::from_millis(config.probe_backoff_ms),
            probe_backoff_max: std::time::Duration::from_millis(config.probe_backoff_max_ms),
        };
        Ok(Self {
            pool: Pool::start(name, settings, targets, resolver, metrics),
        })
    }
}

/// Whether a failed call says the endpoint is unreachable (rather than that the call ran out
/// of time, which a slow but working endpoint also does).
fn transport_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<tonic::TimeoutExpired>() {
            return false;
        }
        next = e.source();
    }
    true
}

/// An error with its causes, `outer: inner: root`.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

impl Service<http::Request<Body>> for Balanced {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: readiness is per endpoint and checked when the call picks one.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move {
            pool.wait_resolved().await;
            let Some(slot) = pool.pick() else {
                return Err(pool.no_endpoint().into());
            };
            pool.count_request();
            let _in_flight = slot.begin();
            match slot.channel.clone().oneshot(request).await {
                Ok(response) => {
                    pool.restore(&slot);
                    Ok(response)
                }
                Err(e) => {
                    if transport_failure(&e) {
                        pool.eject(&slot, &describe(&e));
                    }
                    Err(e.into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
