//! Adaptive weighting end to end (issue 25 item 1), through the gateway with the real model,
//! PostgreSQL + pgvector and Tantivy: a search with `fusion.adaptive` answers, a one-word
//! query and a long question over the same documents get different weights (the rule's
//! length term), `explain` shows the weights each got and the features they came from, the
//! legs' shares are of those weights and scores stay in [0, 1]; without it nothing changes
//! (no `adaptive` in the explanation, the configured weights); a parameter out of range, or
//! set while weighting is off, is INVALID_ARGUMENT naming the field.

use braid_tests::v1::{
    AdaptiveFusion, AdaptiveWeights, FusionParams, SearchMode, SearchRequest, SearchResponse,
};
use braid_tests::{Ingest, Stack, doc};

const ONE_WORD: &str = "volcano";
const QUESTION: &str = "which mountain eruptions in iceland sent ash clouds over european airports and stopped flights";

fn request(query: &str, adaptive: Option<AdaptiveFusion>) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        top_k: 10,
        mode: SearchMode::Hybrid as i32,
        fusion: Some(FusionParams {
            adaptive,
            ..Default::default()
        }),
        explain: true,
        bypass_cache: true,
        ..Default::default()
    }
}

/// Length alone moves the weights: text weight × (terms / 9)^-0.5.
const BY_LENGTH: AdaptiveFusion = AdaptiveFusion {
    enabled: Some(true),
    margin_slope: Some(0.0),
    length_slope: Some(-0.5),
    pivot_terms: None,
};

/// The adaptive weights every hit of `r` shows (the same for all), after checking the legs'
/// shares are of them and the scores readable.
fn weights(r: &SearchResponse) -> AdaptiveWeights {
    assert!(!r.degraded, "{r:?}");
    assert!(r.hits.len() >= 2, "{r:?}");
    assert!(
        r.hits.iter().all(|h| (0.0..=1.0).contains(&h.score)),
        "{r:?}"
    );
    assert!(r.hits.windows(2).all(|w| w[0].score >= w[1].score), "{r:?}");
    let first = r.hits[0]
        .explanation
        .as_ref()
        .and_then(|e| e.adaptive)
        .expect("explain shows the adaptive weights");
    for h in &r.hits {
        let e = h.explanation.as_ref().expect("explain");
        assert_eq!(e.adaptive, Some(first), "one query, one set of weights");
        let sum = first.vector_weight + first.text_weight;
        for l in &e.legs {
            let weight = if l.leg == "text" {
                first.text_weight
            } else {
                first.vector_weight
            };
            assert!((l.weight - weight / sum).abs() < 1e-5, "{l:?} {first:?}");
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adaptive_weights_differ_by_query_and_are_explained() {
    let stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    Ingest::new(vec![
        doc(
            "eyjafjallajokull",
            "The 2010 eruption of the Eyjafjallajokull volcano in Iceland sent an ash cloud \
             over Europe; airports closed and thousands of flights were cancelled.",
        ),
        doc(
            "etna",
            "Mount Etna is an active volcano on Sicily whose lava flows reach the villages.",
        ),
        doc(
            "harbour",
            "Rain fell on the quiet harbour town all night long while the boats rocked.",
        ),
        doc(
            "airports",
            "European airports handle millions of passengers and flights every summer.",
        ),
    ])
    .accepted(&mut gw)
    .await;
    let mut search = async |r: SearchRequest| -> SearchResponse {
        gw.search(r).await.expect("search").into_inner()
    };

    let base = stack.gateway_config.search.clone();
    let short = weights(&search(request(ONE_WORD, Some(BY_LENGTH))).await);
    let long = weights(&search(request(QUESTION, Some(BY_LENGTH))).await);
    for w in [&short, &long] {
        assert_eq!(
            (w.base_vector_weight, w.base_text_weight, w.vector_weight),
            (base.vector_weight, base.text_weight, base.vector_weight),
            "{w:?}"
        );
        assert_eq!(
            (w.margin_slope, w.length_slope, w.pivot_terms),
            (0.0, -0.5, base.adaptive.pivot_terms)
        );
        let factor = (w.query_terms as f32 / w.pivot_terms as f32).powf(-0.5);
        assert!(
            (w.text_weight - base.text_weight * factor).abs() < 1e-4,
            "{w:?}"
        );
    }
    assert_eq!(short.query_terms, 1, "{short:?}");
    assert!(long.query_terms > 9, "{long:?}");
    assert!(
        short.text_weight > base.text_weight && base.text_weight > long.text_weight,
        "a one-word query leans on the text leg, a long question on the vector leg: \
         {short:?} {long:?}"
    );

    // The gateway's own rule (`search.adaptive`): margins count too, and it answers.
    let own = weights(
        &search(request(
            QUESTION,
            Some(AdaptiveFusion {
                enabled: Some(true),
                ..Default::default()
            }),
        ))
        .await,
    );
    assert_eq!(
        (own.margin_slope, own.length_slope),
        (base.adaptive.margin_slope, base.adaptive.length_slope)
    );
    assert!(
        own.text_margin >= 0.0 && own.vector_margin >= 0.0,
        "{own:?}"
    );

    // Off (the default): the configured weights, no adaptive account.
    let fixed = search(request(QUESTION, None)).await;
    assert!(!fixed.degraded, "{fixed:?}");
    for h in &fixed.hits {
        let e = h.explanation.as_ref().expect("explain");
        assert_eq!(e.adaptive, None, "{e:?}");
        for l in &e.legs {
            let weight = if l.leg == "text" {
                base.text_weight
            } else {
                base.vector_weight
            };
            let share = weight / (base.vector_weight + base.text_weight);
            assert!((l.weight - share).abs() < 1e-6, "{l:?}");
        }
    }

    // Bad parameters, or parameters of a weighting that is off, are refused by name.
    for (adaptive, field) in [
        (
            AdaptiveFusion {
                margin_slope: Some(11.0),
                ..BY_LENGTH
            },
            "fusion.adaptive.margin_slope",
        ),
        (
            AdaptiveFusion {
                pivot_terms: Some(0),
                ..BY_LENGTH
            },
            "fusion.adaptive.pivot_terms",
        ),
        (
            AdaptiveFusion {
                enabled: None,
                ..BY_LENGTH
            },
            "fusion.adaptive.margin_slope",
        ),
    ] {
        let status = gw
            .search(request(ONE_WORD, Some(adaptive)))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    stack.shutdown().await.unwrap();
}
