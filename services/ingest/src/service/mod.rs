//! The `braid.v1.IngestService` gRPC surface: each RPC checks the caller's permission here
//! (the whole table in one place), then runs in `documents` (ingest, wait, get, delete) or
//! `operator` (jobs, re-embedding, stats, reindex, verify). `prepare` validates, extracts,
//! redacts and chunks a document.

mod documents;
mod operator;
mod prepare;

use std::sync::Arc;

use braid_core::auth::{Permission, Principal};
use braid_core::validate;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::ingest_service_server::IngestService;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, DiscardJobsRequest, DiscardJobsResponse,
    Document, DocumentResult, DocumentStatus, GetDocumentRequest, IndexGenerationRequest,
    IndexGenerationResponse, IngestRequest, IngestResponse, IngestStreamRequest, ListJobsRequest,
    ListJobsResponse, MetadataTypesRequest, MetadataTypesResponse, ReembedRequest, ReembedResponse,
    ReindexRequest, ReindexResponse, ReindexStatusRequest, RetryJobsRequest, RetryJobsResponse,
    StatsRequest, StatsResponse, VerifyRequest, VerifyResponse, WaitIndexedRequest,
    WaitIndexedResponse,
};
use tokio::sync::Notify;
use tokio_stream::wrappers::ReceiverStream;

use crate::chunk::Tokenize;
use crate::config::{ChunkingConfig, LimitsConfig};
use crate::error::IngestError;
use crate::redact::Redactor;
use crate::store::Store;

/// Everything that decides how a document is validated and cut up.
#[derive(Clone)]
pub struct Rules {
    pub limits: LimitsConfig,
    pub chunking: ChunkingConfig,
    pub redaction: Arc<Redactor>,
    pub tokenizer: Arc<dyn Tokenize>,
    /// Declared metadata types, enforced per document.
    pub metadata_types: Arc<braid_core::filter::MetadataTypes>,
}

#[derive(Clone)]
pub struct IngestApi {
    pub(crate) store: Store,
    /// Reindex and verify (see `recovery`).
    pub(crate) recovery: crate::recovery::Recovery,
    pub(crate) rules: Rules,
    pub(crate) wake: Arc<Notify>,
    pub(crate) progress: Arc<Notify>,
    /// For `Reembed`: the embedding service's current model, and vector purges.
    pub(crate) downstream: crate::worker::Downstream,
}

pub fn status_from_db(s: &str) -> DocumentStatus {
    match s {
        "pending" => DocumentStatus::Pending,
        "indexing" => DocumentStatus::Indexing,
        "ready" => DocumentStatus::Ready,
        "partial" => DocumentStatus::Partial,
        "failed" => DocumentStatus::Failed,
        "deleting" => DocumentStatus::Deleting,
        _ => DocumentStatus::Unspecified,
    }
}

fn is_settled(s: DocumentStatus) -> bool {
    matches!(
        s,
        DocumentStatus::Ready | DocumentStatus::Partial | DocumentStatus::Failed
    )
}

/// The verified caller (the internal auth layer's principal: a forwarded user, or the
/// calling service), allowed to do `needs`.
fn caller<T>(request: &Request<T>, needs: Permission) -> Result<Principal, IngestError> {
    let caller = braid_core::auth::principal(request)
        .cloned()
        .ok_or(IngestError::Unauthenticated)?;
    if !caller.allows(needs) {
        return Err(IngestError::PermissionDenied(format!(
            "role {} may not do this",
            caller.role.as_str()
        )));
    }
    Ok(caller)
}

/// The tenant a document request acts in: the caller's own (naming another is
/// PERMISSION_DENIED), or the named one for a cross-tenant caller.
fn document_tenant(caller: &Principal, requested: &str) -> Result<String, IngestError> {
    let tenant = caller.tenant_for(requested)?;
    validate::tenant(&tenant)?;
    Ok(tenant)
}

/// The tenant scope of an operator call (`None` = every tenant, cross-tenant callers only).
fn tenant_scope(caller: &Principal, requested: &str) -> Result<Option<String>, IngestError> {
    match caller.access.tenant {
        Some(_) => Ok(Some(document_tenant(caller, requested)?)),
        None => Ok(tenant_filter(requested)?.map(str::to_string)),
    }
}

/// An optional tenant filter for admin calls: empty means every tenant.
fn tenant_filter(tenant: &str) -> Result<Option<&str>, IngestError> {
    if tenant.is_empty() {
        return Ok(None);
    }
    validate::tenant(tenant)?;
    Ok(Some(tenant))
}

type ResultStream = ReceiverStream<Result<DocumentResult, Status>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    type IngestStreamStream = ResultStream;

    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        let caller = caller(&request, Permission::Write)?;
        Ok(Response::new(
            self.ingest_batch(&caller, request.into_inner()).await?,
        ))
    }

    async fn ingest_stream(
        &self,
        request: Request<tonic::Streaming<IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        let caller = caller(&request, Permission::Write)?;
        self.stream_documents(caller, request.into_inner()).await
    }

    async fn wait_indexed(
        &self,
        request: Request<WaitIndexedRequest>,
    ) -> Result<Response<WaitIndexedResponse>, Status> {
        let caller = caller(&request, Permission::Write)?;
        self.wait_for_documents(&caller, request.into_inner()).await
    }

    async fn get_document(
        &self,
        request: Request<GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let caller = caller(&request, Permission::Read)?;
        self.document(&caller, request.into_inner()).await
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        let caller = caller(&request, Permission::Write)?;
        self.remove_document(&caller, request.into_inner()).await
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.jobs_page(&caller, request.into_inner()).await
    }

    async fn retry_jobs(
        &self,
        request: Request<RetryJobsRequest>,
    ) -> Result<Response<RetryJobsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.retry_selected(&caller, request.into_inner()).await
    }

    async fn discard_jobs(
        &self,
        request: Request<DiscardJobsRequest>,
    ) -> Result<Response<DiscardJobsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.discard_selected(&caller, request.into_inner()).await
    }

    async fn reembed(
        &self,
        request: Request<ReembedRequest>,
    ) -> Result<Response<ReembedResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.reembed_documents(&caller, request.into_inner()).await
    }

    async fn index_generation(
        &self,
        request: Request<IndexGenerationRequest>,
    ) -> Result<Response<IndexGenerationResponse>, Status> {
        let caller = caller(&request, Permission::Read)?;
        self.generation(&caller, request.into_inner()).await
    }

    async fn metadata_types(
        &self,
        request: Request<MetadataTypesRequest>,
    ) -> Result<Response<MetadataTypesResponse>, Status> {
        let caller = caller(&request, Permission::Read)?;
        let tenant = document_tenant(&caller, &request.get_ref().tenant)?;
        let types = self.rules.metadata_types.for_tenant(&tenant);
        Ok(Response::new(types.to_proto()))
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.tenant_stats(&caller, request.into_inner()).await
    }

    async fn reindex(
        &self,
        request: Request<ReindexRequest>,
    ) -> Result<Response<ReindexResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.start_reindex(&caller, request.into_inner()).await
    }

    async fn reindex_status(
        &self,
        request: Request<ReindexStatusRequest>,
    ) -> Result<Response<ReindexResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.reindex_run(&caller, request.into_inner()).await
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        self.verify_legs(&caller, request.into_inner()).await
    }
}
