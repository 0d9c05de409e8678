//! Noticing a lost text index. Text-search cannot tell a first start from an index lost
//! together with its directory (both look like "no index yet"); ingest can, because it
//! records the id of the index it writes to. This task asks text-search, every
//! `recovery.text_index_check_ms`, whether it still serves that index (or a rebuilt
//! successor); if not, text-search reports NOT_SERVING with the reason and refuses searches
//! instead of answering them from an empty index. The first id seen is recorded; after a
//! rebuild the new id replaces it.

use std::time::Duration;

use braid_proto::v1::RebuildStatusRequest;
use tokio::task::JoinHandle;

use super::Recovery;

pub fn spawn_text_index_watch(recovery: Recovery) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_millis(recovery.config.text_index_check_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tick.tick().await;
            match check(&recovery).await {
                Ok(None) => warned = false,
                Ok(Some(reason)) => {
                    if !warned {
                        tracing::error!(%reason, "the text index is not serving");
                    }
                    warned = true;
                }
                Err(e) => tracing::debug!(error = %e, "checking the text index failed"),
            }
        }
    })
}

/// Ok(Some(reason)) when text-search does not serve the recorded index.
async fn check(recovery: &Recovery) -> Result<Option<String>, String> {
    let recorded = recovery
        .store
        .recorded_text_index()
        .await
        .map_err(|e| e.to_string())?;
    let status = recovery
        .downstream
        .text
        .clone()
        .rebuild_status(RebuildStatusRequest {
            expected_index_id: recorded.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if !status.serving {
        return Ok(Some(status.reason));
    }
    if !status.index_id.is_empty() && recorded.as_deref() != Some(status.index_id.as_str()) {
        recovery
            .store
            .record_text_index(&status.index_id)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(None)
}
