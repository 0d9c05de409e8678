//! `braid-bench embed`: sentences/s of the embedding service at batch 1, 8, 32 and 128 against
//! the sentence-transformers reference, interleaved in the same rounds (so both see the same
//! machine load), each figure the median of the rounds with min–max; then what one query
//! embedding costs (CPU per query at a steady rate, latency).
//!
//! Braid is measured as callers get it: gRPC `Embed` requests of `batch` document texts, one
//! after another, to the embedding service (in this process, embedding cache off, default
//! `model.*` settings), fp32 and — when set-up wrote it — the int8 graph. The reference is
//! `deploy/scripts/bench_sentence_transformers.py`, started once with its model loaded and
//! warmed up before any timing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
use braid_tests::v1::{EmbedRequest, InputType};
use braid_tests::{Service, ServiceChannel, model_dir, service_channel, start_embedding};

use crate::measure::{LoadSamples, Spread, cores, cpu_model};
use crate::query_cost::{self, QueryCost};

pub const BATCHES: [usize; 4] = [1, 8, 32, 128];

pub struct EmbedArgs {
    pub corpus: PathBuf,
    pub queries: PathBuf,
    pub sentences: usize,
    pub rounds: usize,
    /// Steady query rate for the CPU-per-query measurement.
    pub rate: f64,
    pub query_count: usize,
    /// The venv's python with torch + sentence-transformers (no reference without it).
    pub reference_python: Option<PathBuf>,
    pub reference_script: PathBuf,
    /// Also measure one document model thread running each pass on every core (`model.workers
    /// = 1`, `model.threads = 0`) next to the default (one single-threaded model per core).
    pub layouts: bool,
    pub out: Option<PathBuf>,
}

/// The reference worker process (see the script's protocol).
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    info: serde_json::Value,
}

impl Reference {
    fn start(python: &Path, script: &Path, inputs: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .arg(script)
            .arg("--model-dir")
            .arg(model_dir())
            .arg("--inputs")
            .arg(inputs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
        let stdin = child.stdin.take().context("reference stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("reference stdout")?);
        let mut reference = Self {
            child,
            stdin,
            stdout,
            info: serde_json::Value::Null,
        };
        reference.info = reference.read()?;
        anyhow::ensure!(
            reference.info["ready"] == true,
            "reference did not start: {}",
            reference.info
        );
        Ok(reference)
    }

    fn read(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        anyhow::ensure!(
            self.stdout.read_line(&mut line)? > 0,
            "the reference process exited"
        );
        Ok(serde_json::from_str(&line)?)
    }

    /// Sentences/s embedding every passage in consecutive batches of `batch`.
    fn run(&mut self, batch: usize) -> anyhow::Result<f64> {
        writeln!(self.stdin, "{batch}")?;
        self.stdin.flush()?;
        let r = self.read()?;
        let seconds = r["seconds"].as_f64().context("reference answer")?;
        let sentences = r["sentences"].as_f64().context("reference answer")?;
        Ok(sentences / seconds)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Braid variant under test.
struct Engine {
    label: &'static str,
    service: Service,
    client: EmbeddingServiceClient<ServiceChannel>,
}

impl Engine {
    /// `shared`: one model whose passes use every core, instead of one per core.
    async fn start(label: &'static str, quantized: bool, shared: bool) -> anyhow::Result<Self> {
        let service = start_embedding(|c| {
            c.cache.l1_entries = 0;
            c.model.quantized = quantized;
            if shared {
                c.model.workers = 1;
                c.model.threads = 0;
            }
        })
        .await?;
        let client = EmbeddingServiceClient::new(service_channel(&service));
        Ok(Self {
            label,
            service,
            client,
        })
    }

    /// Sentences/s embedding `inputs` in consecutive requests of `batch` texts.
    async fn run(&mut self, inputs: &[String], batch: usize) -> anyhow::Result<f64> {
        let started = Instant::now();
        for chunk in inputs.chunks(batch) {
            self.client
                .embed(EmbedRequest {
                    texts: chunk.to_vec(),
                    input_type: InputType::Document as i32,
                })
                .await?;
        }
        Ok(inputs.len() as f64 / started.elapsed().as_secs_f64())
    }
}

fn read_queries(path: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    BufReader::new(file)
        .lines()
        .take(n)
        .map(|l| -> anyhow::Result<String> {
            let v: serde_json::Value = serde_json::from_str(&l?)?;
            Ok(v["text"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

pub async fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let inputs = crate::passages(&args.corpus, args.sentences)?;
    let dir = tempfile::tempdir()?;
    let inputs_file = dir.path().join("passages.txt");
    std::fs::write(&inputs_file, inputs.join("\n") + "\n")?;
    let mut load = LoadSamples::default();
    load.sample();

    let mut reference = match &args.reference_python {
        Some(python) => {
            eprintln!("braid-bench: starting the reference (model load and warm-up, untimed)");
            let script = args.reference_script.clone();
            let file = inputs_file.clone();
            let python = python.clone();
            Some(
                tokio::task::spawn_blocking(move || Reference::start(&python, &script, &file))
                    .await??,
            )
        }
        None => None,
    };
    let mut engines = vec![Engine::start("fp32", false, false).await?];
    if args.layouts {
        engines.push(Engine::start("fp32 one model, all cores", false, true).await?);
    }
    if model_dir().join("model.int8.onnx").is_file() {
        engines.push(Engine::start("int8", true, false).await?);
        if args.layouts {
            engines.push(Engine::start("int8 one model, all cores", true, true).await?);
        }
    } else {
        eprintln!("braid-bench: no model.int8.onnx (run `make setup`): int8 not measured");
    }
    // Warm-up at every batch size, untimed.
    for engine in &mut engines {
        for batch in BATCHES {
            engine.run(&inputs[..batch.max(8)], batch).await?;
        }
    }

    // rates[engine][batch index][round]; the reference last.
    let n = engines.len() + 1;
    let mut rates = vec![vec![Vec::new(); BATCHES.len()]; n];
    for round in 0..args.rounds {
        for (b, &batch) in BATCHES.iter().enumerate() {
            for (e, engine) in engines.iter_mut().enumerate() {
                let rate = engine.run(&inputs, batch).await?;
                eprintln!(
                    "braid-bench: round {} batch {batch}: Braid {} {rate:.1} sentences/s",
                    round + 1,
                    engine.label
                );
                rates[e][b].push(rate);
            }
            if let Some(r) = reference.as_mut() {
                let rate = tokio::task::block_in_place(|| r.run(batch))?;
                eprintln!(
                    "braid-bench: round {} batch {batch}: sentence-transformers {rate:.1} sentences/s",
                    round + 1
                );
                rates[n - 1][b].push(rate);
            }
            load.sample();
        }
    }
    let reference_info = reference.as_ref().map(|r| r.info.clone());
    drop(reference);

    // Query cost, fp32 and int8 one after the other.
    let queries = read_queries(&args.queries, args.query_count + 20)?;
    let mut costs: Vec<(&str, QueryCost)> = Vec::new();
    for engine in &engines {
        let cost = query_cost::measure(&engine.service, &queries, args.rate).await?;
        eprintln!(
            "braid-bench: {} query: {:.2} ms CPU per query at {:.0}/s, {:.1} texts per pass, idle after {:.1}% CPU, p50 {:.1?}",
            engine.label,
            cost.cpu_ms,
            cost.rate,
            cost.texts_per_pass,
            cost.idle_after_pct,
            cost.p50
        );
        costs.push((engine.label, cost));
        load.sample();
    }
    for mut engine in engines.drain(..) {
        engine.service.stop().await?;
    }

    let report = render(
        args,
        &inputs,
        &rates,
        reference_info.as_ref(),
        &costs,
        &load,
    );
    println!("{report}");
    if let Some(out) = &args.out {
        crate::write_section(out, "embed", &report)?;
        eprintln!("braid-bench: wrote {}", out.display());
    }
    Ok(())
}

fn render(
    args: &EmbedArgs,
    inputs: &[String],
    rates: &[Vec<Vec<f64>>],
    reference: Option<&serde_json::Value>,
    costs: &[(&str, QueryCost)],
    load: &LoadSamples,
) -> String {
    let labels: Vec<&str> = costs.iter().map(|(l, _)| *l).collect();
    let has_reference = reference.is_some();
    let reference_idx = rates.len() - 1;
    let mut header = String::from("| batch |");
    let mut rule = String::from("| --- |");
    for l in &labels {
        header.push_str(&format!(" Braid {l} |"));
        rule.push_str(" --- |");
    }
    if has_reference {
        header.push_str(" sentence-transformers |");
        rule.push_str(" --- |");
        for l in &labels {
            header.push_str(&format!(" Braid {l} / reference |"));
            rule.push_str(" --- |");
        }
    }
    let mut rows = String::new();
    let mut widest: f64 = 0.0;
    let mut lowest_ratio = f64::INFINITY;
    for (b, batch) in BATCHES.iter().enumerate() {
        rows.push_str(&format!("| {batch} |"));
        for engine in &rates[..labels.len()] {
            let s = Spread::of(&engine[b]);
            widest = widest.max(s.relative());
            rows.push_str(&format!(" {} |", s.show(1)));
        }
        if has_reference {
            let s = Spread::of(&rates[reference_idx][b]);
            widest = widest.max(s.relative());
            rows.push_str(&format!(" {} |", s.show(1)));
            for e in 0..labels.len() {
                // Ratio within each round (same load), then the spread of those.
                let ratios: Vec<f64> = rates[e][b]
                    .iter()
                    .zip(&rates[reference_idx][b])
                    .map(|(ours, theirs)| ours / theirs)
                    .collect();
                let r = Spread::of(&ratios);
                if e == 0 {
                    lowest_ratio = lowest_ratio.min(r.median);
                }
                rows.push_str(&format!(
                    " **{:.2}×** ({:.2}–{:.2}) |",
                    r.median, r.min, r.max
                ));
            }
        }
        rows.push('\n');
    }
    let reference_note = match reference {
        Some(r) => format!(
            "Reference: sentence-transformers {} on torch {} ({} threads), same passages and batches, started once (model load and warm-up untimed) and run between Braid's runs in every round.",
            r["sentence_transformers"].as_str().unwrap_or("?"),
            r["torch"].as_str().unwrap_or("?"),
            r["threads"].as_u64().unwrap_or(0)
        ),
        None => "Reference: not run (`BENCH_REFERENCE=1 make bench` installs torch + sentence-transformers into `.braid/venv-bench` and runs it).".into(),
    };
    let ratio_note = if has_reference {
        format!(
            " Lowest median ratio of the default (fp32) engine to the reference: {lowest_ratio:.2}×."
        )
    } else {
        String::new()
    };
    let mut cost_rows = String::new();
    for (label, c) in costs {
        cost_rows.push_str(&format!(
            "| {label} | {:.2} ms | {:.0}/s | {:.1} | {:.1} / {:.1} ms | {:.1}% | {:.1} / {:.1} ms |\n",
            c.cpu_ms,
            c.rate,
            c.texts_per_pass,
            c.loaded_p50.as_secs_f64() * 1e3,
            c.loaded_p99.as_secs_f64() * 1e3,
            c.idle_after_pct,
            c.p50.as_secs_f64() * 1e3,
            c.p99.as_secs_f64() * 1e3,
        ));
    }
    format!(
        "<!-- bench:embed -->\n\
## Embedding speed (all-MiniLM-L6-v2, CPU)\n\n\
Command: `{make}` (`braid-bench embed --sentences {n} --rounds {rounds} --rate {rate} --query-count {count}{reference_arg}`): {n} SciFact passages of 60 words (≈ 80–100 tokens), sent as gRPC `Embed` requests of `batch` document texts one after another to the embedding service (in process, embedding cache off, default `model.*` settings); sentences/s, **median (min–max) of {rounds} rounds**, every round running each engine and the reference at each batch size back to back. Release build; {cores} cores ({cpu}); {load} (shared machine).\n\
{reference_note}\n\n\
{header}\n{rule}\n{rows}\n\
{spread_note}{ratio_note}\n\n\
Cost of one query embedding (SciFact queries, `input_type = QUERY`, each distinct): {count} queries sent at a steady {rate:.0}/s (open loop, latency from the intended send time), then 200 one at a time. CPU is the embedding service's (this process minus the load client's thread, from `/proc`); \"idle after\" is its CPU in the second after the load (threads spinning for work).\n\n\
| engine | CPU per query | rate | texts per forward pass | p50 / p99 at that rate | CPU idle after | p50 / p99 one at a time |\n| --- | --- | --- | --- | --- | --- | --- |\n\
{cost_rows}\
<!-- /bench:embed -->\n",
        make = if has_reference {
            "BENCH_REFERENCE=1 make bench"
        } else {
            "make bench"
        },
        reference_arg = if has_reference {
            " --reference-python .braid/venv-bench/bin/python"
        } else {
            ""
        },
        rounds = args.rounds,
        n = inputs.len(),
        cores = cores(),
        cpu = cpu_model(),
        load = load.show(),
        spread_note = if args.rounds > 1 {
            format!(
                "Run-to-run spread of this run: up to {:.0}% (max − min over median) for one figure.",
                widest * 100.0
            )
        } else {
            "One round only: no run-to-run spread measured.".to_string()
        },
        count = args.query_count,
        rate = args.rate,
    )
}
