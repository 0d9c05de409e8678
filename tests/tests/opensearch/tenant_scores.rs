//! Per-tenant text statistics on the engine (issue 23 item 2), the engine's side of
//! `tests/e2e/tenant_scores.rs`: in the `per_tenant` layout a tenant's BM25 scores come from its
//! own documents only, so another tenant's writes never move them; in the `shared` layout they
//! do (documented), which this also checks, so the test shows it can see the leak. Through
//! the gateway with user tokens, all five services, text-search on the OpenSearch node.

use braid_tests::opensearch::{engine_config_with, engine_url, remove_indices};
use braid_tests::tenant_corpus::{acme, beta, text_scores};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{DocumentInput, IngestRequest};
use braid_tests::{Stack, StackOptions, Users, as_user};
use braid_text_search::Layout;
use tonic::transport::Channel;

async fn ingest_as(gw: &mut GatewayClient<Channel>, token: &str, documents: Vec<DocumentInput>) {
    let request = IngestRequest {
        documents,
        wait_until_indexed: true,
        wait_timeout_ms: 120_000,
        ..Default::default()
    };
    let r = gw
        .ingest(as_user(request, token))
        .await
        .expect("ingest")
        .into_inner();
    for d in &r.results {
        assert_eq!(d.error, "", "{d:?}");
        assert_eq!(
            d.status,
            braid_tests::v1::DocumentStatus::Ready as i32,
            "{d:?}"
        );
    }
}

/// Acme's scores before and after beta writes 60 documents full of the query's terms.
async fn scores_around_anothers_writes(layout: Layout) -> [Vec<(String, u32)>; 4] {
    let engine = engine_config_with(&engine_url(), layout);
    let users = Users::new("tenant-scores-test-secret-of-32-bytes!");
    let options = StackOptions {
        text_engine: Some(engine.clone()),
        ..users.stack_options()
    };
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let acme_writer = users.token("alice", "acme", "writer");
    let acme_reader = users.token("rita", "acme", "reader");
    let beta_writer = users.token("bob", "beta", "writer");

    // Beta first has nothing (per tenant: no index yet): an empty answer, not an error.
    assert!(text_scores(&mut gw, &beta_writer, false).await.is_empty());
    ingest_as(&mut gw, &acme_writer, acme()).await;
    let before_docs = text_scores(&mut gw, &acme_reader, false).await;
    let before_chunks = text_scores(&mut gw, &acme_reader, true).await;
    let ids: Vec<&str> = before_docs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a-volcano", "a-lava"], "{before_docs:?}");

    for batch in 0..4 {
        ingest_as(&mut gw, &beta_writer, beta(batch * 15, 15)).await;
    }
    assert_eq!(text_scores(&mut gw, &beta_writer, false).await.len(), 20);
    let after_docs = text_scores(&mut gw, &acme_reader, false).await;
    let after_chunks = text_scores(&mut gw, &acme_reader, true).await;

    stack.shutdown().await.unwrap();
    remove_indices(&engine).await.unwrap();
    [before_docs, before_chunks, after_docs, after_chunks]
}

/// Both layouts on one test (so the one-tenant scores of the two can be compared): per tenant
/// acme's scores never move; shared they do; and before beta writes (one tenant, one shard)
/// both layouts rank and score acme's documents bit-identically, so the per-tenant layout
/// changes nothing for a single tenant's quality.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_writes_move_a_tenants_text_scores_only_in_the_shared_layout() {
    let [before_docs, before_chunks, after_docs, after_chunks] =
        scores_around_anothers_writes(Layout::PerTenant).await;
    assert_eq!(
        after_docs, before_docs,
        "document-level scores bit-identical"
    );
    assert_eq!(
        after_chunks, before_chunks,
        "chunk-level scores bit-identical"
    );

    let [shared_docs, shared_chunks, shared_after, _] =
        scores_around_anothers_writes(Layout::Shared).await;
    assert_eq!(
        (&shared_docs, &shared_chunks),
        (&before_docs, &before_chunks),
        "one tenant: the same scores in both layouts"
    );
    assert_ne!(
        shared_after, shared_docs,
        "shared statistics: beta's writes move acme's"
    );
}
