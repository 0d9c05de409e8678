use std::path::PathBuf;

use braid_core::config::{ServerConfig, TelemetryConfig, Validate, positive};
use serde::{Deserialize, Serialize};

/// Configuration of the embedding service (`BRAID_EMBEDDING__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub model: ModelConfig,
    pub limits: LimitsConfig,
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_texts_per_request: usize,
    pub max_text_bytes: usize,
    /// Requests waiting for the model; beyond it new requests get RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
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
            model: ModelConfig::default(),
            limits: LimitsConfig::default(),
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
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_texts_per_request: 256,
            max_text_bytes: 64 * 1024,
            queue_capacity: 1024,
        }
    }
}

impl Validate for EmbeddingConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.telemetry.validate(errors);
        positive(errors, "model.max_batch", self.model.max_batch as u64);
        positive(errors, "model.max_tokens", self.model.max_tokens as u64);
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

impl braid_core::entry::ServiceConfig for EmbeddingConfig {
    fn server(&self) -> &ServerConfig {
        &self.server
    }
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
