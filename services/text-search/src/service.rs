//! The `braid.v1.TextSearchService` gRPC handlers, generic over the backend.

use std::sync::Arc;

use braid_core::auth::access_from_filter;
use braid_core::validate;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::text_search_service_server::TextSearchService;
use braid_proto::v1::{
    DeleteDocumentChunksRequest, DeleteDocumentChunksResponse, FetchChunksRequest,
    LegSearchRequest, LegSearchResponse, RebuildFinishRequest, RebuildFinishResponse,
    RebuildStartRequest, RebuildStartResponse, RebuildStatusRequest, RebuildStatusResponse,
    RebuildWriteRequest, RebuildWriteResponse, ReplaceDocumentRequest, ReplaceDocumentResponse,
    VerifyListChunksRequest, VerifyListChunksResponse,
};

use crate::error::TextError;
use crate::index::{IndexAdmin, TextIndex, TextQuery};

pub struct TextApi {
    pub(crate) index: Arc<dyn TextIndex>,
    /// The same index, for the recovery RPCs (see `recovery`).
    pub(crate) admin: Arc<dyn IndexAdmin>,
    pub(crate) max_top_k: u32,
    pub(crate) max_query_bytes: usize,
}

#[tonic::async_trait]
impl TextSearchService for TextApi {
    async fn replace_document(
        &self,
        request: Request<ReplaceDocumentRequest>,
    ) -> Result<Response<ReplaceDocumentResponse>, Status> {
        let r = request.into_inner();
        validate::replace_request(&r).map_err(TextError::from)?;
        let chunks = self
            .index
            .replace_document(&r.tenant, &r.document_id, r.chunks)
            .await?;
        Ok(Response::new(ReplaceDocumentResponse { chunks }))
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentChunksRequest>,
    ) -> Result<Response<DeleteDocumentChunksResponse>, Status> {
        let r = request.into_inner();
        validate::delete_request(&r).map_err(TextError::from)?;
        let deleted = self
            .index
            .delete_document(&r.tenant, &r.document_id)
            .await?;
        Ok(Response::new(DeleteDocumentChunksResponse { deleted }))
    }

    async fn search(
        &self,
        request: Request<LegSearchRequest>,
    ) -> Result<Response<LegSearchResponse>, Status> {
        let r = request.into_inner();
        validate::leg_search_request(&r, self.max_top_k).map_err(TextError::from)?;
        if r.query.trim().is_empty() {
            return Err(
                TextError::from(validate::FieldError::new("query", "must not be empty")).into(),
            );
        }
        if r.query.len() > self.max_query_bytes {
            return Err(TextError::from(validate::FieldError::new(
                "query",
                format!("{} bytes, at most {}", r.query.len(), self.max_query_bytes),
            ))
            .into());
        }
        let hits = self
            .index
            .search(TextQuery {
                tenant: r.tenant,
                query: r.query,
                top_k: r.top_k,
                filter: braid_core::filter::parse(r.filter.as_ref()).map_err(TextError::from)?,
                min_score: r.min_score,
                // Unset = public documents only (fail closed).
                access: access_from_filter(r.access.as_ref()),
                detail: r.detail_top_k,
                chunk_level: r.chunk_level,
            })
            .await?;
        Ok(Response::new(LegSearchResponse { hits }))
    }

    async fn fetch_chunks(
        &self,
        request: Request<FetchChunksRequest>,
    ) -> Result<Response<LegSearchResponse>, Status> {
        let r = request.into_inner();
        validate::tenant(&r.tenant).map_err(TextError::from)?;
        if r.chunk_ids.len() > self.max_top_k as usize {
            return Err(TextError::from(validate::FieldError::new(
                "chunk_ids",
                format!("{} ids, at most {}", r.chunk_ids.len(), self.max_top_k),
            ))
            .into());
        }
        if r.query.len() > self.max_query_bytes {
            return Err(TextError::from(validate::FieldError::new(
                "query",
                format!("{} bytes, at most {}", r.query.len(), self.max_query_bytes),
            ))
            .into());
        }
        let hits = self.index.fetch(&r.tenant, &r.query, r.chunk_ids).await?;
        Ok(Response::new(LegSearchResponse { hits }))
    }

    async fn verify_list_chunks(
        &self,
        request: Request<VerifyListChunksRequest>,
    ) -> Result<Response<VerifyListChunksResponse>, Status> {
        Ok(Response::new(
            crate::recovery::list_chunks(&*self.admin, request.into_inner()).await?,
        ))
    }

    async fn rebuild_status(
        &self,
        request: Request<RebuildStatusRequest>,
    ) -> Result<Response<RebuildStatusResponse>, Status> {
        Ok(Response::new(
            crate::recovery::status(&*self.admin, request.into_inner()).await?,
        ))
    }

    async fn rebuild_start(
        &self,
        request: Request<RebuildStartRequest>,
    ) -> Result<Response<RebuildStartResponse>, Status> {
        let r = request.into_inner();
        let rebuild_id = self.admin.rebuild_start(&r.supersedes_index_id).await?;
        Ok(Response::new(RebuildStartResponse { rebuild_id }))
    }

    async fn rebuild_write(
        &self,
        request: Request<RebuildWriteRequest>,
    ) -> Result<Response<RebuildWriteResponse>, Status> {
        Ok(Response::new(
            crate::recovery::write(&*self.admin, request.into_inner()).await?,
        ))
    }

    async fn rebuild_finish(
        &self,
        request: Request<RebuildFinishRequest>,
    ) -> Result<Response<RebuildFinishResponse>, Status> {
        let index_id = self
            .admin
            .rebuild_finish(&request.into_inner().rebuild_id)
            .await?;
        Ok(Response::new(RebuildFinishResponse { index_id }))
    }
}
