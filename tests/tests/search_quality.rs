//! Ranking quality controls on the real stack: the text leg ranks whole documents (title and
//! full body, not the best chunk alone) and still returns a matching chunk; the fusion
//! method, normalisation, per-leg candidate depth and ef_search are applied and validated;
//! `explain` contributions add up to each hit's fused score for RRF and LINEAR.

use std::collections::HashMap;

use braid_proto::tonic::Code;
use braid_tests::v1::{
    DocumentInput, DocumentStatus, FusionMethod, FusionParams, IngestRequest, ScoreNormalization,
    SearchHit, SearchMode, SearchRequest,
};
use braid_tests::{Stack, StackOptions};

fn doc(id: &str, title: &str, content: &str) -> DocumentInput {
    DocumentInput {
        acl: None,
        external_id: id.into(),
        title: title.into(),
        content: content.into(),
        mime_type: "text/plain".into(),
        metadata: HashMap::new(),
    }
}

/// Filler words that match no query below.
fn filler(n: usize) -> String {
    (0..n)
        .map(|i| format!("word{}", i % 97))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stack with small chunks (30 tokens), so one document spans several chunks.
async fn stack_with_corpus() -> Stack {
    let mut options = StackOptions::default();
    options.ingest.chunking.max_tokens = 30;
    options.ingest.chunking.overlap_tokens = 5;
    let stack = Stack::start_with(options).await.unwrap();
    let docs = vec![
        // Both query words, far apart: in different chunks.
        doc(
            "spread",
            "Observations",
            &format!("quasar jets seen. {} Then a magnetar flared.", filler(30)),
        ),
        // One query word, in a short text: its chunk alone outscores either chunk of
        // `spread`, but the document has half the query.
        doc(
            "short",
            "Notes",
            "notes on a quasar observed in the night sky last week",
        ),
        doc(
            "titled",
            "Magnetar quasar survey",
            &format!("a survey of bright sources. {}", filler(20)),
        ),
        doc(
            "other",
            "Gardening",
            "tomatoes need sun and water; prune in spring",
        ),
        doc(
            "stars",
            "Neutron stars",
            "neutron stars are dense remnants of massive stars; some are magnetars",
        ),
    ];
    let mut gw = stack.gateway_client().await.unwrap();
    let response = gw
        .ingest(IngestRequest {
            tenant: String::new(),
            documents: docs,
            wait_until_indexed: true,
            wait_timeout_ms: 120_000,
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    for r in &response.results {
        assert_eq!(r.status, DocumentStatus::Ready as i32, "{r:?}");
    }
    stack
}

fn request(query: &str, mode: SearchMode, fusion: FusionParams) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        top_k: 5,
        mode: mode as i32,
        fusion: Some(fusion),
        bypass_cache: true,
        explain: true,
        ..Default::default()
    }
}

/// Every hit's explanation is consistent with the hit: its legs' contributions add up to the
/// fused score, and each leg's rank/raw score are the ones the hit reports.
fn assert_explained(hits: &[SearchHit], method: FusionMethod) {
    let mut both_legs = 0;
    for h in hits {
        let e = h.explanation.as_ref().expect("explain was asked for");
        assert_eq!(e.method, method as i32, "{e:?}");
        let sum: f32 = e.legs.iter().map(|l| l.contribution).sum();
        assert!(
            (sum - h.score).abs() <= 1e-5 * h.score.abs().max(1.0),
            "{}: contributions {sum} vs score {}: {e:?}",
            h.external_id,
            h.score
        );
        for l in &e.legs {
            assert!(
                (l.weight * l.normalized_score - l.contribution).abs() < 1e-5,
                "{l:?}"
            );
            assert!(l.chunk_id.starts_with(&h.document_id), "{l:?} of {h:?}");
            let (score, rank) = match l.leg.as_str() {
                "vector" => (h.vector_score, h.vector_rank),
                "text" => (h.text_score, h.text_rank),
                other => panic!("unknown leg {other}"),
            };
            assert_eq!((Some(l.raw_score), Some(l.rank)), (score, rank), "{l:?}");
        }
        both_legs += usize::from(e.legs.len() == 2);
    }
    assert!(both_legs > 0, "some hit was found by both legs: {hits:?}");
}

#[tokio::test]
async fn text_leg_ranks_documents_and_explain_adds_up() {
    let stack = stack_with_corpus().await;
    let mut gw = stack.gateway_client().await.unwrap();

    // Text leg: documents by title + whole body. `spread` has both words (in different
    // chunks), `titled` both in its title; `short` only one.
    let text = gw
        .search(request(
            "quasar magnetar",
            SearchMode::Text,
            FusionParams::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = text.hits.iter().map(|h| h.external_id.as_str()).collect();
    let at = |id: &str| ids.iter().position(|d| *d == id);
    let (spread, titled, short) = (at("spread"), at("titled"), at("short"));
    assert!(
        titled.is_some() && spread.is_some() && short > spread,
        "title matches count; one query word ranks below both words spread over chunks: {ids:?}"
    );
    assert!(at("other").is_none(), "{ids:?}");
    let spread = text
        .hits
        .iter()
        .find(|h| h.external_id == "spread")
        .unwrap();
    assert!(
        spread.snippet.contains("<b>"),
        "the chunk shown matches: {spread:?}"
    );
    assert_explained_single(&text.hits);

    for (method, normalization) in [
        (FusionMethod::Rrf, ScoreNormalization::Unspecified),
        (FusionMethod::Linear, ScoreNormalization::MinMax),
        (FusionMethod::Linear, ScoreNormalization::ZScore),
        (FusionMethod::Linear, ScoreNormalization::Rank),
    ] {
        let fusion = FusionParams {
            method: method as i32,
            normalization: normalization as i32,
            vector_weight: Some(0.7),
            text_weight: Some(1.3),
            ..Default::default()
        };
        let r = gw
            .search(request("quasar magnetar", SearchMode::Hybrid, fusion))
            .await
            .unwrap()
            .into_inner();
        assert!(!r.degraded, "{:?}", r.degraded_reasons);
        assert!(!r.hits.is_empty());
        assert_explained(&r.hits, method);
        if method == FusionMethod::Linear {
            let e = r.hits[0].explanation.as_ref().unwrap();
            assert_eq!(e.normalization, normalization as i32);
        }
        // Scores are in order.
        assert!(r.hits.windows(2).all(|w| w[0].score >= w[1].score), "{r:?}");
    }

    // Without `explain`, no explanation.
    let mut plain = request("quasar", SearchMode::Hybrid, FusionParams::default());
    plain.explain = false;
    let r = gw.search(plain).await.unwrap().into_inner();
    assert!(r.hits.iter().all(|h| h.explanation.is_none()));
    stack.shutdown().await.unwrap();
}

/// A single-leg answer: no method applies, the one leg's contribution is the raw score.
fn assert_explained_single(hits: &[SearchHit]) {
    for h in hits {
        let e = h.explanation.as_ref().unwrap();
        assert_eq!(e.method, FusionMethod::Unspecified as i32, "{e:?}");
        assert_eq!(e.legs.len(), 1);
        assert_eq!(e.legs[0].contribution, h.score);
    }
}

#[tokio::test]
async fn candidate_depth_and_ef_search_are_applied_and_bounded() {
    let stack = stack_with_corpus().await;
    let mut gw = stack.gateway_client().await.unwrap();
    let hybrid = |fusion| request("magnetar stars quasar", SearchMode::Hybrid, fusion);

    // One candidate from the text leg, two from the vector leg.
    let r = gw
        .search(hybrid(FusionParams {
            text_candidates: 1,
            vector_candidates: 2,
            ef_search: 400,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.degraded, "{:?}", r.degraded_reasons);
    let from_text = r.hits.iter().filter(|h| h.text_rank.is_some()).count();
    let from_vector = r.hits.iter().filter(|h| h.vector_rank.is_some()).count();
    // Two vector chunks may be one document's.
    assert_eq!(from_text, 1, "{r:?}");
    assert!((1..=2).contains(&from_vector), "{r:?}");
    assert!(r.hits.len() <= 3, "{r:?}");
    // The default depth finds every document (the vector leg ranks them all).
    let deep = gw
        .search(hybrid(FusionParams::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deep.hits.len(), 5, "{deep:?}");

    for (fusion, field) in [
        (
            FusionParams {
                ef_search: 1001,
                ..Default::default()
            },
            "fusion.ef_search",
        ),
        (
            FusionParams {
                text_candidates: 1001,
                ..Default::default()
            },
            "fusion.text_candidates",
        ),
        (
            FusionParams {
                vector_candidates: 5000,
                ..Default::default()
            },
            "fusion.vector_candidates",
        ),
        (
            FusionParams {
                method: 7,
                ..Default::default()
            },
            "fusion.method",
        ),
    ] {
        let status = gw.search(hybrid(fusion)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    stack.shutdown().await.unwrap();
}
