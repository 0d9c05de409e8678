//! Readable fused scores end to end (issue 25 item 2), through the gateway with the real
//! model, PostgreSQL + pgvector and Tantivy: the two small documents, the text leg
//! matching only one of them. Under the old LINEAR z-score default the lone text match got a
//! fused score of 0 and the other hit -1; now, for every fusion method, every fused score is
//! in [0, 1], never increases down the ranking, the best match is on top with a positive
//! score, each leg's raw score is what that leg alone reports, and the explanation says how
//! the score follows from the contributions (their sum, or for LINEAR z-score, the default,
//! `Phi` of their sum: raw standard scores, so the default ranks as it was measured).

use braid_gateway::fusion::phi;
use braid_tests::v1::{
    FusionMethod, FusionParams, ScoreNormalization, SearchMode, SearchRequest, SearchResponse,
};
use braid_tests::{Ingest, Stack, doc};

const QUERY: &str = "why do cats purr";

fn request(mode: SearchMode, fusion: Option<FusionParams>) -> SearchRequest {
    SearchRequest {
        query: QUERY.into(),
        top_k: 10,
        mode: mode as i32,
        fusion,
        explain: true,
        bypass_cache: true,
        ..Default::default()
    }
}

fn fusion(method: FusionMethod, normalization: ScoreNormalization) -> Option<FusionParams> {
    Some(FusionParams {
        method: method as i32,
        normalization: normalization as i32,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_small_documents_get_fused_scores_in_0_1_for_every_method() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    Ingest::new(vec![
        doc(
            "cats",
            "Cats purr when they are content, and sometimes when hurt.",
        ),
        doc(
            "rain",
            "Rain fell on the quiet harbour town all night long.",
        ),
    ])
    .accepted(&mut gw)
    .await;

    let mut search = async |r: SearchRequest| -> SearchResponse {
        gw.search(r).await.expect("search").into_inner()
    };
    // The legs on their own: the text leg matches one document, the vector leg both.
    let text = search(request(SearchMode::Text, None)).await;
    let ids: Vec<&str> = text.hits.iter().map(|h| h.external_id.as_str()).collect();
    assert_eq!(ids, ["cats"], "{text:?}");
    let vector = search(request(SearchMode::Vector, None)).await;
    assert_eq!(vector.hits.len(), 2, "{vector:?}");

    let methods = [
        ("gateway default", None),
        (
            "RRF",
            fusion(FusionMethod::Rrf, ScoreNormalization::Unspecified),
        ),
        (
            "LINEAR min-max",
            fusion(FusionMethod::Linear, ScoreNormalization::MinMax),
        ),
        (
            "LINEAR z-score",
            fusion(FusionMethod::Linear, ScoreNormalization::ZScore),
        ),
        (
            "LINEAR rank",
            fusion(FusionMethod::Linear, ScoreNormalization::Rank),
        ),
        (
            "DBSF",
            fusion(FusionMethod::Dbsf, ScoreNormalization::Unspecified),
        ),
    ];
    for (name, params) in methods {
        let r = search(request(SearchMode::Hybrid, params)).await;
        assert!(!r.degraded, "{name}: {r:?}");
        let scores: Vec<f32> = r.hits.iter().map(|h| h.score).collect();
        assert_eq!(scores.len(), 2, "{name}: {r:?}");
        assert!(
            scores.iter().all(|s| (0.0..=1.0).contains(s)),
            "{name}: {scores:?}"
        );
        assert!(scores[0] >= scores[1], "{name}: {scores:?}");
        let best = &r.hits[0];
        assert_eq!(best.external_id, "cats", "{name}: {r:?}");
        assert!(best.score > 0.0, "{name}: {scores:?}");
        let e = best.explanation.as_ref().expect("explain");
        let t = e.legs.iter().find(|l| l.leg == "text").expect("text leg");
        let sum: f32 = e.legs.iter().map(|l| l.contribution).sum();
        let z_score = e.normalization == ScoreNormalization::ZScore as i32;
        assert_eq!(
            z_score,
            name.contains("z-score") || name == "gateway default"
        );
        if z_score {
            // A lone text match is its leg's average, z = 0 (as the measured default ranks);
            // the score is Phi of the sum, strictly inside (0, 1).
            assert_eq!(t.normalized_score, 0.0, "{name}: {e:?}");
            assert!(
                e.score_formula
                    .starts_with("score = Phi(sum of contributions)"),
                "{name}: {e:?}"
            );
            let want = phi(f64::from(sum)) as f32;
            assert!((want - best.score).abs() < 1e-5, "{name}: {e:?}");
            assert!(
                scores.iter().all(|&s| s > 0.0 && s < 1.0),
                "{name}: {scores:?}"
            );
        } else {
            // The lone text match is its leg's best: the text leg's full share, never 0.
            assert_eq!(t.normalized_score, 1.0, "{name}: {e:?}");
            assert!(t.contribution > 0.0, "{name}: {e:?}");
            assert_eq!(e.score_formula, "score = sum of contributions", "{name}");
            assert!((sum - best.score).abs() < 1e-5, "{name}: {e:?}");
        }
        // Per-leg raw scores are the legs' own (BM25, cosine), untouched by fusion.
        assert_eq!(best.text_score, Some(text.hits[0].score), "{name}");
        for h in &r.hits {
            let alone = vector
                .hits
                .iter()
                .find(|v| v.external_id == h.external_id)
                .map(|v| v.score);
            assert_eq!(h.vector_score, alone, "{name}: {}", h.external_id);
        }
    }
    stack.shutdown().await.unwrap();
}
