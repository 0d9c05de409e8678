//! The fusion choices of one search: the request's `FusionParams` over the gateway's
//! defaults, validated (every bad value is INVALID_ARGUMENT naming the field and its limit).

use braid_proto::v1::{self, FusionMethod, ScoreNormalization};

use super::Normalization;
use super::adaptive::Rule;
use crate::error::GatewayError;

/// The gateway's defaults and limits for fusion (from its `search` config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    pub rrf_k: u32,
    pub method: Method,
    pub normalization: Normalization,
    /// Leg weights when the request sets none.
    pub vector_weight: f32,
    pub text_weight: f32,
    /// Default depth: max(top_k * 3, min_candidates), at most max_candidates.
    pub min_candidates: u32,
    pub max_candidates: u32,
    pub max_ef_search: u32,
    /// Adaptive weighting when the request does not say ([`super::adaptive`]).
    pub adaptive_enabled: bool,
    /// Its parameters when the request sets none.
    pub adaptive: Rule,
}

/// How the legs' rankings combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Reciprocal rank fusion.
    Rrf,
    /// Weighted sum of per-leg normalised scores.
    Linear,
    /// Distribution-based score fusion: weighted sum of per-leg scores normalised by the
    /// leg's mean ± 3 standard deviations.
    Dbsf,
}

impl Method {
    pub fn to_proto(self) -> FusionMethod {
        match self {
            Method::Rrf => FusionMethod::Rrf,
            Method::Linear => FusionMethod::Linear,
            Method::Dbsf => FusionMethod::Dbsf,
        }
    }
}

impl Normalization {
    pub fn to_proto(self) -> ScoreNormalization {
        match self {
            Normalization::MinMax => ScoreNormalization::MinMax,
            Normalization::ZScore => ScoreNormalization::ZScore,
            Normalization::Rank => ScoreNormalization::Rank,
        }
    }
}

/// Validated fusion parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub method: Method,
    /// LINEAR only (DBSF has its own, RRF none).
    pub normalization: Normalization,
    /// RRF constant.
    pub k: f32,
    pub vector_weight: f32,
    pub text_weight: f32,
}

/// Everything the request's `fusion` sets, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choices {
    pub params: Params,
    /// Hits asked of each leg.
    pub vector_candidates: u32,
    pub text_candidates: u32,
    /// `hnsw.ef_search` for this query; 0 = the vector-search default.
    pub ef_search: u32,
    /// Adaptive weighting's rule, when on: the weights above are its base.
    pub adaptive: Option<Rule>,
}

impl Choices {
    /// Canonical text of every choice, for the query-cache key (and page tokens); with
    /// adaptive weighting off, the same text as before it existed.
    pub fn cache_part(&self) -> String {
        let p = &self.params;
        let mut part = format!(
            "{:?}/{:?}/{}/{}/{}/{}/{}/{}",
            p.method,
            p.normalization,
            p.k.to_bits(),
            p.vector_weight.to_bits(),
            p.text_weight.to_bits(),
            self.vector_candidates,
            self.text_candidates,
            self.ef_search
        );
        if let Some(a) = &self.adaptive {
            part.push_str(&format!(
                "/adaptive/{}/{}/{}",
                a.margin_slope.to_bits(),
                a.length_slope.to_bits(),
                a.pivot_terms
            ));
        }
        part
    }
}

/// `fusion` of a request for `top_k` hits, over `config`.
pub fn choices(
    fusion: &v1::FusionParams,
    top_k: u32,
    config: &Defaults,
) -> Result<Choices, GatewayError> {
    let k = if fusion.rrf_k == 0 {
        config.rrf_k
    } else {
        fusion.rrf_k
    };
    if k > 10_000 {
        return Err(GatewayError::invalid(
            "fusion.rrf_k",
            format!("{k}, at most 10000"),
        ));
    }
    let weight = |field: &str, w: Option<f32>, default: f32| -> Result<f32, GatewayError> {
        match w {
            None => Ok(default),
            Some(w) if w.is_finite() && (0.0..=100.0).contains(&w) => Ok(w),
            Some(w) => Err(GatewayError::invalid(
                field,
                format!("{w} is out of range 0..=100"),
            )),
        }
    };
    let method = match FusionMethod::try_from(fusion.method) {
        Ok(FusionMethod::Unspecified) => config.method,
        Ok(FusionMethod::Rrf) => Method::Rrf,
        Ok(FusionMethod::Linear) => Method::Linear,
        Ok(FusionMethod::Dbsf) => Method::Dbsf,
        Err(_) => {
            return Err(GatewayError::invalid(
                "fusion.method",
                format!("unknown method {} (RRF, LINEAR or DBSF)", fusion.method),
            ));
        }
    };
    let normalization = match ScoreNormalization::try_from(fusion.normalization) {
        Ok(ScoreNormalization::Unspecified) => config.normalization,
        Ok(ScoreNormalization::MinMax) => Normalization::MinMax,
        Ok(ScoreNormalization::ZScore) => Normalization::ZScore,
        Ok(ScoreNormalization::Rank) => Normalization::Rank,
        Err(_) => {
            return Err(GatewayError::invalid(
                "fusion.normalization",
                format!(
                    "unknown normalization {} (MIN_MAX, Z_SCORE or RANK)",
                    fusion.normalization
                ),
            ));
        }
    };
    let default_candidates = top_k
        .saturating_mul(3)
        .max(config.min_candidates)
        .min(config.max_candidates);
    let candidates = |field: &str, n: u32| -> Result<u32, GatewayError> {
        match n {
            0 => Ok(default_candidates),
            n if n <= config.max_candidates => Ok(n),
            n => Err(GatewayError::invalid(
                field,
                format!("{n}, at most {}", config.max_candidates),
            )),
        }
    };
    if fusion.ef_search > config.max_ef_search {
        return Err(GatewayError::invalid(
            "fusion.ef_search",
            format!("{}, at most {}", fusion.ef_search, config.max_ef_search),
        ));
    }
    Ok(Choices {
        params: Params {
            method,
            normalization,
            k: k as f32,
            vector_weight: weight(
                "fusion.vector_weight",
                fusion.vector_weight,
                config.vector_weight,
            )?,
            text_weight: weight("fusion.text_weight", fusion.text_weight, config.text_weight)?,
        },
        vector_candidates: candidates("fusion.vector_candidates", fusion.vector_candidates)?,
        text_candidates: candidates("fusion.text_candidates", fusion.text_candidates)?,
        ef_search: fusion.ef_search,
        adaptive: adaptive(fusion.adaptive.as_ref(), config)?,
    })
}

/// The largest slope magnitude of adaptive weighting (`fusion.adaptive.*_slope`).
pub const MAX_SLOPE: f32 = 10.0;
/// The largest `fusion.adaptive.pivot_terms` (queries count at most 32 terms).
pub const MAX_PIVOT_TERMS: u32 = 32;

/// Whether `s` is a slope adaptive weighting takes (finite, within ±[`MAX_SLOPE`]); the one
/// check of the request's and the config's slopes.
pub fn slope_in_range(s: f32) -> bool {
    s.is_finite() && (-MAX_SLOPE..=MAX_SLOPE).contains(&s)
}

/// Whether `p` is a pivot adaptive weighting takes (1..=[`MAX_PIVOT_TERMS`]); the one check
/// of the request's and the config's pivot.
pub fn pivot_in_range(p: u32) -> bool {
    (1..=MAX_PIVOT_TERMS).contains(&p)
}

/// Adaptive weighting's rule for a request's `fusion.adaptive`, or `None` when it is off.
fn adaptive(
    request: Option<&v1::AdaptiveFusion>,
    config: &Defaults,
) -> Result<Option<Rule>, GatewayError> {
    let none = v1::AdaptiveFusion::default();
    let a = request.unwrap_or(&none);
    let slope = |field: &str, s: Option<f32>, default: f32| match s {
        None => Ok(default),
        Some(s) if slope_in_range(s) => Ok(s),
        Some(s) => Err(GatewayError::invalid(
            field,
            format!("{s} is out of range -{MAX_SLOPE}..={MAX_SLOPE}"),
        )),
    };
    let rule = Rule {
        margin_slope: slope(
            "fusion.adaptive.margin_slope",
            a.margin_slope,
            config.adaptive.margin_slope,
        )?,
        length_slope: slope(
            "fusion.adaptive.length_slope",
            a.length_slope,
            config.adaptive.length_slope,
        )?,
        pivot_terms: match a.pivot_terms {
            None => config.adaptive.pivot_terms,
            Some(p) if pivot_in_range(p) => p,
            Some(p) => {
                return Err(GatewayError::invalid(
                    "fusion.adaptive.pivot_terms",
                    format!("{p} is out of range 1..={MAX_PIVOT_TERMS}"),
                ));
            }
        },
    };
    if a.enabled.unwrap_or(config.adaptive_enabled) {
        return Ok(Some(rule));
    }
    // Parameters of a weighting that is off would be silently ignored: say so instead.
    let set = [
        ("fusion.adaptive.margin_slope", a.margin_slope.is_some()),
        ("fusion.adaptive.length_slope", a.length_slope.is_some()),
        ("fusion.adaptive.pivot_terms", a.pivot_terms.is_some()),
    ];
    match set.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(GatewayError::invalid(
            *field,
            "set, but adaptive weighting is off (set fusion.adaptive.enabled)",
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        rrf_k: 60,
        method: Method::Rrf,
        normalization: Normalization::MinMax,
        vector_weight: 1.0,
        text_weight: 1.0,
        min_candidates: 50,
        max_candidates: 1000,
        max_ef_search: 1000,
        adaptive_enabled: false,
        adaptive: Rule {
            margin_slope: 0.5,
            length_slope: -0.5,
            pivot_terms: 9,
        },
    };

    fn field_of(e: GatewayError) -> String {
        braid_proto::tonic::Status::from(e).message().to_string()
    }

    #[test]
    fn defaults_and_overrides() {
        let config = DEFAULTS;
        let c = choices(&v1::FusionParams::default(), 10, &config).unwrap();
        assert_eq!(c.params.method, config.method);
        assert_eq!(c.params.normalization, config.normalization);
        assert_eq!((c.vector_candidates, c.text_candidates), (50, 50));
        assert_eq!(c.ef_search, 0);
        assert_eq!((c.params.vector_weight, c.params.text_weight), (1.0, 1.0));
        let weighted = Defaults {
            text_weight: 0.75,
            ..config
        };
        let c = choices(&v1::FusionParams::default(), 10, &weighted).unwrap();
        assert_eq!((c.params.vector_weight, c.params.text_weight), (1.0, 0.75));
        let c = choices(
            &v1::FusionParams {
                text_weight: Some(2.0),
                ..Default::default()
            },
            10,
            &weighted,
        )
        .unwrap();
        assert_eq!(c.params.text_weight, 2.0, "the request's weight wins");
        let c = choices(
            &v1::FusionParams {
                method: FusionMethod::Linear as i32,
                normalization: ScoreNormalization::ZScore as i32,
                vector_candidates: 7,
                text_candidates: 300,
                ef_search: 200,
                ..Default::default()
            },
            10,
            &config,
        )
        .unwrap();
        assert_eq!(c.params.method, Method::Linear);
        assert_eq!(c.params.normalization, Normalization::ZScore);
        assert_eq!((c.vector_candidates, c.text_candidates), (7, 300));
        assert_eq!(c.ef_search, 200);
    }

    #[test]
    fn out_of_range_values_name_the_field_and_limit() {
        let config = DEFAULTS;
        for (fusion, field, limit) in [
            (
                v1::FusionParams {
                    text_candidates: 1001,
                    ..Default::default()
                },
                "fusion.text_candidates",
                "1000",
            ),
            (
                v1::FusionParams {
                    vector_candidates: u32::MAX,
                    ..Default::default()
                },
                "fusion.vector_candidates",
                "1000",
            ),
            (
                v1::FusionParams {
                    ef_search: 1001,
                    ..Default::default()
                },
                "fusion.ef_search",
                "1000",
            ),
            (
                v1::FusionParams {
                    method: 9,
                    ..Default::default()
                },
                "fusion.method",
                "LINEAR",
            ),
            (
                v1::FusionParams {
                    normalization: -1,
                    ..Default::default()
                },
                "fusion.normalization",
                "Z_SCORE",
            ),
        ] {
            let message = field_of(choices(&fusion, 10, &config).unwrap_err());
            assert!(
                message.contains(field) && message.contains(limit),
                "{message}"
            );
        }
    }

    fn adaptive(a: v1::AdaptiveFusion) -> v1::FusionParams {
        v1::FusionParams {
            adaptive: Some(a),
            ..Default::default()
        }
    }

    #[test]
    fn adaptive_weighting_is_off_unless_asked_and_takes_the_request_parameters() {
        let c = choices(&v1::FusionParams::default(), 10, &DEFAULTS).unwrap();
        assert_eq!(c.adaptive, None, "off by default");
        let on = Defaults {
            adaptive_enabled: true,
            ..DEFAULTS
        };
        let c = choices(&v1::FusionParams::default(), 10, &on).unwrap();
        assert_eq!(
            c.adaptive,
            Some(DEFAULTS.adaptive),
            "the config turns it on"
        );
        let c = choices(
            &adaptive(v1::AdaptiveFusion {
                enabled: Some(false),
                ..Default::default()
            }),
            10,
            &on,
        )
        .unwrap();
        assert_eq!(c.adaptive, None, "the request turns it off");
        let c = choices(
            &adaptive(v1::AdaptiveFusion {
                enabled: Some(true),
                margin_slope: Some(-2.5),
                length_slope: Some(0.0),
                pivot_terms: Some(32),
            }),
            10,
            &DEFAULTS,
        )
        .unwrap();
        let rule = Rule {
            margin_slope: -2.5,
            length_slope: 0.0,
            pivot_terms: 32,
        };
        assert_eq!(c.adaptive, Some(rule));
        // The cache key and page tokens tell the rules apart, and say nothing when it is off.
        let off = choices(&v1::FusionParams::default(), 10, &DEFAULTS).unwrap();
        assert!(
            !off.cache_part().contains("adaptive"),
            "{}",
            off.cache_part()
        );
        assert_ne!(c.cache_part(), off.cache_part());
        let other = Choices {
            adaptive: Some(Rule {
                pivot_terms: 31,
                ..rule
            }),
            ..c
        };
        assert_ne!(c.cache_part(), other.cache_part());
    }

    #[test]
    fn bad_adaptive_parameters_name_the_field_and_limit() {
        let on = |a: v1::AdaptiveFusion| {
            adaptive(v1::AdaptiveFusion {
                enabled: Some(true),
                ..a
            })
        };
        for (fusion, field, limit) in [
            (
                on(v1::AdaptiveFusion {
                    margin_slope: Some(10.5),
                    ..Default::default()
                }),
                "fusion.adaptive.margin_slope",
                "-10..=10",
            ),
            (
                on(v1::AdaptiveFusion {
                    length_slope: Some(f32::NAN),
                    ..Default::default()
                }),
                "fusion.adaptive.length_slope",
                "-10..=10",
            ),
            (
                on(v1::AdaptiveFusion {
                    pivot_terms: Some(0),
                    ..Default::default()
                }),
                "fusion.adaptive.pivot_terms",
                "1..=32",
            ),
            (
                on(v1::AdaptiveFusion {
                    pivot_terms: Some(33),
                    ..Default::default()
                }),
                "fusion.adaptive.pivot_terms",
                "1..=32",
            ),
            (
                adaptive(v1::AdaptiveFusion {
                    length_slope: Some(1.0),
                    ..Default::default()
                }),
                "fusion.adaptive.length_slope",
                "fusion.adaptive.enabled",
            ),
        ] {
            let e = choices(&fusion, 10, &DEFAULTS).unwrap_err();
            let status = braid_proto::tonic::Status::from(e);
            assert_eq!(status.code(), braid_proto::tonic::Code::InvalidArgument);
            let message = status.message();
            assert!(
                message.contains(field) && message.contains(limit),
                "{message}"
            );
        }
    }
}
