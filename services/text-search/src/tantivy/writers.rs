//! The threads that write the Tantivy index, at a lower OS priority than the searches.
//!
//! A bulk ingest keeps the index busy for minutes: staging documents (language detection,
//! analysis), group commits, reader reloads with the id columns of new segments, and segment
//! merges. At the priority of the searches that work took the cores from them: during a
//! re-ingest of SciFact, 1–3% of the text leg's calls passed 50 ms (none before; BENCHMARKS.md,
//! (d)). Every write therefore runs on these threads, whose nice value is `index.writer_nice`
//! above the service's, and the Tantivy writer is created on one of them: the threads it
//! spawns (indexing workers, again at every commit, the segment updater and the merge pool)
//! inherit the priority. Searches stay on the runtime's blocking pool at the service's own
//! priority, so the kernel gives them the cores first; the writes still use every idle cycle.

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

    /// Runs `f` on a writer thread and waits for its result.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T, TextError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, TextError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(f, move |result| {
            let _ = tx.send(result);
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
        self.submit(f, move |result| {
            let _ = tx.send(result);
        })?;
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Queues `f`; `reply` gets its result, a panic as an index error (INTERNAL: ingest charges
    /// the job, as for a panic on the blocking pool, see [`TextError::from_join`]).
    fn submit<T, F>(
        &self,
        f: F,
        reply: impl FnOnce(Result<T, TextError>) + Send + 'static,
    ) -> Result<(), TextError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, TextError> + Send + 'static,
    {
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(TextError::Index(format!(
                    "indexing task panicked: {message}"
                )))
            });
            reply(result);
        });
        self.jobs.send(job).map_err(|_| stopped())
    }
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
        // Every thread is still there to run writes.
        for i in 0..2 * THREADS {
            assert_eq!(pool.run(move || Ok(i)).await.unwrap(), i);
        }
        assert_eq!(pool.run_blocking(|| Ok(7)).unwrap(), 7);
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
