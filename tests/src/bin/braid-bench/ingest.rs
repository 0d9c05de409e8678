//! `braid-bench ingest`: streams a slice of a BEIR corpus through the gateway and times it until
//! every document has settled (READY, or counted as not READY), against the embedding model
//! alone on exactly the chunks the pipeline stored. Rounds interleave the pipeline with every
//! model-alone layout; each figure is the median of the rounds with min–max.
//!
//! The model alone is the fair best case: each layout's models are loaded and warmed up before
//! its timed region, the chunks are sorted by length (least padding), and the fastest layout
//! on this machine is the baseline.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use braid_embedding::{Model, ModelConfig};
use braid_tests::{Stack, StackOptions, metric_sum, model_dir};

use crate::measure::{LoadSamples, Spread, cores, cpu_model};

/// One way to run the model alone: `copies` models, each on `threads` threads, in parallel,
/// taking consecutive batches of `batch` length-sorted chunks from a shared queue.
#[derive(Clone, Copy)]
struct Layout {
    copies: usize,
    threads: usize,
    batch: usize,
}

impl Layout {
    fn describe(&self) -> String {
        let threads = match self.threads {
            1 => "single-threaded".to_string(),
            n => format!("{n} threads each"),
        };
        match self.copies {
            1 => format!("one copy ({threads}), batches of {}", self.batch),
            n => format!(
                "{n} copies in parallel ({threads}), batches of {}",
                self.batch
            ),
        }
    }

    /// Loads (and warms up) the models: outside the timed region.
    fn load(&self, warm_up: &[&str]) -> anyhow::Result<Vec<Model>> {
        (0..self.copies)
            .map(|_| {
                let mut model = Model::load(
                    &model_dir(),
                    braid_embedding::ModelOptions {
                        threads: self.threads,
                        ..crate::model_options()
                    },
                )?;
                model.embed(warm_up)?;
                Ok(model)
            })
            .collect()
    }

    /// Times embedding `texts` (length-sorted) with `models`.
    fn time(&self, models: &mut [Model], texts: &[&str]) -> anyhow::Result<Duration> {
        let batches: Vec<&[&str]> = texts.chunks(self.batch).collect();
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let handles: Vec<_> = models
                .iter_mut()
                .map(|model| {
                    let (batches, next) = (&batches, &next);
                    scope.spawn(move || -> anyhow::Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            let Some(batch) = batches.get(i) else {
                                return Ok(());
                            };
                            model.embed(batch)?;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("model thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(started.elapsed())
    }
}

struct PipelineRun {
    accepted: Duration,
    settled: Duration,
    not_ready: usize,
    model_secs: f64,
    batches: f64,
    batch_texts: f64,
    vector_secs: f64,
    text_secs: f64,
    texts: Vec<String>,
}

async fn pipeline(corpus: &Path, limit: usize) -> anyhow::Result<PipelineRun> {
    let docs = crate::read_corpus(corpus, limit)?;
    let stack = Stack::start_with(StackOptions::default()).await?;
    let mut gw = stack.gateway_client().await?;
    let (accepted, settled, not_ready) = crate::ingest_all(&mut gw, docs, "bench").await?;
    let emb = crate::metrics(stack.embedding.admin).await?;
    let vec_m = crate::metrics(stack.vector.admin).await?;
    let txt_m = crate::metrics(stack.text.admin).await?;
    let db = stack.db().await?;
    // The chunks as the pipeline embedded them (title + chunk).
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT CASE WHEN d.title = '' THEN c.body ELSE d.title || E'\\n' || c.body END \
         FROM ingest.chunks c JOIN ingest.documents d ON d.id = c.document_id",
    )
    .fetch_all(&db)
    .await?;
    db.close().await;
    stack.shutdown().await?;
    Ok(PipelineRun {
        accepted,
        settled,
        not_ready,
        model_secs: metric_sum(&emb, "braid_embedding_batch_duration_seconds_sum", &[]),
        batches: metric_sum(&emb, "braid_embedding_batch_duration_seconds_count", &[]),
        batch_texts: metric_sum(&emb, "braid_embedding_batch_size_sum", &[]),
        vector_secs: metric_sum(
            &vec_m,
            "braid_grpc_request_duration_seconds_sum",
            &["ReplaceDocument"],
        ),
        text_secs: metric_sum(
            &txt_m,
            "braid_grpc_request_duration_seconds_sum",
            &["ReplaceDocument"],
        ),
        texts,
    })
}

pub async fn run(
    corpus: &Path,
    limit: usize,
    rounds: usize,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let (workers, _) = ModelConfig::default().parallelism();
    let cores = cores();
    let layouts = [
        // The service's own layout: one single-threaded copy per model thread.
        Layout {
            copies: workers,
            threads: 1,
            batch: 1,
        },
        Layout {
            copies: workers,
            threads: 1,
            batch: 4,
        },
        Layout {
            copies: 1,
            threads: cores,
            batch: 16,
        },
    ];
    let mut load = LoadSamples::default();
    let mut runs = Vec::new();
    let mut alone: Vec<Vec<f64>> = vec![Vec::new(); layouts.len()];
    for round in 0..rounds {
        load.sample();
        let run = pipeline(corpus, limit).await?;
        eprintln!(
            "braid-bench: round {}: pipeline {:.1?} ({} not READY)",
            round + 1,
            run.settled,
            run.not_ready
        );
        let mut sorted = run.texts.clone();
        sorted.sort_by_key(String::len);
        for (i, layout) in layouts.iter().enumerate() {
            let texts = sorted.clone();
            let layout = *layout;
            let took = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                let warm_up: Vec<&str> = texts.iter().rev().take(4).copied().collect();
                let mut models = layout.load(&warm_up)?;
                layout.time(&mut models, &texts)
            })
            .await??;
            eprintln!(
                "braid-bench: round {}: model alone, {}: {took:.1?}",
                round + 1,
                layout.describe()
            );
            alone[i].push(took.as_secs_f64());
        }
        runs.push(run);
    }
    load.sample();

    let n_docs = limit;
    let n_chunks = runs.first().map_or(0, |r| r.texts.len());
    let settled = Spread::of(
        &runs
            .iter()
            .map(|r| r.settled.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    let accepted = Spread::of(
        &runs
            .iter()
            .map(|r| r.accepted.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    let not_ready: Vec<String> = runs.iter().map(|r| r.not_ready.to_string()).collect();
    let alone_spreads: Vec<Spread> = alone.iter().map(|v| Spread::of(v)).collect();
    let best = alone_spreads
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.median.total_cmp(&b.1.median))
        .map_or(0, |(i, _)| i);
    // Overhead per round against the same round's best-layout time, then the spread.
    let overheads: Vec<f64> = runs
        .iter()
        .zip(&alone[best])
        .map(|(r, a)| (r.settled.as_secs_f64() / a - 1.0) * 100.0)
        .collect();
    let overhead = Spread::of(&overheads);
    let mut widest = settled.relative();
    let mut alone_rows = String::new();
    for (layout, s) in layouts.iter().zip(&alone_spreads) {
        widest = widest.max(s.relative());
        alone_rows.push_str(&format!(
            "| embedding model alone, same chunks, {} | {} s ({:.1} chunks/s) |\n",
            layout.describe(),
            s.show(1),
            n_chunks as f64 / s.median
        ));
    }
    let median =
        |f: fn(&PipelineRun) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>()).median;
    let model_secs = median(|r| r.model_secs);
    let batches = median(|r| r.batches);
    let batch_texts = median(|r| r.batch_texts);
    let vector_secs = median(|r| r.vector_secs);
    let text_secs = median(|r| r.text_secs);
    let report = format!(
        "<!-- bench:ingest -->\n\
## Ingest throughput (SciFact slice, both legs)\n\n\
Command: `make bench` (BENCH_DOCS={n_docs}): `braid-bench ingest --corpus ../shared/eval/scifact/corpus.jsonl --limit {n_docs} --rounds {rounds}`. \
Each round: a fresh stack (all five services in one process, release build, real PostgreSQL 18 + pgvector, Tantivy, all-MiniLM-L6-v2 on ONNX Runtime, default `model.*` settings) ingests the slice and waits until every document has settled; then the model alone embeds the same chunks in each layout (models loaded and warmed up before timing, chunks sorted by length). Figures: **median (min–max) of {rounds} rounds**. {cores} cores ({cpu}); {load} (shared machine).\n\n\
| measure | value |\n| --- | --- |\n\
| documents | {n_docs} |\n\
| chunks (≤ 200 tokens, 40 overlap) | {n_chunks} |\n\
| documents not READY (FAILED or PARTIAL), per round | {not_ready} |\n\
| all accepted (streamed, stored, jobs queued) | {} s |\n\
| all settled (READY in both legs, or counted above) | {} s |\n\
| pipeline throughput | {:.1} documents/s, {:.1} chunks/s |\n\
{alone_rows}\
| **pipeline time over the model alone** (its best layout here: {best_label}; per round) | **{:+.1}%** ({:+.1}% to {:+.1}%) |\n\n\
Run-to-run spread of this run: up to {spread:.0}% (max − min over median) for one figure.\n\n\
Where the pipeline's time went (service-side sums, median round; legs overlap with embedding, so they do not add up to the wall time):\n\n\
| part | seconds | notes |\n| --- | --- | --- |\n\
| model forward passes (embedding service, summed over {workers} model threads) | {model_secs:.1} | {batches:.0} batches, {:.1} texts per batch on average |\n\
| vector upserts (vector-search ReplaceDocument) | {vector_secs:.1} | one transaction per document |\n\
| text indexing (text-search ReplaceDocument) | {text_secs:.1} | request time incl. waiting for the shared (group) commit |\n\
<!-- /bench:ingest -->\n",
        accepted.show(1),
        settled.show(1),
        n_docs as f64 / settled.median,
        n_chunks as f64 / settled.median,
        overhead.median,
        overhead.min,
        overhead.max,
        if batches > 0.0 {
            batch_texts / batches
        } else {
            0.0
        },
        not_ready = not_ready.join(", "),
        best_label = layouts[best].describe(),
        cpu = cpu_model(),
        load = load.show(),
        spread = widest * 100.0,
    );
    println!("{report}");
    if let Some(out) = out {
        crate::write_section(out, "ingest", &report)?;
        eprintln!("braid-bench: wrote {}", out.display());
    }
    Ok(())
}
