//! Per-tenant text statistics end to end (issue 23 item 2): a tenant's BM25 scores come from
//! its own documents only, so another tenant's writes never move them, and a reader cannot
//! learn from their own scores what another tenant's hidden documents contain. Real
//! PostgreSQL + pgvector, Tantivy and the real model, through the gateway with user tokens.

use braid_tests::tenant_corpus::{acme, beta, note, text_scores};
use braid_tests::{Ingest, Stack, Users};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_writes_never_move_a_tenants_text_scores() {
    let users = Users::new("tenant-scores-test-secret-of-32-bytes!");
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let acme_writer = users.token("alice", "acme", "writer");
    let acme_reader = users.token("rita", "acme", "reader");
    let beta_writer = users.token("bob", "beta", "writer");

    Ingest::new(acme())
        .as_user(&acme_writer)
        .ready(&mut gw)
        .await;
    let before_docs = text_scores(&mut gw, &acme_reader, false).await;
    let before_chunks = text_scores(&mut gw, &acme_reader, true).await;
    let ids: Vec<&str> = before_docs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a-volcano", "a-lava"], "{before_docs:?}");

    // Another tenant writes many documents with the same terms, in several commits (so
    // segments are merged across tenants too).
    for batch in 0..4 {
        let docs = beta(batch * 15, 15);
        Ingest::new(docs).as_user(&beta_writer).ready(&mut gw).await;
    }
    assert_eq!(
        text_scores(&mut gw, &beta_writer, false).await.len(),
        20,
        "beta's documents are indexed and match"
    );

    assert_eq!(
        text_scores(&mut gw, &acme_reader, false).await,
        before_docs,
        "document-level text scores are bit-identical"
    );
    assert_eq!(
        text_scores(&mut gw, &acme_reader, true).await,
        before_chunks,
        "chunk-level text scores are bit-identical"
    );

    // The tenant's own writes do move them: the statistics are live, just per tenant.
    Ingest::new(vec![note("a-more", "Another eruption, more lava.")])
        .as_user(&acme_writer)
        .ready(&mut gw)
        .await;
    let after_own = text_scores(&mut gw, &acme_reader, false).await;
    let volcano = |scores: &[(String, u32)]| {
        scores
            .iter()
            .find(|(id, _)| id == "a-volcano")
            .map(|(_, bits)| f32::from_bits(*bits))
    };
    assert_ne!(
        volcano(&after_own),
        volcano(&before_docs),
        "{after_own:?} vs {before_docs:?}"
    );
}
