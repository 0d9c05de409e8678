//! Per-leg score normalisation for LINEAR and DBSF fusion: puts a leg's scores (cosine
//! similarity, BM25) on one scale, [0, 1], before they are weighted and added, as
//! Elasticsearch's linear retriever, OpenSearch's normalization processor, Weaviate's
//! relative-score fusion and Qdrant's distribution-based score fusion do. Every function takes
//! one leg's scores in rank order (best first) and returns one value per score, in the same
//! order, each in [0, 1] and never increasing down the leg; an empty leg gives an empty list.
//!
//! Small samples: a leg with one hit, or whose hits all score the same, has nothing to tell
//! them apart, so each is that leg's best and gets 1.0 under every normalisation (a lone match
//! is never pushed to 0 or below, whatever the statistics of one value say).

/// How a leg's scores are put on one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(s - min) / (max - min)`: the leg's best hit 1.0, its worst 0.0; all 1.0 when every
    /// score is equal (a single hit included): nothing tells them apart, and each is the best.
    MinMax,
    /// The standard score `z = (s - mean) / std` (population standard deviation) read as a
    /// probability, `Phi(z)` (the standard normal distribution function): the leg's mean
    /// 0.5, one deviation above it 0.84; all 1.0 when every score is equal.
    ZScore,
    /// From the rank alone, ignoring scores: `(n + 1 - rank) / n` for `n` hits, so the
    /// first is 1.0 and the last `1 / n`; equal scores keep their distinct ranks.
    Rank,
}

pub fn normalize(scores: &[f32], how: Normalization) -> Vec<f32> {
    match how {
        Normalization::MinMax => min_max(scores),
        Normalization::ZScore => standard(scores, |z| phi(z) as f32),
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

/// `scores` as standard scores, each mapped by `f`; all 1.0 when their deviation is 0.
fn standard(scores: &[f32], f: impl Fn(f64) -> f32) -> Vec<f32> {
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
    if !(std.is_finite() && std > 1e-12 * mean.abs().max(1.0)) {
        return vec![1.0; scores.len()];
    }
    scores
        .iter()
        .map(|&s| f((f64::from(s) - mean) / std))
        .collect()
}

/// The standard normal distribution function, `(1 + erf(z / sqrt 2)) / 2`.
fn phi(z: f64) -> f64 {
    (0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))).clamp(0.0, 1.0)
}

/// The error function (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
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
    fn z_score_is_the_normal_probability_of_the_standard_score() {
        let got = normalize(&[3.0, 2.0, 1.0], Normalization::ZScore);
        // z = +-1.2247 (std sqrt(2/3)); Phi(1.2247) = 0.889664.
        assert!(close(&got, &[0.889_664, 0.5, 0.110_336]), "{got:?}");
        let got = normalize(&[4.0, 4.0, 1.0, 1.0], Normalization::ZScore);
        // z = +-1; Phi(1) = 0.841345.
        assert!(
            close(&got, &[0.841_345, 0.841_345, 0.158_655, 0.158_655]),
            "ties: {got:?}"
        );
        assert!((phi(0.0) - 0.5).abs() < 1e-9 && (phi(-1.959_964) - 0.025).abs() < 1e-6);
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

    /// One or two hits, or all equal: the best (or only) hit is never 0 or below, every
    /// value is in [0, 1] and none increases down the leg (issue 25: z-score gave the only
    /// text match 0 and the second of two -1).
    #[test]
    fn small_samples_keep_the_best_on_top_and_all_in_0_1() {
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
                assert!(got[0] > 0.0, "{how}: best of {scores:?} got {got:?}");
                assert!(
                    got.iter().all(|v| (0.0..=1.0).contains(v)),
                    "{how}: {scores:?} -> {got:?}"
                );
                assert!(got.windows(2).all(|w| w[0] >= w[1]), "{how}: {got:?}");
            }
        }
        for how in ALL {
            assert!(normalize(&[], how).is_empty(), "{how:?}");
            assert_eq!(
                normalize(&[0.42], how),
                [1.0],
                "{how:?}: a lone hit is the best"
            );
        }
        assert!(three_sigma(&[]).is_empty());
        assert_eq!(three_sigma(&[0.42]), [1.0]);
        assert_eq!(three_sigma(&[7.0, 7.0]), [1.0, 1.0]);
        assert_eq!(normalize(&[7.0; 3], Normalization::ZScore), [1.0; 3]);
        assert!(close(
            &normalize(&[7.0; 3], Normalization::Rank),
            &[1.0, 2.0 / 3.0, 1.0 / 3.0]
        ));
    }
}
