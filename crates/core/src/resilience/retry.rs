//! Retries of idempotent unary calls (leg searches, Embed, health checks) with a budget:
//! `tower::retry` with a [`TpsBudget`] (retries may add at most 20% to the calls of the last
//! 10 s, plus 10 per second), at most two retries per call, 10 ms then 20 ms apart. A call is
//! retried only when it failed before doing any work: the connection failed or the server
//! answered UNAVAILABLE (e.g. it was shutting down). A deadline or RESOURCE_EXHAUSTED is never
//! retried (that would add load exactly when the downstream has too much).
//!
//! The request body is buffered once (unary requests are small) so each attempt can resend
//! it; every other call (streams, writes) passes through untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, Retry};
use tower::{Layer, Service};

use super::header_grpc_status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MAX_RETRIES: u32 = 2;
const BACKOFF: Duration = Duration::from_millis(10);

/// Methods that may be sent twice with no other effect.
fn idempotent(path: &str) -> bool {
    matches!(
        path,
        "/braid.v1.VectorSearchService/Search"
            | "/braid.v1.TextSearchService/Search"
            | "/braid.v1.EmbeddingService/Embed"
            | "/grpc.health.v1.Health/Check"
    )
}

#[derive(Clone)]
pub struct RetryLayer {
    budget: Arc<TpsBudget>,
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// One budget per downstream: pass the same layer to one channel only.
    pub fn new() -> Self {
        Self {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            retry: Retry::new(
                RetryPolicy {
                    budget: self.budget.clone(),
                    retries_left: MAX_RETRIES,
                },
                Rebody(inner),
            ),
        }
    }
}

#[derive(Clone)]
pub struct RetryService<S> {
    retry: Retry<RetryPolicy, Rebody<S>>,
}

impl<S, ResBody> Service<http::Request<Body>> for RetryService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.retry.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !idempotent(request.uri().path()) {
            // Ready: `poll_ready` above readied the inner service.
            let future = self.retry.get_mut().0.call(request);
            return Box::pin(async move { future.await.map_err(Into::into) });
        }
        let clone = self.retry.clone();
        let mut retry = std::mem::replace(&mut self.retry, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| -> BoxError { e.into() })?
                .to_bytes();
            retry.call(http::Request::from_parts(parts, bytes)).await
        })
    }
}

/// Turns the buffered request back into a streaming body for the channel.
#[derive(Clone)]
pub struct Rebody<S>(S);

impl<S, ResBody> Service<http::Request<Bytes>> for Rebody<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Bytes>) -> Self::Future {
        let future = self.0.call(request.map(|b| Body::new(Full::new(b))));
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

#[derive(Clone)]
pub struct RetryPolicy {
    budget: Arc<TpsBudget>,
    retries_left: u32,
}

/// Whether a failed attempt never reached a working server (safe and useful to resend).
fn worth_retrying<B>(result: &Result<http::Response<B>, BoxError>) -> bool {
    match result {
        Ok(response) => header_grpc_status(response) == Some(tonic::Code::Unavailable),
        // Our own deadline expired: resending cannot help.
        Err(e) => !e.is::<tonic::TimeoutExpired>(),
    }
}

impl<B> Policy<http::Request<Bytes>, http::Response<B>, BoxError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _request: &mut http::Request<Bytes>,
        result: &mut Result<http::Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        if !worth_retrying(result) {
            if result.is_ok() {
                self.budget.deposit();
            }
            return None;
        }
        if self.retries_left == 0 || !self.budget.withdraw() {
            return None;
        }
        let attempt = MAX_RETRIES - self.retries_left;
        self.retries_left -= 1;
        Some(Box::pin(tokio::time::sleep(BACKOFF * 2u32.pow(attempt))))
    }

    fn clone_request(&mut self, request: &http::Request<Bytes>) -> Option<http::Request<Bytes>> {
        let mut clone = http::Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Answers UNAVAILABLE `failures` times, then OK; counts calls and checks the body.
    #[derive(Clone)]
    struct Flaky {
        failures: u32,
        calls: Arc<AtomicU32>,
    }

    impl Service<http::Request<Body>> for Flaky {
        type Response = http::Response<Body>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let failures = self.failures;
            Box::pin(async move {
                let body = request.into_body().collect().await?.to_bytes();
                assert_eq!(&body[..], b"payload", "every attempt carries the body");
                Ok(if n < failures {
                    tonic::Status::unavailable("shutting down").into_http()
                } else {
                    http::Response::new(Body::empty())
                })
            })
        }
    }

    fn request(path: &str) -> http::Request<Body> {
        let mut r = http::Request::new(Body::new(Full::new(Bytes::from_static(b"payload"))));
        *r.uri_mut() = format!("http://downstream{path}").parse().expect("uri");
        r
    }

    async fn run(failures: u32, path: &str) -> (Option<tonic::Code>, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let mut svc = RetryLayer::new().layer(Flaky {
            failures,
            calls: calls.clone(),
        });
        std::future::poll_fn(|cx| svc.poll_ready(cx))
            .await
            .expect("ready");
        let response = svc.call(request(path)).await.expect("response");
        (header_grpc_status(&response), calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_calls_are_retried_on_unavailable() {
        assert_eq!(
            run(1, "/braid.v1.TextSearchService/Search").await,
            (None, 2)
        );
        assert_eq!(run(2, "/braid.v1.EmbeddingService/Embed").await, (None, 3));
        // At most two retries.
        assert_eq!(
            run(5, "/braid.v1.VectorSearchService/Search").await,
            (Some(tonic::Code::Unavailable), 3)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_never_retried() {
        assert_eq!(
            run(1, "/braid.v1.TextSearchService/ReplaceDocument").await,
            (Some(tonic::Code::Unavailable), 1)
        );
    }

    #[test]
    fn deadlines_and_shedding_are_not_retried() {
        let expired: Result<http::Response<Body>, BoxError> =
            Err(Box::new(tonic::TimeoutExpired(())));
        assert!(!worth_retrying(&expired));
        let shed: Result<http::Response<Body>, BoxError> =
            Ok(tonic::Status::resource_exhausted("full").into_http());
        assert!(!worth_retrying(&shed));
        let refused: Result<http::Response<Body>, BoxError> = Err(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(worth_retrying(&refused));
    }
}
