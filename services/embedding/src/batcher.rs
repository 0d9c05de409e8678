//! Dynamic batching on dedicated model threads.
//!
//! Requests queue in two bounded lanes (full = RESOURCE_EXHAUSTED, never unbounded memory):
//! queries, which a user is waiting for, and documents, which bulk ingest sends by the
//! thousand. A model thread takes whatever is queued in one lane (queries first) up to
//! `max_batch` texts, sorts the texts by length so each forward pass pads as little as
//! possible, runs them in batches bounded by `max_batch` and `max_batch_tokens`, and hands every
//! caller its own vectors in its own order. Between two forward passes over documents it runs
//! any queries that arrived, so a query waits for at most one forward pass however deep the
//! ingest backlog is. Optional query model threads (`model.query_workers`) take only queries,
//! so a query need not wait at all. Inference never runs on the async runtime.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use braid_core::metrics::{Family, Gauge, Histogram};
use tokio::sync::oneshot;

use crate::embedder::InputKind;
use crate::error::EmbeddingError;
use crate::model::Model;

/// How big one forward pass may get.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Texts per forward pass.
    pub max_batch: usize,
    /// Padded tokens per forward pass (texts x longest text, estimated from bytes).
    pub max_batch_tokens: usize,
    /// The model's window: longer texts count as this many tokens.
    pub max_tokens: usize,
}

impl BatchLimits {
    /// ~4 bytes per WordPiece token for English, plus [CLS]/[SEP]; capped at the window.
    fn tokens(&self, text: &str) -> usize {
        (text.len() / 4 + 2).min(self.max_tokens)
    }

    /// Cuts length-sorted items into batches that respect both limits.
    fn split<'a, T>(&self, items: &'a [T], text: impl Fn(&T) -> &str) -> Vec<&'a [T]> {
        let mut batches = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let mut end = start + 1;
            while end < items.len() && end - start < self.max_batch {
                // Sorted ascending, so the new item is the longest of the batch.
                let longest = self.tokens(text(&items[end]));
                if (end - start + 1) * longest > self.max_batch_tokens {
                    break;
                }
                end += 1;
            }
            batches.push(&items[start..end]);
            start = end;
        }
        batches
    }
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

#[derive(Default)]
struct Lanes {
    queries: VecDeque<Job>,
    documents: VecDeque<Job>,
    /// Set when the last `Batcher` handle is dropped: model threads finish and exit.
    closed: bool,
    /// Query model threads waiting for work: while one is, queries are theirs alone.
    idle_query_threads: usize,
}

impl Lanes {
    fn depth(&self) -> i64 {
        (self.queries.len() + self.documents.len()) as i64
    }

    /// Up to `max_batch` texts' worth of jobs from the front of `lane` (at least one job).
    fn take(lane: &mut VecDeque<Job>, max_batch: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut pending = 0;
        while let Some(job) = lane.front() {
            if !jobs.is_empty() && pending + job.texts.len() > max_batch {
                break;
            }
            pending += job.texts.len();
            jobs.extend(lane.pop_front());
        }
        jobs
    }
}

/// What the model threads and the handles share.
struct Shared {
    lanes: Mutex<Lanes>,
    /// Wakes document model threads (they take either lane).
    work: Condvar,
    /// Wakes query model threads (they take queries only).
    query_work: Condvar,
    /// Requests each lane may hold.
    capacity: usize,
    /// Model threads still running.
    alive: AtomicUsize,
    metrics: BatcherMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queries waiting now, if any and no query model thread is free to take them (called
    /// between forward passes over documents).
    fn take_queries(&self, max_batch: usize) -> Vec<Job> {
        let mut lanes = self.lock();
        if lanes.idle_query_threads > 0 {
            return Vec::new();
        }
        let jobs = Lanes::take(&mut lanes.queries, max_batch);
        self.metrics.queue_depth.set(lanes.depth() as f64);
        jobs
    }
}

/// Closes the lanes when the last handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.work.notify_all();
        self.0.query_work.notify_all();
    }
}

/// Handle to the model threads; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    owner: Arc<Owner>,
}

/// Metrics the batcher records.
pub struct BatcherMetrics {
    /// Label `pool`: "document" or "query" model threads.
    pub batch_size: Family<Histogram>,
    pub batch_seconds: Family<Histogram>,
    pub queue_depth: Gauge,
}

impl BatcherMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> Self {
        const POOLS: &[(&str, &[&str])] = &[("pool", &["document", "query"])];
        let batch_size = metrics.histogram_family(
            "embedding_batch_size",
            "texts per model forward pass",
            POOLS,
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        );
        let batch_seconds = metrics.histogram_family(
            "embedding_batch_duration_seconds",
            "model forward pass latency",
            POOLS,
            &braid_core::metrics::latency_buckets(),
        );
        let queue_depth = metrics.gauge("embedding_queue_depth", "requests waiting for the model");
        Self {
            batch_size,
            batch_seconds,
            queue_depth,
        }
    }
}

/// Counts a model thread out when it ends, even by panic.
struct Alive<'a>(&'a Shared);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batcher {
    /// One model thread per model in `models` (each its own copy of the weights) taking work
    /// from both lanes, and one per model in `query_models` taking queries only. `capacity`
    /// bounds each lane (requests, not texts).
    pub fn start(
        models: Vec<Model>,
        query_models: Vec<Model>,
        limits: BatchLimits,
        capacity: usize,
        metrics: BatcherMetrics,
    ) -> Self {
        let shared = Arc::new(Shared {
            lanes: Mutex::new(Lanes::default()),
            work: Condvar::new(),
            query_work: Condvar::new(),
            capacity,
            alive: AtomicUsize::new(models.len()),
            metrics,
        });
        let pools = [(Pool::Document, models), (Pool::Query, query_models)];
        for (pool, models) in pools {
            for (i, model) in models.into_iter().enumerate() {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("braid-embed-{}-{i}", pool.label()))
                    .spawn(move || {
                        // Liveness counts the document threads: without them nothing embeds
                        // documents, whatever the query threads do.
                        let _alive = (pool == Pool::Document).then(|| Alive(&shared));
                        model_thread(model, pool, &shared, limits);
                    })
                    .expect("spawning a model thread");
            }
        }
        Self {
            owner: Arc::new(Owner(shared)),
        }
    }

    /// Whether any model thread is still running.
    pub fn is_alive(&self) -> bool {
        self.owner.0.alive.load(Ordering::SeqCst) > 0
    }

    /// Queues `texts` in the lane of their kind: queries ahead of documents.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        kind: InputKind,
    ) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let shared = &self.owner.0;
        if !self.is_alive() {
            return Err(EmbeddingError::WorkerStopped);
        }
        let (reply, rx) = oneshot::channel();
        let query_thread_idle;
        {
            let mut lanes = shared.lock();
            query_thread_idle = lanes.idle_query_threads > 0;
            let queue = match kind {
                InputKind::Query => &mut lanes.queries,
                InputKind::Document => &mut lanes.documents,
            };
            if queue.len() >= shared.capacity {
                return Err(EmbeddingError::Overloaded {
                    capacity: shared.capacity,
                });
            }
            queue.push_back(Job { texts, reply });
            shared.metrics.queue_depth.set(lanes.depth() as f64);
        }
        // A query goes to an idle query model thread (all cores) if there is one, else to
        // whichever document thread is free first.
        if kind == InputKind::Query && query_thread_idle {
            shared.query_work.notify_one();
        } else {
            shared.work.notify_one();
        }
        rx.await
            .map_err(|_| EmbeddingError::WorkerStopped)?
            .map_err(EmbeddingError::Inference)
    }
}

/// Which model threads a thread belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    /// Both lanes, queries first.
    Document,
    /// Queries only.
    Query,
}

impl Pool {
    fn label(self) -> &'static str {
        match self {
            Pool::Document => "document",
            Pool::Query => "query",
        }
    }
}

fn model_thread(mut model: Model, pool: Pool, shared: &Shared, limits: BatchLimits) {
    let wake = match pool {
        Pool::Document => &shared.work,
        Pool::Query => &shared.query_work,
    };
    // Query threads count themselves idle while they wait (see `Lanes::idle_query_threads`).
    let idle_count = usize::from(pool == Pool::Query);
    loop {
        let (jobs, kind) = {
            let mut lanes = shared.lock();
            let taken = loop {
                // A free query model thread (already woken) runs queries faster than we do.
                let ours = pool == Pool::Query || lanes.idle_query_threads == 0;
                if ours && !lanes.queries.is_empty() {
                    break (
                        Lanes::take(&mut lanes.queries, limits.max_batch),
                        InputKind::Query,
                    );
                }
                if pool == Pool::Document && !lanes.documents.is_empty() {
                    break (
                        Lanes::take(&mut lanes.documents, limits.max_batch),
                        InputKind::Document,
                    );
                }
                if lanes.closed {
                    tracing::info!("model thread stopped");
                    return;
                }
                lanes.idle_query_threads += idle_count;
                lanes = wake.wait(lanes).unwrap_or_else(|p| p.into_inner());
                lanes.idle_query_threads -= idle_count;
            };
            shared.metrics.queue_depth.set(lanes.depth() as f64);
            taken
        };
        run_jobs(
            &mut model,
            pool,
            jobs,
            limits,
            shared,
            kind == InputKind::Document,
        );
    }
}

/// Runs `jobs` in length-sorted forward passes and replies to each. With `yield_to_queries`,
/// queries that arrive meanwhile run between two passes.
fn run_jobs(
    model: &mut Model,
    pool: Pool,
    jobs: Vec<Job>,
    limits: BatchLimits,
    shared: &Shared,
    yield_to_queries: bool,
) {
    let metrics = &shared.metrics;
    // (job, position in job, text) sorted by length to minimise padding.
    let mut items: Vec<(usize, usize, &str)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| {
            job.texts
                .iter()
                .enumerate()
                .map(move |(i, t)| (j, i, t.as_str()))
        })
        .collect();
    items.sort_by_key(|(_, _, t)| t.len());
    let mut results: Vec<Vec<Vec<f32>>> = jobs
        .iter()
        .map(|j| vec![Vec::new(); j.texts.len()])
        .collect();
    let mut failure: Option<String> = None;
    for batch in limits.split(&items, |(_, _, t)| t) {
        if yield_to_queries {
            loop {
                let queries = shared.take_queries(limits.max_batch);
                if queries.is_empty() {
                    break;
                }
                run_jobs(model, pool, queries, limits, shared, false);
            }
        }
        let texts: Vec<&str> = batch.iter().map(|(_, _, t)| *t).collect();
        let started = Instant::now();
        match model.embed(&texts) {
            Ok(vectors) => {
                let label = [pool.label()];
                metrics.batch_size.get(&label).record(texts.len() as f64);
                metrics
                    .batch_seconds
                    .get(&label)
                    .record(started.elapsed().as_secs_f64());
                for ((j, i, _), v) in batch.iter().zip(vectors) {
                    results[*j][*i] = v;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedding batch failed");
                failure = Some(e.to_string());
                break;
            }
        }
    }
    for (job, vectors) in jobs.into_iter().zip(results) {
        let reply = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(vectors),
        };
        let _ = job.reply.send(reply);
    }
}

#[cfg(test)]
mod tests {
    use super::BatchLimits;

    #[test]
    fn batches_respect_count_and_token_budget() {
        let limits = BatchLimits {
            max_batch: 4,
            max_batch_tokens: 100,
            max_tokens: 256,
        };
        // 38 bytes -> 11 tokens; 400 bytes -> 102 tokens; 4000 bytes -> capped at 256.
        let short = "x".repeat(38);
        let long = "x".repeat(400);
        let huge = "x".repeat(4000);
        let mut items: Vec<&str> = vec![short.as_str(); 6];
        items.extend([long.as_str(), long.as_str(), huge.as_str()]);
        let sizes: Vec<usize> = limits
            .split(&items, |t: &&str| *t)
            .iter()
            .map(|b| b.len())
            .collect();
        // Six short ones: count limit 4, then 2; each long one alone (over budget even alone).
        assert_eq!(sizes, vec![4, 2, 1, 1, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), items.len());
        assert!(limits.split(&Vec::<&str>::new(), |t: &&str| *t).is_empty());
    }
}
