//! Adaptive weighting: the legs' weights of one search chosen from what is known before
//! fusion (issue 25 item 1). Every system we compare with uses one weight for all queries,
//! while the best weight differs by query: a leg whose best candidate stands far above the
//! rest is surer of itself than one whose top is a crowd, and short keyword queries are
//! said to favour BM25 while long questions favour the dense leg.
//!
//! The rule is small on purpose (150 dev queries overfit anything bigger), monotone in each
//! feature and readable in the explain output. The vector leg keeps its weight; the text
//! leg's is multiplied by
//!
//! ```text
//! factor = exp(clamp(margin_slope * (text_margin - vector_margin)
//!                    + length_slope * ln(query_terms / pivot_terms), -ln 10, ln 10))
//! ```
//!
//! so the odds of the text leg's share move by `e^margin_slope` per standard deviation of
//! margin it has over the vector leg, and by `(query_terms / pivot_terms)^length_slope` with
//! the query's length. Both slopes 0 give a factor of exactly 1: the weights, and so the
//! ranking, are the fixed ones bit for bit.
//!
//! Features ([`Features`]): each leg's top-1 margin `(s1 - s2) / std` over its candidates
//! (after the per-document reduction fusion does; population standard deviation; 0 with fewer
//! than two candidates or all equal), and the query's distinct terms, stop words aside (at
//! least 1). Term rarity is not a feature: neither leg reports it.
//!
//! Scores stay in [0, 1] and monotone in rank: only the weights change, and fusion treats
//! them as it treats any weights.

use braid_proto::v1::{AdaptiveWeights, ChunkHit};

use super::normalize::moments;
use super::{Granularity, Params, ranked};

/// The exponent's bound: the text weight moves by a factor between 1/10 and 10.
const MAX_SHIFT: f32 = std::f32::consts::LN_10;

/// The rule's parameters (`search.adaptive`, `fusion.adaptive`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Log-odds of the text leg's share per standard deviation of top-1 margin the text leg
    /// has over the vector leg.
    pub margin_slope: f32,
    /// Log-odds of the text leg's share per unit of `ln(query_terms / pivot_terms)`.
    pub length_slope: f32,
    /// The query length (distinct terms) at which length moves nothing.
    pub pivot_terms: u32,
}

/// What is known of a search before fusion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Distinct query terms, stop words aside; at least 1.
    pub query_terms: u32,
    /// Each leg's top-1 margin in its own standard deviations ([`margin`]).
    pub text_margin: f32,
    pub vector_margin: f32,
}

impl Features {
    /// The features of a search whose legs answered `vector` and `text` (in rank order, as
    /// fusion receives them), for a query of `query_terms` distinct terms.
    pub fn of(
        vector: &[ChunkHit],
        text: &[ChunkHit],
        granularity: Granularity,
        query_terms: usize,
    ) -> Features {
        let scores = |hits: &[ChunkHit]| -> Vec<f32> {
            ranked(hits, granularity)
                .iter()
                .map(|(h, _)| h.score)
                .collect()
        };
        Features {
            query_terms: u32::try_from(query_terms).unwrap_or(u32::MAX).max(1),
            text_margin: margin(&scores(text)),
            vector_margin: margin(&scores(vector)),
        }
    }
}

/// How far the best of `scores` (best first) stands above the second, in standard deviations
/// of all of them (population): `(s1 - s2) / std`. 0 with fewer than two scores, or when they
/// are all equal (nothing tells the best apart).
pub fn margin(scores: &[f32]) -> f32 {
    let [first, second, ..] = scores else {
        return 0.0;
    };
    let (mean, std) = moments(scores);
    if !(std.is_finite() && std > 1e-12 * mean.abs().max(1.0)) {
        return 0.0;
    }
    (((f64::from(*first) - f64::from(*second)) / std) as f32).max(0.0)
}

impl Rule {
    /// The factor on the text leg's weight for a search with `features`: in [0.1, 10],
    /// exactly 1 when both slopes are 0; never decreasing in the text margin (for a margin
    /// slope ≥ 0), never increasing in the vector margin.
    pub fn text_factor(&self, f: &Features) -> f32 {
        let length = (f.query_terms.max(1) as f32 / self.pivot_terms.max(1) as f32).ln();
        let margins = f.text_margin - f.vector_margin;
        // A zero slope adds exactly 0, whatever the feature (no 0 * inf).
        let term = |slope: f32, x: f32| if slope == 0.0 { 0.0 } else { slope * x };
        let shift = term(self.margin_slope, margins) + term(self.length_slope, length);
        if shift == 0.0 || shift.is_nan() {
            return 1.0;
        }
        shift.clamp(-MAX_SHIFT, MAX_SHIFT).exp()
    }
}

/// The weights one search got: `params` with the adapted weights, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adapted {
    /// The search's fusion parameters with this query's weights.
    pub params: Params,
    /// The weights before adaptation.
    pub base_vector_weight: f32,
    pub base_text_weight: f32,
    pub features: Features,
    pub rule: Rule,
}

/// `params` with the text leg's weight scaled by `rule` for a search with `features`.
pub fn adapt(rule: &Rule, params: &Params, features: Features) -> Adapted {
    let factor = rule.text_factor(&features);
    let text_weight = if factor == 1.0 {
        params.text_weight
    } else {
        params.text_weight * factor
    };
    Adapted {
        params: Params {
            text_weight,
            ..*params
        },
        base_vector_weight: params.vector_weight,
        base_text_weight: params.text_weight,
        features,
        rule: *rule,
    }
}

impl Adapted {
    /// The explain output's account of these weights.
    pub fn to_proto(&self) -> AdaptiveWeights {
        AdaptiveWeights {
            base_vector_weight: self.base_vector_weight,
            base_text_weight: self.base_text_weight,
            vector_weight: self.params.vector_weight,
            text_weight: self.params.text_weight,
            query_terms: self.features.query_terms,
            text_margin: self.features.text_margin,
            vector_margin: self.features.vector_margin,
            margin_slope: self.rule.margin_slope,
            length_slope: self.rule.length_slope,
            pivot_terms: self.rule.pivot_terms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fusion::{Method, Normalization, fuse};

    fn hit(doc: &str, score: f32) -> ChunkHit {
        ChunkHit {
            chunk_id: format!("{doc}:0"),
            document_id: doc.into(),
            score,
            ..Default::default()
        }
    }

    fn hits(prefix: &str, scores: &[f32]) -> Vec<ChunkHit> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &s)| hit(&format!("{prefix}{i}"), s))
            .collect()
    }

    const RULE: Rule = Rule {
        margin_slope: 1.0,
        length_slope: -0.5,
        pivot_terms: 9,
    };

    const DEFAULT: Params = Params {
        method: Method::Linear,
        normalization: Normalization::ZScore,
        k: 60.0,
        vector_weight: 1.0,
        text_weight: 0.75,
    };

    #[test]
    fn margin_is_the_top_gap_in_standard_deviations() {
        // mean 2.5, population std sqrt(1.25): (4 - 3) / 1.118.
        let m = margin(&[4.0, 3.0, 2.0, 1.0]);
        assert!((m - 1.0 / 1.25f32.sqrt()).abs() < 1e-6, "{m}");
        // Two candidates: std is half the gap, so the margin is 2 whatever the scale.
        assert!((margin(&[0.61, 0.12]) - 2.0).abs() < 1e-5);
        assert!((margin(&[30.0, 10.0]) - 2.0).abs() < 1e-5);
        // One candidate, none, all equal, a tie at the top: nothing tells the best apart.
        assert_eq!(margin(&[0.42]), 0.0);
        assert_eq!(margin(&[]), 0.0);
        assert_eq!(margin(&[7.0, 7.0, 7.0]), 0.0);
        assert_eq!(margin(&[5.0, 5.0, 1.0]), 0.0);
        // An outlier on top stands further out than a crowd.
        assert!(margin(&[80.0, 7.0, 6.5, 6.0]) > margin(&[8.0, 7.0, 6.5, 6.0]));
    }

    #[test]
    fn features_count_documents_as_fusion_does() {
        // The vector leg's two best chunks are one document: its margin is between documents.
        let second_chunk = ChunkHit {
            chunk_id: "a:1".into(),
            ..hit("a", 0.89)
        };
        let vector = vec![hit("a", 0.9), second_chunk, hit("b", 0.5), hit("c", 0.4)];
        let text = hits("t", &[12.0, 3.0, 2.0]);
        let f = Features::of(&vector, &text, Granularity::Document, 4);
        assert!(
            (f.vector_margin - margin(&[0.9, 0.5, 0.4])).abs() < 1e-6,
            "{f:?}"
        );
        assert!((f.text_margin - margin(&[12.0, 3.0, 2.0])).abs() < 1e-6);
        assert_eq!(f.query_terms, 4);
        let f = Features::of(&vector, &text, Granularity::Chunk, 0);
        assert!((f.vector_margin - margin(&[0.9, 0.89, 0.5, 0.4])).abs() < 1e-6);
        assert_eq!(f.query_terms, 1, "a query of stop words counts as one term");
        // An empty leg, a one-candidate leg: margin 0.
        let f = Features::of(&[], &text[..1], Granularity::Document, 3);
        assert_eq!((f.vector_margin, f.text_margin), (0.0, 0.0));
    }

    #[test]
    fn zero_slopes_leave_the_weights_bit_for_bit() {
        let flat = Rule {
            margin_slope: 0.0,
            length_slope: 0.0,
            pivot_terms: 9,
        };
        for f in [
            Features {
                query_terms: 1,
                text_margin: 3.0,
                vector_margin: 0.0,
            },
            Features {
                query_terms: 32,
                text_margin: f32::INFINITY,
                vector_margin: 0.1,
            },
        ] {
            assert_eq!(flat.text_factor(&f), 1.0);
            let a = adapt(&flat, &DEFAULT, f);
            assert_eq!(a.params, DEFAULT);
        }
        // At the pivot with equal margins, any rule leaves them too.
        let even = Features {
            query_terms: 9,
            text_margin: 0.7,
            vector_margin: 0.7,
        };
        assert_eq!(adapt(&RULE, &DEFAULT, even).params, DEFAULT);
    }

    #[test]
    fn the_rule_is_monotone_and_bounded() {
        let at = |terms: u32, text: f32, vector: f32| {
            RULE.text_factor(&Features {
                query_terms: terms,
                text_margin: text,
                vector_margin: vector,
            })
        };
        // A surer text leg gets more weight; a surer vector leg takes it away.
        let margins = [0.0f32, 0.2, 0.5, 1.0, 2.0, 4.0];
        for w in margins.windows(2) {
            assert!(at(9, w[1], 0.5) > at(9, w[0], 0.5), "{w:?}");
            assert!(at(9, 0.5, w[1]) < at(9, 0.5, w[0]), "{w:?}");
        }
        // A negative length slope: longer queries give the text leg less.
        let lengths = [1u32, 2, 4, 9, 16, 32];
        for w in lengths.windows(2) {
            assert!(at(w[1], 1.0, 1.0) < at(w[0], 1.0, 1.0), "{w:?}");
        }
        assert!((at(9, 1.5, 0.5) - 1f32.exp()).abs() < 1e-6);
        assert!((at(36, 0.5, 0.5) - 0.5).abs() < 1e-6, "(36 / 9)^-0.5");
        // Bounded: a factor within [0.1, 10] however far out the features are.
        assert!((at(9, 1e6, 0.0) - 10.0).abs() < 1e-4);
        assert!((at(9, 0.0, 1e6) - 0.1).abs() < 1e-5);
        assert_eq!(
            at(9, f32::INFINITY, f32::INFINITY),
            1.0,
            "NaN shift: no change"
        );
    }

    /// Adapted weights go through fusion like any weights: scores in (0, 1), non-increasing
    /// down the ranking, shares of the adapted weights shown per leg; a one-word and a long
    /// query over the same legs get different weights.
    #[test]
    fn adapted_weights_fuse_to_readable_scores() {
        // Margins alike (vector 2.12, text 1.93): the query's length decides.
        let vector = hits("d", &[0.90, 0.70, 0.68, 0.66, 0.64]);
        let text = vec![
            hit("d3", 12.0),
            hit("d5", 9.0),
            hit("d6", 8.5),
            hit("d0", 8.0),
        ];
        let short = adapt(
            &RULE,
            &DEFAULT,
            Features::of(&vector, &text, Granularity::Document, 1),
        );
        let long = adapt(
            &RULE,
            &DEFAULT,
            Features::of(&vector, &text, Granularity::Document, 20),
        );
        assert!(
            short.params.text_weight > long.params.text_weight,
            "{short:?} {long:?}"
        );
        assert_eq!(short.params.vector_weight, 1.0);
        let shown = short.to_proto();
        assert_eq!(
            (shown.base_text_weight, shown.text_weight, shown.query_terms),
            (0.75, short.params.text_weight, 1)
        );
        for a in [short, long] {
            let out = fuse(Some(&vector), Some(&text), &a.params, Granularity::Document);
            assert!(
                out.iter().all(|h| h.score > 0.0 && h.score < 1.0),
                "{out:?}"
            );
            assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
            let t = out[0].text.as_ref().or(out[1].text.as_ref()).unwrap();
            let share = a.params.text_weight / (1.0 + a.params.text_weight);
            assert!((t.weight - share).abs() < 1e-6, "{a:?}: {t:?}");
        }
        // The text leg's best (d3) wins with the one-word query's weights (text weight 1.85),
        // the vector leg's (d0) with the long query's (0.41).
        let top = |a: &Adapted| {
            fuse(Some(&vector), Some(&text), &a.params, Granularity::Document)[0]
                .hit
                .document_id
                .clone()
        };
        assert_eq!(top(&short), "d3");
        assert_eq!(top(&long), "d0");
    }
}
