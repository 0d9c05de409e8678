//! `braid-bench`: end-to-end benchmarks on the real stack (all five services in-process,
//! real PostgreSQL + pgvector, Tantivy and model), writing Markdown into BENCHMARKS.md.
//!
//! `reindex`: times rebuilding the text index from PostgreSQL (recovery time).
//!
//! `ingest`: the pipeline against the embedding model alone on the same chunks (`ingest.rs`).
//! `text-engines` (feature `elasticsearch`): ingest and search with the text leg on Tantivy
//! and on an Elasticsearch-compatible engine, interleaved (`engines.rs`).
//! `embed`: the embedding service against sentence-transformers, and the cost of a query
//! embedding (`embed.rs`, `query_cost.rs`). `eval-int8`: retrieval quality of the int8 graph
//! against fp32 (`quality.rs`). Every speed figure is the median of several rounds with
//! min–max, and says the machine's load while it ran (`measure.rs`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use braid_tests::v1::{DocumentInput, DocumentStatus, IngestStreamRequest, WaitIndexedRequest};
use braid_tests::{Stack, StackOptions, http_get};
use clap::{Parser, Subcommand};
use measure::percentile;

#[path = "braid-bench/embed.rs"]
mod embed;
#[cfg(feature = "elasticsearch")]
#[path = "braid-bench/engines.rs"]
mod engines;
#[path = "braid-bench/eval.rs"]
mod eval;
#[path = "braid-bench/ingest.rs"]
mod ingest;
#[path = "braid-bench/measure.rs"]
mod measure;
#[path = "braid-bench/prose.rs"]
mod prose;
#[path = "braid-bench/quality.rs"]
mod quality;
#[path = "braid-bench/query_cost.rs"]
mod query_cost;

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
        /// Rounds (pipeline, then the model alone); figures are their medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Markdown file to write the results into (section replaced in place).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ingest throughput and search latency with the text leg on Tantivy and on an
    /// Elasticsearch-compatible engine, one stack each per round, interleaved (needs
    /// `--features elasticsearch`).
    #[cfg(feature = "elasticsearch")]
    TextEngines {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        /// The engine's URL (`make bench` starts an OpenSearch node).
        #[arg(long)]
        engine_url: String,
        /// What to call it in the report.
        #[arg(long, default_value = "OpenSearch 2.19.6")]
        engine_name: String,
        #[arg(long, default_value_t = 300)]
        limit: usize,
        /// Queries sent per mode (the first N of queries.jsonl).
        #[arg(long, default_value_t = 200)]
        query_count: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Retrieval quality on a BEIR dataset: ingests the whole corpus, runs every judged
    /// query in hybrid, vector and text mode, reports nDCG@10, Recall@10 and latency.
    Eval {
        /// BEIR directory with corpus.jsonl, queries.jsonl and qrels/test.tsv.
        #[arg(long)]
        dataset: PathBuf,
        /// Only the first N documents (a quick run; the figures are then not comparable).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Recovery time of the text leg: ingests a corpus slice (waits for READY), then times
    /// `Reindex` of the text leg (a new index from PostgreSQL, switched atomically).
    Reindex {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Writes the passages `embed` uses, one per line (for the reference script).
    Passages {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long, default_value_t = 256)]
        sentences: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Embedding speed: sentences/s of the embedding service at batch 1, 8, 32 and 128 on
    /// ~60-word SciFact passages, interleaved with the sentence-transformers reference when
    /// `--reference-python` is given; then CPU and latency of a query embedding.
    Embed {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        /// Passages to embed per batch size.
        #[arg(long, default_value_t = 256)]
        sentences: usize,
        /// Rounds; every figure is their median (with min–max).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Steady query rate (per second) for the CPU-per-query measurement.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Queries sent at that rate (distinct SciFact queries).
        #[arg(long, default_value_t = 1000)]
        query_count: usize,
        /// Python with torch + sentence-transformers (`.braid/venv-bench/bin/python`).
        #[arg(long)]
        reference_python: Option<PathBuf>,
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/scripts/bench_sentence_transformers.py"))]
        reference_script: PathBuf,
        /// Also measure one document model whose passes use every core (`model.workers = 1`).
        #[arg(long)]
        layouts: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Retrieval quality of the int8 graph against fp32: both models embed the same
    /// chunks of a BEIR corpus and its judged queries; exact cosine search; nDCG@10.
    EvalInt8 {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Embed a sample: every judged document plus the first N others (default: all).
        #[arg(long)]
        docs: Option<usize>,
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
            acl: None,
        });
    }
    Ok(docs)
}

/// Sum of a Prometheus sample over every series whose line contains all `filters`.
async fn metrics(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    Ok(http_get(addr, "/metrics").await?.1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest {
            corpus,
            limit,
            rounds,
            out,
        } => ingest::run(&corpus, limit, rounds.max(1), out.as_deref()).await,
        Command::Eval {
            dataset,
            limit,
            out,
        } => eval::eval(&dataset, limit, out.as_deref()).await,
        Command::Reindex { corpus, limit, out } => reindex(&corpus, limit, out.as_deref()).await,
        #[cfg(feature = "elasticsearch")]
        Command::TextEngines {
            corpus,
            queries,
            engine_url,
            engine_name,
            limit,
            query_count,
            rounds,
            out,
        } => {
            engines::run(engines::Args {
                corpus: &corpus,
                queries: &queries,
                engine_url: &engine_url,
                engine_name: &engine_name,
                limit,
                query_count,
                rounds: rounds.max(1),
                out: out.as_deref(),
            })
            .await
        }
        Command::Passages {
            corpus,
            sentences,
            out,
        } => Ok(std::fs::write(
            out,
            passages(&corpus, sentences)?.join("\n") + "\n",
        )?),
        Command::Embed {
            corpus,
            queries,
            sentences,
            rounds,
            rate,
            query_count,
            reference_python,
            reference_script,
            layouts,
            out,
        } => {
            embed::run(&embed::EmbedArgs {
                corpus,
                queries,
                sentences,
                rounds: rounds.max(1),
                rate,
                query_count,
                reference_python,
                reference_script,
                layouts,
                out,
            })
            .await
        }
        Command::EvalInt8 { dataset, out, docs } => {
            quality::run(&dataset, out.as_deref(), docs).await
        }
    }
}

type Gateway = braid_tests::v1::gateway_client::GatewayClient<tonic::transport::Channel>;

/// Streams `docs` in, then waits until each is READY (or ended PARTIAL/FAILED, counted).
/// Returns (all accepted after, all settled after, not READY).
async fn ingest_all(
    gw: &mut Gateway,
    docs: Vec<DocumentInput>,
    tenant: &str,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let started = Instant::now();
    let outbound = tokio_stream::iter(docs.into_iter().map({
        let tenant = tenant.to_string();
        move |d| IngestStreamRequest {
            tenant: tenant.clone(),
            document: Some(d),
        }
    }));
    let mut results = gw.ingest_stream(outbound).await?.into_inner();
    let mut ids = Vec::new();
    while let Some(r) = results.message().await? {
        anyhow::ensure!(r.error.is_empty(), "rejected: {}", r.error);
        ids.push(r.document_id);
    }
    let accepted = started.elapsed();
    let mut failed = 0;
    for group in ids.chunks(1000) {
        let mut pending = group.to_vec();
        while !pending.is_empty() {
            let r = gw
                .wait_indexed(WaitIndexedRequest {
                    tenant: tenant.into(),
                    document_ids: pending.clone(),
                    timeout_ms: 20_000,
                })
                .await?
                .into_inner();
            pending.clear();
            for r in r.results {
                if r.status == DocumentStatus::Ready as i32 {
                    continue;
                }
                if r.status == DocumentStatus::Failed as i32
                    || r.status == DocumentStatus::Partial as i32
                {
                    eprintln!("braid-bench: {} ended {:?}", r.external_id, r.status);
                    failed += 1;
                } else {
                    pending.push(r.document_id);
                }
            }
        }
    }
    Ok((accepted, started.elapsed(), failed))
}

/// The first 60 words of each corpus text that has at least 60.
fn passages(corpus: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let file =
        std::fs::File::open(corpus).with_context(|| format!("opening {}", corpus.display()))?;
    let mut out = Vec::with_capacity(n);
    for line in std::io::BufReader::new(file).lines() {
        let d: BeirDoc = serde_json::from_str(&line?)?;
        let words: Vec<&str> = d.text.split_whitespace().collect();
        if words.len() >= 60 {
            out.push(words[..60].join(" "));
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

/// The model options the benchmarks load the model alone with (the harness's runtime library).
fn model_options() -> braid_embedding::ModelOptions {
    braid_embedding::ModelOptions {
        onnx_runtime: braid_tests::onnx_runtime(),
        ..Default::default()
    }
}

async fn reindex(corpus: &Path, limit: usize, out: Option<&Path>) -> anyhow::Result<()> {
    use braid_tests::v1::{ReindexLeg, ReindexRequest};
    let docs = read_corpus(corpus, limit)?;
    let n_docs = docs.len();
    let stack = Stack::start_with(StackOptions::default()).await?;
    let mut gw = stack.gateway_client().await?;
    let (_, indexed, failed) = ingest_all(&mut gw, docs, "bench").await?;
    eprintln!("braid-bench: {n_docs} documents indexed in {indexed:.1?} ({failed} not READY)");
    let db = stack.db().await?;
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest.chunks")
        .fetch_one(&db)
        .await?;
    let started = Instant::now();
    let run = gw
        .reindex(ReindexRequest {
            leg: ReindexLeg::Text as i32,
            wait: true,
            wait_timeout_ms: 120_000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .run
        .context("no run")?;
    let took = started.elapsed();
    anyhow::ensure!(
        run.state == "done",
        "reindex ended {}: {}",
        run.state,
        run.error
    );
    eprintln!("braid-bench: text reindex of {n_docs} documents in {took:.1?}");
    stack.shutdown().await?;
    let section = format!(
        "<!-- bench:reindex -->\n\
## Recovery: rebuilding the text index (issue 14)\n\n\
Command: `braid-bench reindex --corpus ../shared/eval/scifact/corpus.jsonl --limit {limit}` \
(the first {n_docs} SciFact documents; debug build; all five services in one process).\n\
`Reindex` of the text leg: every document's chunks read from PostgreSQL in pages of 100 \
documents, written into a new Tantivy index (one commit per page) and switched atomically.\n\n\
| measure | value |\n| --- | --- |\n\
| documents | {n_docs} |\n\
| chunks | {chunks} |\n\
| reindex (text leg, new index, switched) | {:.1} s |\n\
| rate | {:.0} documents/s |\n\
<!-- /bench:reindex -->\n",
        took.as_secs_f64(),
        n_docs as f64 / took.as_secs_f64()
    );
    match out {
        Some(out) => {
            write_section(out, "reindex", &section)?;
            eprintln!("braid-bench: wrote {}", out.display());
        }
        None => print!("{section}"),
    }
    Ok(())
}

/// Replaces the `<!-- bench:NAME -->` section of `path` (or appends it), its prose wrapped
/// ([`prose::wrap_prose`]).
fn write_section(path: &Path, name: &str, section: &str) -> anyhow::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".to_string());
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->\n");
    let (start, end) = (start.as_str(), end.as_str());
    let section = prose::wrap_prose(section);
    let updated = match (current.find(start), current.find(end)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{}{}", &current[..s], section, &current[e + end.len()..])
        }
        _ => format!("{}\n\n{}", current.trim_end_matches('\n'), section),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
