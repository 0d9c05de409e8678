//! The provider client against real HTTP upstreams on loopback (a scripted OpenAI-style
//! endpoint, and a listener that accepts and never answers), on tokio's paused clock: the
//! per-request timeout, `Retry-After` (both forms, capped) and the request and token rate
//! limits are measured in exact virtual time, never by the wall clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use tokio::time::Instant;

use super::*;

/// Dimensions the scripted upstream returns.
const DIMS: usize = 2;

/// One scripted answer: a status, and a `Retry-After` value to send with it.
type Scripted = (StatusCode, Option<String>);

/// An OpenAI-style `/v1/embeddings` on loopback that answers from `script` (then 200s) and
/// counts every request it receives.
struct Upstream {
    base_url: String,
    requests: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(script: Vec<Scripted>) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let counter = requests.clone();
        let handler = move |axum::Json(body): axum::Json<serde_json::Value>| {
            let script = script.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let next = script.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                if let Some((status, retry_after)) = next {
                    let mut response = (status, "scripted failure").into_response();
                    if let Some(value) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", HeaderValue::from_str(&value).unwrap());
                    }
                    return response;
                }
                let inputs = body["input"].as_array().map_or(0, Vec::len);
                let data: Vec<serde_json::Value> = (0..inputs)
                    .map(|i| serde_json::json!({ "index": i, "embedding": [1.0, 0.0] }))
                    .collect();
                axum::Json(serde_json::json!({ "data": data })).into_response()
            }
        };
        let router = axum::Router::new().route("/v1/embeddings", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base_url: format!("http://{addr}/v1"),
            requests,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A listener that accepts connections and never answers (a hung provider).
async fn hung_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/v1")
}

/// Production defaults, pointed at `base_url`, unlimited unless a test sets limits.
fn config(base_url: &str) -> OpenAiConfig {
    OpenAiConfig {
        base_url: base_url.into(),
        model: "scripted".into(),
        api_key_env: String::new(),
        dimensions: DIMS,
        requests_per_second: 0.0,
        tokens_per_second: 0.0,
        ..OpenAiConfig::default()
    }
}

fn provider(config: &OpenAiConfig) -> OpenAiProvider {
    OpenAiProvider::new(config, &braid_core::metrics::Metrics::new("embedding")).unwrap()
}

fn calls(provider: &OpenAiProvider, outcome: &str) -> u64 {
    let value = provider.metrics.registry.value(
        "braid_embedding_provider_requests_total",
        &[("outcome", outcome)],
    );
    value.unwrap_or_default() as u64
}

fn texts(n: usize, bytes: usize) -> Vec<String> {
    (0..n).map(|_| "x".repeat(bytes)).collect()
}

/// Guards against a hang: an hour of paused time passes in an instant.
async fn within_an_hour<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3_600), call)
        .await
        .expect("the call hung for an hour (of paused time)")
}

#[tokio::test(start_paused = true)]
async fn a_hung_provider_times_out_at_the_configured_timeout_on_every_attempt() {
    let base_url = hung_upstream().await;
    let config = OpenAiConfig {
        max_attempts: 2,
        ..config(&base_url)
    };
    assert_eq!(config.timeout_ms, 30_000, "the production default");
    let provider = provider(&config);
    let started = Instant::now();
    let err = within_an_hour(provider.embed(vec!["hello".into()]))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, EmbeddingError::ProviderUnavailable(_)),
        "{err}"
    );
    assert!(
        err.to_string().contains("timed out after 30000 ms"),
        "{err}"
    );
    assert_eq!(calls(&provider, "failed"), 2, "both attempts timed out");
    // Two 30 s timeouts and one backoff (at most max_backoff) between them.
    let low = Duration::from_secs(60);
    let high = low + Duration::from_millis(config.max_backoff_ms);
    assert!(
        (low..=high).contains(&elapsed),
        "{elapsed:?} not in {low:?}..={high:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_in_seconds_and_as_a_date_but_capped() {
    let upstream = Upstream::start(vec![
        // Asks for an hour: the cap (max_backoff_ms) wins.
        (StatusCode::TOO_MANY_REQUESTS, Some("3600".into())),
    ])
    .await;
    let config = OpenAiConfig {
        min_backoff_ms: 10,
        max_backoff_ms: 3_000,
        ..config(&upstream.base_url)
    };
    let provider = provider(&config);
    let started = Instant::now();
    let vectors = within_an_hour(provider.embed(vec!["a".into()]))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(vectors, vec![vec![1.0, 0.0]]);
    assert_eq!(upstream.requests(), 2);
    assert_eq!(calls(&provider, "throttled"), 1);
    assert!(
        (Duration::from_secs(3)..Duration::from_millis(3_100)).contains(&elapsed),
        "waited {elapsed:?}: Retry-After 3600 must be capped at 3 s"
    );

    // The HTTP-date form: "retry at <now + 2 s>" (a date has whole seconds, so 1-2 s).
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let upstream = Upstream::start(vec![(StatusCode::SERVICE_UNAVAILABLE, Some(at))]).await;
    let provider = self::provider(&OpenAiConfig {
        base_url: upstream.base_url.clone(),
        ..config.clone()
    });
    let started = Instant::now();
    within_an_hour(provider.embed(vec!["b".into()]))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(upstream.requests(), 2);
    assert_eq!(calls(&provider, "failed"), 1);
    assert!(
        (Duration::from_millis(900)..=Duration::from_millis(2_100)).contains(&elapsed),
        "waited {elapsed:?} for a Retry-After date 2 s ahead"
    );
}

#[tokio::test(start_paused = true)]
async fn the_request_rate_limit_paces_http_requests() {
    let upstream = Upstream::start(Vec::new()).await;
    // One text per HTTP request, two requests per second (burst: two).
    let provider = provider(&OpenAiConfig {
        requests_per_second: 2.0,
        max_batch: 1,
        ..config(&upstream.base_url)
    });
    let started = Instant::now();
    let vectors = within_an_hour(provider.embed(texts(10, 8))).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(vectors.len(), 10);
    assert_eq!(upstream.requests(), 10);
    // Two at once, eight more at 2/s.
    assert!(
        (Duration::from_millis(3_990)..=Duration::from_millis(4_100)).contains(&elapsed),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_token_rate_limit_paces_by_input_size() {
    let upstream = Upstream::start(Vec::new()).await;
    // 196 bytes ~ 50 tokens per text; 100 tokens per second (burst: 100).
    let provider = provider(&OpenAiConfig {
        tokens_per_second: 100.0,
        max_batch: 1,
        ..config(&upstream.base_url)
    });
    let started = Instant::now();
    within_an_hour(provider.embed(texts(10, 196)))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(upstream.requests(), 10);
    // 500 tokens: 100 from the burst, 400 more at 100/s.
    assert!(
        (Duration::from_millis(3_990)..=Duration::from_millis(4_100)).contains(&elapsed),
        "{elapsed:?}"
    );
    // Short texts under the same limit are not held back as long: the budget is per token.
    let started = Instant::now();
    within_an_hour(provider.embed(texts(10, 4))).await.unwrap();
    assert!(started.elapsed() <= Duration::from_millis(300));
}
