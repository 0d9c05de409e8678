//! BM25 with configurable `k1` and `b` over a population of entries. Tantivy's own BM25 fixes
//! k1 = 1.2 and b = 0.75 and takes its statistics from every entry of the index; here the
//! caller states them (the document entries of one tenant, see `tantivy/tenants.rs`): N the
//! population size, n the term's document frequency within it, and the field's average
//! length over it. The score is Lucene's BM25 (`idf * tf / (tf + k1 * (1 - b + b * len /
//! avg_len))`, idf = `ln(1 + (N - n + 0.5) / (n + 0.5))`), times the query-side weight
//! (boost).
//!
//! [`Bm25Term::bound`] is the best score any (term frequency, length) pair of a block of
//! postings can reach, which block-max pruning (`tantivy/topk.rs`) needs. A block's
//! [`Frontier`] keeps the pairs no other pair of the block beats on both sides (a higher
//! frequency and a shorter length): BM25 grows with the one and shrinks with the other, so the
//! best score of the block is reached on the frontier whatever k1, b, the average length and
//! the weight are, and one summary per segment and term serves every tenant and setting.

use tantivy::Score;
use tantivy::fieldnorm::FieldNormReader;

/// BM25 free parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

/// Lucene's idf (never negative).
pub fn idf(doc_freq: u64, population: u64) -> f32 {
    let (n, df) = (population as f32, doc_freq as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// `k1 * (1 - b + b * len / avg_len)` per fieldnorm id: the length part of BM25 for one field
/// over one population, shared by every term of that field.
#[derive(Clone)]
pub struct LengthNorms([f32; 256]);

impl LengthNorms {
    /// Norms for a field holding `tokens` tokens over `population` entries.
    pub fn new(params: Bm25Params, population: u64, tokens: u64) -> Self {
        let avg_len = if population == 0 {
            1.0
        } else {
            (tokens as f32 / population as f32).max(1.0)
        };
        let mut norms = [0.0f32; 256];
        for (id, norm) in norms.iter_mut().enumerate() {
            let len = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
            *norm = params.k1 * (1.0 - params.b + params.b * len / avg_len);
        }
        Self(norms)
    }
}

/// One term's BM25: its weight (idf times the query-side boost) and its field's norms.
#[derive(Clone)]
pub struct Bm25Term {
    weight: f32,
    norms: LengthNorms,
}

impl Bm25Term {
    /// A term held by `doc_freq` of the `population` entries, weighted by `boost`.
    pub fn new(norms: LengthNorms, population: u64, doc_freq: u64, boost: f32) -> Self {
        Self {
            weight: idf(doc_freq.min(population), population) * boost,
            norms,
        }
    }

    /// The score of an entry holding the term `tf` times, with fieldnorm id `fieldnorm_id`.
    #[inline]
    pub fn score(&self, tf: u32, fieldnorm_id: u8) -> Score {
        let tf = tf as f32;
        self.weight * tf / (tf + self.norms.0[usize::from(fieldnorm_id)])
    }

    /// The best score over the pairs `frontier` stands for.
    pub fn bound(&self, frontier: &Frontier) -> Score {
        frontier
            .points()
            .iter()
            .map(|&(tf, id)| self.score(tf, id))
            .fold(0.0, f32::max)
    }

    /// Above any score: `tf / (tf + norm)` stays below 1.
    pub fn max(&self) -> Score {
        self.weight
    }
}

/// Pairs a [`Frontier`] keeps; more are folded into one.
const FRONTIER_POINTS: usize = 4;

/// The (term frequency, fieldnorm id) pairs of a block of postings that no other pair of the
/// block beats on both sides, at most [`FRONTIER_POINTS`]: past that, the rest are folded into
/// one pair with their highest frequency and shortest length, which beats each of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    len: u8,
    points: [(u32, u8); FRONTIER_POINTS],
}

impl Frontier {
    /// The frontier of `pairs` (term frequency, fieldnorm id).
    pub fn of(pairs: impl Iterator<Item = (u32, u8)>) -> Self {
        let mut all: Vec<(u32, u8)> = pairs.collect();
        // Highest frequency first, then shortest: a pair is on the frontier when it is
        // shorter than every pair before it.
        all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut kept: Vec<(u32, u8)> = Vec::new();
        for (tf, id) in all {
            if kept.last().is_none_or(|&(_, shortest)| id < shortest) {
                kept.push((tf, id));
            }
        }
        if kept.len() > FRONTIER_POINTS {
            let folded = kept.split_off(FRONTIER_POINTS - 1);
            let tf = folded.iter().map(|p| p.0).max().unwrap_or(1);
            let id = folded.iter().map(|p| p.1).min().unwrap_or(0);
            kept.push((tf, id));
        }
        let mut frontier = Self::default();
        for (slot, p) in frontier.points.iter_mut().zip(&kept) {
            *slot = *p;
        }
        frontier.len = kept.len() as u8;
        frontier
    }

    fn points(&self) -> &[(u32, u8)] {
        &self.points[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_is_lucenes() {
        // ln(1 + (10 - 1 + 0.5) / (1 + 0.5))
        assert!((idf(1, 10) - (1.0f32 + 9.5 / 1.5).ln()).abs() < 1e-6);
        assert!(idf(10, 10) > 0.0, "never negative, unlike classic BM25");
        assert!(idf(1, 10) > idf(5, 10));
    }

    #[test]
    fn a_frontier_bounds_every_pair_of_its_block_for_any_parameters() {
        // Pseudo-random blocks: frequencies 1..=12, fieldnorm ids 1..=120.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..200 {
            let pairs: Vec<(u32, u8)> = (0..128)
                .map(|_| (1 + next(12) as u32, 1 + next(120) as u8))
                .collect();
            let frontier = Frontier::of(pairs.iter().copied());
            assert!(frontier.points().len() <= FRONTIER_POINTS);
            for (k1, b) in [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (0.5, 0.0)] {
                for (population, tokens) in [(100, 1_000), (1000, 200_000), (5, 5)] {
                    let norms = LengthNorms::new(Bm25Params { k1, b }, population, tokens);
                    let term = Bm25Term::new(norms, population, 3, 1.5);
                    let best = pairs
                        .iter()
                        .map(|&(tf, id)| term.score(tf, id))
                        .fold(0.0, f32::max);
                    let bound = term.bound(&frontier);
                    assert!(bound >= best, "{bound} < {best}");
                    assert!(bound <= term.max());
                }
            }
        }
    }

    #[test]
    fn a_frontier_keeps_the_pairs_no_other_beats() {
        let f = Frontier::of([(1, 10), (3, 40), (2, 10), (3, 50), (1, 5)].into_iter());
        assert_eq!(f.points(), [(3, 40), (2, 10), (1, 5)]);
        // Folded: the last point stands for the rest.
        let f = Frontier::of((1..=10u32).map(|tf| (tf, tf as u8 * 10)));
        assert_eq!(f.points(), [(10, 100), (9, 90), (8, 80), (7, 10)]);
    }
}
