//! `model.query_quantized` end to end: queries embedded by the int8 graph search documents
//! embedded by fp32. The model identity stays fp32's, so the vector leg finds the documents
//! without a re-embed, and the query vectors really come from another graph than the
//! documents' (the same text embeds differently as a query and as a document).

use braid_tests::v1::{EmbedRequest, InputType, SearchMode, SearchRequest};
use braid_tests::{Stack, StackOptions, ingest_texts};

const TEXTS: [&str; 4] = [
    "Vitamin D deficiency is associated with bone fractures in older adults.",
    "The mitochondria produce most of the energy a cell uses.",
    "Reciprocal rank fusion merges rankings from several retrievers.",
    "Cats sleep for most of the day.",
];

async fn embed(stack: &Stack, text: &str, kind: InputType) -> anyhow::Result<(Vec<f32>, String)> {
    let answer = stack
        .embedding_client()
        .embed(EmbedRequest {
            texts: vec![text.to_string()],
            input_type: kind as i32,
        })
        .await?
        .into_inner();
    let vector = answer
        .embeddings
        .into_iter()
        .next()
        .map(|v| v.values)
        .unwrap_or_default();
    Ok((vector, answer.model))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn int8_queries_find_documents_embedded_in_fp32() -> anyhow::Result<()> {
    let mut options = StackOptions::default();
    options.embedding.model.query_quantized = true;
    let stack = Stack::start_with(options).await?;
    let mut gw = stack.gateway_client().await?;
    ingest_texts(&mut gw, &TEXTS).await;

    // Paraphrases, vector leg only: the int8 query vectors meet the fp32 document vectors.
    for (query, want) in [
        ("which vitamin keeps bones from breaking", "doc-0"),
        ("where does a cell get its power", "doc-1"),
        ("combining the results of many search engines", "doc-2"),
    ] {
        let answer = gw
            .search(SearchRequest {
                query: query.into(),
                top_k: 3,
                mode: SearchMode::Vector as i32,
                bypass_cache: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(!answer.degraded, "{:?}", answer.degraded_reasons);
        let top = answer.hits.first();
        assert_eq!(top.map(|h| h.external_id.as_str()), Some(want), "{query}");
        assert!(top.and_then(|h| h.vector_score).is_some(), "{query}");
    }

    // One text, both ways: same model identity (fp32's), different graphs.
    let (query, query_model) = embed(&stack, TEXTS[0], InputType::Query).await?;
    let (document, document_model) = embed(&stack, TEXTS[0], InputType::Document).await?;
    assert_eq!(query_model, document_model);
    assert!(!query_model.contains("int8"), "{query_model}");
    let cosine: f32 = query.iter().zip(&document).map(|(a, b)| a * b).sum();
    assert!(
        (0.9..0.99999).contains(&cosine),
        "int8 query against fp32 document vector of the same text: cosine {cosine}"
    );
    stack.shutdown().await
}
