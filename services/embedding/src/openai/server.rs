//! The server side: `POST /v1/embeddings` on the admin port, embedding with the service's own
//! pipeline, and the optional fault layer (`/v1/faults`) the provider's tests drive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use braid_core::auth::secret::{KeySource, constant_time_eq};
use serde::{Deserialize, Serialize};

use crate::error::EmbeddingError;
/// `openai_server.*`: the OpenAI-compatible endpoint on the admin port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAiServerConfig {
    /// Serves `POST /v1/embeddings` on the admin port (only with `api_key` set).
    pub enabled: bool,
    /// The bearer token callers must send (`openai_server.api_key.file` or `.value`). The
    /// endpoint is not served without one; a configured but empty source fails start-up.
    pub api_key: KeySource,
    /// Serves `POST/DELETE /v1/faults` (tests only; never enable in production).
    pub fault_injection: bool,
}

impl Default for OpenAiServerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_key: KeySource::default(),
            fault_injection: false,
        }
    }
}

/// Injected fault: the next `count` requests wait `delay_ms`, then fail with `status` (when
/// non-zero) and `Retry-After: retry_after_secs` (when set).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Fault {
    pub status: u16,
    pub count: u32,
    pub retry_after_secs: Option<f64>,
    pub delay_ms: u64,
}

/// What the endpoint embeds with: the service's own pipeline (cache, provider, limits).
pub type EmbedFn = Arc<
    dyn Fn(
            Vec<String>,
        ) -> futures::future::BoxFuture<'static, Result<Vec<Vec<f32>>, EmbeddingError>>
        + Send
        + Sync,
>;

#[derive(Clone)]
struct ServerState {
    embed: EmbedFn,
    model: Arc<str>,
    dimensions: usize,
    api_key: Option<Arc<str>>,
    fault: Arc<Mutex<Fault>>,
}

#[derive(Deserialize)]
struct ServerRequest {
    input: Input,
    #[serde(default)]
    #[allow(dead_code)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

fn openai_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "error": { "message": message.into(), "type": kind, "param": null, "code": null }
    });
    (status, axum::Json(body)).into_response()
}

/// The admin-port routes: `POST /v1/embeddings` (and the fault layer when enabled).
pub fn routes(
    config: &OpenAiServerConfig,
    embed: EmbedFn,
    model: String,
    dimensions: usize,
) -> anyhow::Result<axum::Router> {
    if !config.enabled {
        return Ok(axum::Router::new());
    }
    if !config.api_key.is_configured() {
        tracing::info!("openai_server.api_key not set: POST /v1/embeddings is not served");
        return Ok(axum::Router::new());
    }
    let key = config
        .api_key
        .load()
        .map_err(|e| anyhow::anyhow!("openai_server.api_key: {e}"))?;
    let api_key = Some(String::from_utf8_lossy(&key).into_owned().into());
    let state = ServerState {
        embed,
        model: model.into(),
        dimensions,
        api_key,
        fault: Arc::default(),
    };
    let mut router = axum::Router::new().route("/v1/embeddings", axum::routing::post(embeddings));
    if config.fault_injection {
        router = router.route(
            "/v1/faults",
            axum::routing::post(set_fault).delete(clear_fault),
        );
    }
    Ok(router.with_state(state))
}

async fn set_fault(State(state): State<ServerState>, axum::Json(fault): axum::Json<Fault>) {
    *state.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
}

async fn clear_fault(State(state): State<ServerState>) {
    *state.fault.lock().unwrap_or_else(|p| p.into_inner()) = Fault::default();
}

/// Takes one request's share of the injected fault, if any.
fn take_fault(state: &ServerState) -> Option<Fault> {
    let mut fault = state.fault.lock().unwrap_or_else(|p| p.into_inner());
    if fault.count == 0 {
        return None;
    }
    fault.count -= 1;
    Some(fault.clone())
}

async fn embeddings(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(fault) = take_fault(&state) {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if fault.status != 0 {
            let status =
                StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = openai_error(status, "injected_fault", "injected fault");
            if let Some(secs) = fault.retry_after_secs
                && let Ok(v) = HeaderValue::from_str(&format!("{secs}"))
            {
                response.headers_mut().insert("retry-after", v);
            }
            return response;
        }
    }
    if let Some(key) = &state.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let key: &str = key;
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return openai_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or wrong bearer token",
            );
        }
    }
    let request: ServerRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("invalid body: {e} (input must be a string or an array of strings)"),
            );
        }
    };
    if let Some(format) = &request.encoding_format
        && format != "float"
    {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("encoding_format {format:?} is not supported; use \"float\""),
        );
    }
    if let Some(d) = request.dimensions
        && d != state.dimensions
    {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!(
                "dimensions: this model returns {} dimensions, not {d}",
                state.dimensions
            ),
        );
    }
    let texts = match request.input {
        Input::One(t) => vec![t],
        Input::Many(ts) => ts,
    };
    let tokens: usize = texts.iter().map(|t| t.len() / 4 + 1).sum();
    match (state.embed)(texts).await {
        Ok(vectors) => {
            let data: Vec<serde_json::Value> = vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| {
                    serde_json::json!({ "object": "embedding", "index": index, "embedding": embedding })
                })
                .collect();
            axum::Json(serde_json::json!({
                "object": "list",
                "data": data,
                "model": state.model.as_ref(),
                "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
            }))
            .into_response()
        }
        Err(e) => {
            let (status, kind) = match e.code() {
                tonic::Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_request_error"),
                tonic::Code::ResourceExhausted => {
                    (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
                }
                tonic::Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            };
            let mut response = openai_error(status, kind, e.to_string());
            if status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            response
        }
    }
}
