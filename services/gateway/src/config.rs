use braid_core::auth::internal::InternalAuthConfig;
use braid_core::auth::jwt::AuthConfig;
use braid_core::config::{
    BreakerSettings, ClientConfig, ServerConfig, TelemetryConfig, Validate, positive,
};
use serde::{Deserialize, Serialize};

use crate::fusion::{
    Defaults, MAX_PIVOT_TERMS, MAX_SLOPE, Method, Normalization, Rule, pivot_in_range,
    slope_in_range,
};

pub use crate::audit::config::{AuditConfig, OnFailure, QueryText};
pub use crate::limits::config::{
    Budget, ClassBudget, CostConfig, LimitsConfig, LongCallLimits, RequestLimits, StreamLimits,
};
pub use crate::revocation::RevocationConfig;

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
    /// Per-caller rate budgets, long-call caps, stream and request list limits.
    pub limits: LimitsConfig,
    /// The audit trail (on when `audit.database.url` is set).
    pub audit: AuditConfig,
    pub query_cache: QueryCacheConfig,
    /// End-user tokens on the public API.
    pub auth: AuthConfig,
    /// This service's credential towards the internal services.
    pub internal_auth: InternalAuthConfig,
    /// Token revocation (`RevokeTokens`), stored in `audit.database`.
    pub revocation: RevocationConfig,
    /// Not a gateway setting: metadata types are declared once, in the ingest service's
    /// config, and the gateway reads them from it. Set here, start-up fails saying so.
    #[serde(skip_serializing)]
    pub metadata_types: Option<serde::de::IgnoredAny>,
}

/// `query_cache.*`: whole search answers, keyed on everything that can change them (see
/// `cache/mod.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryCacheConfig {
    /// Caches whole search answers; `false`: every search runs its legs.
    pub enabled: bool,
    /// Answers kept in process memory.
    pub capacity: u64,
    /// Time to live of an answer in both layers.
    pub ttl_secs: u64,
    /// `redis://host:port/db` (`rediss://` for TLS): share answers between gateway replicas;
    /// empty = in process only.
    pub redis_url: String,
    /// TLS: PEM file of the CA that signs Redis' certificate; unset = the system trust store.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Connections to Redis (with `redis_url`).
    pub redis_pool_size: usize,
    /// Longest a search waits for Redis before treating it as a miss (or skipping the store).
    pub redis_timeout_ms: u64,
    /// Longest a search waits for the tenant's index generation (or the query model's
    /// identity) before answering uncached.
    pub generation_timeout_ms: u64,
}

impl Default for QueryCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 10_000,
            ttl_secs: 60,
            redis_url: String::new(),
            redis_ca_file: None,
            redis_pool_size: 16,
            redis_timeout_ms: 50,
            generation_timeout_ms: 250,
        }
    }
}

impl QueryCacheConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        positive(errors, "query_cache.capacity", self.capacity);
        positive(errors, "query_cache.ttl_secs", self.ttl_secs);
        positive(
            errors,
            "query_cache.redis_pool_size",
            self.redis_pool_size as u64,
        );
        positive(
            errors,
            "query_cache.redis_timeout_ms",
            self.redis_timeout_ms,
        );
        positive(
            errors,
            "query_cache.generation_timeout_ms",
            self.generation_timeout_ms,
        );
        braid_core::redis_pool::validate(
            "query_cache.redis_url",
            &self.redis_url,
            "query_cache.redis_ca_file",
            self.redis_ca_file.as_deref(),
            errors,
        );
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Hits returned when a request leaves `top_k` at 0.
    pub default_top_k: u32,
    /// Largest `top_k` of a request without paging (see `max_page_depth`).
    pub max_top_k: u32,
    /// Longest query text, in bytes.
    pub max_query_bytes: usize,
    /// RRF constant k used when the request does not set one.
    pub rrf_k: u32,
    /// Fusion method when the request does not choose one: `rrf`, `linear` or `dbsf`
    /// (distribution-based score fusion). Every method's fused score is in [0, 1].
    pub fusion_method: Method,
    /// Score normalisation of LINEAR fusion when the request does not choose one:
    /// `min_max`, `z_score` or `rank`.
    pub normalization: Normalization,
    /// Weight of the vector leg's term when the request does not set one (0..=100); the
    /// legs' weights count as shares of their sum, so only their ratio matters.
    pub vector_weight: f32,
    /// Weight of the text leg's term when the request does not set one (0..=100).
    pub text_weight: f32,
    /// Largest `fusion.ef_search` a request may ask of the vector leg (pgvector allows 1000).
    pub max_ef_search: u32,
    /// Each leg returns max(top_k * 3, min_candidates) hits, capped at max_candidates.
    pub min_candidates: u32,
    /// Most hits a leg hands to fusion, and the largest `fusion.*_candidates` a request may
    /// ask for.
    pub max_candidates: u32,
    /// Deadline of the vector leg (query embedding + vector search).
    pub vector_timeout_ms: u64,
    /// Deadline of the text leg.
    pub text_timeout_ms: u64,
    /// Calls of each leg running at once; more wait in a FIFO queue (within the request's
    /// deadline) and the leg timeouts count from when a call leaves it, so a queued leg is
    /// not mistaken for a failing one.
    pub leg_concurrency: usize,
    /// Deepest ranking a paged search may walk (`top_k` with `page_size`); without paging
    /// `top_k` is at most `max_top_k`.
    pub max_page_depth: u32,
    /// How long a tenant's metadata types, read from the ingest service (where they are
    /// declared), are kept before they are read again.
    pub metadata_types_refresh_ms: u64,
    /// Longest a filtered search waits for the ingest service's answer; without one the
    /// filter goes to the legs unchecked (they still apply it).
    pub metadata_types_timeout_ms: u64,
    /// How long the ranking snapshot of a paged search is kept after its first page: every
    /// later page of the walk is cut from it; after this a next page is refused ("expired,
    /// start again"). In process and, with `query_cache.redis_url`, in Redis.
    pub page_snapshot_ttl_ms: u64,
    /// Bytes of ranking snapshots held in process memory (least recently used go first).
    pub page_snapshot_memory_bytes: u64,
    /// Longest a later page waits for the ingest service to confirm the caller may still
    /// read its documents; without an answer the page is refused (UNAVAILABLE), never shown
    /// unchecked.
    pub page_check_timeout_ms: u64,
    /// Adaptive weighting: the legs' weights chosen per query (a request's `fusion.adaptive`
    /// overrides each setting).
    pub adaptive: AdaptiveConfig,
}

/// `search.adaptive.*`: the legs' weights chosen per query from what is known before fusion
/// (`fusion/adaptive.rs`). The vector leg keeps `search.vector_weight`; the text leg's weight
/// is `search.text_weight` times `exp(margin_slope * (text_margin - vector_margin) +
/// length_slope * ln(query_terms / pivot_terms))`, the factor within [0.1, 10]; a leg's margin
/// is its best candidate's lead over its second in the leg's standard deviations, and
/// `query_terms` the query's distinct terms, stop words aside.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Weights chosen per query for every hybrid search that does not set
    /// `fusion.adaptive.enabled`. Off: on the held-out half of SciFact the dev half's best
    /// rule did not beat the fixed weights (-0.0001 nDCG@10, 95% CI [-0.0079, +0.0078];
    /// BENCHMARKS.md, bench:eval).
    pub enabled: bool,
    /// Log-odds of the text leg's share per standard deviation of top-1 margin the text leg
    /// has over the vector leg (-10..=10; 0: margins move nothing). 0.5 and length slope 0:
    /// the best of `make eval`'s sweep on the dev half of SciFact.
    pub margin_slope: f32,
    /// Log-odds of the text leg's share per unit of `ln(query_terms / pivot_terms)`
    /// (-10..=10; negative: longer queries lean on the vector leg; 0: length moves nothing).
    pub length_slope: f32,
    /// The query length, in distinct terms, at which length moves nothing (1..=32; 9 is the
    /// median of SciFact's dev-half queries).
    pub pivot_terms: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            // The dev half's best of `make eval`'s adaptive sweep (BENCHMARKS.md, bench:eval).
            margin_slope: 0.5,
            length_slope: 0.0,
            pivot_terms: 9,
        }
    }
}

impl AdaptiveConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        for (field, s) in [
            ("search.adaptive.margin_slope", self.margin_slope),
            ("search.adaptive.length_slope", self.length_slope),
        ] {
            if !slope_in_range(s) {
                errors.push(format!(
                    "{field} is {s}, must be -{MAX_SLOPE}..={MAX_SLOPE}"
                ));
            }
        }
        if !pivot_in_range(self.pivot_terms) {
            errors.push(format!(
                "search.adaptive.pivot_terms is {}, must be 1..={MAX_PIVOT_TERMS}",
                self.pivot_terms
            ));
        }
    }
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
            limits: LimitsConfig::default(),
            audit: AuditConfig::default(),
            query_cache: QueryCacheConfig::default(),
            auth: AuthConfig::default(),
            internal_auth: InternalAuthConfig::default(),
            revocation: RevocationConfig::default(),
            metadata_types: None,
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
            // The dev half of SciFact's test queries chose LINEAR with min-max normalisation
            // (BENCHMARKS.md, bench:eval); the held-out half was not used to choose.
            fusion_method: Method::Linear,
            // The dev-half winner of `make eval`'s sweep (BENCHMARKS.md, "Retrieval quality").
            normalization: Normalization::ZScore,
            vector_weight: 1.0,
            text_weight: 0.75,
            max_ef_search: 1000,
            min_candidates: 50,
            max_candidates: 1000,
            vector_timeout_ms: 2_000,
            text_timeout_ms: 2_000,
            leg_concurrency: 32,
            max_page_depth: 500,
            metadata_types_refresh_ms: 30_000,
            metadata_types_timeout_ms: 250,
            page_snapshot_ttl_ms: 300_000,
            page_snapshot_memory_bytes: 256 * 1024 * 1024,
            page_check_timeout_ms: 2_000,
            adaptive: AdaptiveConfig::default(),
        }
    }
}

impl SearchConfig {
    /// What fusion falls back to and is bounded by.
    pub fn fusion_defaults(&self) -> Defaults {
        Defaults {
            rrf_k: self.rrf_k,
            method: self.fusion_method,
            normalization: self.normalization,
            vector_weight: self.vector_weight,
            text_weight: self.text_weight,
            min_candidates: self.min_candidates,
            max_candidates: self.max_candidates,
            max_ef_search: self.max_ef_search,
            adaptive_enabled: self.adaptive.enabled,
            adaptive: Rule {
                margin_slope: self.adaptive.margin_slope,
                length_slope: self.adaptive.length_slope,
                pivot_terms: self.adaptive.pivot_terms,
            },
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
        for (field, w) in [
            ("search.vector_weight", s.vector_weight),
            ("search.text_weight", s.text_weight),
        ] {
            if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
                errors.push(format!("{field} is {w}, must be 0..=100"));
            }
        }
        if s.vector_weight == 0.0 && s.text_weight == 0.0 {
            errors.push("search.vector_weight and search.text_weight must not both be 0".into());
        }
        if !(1..=1000).contains(&s.max_ef_search) {
            errors.push(format!(
                "search.max_ef_search is {}, must be 1..=1000 (pgvector's limit)",
                s.max_ef_search
            ));
        }
        if s.min_candidates > s.max_candidates {
            errors.push("search.min_candidates must not exceed search.max_candidates".into());
        }
        positive(errors, "search.vector_timeout_ms", s.vector_timeout_ms);
        positive(errors, "search.text_timeout_ms", s.text_timeout_ms);
        positive(errors, "search.leg_concurrency", s.leg_concurrency as u64);
        if s.max_page_depth < s.max_top_k {
            errors.push("search.max_page_depth must be at least search.max_top_k".into());
        }
        positive(
            errors,
            "search.metadata_types_refresh_ms",
            s.metadata_types_refresh_ms,
        );
        positive(
            errors,
            "search.metadata_types_timeout_ms",
            s.metadata_types_timeout_ms,
        );
        positive(
            errors,
            "search.page_snapshot_ttl_ms",
            s.page_snapshot_ttl_ms,
        );
        positive(
            errors,
            "search.page_snapshot_memory_bytes",
            s.page_snapshot_memory_bytes,
        );
        positive(
            errors,
            "search.page_check_timeout_ms",
            s.page_check_timeout_ms,
        );
        s.adaptive.validate(errors);
        if self.metadata_types.is_some() {
            errors.push(
                "metadata_types: declare metadata types in the ingest service's config only; \
                 the gateway reads them from the ingest service (remove them here)"
                    .into(),
            );
        }
        self.breaker.validate(errors);
        self.limits.validate(errors);
        self.audit.validate(errors);
        self.query_cache.validate(errors);
        self.auth.validate(errors);
        self.internal_auth.validate(errors);
        self.revocation.validate(errors);
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn metadata_types_are_refused_with_where_they_belong() {
        let env = HashMap::from([(
            "BRAID_GATEWAY__METADATA_TYPES__DEFAULT__YEAR".to_string(),
            "number".to_string(),
        )]);
        let err = braid_core::config::load::<GatewayConfig>("gateway", None, &env).unwrap_err();
        assert!(
            err.errors
                .iter()
                .any(|e| e.starts_with("metadata_types:") && e.contains("ingest service's config")),
            "{err}"
        );
        let err = braid_core::config::load::<GatewayConfig>("gateway", None, &HashMap::new())
            .err()
            .map(|e| e.errors)
            .unwrap_or_default();
        assert!(err.iter().all(|e| !e.contains("metadata_types")), "{err:?}");
    }

    #[test]
    fn adaptive_settings_are_typed_and_checked() {
        let parse = |v: serde_json::Value| serde_json::from_value::<GatewayConfig>(v);
        let c = parse(serde_json::json!({
            "search": {"adaptive": {"enabled": true, "margin_slope": 1.5}}
        }))
        .unwrap();
        let d = c.search.fusion_defaults();
        assert!(d.adaptive_enabled);
        assert_eq!((d.adaptive.margin_slope, d.adaptive.pivot_terms), (1.5, 9));
        let err = parse(serde_json::json!({"search": {"adaptive": {"slope": 1}}})).unwrap_err();
        assert!(err.to_string().contains("unknown field `slope`"), "{err}");
        let c = parse(serde_json::json!({
            "search": {"adaptive": {"pivot_terms": 0, "length_slope": -11}}
        }))
        .unwrap();
        let mut errors = Vec::new();
        c.validate(&mut errors);
        for want in [
            "search.adaptive.pivot_terms is 0, must be 1..=32",
            "search.adaptive.length_slope is -11, must be -10..=10",
        ] {
            assert!(errors.iter().any(|e| e == want), "{want}: {errors:?}");
        }
        let mut errors = Vec::new();
        GatewayConfig::default().validate(&mut errors);
        assert!(errors.iter().all(|e| !e.contains("adaptive")), "{errors:?}");
    }
}
