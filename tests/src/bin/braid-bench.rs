//! `braid-bench`: end-to-end benchmarks on the real stack (all five services in-process,
//! real PostgreSQL + pgvector, Tantivy and model), writing Markdown into BENCHMARKS.md.
//!
//! `ingest`: streams a slice of a BEIR corpus through the gateway, times it until every
//! document is READY in both legs, then times the embedding model alone on exactly the chunks
//! the pipeline stored (batches of 64, sorted by length: the model's best case), and breaks the
//! pipeline's time down with the services' own Prometheus metrics.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use braid_tests::v1::{DocumentInput, DocumentStatus, IngestStreamRequest, WaitIndexedRequest};
use braid_tests::{Stack, StackOptions, http_get, model_dir};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest throughput of a BEIR corpus, against the embedding model alone.
    Ingest {
        #[arg(long)]
        corpus: PathBuf,
        /// Documents to ingest (the first N of the corpus).
        #[arg(long, default_value_t = 300)]
        limit: usize,
        /// Markdown file to write the results into (section replaced in place).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(serde::Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

fn read_corpus(path: &Path, limit: usize) -> anyhow::Result<Vec<DocumentInput>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut docs = Vec::new();
    for line in std::io::BufReader::new(file).lines().take(limit) {
        let d: BeirDoc = serde_json::from_str(&line?)?;
        docs.push(DocumentInput {
            external_id: d.id,
            title: d.title,
            content: d.text,
            mime_type: "text/plain".into(),
            metadata: Default::default(),
        });
    }
    Ok(docs)
}

/// Sum of a Prometheus sample over every series whose line contains all `filters`.
fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    Ok(http_get(addr, "/metrics").await?.1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest { corpus, limit, out } => ingest(&corpus, limit, out.as_deref()).await,
    }
}

async fn ingest(corpus: &Path, limit: usize, out: Option<&Path>) -> anyhow::Result<()> {
    let docs = read_corpus(corpus, limit)?;
    let n_docs = docs.len();
    eprintln!("braid-bench: {n_docs} documents from {}", corpus.display());
    let stack = Stack::start_with(StackOptions::default()).await?;
    let mut gw = stack.gateway_client().await?;

    // Pipeline: stream in, then wait for READY in both legs.
    let started = Instant::now();
    let outbound = tokio_stream::iter(docs.into_iter().map(|d| IngestStreamRequest {
        tenant: "bench".into(),
        document: Some(d),
    }));
    let mut results = gw.ingest_stream(outbound).await?.into_inner();
    let mut ids = Vec::with_capacity(n_docs);
    while let Some(r) = results.message().await? {
        anyhow::ensure!(r.error.is_empty(), "rejected: {}", r.error);
        ids.push(r.document_id);
    }
    let accepted = started.elapsed();
    for group in ids.chunks(1000) {
        let mut pending = group.to_vec();
        while !pending.is_empty() {
            let r = gw
                .wait_indexed(WaitIndexedRequest {
                    tenant: "bench".into(),
                    document_ids: pending.clone(),
                    timeout_ms: 20_000,
                })
                .await?
                .into_inner();
            pending = r
                .results
                .into_iter()
                .filter(|r| r.status != DocumentStatus::Ready as i32)
                .inspect(|r| {
                    if r.status == DocumentStatus::Failed as i32
                        || r.status == DocumentStatus::Partial as i32
                    {
                        eprintln!("braid-bench: {} ended {:?}", r.external_id, r.status);
                    }
                })
                .map(|r| r.document_id)
                .collect();
        }
    }
    let pipeline = started.elapsed();
    eprintln!("braid-bench: pipeline done in {pipeline:.1?}");

    // Where the time went, from the services' own metrics.
    let emb = metrics(stack.embedding.admin).await?;
    let vec_m = metrics(stack.vector.admin).await?;
    let txt_m = metrics(stack.text.admin).await?;
    let model_secs = metric_sum(&emb, "braid_embedding_batch_duration_seconds_sum", &[]);
    let batches = metric_sum(&emb, "braid_embedding_batch_duration_seconds_count", &[]);
    let batch_texts = metric_sum(&emb, "braid_embedding_batch_size_sum", &[]);
    let vector_secs = metric_sum(
        &vec_m,
        "braid_grpc_request_duration_seconds_sum",
        &["ReplaceDocument"],
    );
    let text_secs = metric_sum(
        &txt_m,
        "braid_grpc_request_duration_seconds_sum",
        &["ReplaceDocument"],
    );

    // The same chunks, as the pipeline embedded them (title + chunk), through the model alone.
    let db = stack.db().await?;
    let mut texts: Vec<String> = sqlx::query_scalar(
        "SELECT CASE WHEN d.title = '' THEN c.body ELSE d.title || E'\\n' || c.body END \
         FROM ingest.chunks c JOIN ingest.documents d ON d.id = c.document_id",
    )
    .fetch_all(&db)
    .await?;
    let n_chunks = texts.len();
    stack.shutdown().await?;
    texts.sort_by_key(|t| t.len());
    let model = braid_embedding::Model::load(&model_dir(), 256)?;
    let texts_ref: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut alone_by_batch = Vec::new();
    for batch_size in [8usize, 64] {
        let started = Instant::now();
        for batch in texts_ref.chunks(batch_size) {
            model.embed(batch)?;
        }
        let took = started.elapsed();
        eprintln!(
            "braid-bench: model alone, batches of {batch_size}: {took:.1?} for {n_chunks} chunks"
        );
        alone_by_batch.push((batch_size, took));
    }
    let (best_batch, alone) = *alone_by_batch
        .iter()
        .min_by_key(|(_, d)| *d)
        .expect("two runs");

    let secs = |d: Duration| d.as_secs_f64();
    let overhead = (secs(pipeline) / secs(alone) - 1.0) * 100.0;
    let over_own_model = (secs(pipeline) / model_secs - 1.0) * 100.0;
    let alone_rows: String = alone_by_batch
        .iter()
        .map(|(b, d)| format!("| embedding model alone, same chunks, batches of {b} (length-sorted) | {:.1} s ({:.1} chunks/s) |\n", secs(*d), n_chunks as f64 / secs(*d)))
        .collect();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let report = format!(
        "<!-- bench:ingest -->\n\
## Ingest throughput (SciFact slice, both legs)\n\n\
Command: `make bench` (BENCH_DOCS={n_docs}): `braid-bench ingest --corpus ../shared/eval/scifact/corpus.jsonl --limit {n_docs}`\n\
Machine: {cores} cores, {cpu}; release build; all five services in one process, real PostgreSQL 18 + pgvector, Tantivy, all-MiniLM-L6-v2 on CPU (candle).\n\n\
| measure | value |\n| --- | --- |\n\
| documents | {n_docs} |\n\
| chunks (≤ 200 tokens, 40 overlap) | {n_chunks} |\n\
| all accepted (streamed, stored, jobs queued) | {:.1} s |\n\
| all READY in both legs | {:.1} s |\n\
| pipeline throughput | {:.1} documents/s, {:.1} chunks/s |\n\
{alone_rows}\
| **pipeline time over the model alone** (best batch size, {best_batch}) | **{overhead:+.1}%** |\n\
| pipeline wall time over its own model forward passes | {over_own_model:+.1}% |\n\n\
Where the pipeline's time went (service-side sums; legs overlap with embedding, so they do not add up to the wall time):\n\n\
| part | seconds | notes |\n| --- | --- | --- |\n\
| model forward passes (embedding service) | {model_secs:.1} | {batches:.0} batches, {:.1} texts per batch on average |\n\
| vector upserts (vector-search ReplaceDocument) | {vector_secs:.1} | one transaction per document |\n\
| text indexing (text-search ReplaceDocument) | {text_secs:.1} | one Tantivy commit per document |\n\
<!-- /bench:ingest -->\n",
        secs(accepted),
        secs(pipeline),
        n_docs as f64 / secs(pipeline),
        n_chunks as f64 / secs(pipeline),
        if batches > 0.0 {
            batch_texts / batches
        } else {
            0.0
        },
    );
    println!("{report}");
    if let Some(out) = out {
        write_section(out, &report)?;
        eprintln!("braid-bench: wrote {}", out.display());
    }
    Ok(())
}

/// Replaces the `<!-- bench:ingest -->` section of `path` (or appends it).
fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".to_string());
    let (start, end) = ("<!-- bench:ingest -->", "<!-- /bench:ingest -->\n");
    let updated = match (current.find(start), current.find(end)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{}{}", &current[..s], section, &current[e + end.len()..])
        }
        _ => format!("{}\n\n{}", current.trim_end_matches('\n'), section),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
