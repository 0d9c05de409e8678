//! Files re-read on change: key rings (`auth::keys`) and TLS certificates (`tls`) are polled
//! at a short interval and taken up without a restart. Content, not modification time, is
//! compared: a Kubernetes Secret volume swaps a symlink, and a file rewritten within one
//! second keeps its mtime on some filesystems.

use std::path::PathBuf;
use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Reads `paths` now and then every `every`; calls `apply` with their contents on the first
/// read (so a change between the owner's start-up load and this task is not missed: `apply`
/// must be a no-op for what is already in use) and whenever they differ from the last read.
/// A file that cannot be read skips the round (a Secret update may briefly remove it). Ends
/// when `owner` is dropped.
pub fn spawn_watch<W, F>(
    owner: Weak<W>,
    paths: Vec<PathBuf>,
    every: Duration,
    apply: F,
) -> JoinHandle<()>
where
    W: Send + Sync + 'static,
    F: Fn(&W, &[Vec<u8>]) + Send + 'static,
{
    tokio::spawn(async move {
        let mut last: Option<Vec<Vec<u8>>> = None;
        let mut failing = false;
        loop {
            if owner.strong_count() == 0 {
                return;
            }
            match read_all(&paths).await {
                Ok(contents) => {
                    failing = false;
                    if last.as_ref() != Some(&contents) {
                        let Some(target) = owner.upgrade() else {
                            return;
                        };
                        apply(&target, &contents);
                        last = Some(contents);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "watched file unreadable; keeping what was loaded");
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

async fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        contents.push(
            tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        );
    }
    Ok(contents)
}
