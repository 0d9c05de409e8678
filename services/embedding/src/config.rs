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
    /// ONNX Runtime only: the int8 dynamically-quantised graph (`model.int8.onnx`, written by
    /// `deploy/scripts/quantize_onnx.py` at set-up) instead of fp32. Its vectors differ
    /// slightly, so it is another model identity (`…@<revision>-int8`): switching re-embeds.
    /// Speed and retrieval quality against fp32: BENCHMARKS.md.
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_texts_per_request: usize,
    pub max_text_bytes: usize,
    /// Requests waiting for the model, per lane (queries, documents); beyond it new requests
    /// get RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
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
}
