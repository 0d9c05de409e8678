//! A consecutive-failure circuit breaker for gRPC clients.
//!
//! Closed: calls pass; `failure_threshold` consecutive faults (transport errors such as a
//! refused connection, or UNAVAILABLE / INTERNAL / UNKNOWN / DATA_LOSS statuses sent as
//! trailers-only responses) open it. The system's own load handling is never a fault: a
//! DEADLINE_EXCEEDED or an expired client-side deadline (our own budget ran out), a
//! RESOURCE_EXHAUSTED (the downstream shed load) and CANCELLED count neither way. Open: calls fail at once with UNAVAILABLE until
//! `open_for` has passed. Half-open: calls pass; `success_threshold` successes close it, one
//! failure re-opens it. The state is shared by every clone of the client.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use super::header_grpc_status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
            success_threshold: 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open — the value exported as a gauge.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// "closed", "half-open" or "open".
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    successes: u32,
    opened_at: Option<Instant>,
}

/// The shared breaker state machine.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    name: Arc<str>,
    config: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
}

impl CircuitBreaker {
    pub fn new(name: &str, config: BreakerConfig) -> Self {
        Self {
            name: name.into(),
            config,
            inner: Arc::new(Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                successes: 0,
                opened_at: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        inner.state
    }

    fn refresh(&self, inner: &mut Inner) {
        if inner.state == BreakerState::Open
            && inner
                .opened_at
                .is_some_and(|t| t.elapsed() >= self.config.open_for)
        {
            inner.state = BreakerState::HalfOpen;
            inner.successes = 0;
        }
    }

    /// While open: how long until it lets a trial call through (half-open).
    pub fn retry_in(&self) -> Option<Duration> {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(at)) => {
                Some(self.config.open_for.saturating_sub(at.elapsed()))
            }
            _ => None,
        }
    }

    /// Closes the breaker at once (an operator's reset) and returns the state it was in.
    pub fn reset(&self) -> BreakerState {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        let was = inner.state;
        inner.state = BreakerState::Closed;
        inner.failures = 0;
        inner.successes = 0;
        inner.opened_at = None;
        tracing::info!(breaker = %self.name, was = was.as_str(), "circuit reset by an operator");
        was
    }

    /// Whether a call may go through now.
    pub fn allow(&self) -> bool {
        self.state() != BreakerState::Open
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        if inner.state == BreakerState::HalfOpen {
            inner.successes += 1;
            if inner.successes >= self.config.success_threshold {
                inner.state = BreakerState::Closed;
                tracing::info!(breaker = %self.name, "circuit closed");
            }
        }
    }

    pub fn record_failure(&self) {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        inner.failures += 1;
        let trip = match inner.state {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => inner.failures >= self.config.failure_threshold,
            BreakerState::Open => false,
        };
        if trip {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(Instant::now());
            tracing::warn!(breaker = %self.name, failures = inner.failures, "circuit opened");
        }
    }
}

/// What one call says about the downstream's health.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Healthy,
    Fault,
    /// Deadline pressure or load shedding: says nothing about whether it is broken.
    Neutral,
}

fn verdict_of_code(code: tonic::Code) -> Verdict {
    use tonic::Code::*;
    match code {
        Unavailable | Internal | Unknown | DataLoss => Verdict::Fault,
        DeadlineExceeded | ResourceExhausted | Cancelled => Verdict::Neutral,
        Ok | InvalidArgument | NotFound | AlreadyExists | PermissionDenied | FailedPrecondition
        | Aborted | OutOfRange | Unimplemented | Unauthenticated => Verdict::Healthy,
    }
}

fn verdict_of_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Verdict {
    // The channel's own deadline expired (our budget, not their fault).
    if error.is::<tonic::TimeoutExpired>() {
        return Verdict::Neutral;
    }
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => verdict_of_code(status.code()),
        None => Verdict::Fault,
    }
}

#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    breaker: CircuitBreaker,
}

impl CircuitBreakerLayer {
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreakerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CircuitBreakerService<S> {
    inner: S,
    breaker: CircuitBreaker,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CircuitBreakerService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let breaker = self.breaker.clone();
        if !breaker.allow() {
            let status =
                tonic::Status::unavailable(format!("circuit breaker for {} is open", breaker.name));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await.map_err(Into::into);
            let verdict = match &result {
                Ok(response) => {
                    header_grpc_status(response).map_or(Verdict::Healthy, verdict_of_code)
                }
                Err(e) => verdict_of_error(e.as_ref()),
            };
            match verdict {
                Verdict::Healthy => breaker.record_success(),
                Verdict::Fault => breaker.record_failure(),
                Verdict::Neutral => {}
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_secs(60),
                success_threshold: 2,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_closes_an_open_breaker_at_once_and_says_what_it_was() {
        let b = breaker();
        assert_eq!(b.retry_in(), None);
        (0..3).for_each(|_| b.record_failure());
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(b.retry_in(), Some(Duration::from_secs(40)));
        assert_eq!(b.reset(), BreakerState::Open);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
        assert_eq!(b.retry_in(), None);
        // The failure count starts again: it takes the full threshold to open it again.
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.reset(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_half_opens_then_closes() {
        let b = breaker();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_failure_reopens() {
        let b = breaker();
        for _ in 0..3 {
            b.record_failure();
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn only_real_faults_count() {
        assert_eq!(verdict_of_code(tonic::Code::Unavailable), Verdict::Fault);
        assert_eq!(verdict_of_code(tonic::Code::Internal), Verdict::Fault);
        assert_eq!(
            verdict_of_code(tonic::Code::DeadlineExceeded),
            Verdict::Neutral
        );
        assert_eq!(
            verdict_of_code(tonic::Code::ResourceExhausted),
            Verdict::Neutral
        );
        assert_eq!(
            verdict_of_code(tonic::Code::InvalidArgument),
            Verdict::Healthy
        );
        let expired = tonic::TimeoutExpired(());
        assert_eq!(verdict_of_error(&expired), Verdict::Neutral);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(verdict_of_error(&refused), Verdict::Fault);
    }

    #[tokio::test]
    async fn success_resets_consecutive_failures() {
        let b = breaker();
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
