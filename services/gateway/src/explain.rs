//! The `explain` output of a hit: per leg, what went into its fused score (raw score,
//! normalised score, rank, weight, contribution, matched chunk), and how the score follows
//! from them (`score_formula`). The contributions are the very terms fusion added, so they
//! add up to the hit's score (to float rounding) — under LINEAR z-score, to the standard
//! score whose `Phi` is the hit's score. With adaptive weighting, also the weights this query
//! got and the features they came from (`adaptive`).

use braid_proto::v1::{FusionMethod, HitExplanation, LegExplanation, ScoreNormalization};

use crate::fusion::{Adapted, Formula, FusedHit, LegScore, Method, Params};

/// How `hit`'s score came about. With one leg only (`single_leg`: VECTOR or TEXT mode, or
/// the other leg failed), no method applies: the method is UNSPECIFIED and the score is that
/// leg's raw score (weight 1). `params` are the search's (with `adapted`, the adapted ones).
pub fn explanation(
    hit: &FusedHit,
    params: &Params,
    adapted: Option<&Adapted>,
    single_leg: bool,
) -> HitExplanation {
    let (method, normalization) = if single_leg {
        (FusionMethod::Unspecified, ScoreNormalization::Unspecified)
    } else {
        match params.method {
            Method::Rrf => (FusionMethod::Rrf, ScoreNormalization::Unspecified),
            Method::Linear => (FusionMethod::Linear, params.normalization.to_proto()),
            Method::Dbsf => (FusionMethod::Dbsf, ScoreNormalization::Unspecified),
        }
    };
    let leg = |name: &str, l: &LegScore| LegExplanation {
        leg: name.to_string(),
        raw_score: l.score,
        normalized_score: l.normalized,
        rank: l.rank,
        weight: l.weight,
        contribution: l.contribution,
        chunk_id: l.chunk_id.clone(),
    };
    let legs = [("vector", &hit.vector), ("text", &hit.text)]
        .into_iter()
        .filter_map(|(name, l)| l.as_ref().map(|l| leg(name, l)))
        .collect();
    HitExplanation {
        method: method as i32,
        normalization: normalization as i32,
        legs,
        score_formula: Formula::of(params, single_leg).describe().to_string(),
        adaptive: adapted.filter(|_| !single_leg).map(Adapted::to_proto),
    }
}

#[cfg(test)]
mod tests {
    use braid_proto::v1::ChunkHit;

    use super::*;
    use crate::fusion::{Granularity, Normalization, fuse, phi};

    fn hit(doc: &str, chunk: u32, score: f32) -> ChunkHit {
        ChunkHit {
            chunk_id: format!("{doc}:{chunk}"),
            document_id: doc.into(),
            score,
            ..Default::default()
        }
    }

    #[test]
    fn legs_add_up_to_the_score_and_name_their_chunk() {
        let vector = [hit("a", 2, 0.9), hit("b", 0, 0.7)];
        let text = [hit("b", 1, 8.0), hit("a", 0, 2.0)];
        for (method, normalization) in [
            (Method::Rrf, Normalization::MinMax),
            (Method::Linear, Normalization::MinMax),
            (Method::Linear, Normalization::ZScore),
            (Method::Linear, Normalization::Rank),
            (Method::Dbsf, Normalization::MinMax),
        ] {
            let params = Params {
                method,
                normalization,
                k: 60.0,
                vector_weight: 0.6,
                text_weight: 1.4,
            };
            for f in fuse(Some(&vector), Some(&text), &params, Granularity::Document) {
                let e = explanation(&f, &params, None, false);
                assert_eq!(e.legs.len(), 2);
                let sum: f32 = e.legs.iter().map(|l| l.contribution).sum();
                let z_score = normalization == Normalization::ZScore && method == Method::Linear;
                let (want, formula) = if z_score {
                    (
                        phi(f64::from(sum)) as f32,
                        "score = Phi(sum of contributions)",
                    )
                } else {
                    (sum, "score = sum of contributions")
                };
                assert!((want - f.score).abs() < 1e-6, "{method:?}: {e:?}");
                assert!(e.score_formula.starts_with(formula), "{e:?}");
                let a_or_b = &f.hit.document_id;
                let vector_chunk = if a_or_b == "a" { "a:2" } else { "b:0" };
                assert_eq!(e.legs[0].chunk_id, vector_chunk);
                assert_eq!(e.legs[1].leg, "text");
                assert!((e.legs[1].weight - 0.7).abs() < 1e-6, "1.4 of 0.6 + 1.4");
                let want = method.to_proto();
                assert_eq!(e.method, want as i32);
            }
        }
        let single = fuse(
            None,
            Some(&text),
            &Params {
                method: Method::Linear,
                normalization: Normalization::MinMax,
                k: 60.0,
                vector_weight: 1.0,
                text_weight: 1.0,
            },
            Granularity::Document,
        );
        let e = explanation(
            &single[0],
            &Params {
                method: Method::Linear,
                normalization: Normalization::MinMax,
                k: 60.0,
                vector_weight: 1.0,
                text_weight: 1.0,
            },
            None,
            true,
        );
        assert_eq!(e.method, FusionMethod::Unspecified as i32);
        assert_eq!(e.legs[0].contribution, 8.0);
        assert_eq!(e.score_formula, "score = sum of contributions");
    }

    /// With adaptive weighting the explanation shows the query's weights, its features and
    /// the rule, and the legs' shares are of the adapted weights.
    #[test]
    fn adapted_weights_are_shown() {
        use crate::fusion::{Features, Rule, adaptive};
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.7), hit("c", 0, 0.6)];
        let text = [hit("b", 1, 8.0), hit("a", 0, 2.0)];
        let params = Params {
            method: Method::Linear,
            normalization: Normalization::ZScore,
            k: 60.0,
            vector_weight: 1.0,
            text_weight: 0.75,
        };
        let rule = Rule {
            margin_slope: 0.0,
            length_slope: -1.0,
            pivot_terms: 9,
        };
        let features = Features::of(&vector, &text, Granularity::Document, 3);
        let adapted = adaptive::adapt(&rule, &params, features);
        assert!(
            (adapted.params.text_weight - 0.75 * 3.0).abs() < 1e-5,
            "(3 / 9)^-1"
        );
        let fused = fuse(
            Some(&vector),
            Some(&text),
            &adapted.params,
            Granularity::Document,
        );
        let e = explanation(&fused[0], &adapted.params, Some(&adapted), false);
        let a = e.adaptive.expect("adaptive weights shown");
        assert_eq!(
            (a.base_vector_weight, a.base_text_weight, a.vector_weight),
            (1.0, 0.75, 1.0)
        );
        assert_eq!(a.text_weight, adapted.params.text_weight);
        assert_eq!((a.query_terms, a.pivot_terms, a.length_slope), (3, 9, -1.0));
        assert_eq!(a.text_margin, features.text_margin);
        let t = e.legs.iter().find(|l| l.leg == "text").unwrap();
        let share = a.text_weight / (a.vector_weight + a.text_weight);
        assert!((t.weight - share).abs() < 1e-6, "{t:?}");
        // Fixed weights, or a single leg: nothing to show.
        assert_eq!(explanation(&fused[0], &params, None, false).adaptive, None);
        assert_eq!(
            explanation(&fused[0], &adapted.params, Some(&adapted), true).adaptive,
            None
        );
    }
}
