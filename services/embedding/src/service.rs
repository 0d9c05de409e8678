//! The `braid.v1.EmbeddingService` gRPC handlers.

use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::embedding_service_server::EmbeddingService;
use braid_proto::v1::{
    EmbedRequest, EmbedResponse, InputType, ModelInfoRequest, ModelInfoResponse, Vector,
};

use crate::embedder::{Embedder, InputKind, Provider};

pub struct EmbeddingApi {
    pub(crate) embedder: Embedder,
    pub(crate) max_tokens: usize,
}

/// "closed" / "half-open" / "open".
pub fn breaker_label(state: braid_core::resilience::BreakerState) -> &'static str {
    use braid_core::resilience::BreakerState;
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half-open",
        BreakerState::Open => "open",
    }
}

#[tonic::async_trait]
impl EmbeddingService for EmbeddingApi {
    async fn embed(
        &self,
        request: Request<EmbedRequest>,
    ) -> Result<Response<EmbedResponse>, Status> {
        let request = request.into_inner();
        // The model's convention (`model.query_prefix` / `model.document_prefix`) decides
        // what the input type changes; all-MiniLM-L6-v2 embeds both alike.
        let kind = match InputType::try_from(request.input_type) {
            Ok(InputType::Query) => InputKind::Query,
            _ => InputKind::Document,
        };
        let embedded = self.embedder.embed(request.texts, kind).await?;
        Ok(Response::new(EmbedResponse {
            embeddings: embedded
                .vectors
                .into_iter()
                .map(|values| Vector { values })
                .collect(),
            model: self.embedder.model.to_string(),
            dimensions: self.embedder.dimensions as u32,
            truncated: embedded.truncated,
        }))
    }

    async fn model_info(
        &self,
        _request: Request<ModelInfoRequest>,
    ) -> Result<Response<ModelInfoResponse>, Status> {
        let (provider, breaker_state) = match &self.embedder.provider {
            Provider::Local(_) => ("local", String::new()),
            Provider::OpenAi(client) => ("openai", breaker_label(client.breaker_state()).into()),
        };
        Ok(Response::new(ModelInfoResponse {
            model: self.embedder.model.to_string(),
            dimensions: self.embedder.dimensions as u32,
            max_tokens: self.max_tokens as u32,
            provider: provider.into(),
            breaker_state,
        }))
    }
}
