//! Offline quality of the BM25 leg alone on BEIR SciFact, in seconds and without embeddings:
//! builds a Tantivy index from the corpus with the service's own schema, analysis and
//! scoring code (documents chunked into ~100-word pieces, as in `bm25_cost`), runs the test
//! queries and prints nDCG@10, Recall@10 and Recall@100 for the whole test split and for its
//! two halves: `dev` (the first 150 queries of `qrels/test.tsv` in file order, the half used
//! to choose settings) and `held-out` (the other 150, never used to choose anything).
//!
//! `cargo run --release -p braid-text-search --example bm25_eval -- [scifact dir] [title_boost] [k1] [b]`

use std::collections::{HashMap, HashSet};

mod scifact;

use braid_text_search::{IndexConfig, SearchConfig, TantivyIndex, TextIndex, TextQuery};

/// `(query id -> relevant doc ids with gains)`, and the query ids in file order.
type Qrels = (HashMap<String, HashMap<String, f64>>, Vec<String>);

fn qrels(path: &std::path::Path) -> anyhow::Result<Qrels> {
    let mut judged: HashMap<String, HashMap<String, f64>> = HashMap::new();
    let mut order = Vec::new();
    for line in std::fs::read_to_string(path)?.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 3 {
            continue;
        }
        if !judged.contains_key(cols[0]) {
            order.push(cols[0].to_string());
        }
        judged
            .entry(cols[0].to_string())
            .or_default()
            .insert(cols[1].to_string(), cols[2].trim().parse()?);
    }
    Ok((judged, order))
}

fn ndcg_at(ranked: &[String], relevant: &HashMap<String, f64>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| relevant.get(d).copied().unwrap_or(0.0) / ((i + 2) as f64).log2())
        .sum();
    let mut gains: Vec<f64> = relevant.values().copied().collect();
    gains.sort_by(|a, b| b.total_cmp(a));
    let ideal: f64 = gains
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / ((i + 2) as f64).log2())
        .sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

fn recall_at(ranked: &[String], relevant: &HashMap<String, f64>, k: usize) -> f64 {
    let wanted: HashSet<&String> = relevant
        .iter()
        .filter(|(_, g)| **g > 0.0)
        .map(|(d, _)| d)
        .collect();
    if wanted.is_empty() {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|d| wanted.contains(d)).count();
    found as f64 / wanted.len() as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("../shared/eval/scifact", |s| s));
    let mut search = SearchConfig::default();
    if let Some(v) = args.get(2) {
        search.title_boost = v.parse()?;
    }
    if let Some(v) = args.get(3) {
        search.bm25_k1 = v.parse()?;
    }
    if let Some(v) = args.get(4) {
        search.bm25_b = v.parse()?;
    }

    let tmp = tempfile::tempdir()?;
    let config = IndexConfig {
        dir: tmp.path().to_path_buf(),
        writer_memory_mb: 64,
        writer_threads: 1,
        ..IndexConfig::default()
    };
    let index = TantivyIndex::open(&config, &search)?;
    let corpus = scifact::lines(&dir.join("corpus.jsonl"))?;
    for batch in corpus.chunks(256) {
        let writes = batch.iter().map(|d| {
            let (id, chunks) = scifact::chunks(d);
            let index = index.clone();
            async move { index.replace_document("default", &id, chunks).await }
        });
        for r in futures::future::join_all(writes.collect::<Vec<_>>()).await {
            r?;
        }
    }
    let texts: HashMap<String, String> = scifact::lines(&dir.join("queries.jsonl"))?
        .iter()
        .filter_map(|q| Some((q["_id"].as_str()?.into(), q["text"].as_str()?.into())))
        .collect();
    let (judged, order) = qrels(&dir.join("qrels/test.tsv"))?;
    let mut rows: Vec<(String, [f64; 3])> = Vec::new();
    for qid in &order {
        let Some(text) = texts.get(qid) else { continue };
        let hits = index
            .search(TextQuery {
                tenant: "default".into(),
                query: text.clone(),
                top_k: 100,
                filter: Default::default(),
                min_score: None,
                access: braid_core::auth::Access::unrestricted(),
                detail: 10,
                chunk_level: false,
            })
            .await?;
        let mut seen = HashSet::new();
        let ranked: Vec<String> = hits
            .into_iter()
            .map(|h| h.external_id)
            .filter(|d| seen.insert(d.clone()))
            .collect();
        let rel = &judged[qid];
        rows.push((
            qid.clone(),
            [
                ndcg_at(&ranked, rel, 10),
                recall_at(&ranked, rel, 10),
                recall_at(&ranked, rel, 100),
            ],
        ));
    }
    let half = rows.len() / 2;
    println!(
        "title_boost {} k1 {} b {}",
        search.title_boost, search.bm25_k1, search.bm25_b
    );
    for (name, part) in [
        ("all", &rows[..]),
        ("dev", &rows[..half]),
        ("held-out", &rows[half..]),
    ] {
        let n = part.len().max(1) as f64;
        let mean = |i: usize| part.iter().map(|(_, m)| m[i]).sum::<f64>() / n;
        println!(
            "{name:>9} ({:>3} queries): nDCG@10 {:.4}  Recall@10 {:.4}  Recall@100 {:.4}",
            part.len(),
            mean(0),
            mean(1),
            mean(2)
        );
    }
    Ok(())
}
