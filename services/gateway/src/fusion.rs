//! Rank fusion. Reciprocal rank fusion (Cormack et al., 2009): a hit's fused score is
//! `sum over legs of weight_leg / (k + rank_leg)`, with ranks from 1. It needs no score
//! normalisation, so BM25 and cosine scores combine without calibration.
//!
//! Fusion happens per document by default (each leg's ranking is first reduced to the best
//! chunk per document), or per chunk on request.

use std::collections::HashMap;

use braid_proto::v1::ChunkHit;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RrfParams {
    pub k: f32,
    pub vector_weight: f32,
    pub text_weight: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Document,
    Chunk,
}

/// One leg's view of a fused hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegScore {
    pub score: f32,
    /// 1-based rank within the leg (after per-document reduction).
    pub rank: u32,
}

#[derive(Debug, Clone)]
pub struct FusedHit {
    /// The chunk that represents the hit: the one the best-ranking leg returned.
    pub hit: ChunkHit,
    pub snippet: String,
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

/// Fuses the two legs' rankings; either may be absent (skipped or failed). With a single
/// leg present the hit keeps that leg's own score, so VECTOR and TEXT modes report cosine
/// similarity and BM25 respectively.
pub fn fuse(
    vector: Option<&[ChunkHit]>,
    text: Option<&[ChunkHit]>,
    params: RrfParams,
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
        for (hit, rank) in ranked(hits, granularity) {
            let k = key(hit, granularity).to_string();
            let contribution = if single_leg {
                hit.score
            } else {
                weight / (params.k + rank as f32)
            };
            let leg = LegScore {
                score: hit.score,
                rank,
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
            entry.score += contribution;
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
    out.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then_with(|| {
            let ra = a
                .vector
                .map_or(u32::MAX, |l| l.rank)
                .min(a.text.map_or(u32::MAX, |l| l.rank));
            let rb = b
                .vector
                .map_or(u32::MAX, |l| l.rank)
                .min(b.text.map_or(u32::MAX, |l| l.rank));
            ra.cmp(&rb)
        })
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

    const P: RrfParams = RrfParams {
        k: 60.0,
        vector_weight: 1.0,
        text_weight: 1.0,
    };

    #[test]
    fn rrf_scores_and_order() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8), hit("c", 0, 0.7)];
        let text = [hit("c", 0, 12.0), hit("a", 0, 9.0), hit("d", 0, 3.0)];
        let out = fuse(Some(&vector), Some(&text), P, Granularity::Document);
        let ids: Vec<&str> = out.iter().map(|h| h.hit.document_id.as_str()).collect();
        // a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
        assert_eq!(ids, ["a", "c", "b", "d"]);
        assert!((out[0].score - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-6);
        assert_eq!(
            out[0].vector,
            Some(LegScore {
                score: 0.9,
                rank: 1
            })
        );
        assert_eq!(
            out[0].text,
            Some(LegScore {
                score: 9.0,
                rank: 2
            })
        );
        assert_eq!(out[2].text, None);
        assert_eq!(out[3].vector, None);
        assert_eq!(out[3].snippet, "<b>d</b>");
    }

    #[test]
    fn weights_shift_the_balance() {
        let vector = [hit("a", 0, 0.9), hit("b", 0, 0.8)];
        let text = [hit("b", 0, 5.0), hit("a", 0, 4.0)];
        let even = fuse(Some(&vector), Some(&text), P, Granularity::Document);
        assert_eq!(even[0].hit.document_id, "a", "tie broken by first seen");
        let text_heavy = RrfParams {
            text_weight: 2.0,
            ..P
        };
        let out = fuse(
            Some(&vector),
            Some(&text),
            text_heavy,
            Granularity::Document,
        );
        assert_eq!(out[0].hit.document_id, "b");
    }

    #[test]
    fn documents_collapse_to_their_best_chunk_per_leg() {
        let vector = [hit("a", 3, 0.9), hit("a", 1, 0.85), hit("b", 0, 0.5)];
        let text = [hit("b", 2, 7.0), hit("a", 1, 6.0)];
        let out = fuse(Some(&vector), Some(&text), P, Granularity::Document);
        assert_eq!(out.len(), 2);
        let b = out.iter().find(|h| h.hit.document_id == "b").unwrap();
        assert_eq!(
            b.vector.unwrap().rank,
            2,
            "ranks count documents, not chunks"
        );
        assert_eq!(
            b.hit.chunk_id, "b:2",
            "representative chunk from the leg ranking it best"
        );
        let chunks = fuse(Some(&vector), Some(&text), P, Granularity::Chunk);
        assert_eq!(chunks.len(), 4);
    }

    #[test]
    fn single_leg_keeps_raw_scores() {
        let text = [hit("x", 0, 11.5), hit("y", 0, 2.0)];
        let out = fuse(None, Some(&text), P, Granularity::Document);
        assert_eq!(out[0].score, 11.5);
        assert_eq!(out[1].text.unwrap().rank, 2);
        assert!(fuse(None, None, P, Granularity::Document).is_empty());
    }
}
