//! Per-tenant text statistics end to end (issue 23 item 2): a tenant's BM25 scores come from
//! its own documents only, so another tenant's writes never move them, and a reader cannot
//! learn from their own scores what another tenant's hidden documents contain. Real
//! PostgreSQL + pgvector, Tantivy and the real model, through the gateway with user tokens.

use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{DocumentInput, SearchMode, SearchRequest, SearchResponse};
use braid_tests::{Stack, Users, as_user};
use tonic::transport::Channel;

const QUERY: &str = "volcano lava eruption";

fn doc(id: &str, content: &str) -> DocumentInput {
    DocumentInput {
        external_id: id.into(),
        title: "Field notes".into(),
        content: content.into(),
        mime_type: "text/plain".into(),
        ..Default::default()
    }
}

/// Tenant `acme`'s documents: one about the query's subject among others.
fn acme() -> Vec<DocumentInput> {
    vec![
        doc(
            "a-volcano",
            "The volcano woke at dawn: an eruption sent lava down the northern slope.",
        ),
        doc(
            "a-harbour",
            "Fishing boats in the harbour and a quiet market.",
        ),
        doc("a-lava", "Cooled lava fields make poor farmland."),
    ]
}

/// Tenant `beta`'s documents: many, all full of the query's terms.
fn beta(n: usize) -> Vec<DocumentInput> {
    (0..n)
        .map(|i| {
            doc(
                &format!("b-{i:03}"),
                &format!(
                    "Volcano survey {i}: lava, lava and more lava after the eruption; the \
                     volcano's eruption column rose for {i} hours."
                ),
            )
        })
        .collect()
}

/// (external id, text score bits) of every hit, in rank order, for a text-only search.
async fn text_scores(
    gw: &mut GatewayClient<Channel>,
    token: &str,
    chunk_level: bool,
) -> Vec<(String, u32)> {
    let r: SearchResponse = gw
        .search(as_user(
            SearchRequest {
                query: QUERY.into(),
                mode: SearchMode::Text as i32,
                top_k: 20,
                chunk_level,
                bypass_cache: true,
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("search")
        .into_inner();
    r.hits
        .into_iter()
        .map(|h| {
            let score = h.text_score.expect("a text hit has a text score");
            (h.external_id, score.to_bits())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_writes_never_move_a_tenants_text_scores() {
    let users = Users::new("tenant-scores-test-secret-of-32-bytes!");
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let acme_writer = users.token("alice", "acme", "writer");
    let acme_reader = users.token("rita", "acme", "reader");
    let beta_writer = users.token("bob", "beta", "writer");

    ingest_as(&mut gw, &acme_writer, acme()).await;
    let before_docs = text_scores(&mut gw, &acme_reader, false).await;
    let before_chunks = text_scores(&mut gw, &acme_reader, true).await;
    let ids: Vec<&str> = before_docs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a-volcano", "a-lava"], "{before_docs:?}");

    // Another tenant writes many documents with the same terms, in several commits (so
    // segments are merged across tenants too).
    for batch in 0..4 {
        let docs = beta(60).into_iter().skip(batch * 15).take(15).collect();
        ingest_as(&mut gw, &beta_writer, docs).await;
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
    ingest_as(
        &mut gw,
        &acme_writer,
        vec![doc("a-more", "Another eruption, more lava.")],
    )
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

async fn ingest_as(gw: &mut GatewayClient<Channel>, token: &str, docs: Vec<DocumentInput>) {
    use braid_tests::v1::IngestRequest;
    let r = gw
        .ingest(as_user(
            IngestRequest {
                documents: docs,
                wait_until_indexed: true,
                wait_timeout_ms: 120_000,
                ..Default::default()
            },
            token,
        ))
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
