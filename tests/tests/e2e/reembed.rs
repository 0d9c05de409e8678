//! Changing the embedding model is deliberate: `Reembed` re-embeds through the ingest job
//! queue while searches keep using the old model's vectors; switching the gateway to the new
//! model and purging the old vectors completes the move. Real PostgreSQL + pgvector, Tantivy
//! and the real model. The "new model" is a second embedding service running the same weights
//! with e5-style input prefixes ("query: " / "passage: "), so every vector it produces differs
//! from the old model's: a search that mixed the two models' vectors would get other scores,
//! and the assertions below compare every score with the one computed from the stored vectors.

use std::collections::HashMap;
use std::time::Duration;

use braid_proto::tonic::Code;
use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
use braid_tests::v1::{
    EmbedRequest, InputType, LegSearchRequest, ReembedRequest, SearchMode, SearchRequest,
    SearchResponse,
};
use braid_tests::{
    DocumentInputExt, Ingest, ServiceChannel, Stack, doc, eventually, service_channel,
    start_embedding,
};

const QUERY: &str = "memory safety in programming languages";

/// Stored vectors by (model, external id), parsed from pgvector's text form.
async fn stored_vectors(db: &sqlx::PgPool) -> HashMap<(String, String), Vec<f32>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT model, external_id, embedding::text FROM vectors.chunks")
            .fetch_all(db)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(model, id, text)| {
            let v = text
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|x| x.parse::<f32>().unwrap())
                .collect();
            ((model, id), v)
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

async fn query_vector(client: &mut EmbeddingServiceClient<ServiceChannel>) -> Vec<f32> {
    client
        .embed(EmbedRequest {
            texts: vec![QUERY.into()],
            input_type: InputType::Query as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .embeddings
        .remove(0)
        .values
}

/// The gateway's vector-only scores for [`QUERY`] by external id (one chunk per document).
async fn gateway_scores(stack: &Stack) -> HashMap<String, f32> {
    let r = stack
        .gateway_client()
        .await
        .unwrap()
        .search(SearchRequest {
            query: QUERY.into(),
            top_k: 10,
            mode: SearchMode::Vector as i32,
            chunk_level: true,
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    assert_eq!(r.hits.len(), 3, "one hit per chunk: {r:#?}");
    r.hits
        .into_iter()
        .map(|h| (h.external_id, h.vector_score.unwrap_or(f32::NAN)))
        .collect()
}

/// Every score is the query's cosine with `model`'s stored vector of that document.
fn assert_scores_of(
    scores: &HashMap<String, f32>,
    query: &[f32],
    stored: &HashMap<(String, String), Vec<f32>>,
    model: &str,
) {
    for (id, score) in scores {
        let expected = dot(query, &stored[&(model.to_string(), id.clone())]);
        assert!(
            (score - expected).abs() < 1e-4,
            "{id}: score {score}, but {model}'s vector gives {expected}"
        );
    }
}

/// Hits of the vector leg itself for `query`, restricted to `model` (empty = any model).
async fn leg_hits(stack: &Stack, query: &[f32], model: &str) -> usize {
    stack
        .vector_client()
        .search(LegSearchRequest {
            tenant: "default".into(),
            top_k: 10,
            embedding: query.to_vec(),
            model: model.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits
        .len()
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
    Ingest::new(vec![
        doc(
            "rust",
            "Ownership and borrowing make Rust programs memory safe.",
        )
        .title("Rust"),
        doc("garden", "Tomatoes need full sun, water and warm soil.").title("Gardening"),
        doc(
            "space",
            "Jupiter is the largest planet of the solar system.",
        )
        .title("Astronomy"),
    ])
    .send(&mut gw)
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
    let old_query = query_vector(&mut stack.embedding_client()).await;
    let old_scores = gateway_scores(&stack).await;
    assert_scores_of(
        &old_scores,
        &old_query,
        &stored_vectors(&db).await,
        &old_model,
    );

    // Deploy the new model next to the old one and point ingest (only) at it.
    let mut next = start_embedding(|c| {
        c.model.name = "braid-test/minilm-next".into();
        c.model.query_prefix = "query: ".into();
        c.model.document_prefix = "passage: ".into();
    })
    .await?;
    let new_query = query_vector(&mut EmbeddingServiceClient::new(service_channel(&next))).await;
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
    let new_model = both
        .iter()
        .map(|(m, _)| m.clone())
        .find(|m| *m != old_model)
        .unwrap();
    let stored = stored_vectors(&db).await;
    for id in old_scores.keys() {
        let (old, new) = (
            &stored[&(old_model.clone(), id.clone())],
            &stored[&(new_model.clone(), id.clone())],
        );
        let similarity = dot(old, new);
        assert!(
            similarity < 0.99,
            "{id}: the new model's vector is not different enough (cosine {similarity})"
        );
    }
    // The vector leg holds both models' vectors, and returns only the asked-for model's...
    assert_eq!(leg_hits(&stack, &old_query, "").await, 6);
    assert_eq!(leg_hits(&stack, &old_query, &old_model).await, 3);
    assert_eq!(leg_hits(&stack, &new_query, &new_model).await, 3);
    // ...so searches still score against the old vectors only, exactly as before.
    let during = gateway_scores(&stack).await;
    assert_scores_of(&during, &old_query, &stored, &old_model);
    for (id, score) in &during {
        assert!(
            (score - old_scores[id]).abs() < 1e-5,
            "{id}: {score} vs {}",
            old_scores[id]
        );
    }
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
    // Now every score is the new query against the new vectors (the old ones are still there).
    let switched = gateway_scores(&stack).await;
    assert_scores_of(&switched, &new_query, &stored, &new_model);
    assert!(
        switched
            .iter()
            .any(|(id, score)| (score - old_scores[id]).abs() > 1e-3),
        "the new model scores like the old one: {switched:?} vs {old_scores:?}"
    );
    let purged = gw.reembed(reembed(false, true)).await?.into_inner();
    assert_eq!(purged.purged, old_rows as u64);
    let after = models(&db).await;
    assert_eq!(after.len(), 1);
    assert!(after[0].0.starts_with("braid-test/minilm-next@"));
    assert_finds_rust(&vector_search(&stack, "memory safety in programming languages").await);

    // Ordinary ingest after the move writes the new model only.
    Ingest::new(vec![
        doc("rust", "Lifetimes and ownership keep Rust memory safe.").title("Rust"),
    ])
    .send(&mut gw)
    .await?;
    assert_eq!(models(&db).await.len(), 1);

    stack.shutdown().await?;
    next.stop().await
}
