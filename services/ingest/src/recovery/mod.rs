//! Recovery: rebuilding a search leg from PostgreSQL (`reindex`), checking both legs against
//! it (`verify`), and noticing a lost text index (`watch`). `store` holds their SQL.
//!
//! Why a dedicated run (a row in `ingest.reindex_runs` with done/total) and not the outbox
//! for a text rebuild: outbox jobs are per document and write into the *serving* index,
//! while a rebuild must fill a *new* index and switch to it once, when every document is in.
//! A run reads documents in (tenant, id) pages, writes each page with bounded retries and
//! records progress after it; it is one unit with one switch point, and a failed run is
//! simply started again (text-search drops the unfinished index). Per-document repairs (the
//! vector leg, `verify --repair`) do go through the outbox: they are ordinary index jobs.

mod reindex;
pub mod store;
pub mod verify;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use braid_proto::tonic::Status;
use braid_proto::v1::{ReindexRun, VerifyDocumentKey, VerifyListChunksRequest, VerifyResponse};
use tokio::sync::Notify;

use crate::config::RecoveryConfig;
use crate::error::IngestError;
use crate::store::Leg;
use crate::worker::Downstream;
use store::{DocumentPage, RecoveryStore, RunRow};

pub use watch::spawn_text_index_watch;

#[derive(Clone)]
pub struct Recovery {
    pub(crate) store: RecoveryStore,
    pub(crate) downstream: Downstream,
    pub(crate) config: RecoveryConfig,
    /// Wakes the job workers after repairs were enqueued.
    pub(crate) wake: Arc<Notify>,
}

/// A leg's failure in words an operator can act on: the service, the code, and the leg's
/// own message only for the codes whose messages our services word for operators.
pub fn leg_error(service: &str, s: &Status) -> IngestError {
    use braid_proto::tonic::Code;
    let detail = match s.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::Unavailable => {
            s.message().chars().take(400).collect::<String>()
        }
        _ => String::new(),
    };
    IngestError::LegUnavailable(
        format!("{service}: {:?} {detail}", s.code())
            .trim()
            .to_string(),
    )
}

pub fn to_run(row: RunRow) -> ReindexRun {
    ReindexRun {
        run_id: row.id,
        leg: row.leg,
        tenant: row.tenant.unwrap_or_default(),
        mode: row.mode,
        state: row.state,
        done: row.done.max(0) as u64,
        total: row.total.max(0) as u64,
        enqueued: row.enqueued.max(0) as u64,
        error: row.error.unwrap_or_default(),
        index_id: row.index_id.unwrap_or_default(),
        started_at: Some(braid_proto::timestamp_from_millis(row.started_ms)),
        finished_at: row.finished_ms.map(braid_proto::timestamp_from_millis),
    }
}

/// Result of checking one page of documents.
#[derive(Default)]
pub struct Checked {
    pub drift: Vec<braid_proto::v1::VerifyDrift>,
    pub truncated: bool,
    pub documents: u64,
    pub chunks: u64,
    pub in_flight: u64,
    pub repaired: u64,
}

impl Recovery {
    /// Starts a reindex run (see the module doc); with `wait`, returns when it finished or
    /// the wait passed, else at once.
    pub async fn reindex(
        &self,
        leg: Leg,
        tenant: Option<String>,
        wait: Option<Duration>,
    ) -> Result<ReindexRun, IngestError> {
        reindex::start(self, leg, tenant, wait).await
    }

    pub async fn run_status(
        &self,
        id: i64,
        tenant: Option<&str>,
    ) -> Result<ReindexRun, IngestError> {
        self.store
            .run(id, tenant)
            .await?
            .map(to_run)
            .ok_or(IngestError::NotFound)
    }

    /// Compares `legs` of every live document (of `tenant`, or all) with PostgreSQL;
    /// `repair` enqueues an upsert job per drifted document and leg; `run` records progress
    /// in that reindex run after each page.
    pub async fn verify(
        &self,
        tenant: Option<&str>,
        legs: &[Leg],
        repair: bool,
        run: Option<i64>,
    ) -> Result<Checked, IngestError> {
        let mut checked = Checked::default();
        let mut after: Option<(String, uuid::Uuid)> = None;
        loop {
            let page = self
                .store
                .documents_page(tenant, after.as_ref(), self.config.batch_documents)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.tenant.clone(), last.id));
            self.check_page(&page, legs, repair, &mut checked).await?;
            if let Some(run) = run {
                self.store
                    .progress(run, checked.documents as i64, checked.repaired as i64)
                    .await?;
            }
        }
        if checked.repaired > 0 {
            self.wake.notify_waiters();
        }
        Ok(checked)
    }

    async fn check_page(
        &self,
        page: &[DocumentPage],
        legs: &[Leg],
        repair: bool,
        checked: &mut Checked,
    ) -> Result<(), IngestError> {
        let settled: Vec<&DocumentPage> = page.iter().filter(|d| !d.in_flight).collect();
        checked.documents += page.len() as u64;
        checked.in_flight += (page.len() - settled.len()) as u64;
        checked.chunks += settled
            .iter()
            .map(|d| d.payload.chunks.len() as u64)
            .sum::<u64>();
        if settled.is_empty() {
            return Ok(());
        }
        let request = VerifyListChunksRequest {
            documents: settled
                .iter()
                .map(|d| VerifyDocumentKey {
                    tenant: d.tenant.clone(),
                    document_id: d.id.to_string(),
                })
                .collect(),
        };
        for &leg in legs {
            let listed = match leg {
                Leg::Text => self
                    .downstream
                    .text
                    .clone()
                    .verify_list_chunks(request.clone())
                    .await
                    .map_err(|s| leg_error("text-search", &s))?,
                Leg::Vector => self
                    .downstream
                    .vector
                    .clone()
                    .verify_list_chunks(request.clone())
                    .await
                    .map_err(|s| leg_error("vector-search", &s))?,
            }
            .into_inner()
            .chunks;
            let by_doc = verify::group(&listed);
            for doc in &settled {
                let id = doc.id.to_string();
                let held = by_doc
                    .get(&(doc.tenant.as_str(), id.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let drift = verify::compare(doc, leg, held);
                if drift.is_empty() {
                    continue;
                }
                if repair && self.store.enqueue_repair(doc, leg).await? {
                    checked.repaired += 1;
                }
                for d in drift {
                    if checked.drift.len() < verify::MAX_DRIFT {
                        checked.drift.push(d);
                    } else {
                        checked.truncated = true;
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn verify_response(
        &self,
        tenant: Option<&str>,
        repair: bool,
    ) -> Result<VerifyResponse, IngestError> {
        let c = self.verify(tenant, &Leg::BOTH, repair, None).await?;
        Ok(VerifyResponse {
            documents_checked: c.documents,
            chunks_checked: c.chunks,
            documents_in_flight: c.in_flight,
            drift: c.drift,
            repaired: c.repaired as u32,
            truncated: c.truncated,
        })
    }
}
