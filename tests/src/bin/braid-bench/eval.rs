//! `braid-bench eval`: retrieval quality on a BEIR dataset (SciFact) through the gateway, per
//! search mode and, for hybrid, per fusion method (RRF, LINEAR with each normalisation, DBSF):
//! nDCG@10, Recall@10 and Recall@100 over the judged test queries, plus the same nDCG@10 on
//! the two halves of the queries (`dev`: the first half in `qrels/test.tsv` order, used to
//! choose the gateway's defaults; `held-out`: the second, never used to choose anything).
//!
//! Before the table, a sweep on the dev half only: every fusion method and normalisation
//! with several text-leg weights (vector weight 1). Its best configuration is the "dev-half
//! winner" row of the table; the report says whether the gateway's configured defaults are
//! that winner, so the default is always the one the dev half chose. In the same pass, on the
//! same dev queries, a small grid of adaptive weighting's two slopes over the defaults'
//! weights (`fusion.adaptive`, sent per request: no restart); its best is the "dev-best
//! adaptive" row.
//!
//! After the table, each hybrid variant against the gateway's defaults on the held-out half:
//! the mean per-query nDCG@10 difference with a 95% paired bootstrap confidence interval
//! ([`bootstrap_ci`]), so a new default is adopted only when the held-out half says so.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use braid_tests::v1::{
    AdaptiveFusion, FusionMethod, FusionParams, ScoreNormalization, SearchMode, SearchRequest,
};
use braid_tests::{Stack, StackOptions};

use super::{ingest_all, percentile, read_corpus, write_section};

/// Hits asked per query: enough for Recall@100.
const DEPTH: u32 = 100;

/// nDCG@k of `ranked` (document ids, best first) against graded judgements.
pub fn ndcg_at(ranked: &[String], judged: &HashMap<String, f64>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, id)| judged.get(id).copied().unwrap_or(0.0) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<f64> = judged.values().copied().collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / ((i + 2) as f64).log2())
        .sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// Share of the relevant documents among the first `k` of `ranked`.
pub fn recall_at(ranked: &[String], judged: &HashMap<String, f64>, k: usize) -> f64 {
    let relevant = judged.values().filter(|g| **g > 0.0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|d| judged.get(*d).is_some_and(|g| *g > 0.0))
        .count();
    found as f64 / relevant as f64
}

/// One configuration the eval runs.
#[derive(Clone)]
struct Variant {
    name: String,
    mode: SearchMode,
    fusion: Option<FusionParams>,
}

/// `search`'s fusion defaults in words, e.g. "RRF, text weight 1".
fn describe_defaults(search: &braid_gateway::SearchConfig) -> String {
    let method = match search.fusion_method {
        braid_gateway::fusion::Method::Rrf => "RRF".to_string(),
        braid_gateway::fusion::Method::Linear => format!("LINEAR, {:?}", search.normalization),
        braid_gateway::fusion::Method::Dbsf => "DBSF".to_string(),
    };
    let adaptive = &search.adaptive;
    let adaptive = if adaptive.enabled {
        format!(
            ", adaptive: margin slope {}, length slope {}, pivot {} terms",
            adaptive.margin_slope, adaptive.length_slope, adaptive.pivot_terms
        )
    } else {
        String::new()
    };
    format!(
        "{method}, vector weight {}, text weight {}{adaptive}",
        search.vector_weight, search.text_weight
    )
}

fn variants(defaults: &braid_gateway::SearchConfig) -> Vec<Variant> {
    let linear = |normalization: ScoreNormalization| {
        Some(FusionParams {
            method: FusionMethod::Linear as i32,
            normalization: normalization as i32,
            ..Default::default()
        })
    };
    vec![
        Variant {
            name: "hybrid, RRF (k = 60)".into(),
            mode: SearchMode::Hybrid,
            fusion: Some(FusionParams {
                method: FusionMethod::Rrf as i32,
                ..Default::default()
            }),
        },
        Variant {
            name: "hybrid, LINEAR, min-max".into(),
            mode: SearchMode::Hybrid,
            fusion: linear(ScoreNormalization::MinMax),
        },
        Variant {
            name: "hybrid, LINEAR, z-score".into(),
            mode: SearchMode::Hybrid,
            fusion: linear(ScoreNormalization::ZScore),
        },
        Variant {
            name: "hybrid, LINEAR, rank".into(),
            mode: SearchMode::Hybrid,
            fusion: linear(ScoreNormalization::Rank),
        },
        Variant {
            name: "hybrid, DBSF".into(),
            mode: SearchMode::Hybrid,
            fusion: Some(FusionParams {
                method: FusionMethod::Dbsf as i32,
                ..Default::default()
            }),
        },
        Variant {
            name: format!("hybrid, gateway defaults ({})", describe_defaults(defaults)),
            mode: SearchMode::Hybrid,
            fusion: None,
        },
        Variant {
            name: "vector only (all-MiniLM-L6-v2)".into(),
            mode: SearchMode::Vector,
            fusion: None,
        },
        Variant {
            name: "text only (BM25)".into(),
            mode: SearchMode::Text,
            fusion: None,
        },
    ]
}

/// Text-leg weights the dev sweep tries (the vector leg's weight is 1).
const SWEEP_TEXT_WEIGHTS: [f32; 5] = [0.5, 0.75, 1.0, 1.5, 2.0];

/// The dev-half sweep: each method and normalisation with each text weight.
fn sweep() -> Vec<Variant> {
    let methods = [
        (
            "RRF (k = 60)",
            FusionMethod::Rrf,
            ScoreNormalization::Unspecified,
        ),
        (
            "LINEAR, min-max",
            FusionMethod::Linear,
            ScoreNormalization::MinMax,
        ),
        (
            "LINEAR, z-score",
            FusionMethod::Linear,
            ScoreNormalization::ZScore,
        ),
        (
            "LINEAR, rank",
            FusionMethod::Linear,
            ScoreNormalization::Rank,
        ),
        ("DBSF", FusionMethod::Dbsf, ScoreNormalization::Unspecified),
    ];
    let mut out = Vec::new();
    for (label, method, normalization) in methods {
        for w in SWEEP_TEXT_WEIGHTS {
            out.push(Variant {
                name: format!("hybrid, {label}, text weight {w}"),
                mode: SearchMode::Hybrid,
                fusion: Some(FusionParams {
                    method: method as i32,
                    normalization: normalization as i32,
                    vector_weight: Some(1.0),
                    text_weight: Some(w),
                    ..Default::default()
                }),
            });
        }
    }
    out
}

/// Adaptive weighting's margin slopes and length slopes the dev sweep tries (every pair, over
/// the gateway's default method and weights and its `search.adaptive.pivot_terms`). Both 0 is
/// the defaults themselves (the rule leaves the weights bit for bit): a check of the sweep.
const ADAPTIVE_MARGIN_SLOPES: [f32; 4] = [0.0, 0.5, 1.0, 2.0];
const ADAPTIVE_LENGTH_SLOPES: [f32; 4] = [-1.0, -0.5, 0.0, 0.5];

/// The label of an adaptive configuration, e.g. "margin slope 0.5, length slope -1".
fn adaptive_label(margin_slope: f32, length_slope: f32) -> String {
    format!("margin slope {margin_slope}, length slope {length_slope}")
}

/// The dev-half sweep of adaptive weighting: each pair of slopes.
fn adaptive_sweep() -> Vec<Variant> {
    let mut out = Vec::new();
    for m in ADAPTIVE_MARGIN_SLOPES {
        for l in ADAPTIVE_LENGTH_SLOPES {
            out.push(Variant {
                name: format!("hybrid, adaptive, {}", adaptive_label(m, l)),
                mode: SearchMode::Hybrid,
                fusion: Some(FusionParams {
                    adaptive: Some(AdaptiveFusion {
                        enabled: Some(true),
                        margin_slope: Some(m),
                        length_slope: Some(l),
                        pivot_terms: None,
                    }),
                    ..Default::default()
                }),
            });
        }
    }
    out
}

/// The index of the best of `scores` within `range` (ties: the first).
fn best_in(scores: &[f64], range: std::ops::Range<usize>) -> usize {
    let start = range.start;
    range.fold(start, |b, i| if scores[i] > scores[b] { i } else { b })
}

/// Whether the gateway's configured fusion defaults are `fusion` (the dev-half winner).
fn defaults_are(search: &braid_gateway::SearchConfig, fusion: &FusionParams) -> bool {
    let method = match search.fusion_method {
        braid_gateway::fusion::Method::Rrf => FusionMethod::Rrf,
        braid_gateway::fusion::Method::Linear => FusionMethod::Linear,
        braid_gateway::fusion::Method::Dbsf => FusionMethod::Dbsf,
    };
    let normalization = match search.normalization {
        braid_gateway::fusion::Normalization::MinMax => ScoreNormalization::MinMax,
        braid_gateway::fusion::Normalization::ZScore => ScoreNormalization::ZScore,
        braid_gateway::fusion::Normalization::Rank => ScoreNormalization::Rank,
    };
    fusion.method == method as i32
        && (method != FusionMethod::Linear || fusion.normalization == normalization as i32)
        && fusion.vector_weight == Some(search.vector_weight)
        && fusion.text_weight == Some(search.text_weight)
}

/// One evaluation query: top `DEPTH` documents of the eval tenant, never from the query
/// cache (warm-up queries repeat measured ones).
fn eval_search(variant: &Variant, text: &str) -> SearchRequest {
    SearchRequest {
        tenant: "eval".into(),
        query: text.to_string(),
        top_k: DEPTH,
        mode: variant.mode as i32,
        fusion: variant.fusion,
        bypass_cache: true,
        ..Default::default()
    }
}

/// Resamples of [`bootstrap_ci`].
const RESAMPLES: usize = 10_000;

/// The mean of paired differences `diffs` and its 95% percentile bootstrap confidence
/// interval (`RESAMPLES` resamples of the queries with replacement, a fixed seed so a rerun
/// of the same figures gives the same interval).
pub fn bootstrap_ci(diffs: &[f64]) -> (f64, f64, f64) {
    let n = diffs.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    // splitmix64: enough for resampling, no dependency.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            (0..n)
                .map(|_| diffs[(next() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((RESAMPLES as f64 * q) as usize).min(RESAMPLES - 1)];
    (mean, at(0.025), at(0.975))
}

#[derive(Default)]
struct Tally {
    /// Per query, in query order: nDCG@10, Recall@10, Recall@100.
    per_query: Vec<[f64; 3]>,
    degraded: usize,
    latencies: Vec<Duration>,
}

impl Tally {
    fn mean(&self, range: std::ops::Range<usize>, metric: usize) -> f64 {
        let part = &self.per_query[range];
        part.iter().map(|m| m[metric]).sum::<f64>() / part.len().max(1) as f64
    }
}

/// Graded judgements: query id -> (corpus id -> gain).
pub type Qrels = HashMap<String, HashMap<String, f64>>;

/// The judged test queries of a BEIR dataset, as (id, text) in `qrels/test.tsv` order.
pub fn judged_queries(dataset: &Path) -> anyhow::Result<(Qrels, Vec<(String, String)>)> {
    let mut qrels: Qrels = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let tsv = std::fs::read_to_string(dataset.join("qrels/test.tsv"))?;
    for line in tsv.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 3 {
            if !qrels.contains_key(f[0]) {
                order.push(f[0].to_string());
            }
            qrels
                .entry(f[0].to_string())
                .or_default()
                .insert(f[1].to_string(), f[2].trim().parse()?);
        }
    }
    let mut texts: HashMap<String, String> = HashMap::new();
    for line in std::io::BufReader::new(std::fs::File::open(dataset.join("queries.jsonl"))?).lines()
    {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let id = v["_id"].as_str().unwrap_or_default().to_string();
        if qrels.contains_key(&id) {
            texts.insert(id, v["text"].as_str().unwrap_or_default().to_string());
        }
    }
    let queries: Vec<(String, String)> = order
        .into_iter()
        .filter_map(|id| texts.remove(&id).map(|t| (id, t)))
        .collect();
    Ok((qrels, queries))
}

pub async fn eval(dataset: &Path, limit: Option<usize>, out: Option<&Path>) -> anyhow::Result<()> {
    let (qrels, queries) = judged_queries(dataset)?;
    let docs = read_corpus(&dataset.join("corpus.jsonl"), limit.unwrap_or(usize::MAX))?;
    let n_docs = docs.len();
    eprintln!(
        "braid-bench: eval: {n_docs} documents, {} judged queries",
        queries.len()
    );
    // No embedding cache: the variants run the same queries, and each must pay for its own
    // query embedding to be timed fairly.
    let mut options = StackOptions::default();
    options.embedding.cache.l1_entries = 0;
    // A benchmark client, not a user: the default search budget per subject (200 tokens/s,
    // about 25 uncached searches of depth 100 a second) would stop a sequential run on a
    // quiet machine with RESOURCE_EXHAUSTED.
    let unlimited = braid_gateway::Budget {
        rate_per_second: 1e6,
        burst: 1_000_000,
    };
    options.gateway.limits.search.per_subject = unlimited;
    options.gateway.limits.search.per_tenant = unlimited;
    let stack = Stack::start_with(options).await?;
    let mut gw = stack.gateway_client().await?;
    let variants = variants(&stack.gateway_config.search);
    // Searches keep coming while the corpus is ingested: one hybrid query every 250 ms.
    let ingesting = Arc::new(AtomicBool::new(true));
    let probe = tokio::spawn({
        let (mut gw, ingesting) = (gw.clone(), ingesting.clone());
        let texts: Vec<String> = queries.iter().map(|(_, t)| t.clone()).collect();
        async move {
            let (mut latencies, mut degraded) = (Vec::new(), 0usize);
            let mut request = SearchRequest {
                tenant: "eval".into(),
                top_k: 10,
                mode: SearchMode::Hybrid as i32,
                bypass_cache: true,
                ..Default::default()
            };
            for text in texts.iter().cycle() {
                if !ingesting.load(Ordering::Relaxed) {
                    break;
                }
                request.query = text.clone();
                let started = Instant::now();
                let r = gw.search(request.clone()).await?.into_inner();
                latencies.push(started.elapsed());
                degraded += usize::from(r.degraded);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            anyhow::Ok((latencies, degraded))
        }
    });
    let (_, ingested, failed) = ingest_all(&mut gw, docs, "eval").await?;
    ingesting.store(false, Ordering::Relaxed);
    let (mut during, during_degraded) = probe.await??;
    during.sort();
    eprintln!("braid-bench: eval: corpus indexed in {ingested:.1?} ({failed} not READY)");

    // Warm-up (not measured): the first queries after a bulk load pay for cold caches.
    for (_, text) in queries.iter().take(20) {
        for variant in &variants {
            gw.search(eval_search(variant, text)).await?;
        }
    }
    let n = queries.len();
    let half = n / 2;
    // The sweeps, on the dev half only: the held-out half never influences a choice. The
    // fixed weights first, then adaptive weighting's grid.
    let mut sweep = sweep();
    let fixed = sweep.len();
    sweep.extend(adaptive_sweep());
    let mut dev_scores = vec![0.0f64; sweep.len()];
    for (id, text) in &queries[..half] {
        let judged = &qrels[id];
        for (variant, score) in sweep.iter().zip(dev_scores.iter_mut()) {
            let r = gw.search(eval_search(variant, text)).await?.into_inner();
            let ranked: Vec<String> = r.hits.into_iter().map(|h| h.external_id).collect();
            *score += ndcg_at(&ranked, judged, 10) / half.max(1) as f64;
        }
    }
    let (mut sweep_rows, mut adaptive_rows) = (String::new(), String::new());
    for (i, (variant, score)) in sweep.iter().zip(&dev_scores).enumerate() {
        eprintln!(
            "braid-bench: eval: dev sweep: {}: nDCG@10 {score:.4}",
            variant.name
        );
        let rows = if i < fixed {
            &mut sweep_rows
        } else {
            &mut adaptive_rows
        };
        rows.push_str(&format!("| {} | {score:.4} |\n", variant.name));
    }
    // Ties go to the first in sweep order.
    let best = best_in(&dev_scores, 0..fixed);
    let best_adaptive = best_in(&dev_scores, fixed..sweep.len());
    let adaptive_winner = Variant {
        name: format!(
            "dev-best adaptive: {}",
            sweep[best_adaptive]
                .name
                .trim_start_matches("hybrid, adaptive, ")
        ),
        ..sweep[best_adaptive].clone()
    };
    let winner = Variant {
        name: format!(
            "dev-half winner: {}",
            sweep[best].name.trim_start_matches("hybrid, ")
        ),
        ..sweep[best].clone()
    };
    let winner_fusion = winner.fusion.unwrap_or_default();
    let defaults_match = defaults_are(&stack.gateway_config.search, &winner_fusion);
    let mut variants = variants;
    variants.insert(5, winner);
    variants.insert(6, adaptive_winner);

    // Variants interleaved query by query, so background work (index merges, autovacuum)
    // weighs on all alike.
    let mut tallies: Vec<Tally> = variants.iter().map(|_| Tally::default()).collect();
    for (id, text) in &queries {
        let judged = &qrels[id];
        for (variant, tally) in variants.iter().zip(tallies.iter_mut()) {
            let started = Instant::now();
            let r = gw.search(eval_search(variant, text)).await?.into_inner();
            tally.latencies.push(started.elapsed());
            tally.degraded += usize::from(r.degraded);
            let ranked: Vec<String> = r.hits.into_iter().map(|h| h.external_id).collect();
            tally.per_query.push([
                ndcg_at(&ranked, judged, 10),
                recall_at(&ranked, judged, 10),
                recall_at(&ranked, judged, 100),
            ]);
        }
    }
    let stack_search = stack.gateway_config.search.clone();
    stack.shutdown().await?;
    // Each hybrid variant against the gateway's defaults, on the held-out half only.
    let default_at = variants
        .iter()
        .position(|v| v.mode == SearchMode::Hybrid && v.fusion.is_none())
        .unwrap_or_default();
    let mut versus = String::new();
    for (variant, tally) in variants.iter().zip(&tallies) {
        if variant.mode != SearchMode::Hybrid || variant.fusion.is_none() {
            continue;
        }
        let diffs: Vec<f64> = (half..n)
            .map(|i| tally.per_query[i][0] - tallies[default_at].per_query[i][0])
            .collect();
        let (mean, low, high) = bootstrap_ci(&diffs);
        let verdict = if low > 0.0 {
            "better"
        } else if high < 0.0 {
            "worse"
        } else {
            "no difference shown"
        };
        eprintln!(
            "braid-bench: eval: held-out {} vs defaults: {mean:+.4} [{low:+.4}, {high:+.4}]",
            variant.name
        );
        versus.push_str(&format!(
            "| {} | {:.3} | {mean:+.4} | [{low:+.4}, {high:+.4}] | {verdict} |\n",
            variant.name,
            tally.mean(half..n, 0)
        ));
    }
    let mut rows = String::new();
    let mut halves = String::new();
    for (variant, mut tally) in variants.iter().zip(tallies) {
        tally.latencies.sort();
        let p50 = percentile(&tally.latencies, 0.5);
        let p99 = percentile(&tally.latencies, 0.99);
        let name = &variant.name;
        eprintln!(
            "braid-bench: eval: {name}: nDCG@10 {:.3}",
            tally.mean(0..n, 0)
        );
        rows.push_str(&format!(
            "| {name} | **{:.3}** | {:.3} | {:.3} | {:.1} ms | {:.1} ms | {} |\n",
            tally.mean(0..n, 0),
            tally.mean(0..n, 1),
            tally.mean(0..n, 2),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            tally.degraded,
        ));
        halves.push_str(&format!(
            "| {name} | {:.3} | {:.3} |\n",
            tally.mean(0..half, 0),
            tally.mean(half..n, 0),
        ));
    }
    let report = format!(
        "<!-- bench:eval -->\n\
## Retrieval quality (SciFact test split, BEIR)\n\n\
Command: `make eval` (`braid-bench eval --dataset ../shared/eval/scifact`): the whole corpus ({n_docs} abstracts, title + text, chunked as in production) ingested through the gateway in {:.0} s ({:.1} documents/s, {failed} not READY), then (after 20 unmeasured warm-up queries) the {n} judged test queries, one after another with the variants interleaved, top {DEPTH} documents per query (best chunk per document). Hybrid variants differ only in `fusion.method` / `fusion.normalization`, the legs' weights and `fusion.adaptive` (default candidate depth); the text leg is document-level BM25 (k1 0.9, b 0.4) over title and body with English analysis. `{build}` build.\n\n\
Choosing the defaults: first a sweep on the dev half only (the first {half} queries in `qrels/test.tsv` order): each method with text-leg weight {weights} (vector weight 1). Its best, {winner}, is the dev-half winner row below; the gateway's defaults (`search.fusion_method` {method:?}, `search.normalization` {norm:?}, `search.vector_weight` {vw}, `search.text_weight` {tw}) {verdict}.\n\n\
| dev sweep (hybrid) | dev nDCG@10 |\n| --- | --- |\n\
{sweep_rows}\n\
Adaptive weighting (`fusion.adaptive`, `search.adaptive.*`; {adaptive_default} by default): per query, the text leg's weight is multiplied by `exp(margin_slope × (text_margin − vector_margin) + length_slope × ln(query_terms / pivot_terms))`, within [0.1, 10], a leg's margin being its best candidate's lead over its second in the leg's standard deviations and `query_terms` the query's distinct terms, stop words aside (pivot {pivot} terms, the dev half's median). Swept on the same dev queries over the defaults' method and weights, every margin slope {margin_slopes} with every length slope {length_slopes} (both 0: the defaults themselves). Its best, {adaptive_best}, is the dev-best adaptive row below; the held-out half alone says whether it beats the defaults.\n\n\
| dev sweep (adaptive weighting) | dev nDCG@10 |\n| --- | --- |\n\
{adaptive_rows}\n\
| mode | nDCG@10 | Recall@10 | Recall@100 | latency p50 | latency p99 | degraded answers |\n| --- | --- | --- | --- | --- | --- | --- |\n\
{rows}\n\
nDCG@10 on the two halves of the queries (`dev`: the first {half} in `qrels/test.tsv` order, the half the defaults were chosen on; `held-out`: the other {}, reported once, never used to choose):\n\n\
| mode | dev | held-out |\n| --- | --- | --- |\n\
{halves}\n\
Each hybrid variant against the gateway's defaults on the held-out half: mean per-query nDCG@10 difference and its 95% paired bootstrap confidence interval ({RESAMPLES} resamples of the {} held-out queries); a default changes only when the interval lies above 0:\n\n\
| hybrid variant | held-out nDCG@10 | difference vs defaults | 95% CI | held-out says |\n| --- | --- | --- | --- | --- |\n\
{versus}\n\
Hybrid searches (top 10) while the corpus was being ingested (one every 250 ms, {} queries): p50 {:.1} ms, p99 {:.1} ms, {during_degraded} degraded.\n\n\
Published on this split: BM25 (Anserini, multifield) 0.665; all-MiniLM-L6-v2 dense 0.645 (MTEB). Latency is through the gateway (query embedding included, embedding cache off, {DEPTH} hits per answer), all five services in one process on 2 cores.\n\
<!-- /bench:eval -->\n",
        ingested.as_secs_f64(),
        n_docs as f64 / ingested.as_secs_f64(),
        n - half,
        n - half,
        during.len(),
        percentile(&during, 0.5).as_secs_f64() * 1e3,
        percentile(&during, 0.99).as_secs_f64() * 1e3,
        build = if cfg!(debug_assertions) {
            "dev (debug)"
        } else {
            "release"
        },
        weights = SWEEP_TEXT_WEIGHTS.map(|w| w.to_string()).join(", "),
        winner = sweep[best].name,
        pivot = stack_search.adaptive.pivot_terms,
        adaptive_default = if stack_search.adaptive.enabled {
            "on"
        } else {
            "off"
        },
        margin_slopes = ADAPTIVE_MARGIN_SLOPES.map(|w| w.to_string()).join(", "),
        length_slopes = ADAPTIVE_LENGTH_SLOPES.map(|w| w.to_string()).join(", "),
        adaptive_best = sweep[best_adaptive]
            .name
            .trim_start_matches("hybrid, adaptive, "),
        method = stack_search.fusion_method,
        norm = stack_search.normalization,
        vw = stack_search.vector_weight,
        tw = stack_search.text_weight,
        verdict = if defaults_match {
            "are this winner"
        } else {
            "are NOT this winner: set them to it"
        },
    );
    println!("{report}");
    if let Some(out) = out {
        write_section(out, "eval", &report)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_known_ranking() {
        let judged: HashMap<String, f64> = [("a".to_string(), 1.0), ("b".to_string(), 1.0)]
            .into_iter()
            .collect();
        let ranked: Vec<String> = ["x", "a", "y", "b"].iter().map(|s| s.to_string()).collect();
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((ndcg_at(&ranked, &judged, 10) - dcg / idcg).abs() < 1e-12);
        assert_eq!(recall_at(&ranked, &judged, 2), 0.5);
        assert_eq!(recall_at(&ranked, &judged, 100), 1.0);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_excludes_0_for_a_clear_gain() {
        let clear: Vec<f64> = (0..150).map(|i| 0.05 + (i % 7) as f64 * 0.01).collect();
        let (mean, low, high) = bootstrap_ci(&clear);
        assert!(
            low > 0.0 && low <= mean && mean <= high,
            "{low} {mean} {high}"
        );
        let noise: Vec<f64> = (0..150)
            .map(|i| if i % 2 == 0 { 0.3 } else { -0.3 })
            .collect();
        let (mean, low, high) = bootstrap_ci(&noise);
        assert!(
            low < 0.0 && high > 0.0 && mean.abs() < 1e-12,
            "{low} {high}"
        );
    }

    #[test]
    fn the_adaptive_sweep_is_small_and_includes_the_defaults() {
        let sweep = adaptive_sweep();
        assert!(sweep.len() <= 36, "150 dev queries each: {}", sweep.len());
        let identity = sweep
            .iter()
            .filter(|v| {
                let a = v.fusion.and_then(|f| f.adaptive).unwrap();
                a.margin_slope == Some(0.0) && a.length_slope == Some(0.0)
            })
            .count();
        assert_eq!(
            identity, 1,
            "both slopes 0: the defaults, a check of the sweep"
        );
        assert!(sweep.iter().all(|v| {
            let f = v.fusion.unwrap();
            f.text_weight.is_none() && f.method == 0 && f.adaptive.unwrap().enabled == Some(true)
        }));
        assert_eq!(best_in(&[0.1, 0.5, 0.3, 0.5], 1..4), 1, "ties: the first");
        assert_eq!(
            best_in(&[0.9, 0.5, 0.3, 0.6], 1..4),
            3,
            "within its range only"
        );
    }
}
