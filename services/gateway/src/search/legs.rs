//! The two legs: each call under its own deadline, behind one of the leg's bounded slots,
//! with its errors described in words safe to show a client.

use std::time::{Duration, Instant};

use braid_core::auth::Access;
use braid_core::resilience::deadline;
use braid_proto::tonic::{Request, Status};
use braid_proto::v1::{ChunkHit, EmbedRequest, InputType, LegSearchRequest, SearchRequest};
use tokio::sync::Semaphore;

use super::Searcher;
use super::validate::Validated;

/// What happened to one leg.
pub(super) enum Leg {
    Skipped,
    Answered(Vec<ChunkHit>),
    Failed(String),
}

/// A leg's error in words an operator can act on. Only validation messages (written by our
/// own services, naming a field and a rule) are passed on; other codes get a fixed phrase, so
/// hosts, bodies and SQL from a transport or database error never reach a client. The full
/// status goes to the log.
pub(super) fn describe(status: &Status) -> String {
    use braid_proto::tonic::Code;
    tracing::debug!(code = ?status.code(), message = status.message(), "leg status");
    match status.code() {
        Code::InvalidArgument => {
            let message: String = status.message().chars().take(200).collect();
            format!("rejected the request: {}", message.escape_debug())
        }
        Code::Unavailable => {
            "unavailable (not reachable, not serving, or its circuit breaker is open)".into()
        }
        Code::DeadlineExceeded => "did not answer within its deadline".into(),
        Code::ResourceExhausted => "overloaded (request shed)".into(),
        Code::Cancelled => "call cancelled".into(),
        Code::Unauthenticated | Code::PermissionDenied => {
            "refused the gateway's credentials".into()
        }
        Code::Unimplemented => "does not serve this call (version mismatch?)".into(),
        Code::NotFound
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::AlreadyExists
        | Code::Aborted => {
            format!("answered {:?}", status.code())
        }
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            "internal error (details in that service's log)".into()
        }
    }
}

impl Searcher {
    pub(super) fn leg_request(
        &self,
        v: &Validated,
        r: &SearchRequest,
        access: &Access,
    ) -> LegSearchRequest {
        LegSearchRequest {
            access: Some(access.to_filter()),
            tenant: v.tenant.clone(),
            top_k: v.fusion.text_candidates,
            filter: r.filter.clone(),
            query: String::new(),
            embedding: Vec::new(),
            model: String::new(),
            detail_top_k: 0,
            min_score: None,
            ef_search: 0,
            chunk_level: false,
        }
    }

    pub(super) async fn vector_leg(
        &self,
        mut request: LegSearchRequest,
        query: String,
    ) -> Result<Vec<ChunkHit>, String> {
        let timeout = Duration::from_millis(self.config.vector_timeout_ms);
        let _slot = self.slot("vector", &self.limits.vector).await?;
        let ends = LegDeadline::start(timeout);
        let work = async {
            let mut embed = Request::new(EmbedRequest {
                texts: vec![query],
                input_type: InputType::Query as i32,
            });
            embed.set_timeout(ends.remaining());
            let embedded = self
                .clients
                .embedding
                .clone()
                .embed(embed)
                .await
                .map_err(|s| format!("query embedding {}", describe(&s)))?
                .into_inner();
            request.embedding = embedded
                .embeddings
                .into_iter()
                .next()
                .map(|v| v.values)
                .ok_or("query embedding returned no vector")?;
            if let Some(cache) = &self.cache {
                cache.observe_model(&embedded.model);
            }
            // Compare like with like: only vectors of the model that embedded the query
            // (during a re-embedding the other model's vectors stay until purged).
            request.model = embedded.model;
            let mut search = Request::new(request);
            search.set_timeout(ends.remaining());
            let hits = self
                .clients
                .vector
                .clone()
                .search(search)
                .await
                .map_err(|s| describe(&s))?
                .into_inner()
                .hits;
            Ok(hits)
        };
        ends.run(work).await
    }

    pub(super) async fn text_leg(
        &self,
        mut request: LegSearchRequest,
        query: String,
    ) -> Result<Vec<ChunkHit>, String> {
        let timeout = Duration::from_millis(self.config.text_timeout_ms);
        let _slot = self.slot("text", &self.limits.text).await?;
        let ends = LegDeadline::start(timeout);
        request.query = query;
        let mut search = Request::new(request);
        search.set_timeout(ends.remaining());
        let work = async {
            self.clients
                .text
                .clone()
                .search(search)
                .await
                .map(|r| r.into_inner().hits)
                .map_err(|s| describe(&s))
        };
        ends.run(work).await
    }

    /// Waits (in arrival order) for one of the leg's slots, for as long as the request's
    /// deadline allows.
    async fn slot<'a>(
        &self,
        leg: &str,
        slots: &'a Semaphore,
    ) -> Result<tokio::sync::SemaphorePermit<'a>, String> {
        if let Ok(permit) = slots.try_acquire() {
            return Ok(permit);
        }
        let queued = self.metrics.leg_queued.get(&[leg]);
        queued.increment(1.0);
        let waited = match deadline::current() {
            Some(at) => tokio::time::timeout_at(at, slots.acquire()).await.ok(),
            None => Some(slots.acquire().await),
        };
        queued.decrement(1.0);
        match waited {
            Some(Ok(permit)) => Ok(permit),
            Some(Err(_)) | None => {
                Err("the request's deadline passed while the leg was queued".into())
            }
        }
    }

    pub(super) async fn timed<F>(&self, leg: &str, enabled: bool, fut: F) -> Leg
    where
        F: std::future::Future<Output = Result<Vec<ChunkHit>, String>>,
    {
        if !enabled {
            return Leg::Skipped;
        }
        let started = Instant::now();
        let result = fut.await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .leg_latency
            .get(&[leg, outcome])
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(hits) => Leg::Answered(hits),
            Err(reason) => {
                tracing::warn!(leg, %reason, "search leg failed");
                Leg::Failed(reason)
            }
        }
    }
}

/// When one leg must be done: its own timeout from now, or the request's deadline if sooner.
struct LegDeadline {
    at: tokio::time::Instant,
    own: bool,
    timeout: Duration,
}

impl LegDeadline {
    fn start(timeout: Duration) -> Self {
        let own = tokio::time::Instant::now() + timeout;
        match deadline::current() {
            Some(request) if request < own => Self {
                at: request,
                own: false,
                timeout,
            },
            _ => Self {
                at: own,
                own: true,
                timeout,
            },
        }
    }

    /// The budget to send downstream as `grpc-timeout` (at least 1 ms: 0 means "none").
    fn remaining(&self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(1))
    }

    async fn run<F>(&self, work: F) -> Result<Vec<ChunkHit>, String>
    where
        F: std::future::Future<Output = Result<Vec<ChunkHit>, String>>,
    {
        match tokio::time::timeout_at(self.at, work).await {
            Ok(result) => result,
            Err(_) if self.own => Err(format!("timed out after {} ms", self.timeout.as_millis())),
            Err(_) => Err("the request's deadline passed".into()),
        }
    }
}
