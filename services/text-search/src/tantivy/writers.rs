//! The threads that write the Tantivy index, at a lower OS priority than the searches.
//!
//! A bulk ingest keeps the index busy for minutes: staging documents (language detection,
//! analysis), group commits, reader reloads with the id columns of new segments, and segment
//! merges. Every write runs on these threads, whose nice value is `index.writer_nice` above the
//! service's, and the Tantivy writer is created on one of them: the threads it spawns (indexing
//! workers, again at every commit, the segment updater and the merge pool) inherit the
//! priority. Searches stay on the runtime's blocking pool at the service's own priority, so
//! when both want the cores the kernel gives them to searches first; the writes still use every
//! idle cycle. (The text leg's tail during a re-ingest of SciFact was the id columns searches
//! built themselves, fixed in [`super::columns`]; at 20 searches/s the priority showed no gain
//! of its own: BENCHMARKS.md, (d).)

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use crate::error::TextError;

type Job = Box<dyn FnOnce() + Send>;

/// Writer threads: enough for a group commit to gather the concurrent writes of a few ingest
/// workers (4 per ingest process by default) under one commit. Idle ones cost nothing.
const THREADS: usize = 8;

pub(super) struct WritePool {
    jobs: mpsc::Sender<Job>,
}

impl WritePool {
    /// Starts the threads, each lowering its own priority by `nice` (0 = the service's).
    pub(super) fn start(nice: u8) -> Result<Self, TextError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..THREADS {
            let queue = queue.clone();
            let name = format!("text-write-{i}");
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    braid_core::priority::lower_or_warn(nice, &name, "index.writer_nice");
                    // Ends once every sender is gone (the index dropped) and the queue is empty.
                    loop {
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| TextError::Index(format!("starting the index writer threads: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a writer thread and waits for its result. A caller that stopped waiting
    /// (its deadline passed) before a thread took the job is not written for.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, TextError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, TextError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(move || {
            if !tx.is_closed() {
                let _ = tx.send(guarded(f));
            }
        })?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`WritePool::run`] for synchronous callers (opening the index, off the async runtime).
    pub(super) fn run_blocking<T, F>(&self, f: F) -> Result<T, TextError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, TextError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(move || {
            let _ = tx.send(guarded(f));
        })?;
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), TextError> {
        self.jobs.send(Box::new(job)).map_err(|_| stopped())
    }
}

/// Runs `f`, a panic as an index error (INTERNAL: ingest charges the job, as for a panic on
/// the blocking pool, see [`TextError::from_join`]).
fn guarded<T>(f: impl FnOnce() -> Result<T, TextError>) -> Result<T, TextError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(TextError::Index(format!(
            "indexing task panicked: {message}"
        )))
    })
}

/// The threads are gone (only while the service stops): worth trying again.
fn stopped() -> TextError {
    TextError::Task("the index writer threads have stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_write_is_an_index_error_and_the_threads_go_on() {
        let pool = WritePool::start(0).unwrap();
        let err = pool
            .run(|| -> Result<(), TextError> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TextError::Index(m) if m.contains("boom")),
            "{err:?}"
        );
        // Every thread is still there: THREADS jobs run at once (each waits until all have
        // started).
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs: Vec<_> = (0..THREADS)
            .map(|_| {
                let started = started.clone();
                pool.run(move || {
                    use std::sync::atomic::Ordering;
                    started.fetch_add(1, Ordering::SeqCst);
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                    while started.load(Ordering::SeqCst) < THREADS {
                        if std::time::Instant::now() > deadline {
                            return Ok(false);
                        }
                        std::thread::yield_now();
                    }
                    Ok(true)
                })
            })
            .collect();
        let together = futures::future::join_all(jobs).await;
        let met = together.iter().filter(|r| matches!(r, Ok(true))).count();
        assert_eq!(
            met, THREADS,
            "{met} of {THREADS} jobs saw all {THREADS} running at once"
        );
        assert_eq!(pool.run_blocking(|| Ok(7)).unwrap(), 7);
    }

    #[tokio::test]
    async fn a_write_whose_caller_left_before_it_started_is_not_made() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::Duration;

        let pool = Arc::new(WritePool::start(0).unwrap());
        // Every thread busy until the gate opens.
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let busy: Vec<_> = (0..THREADS)
            .map(|_| {
                let (pool, gate, entered) = (pool.clone(), gate.clone(), entered.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        entered.fetch_add(1, Ordering::SeqCst);
                        let (open, cv) = &*gate;
                        let mut open = open.lock().unwrap();
                        while !*open {
                            open = cv.wait(open).unwrap();
                        }
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        while entered.load(Ordering::SeqCst) < THREADS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let written = Arc::new(AtomicBool::new(false));
        let w = written.clone();
        let left = tokio::time::timeout(
            Duration::from_millis(50),
            pool.run(move || {
                w.store(true, Ordering::SeqCst);
                Ok(())
            }),
        )
        .await;
        assert!(
            left.is_err(),
            "the caller gave up while every thread was busy"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for job in busy {
            job.await.unwrap().unwrap();
        }
        // The queue is first in, first out: once a later job ran, the abandoned one was taken.
        for _ in 0..THREADS {
            pool.run(|| Ok(())).await.unwrap();
        }
        assert!(
            !written.load(Ordering::SeqCst),
            "the abandoned write was made"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writer_and_every_thread_it_spawns_run_below_the_service() {
        use std::collections::HashMap;
        use std::time::{Duration, Instant};

        use braid_core::priority::{all_tids, current_tid, name_of, nice_of};
        use braid_proto::v1::Chunk;

        use crate::config::{IndexConfig, SearchConfig};
        use crate::index::TextIndex;
        use crate::tantivy::TantivyIndex;

        // 7: a nice increment no other test in this binary uses, so the threads counted below
        // are this index's.
        let base = nice_of(current_tid()).expect("own nice value");
        let lowered = (base + 7).min(19);
        let dir = tempfile::tempdir().unwrap();
        let config = IndexConfig {
            dir: dir.path().to_path_buf(),
            writer_memory_mb: 20,
            writer_threads: 1,
            writer_nice: 7,
            ..IndexConfig::default()
        };
        let idx = TantivyIndex::open(&config, &SearchConfig::default()).unwrap();
        let chunk = Chunk {
            acl: None,
            chunk_id: "d:0".into(),
            document_id: "d".into(),
            tenant: "t".into(),
            external_id: "ext-d".into(),
            title: String::new(),
            text: "a few words".into(),
            ordinal: 0,
            metadata: HashMap::new(),
        };
        // A commit: Tantivy starts the next indexing worker from the committing thread.
        idx.replace_document("t", "d", vec![chunk]).await.unwrap();
        // Comm names keep 15 bytes: `thrd-tantivy-index0` reads `thrd-tantivy-in`.
        let kinds = [
            "text-write-",
            "thrd-tantivy-in",
            "segment_updater",
            "merge_thread_",
        ];
        let lowered_of = |prefix: &str| {
            all_tids()
                .into_iter()
                .filter(|&t| name_of(t).is_some_and(|n| n.starts_with(prefix)))
                .filter(|&t| nice_of(t) == Some(lowered))
                .count()
        };
        // The writer threads lower themselves as they start: give the idle ones a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lowered_of("text-write-") < THREADS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for prefix in kinds {
            let n = lowered_of(prefix);
            let want = if prefix == "text-write-" { THREADS } else { 1 };
            assert!(
                n >= want,
                "{n} `{prefix}` thread(s) at nice {lowered}, want {want}"
            );
        }
        assert_eq!(
            idx.search(super::super::tests::query("t", "words"))
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
