//! Sending [`EsRequest`]s with the `elasticsearch` crate's transport: node URLs round robin,
//! API-key or basic authentication, TLS through rustls with an optional CA file, a deadline
//! per attempt, and retries with exponential backoff for what is worth retrying (no answer,
//! 429, 502, 503, 504). Every other answer, error statuses included, goes back to the caller
//! with its status, which decides (a 404 for a missing alias is an answer, not a failure).
//!
//! Media types are set on every request, not left to the crate: `Content-Type:
//! application/json` (`application/x-ndjson` for `_bulk`) and `Accept: application/json`.
//! Elasticsearch 8 and 9 accept these as well as their versioned
//! `application/vnd.elasticsearch+json; compatible-with=N` types, and OpenSearch answers 406
//! to the versioned ones, so one code path serves both engines. (The pinned crate sends plain
//! JSON by default today; setting them here keeps it so across crate upgrades.)

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::http::{Method as HttpMethod, Url};
use serde_json::Value;

use super::request::{Body, EsRequest, Method};
use crate::config::ElasticsearchConfig;
use crate::error::TextError;

/// An answer: HTTP status and JSON body (`null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `error.type` of an error answer.
    pub fn error_type(&self) -> &str {
        self.body
            .pointer("/error/type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The answer as an error for `what` (the detail is logged, never sent to clients).
    pub fn into_error(self, what: &str) -> TextError {
        let reason = self
            .body
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        let detail = format!(
            "{what}: HTTP {} {} {reason}",
            self.status,
            self.error_type()
        );
        if self.status == 404 && self.error_type() == "index_not_found_exception" {
            TextError::NotServing(
                "the Elasticsearch text index is missing (deleted?); rebuild it with `braidctl \
                 reindex --leg text`"
                    .into(),
            )
        } else if matches!(self.status, 429 | 500..=599) {
            TextError::Unavailable(detail)
        } else {
            TextError::Index(detail)
        }
    }
}

pub struct Client {
    es: Elasticsearch,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

/// Reads a secret from a file (trimmed) or from the environment variable named `env`.
fn secret(file: Option<&std::path::Path>, env: &str, what: &str) -> Result<String, String> {
    let value = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("reading {what} from {}: {e}", path.display()))?,
        None => std::env::var(env)
            .map_err(|_| format!("{what}: environment variable {env} is not set"))?,
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(value)
}

impl Client {
    /// Builds the transport (no request is sent). Fails for unreadable credentials or CA
    /// file and malformed URLs.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, String> {
        let urls = config
            .urls
            .iter()
            .map(|u| Url::parse(u).map_err(|e| format!("index.elasticsearch.urls: `{u}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = match urls.as_slice() {
            [one] => TransportBuilder::new(SingleNodeConnectionPool::new(one.clone())),
            _ => TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None)),
        };
        if config.api_key_file.is_some() || !config.api_key_env.is_empty() {
            let key = secret(
                config.api_key_file.as_deref(),
                &config.api_key_env,
                "the Elasticsearch API key",
            )?;
            builder = builder.auth(Credentials::EncodedApiKey(key));
        } else if !config.username.is_empty() {
            let password = secret(
                config.password_file.as_deref(),
                &config.password_env,
                "the Elasticsearch password",
            )?;
            builder = builder.auth(Credentials::Basic(config.username.clone(), password));
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "reading index.elasticsearch.ca_file {}: {e}",
                    path.display()
                )
            })?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("index.elasticsearch.ca_file {}: {e}", path.display()))?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .build()
            .map_err(|e| format!("building the Elasticsearch client: {e}"))?;
        Ok(Self {
            es: Elasticsearch::new(transport),
            timeout: Duration::from_millis(config.request_timeout_ms),
            retries: config.retries,
            backoff: Duration::from_millis(config.retry_backoff_ms),
        })
    }

    /// The backoff before retry number `attempt` (0-based): doubling, capped at 32x.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff * 2u32.pow(attempt.min(5))
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Sends `r`, retrying when there is no answer or a 429/502/503/504; any other answer is
    /// returned. Out of attempts: [`TextError::Unavailable`].
    pub async fn send(&self, r: &EsRequest) -> Result<Reply, TextError> {
        let method = match r.method {
            Method::Get => HttpMethod::Get,
            Method::Put => HttpMethod::Put,
            Method::Post => HttpMethod::Post,
            Method::Delete => HttpMethod::Delete,
        };
        let mut headers = HeaderMap::new();
        let content_type = match r.body {
            Body::NdJson(_) => "application/x-ndjson",
            Body::None | Body::Json(_) => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let body = r.body_bytes();
        let query = (!r.query.is_empty()).then_some(&r.query);
        let mut attempt = 0;
        loop {
            let result = self
                .es
                .send(
                    method,
                    &r.path,
                    headers.clone(),
                    query,
                    body.clone(),
                    Some(self.timeout),
                )
                .await;
            let why = match result {
                Ok(response) => {
                    let status = response.status_code().as_u16();
                    if matches!(status, 429 | 502..=504) {
                        format!("HTTP {status}")
                    } else {
                        let bytes = response.bytes().await.map_err(|e| {
                            TextError::Unavailable(format!(
                                "{} {}: reading the answer: {e}",
                                r.method.as_str(),
                                r.path
                            ))
                        })?;
                        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        return Ok(Reply { status, body });
                    }
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.retries {
                return Err(TextError::Unavailable(format!(
                    "{} {}: {why} ({} attempts)",
                    r.method.as_str(),
                    r.path,
                    attempt + 1
                )));
            }
            tracing::debug!(path = %r.path, %why, attempt, "retrying an Elasticsearch request");
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Sends `r` and requires a 2xx answer.
    pub async fn ok(&self, r: &EsRequest, what: &str) -> Result<Value, TextError> {
        let reply = self.send(r).await?;
        if reply.is_success() {
            Ok(reply.body)
        } else {
            Err(reply.into_error(what))
        }
    }
}
