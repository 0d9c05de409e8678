//! The public `braid.v1.Gateway` gRPC handlers: search here, document operations proxied to
//! the ingest service.

use std::sync::Arc;

use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::gateway_server::Gateway;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, Document, GetDocumentRequest, IngestRequest,
    IngestResponse, SearchRequest, SearchResponse,
};

use crate::error::GatewayError;
use crate::search::Searcher;

pub struct GatewayApi {
    pub(crate) searcher: Arc<Searcher>,
}

/// Forwards a request to the ingest service, passing its status through.
fn proxied<T>(result: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    result.map_err(|s| GatewayError::Downstream(s).into())
}

#[tonic::async_trait]
impl Gateway for GatewayApi {
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
