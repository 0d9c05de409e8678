use std::path::PathBuf;

use braid_core::auth::internal::InternalAuthConfig;
use braid_core::config::{ServerConfig, TelemetryConfig, Validate, positive};
use serde::{Deserialize, Serialize};

use crate::cache::CacheConfig;
use crate::model::{Engine, Gelu};
use crate::openai::{OpenAiConfig, OpenAiServerConfig};

/// Configuration of the embedding service (`BRAID_EMBEDDING__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Service credentials: required from callers, sent to downstream services.
    pub internal_auth: InternalAuthConfig,
    pub model: ModelConfig,
    pub limits: LimitsConfig,
    pub provider: ProviderConfig,
    pub cache: CacheConfig,
    pub openai_server: OpenAiServerConfig,
}

/// Where vectors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The in-process model (`model.*`).
    #[default]
    Local,
    /// A remote OpenAI-compatible `/v1/embeddings` (`provider.openai.*`).
    Openai,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// Where vectors come from.
    pub kind: ProviderKind,
    pub openai: OpenAiConfig,
}

/// What happens to a text over `limits.max_text_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    /// INVALID_ARGUMENT naming the text and the limit.
    #[default]
    Reject,
    /// Cut at the limit (on a character boundary); the response lists the indices cut.
    Truncate,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Directory holding `config.json`, `tokenizer.json` and `model.safetensors`.
    pub dir: PathBuf,
    /// Name reported with every vector.
    pub name: String,
    /// Tokens per input; longer inputs are truncated (all-MiniLM-L6-v2 was trained on 256).
    pub max_tokens: usize,
    /// Largest number of texts run through the model at once.
    pub max_batch: usize,
    /// Largest padded batch, in tokens (texts x longest text). On CPU a forward pass costs
    /// about the same per token at any batch size, so padding is pure loss: long texts (ingest
    /// chunks) run alone, short ones (queries) are merged. See BENCHMARKS.md.
    pub max_batch_tokens: usize,
    /// `onnx` (ONNX Runtime, default) or `candle` (pure Rust, slower).
    pub engine: Engine,
    /// ONNX Runtime only: the int8 graph (`model.int8.onnx`, written by
    /// `deploy/scripts/quantize_onnx.py` at set-up: 7-bit weights, activations quantised per
    /// token, so a vector depends on its text alone) instead of fp32. Its vectors differ
    /// slightly, so it is another model identity (`…@<revision>-int8-per-token`): switching
    /// re-embeds. Speed and retrieval quality against fp32: BENCHMARKS.md.
    pub quantized: bool,
    /// candle only: `tanh` (default, faster) or `exact` GELU; both match the reference at
    /// cosine > 0.999.
    pub gelu: Gelu,
    /// The ONNX Runtime shared library (the set-up script unpacks it from the PyPI wheel).
    pub onnx_runtime: PathBuf,
    /// Prepended to query texts (e5: "query: ", bge: its instruction); empty for MiniLM.
    pub query_prefix: String,
    /// Prepended to document texts (e5: "passage: "); empty for MiniLM.
    pub document_prefix: String,
    /// Model threads, each with its own copy of the model (~90 MB), taking batches from one
    /// queue (0 = one per core, at most 4). Independent single-threaded forward passes cost
    /// less CPU per token than one pass split across threads (BENCHMARKS.md, "Embedding engine
    /// settings"); a large request is cut into one share per thread, so it still uses every core.
    pub workers: usize,
    /// Threads per forward pass (0 = cores / workers).
    pub threads: usize,
    /// Model copies that embed only search queries (0 = none): a query then never waits for
    /// a document forward pass. Each copy costs ~90 MB.
    pub query_workers: usize,
    /// Threads per query forward pass (default 1; 0 = one per core). More threads lower one
    /// query's latency on an idle machine but cost more CPU per query (thread hand-offs), which
    /// is what bounds query throughput under load (BENCHMARKS.md).
    pub query_threads: usize,
    /// Threads for a document forward pass run while every other document model thread is
    /// idle (0 = one per core, 1 = off): a lone small request (one text) then uses every core
    /// instead of one. Costs one more model copy (~90 MB fp32), shared by the document threads
    /// and used only when it is free. BENCHMARKS.md, "Embedding speed".
    pub lone_pass_threads: usize,
    /// ONNX Runtime only: the query model threads run the int8 graph (`model.int8.onnx`)
    /// while documents keep fp32 and the fp32 model identity, so nothing is re-embedded:
    /// about half the CPU per query. Needs `model.query_workers` >= 1 (document threads then
    /// leave queries to them, so every query vector comes from the int8 graph). Retrieval
    /// quality against fp32 queries: BENCHMARKS.md ("Retrieval quality of the int8 model").
    pub query_quantized: bool,
    /// How much lower the OS priority (nice value, Linux) of the document model threads is
    /// than the service's own: under CPU contention a bulk ingest yields the cores to search
    /// queries and still uses every idle cycle (0 = same priority, 1-19). Applies with
    /// query model threads (`model.query_workers` >= 1), which then run every query at the
    /// service's priority, and with ONNX Runtime (candle's matrix kernels share one
    /// process-wide pool, so the option is ignored there). BENCHMARKS.md, "Search during
    /// bulk ingest".
    pub document_nice: u8,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Texts in one Embed request.
    pub max_texts_per_request: usize,
    /// Bytes of one text; a longer one is handled as `oversize` says.
    pub max_text_bytes: usize,
    /// Requests waiting for the model, per lane (queries, documents); beyond it new requests
    /// get RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    /// What happens to a text over `max_text_bytes`.
    pub oversize: Oversize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            // Long texts in large batches take seconds on CPU: allow for it.
            server: ServerConfig {
                request_timeout_ms: 120_000,
                ..ServerConfig::with_ports(50053, 9103)
            },
            telemetry: TelemetryConfig::default(),
            internal_auth: InternalAuthConfig::default(),
            model: ModelConfig::default(),
            limits: LimitsConfig::default(),
            provider: ProviderConfig::default(),
            cache: CacheConfig::default(),
            openai_server: OpenAiServerConfig::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".braid/models/all-MiniLM-L6-v2"),
            name: "sentence-transformers/all-MiniLM-L6-v2".into(),
            max_tokens: 256,
            max_batch: 32,
            max_batch_tokens: 256,
            engine: Engine::default(),
            quantized: false,
            gelu: Gelu::default(),
            onnx_runtime: PathBuf::from(".braid/lib/libonnxruntime.so"),
            query_prefix: String::new(),
            document_prefix: String::new(),
            workers: 0,
            threads: 0,
            query_workers: 1,
            query_threads: 1,
            lone_pass_threads: 0,
            query_quantized: false,
            document_nice: 10,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_texts_per_request: 256,
            max_text_bytes: 64 * 1024,
            queue_capacity: 1024,
            oversize: Oversize::default(),
        }
    }
}

impl Validate for EmbeddingConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.telemetry.validate(errors);
        self.internal_auth.validate(errors);
        if self.openai_server.enabled && self.openai_server.api_key.is_configured() {
            self.openai_server
                .api_key
                .validate("openai_server.api_key", errors);
        }
        positive(errors, "model.max_batch", self.model.max_batch as u64);
        positive(
            errors,
            "model.max_batch_tokens",
            self.model.max_batch_tokens as u64,
        );
        if self.provider.kind == ProviderKind::Openai {
            self.provider.openai.validate(errors);
        }
        self.cache.validate(errors);
        positive(errors, "model.max_tokens", self.model.max_tokens as u64);
        if self.model.quantized && self.model.engine != Engine::Onnx {
            errors.push("model.quantized needs model.engine = \"onnx\" (the int8 graph runs on ONNX Runtime)".into());
        }
        if self.model.query_quantized && self.model.engine != Engine::Onnx {
            errors.push("model.query_quantized needs model.engine = \"onnx\" (the int8 graph runs on ONNX Runtime)".into());
        }
        if self.model.query_quantized && self.model.query_workers == 0 {
            errors.push("model.query_quantized needs model.query_workers >= 1 (the int8 graph runs on the query model threads)".into());
        }
        if self.model.document_nice > 19 {
            errors.push(format!(
                "model.document_nice is {}, at most 19 (the lowest OS priority)",
                self.model.document_nice
            ));
        }
        if self.model.max_tokens > 512 {
            errors.push("model.max_tokens must be at most 512 (position embeddings)".into());
        }
        positive(
            errors,
            "limits.max_texts_per_request",
            self.limits.max_texts_per_request as u64,
        );
        positive(
            errors,
            "limits.max_text_bytes",
            self.limits.max_text_bytes as u64,
        );
        positive(
            errors,
            "limits.queue_capacity",
            self.limits.queue_capacity as u64,
        );
    }
}

impl ModelConfig {
    /// The nice increment the document model threads really get: none without query model
    /// threads (queries would then run on the lowered threads) or on candle (its kernels run
    /// on a pool shared with the query model).
    pub fn effective_document_nice(&self) -> u8 {
        if self.query_workers == 0 || self.engine != Engine::Onnx {
            0
        } else {
            self.document_nice
        }
    }

    /// The embedding cache's namespace for query vectors when they come from another graph
    /// than the documents' (int8 queries against fp32 documents).
    pub fn query_cache_variant(&self) -> Option<&'static str> {
        (self.query_quantized
            && !self.quantized
            && self.query_workers > 0
            && self.engine == Engine::Onnx)
            .then_some("int8q")
    }

    /// Whether document model threads also run queries (between two document passes, and
    /// when idle): only when every model thread runs the same graph at the same priority.
    pub fn document_threads_take_queries(&self) -> bool {
        // With `quantized`, every thread runs the int8 graph already.
        let same_graph = !self.query_quantized || self.quantized;
        self.query_workers == 0 || (self.effective_document_nice() == 0 && same_graph)
    }

    /// (model threads, threads per forward pass) after resolving the 0 = automatic values.
    pub fn parallelism(&self) -> (usize, usize) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = match self.workers {
            0 => cores.min(4),
            n => n,
        };
        let threads = match self.threads {
            0 => (cores / workers).max(1),
            n => n,
        };
        (workers, threads)
    }

    /// Threads of the model for lone document passes, if one is worth loading (ONNX Runtime
    /// only, and more threads than a document pass has anyway).
    pub fn lone_pass_threads(&self) -> Option<usize> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (_, threads) = self.parallelism();
        let lone = match self.lone_pass_threads {
            0 => cores,
            n => n,
        };
        (self.engine == Engine::Onnx && lone > threads).then_some(lone)
    }
}

impl braid_core::entry::ServiceConfig for EmbeddingConfig {
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

    fn errors(config: &EmbeddingConfig) -> Vec<String> {
        let mut errors = Vec::new();
        config.validate(&mut errors);
        errors
    }

    #[test]
    fn the_quantised_model_needs_the_onnx_engine() {
        let mut config = EmbeddingConfig::default();
        config.model.quantized = true;
        assert!(
            !errors(&config)
                .iter()
                .any(|e| e.contains("model.quantized")),
            "int8 on ONNX Runtime is valid"
        );
        config.model.engine = Engine::Candle;
        let found = errors(&config);
        assert!(
            found.iter().any(|e| e.contains("model.quantized")),
            "{found:?}"
        );
    }

    #[test]
    fn int8_queries_need_onnx_and_query_threads_and_nice_is_bounded() {
        let mut config = EmbeddingConfig::default();
        config.model.query_quantized = true;
        let found = errors(&config);
        assert!(!found.iter().any(|e| e.contains("model.")), "{found:?}");
        config.model.query_workers = 0;
        config.model.engine = Engine::Candle;
        config.model.document_nice = 20;
        let found = errors(&config);
        for wanted in [
            "model.query_quantized needs model.engine",
            "model.query_quantized needs model.query_workers",
            "model.document_nice is 20, at most 19",
        ] {
            assert!(
                found.iter().any(|e| e.contains(wanted)),
                "{wanted}: {found:?}"
            );
        }
    }

    #[test]
    fn document_threads_keep_queries_only_at_equal_priority_and_graph() {
        let mut m = ModelConfig::default();
        assert_eq!(m.effective_document_nice(), 10);
        assert!(
            !m.document_threads_take_queries(),
            "lowered threads leave queries"
        );
        m.document_nice = 0;
        assert!(m.document_threads_take_queries());
        m.query_quantized = true;
        assert!(
            !m.document_threads_take_queries(),
            "fp32 threads never answer int8 queries"
        );
        m.query_workers = 0;
        m.document_nice = 10;
        assert_eq!(
            m.effective_document_nice(),
            0,
            "no query threads: nothing lowered"
        );
        assert!(m.document_threads_take_queries());
        let candle = ModelConfig {
            engine: Engine::Candle,
            ..ModelConfig::default()
        };
        assert_eq!(candle.effective_document_nice(), 0);
    }
}
