use braid_core::auth::internal::InternalAuthConfig;
use braid_core::auth::jwt::AuthConfig;
use braid_core::config::{
    BreakerSettings, ClientConfig, ServerConfig, TelemetryConfig, Validate, positive,
};
use serde::{Deserialize, Serialize};

/// Configuration of the gateway (`BRAID_GATEWAY__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub ingest: ClientConfig,
    pub embedding: ClientConfig,
    pub vector_search: ClientConfig,
    pub text_search: ClientConfig,
    pub search: SearchConfig,
    /// Circuit breaker applied to every downstream client.
    pub breaker: BreakerSettings,
    /// End-user tokens on the public API.
    pub auth: AuthConfig,
    /// This service's credential towards the internal services.
    pub internal_auth: InternalAuthConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub default_top_k: u32,
    pub max_top_k: u32,
    pub max_query_bytes: usize,
    /// RRF constant k used when the request does not set one.
    pub rrf_k: u32,
    /// Each leg returns max(top_k * 3, min_candidates) hits, capped at max_candidates.
    pub min_candidates: u32,
    pub max_candidates: u32,
    /// Deadline of the vector leg (query embedding + vector search).
    pub vector_timeout_ms: u64,
    /// Deadline of the text leg.
    pub text_timeout_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50051, 9101),
            telemetry: TelemetryConfig::default(),
            ingest: ClientConfig::new("http://127.0.0.1:50052", 300_000),
            embedding: ClientConfig::new("http://127.0.0.1:50053", 10_000),
            vector_search: ClientConfig::new("http://127.0.0.1:50054", 10_000),
            text_search: ClientConfig::new("http://127.0.0.1:50055", 10_000),
            search: SearchConfig::default(),
            breaker: BreakerSettings::default(),
            auth: AuthConfig::default(),
            internal_auth: InternalAuthConfig::default(),
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            default_top_k: 10,
            max_top_k: 100,
            max_query_bytes: 2048,
            rrf_k: 60,
            min_candidates: 50,
            max_candidates: 1000,
            vector_timeout_ms: 2_000,
            text_timeout_ms: 2_000,
        }
    }
}

impl Validate for GatewayConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.telemetry.validate(errors);
        self.ingest.validate("ingest", errors);
        self.embedding.validate("embedding", errors);
        self.vector_search.validate("vector_search", errors);
        self.text_search.validate("text_search", errors);
        let s = &self.search;
        positive(errors, "search.default_top_k", s.default_top_k as u64);
        if s.default_top_k > s.max_top_k {
            errors.push("search.default_top_k must not exceed search.max_top_k".into());
        }
        positive(errors, "search.max_query_bytes", s.max_query_bytes as u64);
        positive(errors, "search.rrf_k", s.rrf_k as u64);
        if s.min_candidates > s.max_candidates {
            errors.push("search.min_candidates must not exceed search.max_candidates".into());
        }
        positive(errors, "search.vector_timeout_ms", s.vector_timeout_ms);
        positive(errors, "search.text_timeout_ms", s.text_timeout_ms);
        self.breaker.validate(errors);
        self.auth.validate(errors);
        self.internal_auth.validate(errors);
    }
}

impl braid_core::entry::ServiceConfig for GatewayConfig {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
