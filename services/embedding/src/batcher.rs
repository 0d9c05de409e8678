//! Dynamic batching on a dedicated model thread.
//!
//! Requests queue on a bounded channel (full queue = RESOURCE_EXHAUSTED, never unbounded
//! memory). The model thread takes whatever is queued up to `max_batch` texts, sorts the texts
//! by length so each forward pass pads as little as possible, runs them in batches of at most
//! `max_batch`, and hands every caller its own vectors in its own order. Inference never runs
//! on the async runtime.

use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntGauge};
use tokio::sync::{mpsc, oneshot};

use crate::error::EmbeddingError;
use crate::model::Model;

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
    pub fn start(model: Model, max_batch: usize, capacity: usize, metrics: BatcherMetrics) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        let queue_depth = metrics.queue_depth.clone();
        std::thread::Builder::new()
            .name("braid-embedding-model".into())
            .spawn(move || model_thread(model, rx, max_batch, metrics))
            .expect("spawning the model thread");
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
    model: Model,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    metrics: BatcherMetrics,
) {
    while let Some(first) = rx.blocking_recv() {
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
        run_jobs(&model, jobs, max_batch, &metrics);
    }
    tracing::info!("model thread stopped");
}

fn run_jobs(model: &Model, jobs: Vec<Job>, max_batch: usize, metrics: &BatcherMetrics) {
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
    for batch in items.chunks(max_batch) {
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
