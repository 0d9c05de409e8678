//! The embedding pipeline every entry point shares (gRPC `Embed` and the OpenAI-compatible
//! HTTP endpoint): input limits, cache lookup, the provider (local model or a remote
//! OpenAI-compatible API) for the misses, cache fill, answers in input order.

use std::sync::Arc;

use crate::batcher::Batcher;
use crate::cache::EmbeddingCache;
use crate::config::{LimitsConfig, Oversize};
use crate::error::EmbeddingError;
use crate::openai::OpenAiProvider;

/// Where vectors come from.
#[derive(Clone)]
pub enum Provider {
    Local(Batcher),
    OpenAi(OpenAiProvider),
}

impl Provider {
    async fn embed(
        &self,
        texts: Vec<String>,
        kind: InputKind,
    ) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        match self {
            Provider::Local(batcher) => batcher.embed(texts, kind).await,
            Provider::OpenAi(client) => client.embed(texts).await,
        }
    }
}

/// Vectors for one request, plus which inputs were cut to the byte limit.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub truncated: Vec<u32>,
}

/// What a text is, for models that embed queries and documents differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Query,
    Document,
}

#[derive(Clone)]
pub struct Embedder {
    pub provider: Provider,
    pub cache: EmbeddingCache,
    pub limits: LimitsConfig,
    /// `name@revision` reported with every vector.
    pub model: Arc<str>,
    pub dimensions: usize,
    /// Prepended to queries / documents (e5: "query: " / "passage: "; empty for MiniLM).
    pub query_prefix: Arc<str>,
    pub document_prefix: Arc<str>,
    /// Cache namespace of query vectors when they come from another graph than documents'
    /// (`int8q` with `model.query_quantized`); `None` = queries and documents share entries.
    pub query_cache_variant: Option<Arc<str>>,
}

fn invalid(field: String, message: String) -> EmbeddingError {
    EmbeddingError::InvalidArgument { field, message }
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn truncate(text: &mut String, max: usize) {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

impl Embedder {
    /// Applies the request limits: count always rejects; length rejects or truncates per
    /// `limits.oversize`.
    fn apply_limits(&self, texts: &mut [String]) -> Result<Vec<u32>, EmbeddingError> {
        if texts.is_empty() {
            return Err(invalid(
                "texts".into(),
                "at least one text is required".into(),
            ));
        }
        if texts.len() > self.limits.max_texts_per_request {
            return Err(invalid(
                "texts".into(),
                format!(
                    "{} texts given, at most {} per request",
                    texts.len(),
                    self.limits.max_texts_per_request
                ),
            ));
        }
        let max = self.limits.max_text_bytes;
        let mut truncated = Vec::new();
        for (i, text) in texts.iter_mut().enumerate() {
            if text.len() <= max {
                continue;
            }
            match self.limits.oversize {
                Oversize::Reject => {
                    return Err(invalid(
                        format!("texts[{i}]"),
                        format!("{} bytes, at most {max} bytes", text.len()),
                    ));
                }
                Oversize::Truncate => {
                    truncate(text, max);
                    truncated.push(i as u32);
                }
            }
        }
        Ok(truncated)
    }

    pub async fn embed(
        &self,
        mut texts: Vec<String>,
        kind: InputKind,
    ) -> Result<Embedded, EmbeddingError> {
        let truncated = self.apply_limits(&mut texts)?;
        let prefix = match kind {
            InputKind::Query => &self.query_prefix,
            InputKind::Document => &self.document_prefix,
        };
        if !prefix.is_empty() {
            for t in &mut texts {
                t.insert_str(0, prefix);
            }
        }
        let keys: Vec<String> = match (kind, &self.query_cache_variant) {
            (InputKind::Query, Some(variant)) => texts
                .iter()
                .map(|t| self.cache.variant_key(variant, t))
                .collect(),
            _ => texts.iter().map(|t| self.cache.key(t)).collect(),
        };
        let cached = self.cache.get_many(&keys).await;
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| cached[i].is_none()).collect();
        let mut fresh = Vec::new();
        if !missing.is_empty() {
            let to_embed: Vec<String> = missing.iter().map(|&i| texts[i].clone()).collect();
            fresh = self.provider.embed(to_embed, kind).await?;
            if fresh.len() != missing.len() {
                return Err(EmbeddingError::Inference(format!(
                    "{} vectors for {} texts",
                    fresh.len(),
                    missing.len()
                )));
            }
        }
        let fresh: Vec<Arc<Vec<f32>>> = fresh.into_iter().map(Arc::new).collect();
        self.cache
            .put_many(
                missing
                    .iter()
                    .zip(&fresh)
                    .map(|(&i, v)| (keys[i].clone(), v.clone()))
                    .collect(),
            )
            .await;
        let mut fresh = fresh.into_iter();
        let vectors = cached
            .into_iter()
            .map(|hit| {
                hit.or_else(|| fresh.next())
                    .map(Arc::unwrap_or_clone)
                    .unwrap_or_default()
            })
            .collect();
        Ok(Embedded { vectors, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut s = "héllo".to_string(); // 'é' is 2 bytes: h(0) é(1,2) l(3)
        truncate(&mut s, 2);
        assert_eq!(s, "h");
        let mut s = "abc".to_string();
        truncate(&mut s, 10);
        assert_eq!(s, "abc");
    }
}
