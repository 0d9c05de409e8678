//! Rank fusion of the two legs, by one of three methods. The legs' weights are used as shares
//! of their sum (`weight_leg / (vector_weight + text_weight)`) and a leg that did not return
//! the hit adds nothing. Each leg's term is a number in [0, 1] (1 for the leg's best hit), so
//! the fused score, the sum of the contributions, is in [0, 1] — except under LINEAR z-score,
//! whose terms are raw standard scores (as the measured default ranks): there the score is
//! `Phi(sum of contributions)`, in (0, 1), in the same order as the sum ([`Formula`]).
//!
//! * reciprocal rank fusion (Cormack et al., 2009): the leg's term is
//!   `(k + 1) / (k + rank_leg)`, with ranks from 1 — `1 / (k + rank)` scaled so the first
//!   rank gives 1; it needs no score normalisation, so BM25 and cosine scores combine without
//!   calibration;
//! * linear (convex) combination: the leg's scores normalised over that leg's hits
//!   ([`normalize`]: min-max, rank, or z-score with the sum shown through [`phi`]);
//! * distribution-based score fusion (DBSF, as in Qdrant): the leg's scores normalised by
//!   that leg's mean ± 3 standard deviations, clipped to [0, 1] ([`three_sigma`]).
//!
//! Each leg's ranking is first reduced to its best chunk per document (or kept per chunk on
//! request). Every fused hit keeps, per leg, what went into its score ([`LegScore`]), so the
//! contributions add up to the fused score (under LINEAR z-score, to the standard score whose
//! `Phi` is the fused score) (the explain output, `crate::explain`).
//!
//! The weights are the request's or the gateway's, or, with adaptive weighting on, chosen
//! for the query from the legs' answers and its length before fusion ([`adaptive`]).

pub mod adaptive;
mod normalize;
mod params;

use std::collections::HashMap;

use braid_proto::v1::ChunkHit;

pub use adaptive::{Adapted, Features, Rule};
pub use normalize::{Normalization, normalize, phi, three_sigma};
pub use params::{
    Choices, Defaults, MAX_PIVOT_TERMS, MAX_SLOPE, Method, Params, choices, pivot_in_range,
    slope_in_range,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Document,
    Chunk,
}

/// One leg's part in a fused hit.
#[derive(Debug, Clone, PartialEq)]
pub struct LegScore {
    /// The leg's own score (cosine similarity or BM25).
    pub score: f32,
    /// 1-based rank within the leg (after per-document reduction).
    pub rank: u32,
    /// RRF: `(k + 1) / (k + rank)`; LINEAR and DBSF: the normalised score, in [0, 1] but
    /// for z-score (a raw standard score). A single leg: the raw score.
    pub normalized: f32,
    /// The leg's share of the weights, `weight / (vector_weight + text_weight)` (1 for a
    /// single leg).
    pub weight: f32,
    /// `weight * normalized`.
    pub contribution: f32,
    /// The chunk this leg matched (its best chunk of the document).
    pub chunk_id: String,
}

#[derive(Debug, Clone)]
pub struct FusedHit {
    /// The chunk that represents the hit: the one the best-ranking leg returned.
    pub hit: ChunkHit,
    pub snippet: String,
    /// The sum of the legs' contributions (vector first, then text); under LINEAR z-score
    /// `Phi` of that sum ([`Formula`]).
    pub score: f32,
    pub vector: Option<LegScore>,
    pub text: Option<LegScore>,
}

fn key(hit: &ChunkHit, granularity: Granularity) -> &str {
    match granularity {
        Granularity::Document => &hit.document_id,
        Granularity::Chunk => &hit.chunk_id,
    }
}

/// A leg's hits reduced to one per key, best first, with ranks.
fn ranked(hits: &[ChunkHit], granularity: Granularity) -> Vec<(&ChunkHit, u32)> {
    let mut seen = std::collections::HashSet::new();
    hits.iter()
        .filter(|h| seen.insert(key(h, granularity)))
        .zip(1u32..)
        .collect()
}

/// The legs' weights as shares of their sum (both 0 when the sum is 0).
fn shares(params: &Params) -> (f32, f32) {
    let sum = params.vector_weight + params.text_weight;
    if sum > 0.0 && sum.is_finite() {
        (params.vector_weight / sum, params.text_weight / sum)
    } else {
        (0.0, 0.0)
    }
}

/// What each ranked hit of one leg brings: `(normalised score, weight share)`.
fn leg_terms(
    ranked: &[(&ChunkHit, u32)],
    share: f32,
    params: &Params,
    single_leg: bool,
) -> Vec<(f32, f32)> {
    if single_leg {
        return ranked.iter().map(|(h, _)| (h.score, 1.0)).collect();
    }
    let scores = || ranked.iter().map(|(h, _)| h.score).collect::<Vec<f32>>();
    let normalized = match params.method {
        Method::Rrf => ranked
            .iter()
            .map(|&(_, rank)| (params.k + 1.0) / (params.k + rank as f32))
            .collect(),
        Method::Linear => normalize(&scores(), params.normalization),
        Method::Dbsf => three_sigma(&scores()),
    };
    normalized.into_iter().map(|n| (n, share)).collect()
}

/// How a hit's fused score follows from its legs' contributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formula {
    /// `score = sum of contributions` (RRF, DBSF, LINEAR min-max and rank, a single leg).
    Sum,
    /// `score = Phi(sum of contributions)`: LINEAR z-score, whose contributions are weight
    /// shares times raw standard scores (unbounded); the standard normal distribution
    /// function maps their sum into (0, 1) without changing the order.
    PhiOfSum,
}

impl Formula {
    pub fn of(params: &Params, single_leg: bool) -> Formula {
        if !single_leg
            && params.method == Method::Linear
            && params.normalization == Normalization::ZScore
        {
            Formula::PhiOfSum
        } else {
            Formula::Sum
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Formula::Sum => "score = sum of contributions",
            Formula::PhiOfSum => {
                "score = Phi(sum of contributions), Phi the standard normal distribution function"
            }
        }
    }
}

/// The largest `f32` below 1: a displayed z-score fusion never reaches 1 (nor 0).
const BELOW_ONE: f32 = 1.0 - f32::EPSILON / 2.0;

/// Fuses the two legs' rankings; either may be absent (skipped or failed). With a single
/// leg present the hit keeps that leg's own score, so VECTOR and TEXT modes report cosine
/// similarity and BM25 respectively.
///
/// LINEAR z-score (the gateway's default) ranks exactly as before scores were made readable:
/// by `sum over legs of weight_leg * z_leg` with the raw weights, summed in `f32` vector leg
/// first, as the measured default (BENCHMARKS.md) did; the score shown is
/// `Phi(that sum / (vector_weight + text_weight))`, a non-decreasing map of it, so the order
/// is the same and every score is in (0, 1).
pub fn fuse(
    vector: Option<&[ChunkHit]>,
    text: Option<&[ChunkHit]>,
    params: &Params,
    granularity: Granularity,
) -> Vec<FusedHit> {
    fuse_top(vector, text, params, granularity, usize::MAX)
}

/// A hit being fused: references into the legs' answers, so nothing is copied until the
/// ranking is known.
struct Pending<'a> {
    hit: &'a ChunkHit,
    /// The best rank any leg gave it (`hit` is that leg's chunk).
    best: u32,
    snippet: &'a str,
    score: f32,
    /// LINEAR z-score: the ranking key, `sum of raw weight * z` (as measured).
    raw_sum: f32,
    vector: Option<LegScore>,
    text: Option<LegScore>,
}

/// The first `limit` hits of [`fuse`]'s ranking (the same hits, scores and order); only those
/// are copied out of the legs' answers.
pub fn fuse_top(
    vector: Option<&[ChunkHit]>,
    text: Option<&[ChunkHit]>,
    params: &Params,
    granularity: Granularity,
    limit: usize,
) -> Vec<FusedHit> {
    let single_leg = vector.is_none() || text.is_none();
    let formula = Formula::of(params, single_leg);
    // In the order first seen; `at` finds a key's place.
    let mut pending: Vec<Pending> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    let (vector_share, text_share) = shares(params);
    let legs = [
        (vector, vector_share, params.vector_weight, true),
        (text, text_share, params.text_weight, false),
    ];
    for (hits, weight, raw_weight, is_vector) in legs {
        let Some(hits) = hits else { continue };
        let ranked = ranked(hits, granularity);
        let terms = leg_terms(&ranked, weight, params, single_leg);
        for (&(hit, rank), (normalized, weight)) in ranked.iter().zip(terms) {
            let leg = LegScore {
                score: hit.score,
                rank,
                normalized,
                weight,
                contribution: weight * normalized,
                chunk_id: hit.chunk_id.clone(),
            };
            let i = *at.entry(key(hit, granularity)).or_insert_with(|| {
                pending.push(Pending {
                    hit,
                    best: u32::MAX,
                    snippet: "",
                    score: 0.0,
                    raw_sum: 0.0,
                    vector: None,
                    text: None,
                });
                pending.len() - 1
            });
            let entry = &mut pending[i];
            entry.score += leg.contribution;
            entry.raw_sum += raw_weight * normalized;
            if is_vector {
                entry.vector = Some(leg);
            } else {
                entry.text = Some(leg);
                entry.snippet = &hit.snippet;
            }
            if rank < entry.best {
                entry.best = rank;
                entry.hit = hit;
            }
        }
    }
    let weight_sum = f64::from(params.vector_weight) + f64::from(params.text_weight);
    let mut out: Vec<(f32, Pending)> = pending
        .into_iter()
        .map(|mut h| {
            let sort_key = match formula {
                Formula::PhiOfSum => {
                    let z = if weight_sum > 0.0 && weight_sum.is_finite() {
                        f64::from(h.raw_sum) / weight_sum
                    } else {
                        0.0
                    };
                    h.score = (normalize::phi(z) as f32).clamp(f32::MIN_POSITIVE, BELOW_ONE);
                    h.raw_sum
                }
                Formula::Sum if single_leg => h.score,
                Formula::Sum => {
                    // Shares add up to 1 and terms are at most 1: only float rounding can
                    // leave [0, 1].
                    h.score = h.score.clamp(0.0, 1.0);
                    h.score
                }
            };
            (sort_key, h)
        })
        .collect();
    // Ties: better best-rank first, then first seen (stable sort keeps insertion order).
    let best = |h: &Pending| {
        h.vector
            .as_ref()
            .map_or(u32::MAX, |l| l.rank)
            .min(h.text.as_ref().map_or(u32::MAX, |l| l.rank))
    };
    out.sort_by(|(ka, a), (kb, b)| kb.total_cmp(ka).then_with(|| best(a).cmp(&best(b))));
    out.into_iter()
        .take(limit)
        .map(|(_, h)| FusedHit {
            hit: h.hit.clone(),
            snippet: h.snippet.to_string(),
            score: h.score,
            vector: h.vector,
            text: h.text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: &str, chunk: u32, score: f32) -> ChunkHit {
        ChunkHit {
            chunk_id: format!("{doc}:{chunk}"),
            document_id: doc.into(),
            score,
            snippet: format!("<b>{doc}</b>"),
            ..Default::default()
        }
    }

    const P: Params = Params {
        method: Method::Rrf,
        normalization: Normalization::MinMax,
        k: 60.0,
        vector_weight: 1.0,
        text_weight: 1.0,
    };

    fn leg(score: f32, rank: u32) -> (f32, u32) {
        (score, rank)
    }

    fn of(l: &Option<LegScore>) -> Option<(f32, u32)> {
        l.as_ref().map(|l| (l.score, l.rank))
    }

    #[test]
    fn rrf_scores_and_order() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8), hit("c", 0, 0.7)];
        let text = [hit("c", 0, 12.0), hit("a", 0, 9.0), hit("d", 0, 3.0)];
        let out = fuse(Some(&vector), Some(&text), &P, Granularity::Document);
        let ids: Vec<&str> = out.iter().map(|h| h.hit.document_id.as_str()).collect();
        // a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63, each scaled by 61 / 2.
        assert_eq!(ids, ["a", "c", "b", "d"]);
        assert!((out[0].score - (1.0 + 61.0 / 62.0) / 2.0).abs() < 1e-6);
        assert!((out[3].score - 61.0 / 63.0 / 2.0).abs() < 1e-6);
        assert_eq!(of(&out[0].vector), Some(leg(0.9, 1)));
        assert_eq!(of(&out[0].text), Some(leg(9.0, 2)));
        assert_eq!(out[2].text, None);
        assert_eq!(out[3].vector, None);
        assert_eq!(out[3].snippet, "<b>d</b>");
    }

    #[test]
    fn the_top_of_a_ranking_is_the_whole_ranking_cut() {
        let vector = [hit("a", 0, 0.5), hit("b", 0, 0.9), hit("c", 0, 0.7)];
        let text = [hit("c", 0, 12.0), hit("d", 0, 9.0), hit("b", 1, 3.0)];
        let linear = Params {
            method: Method::Linear,
            normalization: Normalization::ZScore,
            ..P
        };
        for params in [P, linear] {
            let all = fuse(Some(&vector), Some(&text), &params, Granularity::Document);
            let top = fuse_top(
                Some(&vector),
                Some(&text),
                &params,
                Granularity::Document,
                2,
            );
            let view = |h: &FusedHit| (h.hit.chunk_id.clone(), h.score, h.snippet.clone());
            assert_eq!(top.len(), 2);
            assert_eq!(
                top.iter().map(view).collect::<Vec<_>>(),
                all[..2].iter().map(view).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn weights_shift_the_balance() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8)];
        let text = [hit("b", 0, 5.0), hit("a", 0, 4.0)];
        let even = fuse(Some(&vector), Some(&text), &P, Granularity::Document);
        assert_eq!(even[0].hit.document_id, "a", "tie broken by first seen");
        let text_heavy = Params {
            text_weight: 2.0,
            ..P
        };
        let out = fuse(
            Some(&vector),
            Some(&text),
            &text_heavy,
            Granularity::Document,
        );
        assert_eq!(out[0].hit.document_id, "b");
    }

    #[test]
    fn documents_collapse_to_their_best_chunk_per_leg() {
        let vector = [hit("a", 3, 0.9), hit("a", 1, 0.85), hit("b", 0, 0.5)];
        let text = [hit("b", 2, 7.0), hit("a", 1, 6.0)];
        let out = fuse(Some(&vector), Some(&text), &P, Granularity::Document);
        assert_eq!(out.len(), 2);
        let b = out.iter().find(|h| h.hit.document_id == "b").unwrap();
        assert_eq!(
            b.vector.as_ref().unwrap().rank,
            2,
            "ranks count documents, not chunks"
        );
        assert_eq!(
            b.hit.chunk_id, "b:2",
            "representative chunk from the leg ranking it best"
        );
        let chunks = fuse(Some(&vector), Some(&text), &P, Granularity::Chunk);
        assert_eq!(chunks.len(), 4);
    }

    #[test]
    fn single_leg_keeps_raw_scores() {
        let text = [hit("x", 0, 11.5), hit("y", 0, 2.0)];
        let out = fuse(None, Some(&text), &P, Granularity::Document);
        assert_eq!(out[0].score, 11.5);
        assert_eq!(out[1].text.as_ref().unwrap().rank, 2);
        assert!(fuse(None, None, &P, Granularity::Document).is_empty());
    }

    const DBSF: Params = Params {
        method: Method::Dbsf,
        ..P
    };

    /// Every method and normalisation, with uneven weights.
    fn every_method() -> Vec<Params> {
        let mut all = vec![P, DBSF];
        for n in [
            Normalization::MinMax,
            Normalization::ZScore,
            Normalization::Rank,
        ] {
            all.push(linear(n));
        }
        all.into_iter()
            .map(|p| Params {
                vector_weight: 1.0,
                text_weight: 0.75,
                ..p
            })
            .collect()
    }

    fn assert_readable(out: &[FusedHit], p: &Params) {
        assert!(
            out.iter().all(|h| (0.0..=1.0).contains(&h.score)),
            "{p:?}: {out:?}"
        );
        assert!(out.windows(2).all(|w| w[0].score >= w[1].score), "{p:?}");
        assert!(out.first().is_none_or(|h| h.score > 0.0), "{p:?}: {out:?}");
        assert_contributions_add_up(out, p);
    }

    /// Issue 25: two small documents, the text leg matching only one of them. Under LINEAR
    /// z-score the lone text match got a fused score of 0 and the other hit -1; now every
    /// score is in [0, 1] and the best above 0. Every other method gives the lone match the
    /// text leg's full share; z-score keeps its term 0, the leg's average (a lone hit is
    /// degenerate), so the order is the measured one and the score shows `Phi` of the sum.
    #[test]
    fn one_or_two_candidates_give_readable_scores() {
        let vector = [hit("a", 0, 0.41), hit("b", 0, 0.12)];
        let text = [hit("a", 0, 0.29)];
        for p in every_method() {
            let out = fuse(Some(&vector), Some(&text), &p, Granularity::Document);
            assert_readable(&out, &p);
            assert_eq!(out[0].hit.document_id, "a", "{p:?}");
            let t = out[0].text.as_ref().unwrap();
            let z_score = Formula::of(&p, false) == Formula::PhiOfSum;
            let (lone, perfect) = if z_score { (0.0, 0.5) } else { (1.0, 1.0) };
            assert_eq!(t.normalized, lone, "{p:?}: the lone text match");
            assert!((t.weight - 0.75 / 1.75).abs() < 1e-6, "{p:?}");
            // One candidate per leg, the same document: the best possible (z-score: both
            // legs' average, Phi(0)).
            let both = fuse(Some(&vector[..1]), Some(&text), &p, Granularity::Document);
            assert!((both[0].score - perfect).abs() < 1e-6, "{p:?}: {both:?}");
        }
    }

    /// Larger legs with spread-out scores (a BM25 outlier, negative cosines): still [0, 1].
    #[test]
    fn fused_scores_are_in_0_1_for_every_method() {
        let vector: Vec<ChunkHit> = (0..30)
            .map(|i| hit(&format!("d{i}"), 0, 0.9 - i as f32 * 0.05))
            .collect();
        let text: Vec<ChunkHit> = (0..30)
            .map(|i| {
                let score = if i == 0 { 80.0 } else { 12.0 - i as f32 * 0.3 };
                hit(&format!("d{}", 29 - i), 0, score)
            })
            .collect();
        for p in every_method() {
            for w in [(0.0, 1.0), (1.0, 0.0), (100.0, 0.01), (0.0, 0.0)] {
                let p = Params {
                    vector_weight: w.0,
                    text_weight: w.1,
                    ..p
                };
                let out = fuse(Some(&vector), Some(&text), &p, Granularity::Document);
                assert!(out.iter().all(|h| (0.0..=1.0).contains(&h.score)), "{p:?}");
                assert!(out.windows(2).all(|x| x[0].score >= x[1].score), "{p:?}");
                assert_contributions_add_up(&out, &p);
            }
            let out = fuse(Some(&vector), Some(&text), &p, Granularity::Document);
            assert_readable(&out, &p);
        }
    }

    fn linear(normalization: Normalization) -> Params {
        Params {
            method: Method::Linear,
            normalization,
            ..P
        }
    }

    /// The contributions of each hit add up to its fused score (LINEAR z-score: `Phi` of
    /// their sum is the score), for every method; both legs present.
    fn assert_contributions_add_up(out: &[FusedHit], p: &Params) {
        for h in out {
            let sum: f32 = [&h.vector, &h.text]
                .into_iter()
                .flatten()
                .map(|l| l.contribution)
                .sum();
            let want = match Formula::of(p, false) {
                Formula::Sum => sum,
                Formula::PhiOfSum => phi(f64::from(sum)) as f32,
            };
            assert!((want - h.score).abs() < 1e-6, "{p:?}: {h:?}");
            for l in [&h.vector, &h.text].into_iter().flatten() {
                assert!((l.weight * l.normalized - l.contribution).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn linear_min_max_combines_normalised_scores() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8), hit("c", 0, 0.5)];
        let text = [hit("c", 0, 20.0), hit("d", 0, 10.0), hit("a", 0, 0.0)];
        let p = Params {
            vector_weight: 0.7,
            text_weight: 0.3,
            ..linear(Normalization::MinMax)
        };
        let out = fuse(Some(&vector), Some(&text), &p, Granularity::Document);
        let scores: HashMap<&str, f32> = out
            .iter()
            .map(|h| (h.hit.document_id.as_str(), h.score))
            .collect();
        // vector: a 1, b 0.75, c 0; text: c 1, d 0.5, a 0.
        let want = [("a", 0.7), ("b", 0.7 * 0.75), ("c", 0.3), ("d", 0.15)];
        for (doc, score) in want {
            assert!((scores[doc] - score).abs() < 1e-5, "{doc}: {scores:?}");
        }
        let ids: Vec<&str> = out.iter().map(|h| h.hit.document_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        let c = out.iter().find(|h| h.hit.document_id == "c").unwrap();
        let t = c.text.as_ref().unwrap();
        assert_eq!(
            (t.score, t.rank, t.normalized, t.weight),
            (20.0, 1, 1.0, 0.3)
        );
        assert_eq!(t.chunk_id, "c:0");
        assert_contributions_add_up(&out, &p);
    }

    #[test]
    fn linear_z_score_and_rank_orderings() {
        // The text leg's scores are far apart (a BM25 outlier); rank normalisation ignores
        // the gap, z-score keeps it.
        let vector = [hit("a", 0, 0.80), hit("b", 0, 0.79), hit("c", 0, 0.78)];
        let text = [hit("b", 0, 50.0), hit("c", 0, 2.0), hit("a", 0, 1.0)];
        let by_rank = fuse(
            Some(&vector),
            Some(&text),
            &linear(Normalization::Rank),
            Granularity::Document,
        );
        // a: 1 + 1/3, b: 2/3 + 1, c: 1/3 + 2/3, halved (weights 1 and 1).
        let ids: Vec<&str> = by_rank.iter().map(|h| h.hit.document_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert!((by_rank[0].score - 5.0 / 6.0).abs() < 1e-5);
        assert_contributions_add_up(&by_rank, &linear(Normalization::Rank));
        let by_z = fuse(
            Some(&vector),
            Some(&text),
            &linear(Normalization::ZScore),
            Granularity::Document,
        );
        assert_eq!(by_z[0].hit.document_id, "b");
        assert_contributions_add_up(&by_z, &linear(Normalization::ZScore));
    }

    #[test]
    fn an_empty_leg_leaves_the_other_legs_scores() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.3)];
        for p in [
            P,
            linear(Normalization::MinMax),
            linear(Normalization::ZScore),
            DBSF,
        ] {
            let out = fuse(Some(&vector), Some(&[]), &p, Granularity::Document);
            assert_eq!(out.len(), 2, "{p:?}");
            assert_eq!(out[0].hit.document_id, "a");
            assert!(out.iter().all(|h| h.text.is_none()));
            assert_contributions_add_up(&out, &p);
        }
    }

    #[test]
    fn rrf_contributions_add_up() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8)];
        let text = [hit("b", 1, 3.0), hit("c", 0, 1.0)];
        let out = fuse(Some(&vector), Some(&text), &P, Granularity::Document);
        let b = out.iter().find(|h| h.hit.document_id == "b").unwrap();
        let v = b.vector.as_ref().unwrap();
        assert!((v.normalized - 61.0 / 62.0).abs() < 1e-7);
        assert_eq!(v.weight, 0.5, "the vector leg's share of weights 1 and 1");
        assert_eq!(b.text.as_ref().unwrap().chunk_id, "b:1");
        assert_contributions_add_up(&out, &P);
    }

    /// The gateway's default fusion (LINEAR, z-score, its weights) as `SearchConfig` sets it.
    fn gateway_default() -> Params {
        let d = crate::config::SearchConfig::default().fusion_defaults();
        let c = choices(&braid_proto::v1::FusionParams::default(), 10, &d).unwrap();
        assert_eq!(
            (
                c.params.method,
                c.params.normalization,
                c.params.text_weight
            ),
            (Method::Linear, Normalization::ZScore, 0.75),
            "the default this test guards"
        );
        c.params
    }

    /// main's z-score: `(s - mean) / std` over the leg, 0 when degenerate.
    fn raw_z(scores: &[f32]) -> Vec<f32> {
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let var = scores
            .iter()
            .map(|&s| (f64::from(s) - mean).powi(2))
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        scores
            .iter()
            .map(|&s| {
                if std > 1e-12 {
                    ((f64::from(s) - mean) / std) as f32
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The order main's default gave (BENCHMARKS.md, nDCG@10 0.729): `sum of raw weight * z`
    /// in f32, vector leg first, a missing leg 0; ties by best rank, then first seen.
    fn measured_order(vector: &[ChunkHit], text: &[ChunkHit], p: &Params) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        let mut sum: HashMap<String, (f32, u32)> = HashMap::new();
        for (hits, w) in [(vector, p.vector_weight), (text, p.text_weight)] {
            let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
            for ((h, z), rank) in hits.iter().zip(raw_z(&scores)).zip(1u32..) {
                let e = sum.entry(h.document_id.clone()).or_insert_with(|| {
                    order.push(h.document_id.clone());
                    (0.0, u32::MAX)
                });
                e.0 += w * z;
                e.1 = e.1.min(rank);
            }
        }
        order.sort_by(|a, b| {
            let (sa, ra) = sum[a];
            let (sb, rb) = sum[b];
            sb.total_cmp(&sa).then(ra.cmp(&rb))
        });
        order
    }

    /// The default's rankings are the measured ones: legs of several hits, hits missing from
    /// one leg, tied scores within a leg and tied fused sums, a one-hit leg, an all-equal leg.
    #[test]
    fn the_default_ranks_exactly_as_measured() {
        let p = gateway_default();
        let docs = |prefix: &str, scores: &[f32]| -> Vec<ChunkHit> {
            scores
                .iter()
                .enumerate()
                .map(|(i, &s)| hit(&format!("{prefix}{i}"), 0, s))
                .collect()
        };
        let mut cases: Vec<(Vec<ChunkHit>, Vec<ChunkHit>)> = Vec::new();
        // Overlapping legs: v0..v5 by cosine, text ranks v5 first, v0 missing, w0/w1 text-only.
        let vector = docs("v", &[0.83, 0.81, 0.81, 0.62, 0.60, 0.31]);
        let text = vec![
            hit("v5", 0, 31.0),
            hit("w0", 0, 14.0),
            hit("v2", 0, 14.0),
            hit("v1", 0, 9.5),
            hit("w1", 0, 2.0),
            hit("v4", 0, 1.0),
        ];
        cases.push((vector.clone(), text.clone()));
        // A BM25 outlier; disjoint legs; mirror-image legs (tied fused sums).
        cases.push((vector.clone(), docs("t", &[80.0, 7.0, 6.5, 6.0, 1.0])));
        cases.push((
            docs("d", &[0.9, 0.7, 0.5]),
            vec![hit("d2", 0, 9.0), hit("d1", 0, 7.0), hit("d0", 0, 5.0)],
        ));
        // Degenerate legs: one text hit, all-equal text hits.
        cases.push((vector.clone(), vec![hit("v3", 0, 4.2)]));
        cases.push((vector.clone(), docs("v", &[3.0, 3.0, 3.0])));
        // Larger legs with spread-out scores, half overlapping.
        let big_v: Vec<ChunkHit> = (0..40)
            .map(|i| hit(&format!("x{i}"), 0, 0.95 - (i as f32).powf(1.3) * 0.01))
            .collect();
        let big_t: Vec<ChunkHit> = (0..40)
            .map(|i| hit(&format!("x{}", (i * 7) % 60), 0, 25.0 / (1.0 + i as f32)))
            .collect();
        cases.push((big_v, big_t));
        for (vector, text) in &cases {
            let out = fuse(Some(vector), Some(text), &p, Granularity::Document);
            let got: Vec<&str> = out.iter().map(|h| h.hit.document_id.as_str()).collect();
            assert_eq!(got, measured_order(vector, text, &p), "{vector:?} {text:?}");
            assert!(
                out.iter().all(|h| h.score > 0.0 && h.score < 1.0),
                "{out:?}"
            );
            assert!(out.windows(2).all(|w| w[0].score >= w[1].score));
            assert_contributions_add_up(&out, &p);
        }
    }
}
