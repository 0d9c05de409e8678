//! Dynamic batching on dedicated model threads.
//!
//! Requests queue in two bounded lanes (full = RESOURCE_EXHAUSTED, never unbounded memory):
//! queries, which a user is waiting for, and documents, which bulk ingest sends by the
//! thousand. A model thread takes whatever is queued in one lane (queries first) up to
//! `max_batch` texts, sorts the texts by length so each forward pass pads as little as
//! possible, runs them in batches bounded by `max_batch` and `max_batch_tokens`, and hands every
//! caller its own vectors in its own order. Queued queries are merged into one forward pass
//! (no waiting for more to arrive: a query thread takes what queued while it was busy). A large
//! document request is cut into shares, one per document model thread, so it runs on every
//! core instead of one. Between two forward passes over documents it runs
//! any queries that arrived, so a query waits for at most one forward pass however deep the
//! ingest backlog is. Optional query model threads (`model.query_workers`) take only queries,
//! so a query need not wait at all. With query model threads, document model threads may run
//! at a lower OS priority (`DocumentThreads::nice`, see `braid_core::priority`) or another
//! graph than the query threads (int8 queries): they then leave every query to the query
//! threads, so a query never runs at the documents' priority or on the wrong graph. A document
//! pass that runs while every other document thread is idle (a lone request too small to
//! share) runs on a multi-threaded model copy (`model.lone_pass_threads`) when it is free, so
//! it uses every core instead of one. Inference never runs on the async runtime.

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

/// How the document model threads run.
#[derive(Clone, Copy, Debug)]
pub struct DocumentThreads {
    /// Added to each document model thread's nice value when it starts (0 = unchanged).
    pub nice: u8,
    /// Whether they also run queries (queued behind a busy query thread, or with none).
    pub take_queries: bool,
}

/// Vectors for one request, or why there are none.
type Reply = Result<Vec<Vec<f32>>, String>;

/// One queued request. Model threads take its texts from the front, possibly in several
/// shares ([`Piece`]s) run by different threads.
struct Job {
    /// Texts not handed out yet.
    texts: Vec<String>,
    /// Position in the request of `texts[0]`.
    offset: usize,
    /// Most texts one model thread takes from it at once: an even share per document thread.
    share: usize,
    state: Arc<JobState>,
}

/// What the shares of one request have in common: the vectors so far and the reply.
struct JobState(Mutex<Progress>);

struct Progress {
    vectors: Vec<Vec<f32>>,
    /// Texts still without a vector.
    left: usize,
    /// Taken when the answer goes out (all vectors, or the first error).
    reply: Option<oneshot::Sender<Reply>>,
}

impl JobState {
    fn new(texts: usize, reply: oneshot::Sender<Reply>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(Progress {
            vectors: vec![Vec::new(); texts],
            left: texts,
            reply: Some(reply),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the request already failed (its other shares need not run).
    fn failed(&self) -> bool {
        self.lock().reply.is_none()
    }

    /// Stores one share's vectors; the last share sends the answer.
    fn finish(&self, offset: usize, vectors: Vec<Vec<f32>>) {
        let mut progress = self.lock();
        let n = vectors.len();
        for (slot, v) in progress.vectors[offset..offset + n].iter_mut().zip(vectors) {
            *slot = v;
        }
        progress.left -= n;
        if progress.left == 0
            && let Some(reply) = progress.reply.take()
        {
            let _ = reply.send(Ok(std::mem::take(&mut progress.vectors)));
        }
    }

    fn fail(&self, error: String) {
        if let Some(reply) = self.lock().reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}

/// The texts one model thread took from one request.
struct Piece {
    state: Arc<JobState>,
    offset: usize,
    texts: Vec<String>,
}

#[derive(Default)]
struct Lanes {
    queries: VecDeque<Job>,
    documents: VecDeque<Job>,
    /// Set when the last `Batcher` handle is dropped: model threads finish and exit.
    closed: bool,
    /// Query model threads waiting for work: while one is, queries are theirs alone.
    idle_query_threads: usize,
    /// Document model threads waiting for work.
    idle_document_threads: usize,
}

impl Lanes {
    fn depth(&self) -> i64 {
        (self.queries.len() + self.documents.len()) as i64
    }

    /// Up to `limit` texts from the front of `lane` (at least one). Requests are taken whole
    /// while they fit; only the first may be cut, when it alone is over `limit`.
    fn take(lane: &mut VecDeque<Job>, limit: usize) -> Vec<Piece> {
        let limit = limit.max(1);
        let mut pieces = Vec::new();
        let mut taken = 0;
        while let Some(job) = lane.front_mut() {
            let left = job.texts.len();
            let n = if taken == 0 {
                left.min(limit)
            } else if taken + left <= limit {
                left
            } else {
                break;
            };
            let texts: Vec<String> = job.texts.drain(..n).collect();
            pieces.push(Piece {
                state: job.state.clone(),
                offset: job.offset,
                texts,
            });
            job.offset += n;
            taken += n;
            if job.texts.is_empty() {
                lane.pop_front();
            }
            if taken >= limit {
                break;
            }
        }
        pieces
    }

    /// A document model thread's share of the document lane: all of it up to `max_batch`
    /// texts, but with several threads and less than a full batch each, an even share, so a
    /// large request is spread over every thread rather than run by one.
    fn take_documents(&mut self, max_batch: usize) -> Vec<Piece> {
        let limit = match self.documents.front() {
            Some(job) if job.texts.len() > job.share => job.share,
            _ => max_batch,
        };
        Self::take(&mut self.documents, limit.min(max_batch))
    }

    /// Whether documents just taken by one of `document_threads` threads are all the work
    /// there is, with every other document thread idle: their pass may use every core.
    fn lone(&self, document_threads: usize) -> bool {
        self.documents.is_empty()
            && self.queries.is_empty()
            && self.idle_document_threads + 1 >= document_threads
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
    /// Document model threads (they share a large request evenly).
    document_threads: usize,
    /// Whether document model threads run queries too (`DocumentThreads::take_queries`).
    documents_take_queries: bool,
    /// Kernel thread id of every model thread, by pool (tests read their priority).
    #[cfg(all(test, target_os = "linux"))]
    tids: Mutex<Vec<(Pool, i32)>>,
    /// Model threads still running.
    alive: AtomicUsize,
    /// The multi-threaded copy for lone document passes (whoever takes it first).
    lone_model: Option<Mutex<Model>>,
    metrics: BatcherMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queries waiting now, if any and no query model thread is free to take them (called
    /// between forward passes over documents).
    fn take_queries(&self, max_batch: usize) -> Vec<Piece> {
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
    /// Label `pool`: "document" or "query" model threads, or "lone" (a lone document pass on
    /// the multi-threaded copy).
    pub batch_size: Family<Histogram>,
    pub batch_seconds: Family<Histogram>,
    pub queue_depth: Gauge,
}

impl BatcherMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> Self {
        const POOLS: &[(&str, &[&str])] = &[("pool", &["document", "query", "lone"])];
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
    /// from both lanes, and one per model in `query_models` taking queries only; `lone_model`
    /// (multi-threaded) runs document passes no other thread competes with. `capacity`
    /// bounds each lane (requests, not texts).
    pub fn start(
        models: Vec<Model>,
        query_models: Vec<Model>,
        lone_model: Option<Model>,
        documents: DocumentThreads,
        limits: BatchLimits,
        capacity: usize,
        metrics: BatcherMetrics,
    ) -> Self {
        // Without query threads someone has to run the queries.
        let documents_take_queries = documents.take_queries || query_models.is_empty();
        let shared = Arc::new(Shared {
            lanes: Mutex::new(Lanes::default()),
            work: Condvar::new(),
            query_work: Condvar::new(),
            capacity,
            document_threads: models.len(),
            documents_take_queries,
            #[cfg(all(test, target_os = "linux"))]
            tids: Mutex::new(Vec::new()),
            alive: AtomicUsize::new(models.len()),
            lone_model: lone_model.map(Mutex::new),
            metrics,
        });
        let pools = [(Pool::Document, models), (Pool::Query, query_models)];
        for (pool, models) in pools {
            for (i, model) in models.into_iter().enumerate() {
                let shared = shared.clone();
                let name = format!("braid-embed-{}-{i}", pool.label());
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || {
                        // Liveness counts the document threads: without them nothing embeds
                        // documents, whatever the query threads do.
                        let _alive = (pool == Pool::Document).then(|| Alive(&shared));
                        if pool == Pool::Document {
                            braid_core::priority::lower_or_warn(
                                documents.nice,
                                &name,
                                "model.document_nice",
                            );
                        }
                        #[cfg(all(test, target_os = "linux"))]
                        shared
                            .tids
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((pool, braid_core::priority::current_tid()));
                        model_thread(model, pool, &shared, limits);
                    })
                    .expect("spawning a model thread");
            }
        }
        Self {
            owner: Arc::new(Owner(shared)),
        }
    }

    /// Kernel thread ids of the model threads started so far, by pool.
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn thread_ids(&self) -> Vec<(Pool, i32)> {
        self.owner
            .0
            .tids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
            let share = match kind {
                InputKind::Query => usize::MAX,
                InputKind::Document => texts.len().div_ceil(shared.document_threads.max(1)),
            };
            queue.push_back(Job {
                state: JobState::new(texts.len(), reply),
                texts,
                offset: 0,
                share: share.max(1),
            });
            shared.metrics.queue_depth.set(lanes.depth() as f64);
        }
        // A query goes to an idle query model thread if there is one, else to whichever
        // document thread is free first (or, when those leave queries alone, to the query
        // thread that finishes first: it takes what queued while it was busy).
        if kind == InputKind::Query && (query_thread_idle || !shared.documents_take_queries) {
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
pub(crate) enum Pool {
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
    // Threads count themselves idle while they wait (see `Lanes::idle_query_threads`).
    let idle_queries = usize::from(pool == Pool::Query);
    let idle_documents = usize::from(pool == Pool::Document);
    loop {
        let (jobs, kind, lone) = {
            let mut lanes = shared.lock();
            let taken = loop {
                // A free query model thread (already woken) runs queries faster than we do.
                let ours = pool == Pool::Query
                    || (shared.documents_take_queries && lanes.idle_query_threads == 0);
                if ours && !lanes.queries.is_empty() {
                    break (
                        Lanes::take(&mut lanes.queries, limits.max_batch),
                        InputKind::Query,
                    );
                }
                if pool == Pool::Document && !lanes.documents.is_empty() {
                    break (lanes.take_documents(limits.max_batch), InputKind::Document);
                }
                if lanes.closed {
                    tracing::info!("model thread stopped");
                    return;
                }
                lanes.idle_query_threads += idle_queries;
                lanes.idle_document_threads += idle_documents;
                lanes = wake.wait(lanes).unwrap_or_else(|p| p.into_inner());
                lanes.idle_query_threads -= idle_queries;
                lanes.idle_document_threads -= idle_documents;
            };
            shared.metrics.queue_depth.set(lanes.depth() as f64);
            // More documents than this thread's share: wake another thread for the rest (a
            // request wakes one thread; each passes the work on, so all of them share it).
            if !lanes.documents.is_empty() {
                shared.work.notify_one();
            }
            let lone = taken.1 == InputKind::Document && lanes.lone(shared.document_threads);
            (taken.0, taken.1, lone)
        };
        run_jobs(
            &mut model,
            pool,
            jobs,
            limits,
            shared,
            kind == InputKind::Document && shared.documents_take_queries,
            lone,
        );
    }
}

/// Runs `pieces` in length-sorted forward passes and hands out their vectors. With
/// `yield_to_queries`, queries that arrive meanwhile run between two passes. With `lone`, the
/// passes run on the multi-threaded copy if there is one and no other thread holds it.
fn run_jobs(
    model: &mut Model,
    pool: Pool,
    mut pieces: Vec<Piece>,
    limits: BatchLimits,
    shared: &Shared,
    yield_to_queries: bool,
    lone: bool,
) {
    let metrics = &shared.metrics;
    // A request that failed in another share is not worth a forward pass.
    pieces.retain(|p| !p.state.failed());
    // (piece, position in piece, text) sorted by length to minimise padding.
    let mut items: Vec<(usize, usize, &str)> = pieces
        .iter()
        .enumerate()
        .flat_map(|(p, piece)| {
            piece
                .texts
                .iter()
                .enumerate()
                .map(move |(i, t)| (p, i, t.as_str()))
        })
        .collect();
    items.sort_by_key(|(_, _, t)| t.len());
    let mut results: Vec<Vec<Vec<f32>>> = pieces
        .iter()
        .map(|p| vec![Vec::new(); p.texts.len()])
        .collect();
    let mut failure: Option<String> = None;
    for batch in limits.split(&items, |(_, _, t)| t) {
        if yield_to_queries {
            loop {
                let queries = shared.take_queries(limits.max_batch);
                if queries.is_empty() {
                    break;
                }
                run_jobs(model, pool, queries, limits, shared, false, false);
            }
        }
        let texts: Vec<&str> = batch.iter().map(|(_, _, t)| *t).collect();
        let started = Instant::now();
        let mut lone_model = lone
            .then(|| shared.lone_model.as_ref()?.try_lock().ok())
            .flatten();
        let (embedded, label) = match lone_model.as_deref_mut() {
            Some(wide) => (wide.embed(&texts), "lone"),
            None => (model.embed(&texts), pool.label()),
        };
        drop(lone_model);
        match embedded {
            Ok(vectors) => {
                let label = [label];
                metrics.batch_size.get(&label).record(texts.len() as f64);
                metrics
                    .batch_seconds
                    .get(&label)
                    .record(started.elapsed().as_secs_f64());
                for ((p, i, _), v) in batch.iter().zip(vectors) {
                    results[*p][*i] = v;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedding batch failed");
                failure = Some(e.to_string());
                break;
            }
        }
    }
    for (piece, vectors) in pieces.into_iter().zip(results) {
        match &failure {
            Some(e) => piece.state.fail(e.clone()),
            None => piece.state.finish(piece.offset, vectors),
        }
    }
}

#[cfg(test)]
mod tests;
