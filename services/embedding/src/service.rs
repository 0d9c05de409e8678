//! The `braid.v1.EmbeddingService` gRPC handlers.

use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::embedding_service_server::EmbeddingService;
use braid_proto::v1::{EmbedRequest, EmbedResponse, ModelInfoRequest, ModelInfoResponse, Vector};

use crate::batcher::Batcher;
use crate::config::LimitsConfig;
use crate::error::EmbeddingError;

pub struct EmbeddingApi {
    pub(crate) batcher: Batcher,
    pub(crate) limits: LimitsConfig,
    /// `name@revision`.
    pub(crate) model: String,
    pub(crate) dimensions: usize,
    pub(crate) max_tokens: usize,
}

impl EmbeddingApi {
    fn validate(&self, request: &EmbedRequest) -> Result<(), EmbeddingError> {
        let invalid =
            |field: String, message: String| EmbeddingError::InvalidArgument { field, message };
        if request.texts.is_empty() {
            return Err(invalid(
                "texts".into(),
                "at least one text is required".into(),
            ));
        }
        if request.texts.len() > self.limits.max_texts_per_request {
            return Err(invalid(
                "texts".into(),
                format!(
                    "{} texts given, at most {} per request",
                    request.texts.len(),
                    self.limits.max_texts_per_request
                ),
            ));
        }
        for (i, text) in request.texts.iter().enumerate() {
            if text.len() > self.limits.max_text_bytes {
                return Err(invalid(
                    format!("texts[{i}]"),
                    format!(
                        "{} bytes, at most {} bytes",
                        text.len(),
                        self.limits.max_text_bytes
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl EmbeddingService for EmbeddingApi {
    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let request = request.into_inner();
        self.validate(&request)?;
        // all-MiniLM-L6-v2 uses no query/document prefixes, so `input_type` does not change
        // the text; models that do (e5, bge) would apply their prefix here.
        let vectors = self.batcher.embed(request.texts).await?;
        Ok(Response::new(EmbedResponse {
            embeddings: vectors
                .into_iter()
                .map(|values| Vector { values })
                .collect(),
            model: self.model.clone(),
            dimensions: self.dimensions as u32,
        }))
    }

    async fn model_info(
        &self,
        _request: Request<ModelInfoRequest>,
    ) -> Result<Response<ModelInfoResponse>, Status> {
        Ok(Response::new(ModelInfoResponse {
            model: self.model.clone(),
            dimensions: self.dimensions as u32,
            max_tokens: self.max_tokens as u32,
        }))
    }
}
