//! The `braid.v1.VectorSearchService` gRPC handlers.

use braid_core::auth::access_from_filter;
use braid_core::validate;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::vector_search_service_server::VectorSearchService;
use braid_proto::v1::{
    DeleteDocumentChunksRequest, DeleteDocumentChunksResponse, LegSearchRequest, LegSearchResponse,
    PurgeModelsRequest, PurgeModelsResponse, ReplaceDocumentRequest, ReplaceDocumentResponse,
    VerifyChunk, VerifyListChunksRequest, VerifyListChunksResponse,
};

/// Documents per `VerifyListChunks` call.
const MAX_VERIFY_DOCUMENTS: usize = 500;

use crate::error::VectorError;
use crate::store::{self, Query, Store};

pub struct VectorApi {
    pub(crate) store: Store,
    pub(crate) dimensions: usize,
    pub(crate) max_top_k: u32,
}

impl From<validate::FieldError> for VectorError {
    fn from(e: validate::FieldError) -> Self {
        VectorError::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl VectorApi {
    fn check_vector(&self, field: &str, values: &[f32]) -> Result<(), VectorError> {
        if values.len() != self.dimensions {
            return Err(VectorError::invalid(
                field,
                format!("{} dimensions, expected {}", values.len(), self.dimensions),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(VectorError::invalid(field, "values must be finite"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl VectorSearchService for VectorApi {
    async fn replace_document(
        &self,
        request: Request<ReplaceDocumentRequest>,
    ) -> Result<Response<ReplaceDocumentResponse>, Status> {
        let r = request.into_inner();
        validate::replace_request(&r).map_err(VectorError::from)?;
        if r.embeddings.len() != r.chunks.len() {
            return Err(VectorError::invalid(
                "embeddings",
                format!(
                    "{} embeddings for {} chunks",
                    r.embeddings.len(),
                    r.chunks.len()
                ),
            )
            .into());
        }
        if r.model.is_empty() {
            return Err(VectorError::invalid("model", "must not be empty").into());
        }
        let embeddings: Vec<Vec<f32>> = r.embeddings.into_iter().map(|v| v.values).collect();
        for (i, v) in embeddings.iter().enumerate() {
            self.check_vector(&format!("embeddings[{i}]"), v)?;
        }
        let chunks = self
            .store
            .replace_document(
                &r.tenant,
                &r.document_id,
                &r.model,
                r.keep_other_models,
                &r.chunks,
                &embeddings,
            )
            .await?;
        Ok(Response::new(ReplaceDocumentResponse { chunks }))
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentChunksRequest>,
    ) -> Result<Response<DeleteDocumentChunksResponse>, Status> {
        let r = request.into_inner();
        validate::delete_request(&r).map_err(VectorError::from)?;
        let deleted = self
            .store
            .delete_document(&r.tenant, &r.document_id)
            .await?;
        Ok(Response::new(DeleteDocumentChunksResponse { deleted }))
    }

    async fn search(
        &self,
        request: Request<LegSearchRequest>,
    ) -> Result<Response<LegSearchResponse>, Status> {
        let r = request.into_inner();
        validate::leg_search_request(&r, self.max_top_k).map_err(VectorError::from)?;
        self.check_vector("embedding", &r.embedding)?;
        if r.ef_search > store::MAX_EF_SEARCH {
            return Err(VectorError::invalid(
                "ef_search",
                format!("is {}, at most {}", r.ef_search, store::MAX_EF_SEARCH),
            )
            .into());
        }
        let filter = braid_core::filter::parse(r.filter.as_ref()).map_err(VectorError::from)?;
        // Unset = public documents only (fail closed).
        let access = access_from_filter(r.access.as_ref());
        let hits = self
            .store
            .search(Query {
                tenant: &r.tenant,
                embedding: &r.embedding,
                top_k: r.top_k,
                filter: &filter,
                min_score: r.min_score,
                model: &r.model,
                access: &access,
                ef_search: (r.ef_search > 0).then_some(r.ef_search),
            })
            .await?;
        Ok(Response::new(LegSearchResponse { hits }))
    }

    async fn purge_models(
        &self,
        request: Request<PurgeModelsRequest>,
    ) -> Result<Response<PurgeModelsResponse>, Status> {
        let r = request.into_inner();
        if r.keep_model.is_empty() {
            return Err(VectorError::invalid(
                "keep_model",
                "must name the model whose vectors stay",
            )
            .into());
        }
        let deleted = self.store.purge_models(&r.keep_model).await?;
        tracing::info!(keep = %r.keep_model, deleted, "purged vectors of other models");
        Ok(Response::new(PurgeModelsResponse { deleted }))
    }

    async fn verify_list_chunks(
        &self,
        request: Request<VerifyListChunksRequest>,
    ) -> Result<Response<VerifyListChunksResponse>, Status> {
        let r = request.into_inner();
        if r.documents.len() > MAX_VERIFY_DOCUMENTS {
            return Err(VectorError::invalid(
                "documents",
                format!(
                    "{} documents, at most {MAX_VERIFY_DOCUMENTS}",
                    r.documents.len()
                ),
            )
            .into());
        }
        let (mut tenants, mut ids) = (Vec::new(), Vec::new());
        for (i, key) in r.documents.into_iter().enumerate() {
            let field = |e: validate::FieldError| {
                VectorError::invalid(format!("documents[{i}].{}", e.field), e.message)
            };
            validate::tenant(&key.tenant).map_err(field)?;
            let id = validate::document_id(&key.document_id).map_err(field)?;
            tenants.push(key.tenant);
            ids.push(id.0);
        }
        let chunks = self
            .store
            .list_chunks(&tenants, &ids)
            .await?
            .into_iter()
            .map(
                |(tenant, document_id, chunk_id, text_sha256, model)| VerifyChunk {
                    tenant,
                    document_id,
                    chunk_id,
                    text_sha256,
                    model,
                },
            )
            .collect();
        Ok(Response::new(VerifyListChunksResponse { chunks }))
    }
}
