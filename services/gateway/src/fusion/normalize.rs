//! Per-leg score normalisation for LINEAR and DBSF fusion: puts a leg's scores (cosine
//! similarity, BM25) on one scale before they are weighted and added, as Elasticsearch's
//! linear retriever, OpenSearch's normalization processor, Weaviate's relative-score fusion
//! and Qdrant's distribution-based score fusion do. Every function takes one leg's scores in
//! rank order (best first) and returns one value per score, in the same order, never
//! increasing down the leg; an empty leg gives an empty list. Min-max, rank and three-sigma
//! values are in [0, 1]; z-score values are raw standard scores (the fused z-score sum is
//! mapped into (0, 1) by [`phi`] afterwards, `super::fuse`).
//!
//! Small samples: a leg with one hit, or whose hits all score the same, has nothing to tell
//! them apart, so each is that leg's best and gets 1.0 under min-max and three-sigma (a lone
//! match is never pushed to 0 or below); under z-score each gets 0, the leg's average, as a
//! document the leg did not return does.

/// How a leg's scores are put on one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(s - min) / (max - min)`: the leg's best hit 1.0, its worst 0.0; all 1.0 when every
    /// score is equal (a single hit included): nothing tells them apart, and each is the best.
    MinMax,
    /// The standard score `z = (s - mean) / std` (population standard deviation); all 0.0
    /// when every score is equal (a single hit included). A document the leg did not return
    /// counts 0, the leg's average. The fused sum of these is shown as `Phi(sum)`.
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

/// Distribution-based score fusion's normalisation (Qdrant's DBSF; Mazzeschi's "distribution
/// based score fusion"): `(s - (mean - 3 std)) / (6 std)`, clipped to [0, 1], so the leg's
/// mean is 0.5 and a score three deviations out is 0 or 1; all 1.0 when every score is equal.
pub fn three_sigma(scores: &[f32]) -> Vec<f32> {
    standard(scores, |z| ((z + 3.0) / 6.0).clamp(0.0, 1.0) as f32)
}

fn min_max(scores: &[f32]) -> Vec<f32> {
    let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let range = max - min;
    if !(range.is_finite() && range > 0.0) {
        return vec![1.0; scores.len()];
    }
    scores
        .iter()
        .map(|s| ((s - min) / range).clamp(0.0, 1.0))
        .collect()
}

/// The standard scores of `scores`, exactly as the measured default was ranked (BENCHMARKS.md):
/// all 0.0, the leg's average, when their deviation is 0.
fn z_score(scores: &[f32]) -> Vec<f32> {
    let (mean, std) = moments(scores);
    if !(std.is_finite() && std > 1e-12) {
        return vec![0.0; scores.len()];
    }
    scores
        .iter()
        .map(|&s| ((f64::from(s) - mean) / std) as f32)
        .collect()
}

/// The mean and population standard deviation of `scores` (both 0 for none).
pub(super) fn moments(scores: &[f32]) -> (f64, f64) {
    if scores.is_empty() {
        return (0.0, 0.0);
    }
    let n = scores.len() as f64;
    let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let variance = scores
        .iter()
        .map(|&s| (f64::from(s) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, variance.sqrt())
}

/// `scores` as standard scores, each mapped by `f`; all 1.0 when their deviation is 0.
fn standard(scores: &[f32], f: impl Fn(f64) -> f32) -> Vec<f32> {
    let (mean, std) = moments(scores);
    if !(std.is_finite() && std > 1e-12 * mean.abs().max(1.0)) {
        return vec![1.0; scores.len()];
    }
    scores
        .iter()
        .map(|&s| f((f64::from(s) - mean) / std))
        .collect()
}

/// The standard normal distribution function, `(1 + erf(z / sqrt 2)) / 2`, computed as
/// `erfc(-z / sqrt 2) / 2` so the lower tail keeps its relative precision; non-decreasing.
pub fn phi(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    (0.5 * erfc(-z / std::f64::consts::SQRT_2)).clamp(0.0, 1.0)
}

/// The complementary error function, `1 - erf(x)` (Numerical Recipes' Chebyshev fit `erfcc`,
/// relative error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
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

    const ALL: [Normalization; 3] = [
        Normalization::MinMax,
        Normalization::ZScore,
        Normalization::Rank,
    ];

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
    fn phi_is_the_normal_distribution_function_and_never_decreases() {
        // Phi(1.2247) = 0.889664, Phi(1) = 0.841345, Phi(-1.96) = 0.025, Phi(-6) = 9.866e-10.
        for (z, want) in [
            (0.0, 0.5),
            (1.224_745, 0.889_664),
            (1.0, 0.841_345),
            (-1.959_964, 0.025),
        ] {
            assert!((phi(z) - want).abs() < 1e-6, "Phi({z}) = {}", phi(z));
        }
        assert!(
            (phi(-6.0) / 9.865_876e-10 - 1.0).abs() < 1e-5,
            "{}",
            phi(-6.0)
        );
        let mut last = 0.0;
        for i in -4000..=4000 {
            let p = phi(f64::from(i) / 250.0);
            assert!(
                p >= last && (0.0..=1.0).contains(&p),
                "at {i}: {p} < {last}"
            );
            last = p;
        }
    }

    #[test]
    fn three_sigma_clips_at_three_deviations() {
        // mean 2.5, std 1.118: 2.5 +- 3.354 is [-0.854, 5.854].
        let got = three_sigma(&[4.0, 3.0, 2.0, 1.0]);
        let std = 1.25f32.sqrt();
        let want: Vec<f32> = [4.0f32, 3.0, 2.0, 1.0]
            .iter()
            .map(|s| (s - (2.5 - 3.0 * std)) / (6.0 * std))
            .collect();
        assert!(close(&got, &want), "{got:?}");
        // An outlier beyond three deviations is clipped to 1.0, the rest stay below.
        let mut scores = vec![100.0f32];
        scores.extend(std::iter::repeat_n(1.0, 20));
        let got = three_sigma(&scores);
        assert_eq!(got[0], 1.0);
        assert!(got[1..].iter().all(|&v| (0.0..0.5).contains(&v)), "{got:?}");
    }

    #[test]
    fn rank_ignores_scores() {
        let got = normalize(&[0.9, 0.9, 0.1, 0.0], Normalization::Rank);
        assert!(close(&got, &[1.0, 0.75, 0.5, 0.25]), "{got:?}");
    }

    /// One or two hits, or all equal: under min-max, rank and three-sigma the best (or only)
    /// hit is never 0 or below and every value is in [0, 1]; under z-score (raw standard
    /// scores, as the measured default ranks) a lone or all-equal hit is the leg's average, 0.
    /// None increases down the leg.
    #[test]
    fn small_samples_keep_the_best_on_top() {
        let cases: [&[f32]; 6] = [
            &[0.42],
            &[7.0, 7.0, 7.0],
            &[0.61, 0.12],
            &[3.2, 3.1999],
            &[-0.2, -0.5],
            &[1e-9, 0.0],
        ];
        for scores in cases {
            let mut all: Vec<(String, Vec<f32>)> = ALL
                .iter()
                .map(|&how| (format!("{how:?}"), normalize(scores, how)))
                .collect();
            all.push(("three_sigma".into(), three_sigma(scores)));
            for (how, got) in all {
                assert_eq!(got.len(), scores.len(), "{how}");
                assert!(got.windows(2).all(|w| w[0] >= w[1]), "{how}: {got:?}");
                if how == "ZScore" {
                    assert!(got[0] >= 0.0, "{how}: best of {scores:?} got {got:?}");
                    continue;
                }
                assert!(got[0] > 0.0, "{how}: best of {scores:?} got {got:?}");
                assert!(
                    got.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{how}: {scores:?} -> {got:?}"
                );
            }
        }
        for how in ALL {
            assert!(normalize(&[], how).is_empty(), "{how:?}");
            let lone = if how == Normalization::ZScore {
                0.0
            } else {
                1.0
            };
            assert_eq!(normalize(&[0.42], how), [lone], "{how:?}: a lone hit");
        }
        assert!(three_sigma(&[]).is_empty());
        assert_eq!(three_sigma(&[0.42]), [1.0]);
        assert_eq!(three_sigma(&[7.0, 7.0]), [1.0, 1.0]);
        assert_eq!(normalize(&[7.0; 3], Normalization::ZScore), [0.0; 3]);
        assert!(close(
            &normalize(&[7.0; 3], Normalization::Rank),
            &[1.0, 2.0 / 3.0, 1.0 / 3.0]
        ));
    }
}
