//! The public `braid.v1.Gateway` gRPC handlers: search here, document operations proxied to
//! the ingest service.

use std::pin::Pin;
use std::sync::Arc;

use braid_core::auth::Permission;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::gateway_server::Gateway;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, DiscardJobsRequest, DiscardJobsResponse,
    Document, DocumentResult, GetDocumentRequest, IngestRequest, IngestResponse,
    IngestStreamRequest, ListAuditRequest, ListAuditResponse, ListJobsRequest, ListJobsResponse,
    ReembedRequest, ReembedResponse, RetryJobsRequest, RetryJobsResponse, SearchRequest,
    SearchResponse, StatsRequest, StatsResponse, WaitIndexedRequest, WaitIndexedResponse,
};
use futures::Stream;
use tokio_stream::StreamExt;

use crate::audit::AuditSlot;
use crate::audit::store::AuditStore;
use crate::caller::caller;
use crate::error::GatewayError;
use crate::limits::{Class, Limits, fields, stream};
use crate::search::Searcher;

pub struct GatewayApi {
    pub(crate) searcher: Arc<Searcher>,
    pub(crate) limits: Arc<Limits>,
    /// `None` when audit is off.
    pub(crate) audit: Option<AuditStore>,
}

impl GatewayApi {
    /// Notes the caller in the audit record, then takes one call of `class` from its budgets.
    async fn admit<T>(
        &self,
        request: &Request<T>,
        class: Class,
        tenant: &str,
    ) -> Result<(), GatewayError> {
        let caller = caller(request);
        if let Some(slot) = AuditSlot::of(request) {
            let tenant = caller
                .tenant_for(tenant)
                .unwrap_or_else(|_| tenant.to_string());
            slot.caller(&caller, &tenant);
        }
        self.limits.admit(class, &caller, tenant).await
    }
}

/// Forwards a request to the ingest service, passing its status through.
fn proxied<T>(result: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    result.map_err(|s| GatewayError::Downstream(s).into())
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<DocumentResult, Status>> + Send>>;

#[tonic::async_trait]
impl Gateway for GatewayApi {
    type IngestStreamStream = ResultStream;

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        self.admit(&request, Class::Search, &request.get_ref().tenant)
            .await?;
        let slot = AuditSlot::of(&request);
        if let Some(slot) = &slot {
            slot.query(&request.get_ref().query);
        }
        let response = self.searcher.search(request.into_inner()).await?;
        if let Some(slot) = &slot {
            slot.results(
                response.hits.len(),
                response.hits.iter().map(|h| h.document_id.as_str()),
            );
        }
        Ok(Response::new(response))
    }

    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        self.admit(&request, Class::Ingest, &request.get_ref().tenant)
            .await?;
        fields::ingest(&self.limits.config.requests, request.get_ref())?;
        // Waiting for READY makes this a long call.
        let _long_call = if request.get_ref().wait_until_indexed {
            Some(self.limits.long_call(&caller(&request))?)
        } else {
            None
        };
        let slot = AuditSlot::of(&request);
        let response = proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .ingest(request.into_inner())
                .await,
        )?;
        if let Some(slot) = slot {
            let r = response.get_ref();
            slot.results(
                r.results.len(),
                r.results.iter().map(|d| d.document_id.as_str()),
            );
        }
        Ok(response)
    }

    async fn ingest_stream(
        &self,
        request: Request<tonic::Streaming<IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        self.admit(&request, Class::Ingest, "").await?;
        let long_call = self.limits.long_call(&caller(&request))?;
        // Documents flow through as they arrive (a client error, an idle client or a stream
        // over its budget ends the upload); results flow back the same way, so back-pressure
        // reaches from ingest to the client. A cut stream ends with the limit it hit.
        let (outbound, cut) =
            stream::guard(request.into_inner(), self.limits.config.stream.clone());
        let results = self
            .searcher
            .clients
            .ingest
            .clone()
            .ingest_stream(outbound)
            .await
            .map_err(GatewayError::Downstream)?
            .into_inner()
            .map(|r| r.map_err(|s| Status::from(GatewayError::Downstream(s))))
            .chain(
                futures::stream::once(async move {
                    // The long-call slot is held until the response stream ends.
                    drop(long_call);
                    cut.take()
                })
                .filter_map(|cut| cut.map(Err)),
            );
        Ok(Response::new(Box::pin(results)))
    }

    async fn wait_indexed(
        &self,
        request: Request<WaitIndexedRequest>,
    ) -> Result<Response<WaitIndexedResponse>, Status> {
        self.admit(&request, Class::Ingest, &request.get_ref().tenant)
            .await?;
        fields::wait_indexed(&self.limits.config.requests, request.get_ref())?;
        let _long_call = self.limits.long_call(&caller(&request))?;
        let slot = AuditSlot::of(&request);
        let response = proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .wait_indexed(request.into_inner())
                .await,
        )?;
        if let Some(slot) = slot {
            let r = response.get_ref();
            slot.results(
                r.results.len(),
                r.results.iter().map(|d| d.document_id.as_str()),
            );
        }
        Ok(response)
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        self.admit(&request, Class::Admin, &request.get_ref().tenant)
            .await?;
        fields::list_jobs(&self.limits.config.requests, request.get_ref())?;
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .list_jobs(request.into_inner())
                .await,
        )
    }

    async fn retry_jobs(
        &self,
        request: Request<RetryJobsRequest>,
    ) -> Result<Response<RetryJobsResponse>, Status> {
        self.admit(&request, Class::Admin, &request.get_ref().tenant)
            .await?;
        fields::retry_jobs(&self.limits.config.requests, request.get_ref())?;
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .retry_jobs(request.into_inner())
                .await,
        )
    }

    async fn discard_jobs(
        &self,
        request: Request<DiscardJobsRequest>,
    ) -> Result<Response<DiscardJobsResponse>, Status> {
        self.admit(&request, Class::Admin, &request.get_ref().tenant)
            .await?;
        fields::discard_jobs(&self.limits.config.requests, request.get_ref())?;
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .discard_jobs(request.into_inner())
                .await,
        )
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        self.admit(&request, Class::Admin, &request.get_ref().tenant)
            .await?;
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .stats(request.into_inner())
                .await,
        )
    }

    async fn reembed(
        &self,
        request: Request<ReembedRequest>,
    ) -> Result<Response<ReembedResponse>, Status> {
        self.admit(&request, Class::Admin, &request.get_ref().tenant)
            .await?;
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .reembed(request.into_inner())
                .await,
        )
    }

    async fn get_document(
        &self,
        request: Request<GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        self.admit(&request, Class::Search, &request.get_ref().tenant)
            .await?;
        let slot = AuditSlot::of(&request);
        let response = proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .get_document(request.into_inner())
                .await,
        )?;
        if let Some(slot) = slot {
            let r = response.get_ref();
            slot.results(1, [r.document_id.as_str()]);
        }
        Ok(response)
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        if let Some(slot) = AuditSlot::of(&request) {
            let id = &request.get_ref().document_id;
            slot.results(0, (!id.is_empty()).then_some(id.as_str()));
        }
        self.admit(&request, Class::Ingest, &request.get_ref().tenant)
            .await?;
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .delete_document(request.into_inner())
                .await,
        )
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        self.admit(&request, Class::Admin, &request.get_ref().tenant)
            .await?;
        if !caller(&request).allows(Permission::Operate) {
            return Err(
                GatewayError::PermissionDenied("ListAudit needs the admin role".into()).into(),
            );
        }
        let Some(store) = &self.audit else {
            return Err(GatewayError::NotConfigured(
                "the audit trail is off (set audit.database.url)".into(),
            )
            .into());
        };
        let slot = AuditSlot::of(&request);
        let response = crate::audit::list(store, request.into_inner()).await?;
        if let Some(slot) = slot {
            slot.results(response.records.len(), []);
        }
        Ok(Response::new(response))
    }
}
