//! Rank fusion of the two legs, by one of two methods:
//!
//! * reciprocal rank fusion (Cormack et al., 2009): a hit's fused score is
//!   `sum over legs of weight_leg / (k + rank_leg)`, with ranks from 1; it needs no score
//!   normalisation, so BM25 and cosine scores combine without calibration;
//! * linear (convex) combination: `sum over legs of weight_leg * normalised_score_leg`, with
//!   each leg's scores normalised over that leg's hits ([`normalize`]); a leg that did not
//!   return the hit adds nothing.
//!
//! Each leg's ranking is first reduced to its best chunk per document (or kept per chunk on
//! request). Every fused hit keeps, per leg, what went into its score ([`LegScore`]), so the
//! contributions add up to the fused score exactly (the explain output, `crate::explain`).

mod normalize;
mod params;

use std::collections::HashMap;

use braid_proto::v1::ChunkHit;

pub use normalize::{Normalization, normalize};
pub use params::{Choices, Defaults, Method, Params, choices};

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
    /// RRF: `1 / (k + rank)`; LINEAR: the normalised score; a single leg: the raw score.
    pub normalized: f32,
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
    /// The sum of the legs' contributions (vector first, then text).
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

/// What each ranked hit of one leg brings: `(normalised score, weight)`.
fn leg_terms(
    ranked: &[(&ChunkHit, u32)],
    weight: f32,
    params: &Params,
    single_leg: bool,
) -> Vec<(f32, f32)> {
    if single_leg {
        return ranked.iter().map(|(h, _)| (h.score, 1.0)).collect();
    }
    match params.method {
        Method::Rrf => ranked
            .iter()
            .map(|&(_, rank)| (1.0 / (params.k + rank as f32), weight))
            .collect(),
        Method::Linear => {
            let scores: Vec<f32> = ranked.iter().map(|(h, _)| h.score).collect();
            normalize(&scores, params.normalization)
                .into_iter()
                .map(|n| (n, weight))
                .collect()
        }
    }
}

/// Fuses the two legs' rankings; either may be absent (skipped or failed). With a single
/// leg present the hit keeps that leg's own score, so VECTOR and TEXT modes report cosine
/// similarity and BM25 respectively.
pub fn fuse(
    vector: Option<&[ChunkHit]>,
    text: Option<&[ChunkHit]>,
    params: &Params,
    granularity: Granularity,
) -> Vec<FusedHit> {
    let single_leg = vector.is_none() || text.is_none();
    let mut order: Vec<String> = Vec::new();
    let mut fused: HashMap<String, FusedHit> = HashMap::new();
    let mut best_rank: HashMap<String, u32> = HashMap::new();
    let legs = [
        (vector, params.vector_weight, true),
        (text, params.text_weight, false),
    ];
    for (hits, weight, is_vector) in legs {
        let Some(hits) = hits else { continue };
        let ranked = ranked(hits, granularity);
        let terms = leg_terms(&ranked, weight, params, single_leg);
        for (&(hit, rank), (normalized, weight)) in ranked.iter().zip(terms) {
            let k = key(hit, granularity).to_string();
            let leg = LegScore {
                score: hit.score,
                rank,
                normalized,
                weight,
                contribution: weight * normalized,
                chunk_id: hit.chunk_id.clone(),
            };
            let entry = fused.entry(k.clone()).or_insert_with(|| {
                order.push(k.clone());
                FusedHit {
                    hit: hit.clone(),
                    snippet: String::new(),
                    score: 0.0,
                    vector: None,
                    text: None,
                }
            });
            entry.score += leg.contribution;
            if is_vector {
                entry.vector = Some(leg);
            } else {
                entry.text = Some(leg);
                entry.snippet = hit.snippet.clone();
            }
            let best = best_rank.entry(k).or_insert(u32::MAX);
            if rank < *best {
                *best = rank;
                entry.hit = hit.clone();
            }
        }
    }
    let mut out: Vec<FusedHit> = order.into_iter().filter_map(|k| fused.remove(&k)).collect();
    // Ties: better best-rank first, then first seen (stable sort keeps insertion order).
    let best = |h: &FusedHit| {
        h.vector
            .as_ref()
            .map_or(u32::MAX, |l| l.rank)
            .min(h.text.as_ref().map_or(u32::MAX, |l| l.rank))
    };
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| best(a).cmp(&best(b)))
    });
    out
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
        // a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
        assert_eq!(ids, ["a", "c", "b", "d"]);
        assert!((out[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-6);
        assert_eq!(of(&out[0].vector), Some(leg(0.9, 1)));
        assert_eq!(of(&out[0].text), Some(leg(9.0, 2)));
        assert_eq!(out[2].text, None);
        assert_eq!(out[3].vector, None);
        assert_eq!(out[3].snippet, "<b>d</b>");
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

    fn linear(normalization: Normalization) -> Params {
        Params {
            method: Method::Linear,
            normalization,
            ..P
        }
    }

    /// The contributions of each hit add up to its fused score, for every method.
    fn assert_contributions_add_up(out: &[FusedHit]) {
        for h in out {
            let sum: f32 = [&h.vector, &h.text]
                .into_iter()
                .flatten()
                .map(|l| l.contribution)
                .sum();
            assert!((sum - h.score).abs() < 1e-6, "{h:?}");
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
        assert_contributions_add_up(&out);
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
        // a: 1 + 1/3, b: 2/3 + 1, c: 1/3 + 2/3.
        let ids: Vec<&str> = by_rank.iter().map(|h| h.hit.document_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert!((by_rank[0].score - 5.0 / 3.0).abs() < 1e-5);
        assert_contributions_add_up(&by_rank);
        let by_z = fuse(
            Some(&vector),
            Some(&text),
            &linear(Normalization::ZScore),
            Granularity::Document,
        );
        assert_eq!(by_z[0].hit.document_id, "b");
        assert_contributions_add_up(&by_z);
    }

    #[test]
    fn an_empty_leg_leaves_the_other_legs_scores() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.3)];
        for p in [
            P,
            linear(Normalization::MinMax),
            linear(Normalization::ZScore),
        ] {
            let out = fuse(Some(&vector), Some(&[]), &p, Granularity::Document);
            assert_eq!(out.len(), 2, "{p:?}");
            assert_eq!(out[0].hit.document_id, "a");
            assert!(out.iter().all(|h| h.text.is_none()));
            assert_contributions_add_up(&out);
        }
    }

    #[test]
    fn rrf_contributions_add_up() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8)];
        let text = [hit("b", 1, 3.0), hit("c", 0, 1.0)];
        let out = fuse(Some(&vector), Some(&text), &P, Granularity::Document);
        let b = out.iter().find(|h| h.hit.document_id == "b").unwrap();
        let v = b.vector.as_ref().unwrap();
        assert!((v.normalized - 1.0 / 62.0).abs() < 1e-7);
        assert_eq!(b.text.as_ref().unwrap().chunk_id, "b:1");
        assert_contributions_add_up(&out);
    }
}
