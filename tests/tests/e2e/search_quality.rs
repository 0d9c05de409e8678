//! Ranking quality controls on the real stack: the text leg ranks whole documents (title and
//! full body, not the best chunk alone) and still returns a matching chunk; the fusion
//! method, normalisation, per-leg candidate depth and ef_search are applied and validated;
//! `explain` contributions add up to each hit's fused score for RRF and LINEAR.

use braid_gateway::fusion::phi;
use braid_proto::tonic::Code;
use braid_tests::v1::{
    FusionMethod, FusionParams, ScoreNormalization, SearchHit, SearchMode, SearchRequest,
};
use braid_tests::{DocumentInputExt, Ingest, Stack, StackOptions, doc};

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
            format!("quasar jets seen. {} Then a magnetar flared.", filler(30)),
        )
        .title("Observations"),
        // One query word, in a short text: its chunk alone outscores either chunk of
        // `spread`, but the document has half the query.
        doc(
            "short",
            "notes on a quasar observed in the night sky last week",
        )
        .title("Notes"),
        doc(
            "titled",
            format!("a survey of bright sources. {}", filler(20)),
        )
        .title("Magnetar quasar survey"),
        doc("other", "tomatoes need sun and water; prune in spring").title("Gardening"),
        doc(
            "stars",
            "neutron stars are dense remnants of massive stars; some are magnetars",
        )
        .title("Neutron stars"),
    ];
    Ingest::new(docs)
        .ready(&mut stack.gateway_client().await.unwrap())
        .await;
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
/// fused score (LINEAR z-score: `Phi` of their sum is the score, as `score_formula` says), and
/// each leg's rank/raw score are the ones the hit reports.
fn assert_explained(hits: &[SearchHit], method: FusionMethod) {
    let mut both_legs = 0;
    for h in hits {
        let e = h.explanation.as_ref().expect("explain was asked for");
        assert_eq!(e.method, method as i32, "{e:?}");
        let mut sum: f32 = e.legs.iter().map(|l| l.contribution).sum();
        if e.score_formula
            .starts_with("score = Phi(sum of contributions)")
        {
            assert_eq!(e.normalization, ScoreNormalization::ZScore as i32, "{e:?}");
            sum = phi(f64::from(sum)) as f32;
        } else {
            assert_eq!(e.score_formula, "score = sum of contributions", "{e:?}");
        }
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

/// The vector leg's passage comes from the chunk the vector leg matched, even when the hit is
/// shown with another chunk (the text leg's), and marks the query terms it contains.
#[tokio::test]
async fn vector_passage_is_from_the_vector_legs_matched_chunk() {
    let mut options = StackOptions::default();
    options.ingest.chunking.max_tokens = 30;
    options.ingest.chunking.overlap_tokens = 0;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let query = "how do plants turn sunlight into energy";
    let docs = vec![
        // Two chunks (a paragraph each): the first stuffed with the query's words in another
        // sense (the text leg's chunk), the second about photosynthesis with one query word
        // (the vector leg's chunk).
        doc(
            "bulletin",
            "Plants Energy Ltd news: Plants Energy shares turn higher; Plants Energy \
             sunlight brand; turn to Plants Energy.\n\n\
             Photosynthesis: leaves capture sunlight and convert carbon dioxide and water \
             into glucose and oxygen.",
        )
        .title("Company bulletin"),
        // The query's own words with accents: the model's tokenizer strips accents (so this
        // embeds like the query and is the vector leg's first document), the text leg's
        // analysis does not fold them (no text match). `bulletin` is then second in the
        // vector leg and first in the text leg, so the hit shows the text leg's chunk.
        doc("twin", "Hów dó plánts túrn súnlight íntó énergy?").title("Plánts"),
        doc("garden", "tomatoes need water; prune in spring").title("Gardening"),
    ];
    Ingest::new(docs).ready(&mut gw).await;
    let search = |mode: SearchMode, chunk_level: bool| SearchRequest {
        chunk_level,
        ..request(query, mode, FusionParams::default())
    };
    // The vector leg's own best chunk of `bulletin`: its first chunk in a chunk-level answer.
    let chunks = gw
        .search(search(SearchMode::Vector, true))
        .await
        .unwrap()
        .into_inner();
    let vector_best = chunks
        .hits
        .iter()
        .find(|h| h.external_id == "bulletin")
        .expect("the vector leg finds bulletin")
        .clone();
    assert!(
        vector_best.text.contains("Photosynthesis"),
        "{vector_best:?}"
    );

    let hybrid = gw
        .search(search(SearchMode::Hybrid, false))
        .await
        .unwrap()
        .into_inner();
    assert!(!hybrid.degraded, "{:?}", hybrid.degraded_reasons);
    let hit = hybrid
        .hits
        .iter()
        .find(|h| h.external_id == "bulletin")
        .expect("bulletin in the hybrid answer");
    assert_ne!(
        hit.chunk_id, vector_best.chunk_id,
        "the corpus must make the hit show the text leg's chunk: {hit:?}"
    );
    let p = hit.vector_passage.as_ref().expect("a vector passage");
    let explained = hit.explanation.as_ref().unwrap();
    let vector_leg = explained.legs.iter().find(|l| l.leg == "vector").unwrap();
    assert_eq!(p.chunk_id, vector_best.chunk_id, "{p:?}");
    assert_eq!(p.chunk_id, vector_leg.chunk_id);
    assert_eq!(p.chunk_text, vector_best.text);
    assert_eq!(Some(p.score), hit.vector_score);
    let passage = &p.chunk_text[p.start as usize..p.end as usize];
    assert!(
        passage.starts_with("Photosynthesis") && passage.contains("sunlight"),
        "{p:?}"
    );
    assert_eq!(p.matched_terms, 1, "{p:?}");
    assert!(p.highlighted.contains("<b>sunlight</b>"), "{p:?}");

    // VECTOR mode: the same passage; TEXT mode: none (no vector leg).
    let vector = gw
        .search(search(SearchMode::Vector, false))
        .await
        .unwrap()
        .into_inner();
    let v = vector
        .hits
        .iter()
        .find(|h| h.external_id == "bulletin")
        .unwrap();
    assert_eq!(v.vector_passage.as_ref(), Some(p));
    let text = gw
        .search(search(SearchMode::Text, false))
        .await
        .unwrap()
        .into_inner();
    assert!(!text.hits.is_empty());
    assert!(text.hits.iter().all(|h| h.vector_passage.is_none()));
    stack.shutdown().await.unwrap();
}
