//! The public `braid.v1.Gateway` gRPC handlers: search here, document operations proxied to
//! the ingest service.

use std::pin::Pin;
use std::sync::Arc;

use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::gateway_server::Gateway;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, DiscardJobsRequest, DiscardJobsResponse,
    Document, DocumentResult, GetDocumentRequest, IngestRequest, IngestResponse,
    IngestStreamRequest, ListJobsRequest, ListJobsResponse, ReembedRequest, ReembedResponse,
    RetryJobsRequest, RetryJobsResponse, SearchRequest, SearchResponse, StatsRequest,
    StatsResponse, WaitIndexedRequest, WaitIndexedResponse,
};
use futures::Stream;
use tokio_stream::StreamExt;

use crate::error::GatewayError;
use crate::search::Searcher;

pub struct GatewayApi {
    pub(crate) searcher: Arc<Searcher>,
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
        let response = self.searcher.search(request.into_inner()).await?;
        Ok(Response::new(response))
    }

    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .ingest(request.into_inner())
                .await,
        )
    }

    async fn ingest_stream(
        &self,
        request: Request<tonic::Streaming<IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        // Documents flow through as they arrive (a client error ends the upload); results
        // flow back the same way, so back-pressure reaches from ingest to the client.
        let outbound = request
            .into_inner()
            .take_while(|m| m.is_ok())
            .filter_map(|m| m.ok());
        let results = self
            .searcher
            .clients
            .ingest
            .clone()
            .ingest_stream(outbound)
            .await
            .map_err(GatewayError::Downstream)?
            .into_inner()
            .map(|r| r.map_err(|s| Status::from(GatewayError::Downstream(s))));
        Ok(Response::new(Box::pin(results)))
    }

    async fn wait_indexed(
        &self,
        request: Request<WaitIndexedRequest>,
    ) -> Result<Response<WaitIndexedResponse>, Status> {
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .wait_indexed(request.into_inner())
                .await,
        )
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
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
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .get_document(request.into_inner())
                .await,
        )
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        proxied(
            self.searcher
                .clients
                .ingest
                .clone()
                .delete_document(request.into_inner())
                .await,
        )
    }
}
