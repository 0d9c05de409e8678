//! Server admission: at most `concurrency_limit` requests run at once; the rest wait in a
//! bounded FIFO queue (tokio's fair semaphore) and are shed with RESOURCE_EXHAUSTED only when
//! the queue is full or their deadline passes before they get to run. The deadline is the
//! caller's `grpc-timeout`, capped by the server's request timeout, and is made available to
//! the handler (see [`super::deadline`]) so downstream calls get what is left of it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::deadline;
use crate::metrics::{Counter, Gauge, Metrics};

/// Admission settings (from [`crate::config::ServerConfig`]).
#[derive(Clone, Copy, Debug)]
pub struct AdmissionConfig {
    pub concurrency_limit: usize,
    pub queue_limit: usize,
    pub request_timeout: Duration,
}

struct State {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    config: AdmissionConfig,
    queue_depth: Gauge,
    shed_queue_full: Counter,
    shed_deadline: Counter,
}

#[derive(Clone)]
pub struct AdmissionLayer {
    state: Arc<State>,
}

impl AdmissionLayer {
    pub fn new(config: AdmissionConfig, metrics: &Metrics) -> Self {
        let queue_depth = metrics.gauge(
            "admission_queue_depth",
            "requests waiting for a concurrency slot",
        );
        let shed = |reason| {
            metrics.counter_with(
                "admission_shed_total",
                "requests shed with RESOURCE_EXHAUSTED, by reason",
                &[("reason", reason)],
            )
        };
        Self {
            state: Arc::new(State {
                permits: Arc::new(Semaphore::new(config.concurrency_limit)),
                queued: AtomicUsize::new(0),
                config,
                queue_depth,
                shed_queue_full: shed("queue_full"),
                shed_deadline: shed("deadline"),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    state: Arc<State>,
}

/// Keeps the queue gauge and counter right however the wait ends (even when cancelled).
struct Queued<'a>(&'a State);

impl<'a> Queued<'a> {
    fn enter(state: &'a State) -> Option<Self> {
        let limit = state.config.queue_limit;
        let admitted = state
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| {
            state.queue_depth.increment(1.0);
            Queued(state)
        })
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.queue_depth.decrement(1.0);
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Admission<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Health checks never queue: an overloaded server is still alive, and a probe that
        // times out in the queue would get it restarted by the orchestrator.
        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
            let future = self.inner.call(request);
            return Box::pin(future);
        }
        let state = self.state.clone();
        let budget = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(deadline::parse_grpc_timeout)
            .map_or(state.config.request_timeout, |t| {
                t.min(state.config.request_timeout)
            });
        let deadline_at = Instant::now() + budget;
        // The clone is ready too (tower's "clone and swap": the polled one is used).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let permit = match state.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    let Some(queued) = Queued::enter(&state) else {
                        state.shed_queue_full.increment(1);
                        return Ok(tonic::Status::resource_exhausted(format!(
                            "server overloaded: {} requests running and {} queued",
                            state.config.concurrency_limit, state.config.queue_limit
                        ))
                        .into_http());
                    };
                    let waited =
                        tokio::time::timeout_at(deadline_at, state.permits.clone().acquire_owned())
                            .await;
                    drop(queued);
                    match waited {
                        Ok(Ok(permit)) => permit,
                        // The semaphore is never closed; treat it like an expired wait.
                        Ok(Err(_)) | Err(_) => {
                            state.shed_deadline.increment(1);
                            return Ok(tonic::Status::resource_exhausted(format!(
                                "server overloaded: no capacity within the request's {} ms deadline",
                                budget.as_millis()
                            ))
                            .into_http());
                        }
                    }
                }
            };
            // `call` inside the scope too: a handler may read the deadline before its first poll.
            let response =
                deadline::scope(deadline_at, async move { inner.call(request).await }).await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    type Body = String;

    /// A service that holds each request until `release` has a permit for it, and answers
    /// with the deadline it saw.
    #[derive(Clone)]
    struct Held(Arc<Semaphore>);

    impl Service<http::Request<Body>> for Held {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            let release = self.0.clone();
            let remaining = deadline::remaining();
            Box::pin(async move {
                release.acquire().await.expect("open").forget();
                Ok(http::Response::new(format!("{remaining:?}")))
            })
        }
    }

    fn held(release: Arc<Semaphore>) -> Held {
        Held(release)
    }

    fn code(response: &http::Response<Body>) -> Option<tonic::Code> {
        super::super::header_grpc_status(response)
    }

    fn layer(queue_limit: usize) -> AdmissionLayer {
        AdmissionLayer::new(
            AdmissionConfig {
                concurrency_limit: 1,
                queue_limit,
                request_timeout: Duration::from_secs(30),
            },
            &Metrics::new("test"),
        )
    }

    fn request(timeout: Option<&str>) -> http::Request<Body> {
        let mut r = http::Request::new(String::new());
        *r.uri_mut() = "/braid.v1.Gateway/Search".parse().expect("uri");
        if let Some(t) = timeout {
            r.headers_mut()
                .insert("grpc-timeout", t.parse().expect("header"));
        }
        r
    }

    #[tokio::test(start_paused = true)]
    async fn past_capacity_requests_queue_then_run_in_order() {
        let release = Arc::new(Semaphore::new(0));
        let svc = layer(8).layer(held(release.clone()));
        let first = tokio::spawn(svc.clone().call(request(None)));
        let second = tokio::spawn(svc.clone().call(request(None)));
        tokio::task::yield_now().await;
        assert_eq!(svc.state.queued.load(Ordering::SeqCst), 1);
        release.add_permits(2);
        let a = first.await.expect("join").expect("ok");
        let b = second.await.expect("join").expect("ok");
        assert_eq!(code(&a), None, "answered, not shed");
        assert_eq!(code(&b), None, "queued, then answered");
        assert_eq!(svc.state.queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_sheds_at_once() {
        let release = Arc::new(Semaphore::new(0));
        let svc = layer(1).layer(held(release.clone()));
        let _running = tokio::spawn(svc.clone().call(request(None)));
        let _queued = tokio::spawn(svc.clone().call(request(None)));
        tokio::task::yield_now().await;
        let shed = svc.clone().call(request(None)).await.expect("response");
        assert_eq!(code(&shed), Some(tonic::Code::ResourceExhausted));
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_bypass_a_full_queue() {
        let release = Arc::new(Semaphore::new(0));
        let svc = layer(0).layer(held(release.clone()));
        let _running = tokio::spawn(svc.clone().call(request(None)));
        tokio::task::yield_now().await;
        let shed = svc.clone().call(request(None)).await.expect("response");
        assert_eq!(code(&shed), Some(tonic::Code::ResourceExhausted));
        let mut probe = request(None);
        *probe.uri_mut() = "/grpc.health.v1.Health/Check".parse().expect("uri");
        let probe = tokio::spawn(svc.clone().call(probe));
        release.add_permits(2);
        let answered = probe.await.expect("join").expect("response");
        assert_eq!(
            code(&answered),
            None,
            "the probe ran despite the full server"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_is_shed_when_its_deadline_passes() {
        let release = Arc::new(Semaphore::new(0));
        let svc = layer(8).layer(held(release.clone()));
        let _running = tokio::spawn(svc.clone().call(request(None)));
        tokio::task::yield_now().await;
        let shed = svc
            .clone()
            .call(request(Some("100m")))
            .await
            .expect("response");
        assert_eq!(code(&shed), Some(tonic::Code::ResourceExhausted));
        assert_eq!(svc.state.queued.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_handler_sees_the_callers_deadline_capped_by_the_server() {
        let release = Arc::new(Semaphore::new(2));
        let svc = layer(8).layer(held(release));
        let short = svc.clone().call(request(Some("250m"))).await.expect("ok");
        assert_eq!(
            short.body(),
            &format!("{:?}", Some(Duration::from_millis(250)))
        );
        let long = svc.clone().call(request(Some("1H"))).await.expect("ok");
        assert_eq!(long.body(), &format!("{:?}", Some(Duration::from_secs(30))));
    }
}
