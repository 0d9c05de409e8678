//! What a call costs in tokens of its class's budgets (`limits.cost`): a search by the work it
//! asks for, an ingest by its documents, anything else one token.

use super::config::CostConfig;

/// The work a search asks for, after defaulting: the candidates of each leg it uses and the
/// depth of its ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchWork {
    pub vector_candidates: Option<u32>,
    pub text_candidates: Option<u32>,
    pub top_k: u32,
    pub bypass_cache: bool,
}

/// Tokens of a search: one per `search_work_per_token` units of work (at least one), times
/// `cache_bypass_factor` when the cache is bypassed.
pub fn search(config: &CostConfig, work: SearchWork) -> u32 {
    let units = u64::from(work.vector_candidates.unwrap_or(0))
        + u64::from(work.text_candidates.unwrap_or(0))
        + u64::from(work.top_k);
    let per = u64::from(config.search_work_per_token.max(1));
    let tokens = units.div_ceil(per).max(1);
    let factor = if work.bypass_cache {
        u64::from(config.cache_bypass_factor.max(1))
    } else {
        1
    };
    u32::try_from(tokens.saturating_mul(factor)).unwrap_or(u32::MAX)
}

/// Tokens of an ingest of `documents` documents (at least one: an empty request is refused,
/// and still costs).
pub fn documents(documents: usize) -> u32 {
    u32::try_from(documents.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_search_costs_one_and_a_deep_bypassing_one_many() {
        let config = CostConfig::default();
        let default = SearchWork {
            vector_candidates: Some(50),
            text_candidates: Some(50),
            top_k: 10,
            bypass_cache: false,
        };
        assert_eq!(search(&config, default), 1);
        // Issue 23: 1,000 candidates per leg, a 500-deep ranking, the cache bypassed.
        let heavy = SearchWork {
            vector_candidates: Some(1000),
            text_candidates: Some(1000),
            top_k: 500,
            bypass_cache: true,
        };
        assert_eq!(search(&config, heavy), 26);
        let text_only = SearchWork {
            vector_candidates: None,
            ..heavy
        };
        assert_eq!(search(&config, text_only), 16);
        assert_eq!(documents(0), 1);
        assert_eq!(documents(256), 256);
    }
}
