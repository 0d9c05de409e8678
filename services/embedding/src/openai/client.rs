//! The client side: embeds through a remote OpenAI-compatible `/v1/embeddings` with rate
//! limits, a per-request timeout, retries honouring `Retry-After` and a circuit breaker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::BackoffBuilder;
use braid_core::config::{BreakerSettings, positive};
use braid_core::metrics::{Counter, Family, Gauge};
use braid_core::resilience::{BreakerState, CircuitBreaker};
use serde::{Deserialize, Serialize};

use crate::error::EmbeddingError;
use crate::throttle::{self, Bucket};

/// `provider.openai.*`: where and how to call a remote embeddings API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The provider's model name, sent with every request and part of the model identity.
    pub model: String,
    /// Name of the environment variable holding the API key (empty = none).
    pub api_key_env: String,
    /// File holding the API key (a mounted secret); wins over `api_key_env`.
    pub api_key_file: Option<PathBuf>,
    /// Vector size the rest of Braid stores (the pgvector column); checked at start-up.
    pub dimensions: usize,
    /// Send `dimensions` in the request (for models that can shorten their output).
    pub request_dimensions: bool,
    /// Deadline of one HTTP request (each attempt).
    pub timeout_ms: u64,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First retry delay; it grows exponentially up to `max_backoff_ms`.
    pub min_backoff_ms: u64,
    /// Longest retry delay, also the cap on a `Retry-After` the provider sends.
    pub max_backoff_ms: u64,
    /// Requests per second sent to the provider (0 = unlimited).
    pub requests_per_second: f64,
    /// Estimated input tokens per second (0 = unlimited).
    pub tokens_per_second: f64,
    /// Texts per HTTP request.
    pub max_batch: usize,
    /// Circuit breaker around the provider.
    pub breaker: BreakerSettings,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            model: "text-embedding-3-small".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            api_key_file: None,
            dimensions: 384,
            request_dimensions: false,
            timeout_ms: 30_000,
            max_attempts: 5,
            min_backoff_ms: 200,
            max_backoff_ms: 30_000,
            requests_per_second: 50.0,
            tokens_per_second: 500_000.0,
            max_batch: 128,
            breaker: BreakerSettings {
                failure_threshold: 5,
                open_ms: 60_000,
                success_threshold: 2,
            },
        }
    }
}

impl OpenAiConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            errors.push(format!(
                "provider.openai.base_url must be an http(s) URL, got {:?}",
                self.base_url
            ));
        }
        if self.model.is_empty() {
            errors.push("provider.openai.model must not be empty".into());
        }
        positive(errors, "provider.openai.dimensions", self.dimensions as u64);
        positive(errors, "provider.openai.timeout_ms", self.timeout_ms);
        positive(
            errors,
            "provider.openai.max_attempts",
            self.max_attempts as u64,
        );
        positive(errors, "provider.openai.max_batch", self.max_batch as u64);
        if self.min_backoff_ms > self.max_backoff_ms {
            errors.push("provider.openai.min_backoff_ms must not exceed max_backoff_ms".into());
        }
        if self.requests_per_second < 0.0 || self.tokens_per_second < 0.0 {
            errors.push("provider.openai rate limits must not be negative".into());
        }
        self.breaker.validate(errors);
    }

    fn api_key(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.api_key_file {
            let key = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("provider.openai.api_key_file {}: {e}", path.display())
            })?;
            return Ok(Some(key.trim().to_string()));
        }
        if self.api_key_env.is_empty() {
            return Ok(None);
        }
        Ok(std::env::var(&self.api_key_env)
            .ok()
            .filter(|k| !k.is_empty()))
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// What one HTTP attempt ended with.
enum Attempt {
    Done(Vec<Vec<f32>>),
    /// Worth retrying; `retry_after` from the server when it said so.
    Retry {
        error: String,
        retry_after: Option<Duration>,
        throttled: bool,
    },
    Fatal(EmbeddingError),
}

/// Metrics of the provider client.
#[derive(Clone)]
struct ProviderMetrics {
    breaker_state: Gauge,
    calls: Arc<Family<Counter>>,
    /// Where the handles live, read back by the tests.
    #[cfg(test)]
    registry: braid_core::metrics::Metrics,
}

/// Client for a remote OpenAI-compatible embeddings endpoint.
#[derive(Clone)]
pub struct OpenAiProvider {
    config: Arc<OpenAiConfig>,
    http: reqwest::Client,
    api_key: Option<Arc<str>>,
    breaker: CircuitBreaker,
    requests: Arc<Bucket>,
    tokens: Arc<Bucket>,
    metrics: ProviderMetrics,
}

impl OpenAiProvider {
    pub fn new(
        config: &OpenAiConfig,
        metrics: &braid_core::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(16)
            .build()?;
        let breaker_state = metrics.gauge(
            "embedding_provider_breaker_state",
            "provider circuit breaker: 0 closed, 1 half-open, 2 open",
        );
        let calls = Arc::new(metrics.counter_family(
            "embedding_provider_requests_total",
            "HTTP requests to the embeddings provider by outcome",
            &[(
                "outcome",
                &["ok", "rejected", "throttled", "failed", "breaker_open"],
            )],
        ));
        Ok(Self {
            config: Arc::new(config.clone()),
            http,
            api_key: config.api_key()?.map(Into::into),
            breaker: CircuitBreaker::new("embedding-provider", config.breaker.to_config()),
            requests: Arc::new(Bucket::new(config.requests_per_second)),
            tokens: Arc::new(Bucket::new(config.tokens_per_second)),
            metrics: ProviderMetrics {
                breaker_state,
                calls,
                #[cfg(test)]
                registry: metrics.clone(),
            },
        })
    }

    /// `model@remote` as reported with every vector.
    pub fn model_id(&self) -> String {
        format!("{}@{}", self.config.model, self.config.base_url)
    }

    pub fn dimensions(&self) -> usize {
        self.config.dimensions
    }

    pub fn breaker_state(&self) -> BreakerState {
        let state = self.breaker.state();
        self.metrics.breaker_state.set(state.as_gauge() as f64);
        state
    }

    /// Start-up check: the provider's vectors have the size Braid stores.
    pub async fn check_dimensions(&self) -> Result<(), EmbeddingError> {
        let probe = self.embed(vec!["dimension check".to_string()]).await?;
        match probe.first().map(Vec::len) {
            Some(n) if n == self.config.dimensions => Ok(()),
            other => Err(EmbeddingError::Provider(format!(
                "provider {} returns {} dimensions, the vector schema stores {}",
                self.model_id(),
                other.unwrap_or(0),
                self.config.dimensions
            ))),
        }
    }

    /// Embeds `texts` in request-sized batches, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.max_batch) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.min_backoff_ms))
            .with_max_delay(Duration::from_millis(self.config.max_backoff_ms))
            .with_jitter()
            .with_max_times(self.config.max_attempts.saturating_sub(1) as usize)
            .build();
        // About four characters per token for English text: a budget, not a bill.
        let est_tokens: f64 = texts.iter().map(|t| (t.len() / 4 + 1) as f64).sum();
        loop {
            if self.breaker_state() == BreakerState::Open {
                self.metrics.calls.get(&["breaker_open"]).increment(1);
                return Err(EmbeddingError::ProviderUnavailable(format!(
                    "circuit breaker for {} is open after repeated failures",
                    self.config.base_url
                )));
            }
            self.requests.acquire(1.0).await;
            self.tokens.acquire(est_tokens).await;
            match self.attempt(texts).await {
                Attempt::Done(vectors) => {
                    self.breaker.record_success();
                    self.breaker_state();
                    self.metrics.calls.get(&["ok"]).increment(1);
                    return Ok(vectors);
                }
                Attempt::Fatal(e) => {
                    self.metrics.calls.get(&["rejected"]).increment(1);
                    return Err(e);
                }
                Attempt::Retry {
                    error,
                    retry_after,
                    throttled,
                } => {
                    self.breaker.record_failure();
                    self.breaker_state();
                    self.metrics
                        .calls
                        .get(&[if throttled { "throttled" } else { "failed" }])
                        .increment(1);
                    let Some(delay) = backoff.next() else {
                        let message = format!(
                            "{} failed after {} attempts: {error}",
                            self.config.base_url, self.config.max_attempts
                        );
                        return Err(if throttled {
                            EmbeddingError::ProviderThrottled(message)
                        } else {
                            EmbeddingError::ProviderUnavailable(message)
                        });
                    };
                    let cap = Duration::from_millis(self.config.max_backoff_ms);
                    let delay = throttle::retry_delay(delay, retry_after, cap);
                    tracing::warn!(error = %error, ?delay, "embedding provider call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Attempt {
        let url = format!("{}/embeddings", self.config.base_url.trim_end_matches('/'));
        let body = EmbeddingsRequest {
            model: &self.config.model,
            input: texts,
            encoding_format: "float",
            dimensions: self
                .config
                .request_dimensions
                .then_some(self.config.dimensions),
        };
        let mut request = self.http.post(&url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: if e.is_timeout() {
                        format!("timed out after {} ms", self.config.timeout_ms)
                    } else {
                        format!("request failed: {e}")
                    },
                    retry_after: None,
                    throttled: false,
                };
            }
        };
        let status = response.status();
        let retry_after = throttle::retry_after(response.headers(), SystemTime::now());
        if status.is_success() {
            let parsed: EmbeddingsResponse = match response.json().await {
                Ok(p) => p,
                Err(e) => {
                    return Attempt::Retry {
                        error: format!("unreadable response: {e}"),
                        retry_after: None,
                        throttled: false,
                    };
                }
            };
            return match order(parsed, texts.len(), self.config.dimensions) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fatal(EmbeddingError::Provider(e)),
            };
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!(
            "HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        );
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Attempt::Retry {
                error: message,
                retry_after,
                throttled: status == reqwest::StatusCode::TOO_MANY_REQUESTS,
            }
        } else {
            Attempt::Fatal(EmbeddingError::Provider(message))
        }
    }
}

/// Puts the response's vectors in input order and checks count and size.
fn order(
    response: EmbeddingsResponse,
    expected: usize,
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, String> {
    if response.data.len() != expected {
        return Err(format!(
            "provider returned {} vectors for {expected} inputs",
            response.data.len()
        ));
    }
    let mut out = vec![Vec::new(); expected];
    for item in response.data {
        if item.index >= expected || !out[item.index].is_empty() {
            return Err(format!("provider returned a bad index {}", item.index));
        }
        if item.embedding.len() != dimensions {
            return Err(format!(
                "provider returned {} dimensions, the vector schema stores {dimensions}",
                item.embedding.len()
            ));
        }
        out[item.index] = item.embedding;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_put_back_in_input_order_and_checked() {
        let response = EmbeddingsResponse {
            data: vec![
                EmbeddingItem {
                    index: 1,
                    embedding: vec![2.0, 2.0],
                },
                EmbeddingItem {
                    index: 0,
                    embedding: vec![1.0, 1.0],
                },
            ],
        };
        assert_eq!(
            order(response, 2, 2).unwrap(),
            vec![vec![1.0, 1.0], vec![2.0, 2.0]]
        );
        let short = EmbeddingsResponse {
            data: vec![EmbeddingItem {
                index: 0,
                embedding: vec![1.0],
            }],
        };
        assert!(order(short, 1, 2).unwrap_err().contains("dimensions"));
        let missing = EmbeddingsResponse { data: vec![] };
        assert!(order(missing, 1, 2).unwrap_err().contains("0 vectors"));
    }
}

#[cfg(test)]
#[path = "provider_tests.rs"]
mod provider_tests;
