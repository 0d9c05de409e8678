//! `braid-bench eval-int8` (part of `make eval`): what the int8 graph costs in retrieval
//! quality. Both graphs embed the same chunks of the whole corpus and the judged test
//! queries; an exact cosine search ranks documents by their best chunk; nDCG@10 and
//! Recall@10/100 of each, and the loss. Exact search and identical chunks isolate the model:
//! no HNSW approximation or fusion in between. Also reported: how close the int8 vectors are
//! to fp32's (cosine per chunk), and how fast each graph embedded the corpus. A third row,
//! int8 queries against fp32 chunks, is `model.query_quantized`: the query model runs the
//! int8 graph while documents keep fp32. `--docs N` embeds a sample instead of the whole
//! corpus (every judged document plus the first N others, in corpus order): faster on a
//! busy machine, easier to rank than the full corpus, so only its losses compare.

use std::path::Path;
use std::time::Instant;

use braid_embedding::{Model, ModelOptions};
use braid_tests::model_dir;

use crate::eval::{judged_queries, ndcg_at, recall_at};
use crate::measure::{LoadSamples, cores};

/// Words per chunk and overlap: ≈ 200 and 40 tokens, like the ingest default.
const CHUNK_WORDS: usize = 120;
const OVERLAP_WORDS: usize = 25;
/// The bound on the nDCG@10 loss.
const MAX_LOSS: f64 = 0.005;

/// (document id, text) chunks of the corpus: title + a window of the body; with `sample`,
/// of the judged documents and the first `sample` others only.
fn chunks(
    dataset: &Path,
    sample: Option<usize>,
    judged: &std::collections::HashSet<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let docs = crate::read_corpus(&dataset.join("corpus.jsonl"), usize::MAX)?;
    let mut out = Vec::new();
    let mut others = 0;
    for d in docs {
        if let Some(n) = sample
            && !judged.contains(d.external_id.as_str())
        {
            if others >= n {
                continue;
            }
            others += 1;
        }
        let words: Vec<&str> = d.content.split_whitespace().collect();
        let mut start = 0;
        loop {
            let end = (start + CHUNK_WORDS).min(words.len());
            let body = words[start..end].join(" ");
            let text = if d.title.is_empty() {
                body
            } else {
                format!("{}\n{body}", d.title)
            };
            out.push((d.external_id.clone(), text));
            if end == words.len() {
                break;
            }
            start = end - OVERLAP_WORDS;
        }
    }
    Ok(out)
}

struct Embedded {
    chunks: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
    seconds: f64,
}

/// Embeds every chunk (length-sorted batches of 16, all cores) and every query.
fn embed_all(quantized: bool, chunks: &[&str], queries: &[&str]) -> anyhow::Result<Embedded> {
    let mut model = Model::load(
        &model_dir(),
        ModelOptions {
            quantized,
            ..crate::model_options()
        },
    )?;
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    order.sort_by_key(|&i| chunks[i].len());
    let mut vectors = vec![Vec::new(); chunks.len()];
    let started = Instant::now();
    for batch in order.chunks(16) {
        let texts: Vec<&str> = batch.iter().map(|&i| chunks[i]).collect();
        for (&i, v) in batch.iter().zip(model.embed(&texts)?) {
            vectors[i] = v;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut query_vectors = Vec::with_capacity(queries.len());
    for q in queries {
        query_vectors.extend(model.embed(&[q])?);
    }
    Ok(Embedded {
        chunks: vectors,
        queries: query_vectors,
        seconds,
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Documents by their best chunk's cosine, best first (the top 100).
fn rank(query: &[f32], chunks: &[Vec<f32>], docs: &[String]) -> Vec<String> {
    let mut best: std::collections::HashMap<&str, f32> = std::collections::HashMap::new();
    for (v, doc) in chunks.iter().zip(docs) {
        let s = dot(query, v);
        let e = best.entry(doc.as_str()).or_insert(f32::MIN);
        if s > *e {
            *e = s;
        }
    }
    let mut ranked: Vec<(&str, f32)> = best.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(100)
        .map(|(d, _)| d.to_string())
        .collect()
}

pub async fn run(dataset: &Path, out: Option<&Path>, sample: Option<usize>) -> anyhow::Result<()> {
    anyhow::ensure!(
        model_dir().join("model.int8.onnx").is_file(),
        "no model.int8.onnx in {} (run `make setup`)",
        model_dir().display()
    );
    let (qrels, queries) = judged_queries(dataset)?;
    let judged: std::collections::HashSet<&str> = qrels
        .values()
        .flat_map(|docs| docs.keys().map(String::as_str))
        .collect();
    let chunks = chunks(dataset, sample, &judged)?;
    let n_docs = chunks
        .iter()
        .map(|(d, _)| d.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    eprintln!(
        "braid-bench: eval-int8: {} chunks of {n_docs} documents, {} judged queries",
        chunks.len(),
        queries.len()
    );
    let mut load = LoadSamples::default();
    load.sample();
    let (docs, texts): (Vec<String>, Vec<String>) = chunks.into_iter().unzip();
    let query_texts: Vec<String> = queries.iter().map(|(_, t)| t.clone()).collect();
    let (fp32, int8) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let chunk_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let query_refs: Vec<&str> = query_texts.iter().map(String::as_str).collect();
        let fp32 = embed_all(false, &chunk_refs, &query_refs)?;
        eprintln!(
            "braid-bench: eval-int8: fp32 corpus in {:.1} s",
            fp32.seconds
        );
        let int8 = embed_all(true, &chunk_refs, &query_refs)?;
        eprintln!(
            "braid-bench: eval-int8: int8 corpus in {:.1} s",
            int8.seconds
        );
        Ok((fp32, int8))
    })
    .await??;
    load.sample();

    // Query vectors from one graph against chunk vectors from another (or the same).
    let score = |query_vectors: &[Vec<f32>], chunk_vectors: &[Vec<f32>]| {
        let (mut ndcg, mut r10, mut r100) = (0.0, 0.0, 0.0);
        for ((id, _), q) in queries.iter().zip(query_vectors) {
            let ranked = rank(q, chunk_vectors, &docs);
            ndcg += ndcg_at(&ranked, &qrels[id], 10);
            r10 += recall_at(&ranked, &qrels[id], 10);
            r100 += recall_at(&ranked, &qrels[id], 100);
        }
        let n = queries.len().max(1) as f64;
        (ndcg / n, r10 / n, r100 / n)
    };
    let (f_ndcg, f_r10, f_r100) = score(&fp32.queries, &fp32.chunks);
    let (i_ndcg, i_r10, i_r100) = score(&int8.queries, &int8.chunks);
    let (q_ndcg, q_r10, q_r100) = score(&int8.queries, &fp32.chunks);
    let cosines: Vec<f32> = fp32
        .chunks
        .iter()
        .zip(&int8.chunks)
        .chain(fp32.queries.iter().zip(&int8.queries))
        .map(|(a, b)| dot(a, b))
        .collect();
    let min_cos = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let mean_cos = cosines.iter().map(|&c| f64::from(c)).sum::<f64>() / cosines.len() as f64;
    let verdict = |loss: f64| {
        if loss <= MAX_LOSS {
            format!("within the {MAX_LOSS} bound")
        } else {
            format!("**over** the {MAX_LOSS} bound")
        }
    };
    let loss = f_ndcg - i_ndcg;
    let query_loss = f_ndcg - q_ndcg;
    let (verdict, query_verdict) = (verdict(loss), verdict(query_loss));
    let n_chunks = docs.len();
    let corpus = match sample {
        None => format!("the same {n_chunks} chunks of the whole corpus"),
        Some(n) => format!(
            "the same {n_chunks} chunks of a sample of {n_docs} documents (`--docs {n}`: every judged document and the first {n} others; easier to rank than the whole corpus, so compare the losses, not the absolute figures)"
        ),
    };
    let flags = sample.map_or(String::new(), |n| format!(" --docs {n}"));
    let report = format!(
        "<!-- bench:eval-int8 -->\n\
## Retrieval quality of the int8 model (SciFact test split)\n\n\
Command: `make eval` (`braid-bench eval-int8 --dataset ../shared/eval/scifact{flags}`): fp32 (`model.onnx`) and int8 (`model.int8.onnx`, `model.quantized = true`) each embed {corpus} (title + windows of {CHUNK_WORDS} words, {OVERLAP_WORDS} overlap) and the {} judged test queries; exact cosine search, documents ranked by their best chunk. Exact search isolates the model (no HNSW, no fusion), so the absolute figures differ a little from the vector leg above. {cores} cores; {load}.\n\n\
| model | nDCG@10 | Recall@10 | Recall@100 | corpus embedded in (one copy, all cores, batches of 16) |\n| --- | --- | --- | --- | --- |\n\
| fp32 | **{f_ndcg:.4}** | {f_r10:.4} | {f_r100:.4} | {:.0} s |\n\
| int8 | **{i_ndcg:.4}** | {i_r10:.4} | {i_r100:.4} | {:.0} s |\n\
| int8 queries, fp32 documents (`model.query_quantized = true`) | **{q_ndcg:.4}** | {q_r10:.4} | {q_r100:.4} | (fp32's) |\n\n\
nDCG@10 loss of int8: **{loss:.4}** ({verdict}); of int8 queries against fp32 documents: **{query_loss:.4}** ({query_verdict}). Cosine between each text's int8 and fp32 vectors: mean {mean_cos:.4}, lowest {min_cos:.4}.\n\
<!-- /bench:eval-int8 -->\n",
        queries.len(),
        fp32.seconds,
        int8.seconds,
        cores = cores(),
        load = load.show(),
    );
    println!("{report}");
    if let Some(out) = out {
        crate::write_section(out, "eval-int8", &report)?;
        eprintln!("braid-bench: wrote {}", out.display());
    }
    Ok(())
}
