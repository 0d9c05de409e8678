//! The text leg on a real OpenSearch node (`make test` starts one and sets
//! `BRAID_TEST_ELASTICSEARCH_URL`; built with `--features elasticsearch`): all five services
//! in-process as everywhere else, text-search on the engine instead of Tantivy. Each stack
//! gets index names of its own on the shared node; the node-loss test starts a node of its
//! own, since it stops it.
//!
//! Here: a hybrid search through all five services. `walls`: tenant and ACL walls, every
//! filter operator and delete. `reindex`: a rebuild switching the alias while searches run
//! (both layouts). `tenant_scores`: another tenant's writes never move a tenant's scores
//! (per-tenant layout; the shared layout shows the leak; one tenant scores the same in both).
//! `node_loss`: the node stopped under load and started again.

mod node_loss;
mod reindex;
mod tenant_scores;
mod walls;

use braid_tests::opensearch::{
    engine_config, engine_documents, engine_url, remove_indices, stack_options,
};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{SearchMode, SearchRequest, SearchResponse};
use braid_tests::{Stack, ingest_texts};
use tonic::transport::Channel;

pub const TEXTS: [&str; 6] = [
    "Sourdough bread rises slowly because wild yeast ferments the dough overnight.",
    "Marathon runners taper their training in the weeks before a long race.",
    "Volcanic eruptions eject magma, ash and pumice into the atmosphere.",
    "The borrow checker rejects programs with dangling references at compile time.",
    "Honeybees communicate the direction of flowers with a waggle dance.",
    "Glaciers carve U-shaped valleys as they slowly flow downhill.",
];

pub fn request(query: &str, mode: SearchMode, top_k: u32) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        mode: mode as i32,
        top_k,
        bypass_cache: true,
        ..Default::default()
    }
}

pub async fn search(
    gw: &mut GatewayClient<Channel>,
    query: &str,
    mode: SearchMode,
) -> Result<SearchResponse, tonic::Status> {
    gw.search(request(query, mode, 4))
        .await
        .map(|r| r.into_inner())
}

pub fn top(r: &SearchResponse) -> &str {
    r.hits.first().map_or("", |h| h.external_id.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hybrid_search_through_all_five_services_on_the_engine() {
    let engine = engine_config(&engine_url());
    let stack = Stack::start_with(stack_options(&engine)).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    ingest_texts(&mut gw, &TEXTS).await;

    // READY means searchable in the engine: its documents are there, not in a Tantivy
    // directory.
    let (_, documents) = engine_documents(&engine).await.unwrap();
    assert_eq!(documents, TEXTS.len() as u64);

    // Both legs answer and fuse: the best hit carries a BM25 score from the engine and a
    // cosine score from pgvector.
    let r = search(
        &mut gw,
        "borrow checker dangling references",
        SearchMode::Hybrid,
    )
    .await
    .unwrap();
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    assert_eq!(top(&r), "doc-3", "{r:#?}");
    let best = &r.hits[0];
    assert!(
        best.text_score.is_some_and(|s| s > 0.0) && best.vector_score.is_some(),
        "{best:#?}"
    );
    assert_eq!((best.text_rank, best.vector_rank), (Some(1), Some(1)));

    // Text only: stemming (erupt ~ eruptions) and the engine's highlighting.
    let r = search(&mut gw, "erupting volcanic pumice", SearchMode::Text)
        .await
        .unwrap();
    assert_eq!(top(&r), "doc-2", "{r:#?}");
    assert!(r.hits[0].snippet.contains("<b>pumice</b>"), "{r:#?}");
    // A word nobody wrote: nothing, rather than anything.
    let r = search(&mut gw, "zeppelin", SearchMode::Text).await.unwrap();
    assert!(r.hits.is_empty(), "{r:#?}");
    // Meaning without shared words still reaches the right document through the vector leg.
    let r = search(
        &mut gw,
        "insects dancing to show where nectar is",
        SearchMode::Hybrid,
    )
    .await
    .unwrap();
    assert_eq!(top(&r), "doc-4", "{r:#?}");

    stack.shutdown().await.unwrap();
    remove_indices(&engine).await.unwrap();
}
