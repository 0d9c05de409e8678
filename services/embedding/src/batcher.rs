//! Dynamic batching on a dedicated model thread.
//!
//! Requests queue on a bounded channel (full queue = RESOURCE_EXHAUSTED, never unbounded
//! memory). The model thread takes whatever is queued up to `max_batch` texts, sorts the texts
//! by length so each forward pass pads as little as possible, runs them in batches of at most
//! `max_batch`, and hands every caller its own vectors in its own order. Inference never runs
//! on the async runtime.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntGauge};
use tokio::sync::{mpsc, oneshot};

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

/// Handle to the model thread; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    capacity: usize,
    queue_depth: IntGauge,
}

/// Metrics the batcher records.
pub struct BatcherMetrics {
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub queue_depth: IntGauge,
}

impl BatcherMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> Self {
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("embedding_batch_size", "texts per model forward pass")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )
        .expect("static metric");
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "embedding_batch_duration_seconds",
                "model forward pass latency",
            )
            .buckets(braid_core::metrics::latency_buckets()),
        )
        .expect("static metric");
        let queue_depth = IntGauge::new("embedding_queue_depth", "requests waiting for the model")
            .expect("static metric");
        metrics.register(Box::new(batch_size.clone()));
        metrics.register(Box::new(batch_seconds.clone()));
        metrics.register(Box::new(queue_depth.clone()));
        Self {
            batch_size,
            batch_seconds,
            queue_depth,
        }
    }
}

impl Batcher {
    /// One model thread per model in `models` (each its own copy of the weights); they take
    /// work from one shared queue.
    pub fn start(
        models: Vec<Model>,
        limits: BatchLimits,
        capacity: usize,
        metrics: BatcherMetrics,
    ) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        let queue_depth = metrics.queue_depth.clone();
        let rx = Arc::new(Mutex::new(rx));
        let metrics = Arc::new(metrics);
        for (i, model) in models.into_iter().enumerate() {
            let (rx, metrics) = (rx.clone(), metrics.clone());
            std::thread::Builder::new()
                .name(format!("braid-embedding-model-{i}"))
                .spawn(move || model_thread(model, &rx, limits, &metrics))
                .expect("spawning a model thread");
        }
        Self {
            tx,
            capacity,
            queue_depth,
        }
    }

    /// Whether the model thread is still running.
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job { texts, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => EmbeddingError::Overloaded {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => EmbeddingError::WorkerStopped,
            })?;
        self.queue_depth
            .set((self.capacity - self.tx.capacity()) as i64);
        rx.await
            .map_err(|_| EmbeddingError::WorkerStopped)?
            .map_err(EmbeddingError::Inference)
    }
}

fn model_thread(
    mut model: Model,
    rx: &Mutex<mpsc::Receiver<Job>>,
    limits: BatchLimits,
    metrics: &BatcherMetrics,
) {
    let max_batch = limits.max_batch;
    loop {
        // Idle threads wait on the lock; the one holding it waits for work, then takes
        // whatever is queued (up to max_batch texts) and lets the next thread in.
        let jobs = {
            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut pending = first.texts.len();
            let mut jobs = vec![first];
            while pending < max_batch {
                match rx.try_recv() {
                    Ok(job) => {
                        pending += job.texts.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            metrics.queue_depth.set(rx.len() as i64);
            jobs
        };
        run_jobs(&mut model, jobs, limits, metrics);
    }
    tracing::info!("model thread stopped");
}

fn run_jobs(model: &mut Model, jobs: Vec<Job>, limits: BatchLimits, metrics: &BatcherMetrics) {
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
        let texts: Vec<&str> = batch.iter().map(|(_, _, t)| *t).collect();
        let started = Instant::now();
        match model.embed(&texts) {
            Ok(vectors) => {
                metrics.batch_size.observe(texts.len() as f64);
                metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
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
