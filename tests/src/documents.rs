//! Documents for a test and loading them through the gateway.
//!
//! [`doc`] makes a plain-text document ([`titled`]: one titled with its id); the
//! [`DocumentInputExt`] methods add a title, a mime type, metadata or an ACL, so a call site
//! shows everything it sends (titles are scored: a test's title is part of its ranking).
//! [`Ingest`] is one Ingest call as most tests make it (wait until indexed, at most 120 s),
//! with a tenant, a user token or no wait when the test needs one; it ends in the check the
//! test relies on (every document READY, every document accepted), in each document's result,
//! or in the response or `Status` as they are, for a test that expects a refusal.

use braid_proto::tonic::transport::Channel;
use braid_proto::tonic::{Request, Status};
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::{
    DocumentAcl, DocumentInput, DocumentResult, DocumentStatus, IngestRequest, IngestResponse,
};

use crate::as_user;

/// How long an [`Ingest`] that waits lets the service wait for the documents to be indexed.
const WAIT_TIMEOUT_MS: u32 = 120_000;

/// A `text/plain` document `id` with `content`: no title, no metadata, no ACL.
pub fn doc(id: impl Into<String>, content: impl Into<String>) -> DocumentInput {
    DocumentInput {
        external_id: id.into(),
        content: content.into(),
        mime_type: "text/plain".into(),
        ..Default::default()
    }
}

/// A [`doc`] titled with its id.
pub fn titled(id: &str, content: impl Into<String>) -> DocumentInput {
    doc(id, content).title(id)
}

/// An ACL: readers need `clearance` and (when `groups` is not empty) one of `groups`.
pub fn acl(clearance: u32, groups: &[&str]) -> Option<DocumentAcl> {
    Some(DocumentAcl {
        clearance,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    })
}

/// The rest of a [`doc`]: each method sets one field and returns the document.
pub trait DocumentInputExt {
    /// Sets the title.
    fn title(self, title: impl Into<String>) -> Self;
    /// Sets the mime type (`""` sends none: the service reads that as `text/plain`).
    fn mime(self, mime_type: impl Into<String>) -> Self;
    /// Adds the metadata entry `key` = `value`.
    fn meta(self, key: impl Into<String>, value: impl Into<String>) -> Self;
    /// Sets the ACL (`None`: everyone in the tenant).
    fn acl(self, acl: Option<DocumentAcl>) -> Self;
}

impl DocumentInputExt for DocumentInput {
    fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    fn mime(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = mime_type.into();
        self
    }

    fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    fn acl(mut self, acl: Option<DocumentAcl>) -> Self {
        self.acl = acl;
        self
    }
}

/// One Ingest call through the gateway: into the caller's tenant, waiting until every
/// document is indexed (at most 120 s), without a user token, unless told otherwise.
#[derive(Debug, Clone)]
pub struct Ingest {
    request: IngestRequest,
    token: Option<String>,
}

impl Ingest {
    /// Ingest `documents`.
    pub fn new(documents: Vec<DocumentInput>) -> Self {
        Self {
            request: IngestRequest {
                tenant: String::new(),
                documents,
                wait_until_indexed: true,
                wait_timeout_ms: WAIT_TIMEOUT_MS,
                idempotency_key: String::new(),
            },
            token: None,
        }
    }

    /// Into `tenant` (empty: the caller's).
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.request.tenant = tenant.into();
        self
    }

    /// As the holder of the user token `token`.
    pub fn as_user(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Reply when the documents are accepted instead of when they are indexed.
    pub fn no_wait(mut self) -> Self {
        self.request.wait_until_indexed = false;
        self.request.wait_timeout_ms = 0;
        self
    }

    /// The request, with the token as its bearer credential if there is one.
    pub fn request(self) -> Request<IngestRequest> {
        match &self.token {
            Some(token) => as_user(self.request, token),
            None => Request::new(self.request),
        }
    }

    /// Sends the request; the response or the refusal as they are.
    pub async fn send(self, gw: &mut GatewayClient<Channel>) -> Result<IngestResponse, Status> {
        gw.ingest(self.request()).await.map(|r| r.into_inner())
    }

    /// Sends the request and returns each document's result, in order; panics on a refused
    /// call (for tests that expect some documents to be rejected).
    pub async fn results(self, gw: &mut GatewayClient<Channel>) -> Vec<DocumentResult> {
        self.send(gw).await.expect("ingest").results
    }

    /// Sends the request and returns the document ids in order; panics on a refused call, a
    /// missing result or any rejected document.
    pub async fn accepted(self, gw: &mut GatewayClient<Channel>) -> Vec<String> {
        self.ids(gw, |r| assert_eq!(r.error, "", "{r:?}")).await
    }

    /// Sends the request and returns the document ids in order; panics on a refused call, a
    /// missing result or any document that was rejected or is not READY.
    pub async fn ready(self, gw: &mut GatewayClient<Channel>) -> Vec<String> {
        self.ids(gw, |r| {
            assert_eq!(r.error, "", "{r:?}");
            assert_eq!(r.status, DocumentStatus::Ready as i32, "{r:?}");
        })
        .await
    }

    /// The document ids, after `check` on each document's result.
    async fn ids(
        self,
        gw: &mut GatewayClient<Channel>,
        check: impl Fn(&DocumentResult),
    ) -> Vec<String> {
        let sent = self.request.documents.len();
        let results = self.results(gw).await;
        assert_eq!(results.len(), sent, "one result per document: {results:?}");
        results
            .into_iter()
            .map(|r| {
                check(&r);
                r.document_id
            })
            .collect()
    }
}

/// Ingests `documents` into `tenant` (empty: the caller's) through the gateway, waits until
/// every one is READY and returns their document ids in order; panics on any rejected or
/// not-READY document.
pub async fn ingest_ready(
    gw: &mut GatewayClient<Channel>,
    tenant: &str,
    documents: Vec<DocumentInput>,
) -> Vec<String> {
    Ingest::new(documents).tenant(tenant).ready(gw).await
}

/// Ingests `texts` through the gateway as documents `doc-0`, `doc-1`, … (title `Topic i`) and
/// waits until every one is READY; panics on any rejected or not-READY document.
pub async fn ingest_texts(gw: &mut GatewayClient<Channel>, texts: &[&str]) {
    let documents = texts
        .iter()
        .enumerate()
        .map(|(i, text)| doc(format!("doc-{i}"), *text).title(format!("Topic {i}")))
        .collect();
    ingest_ready(gw, "", documents).await;
}
