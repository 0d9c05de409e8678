use std::path::PathBuf;

use braid_core::auth::internal::InternalAuthConfig;
use braid_core::config::{ServerConfig, TelemetryConfig, Validate, positive};
use serde::{Deserialize, Serialize};

/// Configuration of the text-search service (`BRAID_TEXT_SEARCH__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextSearchConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Service credentials: required from callers, sent to downstream services.
    pub internal_auth: InternalAuthConfig,
    /// Which BM25 engine backs the leg.
    pub backend: Backend,
    pub index: IndexConfig,
    pub search: SearchConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded Tantivy index on local disk (default).
    Tantivy,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Tantivy index directory; created on first start.
    pub dir: PathBuf,
    /// Indexing memory budget of the Tantivy writer (shared by its threads).
    pub writer_memory_mb: usize,
    /// Tantivy indexing threads; each needs at least 15 MB of the budget.
    pub writer_threads: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub max_top_k: u32,
    pub max_query_bytes: usize,
    /// Characters of highlighted context per hit.
    pub snippet_chars: usize,
    /// Weight of title matches relative to body matches (the title's BM25 is multiplied by
    /// it before the two are added).
    pub title_boost: f32,
    /// BM25 term-frequency saturation.
    pub bm25_k1: f32,
    /// BM25 length normalisation, 0..=1.
    pub bm25_b: f32,
}

impl Default for TextSearchConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50055, 9105),
            telemetry: TelemetryConfig::default(),
            internal_auth: InternalAuthConfig::default(),
            backend: Backend::Tantivy,
            index: IndexConfig::default(),
            search: SearchConfig::default(),
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".braid/tantivy"),
            writer_memory_mb: 64,
            writer_threads: 1,
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            max_top_k: 1000,
            max_query_bytes: 4096,
            snippet_chars: 200,
            // Chosen on the dev half of SciFact's test queries (the first 150 of
            // qrels/test.tsv; `examples/bm25_eval.rs`): title boost in {0.01, 0.25, 0.5,
            // 0.75, 1, 1.5, 2} x (k1, b) in {(0.9, 0.4) Anserini, (1.2, 0.75) Lucene}.
            title_boost: 0.5,
            bm25_k1: 1.2,
            bm25_b: 0.75,
        }
    }
}

impl Validate for TextSearchConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.telemetry.validate(errors);
        self.internal_auth.validate(errors);
        let threads = self.index.writer_threads;
        if !(1..=8).contains(&threads) {
            errors.push(format!("index.writer_threads is {threads}, must be 1..=8"));
        } else if self.index.writer_memory_mb < 15 * threads {
            errors.push(format!(
                "index.writer_memory_mb must be at least 15 per writer thread ({} for {threads})",
                15 * threads
            ));
        }
        positive(errors, "search.max_top_k", self.search.max_top_k as u64);
        positive(
            errors,
            "search.max_query_bytes",
            self.search.max_query_bytes as u64,
        );
        if !(self.search.title_boost.is_finite() && self.search.title_boost > 0.0) {
            errors.push("search.title_boost must be a positive number".into());
        }
        let k1 = self.search.bm25_k1;
        if !(k1.is_finite() && (0.0..=10.0).contains(&k1)) {
            errors.push(format!("search.bm25_k1 is {k1}, must be 0..=10"));
        }
        let b = self.search.bm25_b;
        if !(b.is_finite() && (0.0..=1.0).contains(&b)) {
            errors.push(format!("search.bm25_b is {b}, must be 0..=1"));
        }
    }
}

impl braid_core::entry::ServiceConfig for TextSearchConfig {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
