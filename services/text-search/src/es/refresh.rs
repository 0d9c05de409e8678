//! Read-your-writes without a refresh per write: after its bulk, a write waits for one
//! `_refresh` of the serving index that *started after* the bulk returned. At most one
//! refresh is in flight; writers that finish while one runs share the next, so under load
//! there is one refresh per refresh round trip however many writes there are (Elasticsearch's
//! guidance: never refresh per document). A failed refresh fails the writers that waited
//! for it (the write itself is done; the job's retry is idempotent).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::TextError;

#[derive(Default)]
pub struct Coalescer {
    /// Refreshes started so far (the generation of the latest).
    started: AtomicU64,
    /// The latest generation that completed; held while a refresh runs.
    completed: tokio::sync::Mutex<u64>,
}

impl Coalescer {
    /// Returns once a refresh that started after this call has completed, running
    /// `refresh` itself when none has. `refresh` is only ever run by one caller at a time.
    pub async fn after_write<F, Fut>(&self, refresh: F) -> Result<(), TextError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), TextError>>,
    {
        // A refresh of a later generation starts after this load, so after our write.
        let wanted = self.started.load(Ordering::SeqCst) + 1;
        let mut completed = self.completed.lock().await;
        if *completed >= wanted {
            return Ok(());
        }
        let generation = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        refresh().await?;
        *completed = generation;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn concurrent_writers_share_refreshes_and_each_sees_one_after_it() {
        let coalescer = Arc::new(Coalescer::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let refresh = |runs: Arc<AtomicUsize>,
                       in_flight: Arc<AtomicUsize>,
                       gate: Arc<tokio::sync::Semaphore>| {
            move || async move {
                assert_eq!(in_flight.fetch_add(1, Ordering::SeqCst), 0, "one at a time");
                gate.acquire().await.unwrap().forget();
                in_flight.fetch_sub(1, Ordering::SeqCst);
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        // The first writer starts a refresh and is held inside it.
        let first = tokio::spawn({
            let (c, f) = (
                coalescer.clone(),
                refresh(runs.clone(), in_flight.clone(), gate.clone()),
            );
            async move { c.after_write(f).await }
        });
        while in_flight.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Ten writers finish while it runs: none may count on it (it started before them).
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let (c, f) = (
                    coalescer.clone(),
                    refresh(runs.clone(), in_flight.clone(), gate.clone()),
                );
                tokio::spawn(async move { c.after_write(f).await })
            })
            .collect();
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        first.await.unwrap().unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the ten shared one refresh after the first"
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_fails_its_writer_and_the_next_one_refreshes_again() {
        let coalescer = Coalescer::default();
        let err = coalescer
            .after_write(|| async { Err(TextError::Unavailable("down".into())) })
            .await;
        assert!(err.is_err());
        let ran = AtomicUsize::new(0);
        coalescer
            .after_write(|| async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
