//! `braidctl search`: the fusion options and the output (a table of hits, with `--explain`
//! each hit's per-leg score breakdown, with `--why DOC` where that document stood; or JSON).

use braid_proto::v1::{
    AdaptiveFusion, AdaptiveWeights, DocumentWhy, FusionMethod, FusionParams, HitExplanation,
    ScoreNormalization, SearchMode, SearchRequest, SearchResponse, VectorPassage, WhyRequest,
};

use crate::cli::Mode;

/// `braidctl search` and its flags.
#[derive(clap::Args)]
pub struct SearchArgs {
    pub query: String,
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    pub mode: Mode,
    #[arg(long, default_value_t = 10)]
    pub top_k: u32,
    /// Reciprocal rank fusion k (0: server default).
    #[arg(long, default_value_t = 0)]
    pub rrf_k: u32,
    #[command(flatten)]
    pub fusion: FusionArgs,
    /// Show how each hit's score was computed (per leg: raw and normalised score, rank,
    /// weight, contribution, matched chunk; with adaptive weighting, the weights the query
    /// got and why).
    #[arg(long)]
    pub explain: bool,
    /// Metadata condition (repeatable, all must hold): key=v, key!=v, key>=v, key<v
    /// (numbers or dates), "key in a,b", "key not in a,b", key (has it), !key (lacks it).
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Hits per page (0: all top_k at once); prints the token of the next page.
    #[arg(long, default_value_t = 0)]
    pub page_size: u32,
    /// The token a previous page printed (same query and flags).
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Leave out hits whose (fused) score is below this.
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Leave out vector-leg hits with cosine similarity below this.
    #[arg(long)]
    pub min_vector_score: Option<f32>,
    /// Leave out text-leg hits with BM25 score below this.
    #[arg(long)]
    pub min_text_score: Option<f32>,
    /// Return every matching chunk instead of the best chunk per document.
    #[arg(long)]
    pub chunks: bool,
    /// Neither read nor fill the gateway's query cache (`bypass_cache`).
    #[arg(long)]
    pub bypass_cache: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also say where this document (its external id; `id:UUID` for a document id) stood in
    /// this search: each leg's rank and score or why it is not a candidate, the filter clauses
    /// it fails, its fused rank and score, and what removed it.
    #[arg(long, value_name = "DOC")]
    pub why: Option<String>,
}

/// `--why DOC`: `id:UUID` names a document id, anything else an external id.
fn why_request(doc: &str) -> WhyRequest {
    match doc.strip_prefix("id:") {
        Some(id) => WhyRequest {
            document_id: id.to_string(),
            external_id: String::new(),
        },
        None => WhyRequest {
            document_id: String::new(),
            external_id: doc.to_string(),
        },
    }
}

/// Runs one search and prints the answer (a table, or JSON with `--json`).
pub async fn run(mut gw: crate::Gateway, tenant: String, a: SearchArgs) -> anyhow::Result<()> {
    let request = SearchRequest {
        tenant,
        query: a.query,
        top_k: a.top_k,
        mode: match a.mode {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Vector => SearchMode::Vector,
            Mode::Text => SearchMode::Text,
        } as i32,
        fusion: Some(a.fusion.to_proto(a.rrf_k)),
        filter: crate::filter::filter(&a.filter).map_err(anyhow::Error::msg)?,
        chunk_level: a.chunks,
        bypass_cache: a.bypass_cache,
        explain: a.explain,
        page_size: a.page_size,
        page_token: a.page_token,
        min_score: a.min_score,
        min_vector_score: a.min_vector_score,
        min_text_score: a.min_text_score,
        why: a.why.as_deref().map(why_request),
    };
    let response = gw.search(request).await?.into_inner();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json(&response))?);
    } else {
        print(&response);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Method {
    Rrf,
    Linear,
    Dbsf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Normalization {
    MinMax,
    ZScore,
    Rank,
}

/// Fusion options of `braidctl search` (unset: the gateway's defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct FusionArgs {
    /// Fusion method (every fused score is in [0, 1]).
    #[arg(long)]
    fusion: Option<Method>,
    /// Score normalisation of linear fusion.
    #[arg(long)]
    normalization: Option<Normalization>,
    /// Weight of the vector leg (0..=100; the legs' weights count as shares of their sum).
    #[arg(long)]
    vector_weight: Option<f32>,
    /// Weight of the text leg (0..=100; the legs' weights count as shares of their sum).
    #[arg(long)]
    text_weight: Option<f32>,
    /// Hits the vector leg returns to fusion (0: server default).
    #[arg(long, default_value_t = 0)]
    vector_candidates: u32,
    /// Hits the text leg returns to fusion (0: server default).
    #[arg(long, default_value_t = 0)]
    text_candidates: u32,
    /// HNSW ef_search of the vector leg for this query (0: server default, at most 1000).
    #[arg(long, default_value_t = 0)]
    ef_search: u32,
    /// Choose the legs' weights for this query from its length and each leg's top-1 margin
    /// (adaptive weighting; unset: the gateway's `search.adaptive.enabled`).
    #[arg(long)]
    adaptive: bool,
    /// Fixed weights for this query even when the gateway's default is adaptive weighting.
    #[arg(long, conflicts_with = "adaptive")]
    no_adaptive: bool,
    /// Adaptive weighting: log-odds of the text leg's share per standard deviation of top-1
    /// margin it has over the vector leg (-10..=10).
    #[arg(long, allow_hyphen_values = true)]
    margin_slope: Option<f32>,
    /// Adaptive weighting: log-odds of the text leg's share per unit of ln(terms / pivot)
    /// (-10..=10).
    #[arg(long, allow_hyphen_values = true)]
    length_slope: Option<f32>,
    /// Adaptive weighting: the query length (distinct terms) that moves nothing (1..=32).
    #[arg(long)]
    pivot_terms: Option<u32>,
}

impl FusionArgs {
    pub fn to_proto(&self, rrf_k: u32) -> FusionParams {
        FusionParams {
            rrf_k,
            vector_weight: self.vector_weight,
            text_weight: self.text_weight,
            method: match self.fusion {
                None => FusionMethod::Unspecified,
                Some(Method::Rrf) => FusionMethod::Rrf,
                Some(Method::Linear) => FusionMethod::Linear,
                Some(Method::Dbsf) => FusionMethod::Dbsf,
            } as i32,
            normalization: match self.normalization {
                None => ScoreNormalization::Unspecified,
                Some(Normalization::MinMax) => ScoreNormalization::MinMax,
                Some(Normalization::ZScore) => ScoreNormalization::ZScore,
                Some(Normalization::Rank) => ScoreNormalization::Rank,
            } as i32,
            vector_candidates: self.vector_candidates,
            text_candidates: self.text_candidates,
            ef_search: self.ef_search,
            adaptive: self.adaptive_proto(),
        }
    }

    /// `fusion.adaptive`, when a flag sets any of it.
    fn adaptive_proto(&self) -> Option<AdaptiveFusion> {
        let a = AdaptiveFusion {
            enabled: match (self.adaptive, self.no_adaptive) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            margin_slope: self.margin_slope,
            length_slope: self.length_slope,
            pivot_terms: self.pivot_terms,
        };
        (a != AdaptiveFusion::default()).then_some(a)
    }
}

fn adaptive_json(a: &AdaptiveWeights) -> serde_json::Value {
    serde_json::json!({
        "base_vector_weight": a.base_vector_weight,
        "base_text_weight": a.base_text_weight,
        "vector_weight": a.vector_weight,
        "text_weight": a.text_weight,
        "query_terms": a.query_terms,
        "text_margin": a.text_margin,
        "vector_margin": a.vector_margin,
        "margin_slope": a.margin_slope,
        "length_slope": a.length_slope,
        "pivot_terms": a.pivot_terms,
    })
}

/// One line: the weights adaptive weighting gave the query, and from what.
pub fn adaptive_line(a: &AdaptiveWeights) -> String {
    let factor = if a.base_text_weight > 0.0 {
        format!(" (x{:.3})", a.text_weight / a.base_text_weight)
    } else {
        String::new()
    };
    format!(
        "       adaptive weights: vector {:.3}, text {:.3} -> {:.3}{factor}: text margin {:.3} vs \
         vector {:.3} (slope {}), {} terms vs pivot {} (slope {})",
        a.vector_weight,
        a.base_text_weight,
        a.text_weight,
        a.text_margin,
        a.vector_margin,
        a.margin_slope,
        a.query_terms,
        a.pivot_terms,
        a.length_slope
    )
}

fn explanation_json(e: &HitExplanation) -> serde_json::Value {
    serde_json::json!({
        "method": method_name(e),
        "score_formula": e.score_formula,
        "adaptive": e.adaptive.as_ref().map(adaptive_json),
        "legs": e.legs.iter().map(|l| serde_json::json!({
            "leg": l.leg,
            "raw_score": l.raw_score,
            "normalized_score": l.normalized_score,
            "rank": l.rank,
            "weight": l.weight,
            "contribution": l.contribution,
            "chunk_id": l.chunk_id,
        })).collect::<Vec<_>>(),
    })
}

/// "RRF", "LINEAR (MIN_MAX)", "DBSF", or "single leg".
fn method_name(e: &HitExplanation) -> String {
    let normalization = ScoreNormalization::try_from(e.normalization)
        .map(|n| n.as_str_name().trim_start_matches("SCORE_NORMALIZATION_"))
        .unwrap_or("?");
    match FusionMethod::try_from(e.method) {
        Ok(FusionMethod::Rrf) => "RRF".into(),
        Ok(FusionMethod::Linear) => format!("LINEAR ({normalization})"),
        Ok(FusionMethod::Dbsf) => "DBSF (mean +- 3 std)".into(),
        Ok(FusionMethod::Unspecified) => "single leg (raw score)".into(),
        Err(_) => format!("unknown method {}", e.method),
    }
}

fn passage_json(p: &VectorPassage) -> serde_json::Value {
    serde_json::json!({
        "chunk_id": p.chunk_id,
        "ordinal": p.ordinal,
        "chunk_text": p.chunk_text,
        "start": p.start,
        "end": p.end,
        "passage": p.chunk_text.get(p.start as usize..p.end as usize).unwrap_or_default(),
        "highlighted": p.highlighted,
        "matched_terms": p.matched_terms,
        "score": p.score,
    })
}

/// One line: the vector leg's matched chunk and its best passage (query terms in `*…*`).
pub fn passage_line(p: &VectorPassage) -> String {
    let marked = p.highlighted.replace("<b>", "*").replace("</b>", "*");
    let marked = marked
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let marked: String = marked.split_whitespace().collect::<Vec<_>>().join(" ");
    let marked: String = marked.chars().take(200).collect();
    let note = if p.matched_terms == 0 {
        " (no query term; first sentence)"
    } else {
        ""
    };
    format!(
        "       vector passage [{} #{}, {:.3}]{note}: {marked}",
        p.chunk_id, p.ordinal, p.score
    )
}

pub fn json(r: &SearchResponse) -> serde_json::Value {
    serde_json::json!({
        "hits": r.hits.iter().map(|h| {
            let mut hit = serde_json::json!({
                "document_id": h.document_id,
                "external_id": h.external_id,
                "title": h.title,
                "chunk_id": h.chunk_id,
                "score": h.score,
                "vector_score": h.vector_score,
                "vector_rank": h.vector_rank,
                "text_score": h.text_score,
                "text_rank": h.text_rank,
                "snippet": h.snippet,
            });
            if let Some(e) = &h.explanation {
                hit["explanation"] = explanation_json(e);
            }
            if let Some(p) = &h.vector_passage {
                hit["vector_passage"] = passage_json(p);
            }
            hit
        }).collect::<Vec<_>>(),
        "degraded": r.degraded,
        "degraded_reasons": r.degraded_reasons,
        "took_ms": r.took_ms,
        "next_page_token": r.next_page_token,
        "why": r.why.as_ref().map(why_json),
    })
}

/// The per-leg table of one hit's explanation.
pub fn explanation_table(e: &HitExplanation, score: f32) -> String {
    // A gateway older than `score_formula` always summed.
    let formula = match e.score_formula.strip_prefix("score = ") {
        Some(f) if !f.is_empty() => f,
        _ => "sum of contributions",
    };
    let mut out = format!(
        "       {}: score {score:.6} = {formula}\n       {:<6}  {:>5}  {:>10}  {:>10}  {:>6}  {:>12}  chunk\n",
        method_name(e),
        "leg",
        "rank",
        "raw",
        "normalised",
        "weight",
        "contribution"
    );
    if let Some(a) = &e.adaptive {
        out.push_str(&adaptive_line(a));
        out.push('\n');
    }
    for l in &e.legs {
        out.push_str(&format!(
            "       {:<6}  {:>5}  {:>10.4}  {:>10.6}  {:>6.2}  {:>12.6}  {}\n",
            l.leg, l.rank, l.raw_score, l.normalized_score, l.weight, l.contribution, l.chunk_id
        ));
    }
    out
}

fn why_json(w: &DocumentWhy) -> serde_json::Value {
    let legs: Vec<serde_json::Value> = w
        .legs
        .iter()
        .map(|l| {
            serde_json::json!({
                "leg": l.leg,
                "returned": l.returned,
                "rank": l.rank,
                "score": l.score,
                "candidates": l.candidates,
                "hits": l.hits,
                "note": l.note,
            })
        })
        .collect();
    serde_json::json!({
        "found": w.found,
        "document_id": w.document_id,
        "external_id": w.external_id,
        "failed_filter_clauses": w.failed_filter_clauses,
        "legs": legs,
        "fused_rank": w.fused_rank,
        "fused_score": w.fused_score,
        "explanation": w.explanation.as_ref().map(explanation_json),
        "returned": w.returned,
        "reasons": w.reasons,
    })
}

/// `--why` in words: one line per leg and per reason.
pub fn why_text(w: &DocumentWhy) -> String {
    if !w.found {
        return "why: no such document (or one you may not read)\n".to_string();
    }
    let mut out = format!("why {} [{}]:\n", w.external_id, w.document_id);
    for l in &w.legs {
        out.push_str(&format!("  {} leg: {}\n", l.leg, l.note));
    }
    if w.fused_rank > 0 {
        out.push_str(&format!(
            "  fused: rank {}, score {:.4}\n",
            w.fused_rank, w.fused_score
        ));
    }
    if let Some(e) = &w.explanation {
        out.push_str(&explanation_table(e, w.fused_score));
    }
    for r in &w.reasons {
        out.push_str(&format!("  - {r}\n"));
    }
    out
}

pub fn print(r: &SearchResponse) {
    print_hits(r);
    if let Some(w) = &r.why {
        print!("{}", why_text(w));
    }
}

fn print_hits(r: &SearchResponse) {
    if r.degraded {
        println!("DEGRADED: {}", r.degraded_reasons.join("; "));
    }
    if r.hits.is_empty() {
        println!("no hits ({} ms)", r.took_ms);
        return;
    }
    for (i, h) in r.hits.iter().enumerate() {
        let leg = |score: Option<f32>, rank: Option<u32>| match (score, rank) {
            (Some(s), Some(r)) => format!("{s:.3} (#{r})"),
            _ => "-".to_string(),
        };
        println!(
            "{:>3}. {:.4}  {}  [{}]   vector {}  text {}",
            i + 1,
            h.score,
            if h.title.is_empty() {
                "(untitled)"
            } else {
                &h.title
            },
            h.external_id,
            leg(h.vector_score, h.vector_rank),
            leg(h.text_score, h.text_rank),
        );
        let excerpt = if h.snippet.is_empty() {
            &h.text
        } else {
            &h.snippet
        };
        let excerpt: String = excerpt.split_whitespace().collect::<Vec<_>>().join(" ");
        let excerpt: String = excerpt.chars().take(160).collect();
        println!("       {excerpt}");
        if let Some(p) = &h.vector_passage {
            println!("{}", passage_line(p));
        }
        if let Some(e) = &h.explanation {
            print!("{}", explanation_table(e, h.score));
        }
    }
    println!("{} hits in {} ms", r.hits.len(), r.took_ms);
    if !r.next_page_token.is_empty() {
        println!("next page: --page-token {}", r.next_page_token);
    }
}

#[cfg(test)]
mod tests {
    use braid_proto::v1::LegExplanation;

    use super::*;

    #[test]
    fn explanation_table_lists_every_leg() {
        let e = HitExplanation {
            method: FusionMethod::Linear as i32,
            normalization: ScoreNormalization::ZScore as i32,
            legs: vec![
                LegExplanation {
                    leg: "vector".into(),
                    raw_score: 0.81,
                    normalized_score: 1.2,
                    rank: 1,
                    weight: 0.5,
                    contribution: 0.6,
                    chunk_id: "d:0".into(),
                },
                LegExplanation {
                    leg: "text".into(),
                    raw_score: 12.5,
                    normalized_score: 0.4,
                    rank: 3,
                    weight: 1.0,
                    contribution: 0.4,
                    chunk_id: "d:2".into(),
                },
            ],
            score_formula: "score = Phi(sum of contributions), Phi the standard normal \
                            distribution function"
                .into(),
            adaptive: None,
        };
        let table = explanation_table(&e, 0.84);
        assert!(table.contains("LINEAR (Z_SCORE)"), "{table}");
        assert!(
            table.contains("score 0.840000 = Phi(sum of contributions)"),
            "{table}"
        );
        let older = HitExplanation {
            score_formula: String::new(),
            ..e.clone()
        };
        assert!(explanation_table(&older, 0.5).contains("= sum of contributions"));
        assert!(table.contains("vector") && table.contains("d:0"), "{table}");
        assert!(table.contains("text") && table.contains("12.5000") && table.contains("d:2"));
        assert_eq!(table.lines().count(), 4, "{table}");
        let adapted = HitExplanation {
            adaptive: Some(AdaptiveWeights {
                base_vector_weight: 1.0,
                base_text_weight: 0.75,
                vector_weight: 1.0,
                text_weight: 1.5,
                query_terms: 3,
                text_margin: 1.25,
                vector_margin: 0.5,
                margin_slope: 0.5,
                length_slope: -0.5,
                pivot_terms: 9,
            }),
            ..e
        };
        let table = explanation_table(&adapted, 0.84);
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(
            table.contains("adaptive weights: vector 1.000, text 0.750 -> 1.500 (x2.000)")
                && table.contains("3 terms vs pivot 9"),
            "{table}"
        );
        assert_eq!(
            explanation_json(&adapted)["adaptive"]["text_weight"],
            serde_json::json!(1.5)
        );
    }

    #[test]
    fn passage_line_marks_terms_and_flags_a_fallback() {
        let mut p = VectorPassage {
            chunk_id: "d:1".into(),
            ordinal: 1,
            chunk_text: "Bees make honey. Fish &amp; chips.".into(),
            start: 0,
            end: 16,
            highlighted: "<b>Bees</b> make <b>honey</b> &amp; more.".into(),
            matched_terms: 2,
            score: 0.8123,
        };
        let line = passage_line(&p);
        assert!(
            line.contains("[d:1 #1, 0.812]: *Bees* make *honey* & more."),
            "{line}"
        );
        p.matched_terms = 0;
        assert!(passage_line(&p).contains("no query term"));
        let json = passage_json(&p);
        assert_eq!(json["passage"], "Bees make honey.");
    }
}
