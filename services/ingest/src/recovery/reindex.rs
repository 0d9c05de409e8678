//! Reindex runs: start (one per leg at a time), execute in the background, record the
//! outcome. See the module doc of `recovery` for why a text rebuild is a run of its own.

use std::future::Future;
use std::time::Duration;

use braid_proto::v1::{
    RebuildFinishRequest, RebuildStartRequest, RebuildWriteRequest, ReindexRun,
    ReplaceDocumentRequest,
};

use super::store::{DocumentPage, Mode, Started};
use super::{Recovery, leg_error};
use crate::error::IngestError;
use crate::store::Leg;
use crate::worker::to_chunks;

pub async fn start(
    recovery: &Recovery,
    leg: Leg,
    tenant: Option<String>,
    wait: Option<Duration>,
) -> Result<ReindexRun, IngestError> {
    let mode = match (leg, &tenant) {
        (Leg::Text, None) => Mode::Rebuild,
        (Leg::Text, Some(_)) => Mode::InPlace,
        (Leg::Vector, _) => Mode::Repair,
    };
    let total = recovery.store.count_documents(tenant.as_deref()).await?;
    let run = match recovery
        .store
        .start_run(leg, tenant.as_deref(), mode, total)
        .await?
    {
        Started::Run(id) => id,
        Started::Busy(id) => {
            return Err(IngestError::FailedPrecondition(format!(
                "a {} reindex is already running (run {id}); follow it with ReindexStatus",
                leg.as_str()
            )));
        }
    };
    tracing::info!(
        run,
        leg = leg.as_str(),
        mode = mode.as_str(),
        total,
        "reindex started"
    );
    let task = {
        let recovery = recovery.clone();
        tokio::spawn(async move {
            let outcome = execute(&recovery, run, mode, tenant.as_deref()).await;
            let (error, index_id) = match &outcome {
                Ok(index_id) => (None, index_id.as_deref()),
                Err(e) => (Some(e.to_string()), None),
            };
            match &error {
                None => tracing::info!(run, "reindex finished"),
                Some(e) => tracing::warn!(run, error = %e, "reindex failed"),
            }
            // Stored errors are worded for operators (IngestError's messages carry no SQL).
            let stored = error.as_deref().map(|e| match outcome {
                Err(IngestError::Database(_) | IngestError::Unavailable(_)) => {
                    "the document store failed during the run (see the ingest log); run it again"
                }
                _ => e,
            });
            if let Err(e) = recovery.store.finish_run(run, stored, index_id).await {
                tracing::warn!(run, error = %e, "recording the end of a reindex run failed");
            }
        })
    };
    if let Some(wait) = wait {
        // On timeout the run goes on; the caller follows it with ReindexStatus.
        let _ = tokio::time::timeout(wait, task).await;
    }
    recovery.run_status(run, None).await
}

/// Ok(Some(index id)) for a text rebuild.
async fn execute(
    recovery: &Recovery,
    run: i64,
    mode: Mode,
    tenant: Option<&str>,
) -> Result<Option<String>, IngestError> {
    match mode {
        Mode::Repair => {
            recovery
                .verify(tenant, &[Leg::Vector], true, Some(run))
                .await?;
            Ok(None)
        }
        Mode::InPlace => {
            copy(recovery, run, tenant, |page| async move {
                for doc in page {
                    let request = replace_request(&doc);
                    retry(recovery, || async {
                        recovery
                            .downstream
                            .text
                            .clone()
                            .replace_document(request.clone())
                            .await
                            .map(|_| ())
                            .map_err(|s| leg_error("text-search", &s))
                    })
                    .await?;
                }
                Ok(())
            })
            .await?;
            Ok(None)
        }
        Mode::Rebuild => {
            let supersedes_index_id = recovery
                .store
                .recorded_text_index()
                .await?
                .unwrap_or_default();
            let text = recovery.downstream.text.clone();
            let rebuild_id = text
                .clone()
                .rebuild_start(RebuildStartRequest {
                    supersedes_index_id,
                })
                .await
                .map_err(|s| leg_error("text-search", &s))?
                .into_inner()
                .rebuild_id;
            copy(recovery, run, None, |page| {
                let (text, rebuild_id) = (text.clone(), rebuild_id.clone());
                async move {
                    let request = RebuildWriteRequest {
                        rebuild_id,
                        documents: page.iter().map(replace_request).collect(),
                    };
                    retry(recovery, || async {
                        text.clone()
                            .rebuild_write(request.clone())
                            .await
                            .map(|_| ())
                            .map_err(|s| leg_error("text-search", &s))
                    })
                    .await
                }
            })
            .await?;
            let index_id = text
                .clone()
                .rebuild_finish(RebuildFinishRequest { rebuild_id })
                .await
                .map_err(|s| leg_error("text-search", &s))?
                .into_inner()
                .index_id;
            recovery.store.record_text_index(&index_id).await?;
            Ok(Some(index_id))
        }
    }
}

/// Pages through the live documents (of `tenant`, or all), hands each page to `write`, and
/// records progress after it.
async fn copy<'a, F, Fut>(
    recovery: &'a Recovery,
    run: i64,
    tenant: Option<&str>,
    write: F,
) -> Result<(), IngestError>
where
    F: Fn(Vec<DocumentPage>) -> Fut,
    Fut: Future<Output = Result<(), IngestError>> + 'a,
{
    let mut after = None;
    let mut done: i64 = 0;
    loop {
        let page = recovery
            .store
            .documents_page(tenant, after.as_ref(), recovery.config.batch_documents)
            .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some((last.tenant.clone(), last.id));
        done += page.len() as i64;
        write(page).await?;
        recovery.store.progress(run, done, 0).await?;
    }
}

fn replace_request(doc: &DocumentPage) -> ReplaceDocumentRequest {
    let document_id = doc.id.to_string();
    ReplaceDocumentRequest {
        tenant: doc.tenant.clone(),
        chunks: to_chunks(&doc.tenant, &document_id, &doc.payload),
        document_id,
        embeddings: Vec::new(),
        model: String::new(),
        keep_other_models: false,
    }
}

/// Runs `step` up to `recovery.step_attempts` times, backing off from 200 ms.
async fn retry<F, Fut>(recovery: &Recovery, step: F) -> Result<(), IngestError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), IngestError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match step().await {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= recovery.config.step_attempts => return Err(e),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "reindex step failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
        }
    }
}
