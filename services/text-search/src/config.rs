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
    pub index: IndexConfig,
    pub search: SearchConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded Tantivy index on local disk (default).
    Tantivy,
    /// An Elasticsearch cluster (`index.elasticsearch`); needs a build with the
    /// `elasticsearch` cargo feature of braid-text-search.
    Elasticsearch,
}

/// How the Elasticsearch backend lays tenants out over indices.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Every tenant's documents in their own index (one primary shard each), created on the
    /// tenant's first write: BM25 statistics (document frequencies, average lengths) are the
    /// tenant's own, so no tenant's writes move another's scores (default). Costs one shard
    /// per tenant (times `1 + replicas`) against the cluster's shards-per-node limit.
    #[default]
    PerTenant,
    /// Every tenant in one index: BM25 statistics are shared, so a tenant's scores move when
    /// another tenant writes documents with the same terms (and reveal that it did). For
    /// single-tenant deployments or many tiny tenants that trust each other.
    Shared,
}

impl Layout {
    /// The name recorded in each index's `_meta` (`braid_layout`), as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::PerTenant => "per_tenant",
            Layout::Shared => "shared",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexConfig {
    /// Which BM25 engine backs the leg.
    pub backend: Backend,
    /// Tantivy index directory; created on first start.
    pub dir: PathBuf,
    /// Indexing memory budget of the Tantivy writer (shared by its threads).
    pub writer_memory_mb: usize,
    /// Tantivy indexing threads; each needs at least 15 MB of the budget.
    pub writer_threads: usize,
    /// How much lower the OS priority (nice value, Linux) of the threads that write the
    /// Tantivy index (staging, commits, reloads, indexing and merges) is than the service's:
    /// searches get the cores first during a bulk ingest, which still uses every idle cycle
    /// (0 = same priority, 1-19).
    pub writer_nice: u8,
    /// The cluster when `backend = "elasticsearch"`.
    pub elasticsearch: ElasticsearchConfig,
}

/// An Elasticsearch cluster as the BM25 engine. The alias `index_prefix` points at one
/// concrete index `<index_prefix>-<id>`, which holds every tenant (`layout = "shared"`) or
/// none, each tenant then having `<index_prefix>-<id>-<tenant key>` behind the alias
/// `<index_prefix>-tenant-<tenant key>` (`per_tenant`); a rebuild fills new concrete indices
/// (aliases ending `-rebuild`) and switches the aliases. Every index `<index_prefix>-*` takes
/// its settings and mappings from the index template `index_prefix`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Node URLs (`http://` or `https://`), used round robin (no sniffing).
    pub urls: Vec<String>,
    /// Alias, template and index-name prefix: lowercase letters, digits, `-`, `_`.
    pub index_prefix: String,
    /// Tenants over indices: `per_tenant` (default; each tenant's BM25 statistics its own)
    /// or `shared` (one index, statistics shared across tenants). Changing it on a running
    /// deployment makes the text leg NOT_SERVING until `braidctl reindex --leg text` rebuilds
    /// the index in the new layout.
    pub layout: Layout,
    /// Primary shards of each index Braid creates (through the index template); a tenant's
    /// index in the `per_tenant` layout always has one (statistics are per shard).
    pub shards: u32,
    /// Replica shards of each index Braid creates (through the index template).
    pub replicas: u32,
    /// `index.refresh_interval` while serving (`1s`). Writes do not wait for it (each
    /// waits for one coalesced refresh of its own); it makes what a failed refresh left
    /// invisible searchable anyway, so `-1` (never) is refused here.
    pub refresh_interval: String,
    /// `index.refresh_interval` of an index being bulk-loaded by a rebuild (restored to
    /// `refresh_interval` before the switch).
    pub bulk_refresh_interval: String,
    /// Deadline of one HTTP request (each attempt).
    pub request_timeout_ms: u64,
    /// Extra attempts after a retryable failure (connection error, 429, 502-504, per-item
    /// 429/5xx in a bulk response), with exponential backoff from `retry_backoff_ms`.
    pub retries: u32,
    /// First retry delay; it doubles with each further attempt, up to 32 times this.
    pub retry_backoff_ms: u64,
    /// PEM CA certificate(s) trusted for `https://` nodes (rustls); unset = the system roots.
    pub ca_file: Option<PathBuf>,
    /// A file holding the base64 `id:api_key` (the `encoded` value Elasticsearch returns).
    pub api_key_file: Option<PathBuf>,
    /// The name of an environment variable holding the encoded API key.
    pub api_key_env: String,
    /// Basic authentication user (with `password_file` or `password_env`).
    pub username: String,
    /// A file holding the basic authentication password.
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    pub password_env: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Most hits one search may ask for.
    pub max_top_k: u32,
    /// Longest query text, in bytes.
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
            writer_nice: 10,
            backend: Backend::Tantivy,
            elasticsearch: ElasticsearchConfig::default(),
        }
    }
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            urls: vec!["http://127.0.0.1:9200".into()],
            index_prefix: "braid-text".into(),
            layout: Layout::default(),
            shards: 1,
            replicas: 1,
            refresh_interval: "1s".into(),
            bulk_refresh_interval: "-1".into(),
            request_timeout_ms: 10_000,
            retries: 3,
            retry_backoff_ms: 100,
            ca_file: None,
            api_key_file: None,
            api_key_env: String::new(),
            username: String::new(),
            password_file: None,
            password_env: String::new(),
        }
    }
}

impl ElasticsearchConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        let at = "index.elasticsearch";
        if self.urls.is_empty() {
            errors.push(format!("{at}.urls must name at least one node"));
        }
        for (i, url) in self.urls.iter().enumerate() {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                errors.push(format!(
                    "{at}.urls[{i}] is `{url}`, must be http://host[:port] or https://host[:port]"
                ));
            }
        }
        let p = &self.index_prefix;
        let ok = !p.is_empty()
            && p.len() <= 100
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !p.starts_with(['-', '_']);
        if !ok {
            errors.push(format!(
                "{at}.index_prefix is `{p}`: 1..=100 lowercase letters, digits, '-' or '_', not \
                 starting with '-' or '_'"
            ));
        }
        if !(1..=1024).contains(&self.shards) {
            errors.push(format!("{at}.shards is {}, must be 1..=1024", self.shards));
        }
        if self.replicas > 32 {
            errors.push(format!(
                "{at}.replicas is {}, must be 0..=32",
                self.replicas
            ));
        }
        if self.refresh_interval == "-1" {
            errors.push(format!(
                "{at}.refresh_interval is -1 (never): the serving index must refresh by itself \
                 (1s is the default); -1 is for bulk loads, which use {at}.bulk_refresh_interval"
            ));
        } else if !is_interval(&self.refresh_interval) {
            errors.push(format!(
                "{at}.refresh_interval is `{}`, must be a number with ms, s, m or h (1s)",
                self.refresh_interval
            ));
        }
        if !is_interval(&self.bulk_refresh_interval) {
            errors.push(format!(
                "{at}.bulk_refresh_interval is `{}`, must be -1 or a number with ms, s, m or h \
                 (-1)",
                self.bulk_refresh_interval
            ));
        }
        positive(
            errors,
            &format!("{at}.request_timeout_ms"),
            self.request_timeout_ms,
        );
        if self.retries > 10 {
            errors.push(format!("{at}.retries is {}, must be 0..=10", self.retries));
        }
        let api_key = self.api_key_file.is_some() || !self.api_key_env.is_empty();
        let password = self.password_file.is_some() || !self.password_env.is_empty();
        if self.api_key_file.is_some() && !self.api_key_env.is_empty() {
            errors.push(format!("{at}: set api_key_file or api_key_env, not both"));
        }
        if self.password_file.is_some() && !self.password_env.is_empty() {
            errors.push(format!("{at}: set password_file or password_env, not both"));
        }
        if api_key && !self.username.is_empty() {
            errors.push(format!(
                "{at}: set an API key or a username (basic authentication), not both"
            ));
        }
        match (self.username.is_empty(), password) {
            (false, false) => {
                errors.push(format!("{at}.username needs password_file or password_env"))
            }
            (true, true) => errors.push(format!("{at}: a password needs username")),
            _ => {}
        }
    }
}

/// An Elasticsearch time value for `refresh_interval`: `-1` or digits with a unit.
fn is_interval(v: &str) -> bool {
    if v == "-1" {
        return true;
    }
    let unit = ["ms", "s", "m", "h"].into_iter().find(|u| v.ends_with(u));
    unit.is_some_and(|u| {
        let digits = &v[..v.len() - u.len()];
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    })
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
        if self.index.writer_nice > 19 {
            errors.push(format!(
                "index.writer_nice is {}, at most 19 (the lowest OS priority)",
                self.index.writer_nice
            ));
        }
        match self.index.backend {
            Backend::Tantivy => {}
            Backend::Elasticsearch if cfg!(feature = "elasticsearch") => {
                self.index.elasticsearch.validate(errors)
            }
            Backend::Elasticsearch => errors.push(
                "index.backend = \"elasticsearch\" needs a text-search built with the \
                 `elasticsearch` feature (cargo build -p braid-text-search --features \
                 elasticsearch)"
                    .into(),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(es: ElasticsearchConfig) -> Vec<String> {
        let mut errors = Vec::new();
        es.validate(&mut errors);
        errors
    }

    #[test]
    fn the_serving_index_must_refresh_by_itself() {
        assert!(errors(ElasticsearchConfig::default()).is_empty());
        let never = ElasticsearchConfig {
            refresh_interval: "-1".into(),
            ..ElasticsearchConfig::default()
        };
        let got = errors(never);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("index.elasticsearch.refresh_interval is -1")
                && got[0].contains("bulk_refresh_interval"),
            "{got:?}"
        );
        // A bulk load may turn refreshes off; nonsense is refused for both.
        let odd = ElasticsearchConfig {
            refresh_interval: "soon".into(),
            bulk_refresh_interval: "1 s".into(),
            ..ElasticsearchConfig::default()
        };
        let got = errors(odd);
        assert!(
            got.len() == 2 && got.iter().all(|e| e.contains("ms, s, m or h")),
            "{got:?}"
        );
    }

    #[test]
    fn the_writer_nice_value_stops_at_the_lowest_priority() {
        let with_nice = |writer_nice| {
            let mut config = TextSearchConfig::default();
            config.index.writer_nice = writer_nice;
            let mut errors = Vec::new();
            config.validate(&mut errors);
            errors
        };
        // The defaults may miss other settings (e.g. a service key): only the difference counts.
        let base = with_nice(0);
        assert_eq!(with_nice(19), base);
        let refused: Vec<_> = with_nice(20)
            .into_iter()
            .filter(|e| !base.contains(e))
            .collect();
        assert_eq!(
            refused,
            ["index.writer_nice is 20, at most 19 (the lowest OS priority)"]
        );
    }
}
