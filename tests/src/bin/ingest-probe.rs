//! `ingest-probe`: where a hybrid search's latency goes while a bulk ingest runs (issue 10,
//! item 6). All five services in-process on the real backends (as `braid-bench`), a first
//! slice of a BEIR corpus ingested, then the same probe twice — idle, and while the rest of
//! the corpus is ingested: `--clients` loops, each timing one part after the other for its
//! query: the query embedding (EmbeddingService.Embed), the vector leg alone
//! (VectorSearch.Search with that vector), the text leg alone (TextSearch.Search), and the
//! whole hybrid search through the gateway (query cache bypassed). Prints p50/p90/p99 per part
//! for both phases, so the part whose tail grows is the one to fix; ingest knobs are flags,
//! so the same run before and after a change compares them (`--document-nice 0` is the
//! behaviour before document threads ran at a lower priority).
//!
//! ```sh
//! ingest-probe --dataset ../shared/eval/scifact --base 500 --ingest 1500 --idle-seconds 20
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use braid_tests::v1::{
    DocumentInput, EmbedRequest, IngestRequest, InputType, LegSearchRequest, SearchMode,
    SearchRequest,
};
use braid_tests::{Stack, StackOptions};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// BEIR directory with corpus.jsonl and queries.jsonl.
    #[arg(long)]
    dataset: PathBuf,
    /// Documents ingested (and READY) before the probe starts.
    #[arg(long, default_value_t = 500)]
    base: usize,
    /// Documents ingested while the second probe runs (the next ones of the corpus).
    #[arg(long, default_value_t = 1500)]
    ingest: usize,
    /// Length of the idle probe.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Concurrent probe loops.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Ingest: documents per Ingest call.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Ingest outbox workers (`worker.concurrency`).
    #[arg(long)]
    worker_concurrency: Option<usize>,
    /// Chunks per embedding call of the ingest workers (`worker.embed_batch`).
    #[arg(long)]
    embed_batch: Option<usize>,
    /// How much lower the document model threads' OS priority is (`model.document_nice`;
    /// 0 = the same as queries).
    #[arg(long)]
    document_nice: Option<u8>,
    /// Queries on the int8 graph, documents on fp32 (`model.query_quantized`).
    #[arg(long)]
    query_quantized: bool,
}

#[derive(serde::Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

const PARTS: [&str; 4] = ["embed query", "vector leg", "text leg", "hybrid (gateway)"];

#[derive(Default)]
struct Samples([Vec<Duration>; 4]);

fn read_lines(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()?)
}

fn documents(lines: &[String]) -> anyhow::Result<Vec<DocumentInput>> {
    lines
        .iter()
        .map(|line| {
            let d: BeirDoc = serde_json::from_str(line)?;
            Ok(DocumentInput {
                external_id: d.id,
                title: d.title,
                content: d.text,
                mime_type: "text/plain".into(),
                ..Default::default()
            })
        })
        .collect()
}

/// Ingests `docs` in calls of `batch` documents, without waiting for READY.
async fn ingest(stack: &Stack, docs: Vec<DocumentInput>, batch: usize) -> anyhow::Result<()> {
    let mut gw = stack.gateway_client().await?;
    for group in docs.chunks(batch) {
        let results = gw
            .ingest(IngestRequest {
                documents: group.to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .results;
        anyhow::ensure!(
            results.iter().all(|r| r.error.is_empty()),
            "rejected: {results:?}"
        );
    }
    Ok(())
}

/// Waits until every document is READY (polling the ingest schema).
async fn wait_ready(stack: &Stack, want: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let db = stack.db().await?;
    loop {
        let ready: i64 =
            sqlx::query_scalar("SELECT count(*) FROM ingest.documents WHERE status = 'ready'")
                .fetch_one(&db)
                .await?;
        if ready as usize >= want {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One probe loop: for each query, times each part in turn until `stop`.
async fn probe(
    stack: &Stack,
    queries: Arc<Vec<String>>,
    first: usize,
    step: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Samples> {
    let (mut embedding, mut vector, mut text) = (
        stack.embedding_client(),
        stack.vector_client(),
        stack.text_client(),
    );
    let mut gw = stack.gateway_client().await?;
    let mut samples = Samples::default();
    let mut i = first;
    while !stop.load(Ordering::SeqCst) {
        let query = &queries[i % queries.len()];
        i += step;
        // Fields embedding.proto may gain (3-4) keep their defaults.
        #[allow(clippy::needless_update)]
        let request = EmbedRequest {
            texts: vec![query.clone()],
            input_type: InputType::Query as i32,
            ..Default::default()
        };
        let started = Instant::now();
        let embedded = embedding.embed(request).await?.into_inner();
        samples.0[0].push(started.elapsed());
        let vector_query = embedded
            .embeddings
            .first()
            .map(|v| v.values.clone())
            .unwrap_or_default();
        let leg = LegSearchRequest {
            tenant: "default".into(),
            top_k: 50,
            detail_top_k: 10,
            ..Default::default()
        };
        let started = Instant::now();
        vector
            .search(LegSearchRequest {
                embedding: vector_query,
                model: embedded.model,
                ..leg.clone()
            })
            .await?;
        samples.0[1].push(started.elapsed());
        let started = Instant::now();
        text.search(LegSearchRequest {
            query: query.clone(),
            ..leg
        })
        .await?;
        samples.0[2].push(started.elapsed());
        let started = Instant::now();
        let r = gw
            .search(SearchRequest {
                query: query.clone(),
                top_k: 10,
                mode: SearchMode::Hybrid as i32,
                bypass_cache: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        anyhow::ensure!(!r.degraded, "degraded answer: {:?}", r.degraded_reasons);
        samples.0[3].push(started.elapsed());
    }
    Ok(samples)
}

async fn probe_all(
    stack: &Arc<Stack>,
    queries: &Arc<Vec<String>>,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<Samples>>> {
    (0..clients)
        .map(|c| {
            let (stack, queries, stop) = (stack.clone(), queries.clone(), stop.clone());
            tokio::spawn(async move { probe(&stack, queries, c, clients, stop).await })
        })
        .collect()
}

async fn collect(
    loops: Vec<tokio::task::JoinHandle<anyhow::Result<Samples>>>,
) -> anyhow::Result<Samples> {
    let mut all = Samples::default();
    for l in loops {
        let s = l.await??;
        for (into, from) in all.0.iter_mut().zip(s.0) {
            into.extend(from);
        }
    }
    for part in all.0.iter_mut() {
        part.sort();
    }
    Ok(all)
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let corpus = read_lines(&cli.dataset.join("corpus.jsonl"))?;
    anyhow::ensure!(
        corpus.len() >= cli.base + cli.ingest,
        "the corpus has {} documents, fewer than --base + --ingest",
        corpus.len()
    );
    let queries: Vec<String> = read_lines(&cli.dataset.join("queries.jsonl"))?
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    let queries = Arc::new(queries);
    let mut options = StackOptions::default();
    // Every query pays for its embedding, as in the uncached load scenarios.
    options.embedding.cache.l1_entries = 0;
    if let Some(n) = cli.worker_concurrency {
        options.ingest.worker.concurrency = n;
    }
    if let Some(n) = cli.embed_batch {
        options.ingest.worker.embed_batch = n;
    }
    if let Some(n) = cli.document_nice {
        options.embedding.model.document_nice = n;
    }
    options.embedding.model.query_quantized = cli.query_quantized;
    let knobs = format!(
        "worker.concurrency {}, worker.embed_batch {}, model.document_nice {}, model.query_quantized {}",
        options.ingest.worker.concurrency,
        options.ingest.worker.embed_batch,
        options.embedding.model.document_nice,
        options.embedding.model.query_quantized
    );
    let stack = Arc::new(Stack::start_with(options).await?);
    eprintln!(
        "ingest-probe: {knobs}; ingesting {} documents first",
        cli.base
    );
    ingest(&stack, documents(&corpus[..cli.base])?, cli.batch).await?;
    wait_ready(&stack, cli.base).await?;

    eprintln!("ingest-probe: idle probe, {} s", cli.idle_seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let loops = probe_all(&stack, &queries, cli.clients, &stop).await;
    tokio::time::sleep(Duration::from_secs(cli.idle_seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let idle = collect(loops).await?;

    eprintln!(
        "ingest-probe: probe while {} more documents are ingested",
        cli.ingest
    );
    let stop = Arc::new(AtomicBool::new(false));
    let loops = probe_all(&stack, &queries, cli.clients, &stop).await;
    let started = Instant::now();
    ingest(
        &stack,
        documents(&corpus[cli.base..cli.base + cli.ingest])?,
        cli.batch,
    )
    .await?;
    wait_ready(&stack, cli.base + cli.ingest).await?;
    let ingest_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let during = collect(loops).await?;

    println!(
        "ingest-probe ({knobs}; {} base documents, {} ingested in {:.1} s = {:.1} docs/s; {} probe loops; debug/release as built)\n",
        cli.base,
        cli.ingest,
        ingest_time.as_secs_f64(),
        cli.ingest as f64 / ingest_time.as_secs_f64(),
        cli.clients
    );
    println!(
        "| part | idle n | idle p50 | idle p90 | idle p99 | ingest n | ingest p50 | ingest p90 | ingest p99 | p99 ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, part) in PARTS.iter().enumerate() {
        let (a, b) = (&idle.0[i], &during.0[i]);
        println!(
            "| {part} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            a.len(),
            pct(a, 0.5),
            pct(a, 0.9),
            pct(a, 0.99),
            b.len(),
            pct(b, 0.5),
            pct(b, 0.9),
            pct(b, 0.99),
            pct(b, 0.99) / pct(a, 0.99)
        );
    }
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.shutdown().await?,
        Err(_) => anyhow::bail!("probe loops still hold the stack"),
    }
    Ok(())
}
