//! `braid-bench`: end-to-end benchmarks on the real stack (all five services in-process,
//! real PostgreSQL + pgvector, Tantivy and model), writing Markdown into BENCHMARKS.md.
//!
//! `reindex`: times rebuilding the text index from PostgreSQL (recovery time).
//!
//! `ingest`: streams a slice of a BEIR corpus through the gateway, times it until every
//! document is READY in both legs, then times the embedding model alone on exactly the chunks
//! the pipeline stored (batches of 64, sorted by length: the model's best case), and breaks the
//! pipeline's time down with the services' own Prometheus metrics.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use braid_embedding::Engine;
use braid_tests::v1::{DocumentInput, DocumentStatus, IngestStreamRequest, WaitIndexedRequest};
use braid_tests::{Stack, StackOptions, http_get, metric_sum, model_dir};
use clap::{Parser, Subcommand};

#[path = "braid-bench/eval.rs"]
mod eval;

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
        /// Model threads in the embedding service (`model.workers`, 0 = automatic).
        #[arg(long, default_value_t = 0)]
        workers: usize,
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
    /// Embedding speed: sentences/s of the model at several batch sizes on ~60-word SciFact
    /// passages, and single-query latency through gRPC. With `--reference`, the figures of
    /// `deploy/scripts/bench_sentence_transformers.py` on the same inputs go alongside.
    Embed {
        #[arg(long)]
        corpus: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        /// Passages to embed per batch size.
        #[arg(long, default_value_t = 256)]
        sentences: usize,
        /// Where to write the passages (one per line) for the reference script.
        #[arg(long)]
        inputs_out: Option<PathBuf>,
        /// JSON written by the reference script (`{"batch": {"1": sentences_per_s, ...}}`).
        #[arg(long)]
        reference: Option<PathBuf>,
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
            out,
            workers,
        } => ingest(&corpus, limit, workers, out.as_deref()).await,
        Command::Eval {
            dataset,
            limit,
            out,
        } => eval::eval(&dataset, limit, out.as_deref()).await,
        Command::Reindex { corpus, limit, out } => reindex(&corpus, limit, out.as_deref()).await,
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
            inputs_out,
            reference,
            out,
        } => {
            embed(
                &corpus,
                &queries,
                sentences,
                inputs_out.as_deref(),
                reference.as_deref(),
                out.as_deref(),
            )
            .await
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

async fn ingest(
    corpus: &Path,
    limit: usize,
    workers: usize,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let docs = read_corpus(corpus, limit)?;
    let n_docs = docs.len();
    eprintln!("braid-bench: {n_docs} documents from {}", corpus.display());
    let mut options = StackOptions::default();
    options.embedding.model.workers = workers;
    let stack = Stack::start_with(options).await?;
    let mut gw = stack.gateway_client().await?;

    // Pipeline: stream in, then wait for READY in both legs.
    let (accepted, pipeline, _) = ingest_all(&mut gw, docs, "bench").await?;
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
    let mut model = braid_embedding::Model::load(&model_dir(), model_options(Default::default()))?;
    let texts_ref: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut alone_by_batch = Vec::new();
    for batch_size in [1usize, 8, 64] {
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
    // The service's default layout: one single-threaded model per core, batch 1, sharing
    // the (length-sorted) chunks — the model's best case on this machine.
    let (workers, _) = braid_embedding::ModelConfig::default().parallelism();
    if workers > 1 {
        let started = Instant::now();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let texts = &texts_ref;
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut model = braid_embedding::Model::load(
                            &model_dir(),
                            braid_embedding::ModelOptions {
                                threads: 1,
                                ..model_options(Engine::Onnx)
                            },
                        )?;
                        for text in texts.iter().skip(w).step_by(workers) {
                            model.embed(&[text])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("model thread")?;
            }
            Ok(())
        })?;
        let took = started.elapsed();
        eprintln!(
            "braid-bench: model alone, {workers} single-threaded copies, batch 1: {took:.1?}"
        );
        alone_by_batch.push((0, took));
    }
    let (best_batch, alone) = *alone_by_batch
        .iter()
        .min_by_key(|(_, d)| *d)
        .expect("two runs");

    let best_label = match best_batch {
        0 => format!("{workers} parallel copies"),
        b => format!("batches of {b}"),
    };
    let secs = |d: Duration| d.as_secs_f64();
    let overhead = (secs(pipeline) / secs(alone) - 1.0) * 100.0;
    let over_own_model = (secs(pipeline) / (model_secs / workers as f64) - 1.0) * 100.0;
    let alone_rows: String = alone_by_batch
        .iter()
        .map(|(b, d)| {
            let how = match b {
                0 => format!(
                    "{workers} single-threaded copies in parallel, batch 1 (the service's layout)"
                ),
                b => format!("one copy on all cores, batches of {b} (length-sorted)"),
            };
            format!(
                "| embedding model alone, same chunks, {how} | {:.1} s ({:.1} chunks/s) |\n",
                secs(*d),
                n_chunks as f64 / secs(*d)
            )
        })
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
Machine: {cores} cores, {cpu}; release build; all five services in one process, real PostgreSQL 18 + pgvector, Tantivy, all-MiniLM-L6-v2 on CPU (ONNX Runtime, default `model.*` settings).\n\n\
| measure | value |\n| --- | --- |\n\
| documents | {n_docs} |\n\
| chunks (≤ 200 tokens, 40 overlap) | {n_chunks} |\n\
| all accepted (streamed, stored, jobs queued) | {:.1} s |\n\
| all READY in both legs | {:.1} s |\n\
| pipeline throughput | {:.1} documents/s, {:.1} chunks/s |\n\
{alone_rows}\
| **pipeline time over the model alone** (its best layout: {best_label}) | **{overhead:+.1}%** |\n\
| pipeline wall time over its own forward passes (busy time / {workers} model threads) | {over_own_model:+.1}% |\n\n\
Where the pipeline's time went (service-side sums; legs overlap with embedding, so they do not add up to the wall time):\n\n\
| part | seconds | notes |\n| --- | --- | --- |\n\
| model forward passes (embedding service, summed over {workers} model threads) | {model_secs:.1} | {batches:.0} batches, {:.1} texts per batch on average |\n\
| vector upserts (vector-search ReplaceDocument) | {vector_secs:.1} | one transaction per document |\n\
| text indexing (text-search ReplaceDocument) | {text_secs:.1} | request time incl. waiting for the shared (group) commit |\n\
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
        write_section(out, "ingest", &report)?;
        eprintln!("braid-bench: wrote {}", out.display());
    }
    Ok(())
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

fn model_options(engine: Engine) -> braid_embedding::ModelOptions {
    braid_embedding::ModelOptions {
        engine,
        onnx_runtime: braid_tests::onnx_runtime(),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn embed(
    corpus: &Path,
    queries: &Path,
    n: usize,
    inputs_out: Option<&Path>,
    reference: Option<&Path>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
    use braid_tests::v1::{EmbedRequest, InputType};

    let inputs = passages(corpus, n)?;
    if let Some(path) = inputs_out {
        std::fs::write(path, inputs.join("\n") + "\n")?;
    }
    let reference: Option<serde_json::Value> = match reference {
        Some(p) if p.exists() => Some(serde_json::from_slice(&std::fs::read(p)?)?),
        _ => None,
    };
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let mut rates = std::collections::BTreeMap::new();
    for engine in [Engine::Onnx, Engine::Candle] {
        let mut model = braid_embedding::Model::load(&model_dir(), model_options(engine))?;
        model.embed(&refs[..8])?; // warm-up
        for batch in [1usize, 8, 32, 128] {
            let started = Instant::now();
            for chunk in refs.chunks(batch) {
                model.embed(chunk)?;
            }
            let rate = refs.len() as f64 / started.elapsed().as_secs_f64();
            eprintln!("braid-bench: {engine:?} batch {batch}: {rate:.1} sentences/s");
            rates.insert((batch, engine == Engine::Onnx), rate);
        }
    }
    let mut rows = String::new();
    for batch in [1usize, 8, 32, 128] {
        let rate = rates[&(batch, true)];
        let candle = rates[&(batch, false)];
        let theirs = reference
            .as_ref()
            .and_then(|r| r["batch"][batch.to_string()].as_f64());
        let (theirs_s, ratio) = match theirs {
            Some(t) => (format!("{t:.1}"), format!("{:.2}×", rate / t)),
            None => ("not run".into(), "–".into()),
        };
        rows.push_str(&format!(
            "| {batch} | {rate:.1} | {candle:.1} | {theirs_s} | {ratio} |\n"
        ));
    }

    // Single-query latency through gRPC (embedding service alone, in-process).
    let service = braid_tests::start_embedding(|_| {}).await?;
    let mut client = EmbeddingServiceClient::new(braid_tests::service_channel(&service));
    let qs: Vec<String> = std::io::BufReader::new(std::fs::File::open(queries)?)
        .lines()
        .take(300)
        .map(|l| -> anyhow::Result<String> {
            let v: serde_json::Value = serde_json::from_str(&l?)?;
            Ok(v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect::<anyhow::Result<_>>()?;
    let mut alone = braid_embedding::Model::load(&model_dir(), model_options(Engine::Onnx))?;
    let mut direct = Vec::with_capacity(qs.len());
    for q in &qs {
        let started = Instant::now();
        alone.embed(&[q.as_str()])?;
        direct.push(started.elapsed());
    }
    drop(alone);
    direct.sort();
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    eprintln!("braid-bench: query, model alone: p50 {d50:.1?} p99 {d99:.1?}");
    let mut latencies = Vec::with_capacity(qs.len());
    for q in &qs {
        let started = Instant::now();
        client
            .embed(EmbedRequest {
                texts: vec![q.clone()],
                input_type: InputType::Query as i32,
            })
            .await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    eprintln!("braid-bench: query latency p50 {p50:.1?} p99 {p99:.1?}");
    let mut service = service;
    service.stop().await?;

    let reference_note = match &reference {
        Some(r) => format!(
            "Reference: sentence-transformers {} on torch {}, {} threads, same inputs and batches, same machine, run by `deploy/scripts/bench_sentence_transformers.py`.",
            r["sentence_transformers"].as_str().unwrap_or("?"),
            r["torch"].as_str().unwrap_or("?"),
            r["threads"].as_u64().unwrap_or(0)
        ),
        None => "Reference: not run (`BENCH_REFERENCE=1 make bench` installs torch + sentence-transformers into `.braid/venv-bench` and runs it).".into(),
    };
    let report = format!(
        "<!-- bench:embed -->\n\
## Embedding speed (all-MiniLM-L6-v2, CPU)\n\n\
Command: `make bench` (`braid-bench embed`): {} SciFact passages of 60 words (≈ 80–100 tokens), embedded in consecutive batches of the given size (sentences/s); release build; {} cores; candle with tanh GELU (`model.gelu`).\n\
{reference_note}\n\n\
| batch | Braid, ONNX Runtime engine (default) | Braid, candle engine | sentence-transformers (torch) | Braid default / reference |\n| --- | --- | --- | --- | --- |\n\
{rows}\n\
Single query through gRPC (embedding service alone, {} SciFact queries one after another): p50 {:.1} ms, p99 {:.1} ms.\n\
<!-- /bench:embed -->\n",
        inputs.len(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    println!("{report}");
    if let Some(out) = out {
        write_section(out, "embed", &report)?;
    }
    Ok(())
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

/// Replaces the `<!-- bench:NAME -->` section of `path` (or appends it).
fn write_section(path: &Path, name: &str, section: &str) -> anyhow::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".to_string());
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->\n");
    let (start, end) = (start.as_str(), end.as_str());
    let updated = match (current.find(start), current.find(end)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{}{}", &current[..s], section, &current[e + end.len()..])
        }
        _ => format!("{}\n\n{}", current.trim_end_matches('\n'), section),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
