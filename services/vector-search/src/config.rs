use braid_core::auth::internal::InternalAuthConfig;
use braid_core::config::{DatabaseConfig, ServerConfig, TelemetryConfig, Validate, positive};
use serde::{Deserialize, Serialize};

/// Configuration of the vector-search service (`BRAID_VECTOR_SEARCH__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorSearchConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Service credentials: required from callers, sent to downstream services.
    pub internal_auth: InternalAuthConfig,
    pub database: DatabaseConfig,
    pub search: SearchConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Must match the `vector(N)` column; checked at start-up.
    pub dimensions: usize,
    /// `hnsw.ef_search` per query (candidate list size; higher = better recall, slower).
    pub ef_search: u32,
    /// Most hits one search may ask for.
    pub max_top_k: u32,
}

impl Default for VectorSearchConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50054, 9104),
            telemetry: TelemetryConfig::default(),
            internal_auth: InternalAuthConfig::default(),
            database: DatabaseConfig::default(),
            search: SearchConfig::default(),
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            dimensions: 384,
            ef_search: 100,
            max_top_k: 1000,
        }
    }
}

impl Validate for VectorSearchConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.telemetry.validate(errors);
        self.internal_auth.validate(errors);
        self.database.validate(errors);
        positive(errors, "search.dimensions", self.search.dimensions as u64);
        positive(errors, "search.ef_search", self.search.ef_search as u64);
        if self.search.ef_search > 1000 {
            errors.push("search.ef_search must be at most 1000 (pgvector limit)".into());
        }
        positive(errors, "search.max_top_k", self.search.max_top_k as u64);
    }
}

impl braid_core::entry::ServiceConfig for VectorSearchConfig {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
