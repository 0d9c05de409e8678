//! Changing the embedding model is deliberate: `Reembed` re-embeds through the ingest job
//! queue while searches keep using the old model's vectors; switching the gateway to the new
//! model and purging the old vectors completes the move. Real PostgreSQL + pgvector, Tantivy
//! and the real model (the "new model" is a second embedding service with another identity).

use std::time::Duration;

use braid_proto::tonic::Code;
use braid_tests::v1::{
    DocumentInput, IngestRequest, ReembedRequest, SearchMode, SearchRequest, SearchResponse,
};
use braid_tests::{Stack, eventually, start_embedding};

fn doc(id: &str, title: &str, content: &str) -> DocumentInput {
    DocumentInput {
        external_id: id.into(),
        title: title.into(),
        content: content.into(),
        mime_type: "text/plain".into(),
        metadata: Default::default(),
        acl: None,
    }
}

async fn vector_search(stack: &Stack, query: &str) -> SearchResponse {
    stack
        .gateway_client()
        .await
        .unwrap()
        .search(SearchRequest {
            query: query.into(),
            top_k: 3,
            mode: SearchMode::Vector as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn assert_finds_rust(r: &SearchResponse) {
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    let first = r.hits.first().expect("vector hits");
    assert_eq!(first.external_id, "rust");
    assert!(first.vector_score.unwrap_or(0.0) > 0.3);
}

async fn models(db: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT model, count(*) FROM vectors.chunks GROUP BY model ORDER BY model")
        .fetch_all(db)
        .await
        .unwrap()
}

fn reembed(dry_run: bool, purge: bool) -> ReembedRequest {
    ReembedRequest {
        tenant: String::new(),
        dry_run,
        purge_other_models: purge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reembedding_moves_to_a_new_model_without_a_gap_in_search() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let mut gw = stack.gateway_client().await?;
    gw.ingest(IngestRequest {
        tenant: String::new(),
        documents: vec![
            doc(
                "rust",
                "Rust",
                "Ownership and borrowing make Rust programs memory safe.",
            ),
            doc(
                "garden",
                "Gardening",
                "Tomatoes need full sun, water and warm soil.",
            ),
            doc(
                "space",
                "Astronomy",
                "Jupiter is the largest planet of the solar system.",
            ),
        ],
        wait_until_indexed: true,
        wait_timeout_ms: 120_000,
        idempotency_key: String::new(),
    })
    .await?;
    assert_finds_rust(&vector_search(&stack, "memory safety in programming languages").await);
    let db = stack.db().await?;
    let before = models(&db).await;
    assert_eq!(
        before.len(),
        1,
        "every vector records its model: {before:?}"
    );
    let (old_model, old_rows) = before[0].clone();
    assert!(old_model.starts_with("sentence-transformers/all-MiniLM-L6-v2@"));

    // Deploy the new model next to the old one and point ingest (only) at it.
    let mut next = start_embedding(|c| c.model.name = "braid-test/minilm-next".into()).await?;
    stack.ingest_config.embedding.endpoint = next.endpoint();
    stack.restart_ingest().await?;
    let mut gw = stack.gateway_client().await?;

    let dry = gw.reembed(reembed(true, false)).await?.into_inner();
    assert!(
        dry.model.starts_with("braid-test/minilm-next@"),
        "{}",
        dry.model
    );
    assert_eq!((dry.enqueued, dry.remaining), (0, 3));
    let refused = gw.reembed(reembed(false, true)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("3 documents"),
        "{}",
        refused.message()
    );

    let started = gw.reembed(reembed(false, false)).await?.into_inner();
    assert_eq!(started.enqueued, 3);
    // Searches keep working on the old vectors all along.
    assert_finds_rust(&vector_search(&stack, "memory safety in programming languages").await);
    eventually(
        "every document re-embedded",
        Duration::from_secs(120),
        || {
            let mut gw = gw.clone();
            async move {
                let r = gw.reembed(reembed(true, false)).await.ok()?.into_inner();
                (r.remaining == 0).then_some(())
            }
        },
    )
    .await?;
    let both = models(&db).await;
    assert_eq!(both.len(), 2, "old and new vectors side by side: {both:?}");
    assert!(both.iter().all(|(_, n)| *n == old_rows), "{both:?}");
    assert_finds_rust(&vector_search(&stack, "memory safety in programming languages").await);
    assert_eq!(
        gw.reembed(reembed(false, false))
            .await?
            .into_inner()
            .enqueued,
        0
    );

    // The switch: the gateway embeds queries with the new model (and so searches its vectors),
    // then the old vectors go.
    stack.gateway_config.embedding.endpoint = next.endpoint();
    stack.restart_gateway().await?;
    let mut gw = stack.gateway_client().await?;
    assert_finds_rust(&vector_search(&stack, "memory safety in programming languages").await);
    let purged = gw.reembed(reembed(false, true)).await?.into_inner();
    assert_eq!(purged.purged, old_rows as u64);
    let after = models(&db).await;
    assert_eq!(after.len(), 1);
    assert!(after[0].0.starts_with("braid-test/minilm-next@"));
    assert_finds_rust(&vector_search(&stack, "memory safety in programming languages").await);

    // Ordinary ingest after the move writes the new model only.
    gw.ingest(IngestRequest {
        tenant: String::new(),
        documents: vec![doc(
            "rust",
            "Rust",
            "Lifetimes and ownership keep Rust memory safe.",
        )],
        wait_until_indexed: true,
        wait_timeout_ms: 120_000,
        idempotency_key: String::new(),
    })
    .await?;
    assert_eq!(models(&db).await.len(), 1);

    stack.shutdown().await?;
    next.stop().await
}
