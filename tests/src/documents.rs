//! Loading documents through the gateway for a test: ingest, wait until READY, and fail the
//! test on any document that was rejected or did not become READY.

use braid_proto::tonic::transport::Channel;
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::{DocumentInput, DocumentStatus, IngestRequest};

/// Ingests `documents` into `tenant` (empty: the caller's) through the gateway, waits until
/// every one is READY and returns their document ids in order; panics on any rejected or
/// not-READY document.
pub async fn ingest_ready(
    gw: &mut GatewayClient<Channel>,
    tenant: &str,
    documents: Vec<DocumentInput>,
) -> Vec<String> {
    let results = gw
        .ingest(IngestRequest {
            tenant: tenant.into(),
            documents,
            wait_until_indexed: true,
            wait_timeout_ms: 120_000,
            idempotency_key: String::new(),
        })
        .await
        .expect("ingest")
        .into_inner()
        .results;
    results
        .into_iter()
        .map(|r| {
            assert_eq!(r.error, "", "{r:?}");
            assert_eq!(r.status, DocumentStatus::Ready as i32, "{r:?}");
            r.document_id
        })
        .collect()
}

/// Ingests `texts` through the gateway as documents `doc-0`, `doc-1`, … (title `Topic i`) and
/// waits until every one is READY; panics on any rejected or not-READY document.
pub async fn ingest_texts(gw: &mut GatewayClient<Channel>, texts: &[&str]) {
    let documents = texts
        .iter()
        .enumerate()
        .map(|(i, text)| DocumentInput {
            external_id: format!("doc-{i}"),
            title: format!("Topic {i}"),
            content: (*text).into(),
            mime_type: "text/plain".into(),
            ..Default::default()
        })
        .collect();
    ingest_ready(gw, "", documents).await;
}
