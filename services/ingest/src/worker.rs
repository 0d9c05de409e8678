//! Outbox workers: claim a job, push the document's current chunks to its leg (embedding them
//! first for the vector leg), record the result. Retryable failures are retried with
//! exponential backoff and full jitter; after `max_attempts`, or at once for a non-retryable
//! failure, the job is dead-lettered and the document shows PARTIAL or FAILED. A leg that is
//! not serving pauses its jobs instead of charging them (`outage.rs`).

use std::sync::Arc;
use std::time::Duration;

use braid_core::client::Channel;
use braid_core::metrics::{Counter, Family};
use braid_core::shutdown::Stopping;
use braid_proto::tonic::{Code, Status};
use braid_proto::v1::embedding_service_client::EmbeddingServiceClient;
use braid_proto::v1::text_search_service_client::TextSearchServiceClient;
use braid_proto::v1::vector_search_service_client::VectorSearchServiceClient;
use braid_proto::v1::{
    Chunk, DeleteDocumentChunksRequest, EmbedRequest, InputType, ReplaceDocumentRequest,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::WorkerConfig;
use crate::outage::{LegOutages, Verdict};
use crate::store::{AfterFailure, IndexPayload, Job, Leg, Op, Store};

/// The downstream clients, built once and shared by every worker.
#[derive(Clone)]
pub struct Downstream {
    pub embedding: EmbeddingServiceClient<Channel>,
    pub vector: VectorSearchServiceClient<Channel>,
    pub text: TextSearchServiceClient<Channel>,
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("{1:?}: {0}")]
    Rpc(String, Code),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("embedding service returned {got} vectors for {want} chunks")]
    EmbeddingCount { got: usize, want: usize },
}

impl From<Status> for JobError {
    fn from(s: Status) -> Self {
        JobError::Rpc(s.message().to_string(), s.code())
    }
}

impl JobError {
    /// What `last_error` says: the failure in words an operator can act on. Only validation
    /// messages (written by our own services, naming a field and a rule) are kept; transport
    /// and database details (hosts, SQL, bodies) stay in the log.
    fn for_operator(&self) -> String {
        match self {
            JobError::Rpc(message, code) => match code {
                Code::InvalidArgument => {
                    let message: String = message.chars().take(300).collect();
                    format!("rejected by the downstream service: {}", message.escape_debug())
                }
                Code::Unavailable => {
                    "downstream service unavailable (not reachable, not serving, or its circuit breaker is open)".into()
                }
                Code::DeadlineExceeded => "downstream service did not answer within the deadline".into(),
                Code::ResourceExhausted => "downstream service overloaded (request shed)".into(),
                Code::Cancelled => "downstream call cancelled".into(),
                Code::Unauthenticated | Code::PermissionDenied => {
                    "downstream service refused the ingest service's credentials".into()
                }
                Code::Unimplemented => "downstream service does not serve this call (version mismatch?)".into(),
                Code::NotFound
                | Code::FailedPrecondition
                | Code::OutOfRange
                | Code::AlreadyExists
                | Code::Aborted => format!("downstream service answered {code:?}"),
                Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
                    "downstream service failed with an internal error (details in its log)".into()
                }
            },
            JobError::Db(_) => "document store error (details in the ingest log)".into(),
            JobError::EmbeddingCount { .. } => self.to_string(),
        }
    }

    /// The leg is not serving (down, draining, its breaker open, or shedding load): an outage
    /// of the leg, not a failure of this document.
    fn is_outage(&self) -> bool {
        matches!(
            self,
            JobError::Rpc(_, Code::Unavailable | Code::ResourceExhausted)
        )
    }

    /// Transient failures are retried; a rejection of the content itself is not.
    fn retryable(&self) -> bool {
        match self {
            JobError::Rpc(_, code) => !matches!(
                code,
                Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::Unimplemented
                    | Code::NotFound
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::AlreadyExists
                    | Code::DataLoss
            ),
            JobError::Db(_) => true,
            JobError::EmbeddingCount { .. } => true,
        }
    }
}

/// The capped exponential schedule: the delay ceiling after `attempts` failed attempts,
/// `min(max, base * multiplier^(attempts-1))`.
pub fn backoff_ceiling(config: &WorkerConfig, attempts: u32) -> Duration {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(config.backoff_base_ms))
        .with_factor(config.backoff_multiplier as f32)
        .with_max_delay(Duration::from_millis(config.backoff_max_ms))
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_millis(config.backoff_max_ms))
}

/// Retry delay after `attempts` failed attempts: uniformly random in `[0, ceiling]` ("full
/// jitter"; backon's own jitter adds to the delay instead, which keeps retries bunched).
pub fn backoff(config: &WorkerConfig, attempts: u32) -> Duration {
    let ceiling = backoff_ceiling(config, attempts).as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=ceiling))
}

/// What becomes of a job that failed on its `attempts`-th attempt with `error`, the leg's
/// outage `verdict` when the error is an outage.
fn after_failure(
    config: &WorkerConfig,
    error: &JobError,
    verdict: Option<Verdict>,
    attempts: i32,
) -> AfterFailure {
    let may_retry = error.retryable() && (attempts as u32) < config.max_attempts;
    match verdict {
        Some(Verdict::During(pause)) => AfterFailure::Outage(pause),
        // Its first charge is retried after the pause; a job charged before is on the retry
        // schedule (a leg that fails now and then does not spend a job's attempts in seconds).
        Some(Verdict::Began(pause)) if may_retry && attempts <= 1 => AfterFailure::Retry(pause),
        _ if may_retry => AfterFailure::Retry(backoff(config, attempts as u32)),
        _ => AfterFailure::Dead,
    }
}

pub struct Workers {
    pub store: Store,
    pub downstream: Downstream,
    pub config: WorkerConfig,
    /// Legs in an outage, whose jobs wait instead of being charged.
    pub outages: LegOutages,
    /// Notified when new jobs were enqueued.
    pub wake: Arc<Notify>,
    /// Notified whenever a job finished (for callers waiting on READY).
    pub progress: Arc<Notify>,
    pub jobs_total: Family<Counter>,
}

impl Workers {
    pub fn spawn(self: Arc<Self>, stopping: Stopping) -> Vec<JoinHandle<()>> {
        (0..self.config.concurrency)
            .map(|i| {
                let this = self.clone();
                let stopping = stopping.clone();
                tokio::spawn(async move { this.run(i, stopping).await })
            })
            .collect()
    }

    async fn run(&self, index: usize, mut stopping: Stopping) {
        let lease = Duration::from_millis(self.config.lease_ms);
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !stopping.is_stopping() {
            let paused = self.outages.paused(tokio::time::Instant::now());
            match self.store.claim_job(lease, &paused).await {
                Ok(Some(job)) => {
                    self.process(job).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(worker = index, error = %e, "claiming a job failed"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stopping.wait() => {}
            }
        }
        tracing::debug!(worker = index, "worker stopped");
    }

    async fn process(&self, job: Job) {
        let result = {
            // Keep the lease while the job runs (a big document can take minutes to embed);
            // if this process dies, the lease lapses and another worker takes over.
            let lease = Duration::from_millis(self.config.lease_ms);
            let heartbeat = async {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match self.store.renew_lease(&job, lease).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            job = job.id,
                            "lease lost; another worker may redo this job"
                        ),
                        Err(e) => {
                            tracing::warn!(job = job.id, error = %e, "renewing the lease failed")
                        }
                    }
                }
            };
            tokio::select! {
                result = self.execute(&job) => result,
                never = heartbeat => never,
            }
        };
        let outcome = match result {
            Ok(synced) => match self.store.complete_job(&job, synced).await {
                Ok(()) if synced => {
                    // A vector delete never calls the embedding service: only an upsert
                    // proves the whole leg serves.
                    if job.leg == Leg::Text || job.op == Op::Upsert {
                        self.outages.succeeded(job.leg);
                    }
                    "done"
                }
                Ok(()) => "done",
                Err(e) => {
                    // The lease expires and another attempt redoes the (idempotent) push.
                    tracing::warn!(job = job.id, error = %e, "recording job completion failed");
                    "error"
                }
            },
            Err(e) => {
                let verdict = e
                    .is_outage()
                    .then(|| self.outages.failed(job.leg, tokio::time::Instant::now()));
                let then = after_failure(&self.config, &e, verdict, job.attempts);
                let outage = verdict.is_some_and(|v| v != Verdict::Overdue);
                let retry_in_ms = match then {
                    AfterFailure::Retry(d) | AfterFailure::Outage(d) => Some(d.as_millis() as u64),
                    AfterFailure::Dead => None,
                };
                tracing::warn!(
                    job = job.id,
                    document = %job.document_id,
                    leg = job.leg.as_str(),
                    attempts = job.attempts,
                    retry_in_ms,
                    leg_outage = outage,
                    error = %e,
                    "job failed"
                );
                if let Err(db) = self.store.fail_job(&job, &e.for_operator(), then).await {
                    tracing::warn!(job = job.id, error = %db, "recording job failure failed");
                }
                match then {
                    AfterFailure::Outage(_) => "outage",
                    AfterFailure::Retry(_) => "retry",
                    AfterFailure::Dead => "dead",
                }
            }
        };
        let op = match job.op {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        };
        self.jobs_total
            .get(&[job.leg.as_str(), op, outcome])
            .increment(1);
        self.progress.notify_waiters();
    }

    /// Ok(true): the leg now holds the job's version; Ok(false): nothing to do (superseded).
    async fn execute(&self, job: &Job) -> Result<bool, JobError> {
        let document_id = job.document_id.to_string();
        match job.op {
            Op::Delete => {
                let request = DeleteDocumentChunksRequest {
                    tenant: job.tenant.clone(),
                    document_id,
                };
                match job.leg {
                    Leg::Vector => {
                        self.downstream
                            .vector
                            .clone()
                            .delete_document(request)
                            .await?
                    }
                    Leg::Text => {
                        self.downstream
                            .text
                            .clone()
                            .delete_document(request)
                            .await?
                    }
                };
                Ok(true)
            }
            Op::Upsert => {
                let Some(payload) = self.store.payload(job).await? else {
                    return Ok(false);
                };
                let chunks = to_chunks(&job.tenant, &document_id, &payload);
                match job.leg {
                    Leg::Vector => self.push_vectors(job, document_id, chunks).await?,
                    Leg::Text => {
                        self.downstream
                            .text
                            .clone()
                            .replace_document(ReplaceDocumentRequest {
                                tenant: job.tenant.clone(),
                                document_id,
                                chunks,
                                embeddings: Vec::new(),
                                model: String::new(),
                                keep_other_models: false,
                            })
                            .await?;
                    }
                }
                Ok(true)
            }
        }
    }

    async fn push_vectors(
        &self,
        job: &Job,
        document_id: String,
        chunks: Vec<Chunk>,
    ) -> Result<(), JobError> {
        let mut embeddings = Vec::with_capacity(chunks.len());
        let mut model = String::new();
        for batch in chunks.chunks(self.config.embed_batch) {
            // The title gives every chunk its document's context.
            let texts: Vec<String> = batch
                .iter()
                .map(|c| {
                    if c.title.is_empty() {
                        c.text.clone()
                    } else {
                        format!("{}\n{}", c.title, c.text)
                    }
                })
                .collect();
            let response = self
                .downstream
                .embedding
                .clone()
                .embed(EmbedRequest {
                    texts,
                    input_type: InputType::Document as i32,
                })
                .await?
                .into_inner();
            if response.embeddings.len() != batch.len() {
                return Err(JobError::EmbeddingCount {
                    got: response.embeddings.len(),
                    want: batch.len(),
                });
            }
            model = response.model;
            embeddings.extend(response.embeddings);
        }
        self.downstream
            .vector
            .clone()
            .replace_document(ReplaceDocumentRequest {
                tenant: job.tenant.clone(),
                document_id,
                chunks,
                embeddings,
                model: model.clone(),
                keep_other_models: job.reembed,
            })
            .await?;
        self.store.set_vector_model(job, &model).await?;
        Ok(())
    }
}

/// The chunks of a document as both legs index them.
pub fn to_chunks(tenant: &str, document_id: &str, p: &IndexPayload) -> Vec<Chunk> {
    p.chunks
        .iter()
        .map(|(ordinal, body)| Chunk {
            acl: Some(p.acl.clone()),
            chunk_id: format!("{document_id}:{ordinal}"),
            document_id: document_id.to_string(),
            tenant: tenant.to_string(),
            external_id: p.external_id.clone(),
            title: p.title.clone(),
            text: body.clone(),
            ordinal: *ordinal as u32,
            metadata: p.metadata.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_charges_the_job_that_began_it_once_on_the_pause_then_on_the_schedule() {
        let config = WorkerConfig {
            max_attempts: 3,
            backoff_base_ms: 3_600_000,
            backoff_max_ms: 3_600_000,
            ..WorkerConfig::default()
        };
        let down = JobError::Rpc("gone".into(), Code::Unavailable);
        let pause = Duration::from_secs(1);
        let during = Some(Verdict::During(pause));
        let began = Some(Verdict::Began(pause));
        // Inside an outage: the attempt is given back, whatever the count.
        assert_eq!(
            after_failure(&config, &down, during, 1),
            AfterFailure::Outage(pause)
        );
        assert_eq!(
            after_failure(&config, &down, during, 3),
            AfterFailure::Outage(pause)
        );
        // Began it: charged, retried after the pause the first time only.
        assert_eq!(
            after_failure(&config, &down, began, 1),
            AfterFailure::Retry(pause)
        );
        let AfterFailure::Retry(later) = after_failure(&config, &down, began, 2) else {
            panic!("a second charge is retried")
        };
        // On the schedule (uniform up to an hour here), not after the pause.
        assert!(
            later != pause && later <= Duration::from_secs(3_600),
            "{later:?}"
        );
        assert_eq!(after_failure(&config, &down, began, 3), AfterFailure::Dead);
        assert_eq!(
            after_failure(&config, &down, Some(Verdict::Overdue), 3),
            AfterFailure::Dead
        );
        // Not an outage: the schedule, and a rejection is dead at once.
        let rejected = JobError::Rpc("bad".into(), Code::InvalidArgument);
        assert_eq!(
            after_failure(&config, &rejected, None, 1),
            AfterFailure::Dead
        );
    }

    #[test]
    fn backoff_is_bounded_exponential_with_full_jitter() {
        let config = WorkerConfig {
            backoff_base_ms: 1_000,
            backoff_multiplier: 3.0,
            backoff_max_ms: 20_000,
            ..WorkerConfig::default()
        };
        for attempt in 1..=6u32 {
            let ceiling = (1_000.0 * 3f64.powi(attempt as i32 - 1)).min(20_000.0) as u64;
            let samples: Vec<u64> = (0..200)
                .map(|_| backoff(&config, attempt).as_millis() as u64)
                .collect();
            assert!(samples.iter().all(|&d| d <= ceiling), "attempt {attempt}");
            // Jittered: not all equal, and spread over the range.
            assert!(
                samples.iter().any(|&d| d < ceiling / 2),
                "attempt {attempt}"
            );
            assert!(
                samples.iter().any(|&d| d > ceiling / 2),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn default_schedule_spreads_over_about_a_day() {
        let c = WorkerConfig::default();
        let total_ceiling: f64 = (1..c.max_attempts)
            .map(|a| {
                (c.backoff_base_ms as f64 * c.backoff_multiplier.powi(a as i32 - 1))
                    .min(c.backoff_max_ms as f64)
            })
            .sum();
        let hours = total_ceiling / 3_600_000.0;
        assert!((12.0..=36.0).contains(&hours), "{hours} h");
    }

    #[test]
    fn retryable_classification() {
        assert!(JobError::from(Status::unavailable("down")).retryable());
        assert!(JobError::from(Status::deadline_exceeded("slow")).retryable());
        assert!(JobError::from(Status::resource_exhausted("busy")).retryable());
        assert!(!JobError::from(Status::invalid_argument("bad")).retryable());
        assert!(!JobError::from(Status::failed_precondition("no")).retryable());
    }

    #[test]
    fn last_error_is_worded_for_operators_without_internals() {
        let leaky = [
            Status::unavailable("tcp connect error: 10.1.2.3:50054: Connection refused"),
            Status::internal("error returned from database: relation \"vectors.chunks\""),
            Status::unknown("<html>502 Bad Gateway</html>"),
        ];
        for status in leaky {
            let worded = JobError::from(status).for_operator();
            for secret in ["10.1.2.3", "database", "relation", "html", "502"] {
                assert!(!worded.contains(secret), "{worded}");
            }
        }
        let rejected = JobError::from(Status::invalid_argument(
            "chunks[0].metadata: keys may only ...",
        ));
        assert!(rejected.for_operator().contains("chunks[0].metadata"));
        let db = JobError::Db(sqlx::Error::Protocol("SELECT secret FROM x".into()));
        assert!(!db.for_operator().contains("secret"));
    }
}
