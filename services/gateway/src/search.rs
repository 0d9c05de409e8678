//! Hybrid search: validate, embed the query, query both legs concurrently (each under its
//! own deadline, behind its client's circuit breaker), fuse, and report what degraded.
//!
//! Deadlines: each leg gets what is left of the request's deadline (the caller's
//! `grpc-timeout` capped by the server's request timeout), at most its own leg timeout. Under
//! overload a leg waits for one of `leg_concurrency` slots within the request's deadline; its
//! own timeout starts when it leaves the queue, so being queued does not degrade an answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use braid_core::auth::{Access, Principal};
use braid_core::metrics::{Counter, Family, Gauge, Histogram};
use braid_core::resilience::deadline;
use tokio::sync::Semaphore;

use braid_core::validate;
use braid_proto::tonic::{Request, Status};
use braid_proto::v1::{
    ChunkHit, EmbedRequest, FetchChunksRequest, IndexGenerationRequest, InputType,
    LegSearchRequest, ModelInfoRequest, SearchHit, SearchMode, SearchRequest, SearchResponse,
};

use crate::cache::{self, QueryCache};
use crate::clients::Clients;
use crate::config::SearchConfig;
use crate::error::GatewayError;
use crate::explain;
use crate::fusion::{self, Choices, Granularity};
use crate::paging::{self, PageTokens};

pub struct SearchMetrics {
    leg_latency: Family<Histogram>,
    degraded: Family<Counter>,
    leg_queued: Family<Gauge>,
}

/// The `leg` label values.
const LEGS: &[&str] = &["vector", "text"];

/// The bounded concurrency of each leg (FIFO: tokio's semaphore is fair).
pub struct LegLimits {
    vector: Arc<Semaphore>,
    text: Arc<Semaphore>,
}

impl LegLimits {
    pub fn new(config: &SearchConfig) -> Self {
        Self {
            vector: Arc::new(Semaphore::new(config.leg_concurrency)),
            text: Arc::new(Semaphore::new(config.leg_concurrency)),
        }
    }
}

impl SearchMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> anyhow::Result<Self> {
        let leg_latency = metrics.histogram_family(
            "search_leg_duration_seconds",
            "latency of each search leg",
            &[("leg", LEGS), ("outcome", &["ok", "error"])],
            &braid_core::metrics::latency_buckets(),
        );
        let degraded = metrics.counter_family(
            "search_degraded_total",
            "searches answered without one leg",
            &[("leg", LEGS)],
        );
        let leg_queued = metrics.gauge_family(
            "search_leg_queued",
            "leg calls waiting for one of the leg's concurrency slots",
            &[("leg", LEGS)],
        );
        Ok(Self {
            leg_latency,
            degraded,
            leg_queued,
        })
    }
}

pub struct Searcher {
    pub clients: Clients,
    pub limits: LegLimits,
    pub config: SearchConfig,
    pub metrics: SearchMetrics,
    /// `None` when `query_cache.enabled` is false.
    pub cache: Option<QueryCache>,
    /// Signs and checks `page_token`s.
    pub pages: PageTokens,
    /// Declared metadata types: range filters only on `number` / `date` keys.
    pub metadata_types: braid_core::filter::MetadataTypes,
}

/// What happened to one leg.
enum Leg {
    Skipped,
    Answered(Vec<ChunkHit>),
    Failed(String),
}

struct Validated {
    tenant: String,
    /// The query with control characters turned into spaces.
    query: String,
    /// What the caller may see, applied inside both legs.
    access: Access,
    top_k: u32,
    mode: SearchMode,
    fusion: Choices,
    explain: bool,
    /// The filter, parsed and checked against the declared metadata types.
    filter: braid_core::filter::Filter,
    /// Score thresholds: fused, vector leg, text leg.
    min_score: Option<f32>,
    min_vector_score: Option<f32>,
    min_text_score: Option<f32>,
    /// 0 = no paging.
    page_size: u32,
    /// Where the page starts in the ranking (from `page_token`).
    offset: u32,
}

impl Validated {
    /// The search controls in canonical text (part of the query cache key).
    fn controls(&self) -> String {
        format!(
            "filter={}|min={:?}|vmin={:?}|tmin={:?}",
            self.filter.canonical(),
            self.min_score.map(f32::to_bits),
            self.min_vector_score.map(f32::to_bits),
            self.min_text_score.map(f32::to_bits),
        )
    }
}

/// A leg's error in words an operator can act on. Only validation messages (written by our
/// own services, naming a field and a rule) are passed on; other codes get a fixed phrase, so
/// hosts, bodies and SQL from a transport or database error never reach a client. The full
/// status goes to the log.
fn describe(status: &Status) -> String {
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
    fn validate(&self, r: &SearchRequest, caller: &Principal) -> Result<Validated, GatewayError> {
        // The tenant comes from the caller's token; naming another is PERMISSION_DENIED.
        let tenant = caller.tenant_for(&r.tenant)?;
        validate::tenant(&tenant)?;
        // Control characters (NUL included) in a query are treated as spaces; the text is
        // never parsed as query syntax by either leg.
        let query = validate::clean_text(&r.query);
        if query.trim().is_empty() {
            return Err(GatewayError::invalid(
                "query",
                "must not be empty (whitespace and control characters do not count)",
            ));
        }
        if r.query.len() > self.config.max_query_bytes {
            return Err(GatewayError::invalid(
                "query",
                format!(
                    "{} bytes, at most {}",
                    r.query.len(),
                    self.config.max_query_bytes
                ),
            ));
        }
        let top_k = if r.top_k == 0 {
            self.config.default_top_k
        } else {
            r.top_k
        };
        // With paging, top_k is the depth of the ranking the pages are cut from.
        let depth_limit = if r.page_size > 0 {
            self.config.max_page_depth
        } else {
            self.config.max_top_k
        };
        validate::top_k(top_k, depth_limit)?;
        paging::check_page_size(r, self.config.max_top_k)?;
        let filter = braid_core::filter::parse(r.filter.as_ref())?;
        filter.check_types(&tenant, &self.metadata_types)?;
        let mode = match SearchMode::try_from(r.mode) {
            Ok(SearchMode::Unspecified) => SearchMode::Hybrid,
            Ok(mode) => mode,
            Err(_) => {
                return Err(GatewayError::invalid(
                    "mode",
                    format!("unknown mode {}", r.mode),
                ));
            }
        };
        let fusion = fusion::choices(
            &r.fusion.unwrap_or_default(),
            top_k,
            &self.config.fusion_defaults(),
        )?;
        let mut v = Validated {
            tenant,
            query: query.trim().to_string(),
            access: caller.access.clone(),
            top_k,
            mode,
            fusion,
            explain: r.explain,
            filter,
            min_score: paging::threshold("min_score", r.min_score)?,
            min_vector_score: paging::threshold("min_vector_score", r.min_vector_score)?,
            min_text_score: paging::threshold("min_text_score", r.min_text_score)?,
            page_size: r.page_size,
            offset: 0,
        };
        if !r.page_token.is_empty() {
            v.offset = self
                .pages
                .decode(&r.page_token, self.fingerprint(&v, r, caller))?;
        }
        Ok(v)
    }

    /// Everything a page token is bound to ([`paging`]).
    fn fingerprint(
        &self,
        v: &Validated,
        r: &SearchRequest,
        caller: &Principal,
    ) -> paging::Fingerprint {
        let mut f = paging::Fingerprint::new();
        f.add(v.tenant.as_bytes())
            .add(caller.subject.as_bytes())
            .add(v.access.fingerprint().as_bytes())
            .add(cache::normalise_query(&v.query).as_bytes())
            .add(&(v.mode as i32).to_le_bytes())
            .add(&v.top_k.to_le_bytes())
            .add(v.fusion.cache_part().as_bytes())
            .add(&[u8::from(r.chunk_level)])
            .add(v.controls().as_bytes())
            .add(&v.page_size.to_le_bytes());
        f
    }

    fn leg_request(&self, v: &Validated, r: &SearchRequest, access: &Access) -> LegSearchRequest {
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

    async fn vector_leg(
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

    async fn text_leg(
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

impl Searcher {
    /// Fills text and snippet of page hits the text leg ranked deeper than its detailed hits
    /// (one `FetchChunks` call, only when some are missing).
    async fn fetch_details(
        &self,
        page: &mut [fusion::FusedHit],
        text_hits: &[ChunkHit],
        granularity: Granularity,
        tenant: &str,
        query: &str,
    ) -> Result<(), String> {
        let key = |h: &ChunkHit| match granularity {
            Granularity::Document => h.document_id.clone(),
            Granularity::Chunk => h.chunk_id.clone(),
        };
        // The text leg's (best) chunk of each page hit it found without detail.
        let mut missing: Vec<(usize, String)> = Vec::new();
        for (i, f) in page.iter().enumerate() {
            if f.text.is_none() || !(f.snippet.is_empty() || f.hit.text.is_empty()) {
                continue;
            }
            let k = key(&f.hit);
            if let Some(t) = text_hits.iter().find(|t| key(t) == k)
                && t.text.is_empty()
            {
                missing.push((i, t.chunk_id.clone()));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let timeout = Duration::from_millis(self.config.text_timeout_ms);
        let mut request = Request::new(FetchChunksRequest {
            tenant: tenant.to_string(),
            query: query.to_string(),
            chunk_ids: missing.iter().map(|(_, id)| id.clone()).collect(),
        });
        request.set_timeout(timeout);
        let fetched =
            tokio::time::timeout(timeout, self.clients.text.clone().fetch_chunks(request))
                .await
                .map_err(|_| format!("timed out after {} ms", timeout.as_millis()))?
                .map_err(|s| describe(&s))?
                .into_inner()
                .hits;
        for (i, chunk_id) in missing {
            let Some(found) = fetched.iter().find(|h| h.chunk_id == chunk_id) else {
                continue; // deleted since the search
            };
            let f = &mut page[i];
            f.snippet = found.snippet.clone();
            if f.hit.text.is_empty() && f.hit.chunk_id == found.chunk_id {
                f.hit.text = found.text.clone();
            }
        }
        Ok(())
    }

    async fn timed<F>(&self, leg: &str, enabled: bool, fut: F) -> Leg
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

    /// Searches as `caller`: in the caller's tenant, both legs filter on the caller's access,
    /// and cached answers are shared only between callers with the same access fingerprint.
    pub async fn search(
        &self,
        r: SearchRequest,
        caller: &Principal,
    ) -> Result<SearchResponse, GatewayError> {
        let v = self.validate(&r, caller)?;
        let full = self.full_answer(&v, &r).await?;
        Ok(paging::cut(full, v.offset, v.page_size, |end| {
            self.pages.encode(self.fingerprint(&v, &r, caller), end)
        }))
    }

    /// The whole ranking (`top_k` deep), from the cache or the legs.
    async fn full_answer(
        &self,
        v: &Validated,
        r: &SearchRequest,
    ) -> Result<SearchResponse, GatewayError> {
        let started = Instant::now();
        let access = &v.access;
        let Some(cache) = &self.cache else {
            return self.compute(v, r, access).await;
        };
        if r.bypass_cache {
            cache.count("bypass");
            return self.compute(v, r, access).await;
        }
        let Some(key) = self.cache_key(cache, v, r, access).await else {
            cache.count("unavailable");
            return self.compute(v, r, access).await;
        };
        let mut response = cache
            .get_or_compute(key, self.compute(v, r, access))
            .await?;
        if response.cached {
            response.took_ms = started.elapsed().as_millis() as u32;
        }
        Ok(response)
    }

    /// The cache key of this search, or `None` when the tenant's index generation or the
    /// query model's identity cannot be learnt in time (the search then goes uncached).
    async fn cache_key(
        &self,
        cache: &QueryCache,
        v: &Validated,
        r: &SearchRequest,
        access: &Access,
    ) -> Option<String> {
        let timeout = cache.generation_timeout;
        let generation = async {
            let mut request = Request::new(IndexGenerationRequest {
                tenant: v.tenant.clone(),
            });
            request.set_timeout(timeout);
            match tokio::time::timeout(
                timeout,
                self.clients.ingest.clone().index_generation(request),
            )
            .await
            {
                Ok(Ok(g)) => Some(g.into_inner().generation),
                Ok(Err(status)) => {
                    tracing::warn!(status = %describe(&status), "query cache: no index generation; answering uncached");
                    None
                }
                Err(_) => {
                    tracing::warn!("query cache: index generation timed out; answering uncached");
                    None
                }
            }
        };
        let model = async {
            if v.mode == SearchMode::Text {
                return Some("-".into());
            }
            if let Some(model) = cache.model() {
                return Some(model);
            }
            let mut request = Request::new(ModelInfoRequest {});
            request.set_timeout(timeout);
            let info =
                tokio::time::timeout(timeout, self.clients.embedding.clone().model_info(request))
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
            cache.observe_model(&info.model);
            cache.model()
        };
        let (generation, model) = tokio::join!(generation, model);
        let (generation, model) = (generation?, model?);
        Some(cache::key(&cache::KeyParts {
            tenant: &v.tenant,
            access,
            query: &r.query,
            mode: v.mode as i32,
            top_k: v.top_k,
            rrf_k: v.fusion.params.k,
            vector_weight: v.fusion.params.vector_weight,
            text_weight: v.fusion.params.text_weight,
            fusion: &v.fusion.cache_part(),
            explain: v.explain,
            filter: r.filter.as_ref(),
            chunk_level: r.chunk_level,
            controls: &v.controls(),
            model: &model,
            generation,
        }))
    }

    /// Answers a validated search from the legs (no cache).
    async fn compute(
        &self,
        v: &Validated,
        r: &SearchRequest,
        access: &Access,
    ) -> Result<SearchResponse, GatewayError> {
        let started = Instant::now();
        let base = self.leg_request(v, r, access);
        let vector_request = LegSearchRequest {
            min_score: v.min_vector_score,
            ..base.clone()
        };
        let use_vector = matches!(v.mode, SearchMode::Hybrid | SearchMode::Vector);
        let use_text = matches!(v.mode, SearchMode::Hybrid | SearchMode::Text);
        let (vector, text) = tokio::join!(
            self.timed(
                "vector",
                use_vector,
                self.vector_leg(
                    LegSearchRequest {
                        top_k: v.fusion.vector_candidates,
                        ef_search: v.fusion.ef_search,
                        ..vector_request
                    },
                    v.query.clone()
                )
            ),
            self.timed(
                "text",
                use_text,
                self.text_leg(
                    LegSearchRequest {
                        // Text and snippets only for as many hits as the page holds; the
                        // fetch step gets them for deeper hits that survive fusion.
                        detail_top_k: v.top_k,
                        min_score: v.min_text_score,
                        chunk_level: r.chunk_level,
                        ..base
                    },
                    v.query.clone()
                )
            ),
        );
        let mut reasons = Vec::new();
        let mut answered = |name: &str, leg: Leg| -> Option<Vec<ChunkHit>> {
            match leg {
                Leg::Answered(hits) => Some(hits),
                Leg::Failed(reason) => {
                    reasons.push(format!("{name} leg failed: {reason}"));
                    None
                }
                Leg::Skipped => None,
            }
        };
        let (vector_failed, text_failed) = (
            matches!(vector, Leg::Failed(_)),
            matches!(text, Leg::Failed(_)),
        );
        let vector_hits = answered("vector", vector);
        let text_hits = answered("text", text);
        if vector_hits.is_none() && text_hits.is_none() {
            return Err(GatewayError::Unavailable(reasons.join("; ")));
        }
        for (name, failed) in [("vector", vector_failed), ("text", text_failed)] {
            if failed {
                self.metrics.degraded.get(&[name]).increment(1);
            }
        }
        let granularity = if r.chunk_level {
            Granularity::Chunk
        } else {
            Granularity::Document
        };
        let single_leg = vector_hits.is_none() || text_hits.is_none();
        let mut fused = fusion::fuse(
            vector_hits.as_deref(),
            text_hits.as_deref(),
            &v.fusion.params,
            granularity,
        );
        fused.truncate(v.top_k as usize);
        if let Some(min) = v.min_score {
            fused.retain(|f| f.score >= min);
        }
        if let Some(text_hits) = &text_hits
            && let Err(reason) = self
                .fetch_details(&mut fused, text_hits, granularity, &v.tenant, &v.query)
                .await
        {
            tracing::warn!(%reason, "text leg fetch failed");
            reasons.push(format!("text leg fetch failed: {reason}"));
            self.metrics.degraded.get(&["text"]).increment(1);
        }
        let hits = fused
            .into_iter()
            .map(|f| SearchHit {
                explanation: v
                    .explain
                    .then(|| explain::explanation(&f, &v.fusion.params, single_leg)),
                vector_score: f.vector.as_ref().map(|l| l.score),
                vector_rank: f.vector.as_ref().map(|l| l.rank),
                text_score: f.text.as_ref().map(|l| l.score),
                text_rank: f.text.as_ref().map(|l| l.rank),
                document_id: f.hit.document_id,
                external_id: f.hit.external_id,
                title: f.hit.title,
                chunk_id: f.hit.chunk_id,
                text: f.hit.text,
                snippet: f.snippet,
                score: f.score,
            })
            .collect();
        Ok(SearchResponse {
            hits,
            degraded: !reasons.is_empty(),
            degraded_reasons: reasons,
            took_ms: started.elapsed().as_millis() as u32,
            cached: false,
            next_page_token: String::new(),
        })
    }
}
