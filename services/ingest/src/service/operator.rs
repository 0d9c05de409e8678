//! The operator RPCs: the job queue and dead-letter queue (list, retry, discard),
//! re-embedding, statistics, reindex runs and verification of both legs.

use braid_core::auth::Principal;
use braid_proto::tonic::{Response, Status};
use braid_proto::v1::{
    DiscardJobsRequest, DiscardJobsResponse, Job, JobState, ListJobsRequest, ListJobsResponse,
    ModelInfoRequest, PurgeModelsRequest, ReembedRequest, ReembedResponse, ReindexLeg,
    ReindexRequest, ReindexResponse, ReindexStatusRequest, RetryJobsRequest, RetryJobsResponse,
    StatsRequest, StatsResponse, VerifyRequest, VerifyResponse,
};

use super::{IngestApi, tenant_scope};
use crate::error::IngestError;
use crate::store::{JobRow, JobSelection, Leg};

const MAX_JOB_PAGE: u32 = 500;

fn job_state(s: &str) -> JobState {
    match s {
        "pending" => JobState::Pending,
        "running" => JobState::Running,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        "discarded" => JobState::Discarded,
        _ => JobState::Unspecified,
    }
}

fn job_state_db(s: JobState) -> Option<&'static str> {
    match s {
        JobState::Unspecified => None,
        JobState::Pending => Some("pending"),
        JobState::Running => Some("running"),
        JobState::Done => Some("done"),
        JobState::Dead => Some("dead"),
        JobState::Discarded => Some("discarded"),
    }
}

fn to_job(row: JobRow) -> Job {
    Job {
        job_id: row.id,
        document_id: row.document_id.to_string(),
        tenant: row.tenant,
        external_id: row.external_id,
        leg: row.leg,
        op: row.op,
        state: job_state(&row.state) as i32,
        attempts: row.attempts.max(0) as u32,
        last_error: row.last_error.unwrap_or_default(),
        created_at: Some(braid_proto::timestamp_from_millis(row.created_ms)),
        updated_at: Some(braid_proto::timestamp_from_millis(row.updated_ms)),
        run_after: Some(braid_proto::timestamp_from_millis(row.run_after_ms)),
    }
}

impl IngestApi {
    fn selection<'a>(
        ids: &'a [i64],
        all_dead: bool,
        tenant: Option<&'a str>,
    ) -> Result<JobSelection<'a>, IngestError> {
        if ids.is_empty() && !all_dead {
            return Err(IngestError::invalid(
                "job_ids",
                "give job ids, or set all_dead",
            ));
        }
        Ok(JobSelection {
            ids,
            all_dead,
            tenant,
        })
    }

    pub(super) async fn jobs_page(
        &self,
        caller: &Principal,
        r: ListJobsRequest,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let tenant = tenant_scope(caller, &r.tenant)?;
        let mut states = Vec::new();
        for s in &r.states {
            match JobState::try_from(*s).ok().and_then(job_state_db) {
                Some(state) => states.push(state),
                None => {
                    return Err(
                        IngestError::invalid("states", format!("unknown job state {s}")).into(),
                    );
                }
            }
        }
        if states.is_empty() {
            states.push("dead");
        }
        let leg = match r.leg.as_str() {
            "" => None,
            "vector" | "text" => Some(r.leg.as_str()),
            other => {
                return Err(IngestError::invalid(
                    "leg",
                    format!("`{other}` is not one of vector, text"),
                )
                .into());
            }
        };
        let page_size = if r.page_size == 0 { 50 } else { r.page_size };
        if page_size > MAX_JOB_PAGE {
            return Err(IngestError::invalid(
                "page_size",
                format!("{page_size}, at most {MAX_JOB_PAGE}"),
            )
            .into());
        }
        let after: i64 = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse().map_err(|_| {
                IngestError::invalid("page_token", "not a token from a previous response")
            })?
        };
        let rows = self
            .store
            .list_jobs(tenant.as_deref(), &states, leg, after, page_size as i64 + 1)
            .await
            .map_err(IngestError::from)?;
        let more = rows.len() > page_size as usize;
        let jobs: Vec<Job> = rows
            .into_iter()
            .take(page_size as usize)
            .map(to_job)
            .collect();
        let next_page_token = if more {
            jobs.last()
                .map(|j| j.job_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    pub(super) async fn retry_selected(
        &self,
        caller: &Principal,
        r: RetryJobsRequest,
    ) -> Result<Response<RetryJobsResponse>, Status> {
        let tenant = tenant_scope(caller, &r.tenant)?;
        let selection = Self::selection(&r.job_ids, r.all_dead, tenant.as_deref())?;
        let retried = self
            .store
            .retry_jobs(&selection)
            .await
            .map_err(IngestError::from)?;
        if retried > 0 {
            self.wake.notify_waiters();
        }
        Ok(Response::new(RetryJobsResponse { retried }))
    }

    pub(super) async fn discard_selected(
        &self,
        caller: &Principal,
        r: DiscardJobsRequest,
    ) -> Result<Response<DiscardJobsResponse>, Status> {
        let tenant = tenant_scope(caller, &r.tenant)?;
        let selection = Self::selection(&r.job_ids, r.all_dead, tenant.as_deref())?;
        let discarded = self
            .store
            .discard_jobs(&selection)
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(DiscardJobsResponse { discarded }))
    }

    pub(super) async fn reembed_documents(
        &self,
        caller: &Principal,
        r: ReembedRequest,
    ) -> Result<Response<ReembedResponse>, Status> {
        let scope = tenant_scope(caller, &r.tenant)?;
        let tenant = scope.as_deref();
        if r.purge_other_models && caller.access.tenant.is_some() {
            return Err(IngestError::PermissionDenied(
                "purge_other_models affects every tenant: it needs a cross-tenant admin".into(),
            )
            .into());
        }
        let model = self
            .downstream
            .embedding
            .clone()
            .model_info(ModelInfoRequest {})
            .await
            .map_err(|s| {
                Status::unavailable(format!(
                    "embedding service (asked for its model): {}",
                    s.message()
                ))
            })?
            .into_inner()
            .model;
        let (mut enqueued, mut purged) = (0, 0);
        if r.purge_other_models {
            if tenant.is_some() {
                return Err(IngestError::invalid(
                    "tenant",
                    "purge_other_models applies to every tenant; leave tenant empty",
                )
                .into());
            }
            let remaining = self
                .store
                .reembed_candidates(None, &model)
                .await
                .map_err(IngestError::from)?;
            if remaining > 0 {
                return Err(Status::failed_precondition(format!(
                    "{remaining} documents are not yet embedded with {model}: re-embed (and let \
                     the jobs finish) before purging the other models' vectors"
                )));
            }
            purged = self
                .downstream
                .vector
                .clone()
                .purge_models(PurgeModelsRequest {
                    keep_model: model.clone(),
                })
                .await?
                .into_inner()
                .deleted;
        } else if !r.dry_run {
            enqueued = self
                .store
                .enqueue_reembed(tenant, &model)
                .await
                .map_err(IngestError::from)?;
            if enqueued > 0 {
                self.wake.notify_waiters();
            }
            tracing::info!(%model, enqueued, tenant = ?tenant, "re-embedding enqueued");
        }
        let remaining = self
            .store
            .reembed_candidates(tenant, &model)
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(ReembedResponse {
            model,
            enqueued: enqueued as u32,
            remaining: remaining as u32,
            purged,
        }))
    }

    pub(super) async fn tenant_stats(
        &self,
        caller: &Principal,
        r: StatsRequest,
    ) -> Result<Response<StatsResponse>, Status> {
        let tenant = tenant_scope(caller, &r.tenant)?;
        let stats = self
            .store
            .stats(tenant.as_deref())
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(StatsResponse {
            documents_total: stats.by_status.values().sum::<i64>() as u64,
            documents_by_status: stats
                .by_status
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect(),
            chunks_total: stats.chunks as u64,
            queue_depth: stats.queue_depth as u64,
            oldest_pending_age_seconds: stats.oldest_pending_seconds,
            dead_jobs: stats.dead as u64,
            last_sync_at: stats.last_sync_ms.map(braid_proto::timestamp_from_millis),
        }))
    }

    pub(super) async fn start_reindex(
        &self,
        caller: &Principal,
        r: ReindexRequest,
    ) -> Result<Response<ReindexResponse>, Status> {
        let tenant = tenant_scope(caller, &r.tenant)?;
        let leg = match ReindexLeg::try_from(r.leg) {
            Ok(ReindexLeg::Text) => Leg::Text,
            Ok(ReindexLeg::Vector) => Leg::Vector,
            _ => {
                return Err(IngestError::invalid(
                    "leg",
                    "must be REINDEX_LEG_TEXT or REINDEX_LEG_VECTOR",
                )
                .into());
            }
        };
        let wait = if r.wait {
            Some(self.wait_timeout(r.wait_timeout_ms)?)
        } else {
            None
        };
        let run = self.recovery.reindex(leg, tenant, wait).await?;
        Ok(Response::new(ReindexResponse { run: Some(run) }))
    }

    pub(super) async fn reindex_run(
        &self,
        caller: &Principal,
        r: ReindexStatusRequest,
    ) -> Result<Response<ReindexResponse>, Status> {
        // A tenant-bound admin sees its own tenant's runs only.
        let tenant = caller.access.tenant.clone();
        let run = self
            .recovery
            .run_status(r.run_id, tenant.as_deref())
            .await?;
        Ok(Response::new(ReindexResponse { run: Some(run) }))
    }

    pub(super) async fn verify_legs(
        &self,
        caller: &Principal,
        r: VerifyRequest,
    ) -> Result<Response<VerifyResponse>, Status> {
        let tenant = tenant_scope(caller, &r.tenant)?;
        Ok(Response::new(
            self.recovery
                .verify_response(tenant.as_deref(), r.repair)
                .await?,
        ))
    }
}
