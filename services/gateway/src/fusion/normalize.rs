//! Per-leg score normalisation for LINEAR fusion: puts a leg's scores (cosine similarity,
//! BM25) on a common scale before they are weighted and added, as Elasticsearch's linear
//! retriever, OpenSearch's normalization processor and Weaviate's relative-score fusion do.
//! Every function takes one leg's scores in rank order (best first) and returns one value per
//! score, in the same order; an empty leg gives an empty list.

/// How a leg's scores are put on one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(s - min) / (max - min)`: the leg's best hit 1.0, its worst 0.0; all 1.0 when every
    /// score is equal (a single hit included): nothing tells them apart, and each is the best.
    MinMax,
    /// `(s - mean) / std` (population standard deviation); all 0.0 when every score is equal.
    /// A document the leg did not return counts 0, the leg's average.
    ZScore,
    /// From the rank alone, ignoring scores: `(n + 1 - rank) / n` for `n` hits, so the
    /// first is 1.0 and the last `1 / n`; equal scores keep their distinct ranks.
    Rank,
}

pub fn normalize(scores: &[f32], how: Normalization) -> Vec<f32> {
    match how {
        Normalization::MinMax => min_max(scores),
        Normalization::ZScore => z_score(scores),
        Normalization::Rank => rank(scores.len()),
    }
}

fn min_max(scores: &[f32]) -> Vec<f32> {
    let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = max - min;
    if !(range.is_finite() && range > 0.0) {
        return vec![1.0; scores.len()];
    }
    scores.iter().map(|s| (s - min) / range).collect()
}

fn z_score(scores: &[f32]) -> Vec<f32> {
    if scores.is_empty() {
        return Vec::new();
    }
    let n = scores.len() as f64;
    let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let variance = scores
        .iter()
        .map(|&s| (f64::from(s) - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = variance.sqrt();
    if !(std.is_finite() && std > 1e-12) {
        return vec![0.0; scores.len()];
    }
    scores
        .iter()
        .map(|&s| ((f64::from(s) - mean) / std) as f32)
        .collect()
}

fn rank(n: usize) -> Vec<f32> {
    (1..=n).map(|r| (n + 1 - r) as f32 / n as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn min_max_maps_onto_0_1() {
        let got = normalize(&[12.0, 9.0, 3.0], Normalization::MinMax);
        assert!(close(&got, &[1.0, 6.0 / 9.0, 0.0]), "{got:?}");
        // Ties share a value.
        let got = normalize(&[5.0, 5.0, 1.0], Normalization::MinMax);
        assert!(close(&got, &[1.0, 1.0, 0.0]), "{got:?}");
    }

    #[test]
    fn z_score_centres_and_scales() {
        let got = normalize(&[3.0, 2.0, 1.0], Normalization::ZScore);
        let std = (2.0f32 / 3.0).sqrt();
        assert!(close(&got, &[1.0 / std, 0.0, -1.0 / std]), "{got:?}");
        let got = normalize(&[4.0, 4.0, 1.0, 1.0], Normalization::ZScore);
        assert!(close(&got, &[1.0, 1.0, -1.0, -1.0]), "ties: {got:?}");
    }

    #[test]
    fn rank_ignores_scores() {
        let got = normalize(&[0.9, 0.9, 0.1, 0.0], Normalization::Rank);
        assert!(close(&got, &[1.0, 0.75, 0.5, 0.25]), "{got:?}");
    }

    #[test]
    fn single_hit_all_equal_and_empty_legs() {
        for how in [
            Normalization::MinMax,
            Normalization::ZScore,
            Normalization::Rank,
        ] {
            assert!(normalize(&[], how).is_empty(), "{how:?}");
            let single = normalize(&[0.42], how);
            let equal = normalize(&[7.0, 7.0, 7.0], how);
            let want_single = if how == Normalization::ZScore {
                0.0
            } else {
                1.0
            };
            assert!(close(&single, &[want_single]), "{how:?}: {single:?}");
            assert!(equal.iter().all(|v| v.is_finite()), "{how:?}: {equal:?}");
            match how {
                Normalization::MinMax => assert!(close(&equal, &[1.0; 3])),
                Normalization::ZScore => assert!(close(&equal, &[0.0; 3])),
                Normalization::Rank => assert!(close(&equal, &[1.0, 2.0 / 3.0, 1.0 / 3.0])),
            }
        }
    }
}
